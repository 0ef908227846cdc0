/* cancel_cmd.c — `chatq cancel`: sets P:cancel:<id> (for --ttl seconds,
 * a day by default), so a job still queued is dropped when a worker
 * reaches it, then publishes the id on P:control, so a worker running it
 * aborts it (docs/protocol.md §8). The request is all this command does: it does not
 * wait for the job to end (`chatq watch` does). */
#include "cli/cancel_cmd.h"

#include <stdio.h>
#include <stdlib.h>

#include "cli/redis.h"
#include "common/keys.h"

enum { CANCEL_TTL = 1 };
static const cli_opt cancel_opts[] = {{"ttl", 0, 1, CANCEL_TTL}, {NULL, 0, 0, 0}};

int cancel_cmd(cli_ctx *ctx, int argc, char **argv) {
    const char *id = NULL, *ttl_arg = NULL;
    long long ttl = 86400;
    int status;
    if (cli_parse_cmd(ctx, cancel_opts, argc, argv, cli_take_value, &ttl_arg, &id, &status))
        return status;
    if (ttl_arg && cli_parse_ll(ttl_arg, 1, 100LL * 365 * 86400, &ttl) < 0)
        return cli_usage_fail(ctx, "--ttl must be a positive number of seconds, not '%s'", ttl_arg);
    redisContext *c = cli_redis_connect(ctx);
    if (!c) return CLI_ERR;
    const char *prefix = cli_ctx_prefix(ctx);
    char *key = keys_cancel(prefix, id), *control = keys_control(prefix);
    redisReply *r = cli_redis_cmd(c, "SET %s 1 EX %lld", key, ttl);
    if (r) {
        freeReplyObject(r);
        r = cli_redis_cmd(c, "PUBLISH %s %s", control, id);
    }
    if (r) {
        freeReplyObject(r);
        printf("cancel requested for %s\n", id);
        status = CLI_OK;
    } else {
        status = CLI_ERR;
    }
    free(key);
    free(control);
    redisFree(c);
    return status;
}

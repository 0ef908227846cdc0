/* watch_cmd.c — `chatq watch`: follows a job that is queued, running or
 * done, printing its content as it streams and ending with the job
 * (follow.c does the work). Unlike `submit --stream`, the job may have
 * started long before: what it published until then is read back from
 * its events list. */
#include "cli/watch_cmd.h"

#include "cli/follow.h"
#include "cli/redis.h"

enum { WATCH_TIMEOUT = 1 };
static const cli_opt watch_opts[] = {{"timeout", 0, 1, WATCH_TIMEOUT}, {NULL, 0, 0, 0}};

int watch_cmd(cli_ctx *ctx, int argc, char **argv) {
    const char *id = NULL, *timeout = NULL;
    double timeout_s = 0;
    int status;
    if (cli_parse_cmd(ctx, watch_opts, argc, argv, cli_take_value, &timeout, &id, &status))
        return status;
    if (timeout && cli_parse_seconds(timeout, &timeout_s) < 0)
        return cli_usage_fail(ctx, "--timeout must be a positive number of seconds, not '%s'",
                              timeout);
    redisContext *cmd = cli_redis_connect(ctx);
    if (!cmd) return CLI_ERR;
    redisContext *sub = follow_subscribe(ctx, id);
    if (!sub) {
        redisFree(cmd);
        return CLI_ERR;
    }
    follow_opts fo = {.cmd = cmd, .sub = sub, .prefix = cli_ctx_prefix(ctx), .id = id,
                      .print_chunks = 1, .timeout_s = timeout_s};
    status = follow_job(&fo);
    redisFree(sub);
    redisFree(cmd);
    return status;
}

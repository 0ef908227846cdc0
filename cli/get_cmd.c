/* get_cmd.c — `chatq get`: a job's hash, printed as one JSON object.
 *
 * P:job:<id> holds only strings (docs/protocol.md §6); the JSON fields (response,
 * error, usage, metadata) are embedded as JSON values and the times and
 * attempt count as numbers, unless --raw. A value that does not parse stays
 * a string: a damaged hash is shown, not refused. The fields come in a
 * fixed order (the known ones first, the rest by name), since a hash has
 * none of its own. chatq's own bookkeeping fields (docs/protocol.md §6) are
 * left out unless --raw. */
#include "cli/get_cmd.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>

#include "cli/redis.h"
#include "common/keys.h"

static const char *const get_job_order[] = {
    "id", "status", "attempts", "model", "provider", "tenant", "queue", "worker",
    "started_at", "first_token_at", "finished_at", "usage", "error", "metadata",
    "response", NULL,
};
static const char *const get_json_fields[] = {"response", "error", "usage", "metadata", NULL};
static const char *const get_internal_fields[] = {"start", "sha", "charged", "done", NULL};
static const char *const get_int_fields[] = {"attempts", "started_at", "first_token_at",
                                             "finished_at", NULL};

/* One field's value as JSON: embedded JSON, a number, or the string. */
static json_object *get_value(const char *field, const redisReply *v, int raw) {
    json_object *o = NULL;
    long long n;
    if (v->type != REDIS_REPLY_STRING) return NULL;
    if (!raw && cli_str_index(get_json_fields, field) >= 0 &&
        cli_json_parse(v->str, v->len, &o, NULL, 0) == 0)
        return o;
    if (!raw && cli_str_index(get_int_fields, field) >= 0 &&
        cli_parse_ll(v->str, LLONG_MIN, LLONG_MAX, &n) == 0)
        return json_object_new_int64(n);
    return json_object_new_string_len(v->str, (int)v->len);
}

static json_object *get_job_object(const char *id, const redisReply *h, int raw) {
    size_t n;
    cli_redis_field *f = cli_redis_hash_fields(h, get_job_order, &n);
    json_object *o = json_object_new_object();
    if (!cli_redis_hash_get(h, "id")) json_object_object_add(o, "id", json_object_new_string(id));
    for (size_t i = 0; i < n; i++) {
        if (!raw && cli_str_index(get_internal_fields, f[i].name->str) >= 0) continue;
        json_object_object_add(o, f[i].name->str, get_value(f[i].name->str, f[i].value, raw));
    }
    free(f);
    return o;
}

int get_cmd(cli_ctx *ctx, int argc, char **argv) {
    const char *id = NULL;
    int raw = 0, status;
    static const cli_opt opts[] = {{"raw", 0, 0, 1}, {NULL, 0, 0, 0}};
    if (cli_parse_cmd(ctx, opts, argc, argv, cli_take_flag, &raw, &id, &status)) return status;
    redisContext *c = cli_redis_connect(ctx);
    if (!c) return CLI_ERR;
    char *key = keys_job(cli_ctx_prefix(ctx), id);
    redisReply *h = cli_redis_cmd(c, "HGETALL %s", key);
    free(key);
    status = CLI_ERR;
    if (h && (h->type != REDIS_REPLY_ARRAY || h->elements == 0)) {
        cli_fail("no job %s", id);
    } else if (h) {
        json_object *o = get_job_object(id, h, raw);
        cli_print_json(o);
        json_object_put(o);
        status = CLI_OK;
    }
    if (h) freeReplyObject(h);
    redisFree(c);
    return status;
}

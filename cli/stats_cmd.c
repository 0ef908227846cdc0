/* stats_cmd.c — `chatq stats`: a look at the whole system, as a text
 * report or as one JSON object (--json) with "queues", "workers", "dead"
 * and "usage".
 *
 * Queues are found with SCAN (never KEYS, which blocks a busy Redis), plus
 * the configured queues and the workers' queues, which are shown with
 * length 0 when empty. Workers come from P:workers (their registration
 * JSON), alive when P:heartbeat:<id> exists, with their in-flight count
 * summed over P:processing:<id>:<queue>. Dead jobs are the length of
 * P:dead; the usage is today's totals (tally.c). */
#include "cli/stats_cmd.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/redis.h"
#include "cli/table.h"
#include "cli/tally.h"
#include "common/buf.h"
#include "common/keys.h"

typedef struct stats_names {
    char **v;
    size_t n, cap;
} stats_names;

static void stats_names_add(stats_names *s, const char *str, size_t len) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = xstrndup(str, len);
}

static int stats_str_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts and drops duplicates (SCAN may return a key twice). */
static void stats_names_sort(stats_names *s) {
    size_t w = 0;
    if (s->n) qsort(s->v, s->n, sizeof *s->v, stats_str_cmp);
    for (size_t i = 0; i < s->n; i++) {
        if (w && !strcmp(s->v[w - 1], s->v[i]))
            free(s->v[i]);
        else
            s->v[w++] = s->v[i];
    }
    s->n = w;
}

static void stats_names_free(stats_names *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* The queue names (without the key prefix), sorted. 0 or -1. */
static int stats_scan_queues(redisContext *c, const char *prefix, stats_names *out) {
    char *glob = keys_queue_pattern(prefix), *cursor = xstrdup("0");
    int rc = 0;
    do {
        redisReply *r = cli_redis_cmd(c, "SCAN %s MATCH %s COUNT 1000", cursor, glob);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            if (r) cli_fail("redis: unexpected reply to SCAN");
            if (r) freeReplyObject(r);
            rc = -1;
            break;
        }
        free(cursor);
        cursor = xstrdup(r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            const char *name = k->type == REDIS_REPLY_STRING ? keys_queue_name(prefix, k->str) : NULL;
            if (name) stats_names_add(out, name, strlen(name));
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    free(glob);
    free(cursor);
    stats_names_sort(out);
    return rc;
}

/* LLEN, or -1 when the key is not a list or the command failed (then
 * *failed is set when the connection is gone). */
static long long stats_llen(redisContext *c, const char *key, int *failed) {
    redisReply *r = cli_redis_try(c, "LLEN %s", key);
    long long n = -1;
    if (!r) *failed = 1;
    if (r && r->type == REDIS_REPLY_INTEGER) n = r->integer;
    if (r) freeReplyObject(r);
    return n;
}

/* The length of the dead list. A key of another type is a failure, named
 * (cli_redis_cmd()), not "0 dead jobs": unlike a queue name found by SCAN,
 * the dead list's key is chatq's own. */
static long long stats_dead(redisContext *c, const char *prefix, int *failed) {
    char *key = keys_dead(prefix);
    redisReply *r = cli_redis_cmd(c, "LLEN %s", key);
    free(key);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    if (!r) *failed = 1;
    if (r) freeReplyObject(r);
    return n;
}

/* The worker's queues: a JSON array of names, or "a,b,c". */
static void stats_worker_queues(json_object *info, stats_names *out) {
    json_object *q = NULL;
    if (!json_object_object_get_ex(info, "queues", &q)) return;
    if (json_object_is_type(q, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(q); i++) {
            json_object *e = json_object_array_get_idx(q, i);
            if (json_object_is_type(e, json_type_string) && json_object_get_string_len(e))
                stats_names_add(out, json_object_get_string(e),
                               (size_t)json_object_get_string_len(e));
        }
    } else if (json_object_is_type(q, json_type_string)) {
        const char *s = json_object_get_string(q);
        while (*s) {
            size_t n = strcspn(s, ",");
            if (n) stats_names_add(out, s, n);
            s += n + (s[n] == ',');
        }
    }
}

/* One worker: its registration JSON, plus id, alive and in_flight. */
static json_object *stats_worker(redisContext *c, const char *prefix, const redisReply *id,
                                 const redisReply *val, int *failed) {
    json_object *info = NULL, *w = json_object_new_object();
    stats_names queues = {0};
    long long in_flight = 0;
    json_object_object_add(w, "id", json_object_new_string_len(id->str, (int)id->len));
    if (val->type == REDIS_REPLY_STRING &&
        cli_json_parse(val->str, val->len, &info, NULL, 0) == 0 &&
        json_object_is_type(info, json_type_object)) {
        json_object_object_foreach(info, k, v) {
            if (strcmp(k, "id") && strcmp(k, "alive") && strcmp(k, "in_flight"))
                json_object_object_add(w, k, json_object_get(v));
        }
        stats_worker_queues(info, &queues);
    }
    json_object_put(info);
    char *hb = keys_heartbeat(prefix, id->str);
    redisReply *r = cli_redis_cmd(c, "EXISTS %s", hb);
    free(hb);
    if (!r) *failed = 1;
    json_object_object_add(w, "alive", json_object_new_boolean(r && r->integer > 0));
    if (r) freeReplyObject(r);
    for (size_t i = 0; i < queues.n && !*failed; i++) {
        char *key = keys_processing(prefix, id->str, queues.v[i]);
        long long n = stats_llen(c, key, failed);
        free(key);
        if (n > 0) in_flight += n;
    }
    json_object_object_add(w, "in_flight", json_object_new_int64(in_flight));
    stats_names_free(&queues);
    return w;
}

static json_object *stats_workers(redisContext *c, const char *prefix, int *failed) {
    json_object *arr = json_object_new_array();
    char *key = keys_workers(prefix);
    redisReply *h = cli_redis_cmd(c, "HGETALL %s", key);
    free(key);
    if (!h) {
        *failed = 1;
        return arr;
    }
    /* The (id, registration) pairs, sorted by id. */
    size_t n;
    cli_redis_field *f = cli_redis_hash_fields(h, NULL, &n);
    for (size_t i = 0; i < n && !*failed; i++)
        if (f[i].name->type == REDIS_REPLY_STRING)
            json_object_array_add(arr, stats_worker(c, prefix, f[i].name, f[i].value, failed));
    free(f);
    freeReplyObject(h);
    return arr;
}

/* Every queue key found, plus the configured queues and the workers'
 * queues, which are shown with length 0 when empty (an empty list has no
 * key in Redis, yet an idle queue is still worth seeing). */
static json_object *stats_queues(redisContext *c, const cli_ctx *ctx, json_object *workers,
                                 int *failed) {
    const char *prefix = cli_ctx_prefix(ctx);
    stats_names names = {0};
    json_object *arr = json_object_new_array();
    if (stats_scan_queues(c, prefix, &names) < 0) *failed = 1;
    for (int i = 0; i < ctx->cfg.nqueues; i++)
        stats_names_add(&names, ctx->cfg.queues[i], strlen(ctx->cfg.queues[i]));
    for (size_t i = 0; i < json_object_array_length(workers); i++)
        stats_worker_queues(json_object_array_get_idx(workers, i), &names);
    stats_names_sort(&names);
    for (size_t i = 0; i < names.n && !*failed; i++) {
        char *key = keys_queue(prefix, names.v[i]);
        long long n = stats_llen(c, key, failed);
        free(key);
        if (n < 0) continue; /* not a list: not a queue */
        json_object *q = json_object_new_object();
        json_object_object_add(q, "name", json_object_new_string(names.v[i]));
        json_object_object_add(q, "length", json_object_new_int64(n));
        json_object_array_add(arr, q);
    }
    stats_names_free(&names);
    return arr;
}

/* Today's totals, summed over every tenant and model. */
static json_object *stats_usage(redisContext *c, const char *prefix, int *failed) {
    char today[11];
    tally rows = {0};
    tally_row sum;
    keys_day(cli_unix_ms(), today);
    if (tally_read(c, prefix, today, NULL, &rows) < 0) *failed = 1;
    tally_sum(&rows, &sum);
    tally_free(&rows);
    json_object *u = json_object_new_object();
    json_object_object_add(u, "day", json_object_new_string(today));
    for (int m = USAGE_REQUESTS; m <= USAGE_TOTAL_TOKENS; m++)
        json_object_object_add(u, usage_metric_name((usage_metric)m), json_object_new_int64(sum.m[m]));
    return u;
}

static long long stats_get_int(json_object *o, const char *key) {
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? (long long)json_object_get_int64(v) : 0;
}

/* A member of a worker's registration as text, "-" when it is absent or
 * null (the registration is whatever P:workers holds). */
static const char *stats_member_text(json_object *w, const char *key) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(w, key, &v) || !v) return "-";
    return json_object_get_string(v);
}

static void stats_text(json_object *st) {
    static const char *const qh[] = {"QUEUE", "LENGTH"};
    static const int qr[] = {0, 1};
    static const char *const wh[] = {"WORKER", "HOST", "PID", "ALIVE", "IN_FLIGHT", "QUEUES"};
    static const int wr[] = {0, 0, 1, 0, 1, 0};
    json_object *queues, *workers, *usage, *v;
    table t;
    json_object_object_get_ex(st, "queues", &queues);
    json_object_object_get_ex(st, "workers", &workers);
    json_object_object_get_ex(st, "usage", &usage);

    table_init(&t, 2, qh, qr);
    for (size_t i = 0; i < json_object_array_length(queues); i++) {
        json_object *q = json_object_array_get_idx(queues, i);
        json_object_object_get_ex(q, "name", &v);
        table_addf(&t, "%s", json_object_get_string(v));
        table_addf(&t, "%lld", stats_get_int(q, "length"));
    }
    table_print(&t, stdout);
    table_free(&t);

    putchar('\n');
    table_init(&t, 6, wh, wr);
    for (size_t i = 0; i < json_object_array_length(workers); i++) {
        json_object *w = json_object_array_get_idx(workers, i);
        buf names = {0};
        stats_names list = {0};
        json_object_object_get_ex(w, "id", &v);
        table_addf(&t, "%s", json_object_get_string(v));
        table_addf(&t, "%s", stats_member_text(w, "host"));
        table_addf(&t, "%s", stats_member_text(w, "pid"));
        json_object_object_get_ex(w, "alive", &v);
        table_addf(&t, "%s", json_object_get_boolean(v) ? "yes" : "no");
        table_addf(&t, "%lld", stats_get_int(w, "in_flight"));
        stats_worker_queues(w, &list);
        for (size_t k = 0; k < list.n; k++) {
            if (k) buf_putc(&names, ',');
            buf_puts(&names, list.v[k]);
        }
        table_addf(&t, "%s", list.n ? buf_cstr(&names) : "-");
        stats_names_free(&list);
        buf_free(&names);
    }
    table_print(&t, stdout);
    table_free(&t);

    json_object_object_get_ex(usage, "day", &v);
    printf("\ndead jobs: %lld\n", stats_get_int(st, "dead"));
    printf("today (%s): requests %lld, succeeded %lld, failed %lld, tokens %lld\n",
           json_object_get_string(v), stats_get_int(usage, "requests"),
           stats_get_int(usage, "succeeded"), stats_get_int(usage, "failed"),
           stats_get_int(usage, "total_tokens"));
}

int stats_cmd(cli_ctx *ctx, int argc, char **argv) {
    static const cli_opt opts[] = {{"json", 0, 0, 1}, {NULL, 0, 0, 0}};
    int json = 0, status, failed = 0;
    if (cli_parse_cmd(ctx, opts, argc, argv, cli_take_flag, &json, NULL, &status)) return status;
    redisContext *c = cli_redis_connect(ctx);
    if (!c) return CLI_ERR;
    const char *prefix = cli_ctx_prefix(ctx);
    json_object *st = json_object_new_object();
    json_object *workers = stats_workers(c, prefix, &failed);
    if (!failed) json_object_object_add(st, "queues", stats_queues(c, ctx, workers, &failed));
    json_object_object_add(st, "workers", workers);
    json_object_object_add(st, "dead", json_object_new_int64(failed ? 0 : stats_dead(c, prefix, &failed)));
    if (!failed) json_object_object_add(st, "usage", stats_usage(c, prefix, &failed));
    if (!failed) {
        if (json)
            cli_print_json(st);
        else
            stats_text(st);
    }
    json_object_put(st);
    redisFree(c);
    return failed ? CLI_ERR : CLI_OK;
}

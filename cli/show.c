/* show.c — `chatq get`, `chatq usage` and `chatq stats`: reading what the
 * workers wrote and printing it as JSON or as aligned tables.
 *
 * get: P:job:<id> holds only strings (SPEC §6); the JSON fields (response,
 * error, usage, metadata) are embedded as JSON values and the times and
 * attempt count as numbers, unless --raw. A value that does not parse stays
 * a string: a damaged hash is shown, not refused. The fields come in a
 * fixed order (the known ones first, the rest by name), since a hash has
 * none of its own.
 *
 * usage: P:usage:<day> fields are "<tenant>|<model>|<metric>" (SPEC §7).
 * The tenant cannot hold '|' (it ends at the first one) while a model name
 * may (OpenRouter-style names do not today, but nothing forbids it), so the
 * metric starts after the last '|' and the model is what lies between.
 * Fields of another shape, unknown metrics and non-integer values are
 * skipped.
 *
 * stats: queues are found with SCAN (never KEYS, which blocks a busy
 * Redis); workers come from P:workers, alive when P:heartbeat:<id> exists,
 * with their in-flight count summed over P:processing:<id>:<queue>. */
#include "cli/show.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/redis.h"
#include "cli/table.h"
#include "common/buf.h"
#include "common/keys.h"

static void show_print_json(json_object *o) {
    if (json_object_is_type(o, json_type_array) && !json_object_array_length(o)) {
        puts("[]"); /* json-c's pretty form of it spans two lines */
        return;
    }
    puts(json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
}

static int show_index(const char *const *list, const char *s) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], s)) return i;
    return -1;
}

/* A flag option: sets the int at arg. */
static int show_take_flag(cli_ctx *ctx, void *arg, int id, const char *val) {
    (void)ctx;
    (void)id;
    (void)val;
    *(int *)arg = 1;
    return CLI_OK;
}

/* ---- get ---- */

static const char *const show_job_order[] = {
    "id", "status", "attempts", "model", "provider", "tenant", "queue", "worker",
    "started_at", "first_token_at", "finished_at", "usage", "error", "metadata",
    "response", NULL,
};
static const char *const show_json_fields[] = {"response", "error", "usage", "metadata", NULL};
static const char *const show_int_fields[] = {"attempts", "started_at", "first_token_at",
                                              "finished_at", NULL};

/* A field of a hash reply with its place in the output. */
typedef struct show_field {
    const redisReply *name, *value;
    int rank;
} show_field;

static int show_field_cmp(const void *a, const void *b) {
    const show_field *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return strcmp(x->name->str, y->name->str);
}

/* One field's value as JSON: embedded JSON, a number, or the string. */
static json_object *show_job_value(const char *field, const redisReply *v, int raw) {
    json_object *o = NULL;
    long long n;
    if (v->type != REDIS_REPLY_STRING) return NULL;
    if (!raw && show_index(show_json_fields, field) >= 0 &&
        cli_json_parse(v->str, v->len, &o, NULL, 0) == 0)
        return o;
    if (!raw && show_index(show_int_fields, field) >= 0 &&
        cli_parse_ll(v->str, LLONG_MIN, LLONG_MAX, &n) == 0)
        return json_object_new_int64(n);
    return json_object_new_string_len(v->str, (int)v->len);
}

static json_object *show_job_object(const char *id, const redisReply *h, int raw) {
    size_t n = h->elements / 2;
    show_field *f = xcalloc(n, sizeof *f);
    for (size_t i = 0; i < n; i++) {
        f[i].name = h->element[2 * i];
        f[i].value = h->element[2 * i + 1];
        int r = show_index(show_job_order, f[i].name->str);
        f[i].rank = r >= 0 ? r : INT_MAX;
    }
    qsort(f, n, sizeof *f, show_field_cmp);
    json_object *o = json_object_new_object();
    if (!cli_redis_hash_get(h, "id")) json_object_object_add(o, "id", json_object_new_string(id));
    for (size_t i = 0; i < n; i++)
        json_object_object_add(o, f[i].name->str, show_job_value(f[i].name->str, f[i].value, raw));
    free(f);
    return o;
}

int show_get_cmd(cli_ctx *ctx, int argc, char **argv) {
    const char *id = NULL;
    int raw = 0, status;
    static const cli_opt opts[] = {{"raw", 0, 0, 1}, {NULL, 0, 0, 0}};
    if (cli_parse_cmd(ctx, opts, argc, argv, show_take_flag, &raw, &id, &status)) return status;
    redisContext *c = cli_redis_connect(ctx);
    if (!c) return CLI_ERR;
    char *key = keys_job(cli_ctx_prefix(ctx), id);
    redisReply *h = cli_redis_cmd(c, "HGETALL %s", key);
    free(key);
    status = CLI_ERR;
    if (h && (h->type != REDIS_REPLY_ARRAY || h->elements == 0)) {
        cli_fail("no job %s", id);
    } else if (h) {
        json_object *o = show_job_object(id, h, raw);
        show_print_json(o);
        json_object_put(o);
        status = CLI_OK;
    }
    if (h) freeReplyObject(h);
    redisFree(c);
    return status;
}

/* ---- usage counters ---- */

enum {
    M_REQUESTS, M_SUCCEEDED, M_FAILED, M_PROMPT, M_COMPLETION, M_TOTAL, M_CACHED,
    M_REASONING, M_COST, SHOW_NMETRICS,
};
static const char *const show_metrics[SHOW_NMETRICS + 1] = {
    "requests", "succeeded", "failed", "prompt_tokens", "completion_tokens",
    "total_tokens", "cached_tokens", "reasoning_tokens", "cost_micro_usd", NULL,
};

typedef struct show_tally {
    char *tenant, *model;
    long long m[SHOW_NMETRICS];
    int has_cost;  /* a cost_micro_usd field was there */
} show_tally;

typedef struct show_tallies {
    show_tally *v;
    size_t n, cap;
} show_tallies;

static void show_tallies_free(show_tallies *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].tenant);
        free(r->v[i].model);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* One counter field, split; the strings point into the HGETALL reply. */
typedef struct show_counter {
    const char *tenant, *model;
    size_t tlen, mlen;
    int metric;
    long long value;
} show_counter;

/* Splits a "<tenant>|<model>|<metric>" field. Returns 0, or -1 for a field
 * of another shape, an unknown metric or a value that is not an integer. */
static int show_counter_parse(const redisReply *k, const redisReply *v, show_counter *out) {
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) return -1;
    const char *first = memchr(k->str, '|', k->len), *last = strrchr(k->str, '|');
    if (!first || last == first || strlen(k->str) != k->len) return -1;
    out->metric = show_index(show_metrics, last + 1);
    if (out->metric < 0 || cli_parse_ll(v->str, LLONG_MIN, LLONG_MAX, &out->value) < 0)
        return -1;
    out->tenant = k->str;
    out->tlen = (size_t)(first - k->str);
    out->model = first + 1;
    out->mlen = (size_t)(last - first - 1);
    return 0;
}

static int show_bytes_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

/* By tenant, then model: the order of the output rows. */
static int show_counter_cmp(const void *a, const void *b) {
    const show_counter *x = a, *y = b;
    int c = show_bytes_cmp(x->tenant, x->tlen, y->tenant, y->tlen);
    return c ? c : show_bytes_cmp(x->model, x->mlen, y->model, y->mlen);
}

/* Adds the sorted counters to rows, one row per (tenant, model). */
static void show_tally_counters(const show_counter *cs, size_t n, show_tallies *out) {
    show_tally *row = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!row || show_counter_cmp(&cs[i], &cs[i - 1])) {
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 16;
                out->v = xrealloc(out->v, out->cap * sizeof *out->v);
            }
            row = &out->v[out->n++];
            memset(row, 0, sizeof *row);
            row->tenant = xstrndup(cs[i].tenant, cs[i].tlen);
            row->model = xstrndup(cs[i].model, cs[i].mlen);
        }
        row->m[cs[i].metric] += cs[i].value;
        if (cs[i].metric == M_COST) row->has_cost = 1;
    }
}

/* Reads P:usage:<day> into rows sorted by tenant and model (sorting the
 * fields first keeps this O(n log n) however many tenants there are).
 * Returns 0 or -1. */
static int show_usage_read(redisContext *c, const char *prefix, const char *day,
                           const char *tenant_filter, show_tallies *out) {
    char *key = keys_usage(prefix, day);
    redisReply *h = cli_redis_cmd(c, "HGETALL %s", key);
    free(key);
    if (!h) return -1;
    size_t n = 0, max = h->type == REDIS_REPLY_ARRAY ? h->elements / 2 : 0;
    show_counter *cs = xcalloc(max, sizeof *cs);
    for (size_t i = 0; i < max; i++) {
        show_counter *sc = &cs[n];
        if (show_counter_parse(h->element[2 * i], h->element[2 * i + 1], sc) < 0) continue;
        if (tenant_filter && show_bytes_cmp(tenant_filter, strlen(tenant_filter), sc->tenant,
                                            sc->tlen))
            continue;
        n++;
    }
    if (n) qsort(cs, n, sizeof *cs, show_counter_cmp);
    show_tally_counters(cs, n, out);
    free(cs);
    freeReplyObject(h);
    return 0;
}

static void show_usage_sum(const show_tallies *r, show_tally *sum) {
    memset(sum, 0, sizeof *sum);
    for (size_t i = 0; i < r->n; i++) {
        for (int m = 0; m < SHOW_NMETRICS; m++) sum->m[m] += r->v[i].m[m];
        sum->has_cost |= r->v[i].has_cost;
    }
}

/* 1 when s is a real calendar day written YYYY-MM-DD. */
static int show_valid_day(const char *s) {
    for (int i = 0; i < 10; i++) {
        int dash = i == 4 || i == 7;
        if (!s[i] || (dash ? s[i] != '-' : (s[i] < '0' || s[i] > '9'))) return 0;
    }
    if (s[10]) return 0;
    struct tm tm = {0};
    tm.tm_year = atoi(s) - 1900;
    tm.tm_mon = atoi(s + 5) - 1;
    tm.tm_mday = atoi(s + 8);
    int y = tm.tm_year, mo = tm.tm_mon, d = tm.tm_mday;
    time_t t = timegm(&tm); /* normalises 02-30 to 03-02: compare back */
    return t != (time_t)-1 && tm.tm_year == y && tm.tm_mon == mo && tm.tm_mday == d;
}

/* Micro-dollars as dollars with 6 decimals, without floating point. */
static void show_usd(char *out, size_t n, long long micro) {
    unsigned long long a = micro < 0 ? 0ULL - (unsigned long long)micro : (unsigned long long)micro;
    snprintf(out, n, "%s%llu.%06llu", micro < 0 ? "-" : "", a / 1000000, a % 1000000);
}

static void show_usage_json(const show_tallies *r, const char *day) {
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < r->n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "day", json_object_new_string(day));
        json_object_object_add(o, "tenant", json_object_new_string(r->v[i].tenant));
        json_object_object_add(o, "model", json_object_new_string(r->v[i].model));
        for (int m = 0; m < SHOW_NMETRICS; m++)
            json_object_object_add(o, show_metrics[m], json_object_new_int64(r->v[i].m[m]));
        json_object_array_add(arr, o);
    }
    show_print_json(arr);
    json_object_put(arr);
}

static void show_usage_cells(table *t, const show_tally *row, const char *tenant,
                             const char *model) {
    char usd[48];
    table_addf(t, "%s", tenant);
    table_addf(t, "%s", model);
    for (int m = 0; m < M_COST; m++) table_addf(t, "%lld", row->m[m]);
    if (row->has_cost) show_usd(usd, sizeof usd, row->m[M_COST]);
    table_addf(t, "%s", row->has_cost ? usd : "-");
}

static void show_usage_table(const show_tallies *r) {
    static const char *const headers[] = {"TENANT", "MODEL", "REQUESTS", "SUCCEEDED", "FAILED",
                                          "PROMPT", "COMPLETION", "TOTAL", "CACHED",
                                          "REASONING", "COST_USD"};
    static const int right[] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    table t;
    show_tally sum;
    table_init(&t, 11, headers, right);
    for (size_t i = 0; i < r->n; i++)
        show_usage_cells(&t, &r->v[i], r->v[i].tenant[0] ? r->v[i].tenant : "-", r->v[i].model);
    show_usage_sum(r, &sum);
    show_usage_cells(&t, &sum, "TOTAL", "");
    table_print(&t, stdout);
    table_free(&t);
}

typedef struct show_usage_args {
    const char *day, *tenant;
    int json;
} show_usage_args;

static int show_usage_take(cli_ctx *ctx, void *arg, int id, const char *val) {
    show_usage_args *a = arg;
    if (id == 1 && !show_valid_day(val))
        return cli_usage_fail(ctx, "--day must be a date written YYYY-MM-DD, not '%s'", val);
    if (id == 1) a->day = val;
    if (id == 2) a->tenant = val;
    if (id == 3) a->json = 1;
    return CLI_OK;
}

int show_usage_cmd(cli_ctx *ctx, int argc, char **argv) {
    static const cli_opt opts[] = {
        {"day", 0, 1, 1}, {"tenant", 0, 1, 2}, {"json", 0, 0, 3}, {NULL, 0, 0, 0},
    };
    show_usage_args a = {0};
    show_tallies rows = {0};
    char today[11];
    int status;
    if (cli_parse_cmd(ctx, opts, argc, argv, show_usage_take, &a, NULL, &status)) return status;
    keys_day(cli_unix_ms(), today);
    const char *day = a.day ? a.day : today;
    redisContext *c = cli_redis_connect(ctx);
    if (!c) return CLI_ERR;
    status = CLI_ERR;
    if (show_usage_read(c, cli_ctx_prefix(ctx), day, a.tenant, &rows) == 0) {
        if (a.json)
            show_usage_json(&rows, day);
        else
            show_usage_table(&rows);
        status = CLI_OK;
    }
    show_tallies_free(&rows);
    redisFree(c);
    return status;
}

/* ---- stats ---- */

typedef struct show_names {
    char **v;
    size_t n, cap;
} show_names;

static void show_names_add(show_names *s, const char *str, size_t len) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = xstrndup(str, len);
}

static int show_str_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts and drops duplicates (SCAN may return a key twice). */
static void show_names_sort(show_names *s) {
    size_t w = 0;
    if (s->n) qsort(s->v, s->n, sizeof *s->v, show_str_cmp);
    for (size_t i = 0; i < s->n; i++) {
        if (w && !strcmp(s->v[w - 1], s->v[i]))
            free(s->v[i]);
        else
            s->v[w++] = s->v[i];
    }
    s->n = w;
}

static void show_names_free(show_names *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* The glob that matches "<prefix>:queue:*" literally in its prefix part. */
static char *show_queue_glob(const char *prefix) {
    buf b = {0};
    for (const char *p = prefix; *p; p++) {
        if (strchr("*?[]\\", *p)) buf_putc(&b, '\\');
        buf_putc(&b, *p);
    }
    buf_puts(&b, ":queue:*");
    return buf_steal(&b);
}

/* The queue names (without the key prefix), sorted. 0 or -1. */
static int show_scan_queues(redisContext *c, const char *prefix, show_names *out) {
    char *glob = show_queue_glob(prefix), *cursor = xstrdup("0");
    size_t skip = strlen(prefix) + strlen(":queue:");
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
        for (size_t i = 0; i < keys->elements; i++)
            if (keys->element[i]->type == REDIS_REPLY_STRING && keys->element[i]->len > skip)
                show_names_add(out, keys->element[i]->str + skip, keys->element[i]->len - skip);
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    free(glob);
    free(cursor);
    show_names_sort(out);
    return rc;
}

/* LLEN, or -1 when the key is not a list or the command failed (then
 * *failed is set when the connection is gone). */
static long long show_llen(redisContext *c, const char *key, int *failed) {
    redisReply *r = cli_redis_try(c, "LLEN %s", key);
    long long n = -1;
    if (!r) *failed = 1;
    if (r && r->type == REDIS_REPLY_INTEGER) n = r->integer;
    if (r) freeReplyObject(r);
    return n;
}

/* The worker's queues: a JSON array of names, or "a,b,c". */
static void show_worker_queues(json_object *info, show_names *out) {
    json_object *q = NULL;
    if (!json_object_object_get_ex(info, "queues", &q)) return;
    if (json_object_is_type(q, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(q); i++) {
            json_object *e = json_object_array_get_idx(q, i);
            if (json_object_is_type(e, json_type_string))
                show_names_add(out, json_object_get_string(e),
                               (size_t)json_object_get_string_len(e));
        }
    } else if (json_object_is_type(q, json_type_string)) {
        const char *s = json_object_get_string(q);
        while (*s) {
            size_t n = strcspn(s, ",");
            if (n) show_names_add(out, s, n);
            s += n + (s[n] == ',');
        }
    }
}

/* One worker: its registration JSON, plus id, alive and in_flight. */
static json_object *show_stats_worker(redisContext *c, const char *prefix, const redisReply *id,
                                      const redisReply *val, int *failed) {
    json_object *info = NULL, *w = json_object_new_object();
    show_names queues = {0};
    long long in_flight = 0;
    json_object_object_add(w, "id", json_object_new_string_len(id->str, (int)id->len));
    if (val->type == REDIS_REPLY_STRING &&
        cli_json_parse(val->str, val->len, &info, NULL, 0) == 0 &&
        json_object_is_type(info, json_type_object)) {
        json_object_object_foreach(info, k, v) {
            if (strcmp(k, "id") && strcmp(k, "alive") && strcmp(k, "in_flight"))
                json_object_object_add(w, k, json_object_get(v));
        }
        show_worker_queues(info, &queues);
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
        long long n = show_llen(c, key, failed);
        free(key);
        if (n > 0) in_flight += n;
    }
    json_object_object_add(w, "in_flight", json_object_new_int64(in_flight));
    show_names_free(&queues);
    return w;
}

static json_object *show_stats_workers(redisContext *c, const char *prefix, int *failed) {
    json_object *arr = json_object_new_array();
    char *key = keys_workers(prefix);
    redisReply *h = cli_redis_cmd(c, "HGETALL %s", key);
    free(key);
    if (!h) {
        *failed = 1;
        return arr;
    }
    /* The (id, registration) pairs, sorted by id. */
    size_t n = h->type == REDIS_REPLY_ARRAY ? h->elements / 2 : 0;
    show_field *f = xcalloc(n, sizeof *f);
    for (size_t i = 0; i < n; i++) {
        f[i].name = h->element[2 * i];
        f[i].value = h->element[2 * i + 1];
    }
    if (n) qsort(f, n, sizeof *f, show_field_cmp);
    for (size_t i = 0; i < n && !*failed; i++)
        if (f[i].name->type == REDIS_REPLY_STRING)
            json_object_array_add(arr, show_stats_worker(c, prefix, f[i].name, f[i].value, failed));
    free(f);
    freeReplyObject(h);
    return arr;
}

/* Every queue key found, plus the configured queues and the workers'
 * queues, which are shown with length 0 when empty (an empty list has no
 * key in Redis, yet an idle queue is still worth seeing). */
static json_object *show_stats_queues(redisContext *c, const cli_ctx *ctx, json_object *workers,
                                      int *failed) {
    const char *prefix = cli_ctx_prefix(ctx);
    show_names names = {0};
    json_object *arr = json_object_new_array();
    if (show_scan_queues(c, prefix, &names) < 0) *failed = 1;
    for (int i = 0; i < ctx->cfg.nqueues; i++)
        show_names_add(&names, ctx->cfg.queues[i], strlen(ctx->cfg.queues[i]));
    for (size_t i = 0; i < json_object_array_length(workers); i++)
        show_worker_queues(json_object_array_get_idx(workers, i), &names);
    show_names_sort(&names);
    for (size_t i = 0; i < names.n && !*failed; i++) {
        char *key = keys_queue(prefix, names.v[i]);
        long long n = show_llen(c, key, failed);
        free(key);
        if (n < 0) continue; /* not a list: not a queue */
        json_object *q = json_object_new_object();
        json_object_object_add(q, "name", json_object_new_string(names.v[i]));
        json_object_object_add(q, "length", json_object_new_int64(n));
        json_object_array_add(arr, q);
    }
    show_names_free(&names);
    return arr;
}

static json_object *show_stats_usage(redisContext *c, const char *prefix, int *failed) {
    char today[11];
    show_tallies rows = {0};
    show_tally sum;
    keys_day(cli_unix_ms(), today);
    if (show_usage_read(c, prefix, today, NULL, &rows) < 0) *failed = 1;
    show_usage_sum(&rows, &sum);
    show_tallies_free(&rows);
    json_object *u = json_object_new_object();
    json_object_object_add(u, "day", json_object_new_string(today));
    for (int m = M_REQUESTS; m <= M_TOTAL; m++)
        json_object_object_add(u, show_metrics[m], json_object_new_int64(sum.m[m]));
    return u;
}

static long long show_get_int(json_object *o, const char *key) {
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? (long long)json_object_get_int64(v) : 0;
}

static void show_stats_text(json_object *st) {
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
        table_addf(&t, "%lld", show_get_int(q, "length"));
    }
    table_print(&t, stdout);
    table_free(&t);

    putchar('\n');
    table_init(&t, 6, wh, wr);
    for (size_t i = 0; i < json_object_array_length(workers); i++) {
        json_object *w = json_object_array_get_idx(workers, i);
        buf names = {0};
        show_names list = {0};
        json_object_object_get_ex(w, "id", &v);
        table_addf(&t, "%s", json_object_get_string(v));
        int has_host = json_object_object_get_ex(w, "host", &v);
        table_addf(&t, "%s", has_host ? json_object_get_string(v) : "-");
        if (json_object_object_get_ex(w, "pid", &v))
            table_addf(&t, "%s", json_object_get_string(v));
        else
            table_addf(&t, "-");
        json_object_object_get_ex(w, "alive", &v);
        table_addf(&t, "%s", json_object_get_boolean(v) ? "yes" : "no");
        table_addf(&t, "%lld", show_get_int(w, "in_flight"));
        show_worker_queues(w, &list);
        for (size_t k = 0; k < list.n; k++) {
            if (k) buf_putc(&names, ',');
            buf_puts(&names, list.v[k]);
        }
        table_addf(&t, "%s", list.n ? buf_cstr(&names) : "-");
        show_names_free(&list);
        buf_free(&names);
    }
    table_print(&t, stdout);
    table_free(&t);

    json_object_object_get_ex(usage, "day", &v);
    printf("\ndead jobs: %lld\n", show_get_int(st, "dead"));
    printf("today (%s): requests %lld, succeeded %lld, failed %lld, tokens %lld\n",
           json_object_get_string(v), show_get_int(usage, "requests"),
           show_get_int(usage, "succeeded"), show_get_int(usage, "failed"),
           show_get_int(usage, "total_tokens"));
}

int show_stats_cmd(cli_ctx *ctx, int argc, char **argv) {
    static const cli_opt opts[] = {{"json", 0, 0, 1}, {NULL, 0, 0, 0}};
    int json = 0, status, failed = 0;
    if (cli_parse_cmd(ctx, opts, argc, argv, show_take_flag, &json, NULL, &status)) return status;
    redisContext *c = cli_redis_connect(ctx);
    if (!c) return CLI_ERR;
    const char *prefix = cli_ctx_prefix(ctx);
    json_object *st = json_object_new_object();
    json_object *workers = show_stats_workers(c, prefix, &failed);
    if (!failed) json_object_object_add(st, "queues", show_stats_queues(c, ctx, workers, &failed));
    json_object_object_add(st, "workers", workers);
    char *dead = keys_dead(prefix);
    long long ndead = failed ? 0 : show_llen(c, dead, &failed);
    free(dead);
    json_object_object_add(st, "dead", json_object_new_int64(ndead > 0 ? ndead : 0));
    if (!failed) json_object_object_add(st, "usage", show_stats_usage(c, prefix, &failed));
    if (!failed) {
        if (json)
            show_print_json(st);
        else
            show_stats_text(st);
    }
    json_object_put(st);
    redisFree(c);
    return failed ? CLI_ERR : CLI_OK;
}

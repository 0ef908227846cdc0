/* tally.c — reading one day's usage counters into rows; see tally.h.
 *
 * The fields are split in place by usage_field_parse() (common/usage.h), sorted by (tenant, model) and then added
 * up row by row, which keeps the whole read O(n log n) however many
 * tenants there are. */
#include "cli/tally.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/redis.h"
#include "common/buf.h"
#include "common/keys.h"

/* One counter field, split; the strings point into the HGETALL reply. */
typedef struct tally_counter {
    const char *tenant, *model;
    size_t tlen, mlen;
    int metric;
    long long value;
} tally_counter;

/* a + b for two counts (>= 0), LLONG_MAX when the sum would pass it: a
 * counter anyone can HSET must not make a total overflow. */
static long long tally_add(long long a, long long b) {
    return a > LLONG_MAX - b ? LLONG_MAX : a + b;
}

/* Splits a "<tenant>|<model>|<metric>" field (common/usage.h reads the
 * field format) and reads its value. Returns 0, or -1 for a field of another
 * shape, an unknown metric or a value that is not a count: a whole number
 * from 0 (HINCRBY only ever adds counts, so a negative one is damage). */
static int tally_field_parse(const redisReply *k, const redisReply *v, tally_counter *out) {
    usage_field_parts f;
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) return -1;
    if (usage_field_parse(k->str, k->len, &f) < 0 ||
        cli_parse_ll(v->str, 0, LLONG_MAX, &out->value) < 0)
        return -1;
    out->metric = (int)f.metric;
    out->tenant = f.tenant;
    out->tlen = f.tenant_len;
    out->model = f.model;
    out->mlen = f.model_len;
    return 0;
}

static int tally_bytes_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

/* By tenant, then model: the order of the rows. */
static int tally_counter_cmp(const void *a, const void *b) {
    const tally_counter *x = a, *y = b;
    int c = tally_bytes_cmp(x->tenant, x->tlen, y->tenant, y->tlen);
    return c ? c : tally_bytes_cmp(x->model, x->mlen, y->model, y->mlen);
}

/* Adds the sorted counters to rows, one row per (tenant, model). */
static void tally_add_counters(const tally_counter *cs, size_t n, tally *out) {
    tally_row *row = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!row || tally_counter_cmp(&cs[i], &cs[i - 1])) {
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 16;
                out->v = xrealloc(out->v, out->cap * sizeof *out->v);
            }
            row = &out->v[out->n++];
            memset(row, 0, sizeof *row);
            row->tenant = xstrndup(cs[i].tenant, cs[i].tlen);
            row->model = xstrndup(cs[i].model, cs[i].mlen);
        }
        row->m[cs[i].metric] = tally_add(row->m[cs[i].metric], cs[i].value);
        if (cs[i].metric == USAGE_COST_MICRO_USD) row->has_cost = 1;
    }
}

/* One line on stderr for the fields of the hash that are not counters:
 * they are left out of every row, and the user should know the data is
 * damaged. */
static void tally_warn(const char *prefix, const char *day, size_t skipped,
                       const redisReply *first) {
    char *key = keys_usage(prefix, day);
    buf q = {0};
    const char *name = first->type == REDIS_REPLY_STRING ? cli_quote(&q, first->str, first->len, 80)
                                                         : "(not a string)";
    fprintf(stderr, "chatq: %s: skipped %zu field%s that %s not a <tenant>|<model>|<metric> "
            "counter with a whole number >= 0, such as %s\n", key, skipped,
            skipped == 1 ? "" : "s", skipped == 1 ? "is" : "are", name);
    buf_free(&q);
    free(key);
}

int tally_read(redisContext *c, const char *prefix, const char *day, const char *tenant_filter,
               tally *out) {
    char *key = keys_usage(prefix, day);
    redisReply *h = cli_redis_cmd(c, "HGETALL %s", key);
    free(key);
    if (!h) return -1;
    size_t n = 0, skipped = 0, max = h->type == REDIS_REPLY_ARRAY ? h->elements / 2 : 0;
    const redisReply *first_skipped = NULL;
    tally_counter *cs = xcalloc(max, sizeof *cs);
    for (size_t i = 0; i < max; i++) {
        tally_counter *tc = &cs[n];
        if (tally_field_parse(h->element[2 * i], h->element[2 * i + 1], tc) < 0) {
            if (!skipped++) first_skipped = h->element[2 * i];
            continue;
        }
        if (tenant_filter &&
            tally_bytes_cmp(tenant_filter, strlen(tenant_filter), tc->tenant, tc->tlen))
            continue;
        n++;
    }
    if (n) qsort(cs, n, sizeof *cs, tally_counter_cmp);
    tally_add_counters(cs, n, out);
    if (skipped) tally_warn(prefix, day, skipped, first_skipped);
    free(cs);
    freeReplyObject(h);
    return 0;
}

void tally_sum(const tally *t, tally_row *sum) {
    memset(sum, 0, sizeof *sum);
    for (size_t i = 0; i < t->n; i++) {
        for (int m = 0; m < USAGE_NMETRICS; m++) sum->m[m] = tally_add(sum->m[m], t->v[i].m[m]);
        sum->has_cost |= t->v[i].has_cost;
    }
}

void tally_free(tally *t) {
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].tenant);
        free(t->v[i].model);
    }
    free(t->v);
    memset(t, 0, sizeof *t);
}

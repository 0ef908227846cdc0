/* tally.h — one day's usage counters, read from P:usage:<day> and summed
 * into one row per (tenant, model), for `chatq usage` and `chatq stats`.
 *
 * The workers count with HINCRBY on fields "<tenant>|<model>|<metric>"
 * (docs/protocol.md §7); tally_read() splits each field (one function does it:
 * tally_field_parse() in tally.c), skips those of another shape, unknown
 * metrics and values that are not whole numbers >= 0 (anyone can write the
 * hash), saying on stderr how many it skipped, and returns the rows sorted
 * by tenant, then model. Sums saturate at LLONG_MAX instead of overflowing.
 *
 * Ownership: a tally owns its rows and their strings (tally_free()). */
#ifndef CHATQ_CLI_TALLY_H
#define CHATQ_CLI_TALLY_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "common/usage.h"


typedef struct tally_row {
    char *tenant, *model;      /* the tenant is "" when the jobs had none */
    long long m[USAGE_NMETRICS]; /* by usage_metric, the order of the output */
    int has_cost;              /* a cost_micro_usd field was there */
} tally_row;

typedef struct tally {
    tally_row *v;
    size_t n, cap;
} tally;

/* Adds the counters of `day` (YYYY-MM-DD) to *out, only the tenant's when
 * tenant_filter is not NULL. Returns 0, or -1 when the command failed
 * (printed). */
int tally_read(redisContext *c, const char *prefix, const char *day, const char *tenant_filter,
               tally *out);
/* The sum of all rows into *sum (its strings NULL). */
void tally_sum(const tally *t, tally_row *sum);
void tally_free(tally *t);

#endif

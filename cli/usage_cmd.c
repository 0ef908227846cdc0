/* usage_cmd.c — `chatq usage`: the counters of one day (today in UTC by
 * default), one row per (tenant, model) as tally.c reads them, printed as
 * an aligned table with a TOTAL row, or as a JSON array of objects with
 * every metric (--json). The cost is in micro-dollars in JSON and in
 * dollars in the table, "-" when the row has no cost counter (the workers
 * count a cost only for models with a price). */
#include "cli/usage_cmd.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli/redis.h"
#include "cli/table.h"
#include "cli/tally.h"
#include "common/keys.h"

/* 1 when s is a real calendar day written YYYY-MM-DD. */
static int usage_valid_day(const char *s) {
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
static void usage_usd(char *out, size_t n, long long micro) {
    unsigned long long a = micro < 0 ? 0ULL - (unsigned long long)micro : (unsigned long long)micro;
    snprintf(out, n, "%s%llu.%06llu", micro < 0 ? "-" : "", a / 1000000, a % 1000000);
}

static void usage_json(const tally *t, const char *day) {
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < t->n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "day", json_object_new_string(day));
        json_object_object_add(o, "tenant", json_object_new_string(t->v[i].tenant));
        json_object_object_add(o, "model", json_object_new_string(t->v[i].model));
        for (int m = 0; m < USAGE_NMETRICS; m++)
            json_object_object_add(o, usage_metric_name((usage_metric)m), json_object_new_int64(t->v[i].m[m]));
        json_object_array_add(arr, o);
    }
    cli_print_json(arr);
    json_object_put(arr);
}

static void usage_cells(table *t, const tally_row *row, const char *tenant, const char *model) {
    char usd[48];
    table_addf(t, "%s", tenant);
    table_addf(t, "%s", model);
    for (int m = 0; m < USAGE_COST_MICRO_USD; m++) table_addf(t, "%lld", row->m[m]);
    if (row->has_cost) usage_usd(usd, sizeof usd, row->m[USAGE_COST_MICRO_USD]);
    table_addf(t, "%s", row->has_cost ? usd : "-");
}

static void usage_table(const tally *rows) {
    static const char *const headers[] = {"TENANT", "MODEL", "REQUESTS", "SUCCEEDED", "FAILED",
                                          "PROMPT", "COMPLETION", "TOTAL", "CACHED",
                                          "REASONING", "COST_USD"};
    static const int right[] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    table t;
    tally_row sum;
    table_init(&t, 11, headers, right);
    for (size_t i = 0; i < rows->n; i++)
        usage_cells(&t, &rows->v[i], rows->v[i].tenant[0] ? rows->v[i].tenant : "-",
                    rows->v[i].model);
    tally_sum(rows, &sum);
    usage_cells(&t, &sum, "TOTAL", "");
    table_print(&t, stdout);
    table_free(&t);
}

typedef struct usage_args {
    const char *day, *tenant;
    int json;
} usage_args;

static int usage_take(cli_ctx *ctx, void *arg, int id, const char *val) {
    usage_args *a = arg;
    if (id == 1 && !usage_valid_day(val))
        return cli_usage_fail(ctx, "--day must be a date written YYYY-MM-DD, not '%s'", val);
    if (id == 1) a->day = val;
    if (id == 2) a->tenant = val;
    if (id == 3) a->json = 1;
    return CLI_OK;
}

int usage_cmd(cli_ctx *ctx, int argc, char **argv) {
    static const cli_opt opts[] = {
        {"day", 0, 1, 1}, {"tenant", 0, 1, 2}, {"json", 0, 0, 3}, {NULL, 0, 0, 0},
    };
    usage_args a = {0};
    tally rows = {0};
    char today[11];
    int status;
    if (cli_parse_cmd(ctx, opts, argc, argv, usage_take, &a, NULL, &status)) return status;
    keys_day(cli_unix_ms(), today);
    const char *day = a.day ? a.day : today;
    redisContext *c = cli_redis_connect(ctx);
    if (!c) return CLI_ERR;
    status = CLI_ERR;
    if (tally_read(c, cli_ctx_prefix(ctx), day, a.tenant, &rows) == 0) {
        if (a.json)
            usage_json(&rows, day);
        else
            usage_table(&rows);
        status = CLI_OK;
    }
    tally_free(&rows);
    redisFree(c);
    return status;
}

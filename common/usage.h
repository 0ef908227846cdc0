/* usage.h — usage accounting: the metrics, the fields that hold them, and
 * token counts from an OpenAI `usage` object (docs/protocol.md §7).
 *
 * Counters. For every job that ends, FINISH adds to the hash P:usage:<day>
 * (keys_usage) one field per metric, named "<tenant>|<model>|<metric>":
 * tenant "" when the job has none (a tenant cannot hold '|'), model as the
 * job asked for it (it may hold '|': the metric starts after the last one).
 * usage_field_prefix() builds "<tenant>|<model>|", usage_field() a whole
 * field, usage_field_parse() splits one back. The FINISH script appends the
 * metric name to the prefix in Lua, and RECOVER writes the same format for the
 * jobs it fails (common/scripts.c).
 *
 * Counts from a usage object:
 *   prompt_tokens, completion_tokens, total_tokens,
 *   prompt_tokens_details.cached_tokens     -> cached
 *   completion_tokens_details.reasoning_tokens -> reasoning
 * Missing or non-integer fields count 0; total defaults to prompt+completion
 * when absent. Some providers send numbers as doubles (12.0): they count.
 * Every count, and the cost, is clamped into [0, USAGE_MAX_COUNT]: they come
 * from the upstream and feed HINCRBY, which fails (half way through FINISH)
 * once a counter would pass INT64_MAX. */
#ifndef CHATQ_USAGE_H
#define CHATQ_USAGE_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

/* The metrics, in the order `chatq usage` shows them. */
typedef enum usage_metric {
    USAGE_REQUESTS,
    USAGE_SUCCEEDED,
    USAGE_FAILED,
    USAGE_PROMPT_TOKENS,
    USAGE_COMPLETION_TOKENS,
    USAGE_TOTAL_TOKENS,
    USAGE_CACHED_TOKENS,
    USAGE_REASONING_TOKENS,
    USAGE_COST_MICRO_USD, /* only when the provider has a price for the model */
    USAGE_NMETRICS
} usage_metric;

/* The name of metric m as fields hold it ("requests", "prompt_tokens", ...). */
const char *usage_metric_name(usage_metric m);
/* Reads a metric name of len bytes: 0 with *out set, or -1 when unknown. */
int usage_metric_parse(const char *s, size_t len, usage_metric *out);

/* "<tenant>|<model>|", the start of every field of that pair; NULL counts as
 * "". The caller frees it. */
char *usage_field_prefix(const char *tenant, const char *model);
/* The whole field "<tenant>|<model>|<metric>". The caller frees it. */
char *usage_field(const char *tenant, const char *model, usage_metric m);

/* A field split into its parts; tenant and model point into the field. */
typedef struct usage_field_parts {
    const char *tenant;
    size_t tenant_len;
    const char *model;
    size_t model_len;
    usage_metric metric;
} usage_field_parts;

/* Splits field f (len bytes, need not be NUL-terminated): the tenant ends at
 * the first '|', the metric starts after the last one, the model is what lies
 * between. Returns 0, or -1 for a field of another shape (fewer than two '|',
 * a NUL byte) or an unknown metric. */
int usage_field_parse(const char *f, size_t len, usage_field_parts *out);

/* The most one job adds to any counter: 1e12 tokens (or micro-USD). */
#define USAGE_MAX_COUNT 1000000000000LL

typedef struct usage_counts {
    int64_t prompt;
    int64_t completion;
    int64_t total;
    int64_t cached;
    int64_t reasoning;
} usage_counts;

/* Fills *out from `usage` (which may be NULL: all zero). */
void usage_extract(json_object *usage, usage_counts *out);

/* The cost in micro-USD of counts u at prices in USD per million tokens
 * (which is micro-USD per token): uncached prompt tokens at `input`, cached
 * ones at `cached_input`, completion tokens (reasoning included, as the
 * upstream counts them) at `output`; rounded to the nearest micro-dollar,
 * and clamped into [0, USAGE_MAX_COUNT]. */
int64_t usage_cost_micro_usd(const usage_counts *u, double input, double cached_input,
                             double output);

#endif

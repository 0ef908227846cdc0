/* usage.h — token counts from an OpenAI `usage` object (SPEC §7).
 *
 *   prompt_tokens, completion_tokens, total_tokens,
 *   prompt_tokens_details.cached_tokens     -> cached
 *   completion_tokens_details.reasoning_tokens -> reasoning
 * Missing or non-integer fields count 0; total defaults to prompt+completion
 * when absent. Some providers send numbers as doubles (12.0): they count. */
#ifndef CHATQ_USAGE_H
#define CHATQ_USAGE_H

#include <json-c/json.h>
#include <stdint.h>

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
 * upstream counts them) at `output`; rounded to the nearest micro-dollar. */
int64_t usage_cost_micro_usd(const usage_counts *u, double input, double cached_input,
                             double output);

#endif

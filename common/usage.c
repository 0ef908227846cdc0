/* usage.c — usage metrics and their fields, and token counts from an OpenAI
 * `usage` object; see usage.h.
 *
 * The metric names are one table, usage_metric_names[], indexed by
 * usage_metric; fields are split with memchr/memrchr, so a field is read by
 * its length and never past it.
 *
 * Every count goes through one reader, usage_count(), so the tolerance rules
 * live in one place: json-c integers are taken as they are; doubles count
 * when they hold a whole number that fits in int64 (some providers send
 * 12.0); anything else — missing, null, strings, 12.5, objects — counts 0.
 * Negative numbers count 0 as well: the counts feed HINCRBY on the usage
 * hash, and a provider's bogus -1 must not subtract from a tenant's totals;
 * numbers above USAGE_MAX_COUNT count USAGE_MAX_COUNT, so no upstream can
 * make a counter overflow.
 * We never call json_object_get_int64() on a non-number, because json-c would
 * happily convert "12" or 12.7 for us. */
#include "common/usage.h"

#include <math.h>
#include <string.h>

#include "common/buf.h"

static const char *const usage_metric_names[USAGE_NMETRICS] = {
    [USAGE_REQUESTS] = "requests",
    [USAGE_SUCCEEDED] = "succeeded",
    [USAGE_FAILED] = "failed",
    [USAGE_PROMPT_TOKENS] = "prompt_tokens",
    [USAGE_COMPLETION_TOKENS] = "completion_tokens",
    [USAGE_TOTAL_TOKENS] = "total_tokens",
    [USAGE_CACHED_TOKENS] = "cached_tokens",
    [USAGE_REASONING_TOKENS] = "reasoning_tokens",
    [USAGE_COST_MICRO_USD] = "cost_micro_usd",
};

const char *usage_metric_name(usage_metric m) {
    return (int)m >= 0 && m < USAGE_NMETRICS ? usage_metric_names[m] : "unknown";
}

int usage_metric_parse(const char *s, size_t len, usage_metric *out) {
    for (int i = 0; i < USAGE_NMETRICS; i++) {
        if (strlen(usage_metric_names[i]) == len && memcmp(s, usage_metric_names[i], len) == 0) {
            *out = (usage_metric)i;
            return 0;
        }
    }
    return -1;
}

char *usage_field_prefix(const char *tenant, const char *model) {
    return xasprintf("%s|%s|", tenant ? tenant : "", model ? model : "");
}

char *usage_field(const char *tenant, const char *model, usage_metric m) {
    return xasprintf("%s|%s|%s", tenant ? tenant : "", model ? model : "", usage_metric_name(m));
}

int usage_field_parse(const char *f, size_t len, usage_field_parts *out) {
    if (!f || memchr(f, '\0', len)) return -1;
    const char *first = memchr(f, '|', len);
    const char *last = memrchr(f, '|', len);
    if (!first || last == first) return -1;
    const char *metric = last + 1;
    if (usage_metric_parse(metric, (size_t)(f + len - metric), &out->metric) != 0) return -1;
    out->tenant = f;
    out->tenant_len = (size_t)(first - f);
    out->model = first + 1;
    out->model_len = (size_t)(last - first - 1);
    return 0;
}

/* Reads a non-negative whole number, at most USAGE_MAX_COUNT; returns 0 and
 * sets *out, or -1 when `v` is not one. */
static int usage_number(json_object *v, int64_t *out) {
    if (json_object_is_type(v, json_type_int)) {
        int64_t n = json_object_get_int64(v);
        if (n < 0) return -1;
        *out = n > USAGE_MAX_COUNT ? USAGE_MAX_COUNT : n;
        return 0;
    }
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!isfinite(d) || d < 0 || d != floor(d)) return -1;
        *out = d > (double)USAGE_MAX_COUNT ? USAGE_MAX_COUNT : (int64_t)d;
        return 0;
    }
    return -1;
}

/* obj[key] as a count, or -1 when it is missing or not a usable number. */
static int usage_get(json_object *obj, const char *key, int64_t *out) {
    json_object *v;
    if (!json_object_is_type(obj, json_type_object)) return -1;
    if (!json_object_object_get_ex(obj, key, &v)) return -1;
    return usage_number(v, out);
}

/* obj[key] as a count, 0 when unusable. */
static int64_t usage_count(json_object *obj, const char *key) {
    int64_t n = 0;
    return usage_get(obj, key, &n) == 0 ? n : 0;
}

/* obj[key] when it is an object, else NULL. Borrowed. */
static json_object *usage_sub(json_object *obj, const char *key) {
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v)) return NULL;
    return json_object_is_type(v, json_type_object) ? v : NULL;
}

void usage_extract(json_object *usage, usage_counts *out) {
    memset(out, 0, sizeof(*out));
    if (!json_object_is_type(usage, json_type_object)) return;

    out->prompt = usage_count(usage, "prompt_tokens");
    out->completion = usage_count(usage, "completion_tokens");
    /* A total that is absent (or unusable, which tells us no more than
     * absent) defaults to the sum; an explicit 0 is kept. */
    if (usage_get(usage, "total_tokens", &out->total) != 0) {
        out->total = out->prompt + out->completion; /* each <= 1e12: no overflow */
        if (out->total > USAGE_MAX_COUNT) out->total = USAGE_MAX_COUNT;
    }
    out->cached = usage_count(usage_sub(usage, "prompt_tokens_details"), "cached_tokens");
    out->reasoning =
        usage_count(usage_sub(usage, "completion_tokens_details"), "reasoning_tokens");
}

int64_t usage_cost_micro_usd(const usage_counts *u, double input, double cached_input,
                             double output) {
    int64_t cached = u->cached < u->prompt ? u->cached : u->prompt;
    double cost = (double)(u->prompt - cached) * input + (double)cached * cached_input +
                  (double)u->completion * output;
    /* checked before the conversion: llround() of a huge or NaN value is
     * undefined (counts a caller filled itself may be anything) */
    if (!(cost > 0)) return 0;
    if (cost >= (double)USAGE_MAX_COUNT) return USAGE_MAX_COUNT;
    return (int64_t)llround(cost);
}

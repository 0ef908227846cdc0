/* test_usage.c — usage_extract() on the usage objects real providers send,
 * and on the broken ones they sometimes send; the cost; and the metric names
 * and "<tenant>|<model>|<metric>" fields of the usage hash, both ways. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/usage.h"

/* Extracts from `text` (JSON) and checks all five counts. */
static void check(const char *text, int64_t prompt, int64_t completion, int64_t total,
                  int64_t cached, int64_t reasoning) {
    json_object *u = json_tokener_parse(text);
    usage_counts c;
    assert_non_null(u);
    usage_extract(u, &c);
    json_object_put(u);
    assert_int_equal(c.prompt, prompt);
    assert_int_equal(c.completion, completion);
    assert_int_equal(c.total, total);
    assert_int_equal(c.cached, cached);
    assert_int_equal(c.reasoning, reasoning);
}

static void test_openai_with_details(void **state) {
    (void)state;
    check("{\"prompt_tokens\":1200,\"completion_tokens\":340,\"total_tokens\":1540,"
          "\"prompt_tokens_details\":{\"cached_tokens\":1024,\"audio_tokens\":0},"
          "\"completion_tokens_details\":{\"reasoning_tokens\":192,\"audio_tokens\":0,"
          "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}",
          1200, 340, 1540, 1024, 192);
}

static void test_deepseek(void **state) {
    (void)state;
    check("{\"prompt_tokens\":30,\"completion_tokens\":250,\"total_tokens\":280,"
          "\"prompt_tokens_details\":{\"cached_tokens\":16},"
          "\"completion_tokens_details\":{\"reasoning_tokens\":200},"
          "\"prompt_cache_hit_tokens\":16,\"prompt_cache_miss_tokens\":14}",
          30, 250, 280, 16, 200);
    /* Only prompt_tokens_details.cached_tokens is read (usage.h): an older
     * DeepSeek usage with just prompt_cache_hit_tokens counts 0 cached. */
    check("{\"prompt_tokens\":30,\"completion_tokens\":5,\"total_tokens\":35,"
          "\"prompt_cache_hit_tokens\":16,\"prompt_cache_miss_tokens\":14}",
          30, 5, 35, 0, 0);
}

static void test_missing_fields(void **state) {
    (void)state;
    check("{}", 0, 0, 0, 0, 0);
    check("{\"prompt_tokens\":7}", 7, 0, 7, 0, 0);
    check("{\"completion_tokens\":4,\"prompt_tokens_details\":null,"
          "\"completion_tokens_details\":{}}", 0, 4, 4, 0, 0);
    /* Details of the wrong type are ignored. */
    check("{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3,"
          "\"prompt_tokens_details\":[5],\"completion_tokens_details\":6}", 1, 2, 3, 0, 0);
}

static void test_total_default(void **state) {
    (void)state;
    check("{\"prompt_tokens\":11,\"completion_tokens\":22}", 11, 22, 33, 0, 0);
    check("{\"prompt_tokens\":11,\"completion_tokens\":22,\"total_tokens\":null}",
          11, 22, 33, 0, 0);
    /* A total that is given is kept, even when it disagrees or is 0. */
    check("{\"prompt_tokens\":11,\"completion_tokens\":22,\"total_tokens\":40}",
          11, 22, 40, 0, 0);
    check("{\"prompt_tokens\":11,\"completion_tokens\":22,\"total_tokens\":0}",
          11, 22, 0, 0, 0);
}

static void test_doubles(void **state) {
    (void)state;
    check("{\"prompt_tokens\":12.0,\"completion_tokens\":3.0,\"total_tokens\":15.0,"
          "\"prompt_tokens_details\":{\"cached_tokens\":8.0},"
          "\"completion_tokens_details\":{\"reasoning_tokens\":1e1}}",
          12, 3, 15, 8, 10);
    /* Not whole numbers: 0; out of range: the clamp (test_clamped). */
    check("{\"prompt_tokens\":12.5,\"completion_tokens\":1e300}", 0, USAGE_MAX_COUNT,
          USAGE_MAX_COUNT, 0, 0);
}

/* Counts near INT64_MAX made HINCRBY fail half way through FINISH, for this
 * job and every later one of the same tenant, model and day: each count is
 * clamped to 1e12, and so is the cost. */
static void test_clamped(void **state) {
    (void)state;
    const int64_t M = USAGE_MAX_COUNT;
    check("{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":9223372036854775807,"
          "\"total_tokens\":9223372036854775807,"
          "\"prompt_tokens_details\":{\"cached_tokens\":9223372036854775807},"
          "\"completion_tokens_details\":{\"reasoning_tokens\":18446744073709551615}}",
          M, M, M, M, M);
    check("{\"prompt_tokens\":1000000000001,\"completion_tokens\":1000000000000}", M, M, M, 0, 0);
    /* the default total of two clamped counts is clamped too */
    check("{\"prompt_tokens\":700000000000,\"completion_tokens\":700000000000}",
          700000000000LL, 700000000000LL, M, 0, 0);
    check("{\"prompt_tokens\":1e18,\"completion_tokens\":-1e18}", M, 0, M, 0, 0);
    /* the cost of the largest counts at the highest price: clamped */
    usage_counts u = {M, M, M, 0, 0};
    assert_int_equal(usage_cost_micro_usd(&u, 1e6, 1e6, 1e6), M);
    usage_counts huge = {INT64_MAX, 0, 0, 0, 0};
    assert_int_equal(usage_cost_micro_usd(&huge, 1e6, 1e6, 1e6), M);
    usage_counts neg = {-5, 0, 0, 0, 0};
    assert_int_equal(usage_cost_micro_usd(&neg, 1, 1, 1), 0);
}

static void test_bad_values(void **state) {
    (void)state;
    /* json-c would convert these if asked with get_int; they must count 0. */
    check("{\"prompt_tokens\":\"12\",\"completion_tokens\":true,\"total_tokens\":\"x\"}",
          0, 0, 0, 0, 0);
    check("{\"prompt_tokens\":{\"n\":1},\"completion_tokens\":[3]}", 0, 0, 0, 0, 0);
    /* Negative counts would subtract from the usage hash: 0. */
    check("{\"prompt_tokens\":-5,\"completion_tokens\":3,\"total_tokens\":-2}", 0, 3, 3, 0, 0);
    /* Large but valid int64 counts come through unchanged. */
    check("{\"prompt_tokens\":5000000000,\"completion_tokens\":1}",
          5000000000LL, 1, 5000000001LL, 0, 0);
}

static void test_null_and_non_object(void **state) {
    (void)state;
    usage_counts c = {1, 2, 3, 4, 5};
    usage_extract(NULL, &c);
    assert_int_equal(c.prompt, 0);
    assert_int_equal(c.completion, 0);
    assert_int_equal(c.total, 0);
    assert_int_equal(c.cached, 0);
    assert_int_equal(c.reasoning, 0);
    check("[1,2,3]", 0, 0, 0, 0, 0);
    check("42", 0, 0, 0, 0, 0);
}

/* ---- usage_cost_micro_usd ---- */

/* Prices are USD per million tokens, which is micro-USD per token. */
static int64_t cost(int64_t prompt, int64_t cached, int64_t completion, double in,
                    double cached_in, double out) {
    usage_counts u = {prompt, completion, prompt + completion, cached, 0};
    return usage_cost_micro_usd(&u, in, cached_in, out);
}

static void test_cost_price_table(void **state) {
    (void)state;
    /* gpt-4o-like prices: 2.5 input, 1.25 cached input, 10 output:
     * 600 * 2.5 + 400 * 1.25 + 200 * 10 = 1500 + 500 + 2000 */
    assert_int_equal(cost(1000, 400, 200, 2.5, 1.25, 10), 4000);
    assert_int_equal(cost(1000, 0, 200, 2.5, 1.25, 10), 4500);
    assert_int_equal(cost(1000, 1000, 0, 2.5, 1.25, 10), 1250);
    assert_int_equal(cost(0, 0, 0, 2.5, 1.25, 10), 0);
    assert_int_equal(cost(123, 45, 67, 0, 0, 0), 0);
    /* one million of each at $1/$2/$3: exactly 1, 2 and 3 dollars */
    assert_int_equal(cost(2000000, 1000000, 1000000, 1, 2, 3), 6000000);
    /* large counts stay exact */
    assert_int_equal(cost(5000000000LL, 0, 0, 2.5, 2.5, 0), 12500000000LL);
}

static void test_cost_rounding(void **state) {
    (void)state;
    /* 2 * 2.5 + 1 * 1.25 = 6.25 -> 6 */
    assert_int_equal(cost(3, 1, 0, 2.5, 1.25, 10), 6);
    /* 3 * 0.25 = 0.75 -> 1 */
    assert_int_equal(cost(3, 0, 0, 0.25, 0.25, 0), 1);
    /* 8 * 2.5 + 5 * 1.25 + 1 * 10 = 36.25 -> 36 */
    assert_int_equal(cost(13, 5, 1, 2.5, 1.25, 10), 36);
    /* 7 * 0.15 + 3 * 0.6 = 2.85 -> 3 */
    assert_int_equal(cost(7, 0, 3, 0.15, 0.15, 0.6), 3);
}

static void test_cost_cached_clamped(void **state) {
    (void)state;
    /* more cached tokens than prompt tokens (a bogus usage): never more
     * cached than prompt, never a negative uncached count */
    assert_int_equal(cost(10, 50, 0, 2, 1, 0), 10);
    assert_int_equal(cost(0, 50, 4, 2, 1, 3), 12);
}

static void test_cost_from_usage_object(void **state) {
    (void)state;
    /* reasoning tokens are part of completion_tokens: not billed twice */
    json_object *u = json_tokener_parse(
        "{\"prompt_tokens\":1200,\"completion_tokens\":340,\"total_tokens\":1540,"
        "\"prompt_tokens_details\":{\"cached_tokens\":1024},"
        "\"completion_tokens_details\":{\"reasoning_tokens\":192}}");
    usage_counts c;
    usage_extract(u, &c);
    json_object_put(u);
    /* 176 * 2.5 + 1024 * 1.25 + 340 * 10 = 440 + 1280 + 3400 */
    assert_int_equal(usage_cost_micro_usd(&c, 2.5, 1.25, 10), 5120);
    usage_extract(NULL, &c);
    assert_int_equal(usage_cost_micro_usd(&c, 2.5, 1.25, 10), 0);
}

/* ---- metric names and fields ---- */

static void test_metric_names(void **state) {
    (void)state;
    /* the names of docs/protocol.md §7, in the order of `chatq usage --json` */
    const char *want[USAGE_NMETRICS] = {
        "requests",     "succeeded",     "failed",           "prompt_tokens", "completion_tokens",
        "total_tokens", "cached_tokens", "reasoning_tokens", "cost_micro_usd"};
    for (int i = 0; i < USAGE_NMETRICS; i++) {
        assert_string_equal(usage_metric_name((usage_metric)i), want[i]);
        usage_metric m = USAGE_NMETRICS;
        assert_int_equal(usage_metric_parse(want[i], strlen(want[i]), &m), 0);
        assert_int_equal(m, i);
    }
    assert_string_equal(usage_metric_name(USAGE_NMETRICS), "unknown");
}

static void test_metric_parse_unknown(void **state) {
    (void)state;
    usage_metric m = USAGE_REQUESTS;
    assert_int_equal(usage_metric_parse("tokens", 6, &m), -1);
    assert_int_equal(usage_metric_parse("", 0, &m), -1);
    /* by length, not up to a NUL: a prefix or a longer text is not a name */
    assert_int_equal(usage_metric_parse("requests", 7, &m), -1);
    assert_int_equal(usage_metric_parse("requestsX", 9, &m), -1);
    assert_int_equal(usage_metric_parse("Requests", 8, &m), -1);
    assert_int_equal(usage_metric_parse("requestsX", 8, &m), 0);
    assert_int_equal(m, USAGE_REQUESTS);
}

static void test_field_build(void **state) {
    (void)state;
    char *f = usage_field_prefix("acme", "gpt-4o");
    assert_string_equal(f, "acme|gpt-4o|");
    free(f);
    f = usage_field_prefix(NULL, "gpt-4o"); /* no tenant: empty */
    assert_string_equal(f, "|gpt-4o|");
    free(f);
    f = usage_field_prefix(NULL, NULL); /* an invalid job may have no model */
    assert_string_equal(f, "||");
    free(f);
    f = usage_field("acme", "gpt-4o", USAGE_TOTAL_TOKENS);
    assert_string_equal(f, "acme|gpt-4o|total_tokens");
    free(f);
    f = usage_field(NULL, "m", USAGE_COST_MICRO_USD);
    assert_string_equal(f, "|m|cost_micro_usd");
    free(f);
}

static void expect_parts(const char *field, const char *tenant, const char *model,
                         usage_metric metric) {
    usage_field_parts p;
    if (usage_field_parse(field, strlen(field), &p) != 0)
        fail_msg("usage_field_parse(\"%s\") failed", field);
    assert_int_equal(p.tenant_len, strlen(tenant));
    assert_memory_equal(p.tenant, tenant, p.tenant_len);
    assert_int_equal(p.model_len, strlen(model));
    assert_memory_equal(p.model, model, p.model_len);
    assert_int_equal(p.metric, metric);
}

static void test_field_parse(void **state) {
    (void)state;
    expect_parts("acme|gpt-4o|requests", "acme", "gpt-4o", USAGE_REQUESTS);
    expect_parts("|gpt-4o|failed", "", "gpt-4o", USAGE_FAILED);
    expect_parts("||succeeded", "", "", USAGE_SUCCEEDED);
    /* a model may hold '|': the tenant ends at the first, the metric starts
     * after the last */
    expect_parts("t|org|model|v2|cached_tokens", "t", "org|model|v2", USAGE_CACHED_TOKENS);
    /* what usage_field builds comes back as it went in */
    for (int i = 0; i < USAGE_NMETRICS; i++) {
        char *f = usage_field("tn", "a|b", (usage_metric)i);
        expect_parts(f, "tn", "a|b", (usage_metric)i);
        free(f);
    }
}

static void test_field_parse_bad(void **state) {
    (void)state;
    usage_field_parts p;
    const char *bad[] = {"",           "requests",       "acme|requests", "acme|gpt|",
                         "acme|gpt|x", "acme|gpt|Total", "|||",           "a|b|requests "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (usage_field_parse(bad[i], strlen(bad[i]), &p) != -1)
            fail_msg("usage_field_parse(\"%s\") accepted", bad[i]);
    /* a NUL byte inside the field */
    assert_int_equal(usage_field_parse("a\0b|m|requests", 15, &p), -1);
    assert_int_equal(usage_field_parse("a|m\0|requests", 14, &p), -1);
    /* read by length: the bytes after len do not count */
    assert_int_equal(usage_field_parse("a|m|requests|x", 12, &p), 0);
    assert_int_equal(p.metric, USAGE_REQUESTS);
    assert_int_equal(usage_field_parse("a|m|failedXYZ", 10, &p), 0);
    assert_int_equal(p.metric, USAGE_FAILED);
    assert_int_equal(usage_field_parse(NULL, 0, &p), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_with_details),
        cmocka_unit_test(test_deepseek),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_total_default),
        cmocka_unit_test(test_doubles),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_clamped),
        cmocka_unit_test(test_null_and_non_object),
        cmocka_unit_test(test_cost_price_table),
        cmocka_unit_test(test_cost_rounding),
        cmocka_unit_test(test_cost_cached_clamped),
        cmocka_unit_test(test_cost_from_usage_object),
        cmocka_unit_test(test_metric_names),
        cmocka_unit_test(test_metric_parse_unknown),
        cmocka_unit_test(test_field_build),
        cmocka_unit_test(test_field_parse),
        cmocka_unit_test(test_field_parse_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

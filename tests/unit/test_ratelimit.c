/* test_ratelimit.c — the pure parts of worker/ratelimit.c: the parser of the
 * x-ratelimit-reset-* durations, which buckets a model gets at a provider
 * (rl_target_init), and the argument vector of the RATELIMIT "take" call.
 *
 * The module comes from libworker.a, which every unit test links. The Lua
 * script itself runs in Redis and is covered end to end
 * (tests/e2e/test_providers.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker/ratelimit.h"

/* ---- rl_parse_duration ---- */

static void expect_ms(const char *s, long long want) {
    long long got = rl_parse_duration(s);
    if (got != want) fail_msg("rl_parse_duration(\"%s\") = %lld, want %lld", s, got, want);
}

static void test_duration_forms(void **state) {
    (void)state;
    /* the forms OpenAI sends in x-ratelimit-reset-requests/-tokens */
    expect_ms("6m0s", 360000);
    expect_ms("1s", 1000);
    expect_ms("20ms", 20);
    expect_ms("0.5s", 500);
    expect_ms("1h2m", 3720000);
    expect_ms("2m30.5s", 150500);
    expect_ms("17ms", 17);
    expect_ms("0s", 0);
    expect_ms("1h0m0s", 3600000);
    /* "m" is minutes, "ms" milliseconds, whatever follows */
    expect_ms("1m", 60000);
    expect_ms("1m5ms", 60005);
    /* a bare number is seconds (as in Retry-After) */
    expect_ms("3", 3000);
    expect_ms("1.25", 1250);
    /* spaces around and between the parts */
    expect_ms("  7s", 7000);
    expect_ms("1s 500ms", 1500);
}

static void test_duration_invalid(void **state) {
    (void)state;
    expect_ms("", -1);
    expect_ms("   ", -1);
    expect_ms("abc", -1);
    expect_ms("ms", -1);
    expect_ms("s", -1);
    expect_ms("5x", -1);
    expect_ms("5s garbage", -1);
    expect_ms("1d", -1);
    expect_ms("-1s", -1);
    expect_ms("nan", -1);
}

/* A header value from the network that overflows long long must not come
 * back as a negative number other than -1 (the contract is "ms, or -1"). */
static void test_duration_huge(void **state) {
    (void)state;
    const char *in[] = {"1e300s", "inf", "99999999999999999999h"};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        long long got = rl_parse_duration(in[i]);
        if (got != -1 && got <= 0)
            fail_msg("rl_parse_duration(\"%s\") = %lld: neither -1 nor a duration", in[i], got);
    }
}

/* ---- rl_target_init ---- */

static limit_cfg test_limits[] = {
    {"gpt-*", 600, 0},
    {"*", 0, 60000},
    {"claude-*", 10, 1000},
    {"x*", 0, 0}, /* neither limit set: no bucket */
};

static provider_cfg test_provider(void) {
    provider_cfg p;
    memset(&p, 0, sizeof p);
    p.name = "gw";
    p.base_url = "http://gw";
    p.limits = test_limits;
    p.nlimits = (int)(sizeof test_limits / sizeof test_limits[0]);
    return p;
}

static void test_target_buckets(void **state) {
    (void)state;
    provider_cfg p = test_provider();
    rl_target t;

    rl_target_init(&t, "cq", &p, "gpt-4o");
    assert_int_equal(t.n, 2);
    assert_string_equal(t.keys[0], "cq:ratelimit:gw:gpt-*");
    assert_string_equal(t.keys[1], "cq:ratelimit:gw:*");
    assert_true(t.req_iv[0] == 100.0); /* 60000 ms / 600 requests */
    assert_true(t.tok_iv[0] == 0.0);
    assert_true(t.req_iv[1] == 0.0);
    assert_true(t.tok_iv[1] == 1.0); /* 60000 ms / 60000 tokens */
    rl_target_free(&t);
    assert_int_equal(t.n, 0);
    assert_null(t.keys);

    rl_target_init(&t, "cq", &p, "claude-3");
    assert_int_equal(t.n, 2);
    assert_string_equal(t.keys[0], "cq:ratelimit:gw:*");
    assert_string_equal(t.keys[1], "cq:ratelimit:gw:claude-*");
    assert_true(t.req_iv[0] == 0.0);
    assert_true(t.tok_iv[0] == 1.0);
    assert_true(t.req_iv[1] == 6000.0);
    assert_true(t.tok_iv[1] == 60.0);
    rl_target_free(&t);

    /* "x*" matches but limits nothing: only the "*" bucket */
    rl_target_init(&t, "other", &p, "x1");
    assert_int_equal(t.n, 1);
    assert_string_equal(t.keys[0], "other:ratelimit:gw:*");
    rl_target_free(&t);
}

static void test_target_none(void **state) {
    (void)state;
    provider_cfg p = test_provider();
    rl_target t;
    rl_target_init(&t, "cq", NULL, "gpt-4o");
    assert_int_equal(t.n, 0);
    rl_target_free(&t);
    rl_target_init(&t, "cq", &p, NULL);
    assert_int_equal(t.n, 0);
    rl_target_free(&t);
    p.nlimits = 0;
    rl_target_init(&t, "cq", &p, "gpt-4o");
    assert_int_equal(t.n, 0);
    rl_target_free(&t);
    /* a provider whose only limit is for other models */
    p.limits = &test_limits[2];
    p.nlimits = 1;
    rl_target_init(&t, "cq", &p, "gpt-4o");
    assert_int_equal(t.n, 0);
    rl_target_free(&t);
}

/* ---- rl_take_args ---- */

static void test_take_args(void **state) {
    (void)state;
    provider_cfg p = test_provider();
    rl_target t;
    rargs a = {0};
    rl_target_init(&t, "cq", &p, "gpt-4o");
    rl_take_args(&t, "abc123", 123, &a);
    /* EVALSHA sha numkeys key1 key2 take, then 3 per key (the script reads
     * the time from Redis) */
    assert_int_equal(a.argc, 3 + 2 + 1 + 3 * 2);
    const char *want[] = {"EVALSHA", "abc123", "2", "cq:ratelimit:gw:gpt-*", "cq:ratelimit:gw:*",
                          "take", "100.000000", "0.000000000", "123", "0.000000",
                          "1.000000000", "123"};
    for (int i = 0; i < a.argc; i++) {
        if (a.lens[i] != strlen(want[i]) || memcmp(a.argv[i], want[i], a.lens[i]) != 0)
            fail_msg("argv[%d] = \"%.*s\", want \"%s\"", i, (int)a.lens[i], a.argv[i], want[i]);
    }
    rargs_free(&a);
    rl_target_free(&t);
}

/* ---- the cap on a request's token estimate ---- */

static void test_capped_tokens(void **state) {
    (void)state;
    provider_cfg p = test_provider();
    rl_target t;
    /* no token limit applies: the fixed cap */
    rl_target_init(&t, "cq", &p, "x1"); /* "*": tpm 60000 */
    assert_int_equal(rl_capped_tokens(&t, 500), 500);
    assert_int_equal(rl_capped_tokens(&t, 60000), 60000);
    assert_int_equal(rl_capped_tokens(&t, 60001), 60000); /* one minute of "*" */
    assert_int_equal(rl_capped_tokens(&t, 1000000000000000LL), 60000);
    assert_int_equal(rl_capped_tokens(&t, -5), 0);
    rl_target_free(&t);
    /* two buckets: the smaller one's minute */
    rl_target_init(&t, "cq", &p, "claude-3"); /* "*" 60000, "claude-*" 1000 */
    assert_int_equal(rl_capped_tokens(&t, 999), 999);
    assert_int_equal(rl_capped_tokens(&t, 5000), 1000);
    rl_target_free(&t);
    /* a request limit only, or no limit at all: RL_MAX_TOKENS */
    limit_cfg big[] = {{"*", 600, 0}, {"huge*", 0, 100000000000LL}};
    p.limits = big;
    p.nlimits = 2;
    rl_target_init(&t, "cq", &p, "gpt-4o");
    assert_int_equal(rl_capped_tokens(&t, LLONG_MAX), RL_MAX_TOKENS);
    rl_target_free(&t);
    rl_target_init(&t, "cq", &p, "huge-1"); /* tpm above the fixed cap */
    assert_int_equal(rl_capped_tokens(&t, LLONG_MAX), RL_MAX_TOKENS);
    rl_target_free(&t);
    rl_target_init(&t, "cq", NULL, "gpt-4o");
    assert_int_equal(rl_capped_tokens(&t, 2000000), RL_MAX_TOKENS);
    rl_target_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_forms),
        cmocka_unit_test(test_duration_invalid),
        cmocka_unit_test(test_duration_huge),
        cmocka_unit_test(test_target_buckets),
        cmocka_unit_test(test_target_none),
        cmocka_unit_test(test_take_args),
        cmocka_unit_test(test_capped_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

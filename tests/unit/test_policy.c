/* test_policy.c — the decisions of a job's run (worker/policy.c), and the
 * target a fallback moves a job to (worker/target.c): which failures are
 * retried, the backoff's bounds with full jitter, Retry-After, the waits for
 * rate-limit capacity, and when and where a job falls back.
 *
 * End to end, the same decisions are covered by tests/e2e/test_upstream.py
 * and test_providers.py; here every edge is checked without a loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/job.h"
#include "worker/policy.h"
#include "worker/target.h"

/* ---- which failures are retried ---- */

static void test_status_retryable(void **state) {
    (void)state;
    const int yes[] = {408, 409, 429, 500, 502, 503, 504, 529, 599};
    const int no[] = {0, 200, 301, 400, 401, 403, 404, 413, 422};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (!policy_status_retryable(yes[i])) fail_msg("%d should be retryable", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (policy_status_retryable(no[i])) fail_msg("%d should not be retryable", no[i]);
}

static void test_stream_error_retryable(void **state) {
    (void)state;
    assert_true(policy_stream_error_retryable(0)); /* no code: maybe transient */
    assert_true(policy_stream_error_retryable(429));
    assert_true(policy_stream_error_retryable(502));
    assert_false(policy_stream_error_retryable(400));
    assert_false(policy_stream_error_retryable(403));
}

static void test_after_failure(void **state) {
    (void)state;
    /* retryable, attempts left: again at the same target */
    assert_int_equal(policy_after_failure(1, 0, 1, 3), POLICY_RETRY);
    assert_int_equal(policy_after_failure(1, 0, 2, 3), POLICY_RETRY);
    /* retryable, the target's attempts used up: the next fallback */
    assert_int_equal(policy_after_failure(1, 0, 3, 3), POLICY_FALLBACK);
    assert_int_equal(policy_after_failure(1, 0, 1, 1), POLICY_FALLBACK);
    /* a fresh target (tries 0) always gets an attempt */
    assert_int_equal(policy_after_failure(1, 0, 0, 1), POLICY_RETRY);
    /* not retryable: the end, wherever the job is */
    assert_int_equal(policy_after_failure(0, 0, 1, 3), POLICY_FAIL);
    assert_int_equal(policy_after_failure(0, 0, 3, 3), POLICY_FAIL);
    /* the drain is over: no new attempt, no fallback */
    assert_int_equal(policy_after_failure(1, 1, 1, 3), POLICY_FAIL);
    assert_int_equal(policy_after_failure(1, 1, 3, 3), POLICY_FAIL);
}

/* ---- backoff ---- */

/* The largest backoff r can give is the cap itself (r = cap). */
static void expect_cap(long long base, long long max, int tries, long long cap) {
    long long got = policy_backoff_ms(base, max, tries, (uint32_t)cap);
    if (got != cap) fail_msg("backoff(%lld, %lld, %d) reaches %lld, want cap %lld", base, max,
                             tries, got, cap);
    /* one more wraps to 0: the range is exactly [0, cap] */
    assert_int_equal(policy_backoff_ms(base, max, tries, (uint32_t)cap + 1), 0);
}

static void test_backoff_caps(void **state) {
    (void)state;
    /* the defaults: 500 ms doubling up to 30 s */
    expect_cap(500, 30000, 1, 500);
    expect_cap(500, 30000, 2, 1000);
    expect_cap(500, 30000, 3, 2000);
    expect_cap(500, 30000, 6, 16000);
    expect_cap(500, 30000, 7, 30000); /* 32000 capped */
    expect_cap(500, 30000, 40, 30000);
    expect_cap(500, 30000, 1000000, 30000); /* no overflow however many tries */
    /* a base above the maximum is held to it */
    expect_cap(5000, 1000, 1, 1000);
    expect_cap(1, 1, 5, 1);
}

static void test_backoff_full_jitter(void **state) {
    (void)state;
    /* every random number lands in [0, cap]; 0 is possible (full jitter,
     * not "equal jitter") */
    assert_int_equal(policy_backoff_ms(500, 30000, 3, 0), 0);
    for (uint32_t r = 0; r < 100000; r += 7) {
        long long d = policy_backoff_ms(500, 30000, 3, r * 2654435761u);
        if (d < 0 || d > 2000) fail_msg("backoff %lld out of [0, 2000]", d);
    }
    assert_int_equal(policy_backoff_ms(500, 30000, 2, UINT32_MAX), (long long)(UINT32_MAX % 1001));
}

static void test_retry_delay(void **state) {
    (void)state;
    /* Retry-After wins over the backoff, even 0 */
    assert_int_equal(policy_retry_delay_ms(2500, 2, 500, 30000, 123456), 2500);
    assert_int_equal(policy_retry_delay_ms(0, 2, 500, 30000, 123456), 0);
    /* but never more than 10 minutes */
    assert_int_equal(policy_retry_delay_ms(3600000, 1, 500, 30000, 0), POLICY_MAX_DELAY_MS);
    /* the first attempt at a new fallback target goes at once */
    assert_int_equal(policy_retry_delay_ms(-1, 0, 500, 30000, 999), 0);
    /* else the backoff */
    assert_int_equal(policy_retry_delay_ms(-1, 2, 500, 30000, 1000), 1000);
    assert_int_equal(policy_retry_delay_ms(-1, 2, 500, 30000, 1001), 0);
    assert_int_equal(policy_retry_delay_ms(-1, 9, 500, 3600000, 128000), 128000);
    /* a backoff allowed past 10 minutes (retry_max_ms up to a day) is held to it */
    assert_int_equal(policy_retry_delay_ms(-1, 12, 500, 3600000, 1024000), POLICY_MAX_DELAY_MS);
}

/* ---- Retry-After ---- */

static void test_retry_after_seconds(void **state) {
    (void)state;
    assert_int_equal(policy_parse_retry_after("3", 0), 3000);
    assert_int_equal(policy_parse_retry_after("0", 0), 0);
    assert_int_equal(policy_parse_retry_after("1.5", 0), 1500);
    assert_int_equal(policy_parse_retry_after("120", 5), 120000); /* now does not matter */
    assert_int_equal(policy_parse_retry_after("abc", 0), -1);
    assert_int_equal(policy_parse_retry_after("", 0), -1);
    assert_int_equal(policy_parse_retry_after("-5", 0), -1);
    assert_int_equal(policy_parse_retry_after("inf", 0), -1);
    assert_int_equal(policy_parse_retry_after("nan", 0), -1);
    assert_int_equal(policy_parse_retry_after(" 7 ", 0), 7000);
    /* only digits with a fraction: what strtod would also take is refused */
    const char *bad[] = {"1e3", "0x10", "+5", ".5", "5.", "5s", "5 5", "infinity", "-0", "1e300"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (policy_parse_retry_after(bad[i], 0) != -1) fail_msg("accepted \"%s\"", bad[i]);
    /* absurdly large: clamped to what a job would wait at most */
    assert_int_equal(policy_parse_retry_after("601", 0), POLICY_MAX_DELAY_MS);
    assert_int_equal(policy_parse_retry_after("99999999999999999999999999", 0), POLICY_MAX_DELAY_MS);
    char many[200];
    memset(many, '9', sizeof many - 1);
    many[sizeof many - 1] = '\0';
    assert_int_equal(policy_parse_retry_after(many, 0), POLICY_MAX_DELAY_MS);
}

static void test_retry_after_date(void **state) {
    (void)state;
    /* Wed, 21 Oct 2015 07:28:00 GMT is unix 1445412480 */
    const char *date = "Wed, 21 Oct 2015 07:28:00 GMT";
    long long at = 1445412480LL * 1000;
    assert_int_equal(policy_parse_retry_after(date, at - 5000), 5000);
    assert_int_equal(policy_parse_retry_after(date, at), 0);
    assert_int_equal(policy_parse_retry_after(date, at + 60000), 0); /* in the past */
    /* a date years ahead: the longest delay, no more */
    assert_int_equal(policy_parse_retry_after(date, at - 10LL * 365 * 86400000), POLICY_MAX_DELAY_MS);
}

static void test_retry_after_ms(void **state) {
    (void)state;
    assert_int_equal(policy_parse_retry_after_ms("250"), 250);
    assert_int_equal(policy_parse_retry_after_ms("0"), 0);
    assert_int_equal(policy_parse_retry_after_ms("12.7"), 12);
    assert_int_equal(policy_parse_retry_after_ms("-3"), -1);
    assert_int_equal(policy_parse_retry_after_ms("x"), -1);
    assert_int_equal(policy_parse_retry_after_ms(""), -1);
    assert_int_equal(policy_parse_retry_after_ms("nan"), -1);
    assert_int_equal(policy_parse_retry_after_ms("inf"), -1);
    assert_int_equal(policy_parse_retry_after_ms("1e3"), -1);
    assert_int_equal(policy_parse_retry_after_ms("250ms"), -1);
    assert_int_equal(policy_parse_retry_after_ms("600000"), POLICY_MAX_DELAY_MS);
    assert_int_equal(policy_parse_retry_after_ms("1000000000000000000000"), POLICY_MAX_DELAY_MS);
}

/* x-ratelimit-remaining-*: garbage must not read as 0 ("nothing left"). */
static void test_parse_count(void **state) {
    (void)state;
    assert_int_equal(policy_parse_count("0"), 0);
    assert_int_equal(policy_parse_count("4999"), 4999);
    assert_int_equal(policy_parse_count(" 12 "), 12);
    const char *bad[] = {"", " ", "abc", "-1", "+1", "1.5", "1e3", "0x10", "12abc", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (policy_parse_count(bad[i]) != -1) fail_msg("accepted \"%s\"", bad[i]);
    assert_true(policy_parse_count("99999999999999999999999999") == LLONG_MAX);
}

/* One upstream answer pauses everyone's buckets for a minute at most. */
static void test_shared_pause(void **state) {
    (void)state;
    assert_int_equal(policy_shared_pause_ms(1500), 1500);
    assert_int_equal(policy_shared_pause_ms(0), 0);
    assert_int_equal(policy_shared_pause_ms(-5), 0);
    assert_int_equal(policy_shared_pause_ms(POLICY_MAX_DELAY_MS), POLICY_MAX_SHARED_PAUSE_MS);
    assert_int_equal(policy_shared_pause_ms(LLONG_MAX), 60000);
}

/* ---- waiting for rate-limit capacity ---- */

static void test_rate_wait(void **state) {
    (void)state;
    /* granted: send now */
    assert_int_equal(policy_rate_wait_ms(0, 0, 0, 300000, 12345), 0);
    assert_int_equal(policy_rate_wait_ms(-7, 1, 0, 300000, 12345), 0);
    /* a request limit: its wait, plus a jitter of up to a tenth (+1) */
    assert_int_equal(policy_rate_wait_ms(5000, 0, 0, 300000, 0), 5000);
    assert_int_equal(policy_rate_wait_ms(5000, 0, 0, 300000, 501), 5501);
    assert_int_equal(policy_rate_wait_ms(5000, 0, 0, 300000, 502), 5000);
    /* a token limit: ask again within 200 ms at most */
    assert_int_equal(policy_rate_wait_ms(5000, 1, 0, 300000, 0), 200);
    assert_int_equal(policy_rate_wait_ms(5000, 1, 0, 300000, 21), 221);
    assert_int_equal(policy_rate_wait_ms(150, 1, 0, 300000, 0), 150);
    for (uint32_t r = 0; r < 5000; r++) {
        long long d = policy_rate_wait_ms(9000, 1, 0, 300000, r * 2654435761u);
        if (d < 200 || d > 221) fail_msg("token wait %lld out of [200, 221]", d);
    }
}

static void test_rate_wait_gives_up(void **state) {
    (void)state;
    /* waiting past rate_limit_wait_ms gives the target up */
    assert_int_equal(policy_rate_wait_ms(200, 0, 299900, 300000, 0), -1);
    assert_int_equal(policy_rate_wait_ms(100, 0, 299900, 300000, 0), 100); /* just fits */
    /* the token limit's shorter wait is what counts */
    assert_int_equal(policy_rate_wait_ms(60000, 1, 299700, 300000, 0), 200);
    assert_int_equal(policy_rate_wait_ms(60000, 0, 299700, 300000, 0), -1);
    /* rate_limit_wait_ms 0: never wait */
    assert_int_equal(policy_rate_wait_ms(1, 0, 0, 0, 0), -1);
    assert_int_equal(policy_rate_wait_ms(0, 0, 0, 0, 0), 0);
}

/* ---- fallbacks ---- */

static char *models_a[] = {"gpt-*"};
static char *models_b[] = {"claude-*", "gpt-4o"};
static provider_cfg test_providers[] = {
    {.name = "a", .base_url = "http://a", .models = models_a, .nmodels = 1},
    {.name = "b", .base_url = "http://b", .models = models_b, .nmodels = 2},
};
static fallback_step gpt_steps[] = {
    {.provider = "b"},                         /* the same model at b */
    {.provider = "missing"},                   /* skipped: not configured */
    {.model = "llama-3"},                      /* skipped: nobody serves it */
    {.model = "gpt-4o-mini"},                  /* routed: a */
    {.provider = "b", .model = "claude-3"},
};
static fallback_step claude_steps[] = {{.model = "nobody-serves-this"}};
static fallback_cfg test_fallbacks[] = {
    {.pattern = "gpt-4o", .steps = gpt_steps, .nsteps = 5},
    {.pattern = "claude-*", .steps = claude_steps, .nsteps = 1},
};

static config test_config(void) {
    config c;
    memset(&c, 0, sizeof c);
    c.prefix = "cq";
    c.providers = test_providers;
    c.nproviders = 2;
    c.fallbacks = test_fallbacks;
    c.nfallbacks = 2;
    c.timeout_ms = 600000;
    c.idle_timeout_ms = 60000;
    c.connect_timeout_ms = 10000;
    c.max_response_bytes = 1 << 20;
    return c;
}

static void test_next_target_chain(void **state) {
    (void)state;
    config c = test_config();
    const provider_cfg *prov = NULL;
    const char *model = NULL;
    int step = policy_next_target(&c, "gpt-4o", -1, &prov, &model);
    assert_int_equal(step, 0);
    assert_string_equal(prov->name, "b");
    assert_string_equal(model, "gpt-4o");
    step = policy_next_target(&c, "gpt-4o", step, &prov, &model);
    assert_int_equal(step, 3); /* steps 1 and 2 lead nowhere */
    assert_string_equal(prov->name, "a");
    assert_string_equal(model, "gpt-4o-mini");
    step = policy_next_target(&c, "gpt-4o", step, &prov, &model);
    assert_int_equal(step, 4);
    assert_string_equal(prov->name, "b");
    assert_string_equal(model, "claude-3");
    prov = NULL;
    assert_int_equal(policy_next_target(&c, "gpt-4o", step, &prov, &model), -1);
    assert_null(prov); /* untouched when nothing is left */
}

static void test_next_target_none(void **state) {
    (void)state;
    config c = test_config();
    const provider_cfg *prov = NULL;
    const char *model = NULL;
    /* no chain for the model (patterns are globs: gpt-4o-mini is not gpt-4o) */
    assert_int_equal(policy_next_target(&c, "gpt-4o-mini", -1, &prov, &model), -1);
    /* a chain whose only step leads nowhere */
    assert_int_equal(policy_next_target(&c, "claude-3", -1, &prov, &model), -1);
    assert_int_equal(policy_next_target(&c, NULL, -1, &prov, &model), -1);
    c.nfallbacks = 0;
    assert_int_equal(policy_next_target(&c, "gpt-4o", -1, &prov, &model), -1);
}

/* Moving a job to its fallback changes the model in the body it sends. */
static void test_target_follows_fallback(void **state) {
    (void)state;
    config c = test_config();
    const char *raw = "{\"id\":\"j1\",\"stream\":true,\"body\":{\"model\":\"gpt-4o\","
                      "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":100}}";
    job j;
    char err[256];
    assert_int_equal(job_parse(&j, raw, strlen(raw), 0, err, sizeof err), 0);
    target t;
    target_init(&t);
    assert_null(t.prov);
    assert_int_equal(t.step, -1);
    target_set(&t, c.prefix, &j, &test_providers[0], j.model);
    assert_string_equal(t.model, "gpt-4o");
    assert_non_null(strstr(t.body, "\"model\":\"gpt-4o\""));
    /* about 4 bytes a token for the body, plus max_tokens */
    assert_int_equal(t.rl_tokens, (long long)t.body_len / 4 + 100);

    upstream_request req;
    target_request(&t, &c, &j, &req);
    assert_ptr_equal(req.prov, &test_providers[0]);
    assert_int_equal(req.stream, 1);
    assert_int_equal(req.timeout_ms, 600000);
    assert_int_equal(req.idle_timeout_ms, 60000);
    assert_int_equal(req.connect_timeout_ms, 10000);

    assert_int_equal(target_next(&t, &c, &j), 1); /* b, gpt-4o */
    assert_string_equal(t.prov->name, "b");
    assert_int_equal(target_next(&t, &c, &j), 1); /* a, gpt-4o-mini */
    assert_int_equal(t.step, 3);
    assert_string_equal(t.model, "gpt-4o-mini");
    assert_non_null(strstr(t.body, "\"model\":\"gpt-4o-mini\""));
    assert_int_equal(target_next(&t, &c, &j), 1); /* b, claude-3 */
    assert_int_equal(target_next(&t, &c, &j), 0);
    assert_string_equal(t.model, "claude-3"); /* unchanged when none is left */
    target_free(&t);
    job_free(&j);
}

/* The token estimate of a job: its max_tokens is the job's to choose, so
 * what the buckets are charged is capped (ratelimit.h). */
static long long estimate_of(const char *max_tokens, long long tpm) {
    char *raw = xasprintf("{\"id\":\"j1\",\"body\":{\"model\":\"m\","
                          "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]%s%s}}",
                          max_tokens ? ",\"max_tokens\":" : "", max_tokens ? max_tokens : "");
    job j;
    char err[256];
    if (job_parse(&j, raw, strlen(raw), 0, err, sizeof err) != 0) {
        job_free(&j);
        free(raw);
        return -1; /* the job itself is refused */
    }
    limit_cfg lim = {"*", 0, tpm};
    provider_cfg p = test_providers[0];
    p.limits = &lim;
    p.nlimits = tpm > 0 ? 1 : 0;
    target t;
    target_init(&t);
    target_set(&t, "cq", &j, &p, j.model);
    long long est = t.rl_tokens - (long long)t.body_len / 4;
    target_free(&t);
    job_free(&j);
    free(raw);
    return est;
}

static void test_target_token_estimate(void **state) {
    (void)state;
    assert_int_equal(estimate_of("100", 600000), 100);
    assert_int_equal(estimate_of(NULL, 600000), 0);
    /* not a non-negative integer: the job is refused before any estimate */
    assert_int_equal(estimate_of("1000.0", 600000), -1);
    assert_int_equal(estimate_of("-1000000", 600000), -1);
    assert_int_equal(estimate_of("\"500\"", 600000), -1);
    assert_int_equal(estimate_of("1e15", 600000), -1);
    /* 1e15: one minute of the limit at most */
    assert_true(estimate_of("1000000000000000", 600000) <= 600000);
    assert_true(estimate_of("1000000000000000", 600000) > 0);
    assert_true(estimate_of("9223372036854775807", 600000) <= 600000);
    /* and without a token limit, RL_MAX_TOKENS */
    assert_true(estimate_of("1000000000000000", 0) <= RL_MAX_TOKENS);
}

/* A job's own timeout wins over the provider's, which wins over the global
 * one; a request that does not stream has no idle timeout. */
static void test_target_request_settings(void **state) {
    (void)state;
    config c = test_config();
    provider_cfg p = test_providers[1];
    p.timeout_ms = 20000;
    p.idle_timeout_ms = 5000;
    p.connect_timeout_ms = 700;
    const char *raw = "{\"timeout_ms\":1234,\"body\":{\"model\":\"claude-3\","
                      "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}";
    job j;
    char err[256];
    assert_int_equal(job_parse(&j, raw, strlen(raw), 0, err, sizeof err), 0);
    target t;
    target_init(&t);
    target_set(&t, c.prefix, &j, &p, j.model);
    upstream_request req;
    target_request(&t, &c, &j, &req);
    assert_int_equal(req.timeout_ms, 1234);
    assert_int_equal(req.connect_timeout_ms, 700);
    assert_int_equal(req.stream, 0);
    assert_int_equal(req.idle_timeout_ms, 0);
    j.timeout_ms = -1;
    target_request(&t, &c, &j, &req);
    assert_int_equal(req.timeout_ms, 20000);
    target_free(&t);
    job_free(&j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_retryable),
        cmocka_unit_test(test_stream_error_retryable),
        cmocka_unit_test(test_after_failure),
        cmocka_unit_test(test_backoff_caps),
        cmocka_unit_test(test_backoff_full_jitter),
        cmocka_unit_test(test_retry_delay),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_date),
        cmocka_unit_test(test_retry_after_ms),
        cmocka_unit_test(test_parse_count),
        cmocka_unit_test(test_shared_pause),
        cmocka_unit_test(test_rate_wait),
        cmocka_unit_test(test_rate_wait_gives_up),
        cmocka_unit_test(test_next_target_chain),
        cmocka_unit_test(test_next_target_none),
        cmocka_unit_test(test_target_follows_fallback),
        cmocka_unit_test(test_target_token_estimate),
        cmocka_unit_test(test_target_request_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

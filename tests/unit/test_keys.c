/* test_keys.c — the Redis key names of common/keys.c, each exactly as
 * producers, workers, chatqd and the CLI must all spell it, and the UTC day
 * of the usage hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/keys.h"

/* Checks and frees a key made by a keys_* function. */
static void expect_key(char *got, const char *want) {
    if (!got || strcmp(got, want) != 0) fail_msg("key \"%s\", want \"%s\"", got, want);
    free(got);
}

static void test_job_keys(void **state) {
    (void)state;
    expect_key(keys_queue("chatq", "default"), "chatq:queue:default");
    expect_key(keys_job("chatq", "job-1"), "chatq:job:job-1");
    expect_key(keys_stream("chatq", "job-1"), "chatq:stream:job-1");
    expect_key(keys_events("chatq", "job-1"), "chatq:events:job-1");
    expect_key(keys_cancel("chatq", "job-1"), "chatq:cancel:job-1");
    expect_key(keys_dead("chatq"), "chatq:dead");
    expect_key(keys_control("chatq"), "chatq:control");
    expect_key(keys_usage("chatq", "2024-02-29"), "chatq:usage:2024-02-29");
}

static void test_bookkeeping_keys(void **state) {
    (void)state;
    expect_key(keys_processing("cq", "host.12.1700000000000.3", "high"),
               "cq:processing:host.12.1700000000000.3:high");
    expect_key(keys_workers("cq"), "cq:workers");
    expect_key(keys_heartbeat("cq", "w1"), "cq:heartbeat:w1");
    expect_key(keys_crashes("cq"), "cq:crashes");
    expect_key(keys_ratelimit("cq", "openai", "gpt-4o*"), "cq:ratelimit:openai:gpt-4o*");
    expect_key(keys_batch("cq", "b0123456789abcdef"), "cq:batch:b0123456789abcdef");
    expect_key(keys_batch_out("cq", "b0123456789abcdef"), "cq:batch:b0123456789abcdef:out");
}

/* The prefix and the names are put in as they are: a prefix with ':' or an
 * id with ':' and '.' (both allowed) make longer keys, never other ones. */
static void test_prefix_and_names_verbatim(void **state) {
    (void)state;
    expect_key(keys_job("app:prod", "a.b:c-1_2"), "app:prod:job:a.b:c-1_2");
    expect_key(keys_queue("p", ""), "p:queue:");
    expect_key(keys_ratelimit("p", "gw", "*"), "p:ratelimit:gw:*");
}

static void expect_day(long long ms, const char *want) {
    char day[11];
    memset(day, 'x', sizeof day);
    keys_day(ms, day);
    if (strcmp(day, want) != 0) fail_msg("keys_day(%lld) = \"%s\", want \"%s\"", ms, day, want);
}

/* The queues' SCAN pattern escapes the prefix's glob characters, and a
 * matched key gives back its queue name. */
static void test_queue_pattern_and_name(void **state) {
    (void)state;
    char *p = keys_queue_pattern("a*b?[c]\\d");
    assert_string_equal(p, "a\\*b\\?\\[c\\]\\\\d:queue:*");
    free(p);
    p = keys_queue_pattern("chatq");
    assert_string_equal(p, "chatq:queue:*");
    free(p);
    assert_string_equal(keys_queue_name("chatq", "chatq:queue:default"), "default");
    assert_string_equal(keys_queue_name("chatq", "chatq:queue:a:b"), "a:b");
    assert_null(keys_queue_name("chatq", "chatq:queue:"));
    assert_null(keys_queue_name("chatq", "chatq:job:x"));
    assert_null(keys_queue_name("chatq", "chatqx:queue:default"));
    char *k = keys_queue("p", "q1");
    assert_string_equal(keys_queue_name("p", k), "q1");
    free(k);
}

static void test_batch_out(void **state) {
    (void)state;
    char *k = keys_batch_out("chatq", "b1");
    assert_int_equal(keys_is_batch_out("chatq", k), 1);
    free(k);
    assert_int_equal(keys_is_batch_out("chatq", "chatq:batch::out"), 0);
    assert_int_equal(keys_is_batch_out("chatq", "chatq:batch:a:b:out"), 0);
    assert_int_equal(keys_is_batch_out("chatq", "chatq:batch:b1"), 0);
    assert_int_equal(keys_is_batch_out("chatq", "other:batch:b1:out"), 0);
}

static void test_state_kind(void **state) {
    (void)state;
    assert_string_equal(keys_state_kind("chatq", "chatq:queue:default"), "queue");
    assert_string_equal(keys_state_kind("chatq", "chatq:dead"), "dead");
    assert_string_equal(keys_state_kind("chatq", "chatq:batch:b1"), "batch");
    assert_null(keys_state_kind("chatq", "chatq:batch:b1:out"));
    assert_null(keys_state_kind("chatq", "chatq:replies"));
    assert_null(keys_state_kind("chatq", "chatq:deadline"));
    assert_null(keys_state_kind("chatq", "myapp:queue:x"));
    char *k = keys_processing("p", "w1", "q");
    assert_string_equal(keys_state_kind("p", k), "processing");
    free(k);
}

static void test_day(void **state) {
    (void)state;
    expect_day(0, "1970-01-01");
    expect_day(86399999, "1970-01-01"); /* the last ms of the first day */
    expect_day(86400000, "1970-01-02");
    expect_day(1700000000000LL, "2023-11-14");
    expect_day(1709164800000LL, "2024-02-29"); /* a leap day, at 00:00 UTC */
    expect_day(1709251199999LL, "2024-02-29");
    expect_day(1709251200000LL, "2024-03-01");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_keys),
        cmocka_unit_test(test_bookkeeping_keys),
        cmocka_unit_test(test_prefix_and_names_verbatim),
        cmocka_unit_test(test_queue_pattern_and_name),
        cmocka_unit_test(test_batch_out),
        cmocka_unit_test(test_state_kind),
        cmocka_unit_test(test_day),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

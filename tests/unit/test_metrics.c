/* test_metrics.c — the metrics of a worker (worker/metrics.c: the series it
 * keeps and the lines it sends) and of chatqd (daemon/metrics.c: how the
 * lines of many worker processes add up, and the exposition text). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/metrics.h"
#include "worker/metrics.h"

static const long long no_usage[USAGE_NMETRICS];

static int has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return 1;
    return 0;
}

static size_t count_lines(const char *text) {
    size_t n = 0;
    for (; *text; text++) n += *text == '\n';
    return n;
}

/* Feeds every line of text to the registry as worker mp's. */
static void feed(metrics *m, metrics_proc *mp, char *text) {
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        assert_int_equal(metrics_proc_line(m, mp, line), 0);
}

static char *render(metrics *m) {
    size_t len;
    char *text = metrics_render(m, &len);
    assert_int_equal(strlen(text), len);
    return text;
}

/* ---- the worker's side ---- */

static void test_worker_counts_and_sends_what_changed(void **state) {
    (void)state;
    metrics_reset();
    long long usage[USAGE_NMETRICS] = {0};
    usage[USAGE_PROMPT_TOKENS] = 9;
    usage[USAGE_COMPLETION_TOKENS] = 12;
    metrics_job_started("default");
    metrics_job_started("default");
    metrics_job_finished("default", JOB_SUCCEEDED, NULL, "acme", "gpt-x", usage);
    metrics_job_finished("default", JOB_FAILED, "timeout", NULL, "gpt-x", no_usage);
    size_t len;
    char *s = metrics_snapshot(0, &len);
    assert_int_equal(strlen(s), len);
    assert_true(has_line(s, "metric 2 chatq_jobs_started_total{queue=\"default\"}"));
    assert_true(has_line(
        s, "metric 1 chatq_jobs_finished_total{queue=\"default\",status=\"succeeded\",code=\"\"}"));
    assert_true(has_line(
        s, "metric 1 chatq_jobs_finished_total{queue=\"default\",status=\"failed\",code=\"timeout\"}"));
    assert_true(has_line(s, "metric 9 chatq_tokens_total{tenant=\"acme\",model=\"gpt-x\",kind=\"prompt\"}"));
    assert_true(has_line(
        s, "metric 12 chatq_tokens_total{tenant=\"acme\",model=\"gpt-x\",kind=\"completion\"}"));
    assert_null(strstr(s, "tenant=\"\"")); /* a job without usage adds no tokens */
    assert_int_equal(count_lines(s), 5);
    free(s);
    /* nothing changed: nothing to send; then only what changed */
    s = metrics_snapshot(0, &len);
    assert_int_equal(len, 0);
    free(s);
    metrics_job_started("default");
    s = metrics_snapshot(0, &len);
    assert_string_equal(s, "metric 3 chatq_jobs_started_total{queue=\"default\"}\n");
    free(s);
    /* a full snapshot has every series */
    s = metrics_snapshot(1, &len);
    assert_int_equal(count_lines(s), 5);
    free(s);
    metrics_reset();
}

static void test_worker_histograms(void **state) {
    (void)state;
    metrics_reset();
    int a, b, c;
    metrics_attempt_sent(&a, "openai");
    metrics_attempt_sent(&b, "openai");
    metrics_attempt_sent(&c, "openai");
    metrics_attempt_done(&a, "openai", 0);  /* no output: duration only */
    metrics_attempt_done(&b, "openai", 1);  /* output "before" the request: 0 s */
    metrics_attempt_done(&a, "openai", 0);  /* not noted any more: ignored */
    metrics_forget(&c);                     /* cancelled: nothing observed */
    metrics_attempt_done(&c, "openai", 0);
    size_t len;
    char *s = metrics_snapshot(1, &len);
    assert_true(has_line(s, "metric 3 chatq_upstream_attempts_total{provider=\"openai\"}"));
    assert_true(has_line(
        s, "metric 2 chatq_upstream_duration_seconds_bucket{provider=\"openai\",le=\"0.05\"}"));
    assert_true(has_line(
        s, "metric 2 chatq_upstream_duration_seconds_bucket{provider=\"openai\",le=\"+Inf\"}"));
    assert_true(has_line(s, "metric 2 chatq_upstream_duration_seconds_count{provider=\"openai\"}"));
    assert_true(has_line(
        s, "metric 1 chatq_time_to_first_token_seconds_bucket{provider=\"openai\",le=\"0.05\"}"));
    assert_true(has_line(s, "metric 1 chatq_time_to_first_token_seconds_count{provider=\"openai\"}"));
    assert_true(has_line(s, "metric 0 chatq_time_to_first_token_seconds_sum{provider=\"openai\"}"));
    /* 12 bounds, +Inf, sum and count per histogram, and the counter */
    assert_int_equal(count_lines(s), 2 * 15 + 1);
    free(s);
    metrics_reset();
}

/* Many requests in flight at once, ended in another order: the table of
 * request times keeps every one (its deletion shifts entries back). */
static void test_worker_request_times_table(void **state) {
    (void)state;
    metrics_reset();
    enum { N = 5000 };
    static char keys[N];
    for (int i = 0; i < N; i++) metrics_attempt_sent(&keys[i], "p");
    for (int i = 0; i < N; i += 2) metrics_forget(&keys[i]);
    for (int i = 1; i < N; i += 2) metrics_attempt_done(&keys[i], "p", 0);
    for (int i = 0; i < N; i++) metrics_attempt_done(&keys[i], "p", 0); /* all gone */
    size_t len;
    char *s = metrics_snapshot(1, &len);
    assert_true(has_line(s, "metric 2500 chatq_upstream_duration_seconds_count{provider=\"p\"}"));
    free(s);
    metrics_reset();
}

static void test_worker_label_values(void **state) {
    (void)state;
    metrics_reset();
    long long usage[USAGE_NMETRICS] = {0};
    usage[USAGE_PROMPT_TOKENS] = 1;
    metrics_job_finished("q", JOB_SUCCEEDED, NULL, "a\"b\\c\nd\te", "m", usage);
    char long_model[300];
    memset(long_model, 'x', sizeof long_model - 1);
    memcpy(long_model + METRICS_LABEL_MAX - 1, "\xc3\xa9", 2); /* é across the cut */
    long_model[sizeof long_model - 1] = '\0';
    metrics_job_finished("q", JOB_SUCCEEDED, NULL, "t", long_model, usage);
    size_t len;
    char *s = metrics_snapshot(1, &len);
    assert_non_null(strstr(s, "tenant=\"a\\\"b\\\\c\\nd?e\""));
    char want[200] = "model=\"";
    memset(want + 7, 'x', METRICS_LABEL_MAX - 1);
    strcpy(want + 7 + METRICS_LABEL_MAX - 1, "\",");
    assert_non_null(strstr(s, want)); /* cut before the é, not inside it */
    free(s);
    metrics_reset();
}

static void test_worker_bounds_tenant_model_pairs(void **state) {
    (void)state;
    metrics_reset();
    long long usage[USAGE_NMETRICS] = {0};
    usage[USAGE_PROMPT_TOKENS] = 2;
    usage[USAGE_COMPLETION_TOKENS] = 3;
    char tenant[32];
    for (int i = 0; i < METRICS_MAX_PAIRS + 50; i++) {
        snprintf(tenant, sizeof tenant, "t%d", i);
        metrics_job_finished("q", JOB_SUCCEEDED, NULL, tenant, "m", usage);
    }
    metrics_job_finished("q", JOB_SUCCEEDED, NULL, "t0", "m", usage); /* a known pair */
    size_t len;
    char *s = metrics_snapshot(1, &len);
    assert_true(has_line(s, "metric 100 chatq_tokens_total{tenant=\"_other\",model=\"_other\",kind=\"prompt\"}"));
    assert_true(has_line(s, "metric 4 chatq_tokens_total{tenant=\"t0\",model=\"m\",kind=\"prompt\"}"));
    assert_null(strstr(s, "tenant=\"t1000\""));
    /* 1,000 pairs and _other, two kinds each, and the finished counter */
    assert_int_equal(count_lines(s), 2 * (METRICS_MAX_PAIRS + 1) + 1);
    free(s);
    metrics_reset();
}

/* ---- chatqd's side ---- */

static void test_registry_adds_up_workers_and_restarts(void **state) {
    (void)state;
    metrics *m = metrics_new(NULL, NULL, NULL, 0);
    metrics_proc *w1 = metrics_proc_new(m), *w2 = metrics_proc_new(m);
    const char *c = "chatq_jobs_started_total{queue=\"default\"}";
    const char *g = "chatq_jobs_in_flight{}";
    char line[200];
    snprintf(line, sizeof line, "metric 5 %s", c);
    assert_int_equal(metrics_proc_line(m, w1, line), 0);
    snprintf(line, sizeof line, "metric 7 %s", c);
    assert_int_equal(metrics_proc_line(m, w2, line), 0);
    snprintf(line, sizeof line, "metric 3 %s", g);
    metrics_proc_line(m, w1, line);
    snprintf(line, sizeof line, "metric 2 %s", g);
    metrics_proc_line(m, w2, line);
    char *t = render(m);
    assert_true(has_line(t, "chatq_jobs_started_total{queue=\"default\"} 12"));
    assert_true(has_line(t, "chatq_jobs_in_flight 5"));
    free(t);
    /* a counter never goes back (a line cut short: "metric 1" of "metric 10") */
    snprintf(line, sizeof line, "metric 1 %s", c);
    metrics_proc_line(m, w1, line);
    snprintf(line, sizeof line, "metric 10 %s", c);
    metrics_proc_line(m, w1, line);
    /* w1 exits: its counts stay, its gauge goes; its replacement adds on */
    metrics_proc_end(m, w1);
    metrics_proc *w3 = metrics_proc_new(m);
    snprintf(line, sizeof line, "metric 4 %s", c);
    metrics_proc_line(m, w3, line);
    snprintf(line, sizeof line, "metric 1 %s", g);
    metrics_proc_line(m, w3, line);
    snprintf(line, sizeof line, "metric 0 %s", g); /* a gauge may go down */
    metrics_proc_line(m, w2, line);
    t = render(m);
    assert_true(has_line(t, "chatq_jobs_started_total{queue=\"default\"} 21"));
    assert_true(has_line(t, "chatq_jobs_in_flight 1"));
    free(t);
    metrics_proc_end(m, w2);
    metrics_proc_end(m, w3);
    metrics_close(m);
}

static void test_registry_refuses_bad_lines(void **state) {
    (void)state;
    metrics *m = metrics_new(NULL, NULL, NULL, 0);
    metrics_proc *w = metrics_proc_new(m);
    static const char *const bad[] = {
        "metric 1 chatq_jobs_started_total",                  /* no braces */
        "metric 1 chatq_jobs_started_total{queue=\"def",      /* cut short */
        "metric 1 chatq_jobs_started_total{queue=\"d\"",      /* cut short */
        "metric 1 chatq_jobs_started_total{queue=\"a\\q\"}",  /* a bad escape */
        "metric 1 chatq_jobs_started_total{queue=\"a\"} x",   /* trailing text */
        "metric 1 chatq_jobs_started_total{queue=\"a\",}",    /* a dangling comma */
        "metric 1 chatq_jobs_started_total{9q=\"a\"}",        /* a bad label name */
        "metric x chatq_jobs_started_total{queue=\"a\"}",     /* no value */
        "metric nan chatq_jobs_started_total{queue=\"a\"}",   /* not finite */
        "metric 1 chatq_nonsense_total{queue=\"a\"}",         /* unknown family */
        "metric 1 chatq_upstream_duration_seconds{}",         /* a histogram's base name */
        "metric 1 chatq_upstream_duration_seconds_max{}",     /* no such part */
        "metrics 1 chatq_jobs_started_total{queue=\"a\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(metrics_proc_line(m, w, bad[i]), -1);
    assert_int_equal(
        metrics_proc_line(m, w, "metric 1 chatq_jobs_started_total{queue=\"a\\\"\\\\\\n\"}"), 0);
    assert_int_equal(metrics_proc_line(m, w, "metric 1 chatq_upstream_duration_seconds_sum{}"), 0);
    metrics_proc_end(m, w);
    metrics_close(m);
}

/* The worker's lines through the registry: the exposition text groups each
 * family under its HELP and TYPE, buckets in order of le. */
static void test_worker_lines_render(void **state) {
    (void)state;
    metrics_reset();
    metrics *m = metrics_new(NULL, NULL, NULL, 0);
    metrics_proc *w = metrics_proc_new(m);
    int k;
    metrics_attempt_sent(&k, "p");
    metrics_attempt_done(&k, "p", 0);
    metrics_retry("timeout");
    metrics_redis_reconnect();
    metrics_rate_reply("p", 100, 0);
    metrics_rate_reply("p", 0, 1500);
    metrics_job_duplicate("default");
    size_t len;
    char *s = metrics_snapshot(1, &len);
    feed(m, w, s);
    free(s);
    metrics_set(m, "chatq_queue_length{queue=\"default\"}", 3);
    char *t = render(m);
    assert_non_null(strstr(t, "# HELP chatq_upstream_duration_seconds "));
    assert_non_null(strstr(t, "# TYPE chatq_upstream_duration_seconds histogram\n"
                              "chatq_upstream_duration_seconds_bucket{provider=\"p\",le=\"0.05\"} 1\n"
                              "chatq_upstream_duration_seconds_bucket{provider=\"p\",le=\"0.1\"} 1\n"
                              "chatq_upstream_duration_seconds_bucket{provider=\"p\",le=\"0.25\"} 1\n"));
    assert_non_null(strstr(t, "le=\"120\"} 1\nchatq_upstream_duration_seconds_bucket{provider=\"p\",le=\"+Inf\"} 1\n"));
    assert_true(has_line(t, "chatq_retries_total{code=\"timeout\"} 1"));
    assert_true(has_line(t, "chatq_redis_reconnects_total{process=\"worker\"} 1"));
    assert_true(has_line(t, "chatq_redis_reconnects_total{process=\"chatqd\"} 0"));
    assert_true(has_line(t, "chatq_ratelimit_waits_total{provider=\"p\"} 1"));
    assert_true(has_line(t, "chatq_ratelimit_wait_seconds_total{provider=\"p\"} 1.5"));
    assert_true(has_line(t, "chatq_jobs_duplicate_total{queue=\"default\"} 1"));
    assert_true(has_line(t, "chatq_queue_length{queue=\"default\"} 3"));
    assert_true(has_line(t, "chatq_worker_restarts_total{cause=\"fault\"} 0"));
    assert_true(has_line(t, "chatq_quarantine_worker_runs_total 0"));
    assert_true(has_line(t, "# TYPE chatq_queue_length gauge"));
    /* each family's HELP once, even with series from two processes */
    const char *first = strstr(t, "# HELP chatq_redis_reconnects_total");
    assert_null(strstr(first + 1, "# HELP chatq_redis_reconnects_total"));
    free(t);
    metrics_proc_end(m, w);
    metrics_close(m);
    metrics_reset();
}

static void test_registry_is_bounded(void **state) {
    (void)state;
    metrics *m = metrics_new(NULL, NULL, NULL, 0);
    metrics_proc *w = metrics_proc_new(m);
    char line[128];
    int refused = 0;
    for (int i = 0; i < METRICS_MAX_SERIES + 10; i++) {
        snprintf(line, sizeof line, "metric 1 chatq_jobs_started_total{queue=\"q%d\"}", i);
        refused += metrics_proc_line(m, w, line) < 0;
    }
    assert_true(refused >= 10 && refused < 100); /* chatqd's own series count too */
    char *t = render(m);
    char want[80];
    snprintf(want, sizeof want, "chatq_metrics_series_dropped_total %d", refused);
    assert_true(has_line(t, want));
    free(t);
    metrics_proc_end(m, w);
    metrics_close(m);
}

static void test_null_registry_is_a_no_op(void **state) {
    (void)state;
    metrics_add(NULL, "chatq_quarantine_worker_runs_total{}", 1);
    metrics_set(NULL, "chatq_dead_jobs{}", 1);
    assert_null(metrics_proc_new(NULL));
    assert_int_equal(metrics_proc_line(NULL, NULL, "metric 1 chatq_dead_jobs{}"), -1);
    metrics_proc_end(NULL, NULL);
    metrics_close(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker_counts_and_sends_what_changed),
        cmocka_unit_test(test_worker_histograms),
        cmocka_unit_test(test_worker_request_times_table),
        cmocka_unit_test(test_worker_label_values),
        cmocka_unit_test(test_worker_bounds_tenant_model_pairs),
        cmocka_unit_test(test_registry_adds_up_workers_and_restarts),
        cmocka_unit_test(test_registry_refuses_bad_lines),
        cmocka_unit_test(test_worker_lines_render),
        cmocka_unit_test(test_registry_is_bounded),
        cmocka_unit_test(test_null_registry_is_a_no_op),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

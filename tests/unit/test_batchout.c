/* test_batchout.c — the output files of `chatq batch` (cli/batchout.c):
 * which output lines are written and where (output or errors file), which
 * are dropped (repeats, lines of no job of this batch), the totals and the
 * cost, reading the files back on resume (cutting a damaged tail), and the
 * files that must be refused (the input, one file twice, a locked one).
 *
 * Files live in a fresh directory under /tmp; stderr is captured where a
 * message is checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/batchout.h"
#include "common/buf.h"
#include "tests/unit/testutil.h"

static int in_fd = -1; /* an input file, which no output may be */

static int setup(void **state) {
    (void)state;
    if (!testutil_tmpdir("batchout")) return -1;
    char *path = testutil_path("in.jsonl");
    in_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    free(path);
    return in_fd >= 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    close(in_fd);
    return testutil_tmpdir_remove();
}

/* The whole content of a file (caller frees); "" when it does not exist. */
static char *slurp(const char *path) {
    buf b = {0};
    char chunk[4096];
    size_t n;
    FILE *f = fopen(path, "rb");
    if (f) {
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, n);
        fclose(f);
    }
    return buf_steal(&b);
}

static void spit(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}


/* ---- output lines, as the workers write them ---- */

/* The line of job `id` answered with HTTP `status`; usage NULL: none. */
static char *answer(const char *id, int status, const char *usage) {
    return xasprintf("{\"id\":\"%s\",\"custom_id\":\"c\",\"response\":{\"status_code\":%d,"
                     "\"request_id\":\"req-1\",\"body\":{%s%s}},\"error\":null}",
                     id, status, usage ? "\"usage\":" : "", usage ? usage : "");
}

/* A failure without a response, as a worker writes it. */
static char *failure(const char *id) {
    return xasprintf("{\"id\":\"%s\",\"custom_id\":\"c\",\"response\":null,"
                     "\"error\":{\"code\":\"timeout\",\"message\":\"no answer\"}}", id);
}

/* batchout_take() of a line we own. */
static int take(batchout *o, char *line) {
    int rc = batchout_take(o, line, strlen(line));
    free(line);
    return rc;
}

#define USAGE_21 "{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}"

/* ---- writing ---- */

static void test_lines_go_to_their_file(void **state) {
    (void)state;
    batchout o;
    char *out = testutil_path("out.jsonl"), *err = testutil_path("err.jsonl");
    assert_int_equal(batchout_open(&o, out, err, 0, "b1", 6, in_fd, NULL, NULL), 0);
    char *l1 = answer("b1-1", 200, USAGE_21), *l2 = answer("b1-2", 400, NULL);
    char *l3 = failure("b1-3"), *l4 = answer("b1-4", 399, USAGE_21);
    char *l5 = answer("b1-5", 99, NULL);
    assert_int_equal(batchout_take(&o, l1, strlen(l1)), 1);
    assert_int_equal(batchout_take(&o, l2, strlen(l2)), 1);
    assert_int_equal(batchout_take(&o, l3, strlen(l3)), 1);
    assert_int_equal(batchout_take(&o, l4, strlen(l4)), 1);
    assert_int_equal(batchout_take(&o, l5, strlen(l5)), 1);
    assert_int_equal(batchout_take(&o, l1, strlen(l1)), 0); /* written already */
    assert_int_equal(o.done, 5);
    assert_int_equal(o.failed, 3);
    assert_int_equal(o.out_lines, 2);
    assert_int_equal(o.err_lines, 3);
    assert_int_equal(o.strays, 0);
    assert_int_equal(o.prompt_tokens, 18);
    assert_int_equal(o.completion_tokens, 24);
    assert_int_equal(o.total_tokens, 42);
    for (int n = 1; n <= 5; n++) assert_true(batchout_has(&o, n));
    assert_false(batchout_has(&o, 6));
    assert_false(batchout_has(&o, 0));
    assert_false(batchout_has(&o, 7));
    assert_true(o.dirty);
    assert_int_equal(batchout_sync(&o), 0);
    assert_false(o.dirty);
    assert_int_equal(batchout_sync(&o), 0); /* nothing new: nothing to do */
    char *want_out = xasprintf("%s\n%s\n", l1, l4), *want_err = xasprintf("%s\n%s\n%s\n", l2, l3, l5);
    char *got_out = slurp(out), *got_err = slurp(err);
    assert_string_equal(got_out, want_out);
    assert_string_equal(got_err, want_err);
    batchout_close(&o);
    assert_int_equal(o.fd, -1);
    free(want_out), free(want_err), free(got_out), free(got_err);
    free(l1), free(l2), free(l3), free(l4), free(l5);
    free(out), free(err);
}

static void test_one_file_without_errors_file(void **state) {
    (void)state;
    batchout o;
    char *out = testutil_path("out.jsonl");
    spit(out, "old content\n"); /* a new batch empties the file */
    assert_int_equal(batchout_open(&o, out, NULL, 0, "b1", 2, in_fd, NULL, NULL), 0);
    assert_int_equal(o.err_fd, -1);
    char *l1 = answer("b1-1", 500, NULL), *l2 = answer("b1-2", 200, NULL);
    assert_int_equal(batchout_take(&o, l2, strlen(l2)), 1);
    assert_int_equal(batchout_take(&o, l1, strlen(l1)), 1);
    assert_int_equal(o.failed, 1);
    assert_int_equal(o.out_lines, 2);
    assert_int_equal(o.err_lines, 0);
    assert_int_equal(batchout_sync(&o), 0);
    char *want = xasprintf("%s\n%s\n", l2, l1), *got = slurp(out);
    assert_string_equal(got, want);
    batchout_close(&o);
    free(want), free(got), free(l1), free(l2), free(out);
}

/* Lines of no job of this batch are dropped and counted as strays. */
static void test_strays(void **state) {
    (void)state;
    batchout o;
    char *out = testutil_path("out.jsonl");
    assert_int_equal(batchout_open(&o, out, NULL, 0, "b1", 20, in_fd, NULL, NULL), 0);
    static const char *const ids[] = {"b2-1", "b10-1", "b1-0", "b1-01", "b1-21", "b1-", "b1",
                                      "b1-1x", "b1--1", "b1-99999999999999999999999"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        assert_int_equal(take(&o, answer(ids[i], 200, NULL)), 0);
    static const char *const junk[] = {"not json", "{\"custom_id\":\"c\"}", "{\"id\":5}", "[]",
                                       "{\"id\":\"b1-1\",\n\"error\":null}"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        assert_int_equal(batchout_take(&o, junk[i], strlen(junk[i])), 0);
    assert_int_equal(o.strays, 15);
    assert_int_equal(o.done, 0);
    assert_false(o.dirty);
    /* The largest line number is one of ours. */
    assert_int_equal(take(&o, answer("b1-20", 200, NULL)), 1);
    batchout_close(&o);
    free(out);
}

/* A line is written to OUT as it came: one that is not strict JSON
 * (RFC 8259, valid UTF-8), which json-c alone would take, would make OUT
 * unreadable for a strict reader. Workers only write strict JSON, so such
 * a line is a stray; so is one past the cost limits (a json-c bomb). */
static void test_lines_that_are_not_strict_json(void **state) {
    (void)state;
    batchout o;
    char *out = testutil_path("out.jsonl");
    assert_int_equal(batchout_open(&o, out, NULL, 0, "b1", 2, in_fd, NULL, NULL), 0);
    static const char nul[] = "{\"id\":\"b1-1\",\"x\":\"a\0b\"}";
    static const char *const bad[] = {
        "{'id':'b1-1'}",
        "{\"id\":\"b1-1\",\"response\":NaN,\"error\":null}",
        "{\"id\":\"b1-1\",\"x\":\"a\x01b\"}",
        "{\"id\":\"b1-1\",\"x\":\"\xff\"}",
        "/* c */{\"id\":\"b1-1\"}",
        "{\"id\":\"b1-1\",}",
        "{\"id\":\"b1-1\",\"n\":01}",
        "{\"id\":\"b1-1\",\"x\":\"\\ud800\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (batchout_take(&o, bad[i], strlen(bad[i])) != 0) fail_msg("taken: %s", bad[i]);
    assert_int_equal(batchout_take(&o, nul, sizeof nul - 1), 0);
    /* 400,000 empty arrays: 1.2 MB of text, about 60 MB in json-c */
    buf bomb = {0};
    buf_puts(&bomb, "{\"id\":\"b1-1\",\"x\":[");
    for (int i = 0; i < 400000; i++) buf_puts(&bomb, i ? ",[]" : "[]");
    buf_puts(&bomb, "]}");
    assert_int_equal(batchout_take(&o, bomb.data, bomb.len), 0);
    buf_free(&bomb);
    assert_int_equal(o.strays, (long long)(sizeof bad / sizeof bad[0]) + 2);
    assert_int_equal(o.done, 0);
    /* \u0000 is strict JSON (a model may write it): the line is taken */
    const char *esc = "{\"id\":\"b1-2\",\"x\":\"a\\u0000b\",\"error\":null}";
    assert_int_equal(batchout_take(&o, esc, strlen(esc)), 1);
    batchout_close(&o);
    char *got = slurp(out), *want = xasprintf("%s\n", esc);
    assert_string_equal(got, want);
    free(got), free(want), free(out);
}

/* Usage is priced at the price of the line's (provider, model) pair. */
static void test_cost(void **state) {
    (void)state;
    batchout o;
    char *out = testutil_path("out.jsonl");
    price_cfg price = {NULL, 1.0, 0.5, 2.0};
    const price_cfg *prices[] = {NULL, &price, NULL};
    const uint16_t model_of[] = {1, 2, 0, 1};
    const char *usage = "{\"prompt_tokens\":1000,\"completion_tokens\":500,"
                        "\"prompt_tokens_details\":{\"cached_tokens\":200}}";
    assert_int_equal(batchout_open(&o, out, NULL, 0, "b1", 4, in_fd, model_of, prices), 0);
    assert_int_equal(take(&o, answer("b1-1", 200, usage)), 1); /* 800 + 100 + 1000 */
    assert_int_equal(take(&o, answer("b1-2", 200, usage)), 1); /* a model without a price */
    assert_int_equal(take(&o, answer("b1-3", 200, usage)), 1); /* a line not priced */
    assert_int_equal(take(&o, answer("b1-4", 400, NULL)), 1); /* no usage: not counted */
    assert_int_equal(o.cost_micro_usd, 1900);
    assert_int_equal(o.priced, 1);
    assert_int_equal(o.unpriced, 2);
    assert_int_equal(o.cached_tokens, 600);
    batchout_close(&o);
    /* Without tables nothing is priced. */
    assert_int_equal(batchout_open(&o, out, NULL, 0, "b1", 4, in_fd, NULL, NULL), 0);
    assert_int_equal(take(&o, answer("b1-1", 200, usage)), 1);
    assert_int_equal(o.cost_micro_usd, 0);
    assert_int_equal(o.unpriced, 1);
    batchout_close(&o);
    free(out);
}

/* The totals are sums over lines, each count clamped to 1e12 by
 * usage_extract(): 9.3 million lines at that bound pass INT64_MAX. The sums
 * saturate instead of overflowing. */
static void test_totals_saturate(void **state) {
    (void)state;
    batchout o;
    char *out = testutil_path("out.jsonl");
    price_cfg price = {NULL, 1e6, 1e6, 1e6};
    const price_cfg *prices[] = {NULL, &price};
    const uint16_t model_of[] = {1, 1};
    const char *usage = "{\"prompt_tokens\":1000000000000,\"completion_tokens\":1000000000000,"
                        "\"prompt_tokens_details\":{\"cached_tokens\":5}}";
    assert_int_equal(batchout_open(&o, out, NULL, 0, "b1", 2, in_fd, model_of, prices), 0);
    o.prompt_tokens = o.completion_tokens = o.total_tokens = o.cached_tokens = LLONG_MAX - 1;
    o.cost_micro_usd = LLONG_MAX - 1;
    assert_int_equal(take(&o, answer("b1-1", 200, usage)), 1);
    assert_true(o.prompt_tokens == LLONG_MAX);
    assert_true(o.completion_tokens == LLONG_MAX);
    assert_true(o.total_tokens == LLONG_MAX);
    assert_true(o.cached_tokens == LLONG_MAX);
    assert_true(o.cost_micro_usd == LLONG_MAX);
    batchout_close(&o);
    free(out);
}

/* ---- resuming ---- */

static void test_resume_reads_back_and_cuts_the_tail(void **state) {
    (void)state;
    batchout o;
    char *out = testutil_path("out.jsonl"), *err = testutil_path("err.jsonl");
    char *l1 = answer("b1-1", 200, USAGE_21), *l2 = answer("b1-2", 200, NULL);
    char *other = answer("b9-3", 200, NULL), *l3 = failure("b1-3");
    /* A complete line of another batch is kept; the half line is cut. */
    char *good = xasprintf("%s\n%s\n%s\n", l1, other, l2);
    char *text = xasprintf("%s%.20s", good, l2);
    spit(out, text);
    char *errtext = xasprintf("%s\n", l3);
    spit(err, errtext);
    testutil_capture_begin();
    int rc = batchout_open(&o, out, err, 1, "b1", 5, in_fd, NULL, NULL);
    char *msg = testutil_capture_end();
    assert_int_equal(rc, 0);
    char *want = xasprintf("chatq: %s: cut an incomplete line at byte %zu (it is written "
                           "again)\n", out, strlen(good));
    assert_string_equal(msg, want);
    assert_int_equal(o.done, 3);
    assert_int_equal(o.out_lines, 2);
    assert_int_equal(o.err_lines, 1);
    assert_int_equal(o.failed, 1);
    assert_int_equal(o.total_tokens, 21);
    assert_true(batchout_has(&o, 1) && batchout_has(&o, 2) && batchout_has(&o, 3));
    assert_false(batchout_has(&o, 4));
    assert_false(o.dirty);
    /* What was read back is not written again; new lines go at the end. */
    assert_int_equal(batchout_take(&o, l2, strlen(l2)), 0);
    char *l4 = answer("b1-4", 200, NULL);
    assert_int_equal(batchout_take(&o, l4, strlen(l4)), 1);
    assert_int_equal(batchout_sync(&o), 0);
    char *got = slurp(out), *want_file = xasprintf("%s%s\n", good, l4);
    assert_string_equal(got, want_file);
    batchout_close(&o);
    free(got), free(want_file), free(want), free(msg), free(text), free(errtext), free(good);
    free(l1), free(l2), free(l3), free(l4), free(other), free(out), free(err);
}

/* A line that is not JSON, or a last line without '\n', ends what is
 * trusted: the file is cut there, even if more follows. */
static void test_resume_cuts_at_the_first_damaged_line(void **state) {
    (void)state;
    batchout o;
    char *out = testutil_path("out.jsonl");
    char *l1 = answer("b1-1", 200, NULL), *l2 = answer("b1-2", 200, NULL);
    char *text = xasprintf("%s\n{garbage\n%s\n", l1, l2);
    spit(out, text);
    testutil_capture_begin();
    assert_int_equal(batchout_open(&o, out, NULL, 1, "b1", 2, in_fd, NULL, NULL), 0);
    free(testutil_capture_end());
    assert_int_equal(o.done, 1);
    assert_false(batchout_has(&o, 2));
    batchout_close(&o);
    char *got = slurp(out), *want = xasprintf("%s\n", l1);
    assert_string_equal(got, want);
    free(got), free(want), free(text);
    /* A whole last line without its '\n' is cut too. */
    text = xasprintf("%s\n%s", l1, l2);
    spit(out, text);
    testutil_capture_begin();
    assert_int_equal(batchout_open(&o, out, NULL, 1, "b1", 2, in_fd, NULL, NULL), 0);
    free(testutil_capture_end());
    assert_int_equal(o.done, 1);
    batchout_close(&o);
    got = slurp(out);
    want = xasprintf("%s\n", l1);
    assert_string_equal(got, want);
    free(got), free(want), free(text), free(l1), free(l2), free(out);
}

/* ---- refusals ---- */

/* Opening must fail with `message` in what is printed. */
static void check_refused(const char *out, const char *err, const char *message) {
    batchout o;
    testutil_capture_begin();
    int rc = batchout_open(&o, out, err, 0, "b1", 1, in_fd, NULL, NULL);
    char *printed = testutil_capture_end();
    assert_int_equal(rc, -1);
    if (!strstr(printed, message)) fail_msg("got '%s', want '%s'", printed, message);
    assert_int_equal(o.fd, -1);
    assert_int_equal(o.err_fd, -1);
    assert_null(o.seen);
    free(printed);
}

static void test_refused_files(void **state) {
    (void)state;
    char *in = testutil_path("in.jsonl"), *out = testutil_path("out.jsonl");
    char *dir = testutil_path("dir"), *missing = testutil_path("no/such/out.jsonl");
    assert_int_equal(mkdir(dir, 0700), 0);
    check_refused(in, NULL, "it is the input file");
    check_refused(out, in, "it is the input file");
    check_refused(out, out, "the output and the errors file must differ");
    check_refused("/dev/null", NULL, "not a regular file");
    check_refused(dir, NULL, "cannot open");
    check_refused(missing, NULL, "cannot open");
    /* A second writer of the same file is refused while the first holds it. */
    batchout o;
    assert_int_equal(batchout_open(&o, out, NULL, 0, "b1", 1, in_fd, NULL, NULL), 0);
    check_refused(out, NULL, "another chatq batch is writing it");
    batchout_close(&o);
    assert_int_equal(batchout_open(&o, out, NULL, 0, "b1", 1, in_fd, NULL, NULL), 0);
    batchout_close(&o);
    free(in), free(out), free(dir), free(missing);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lines_go_to_their_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_file_without_errors_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lines_that_are_not_strict_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_totals_saturate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_reads_back_and_cuts_the_tail, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resume_cuts_at_the_first_damaged_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refused_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

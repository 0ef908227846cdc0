/* test_batchin.c — the input file of `chatq batch` (cli/batchin.c): turning
 * one line into its job, checking a whole file (bad lines named, duplicate
 * custom_ids, the (provider, model) table, marks, size and hash), finding
 * a line again, and noticing a changed file.
 *
 * Files live in a fresh directory under /tmp. The messages batchin prints
 * go to stderr; the tests that check them capture them first
 * (testutil_capture_begin/testutil_capture_end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <json-c/json.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/batchin.h"
#include "common/buf.h"
#include "tests/unit/testutil.h"

static const char *tmpdir;

static int setup(void **state) {
    (void)state;
    tmpdir = testutil_tmpdir("batchin");
    return tmpdir ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return testutil_tmpdir_remove();
}


/* ---- lines ---- */

/* A good request line, custom_id "c<n>", with the given model and
 * provider (NULL: none), and a '\n'. */
static void add_good(buf *b, int n, const char *model, const char *provider) {
    buf_printf(b, "{\"custom_id\":\"c%d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",", n);
    if (provider) buf_printf(b, "\"provider\":\"%s\",", provider);
    buf_printf(b, "\"body\":{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":"
                  "\"line %d\"}]}}\n", model, n);
}

/* A batchin good for batchin_build() alone (no file). */
static void init_builder(batchin *in, size_t max_job_bytes, const char *tenant) {
    memset(in, 0, sizeof *in);
    in->fd = -1;
    in->max_job_bytes = max_job_bytes;
    in->batch_id = "b1";
    in->reply_to = "chatq:batch:b1:out";
    in->tenant = tenant;
}

/* Opens tmpdir/name holding b for a batch of id b1. Returns the path. */
static char *open_input(batchin *in, const char *name, const buf *b) {
    char *path = testutil_write_file(name, buf_cstr(b), b->len);
    assert_int_equal(batchin_open(in, path, 1 << 20), 0);
    in->batch_id = "b1";
    in->reply_to = "chatq:batch:b1:out";
    return path;
}

static const char *get_str(json_object *o, const char *key) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* ---- batchin_build ---- */

static void test_build_adds_the_batch_members(void **state) {
    (void)state;
    batchin in;
    batchin_info info;
    char err[320];
    buf line = {0};
    init_builder(&in, 1 << 20, NULL);
    add_good(&line, 7, "gpt-x", NULL);
    char *text = batchin_build(&in, buf_cstr(&line), line.len - 1, 7, err, sizeof err, &info);
    assert_non_null(text);
    json_object *job = json_tokener_parse(text);
    assert_non_null(job);
    assert_string_equal(get_str(job, "id"), "b1-7");
    assert_string_equal(get_str(job, "reply_to"), "chatq:batch:b1:out");
    assert_string_equal(get_str(job, "custom_id"), "c7");
    assert_string_equal(get_str(job, "method"), "POST");
    json_object *v;
    assert_true(json_object_object_get_ex(job, "stream", &v));
    assert_true(json_object_is_type(v, json_type_boolean) && !json_object_get_boolean(v));
    assert_false(json_object_object_get_ex(job, "tenant", NULL));
    json_object_put(job);
    free(text);
    assert_int_equal(info.custom_id_len, 2);
    assert_memory_equal(info.custom_id, "c7", 2);
    assert_string_equal(info.model, "gpt-x");
    assert_null(info.provider);
    batchin_info_free(&info);
    buf_free(&line);
}

static void test_build_tenant_and_provider(void **state) {
    (void)state;
    batchin in;
    batchin_info info;
    char err[320];
    buf line = {0};
    init_builder(&in, 1 << 20, "acme");
    add_good(&line, 1, "m", "openai");
    char *text = batchin_build(&in, buf_cstr(&line), line.len, 1, err, sizeof err, &info);
    assert_non_null(text); /* the '\n' counts as trailing whitespace */
    json_object *job = json_tokener_parse(text);
    assert_string_equal(get_str(job, "tenant"), "acme");
    assert_string_equal(get_str(job, "provider"), "openai");
    json_object_put(job);
    free(text);
    assert_string_equal(info.provider, "openai");
    batchin_info_free(&info);
    /* No info wanted: the text alone. */
    text = batchin_build(&in, buf_cstr(&line), line.len, 2, err, sizeof err, NULL);
    assert_non_null(text);
    free(text);
    buf_free(&line);
}

/* The message for `line`, which must be refused; *cid_out gets the
 * custom_id batchin could still read (caller frees). */
static void check_refused(const batchin *in, const char *line, const char *want_prefix,
                          const char *want_cid) {
    batchin_info info;
    char err[320];
    char *text = batchin_build(in, line, strlen(line), 3, err, sizeof err, &info);
    if (text) fail_msg("accepted: %s", line);
    if (strncmp(err, want_prefix, strlen(want_prefix)))
        fail_msg("line %s: got '%s', want '%s...'", line, err, want_prefix);
    if (want_cid) {
        assert_non_null(info.custom_id);
        assert_int_equal(info.custom_id_len, strlen(want_cid));
        assert_memory_equal(info.custom_id, want_cid, info.custom_id_len);
    } else {
        assert_null(info.custom_id);
    }
    assert_null(info.model); /* only a good line's */
    batchin_info_free(&info);
}

static void test_build_refusals(void **state) {
    (void)state;
    batchin in;
    init_builder(&in, 1 << 20, NULL);
    const char *rest = "\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                       "\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    char line[512];
    check_refused(&in, "", "empty line", NULL);
    check_refused(&in, " \t\r", "empty line", NULL);
    check_refused(&in, "{not json", "line is not valid JSON", NULL);
    check_refused(&in, "[1, 2]", "line must be a JSON object, not array", NULL);
    snprintf(line, sizeof line, "{%s}", rest);
    check_refused(&in, line, "custom_id is required", NULL);
    snprintf(line, sizeof line, "{\"custom_id\":5,%s}", rest);
    check_refused(&in, line, "custom_id must be a string, not int", NULL);
    snprintf(line, sizeof line, "{\"custom_id\":\"\",%s}", rest);
    check_refused(&in, line, "custom_id must not be empty", NULL);
    check_refused(&in, "{\"custom_id\":\"a\"}", "method is required (\"POST\")", "a");
    check_refused(&in, "{\"custom_id\":\"a\",\"method\":\"POST\"}",
                  "url is required (\"/v1/chat/completions\")", "a");
    snprintf(line, sizeof line, "{\"custom_id\":\"a\",\"id\":\"x\",%s}", rest);
    check_refused(&in, line, "id is not allowed", "a");
    snprintf(line, sizeof line, "{\"custom_id\":\"a\",\"reply_to\":\"x\",%s}", rest);
    check_refused(&in, line, "reply_to is not allowed", "a");
    /* job_parse() judges the rest, on the job text. */
    check_refused(&in, "{\"custom_id\":\"a\",\"method\":\"GET\",\"url\":\"/v1/chat/completions\","
                       "\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}}",
                  "method must be \"POST\"", "a");
    check_refused(&in, "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                       "\"body\":{\"model\":\"m\",\"messages\":[]}}",
                  "body.messages must be a non-empty array", "a");
    /* A custom_id with a NUL byte is read whole. */
    snprintf(line, sizeof line, "{\"custom_id\":\"a\\u0000b\"}");
    batchin_info info;
    char err[320];
    assert_null(batchin_build(&in, line, strlen(line), 1, err, sizeof err, &info));
    assert_int_equal(info.custom_id_len, 3);
    assert_memory_equal(info.custom_id, "a\0b", 3);
    batchin_info_free(&info);
}

static void test_build_max_job_bytes(void **state) {
    (void)state;
    batchin in;
    char err[320];
    buf line = {0};
    add_good(&line, 1, "m", NULL);
    init_builder(&in, 100, NULL); /* the job text is longer than the line */
    assert_null(batchin_build(&in, buf_cstr(&line), line.len, 1, err, sizeof err, NULL));
    assert_non_null(strstr(err, "longer than max_job_bytes (100)"));
    init_builder(&in, 1000, NULL);
    char *text = batchin_build(&in, buf_cstr(&line), line.len, 1, err, sizeof err, NULL);
    assert_non_null(text);
    free(text);
    buf_free(&line);
}

/* ---- batchin_validate ---- */

static void test_validate_good_file(void **state) {
    (void)state;
    batchin in;
    buf b = {0};
    /* Four pairs: m1 and m2, each routed or with provider p. */
    for (int n = 1; n <= 200; n++)
        add_good(&b, n, n % 2 ? "m1" : "m2", n % 5 == 0 ? "p" : NULL);
    char *path = open_input(&in, "good.jsonl", &b);
    assert_int_equal(batchin_validate(&in), 0);
    assert_int_equal(in.lines, 200);
    assert_int_equal(in.size, (long long)b.len);
    assert_true(in.hash == jsonl_fnv(JSONL_FNV_INIT, buf_cstr(&b), b.len));
    assert_true(batchin_unchanged(&in));
    /* A mark at lines 1, 65, 129 and 193. */
    assert_int_equal(in.nmarks, 4);
    for (size_t k = 0; k < in.nmarks; k++) {
        const char *p = buf_cstr(&b);
        for (size_t skip = k * BATCHIN_MARK_EVERY; skip > 0; skip--) p = strchr(p, '\n') + 1;
        assert_int_equal(in.marks[k], p - buf_cstr(&b));
    }
    assert_int_equal(in.nmodels, 4);
    for (int n = 1; n <= 200; n++) {
        uint16_t idx = in.model_of[n - 1];
        assert_true(idx >= 1 && idx <= 4);
        assert_string_equal(in.models[idx], n % 2 ? "m1" : "m2");
        if (n % 5 == 0)
            assert_string_equal(in.providers[idx], "p");
        else
            assert_null(in.providers[idx]);
    }
    assert_int_equal(in.model_of[0], 1); /* numbered in order of appearance */
    assert_int_equal(in.model_of[1], 2);
    assert_int_equal(in.model_of[4], 3);  /* line 5: (p, m1) */
    assert_int_equal(in.model_of[9], 4);  /* line 10: (p, m2) */
    batchin_close(&in);
    assert_int_equal(in.fd, -1);
    assert_null(in.model_of);
    free(path);
    buf_free(&b);
}

static void test_validate_names_bad_lines(void **state) {
    (void)state;
    batchin in;
    buf b = {0};
    add_good(&b, 1, "m", NULL);
    buf_puts(&b, "{not json\n");
    add_good(&b, 1, "m", NULL); /* line 3 repeats line 1's custom_id */
    char *path = open_input(&in, "bad.jsonl", &b);
    testutil_capture_begin();
    int rc = batchin_validate(&in);
    char *err = testutil_capture_end();
    assert_int_equal(rc, -1);
    char *want = xasprintf("chatq: %s:2: line is not valid JSON", path);
    assert_non_null(strstr(err, want));
    free(want);
    want = xasprintf("chatq: %s:3: duplicate custom_id \"c1\" (first on line 1)\n", path);
    assert_non_null(strstr(err, want));
    free(want);
    want = xasprintf("chatq: %s: 2 of 3 lines are invalid; nothing was submitted\n", path);
    assert_non_null(strstr(err, want));
    free(want);
    free(err);
    batchin_close(&in);
    free(path);
    buf_free(&b);
}

/* The duplicate check reads the earlier line again, from the nearest mark. */
static void test_validate_duplicate_far_apart(void **state) {
    (void)state;
    batchin in;
    buf b = {0};
    for (int n = 1; n <= 299; n++) add_good(&b, n, "m", NULL);
    add_good(&b, 131, "m", NULL);
    char *path = open_input(&in, "dup.jsonl", &b);
    testutil_capture_begin();
    int rc = batchin_validate(&in);
    char *err = testutil_capture_end();
    assert_int_equal(rc, -1);
    char *want = xasprintf("chatq: %s:300: duplicate custom_id \"c131\" (first on line 131)\n"
                           "chatq: %s: 1 of 300 lines are invalid; nothing was submitted\n",
                           path, path);
    assert_string_equal(err, want);
    free(want);
    free(err);
    batchin_close(&in);
    free(path);
    buf_free(&b);
}

/* `bad` invalid lines after `good_before` good ones, then one good line.
 * model_of grows only on good lines: it used to grow by one doubling per
 * good line, so 1,024 or more bad lines in a row before a good one wrote
 * past its end. It must now hold every line up to the last good one. */
static void check_bad_run(int good_before, int bad) {
    batchin in;
    buf b = {0};
    int n = 0;
    while (n < good_before) add_good(&b, ++n, "m", NULL);
    for (int i = 0; i < bad; i++) buf_printf(&b, "{\"custom_id\":\"x%d\"}\n", ++n);
    add_good(&b, ++n, "m", NULL);
    char *path = open_input(&in, "run.jsonl", &b);
    testutil_capture_begin();
    int rc = batchin_validate(&in);
    char *err = testutil_capture_end();
    assert_int_equal(rc, -1);
    assert_int_equal(in.lines, n);
    assert_non_null(in.model_of);
    assert_true(malloc_usable_size(in.model_of) >= (size_t)n * sizeof *in.model_of);
    assert_int_equal(in.model_of[n - 1], 1);          /* the last line, good */
    if (good_before) assert_int_equal(in.model_of[0], 1);
    assert_int_equal(in.model_of[good_before], 0);    /* the first bad one */
    char *want = xasprintf("chatq: %s: ... and %d more bad lines\n", path,
                           bad - BATCHIN_MAX_REPORTED);
    assert_non_null(strstr(err, want));
    free(want);
    want = xasprintf("%d of %d lines are invalid", bad, n);
    assert_non_null(strstr(err, want));
    free(want);
    /* Only the first BATCHIN_MAX_REPORTED are named. */
    want = xasprintf("chatq: %s:%d: method is required", path,
                     good_before + BATCHIN_MAX_REPORTED);
    assert_non_null(strstr(err, want));
    free(want);
    want = xasprintf("chatq: %s:%d: ", path, good_before + BATCHIN_MAX_REPORTED + 1);
    assert_null(strstr(err, want));
    free(want);
    free(err);
    batchin_close(&in);
    free(path);
    buf_free(&b);
}

static void test_many_invalid_lines_before_a_valid_one(void **state) {
    (void)state;
    check_bad_run(0, 1100);
    check_bad_run(0, 1024);  /* the first count that overflowed */
    check_bad_run(1, 2100);  /* past a capacity that had grown already */
    check_bad_run(0, 5000);  /* more than one doubling short */
}

static void test_validate_empty_and_too_long(void **state) {
    (void)state;
    batchin in;
    buf b = {0};
    char *path = open_input(&in, "empty.jsonl", &b);
    testutil_capture_begin();
    int rc = batchin_validate(&in);
    char *err = testutil_capture_end();
    assert_int_equal(rc, -1);
    char *want = xasprintf("chatq: %s: the file holds no request\n", path);
    assert_string_equal(err, want);
    free(want);
    free(err);
    batchin_close(&in);
    free(path);

    /* A line longer than max_job_bytes * 2 + 4096 is refused unread. */
    for (int i = 0; i < 5000; i++) buf_putc(&b, ' ');
    buf_putc(&b, '\n');
    add_good(&b, 2, "m", NULL);
    path = testutil_write_file("long.jsonl", buf_cstr(&b), b.len);
    assert_int_equal(batchin_open(&in, path, 100), 0);
    in.batch_id = "b1";
    in.reply_to = "k";
    testutil_capture_begin();
    rc = batchin_validate(&in);
    err = testutil_capture_end();
    assert_int_equal(rc, -1);
    want = xasprintf("chatq: %s:1: line is longer than 4296 bytes (max_job_bytes is 100)\n", path);
    assert_non_null(strstr(err, want));
    free(want);
    free(err);
    batchin_close(&in);
    free(path);
    buf_free(&b);
}

/* ---- opening, seeking, changes ---- */

static void test_open_refusals(void **state) {
    (void)state;
    batchin in;
    char *missing = xasprintf("%s/missing.jsonl", tmpdir);
    testutil_capture_begin();
    int rc = batchin_open(&in, missing, 1000);
    char *err = testutil_capture_end();
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "cannot open"));
    free(err);
    free(missing);
    testutil_capture_begin();
    rc = batchin_open(&in, tmpdir, 1000);
    err = testutil_capture_end();
    assert_int_equal(rc, -1);
    assert_int_equal(in.fd, -1);
    assert_non_null(strstr(err, "not a regular file"));
    free(err);
}

static void test_seek_finds_any_line(void **state) {
    (void)state;
    batchin in;
    jsonl_reader r;
    buf b = {0};
    for (int n = 1; n <= 200; n++) add_good(&b, n, "m", NULL);
    char *path = open_input(&in, "seek.jsonl", &b);
    assert_int_equal(batchin_validate(&in), 0);
    static const int lines[] = {1, 2, 64, 65, 66, 129, 130, 192, 193, 200};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        char want[32];
        assert_int_equal(batchin_seek(&in, &r, lines[i]), 0);
        assert_int_equal(jsonl_next(&r), 1);
        assert_int_equal(r.lineno, lines[i]);
        snprintf(want, sizeof want, "\"custom_id\":\"c%d\"", lines[i]);
        assert_non_null(strstr(buf_cstr(&r.line), want));
        jsonl_free(&r);
    }
    /* Just past the last line: the end. */
    assert_int_equal(batchin_seek(&in, &r, 201), 0);
    assert_int_equal(jsonl_next(&r), 0);
    jsonl_free(&r);
    batchin_close(&in);
    free(path);
    buf_free(&b);
}

/* 193 lines: the line past the last starts a new mark that does not exist. */
static void test_seek_past_a_last_line_on_a_mark(void **state) {
    (void)state;
    batchin in;
    jsonl_reader r;
    buf b = {0};
    for (int n = 1; n <= 192; n++) add_good(&b, n, "m", NULL);
    char *path = open_input(&in, "seek192.jsonl", &b);
    assert_int_equal(batchin_validate(&in), 0);
    assert_int_equal(in.nmarks, 3);
    assert_int_equal(batchin_seek(&in, &r, 193), 0);
    assert_int_equal(jsonl_next(&r), 0);
    jsonl_free(&r);
    batchin_close(&in);
    free(path);
    buf_free(&b);
}

static void test_unchanged_sees_a_longer_file(void **state) {
    (void)state;
    batchin in;
    buf b = {0};
    add_good(&b, 1, "m", NULL);
    char *path = open_input(&in, "grow.jsonl", &b);
    assert_int_equal(batchin_validate(&in), 0);
    assert_true(batchin_unchanged(&in));
    FILE *f = fopen(path, "ab");
    fputs("\n", f);
    fclose(f);
    assert_false(batchin_unchanged(&in));
    batchin_close(&in);
    free(path);
    buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_adds_the_batch_members),
        cmocka_unit_test(test_build_tenant_and_provider),
        cmocka_unit_test(test_build_refusals),
        cmocka_unit_test(test_build_max_job_bytes),
        cmocka_unit_test_setup_teardown(test_validate_good_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_names_bad_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_duplicate_far_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_invalid_lines_before_a_valid_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_validate_empty_and_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seek_finds_any_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seek_past_a_last_line_on_a_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unchanged_sees_a_longer_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

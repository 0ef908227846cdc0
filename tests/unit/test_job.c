/* test_job.c — job_parse() rules (SPEC §4), the effective stream flag, the
 * id fallback, and the body job_request_body() sends upstream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/job.h"

#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
#define BODY "{\"model\":\"gpt-x\"," MSGS "}"

static char err[256];

static int parse(job *j, const char *s) {
    err[0] = '\0';
    return job_parse(j, s, strlen(s), 1 << 20, err, sizeof err);
}

/* The job fails, and its message mentions `needle`. */
static void expect_invalid(const char *text, const char *needle) {
    job j;
    int rc = parse(&j, text);
    if (rc != -1 || !strstr(err, needle))
        fail_msg("job %s: rc=%d err=\"%s\", wanted a message naming %s", text, rc, err, needle);
    assert_null(strchr(err, '\n'));
    job_free(&j);
}

/* ---- a good job ---- */

static void test_valid_job_fills_fields(void **state) {
    (void)state;
    job j;
    const char *s = "{\"id\":\"a-1\",\"custom_id\":\"req 7\",\"method\":\"POST\","
                    "\"url\":\"/v1/chat/completions\",\"tenant\":\"acme\",\"reply_to\":\"out\","
                    "\"provider\":\"p1\",\"metadata\":{\"k\":2},\"timeout_ms\":1500,"
                    "\"max_attempts\":4,\"result_ttl_s\":60,\"body\":" BODY "}";
    assert_int_equal(parse(&j, s), 0);
    assert_string_equal(err, "");
    assert_string_equal(j.id, "a-1");
    assert_int_equal(j.id_generated, 0);
    assert_string_equal(j.custom_id, "req 7"); /* custom_id need not be id-shaped */
    assert_string_equal(j.model, "gpt-x");
    assert_string_equal(j.tenant, "acme");
    assert_string_equal(j.reply_to, "out");
    assert_string_equal(j.provider, "p1");
    assert_non_null(j.metadata);
    assert_int_equal(json_object_get_int(json_object_object_get(j.metadata, "k")), 2);
    assert_ptr_equal(j.body, json_object_object_get(j.root, "body"));
    assert_int_equal(j.stream, 0);
    assert_int_equal(j.timeout_ms, 1500);
    assert_int_equal(j.max_attempts, 4);
    assert_int_equal(j.result_ttl_s, 60);
    job_free(&j);
}

static void test_optional_fields_absent(void **state) {
    (void)state;
    job j;
    assert_int_equal(parse(&j, "{\"id\":\"x\",\"body\":" BODY "}"), 0);
    assert_null(j.custom_id);
    assert_null(j.tenant);
    assert_null(j.reply_to);
    assert_null(j.provider);
    assert_null(j.metadata);
    assert_int_equal(j.timeout_ms, -1);
    assert_int_equal(j.max_attempts, -1);
    assert_int_equal(j.result_ttl_s, -1);
    job_free(&j);
}

/* raw need not be NUL-terminated: bytes past len are not looked at. */
static void test_length_bounded_input(void **state) {
    (void)state;
    const char *obj = "{\"id\":\"x\",\"body\":" BODY "}";
    size_t n = strlen(obj);
    char *raw = xmalloc(n + 8);
    memcpy(raw, obj, n);
    memcpy(raw + n, "garbage!", 8); /* no NUL anywhere */
    job j;
    assert_int_equal(job_parse(&j, raw, n, 0, err, sizeof err), 0);
    assert_string_equal(j.id, "x");
    job_free(&j);
    free(raw);
}

static void test_trailing_whitespace_ok(void **state) {
    (void)state;
    job j;
    assert_int_equal(parse(&j, "{\"id\":\"x\",\"body\":" BODY "}\r\n  \n"), 0);
    job_free(&j);
    /* quotes, letters and escapes inside strings are content, not syntax */
    assert_int_equal(parse(&j, "{\"id\":\"x\",\"body\":{\"model\":\"it's NaN \\\\\","
                               "\"messages\":[{\"content\":\"\\\"'Infinity'\\\"\"}]}}"),
                     0);
    assert_string_equal(j.model, "it's NaN \\");
    job_free(&j);
}

/* ---- one test per rule ---- */

static void test_too_long_checked_before_parsing(void **state) {
    (void)state;
    /* Not JSON either: the size rule must win, since it is checked first. */
    const char *s = "this is not json at all, and it is long";
    job j;
    assert_int_equal(job_parse(&j, s, strlen(s), 10, err, sizeof err), -1);
    assert_non_null(strstr(err, "max_job_bytes"));
    assert_non_null(strstr(err, "(10)"));
    assert_null(strstr(err, "JSON"));
    assert_null(j.root);
    job_free(&j);
    /* exactly at the limit is fine */
    const char *ok = "{\"id\":\"x\",\"body\":" BODY "}";
    assert_int_equal(job_parse(&j, ok, strlen(ok), strlen(ok), err, sizeof err), 0);
    job_free(&j);
}

static void test_not_json(void **state) {
    (void)state;
    expect_invalid("{\"id\":\"x\",", "not valid JSON");
    expect_invalid("", "not valid JSON");
    expect_invalid("{'id':1}", "not valid JSON");
    expect_invalid("{\"id\":\"x\",\"body\":" BODY "} trailing", "not valid JSON");
    expect_invalid("{\"a\":1}{\"b\":2}", "not valid JSON");
    expect_invalid("{\"a\":\"\xff\xfe\"}", "not valid JSON"); /* not UTF-8 */
    /* json-c takes these even in strict mode; RFC 8259 does not */
    expect_invalid("{\"id\":\"x\",\"body\":{'model':\"m\"," MSGS "}}", "single-quoted");
    expect_invalid("{\"id\":\"x\",\"t\":NaN,\"body\":" BODY "}", "not valid JSON");
    expect_invalid("{\"id\":\"x\",\"t\":-Infinity,\"body\":" BODY "}", "not valid JSON");
    expect_invalid("{\"id\":\"x\",\"t\":\"a\tb\",\"body\":" BODY "}", "control character");
    expect_invalid("{/* c */\"id\":\"x\",\"body\":" BODY "}", "not valid JSON");
    expect_invalid("{\"id\":\"x\",\"body\":" BODY ",}", "not valid JSON");
}

static void test_not_object(void **state) {
    (void)state;
    expect_invalid("[1,2]", "JSON object");
    expect_invalid("null", "JSON object");
    expect_invalid("\"job\"", "JSON object");
    expect_invalid("12", "JSON object");
    expect_invalid("true", "JSON object");
}

static void test_embedded_nul_rejected(void **state) {
    (void)state;
    const char raw[] = "{\"id\":\"x\",\"body\":" BODY "}\0{}";
    job j;
    assert_int_equal(job_parse(&j, raw, sizeof raw - 1, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "not valid JSON"));
    job_free(&j);
}

static void test_no_body(void **state) {
    (void)state;
    expect_invalid("{\"id\":\"x\"}", "body is required");
}

static void test_body_not_object(void **state) {
    (void)state;
    expect_invalid("{\"id\":\"x\",\"body\":[1]}", "body must be an object");
    expect_invalid("{\"id\":\"x\",\"body\":\"{}\"}", "body must be an object");
}

static void test_no_model(void **state) {
    (void)state;
    expect_invalid("{\"body\":{" MSGS "}}", "body.model");
    expect_invalid("{\"body\":{\"model\":\"\"," MSGS "}}", "body.model");
    expect_invalid("{\"body\":{\"model\":7," MSGS "}}", "body.model");
}

static void test_messages_not_nonempty_array(void **state) {
    (void)state;
    expect_invalid("{\"body\":{\"model\":\"m\"}}", "body.messages");
    expect_invalid("{\"body\":{\"model\":\"m\",\"messages\":[]}}", "body.messages");
    expect_invalid("{\"body\":{\"model\":\"m\",\"messages\":{\"a\":1}}}", "body.messages");
}

static void test_bad_id(void **state) {
    (void)state;
    char long_id[140], json[400];
    expect_invalid("{\"id\":\"a b\",\"body\":" BODY "}", "id must be");
    expect_invalid("{\"id\":\"\",\"body\":" BODY "}", "id must be");
    expect_invalid("{\"id\":\"a/b\",\"body\":" BODY "}", "id must be");
    expect_invalid("{\"id\":42,\"body\":" BODY "}", "id must be a string");
    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    snprintf(json, sizeof json, "{\"id\":\"%s\",\"body\":" BODY "}", long_id);
    expect_invalid(json, "id must be");
    long_id[128] = '\0'; /* 128 is the longest allowed */
    snprintf(json, sizeof json, "{\"id\":\"%s\",\"body\":" BODY "}", long_id);
    job j;
    assert_int_equal(parse(&j, json), 0);
    assert_int_equal(strlen(j.id), 128);
    job_free(&j);
}

static void test_custom_id_not_usable_as_id(void **state) {
    (void)state;
    job j;
    assert_int_equal(parse(&j, "{\"custom_id\":\"req 1\",\"reply_to\":\"r\",\"body\":" BODY "}"),
                     -1);
    assert_non_null(strstr(err, "custom_id"));
    assert_null(j.id);
    assert_string_equal(j.custom_id, "req 1");
    assert_string_equal(j.reply_to, "r");
    job_free(&j);
}

static void test_method_must_be_post(void **state) {
    (void)state;
    expect_invalid("{\"method\":\"GET\",\"body\":" BODY "}", "method");
    expect_invalid("{\"method\":\"post\",\"body\":" BODY "}", "method");
    expect_invalid("{\"method\":1,\"body\":" BODY "}", "method");
}

static void test_url_must_be_chat_completions(void **state) {
    (void)state;
    expect_invalid("{\"url\":\"/v1/embeddings\",\"body\":" BODY "}", "url");
    expect_invalid("{\"url\":null,\"body\":" BODY "}", "url");
}

static void test_stream_must_be_bool(void **state) {
    (void)state;
    expect_invalid("{\"stream\":\"true\",\"body\":" BODY "}", "stream must be a boolean");
    expect_invalid("{\"stream\":1,\"body\":" BODY "}", "stream must be a boolean");
}

static void test_string_fields_types(void **state) {
    (void)state;
    expect_invalid("{\"tenant\":5,\"body\":" BODY "}", "tenant must be a string");
    expect_invalid("{\"reply_to\":[\"q\"],\"body\":" BODY "}", "reply_to must be a string");
    expect_invalid("{\"provider\":{},\"body\":" BODY "}", "provider must be a string");
    expect_invalid("{\"custom_id\":9,\"body\":" BODY "}", "custom_id must be a string");
}

static void test_metadata_must_be_object(void **state) {
    (void)state;
    expect_invalid("{\"metadata\":[1],\"body\":" BODY "}", "metadata must be an object");
    expect_invalid("{\"metadata\":\"x\",\"body\":" BODY "}", "metadata must be an object");
}

static void test_positive_integers(void **state) {
    (void)state;
    static const char *keys[] = {"timeout_ms", "max_attempts", "result_ttl_s"};
    static const char *bad[] = {"0", "-5", "1.5", "\"100\"", "true", "null"};
    for (size_t k = 0; k < 3; k++) {
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            char json[300], want[64];
            snprintf(json, sizeof json, "{\"%s\":%s,\"body\":" BODY "}", keys[k], bad[b]);
            snprintf(want, sizeof want, "%s must be a positive integer", keys[k]);
            expect_invalid(json, want);
        }
    }
}

/* A failing job still carries what could be read, for the failure record. */
static void test_failure_fills_readable_fields(void **state) {
    (void)state;
    job j;
    const char *s = "{\"id\":\"j1\",\"custom_id\":\"c1\",\"reply_to\":\"rq\",\"tenant\":\"t\","
                    "\"metadata\":{\"a\":1},\"body\":{\"model\":\"m\",\"messages\":[]}}";
    assert_int_equal(parse(&j, s), -1);
    assert_non_null(strstr(err, "body.messages"));
    assert_string_equal(j.id, "j1");
    assert_string_equal(j.custom_id, "c1");
    assert_string_equal(j.reply_to, "rq");
    assert_string_equal(j.tenant, "t");
    assert_string_equal(j.model, "m");
    assert_non_null(j.metadata);
    job_free(&j);
}

static void test_failure_bad_id_leaves_id_null(void **state) {
    (void)state;
    job j;
    assert_int_equal(parse(&j, "{\"id\":\"bad id\",\"reply_to\":\"rq\",\"body\":" BODY "}"), -1);
    assert_null(j.id);
    assert_string_equal(j.reply_to, "rq");
    assert_string_equal(j.model, "gpt-x");
    job_free(&j);
}

/* Only the first failure is reported. */
static void test_first_error_wins(void **state) {
    (void)state;
    job j;
    assert_int_equal(parse(&j, "{\"id\":\"a b\",\"tenant\":1}"), -1);
    assert_non_null(strstr(err, "id must be"));
    assert_null(strstr(err, "tenant"));
    job_free(&j);
}

/* Every prefix of a valid job is handled without crashing (run under ASan). */
static void test_every_truncation_is_safe(void **state) {
    (void)state;
    const char *s = "{\"id\":\"x\",\"stream\":true,\"metadata\":{\"a\":[1,2.5,null]},"
                    "\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                    "\"h\\u00e9\"}],\"stream_options\":{\"x\":1}}}";
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        char *cut = xstrndup(s, i);
        job j;
        assert_int_equal(job_parse(&j, cut, i, 0, err, sizeof err), -1);
        job_free(&j);
        free(cut);
    }
    job j;
    assert_int_equal(job_parse(&j, s, n, 0, err, sizeof err), 0);
    job_free(&j);
}

/* ---- the effective stream flag ---- */

static int stream_of(const char *s) {
    job j;
    if (parse(&j, s) != 0) fail_msg("%s: %s", s, err);
    int v = j.stream;
    job_free(&j);
    return v;
}

static void test_stream_flag(void **state) {
    (void)state;
    assert_int_equal(stream_of("{\"body\":" BODY "}"), 0);
    assert_int_equal(stream_of("{\"stream\":true,\"body\":" BODY "}"), 1);
    assert_int_equal(stream_of("{\"body\":{\"model\":\"m\"," MSGS ",\"stream\":true}}"), 1);
    assert_int_equal(stream_of("{\"body\":{\"model\":\"m\"," MSGS ",\"stream\":false}}"), 0);
    /* job.stream wins over body.stream either way */
    assert_int_equal(stream_of("{\"stream\":false,\"body\":{\"model\":\"m\"," MSGS
                               ",\"stream\":true}}"),
                     0);
    assert_int_equal(stream_of("{\"stream\":true,\"body\":{\"model\":\"m\"," MSGS
                               ",\"stream\":false}}"),
                     1);
    /* a non-bool body.stream counts as absent */
    assert_int_equal(stream_of("{\"body\":{\"model\":\"m\"," MSGS ",\"stream\":\"yes\"}}"), 0);
    assert_int_equal(stream_of("{\"body\":{\"model\":\"m\"," MSGS ",\"stream\":1}}"), 0);
}

/* ---- job_request_body ---- */

static void test_request_body_streaming(void **state) {
    (void)state;
    job j;
    const char *s = "{\"stream\":true,\"body\":{\"model\":\"m\"," MSGS ",\"stream\":false,"
                    "\"stream_options\":{\"include_usage\":false,\"chunk\":3},\"top_p\":0.50}}";
    assert_int_equal(parse(&j, s), 0);
    const char *before = json_object_to_json_string_ext(j.body, JSON_C_TO_STRING_PLAIN);
    char *saved = xstrdup(before);
    char *out = job_request_body(&j);
    assert_string_equal(out,
                        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                        "\"stream\":true,\"stream_options\":{\"include_usage\":true,\"chunk\":3},"
                        "\"top_p\":0.50}");
    /* The job's own body is untouched, and a second call says the same. */
    assert_string_equal(json_object_to_json_string_ext(j.body, JSON_C_TO_STRING_PLAIN), saved);
    char *again = job_request_body(&j);
    assert_string_equal(again, out);
    free(again);
    free(out);
    free(saved);
    job_free(&j);
}

static void test_request_body_streaming_adds_fields(void **state) {
    (void)state;
    job j;
    assert_int_equal(parse(&j, "{\"stream\":true,\"body\":" BODY "}"), 0);
    char *out = job_request_body(&j);
    assert_string_equal(out, "{\"model\":\"gpt-x\",\"messages\":[{\"role\":\"user\",\"content\":"
                             "\"hi\"}],\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    free(out);
    job_free(&j);
}

static void test_request_body_streaming_bad_options_replaced(void **state) {
    (void)state;
    job j;
    assert_int_equal(parse(&j, "{\"body\":{\"model\":\"m\",\"stream\":true,\"stream_options\":null,"
                               MSGS "}}"),
                     0);
    char *out = job_request_body(&j);
    json_object *o = json_tokener_parse(out);
    json_object *so = json_object_object_get(o, "stream_options");
    assert_true(json_object_is_type(so, json_type_object));
    assert_true(json_object_get_boolean(json_object_object_get(so, "include_usage")));
    assert_int_equal(json_object_object_length(so), 1);
    json_object_put(o);
    free(out);
    job_free(&j);
}

static void test_request_body_not_streaming(void **state) {
    (void)state;
    job j;
    const char *s = "{\"stream\":false,\"body\":{\"model\":\"m\",\"stream\":true,"
                    "\"messages\":[{\"role\":\"user\",\"content\":\"a/b \xc3\xa9 \\u00e9 \\\"q\\\"\"}],"
                    "\"stream_options\":{\"include_usage\":true},\"temperature\":0.70,"
                    "\"n\":2,\"logit_bias\":{\"50256\":-100},\"seed\":null,\"x\":1e3}}";
    assert_int_equal(parse(&j, s), 0);
    char *out = job_request_body(&j);
    assert_string_equal(out, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                             "\"a/b \xc3\xa9 \xc3\xa9 \\\"q\\\"\"}],\"temperature\":0.70,\"n\":2,"
                             "\"logit_bias\":{\"50256\":-100},\"seed\":null,\"x\":1e3}");
    free(out);
    job_free(&j);
}

/* ---- ids ---- */

static void test_id_fallback_order(void **state) {
    (void)state;
    job j;
    assert_int_equal(parse(&j, "{\"id\":\"the-id\",\"custom_id\":\"cid\",\"body\":" BODY "}"), 0);
    assert_string_equal(j.id, "the-id");
    assert_int_equal(j.id_generated, 0);
    job_free(&j);

    assert_int_equal(parse(&j, "{\"custom_id\":\"request-1\",\"body\":" BODY "}"), 0);
    assert_string_equal(j.id, "request-1");
    assert_string_equal(j.custom_id, "request-1");
    assert_int_equal(j.id_generated, 0);
    job_free(&j);

    assert_int_equal(parse(&j, "{\"body\":" BODY "}"), 0);
    assert_non_null(j.id);
    assert_int_equal(j.id_generated, 1);
    assert_int_equal(strncmp(j.id, "job-", 4), 0);
    assert_true(job_id_valid(j.id));
    char first[32];
    snprintf(first, sizeof first, "%s", j.id);
    job_free(&j);

    assert_int_equal(parse(&j, "{\"body\":" BODY "}"), 0);
    assert_string_not_equal(j.id, first);
    job_free(&j);
}

static void test_generate_id_format(void **state) {
    (void)state;
    char a[32], b[32];
    job_generate_id(a);
    job_generate_id(b);
    assert_int_equal(strlen(a), 28);
    assert_memory_equal(a, "job-", 4);
    for (int i = 4; i < 28; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));
    assert_string_not_equal(a, b);
}

static void test_id_valid(void **state) {
    (void)state;
    assert_true(job_id_valid("a"));
    assert_true(job_id_valid("Az09._:-"));
    assert_false(job_id_valid(""));
    assert_false(job_id_valid(NULL));
    assert_false(job_id_valid("a b"));
    assert_false(job_id_valid("a/b"));
    assert_false(job_id_valid("\xc3\xa9"));
    char s[131];
    memset(s, 'x', 130);
    s[130] = '\0';
    assert_false(job_id_valid(s));
    s[129] = '\0';
    assert_false(job_id_valid(s)); /* 129 characters */
    s[128] = '\0';
    assert_true(job_id_valid(s));  /* 128 characters */
}

static void test_free_twice_is_safe(void **state) {
    (void)state;
    job j;
    assert_int_equal(parse(&j, "{\"body\":" BODY "}"), 0);
    job_free(&j);
    job_free(&j);
    assert_null(j.root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_job_fills_fields),
        cmocka_unit_test(test_optional_fields_absent),
        cmocka_unit_test(test_length_bounded_input),
        cmocka_unit_test(test_trailing_whitespace_ok),
        cmocka_unit_test(test_too_long_checked_before_parsing),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_not_object),
        cmocka_unit_test(test_embedded_nul_rejected),
        cmocka_unit_test(test_no_body),
        cmocka_unit_test(test_body_not_object),
        cmocka_unit_test(test_no_model),
        cmocka_unit_test(test_messages_not_nonempty_array),
        cmocka_unit_test(test_bad_id),
        cmocka_unit_test(test_custom_id_not_usable_as_id),
        cmocka_unit_test(test_method_must_be_post),
        cmocka_unit_test(test_url_must_be_chat_completions),
        cmocka_unit_test(test_stream_must_be_bool),
        cmocka_unit_test(test_string_fields_types),
        cmocka_unit_test(test_metadata_must_be_object),
        cmocka_unit_test(test_positive_integers),
        cmocka_unit_test(test_failure_fills_readable_fields),
        cmocka_unit_test(test_failure_bad_id_leaves_id_null),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_every_truncation_is_safe),
        cmocka_unit_test(test_stream_flag),
        cmocka_unit_test(test_request_body_streaming),
        cmocka_unit_test(test_request_body_streaming_adds_fields),
        cmocka_unit_test(test_request_body_streaming_bad_options_replaced),
        cmocka_unit_test(test_request_body_not_streaming),
        cmocka_unit_test(test_id_fallback_order),
        cmocka_unit_test(test_generate_id_format),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_free_twice_is_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

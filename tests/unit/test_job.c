/* test_job.c — job_parse() rules (docs/protocol.md §4), the effective stream flag, the
 * id fallback, and the body job_request_body() sends upstream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/digest.h"
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
            snprintf(want, sizeof want, "%s must be an integer from 1 to ", keys[k]);
            expect_invalid(json, want);
        }
    }
}

/* `key` (at the top, or in body when in_body) set to `value`. */
static int parse_with(job *j, const char *key, const char *value, int in_body) {
    char json[512];
    if (in_body)
        snprintf(json, sizeof json, "{\"id\":\"n\",\"body\":{\"model\":\"m\"," MSGS ",\"%s\":%s}}",
                 key, value);
    else
        snprintf(json, sizeof json, "{\"id\":\"n\",\"%s\":%s,\"body\":" BODY "}", key, value);
    return parse(j, json);
}

static void expect_number(const char *key, int in_body, const char *value, int ok,
                          const char *needle) {
    job j;
    int rc = parse_with(&j, key, value, in_body);
    if (ok ? rc != 0 : rc != -1 || !strstr(err, needle))
        fail_msg("%s=%s: rc=%d err=\"%s\", wanted %s", key, value, rc, err,
                 ok ? "success" : needle);
    job_free(&j);
}

/* Each number at its limit is accepted, one past it refused, and so is a
 * double however it is written (1e16 is an integer's value, not an integer). */
static void test_number_ranges(void **state) {
    (void)state;
    expect_number("timeout_ms", 0, "86400000", 1, NULL);
    expect_number("timeout_ms", 0, "86400001", 0,
                  "timeout_ms must be an integer from 1 to 86400000, not 86400001");
    expect_number("max_attempts", 0, "100", 1, NULL);
    expect_number("max_attempts", 0, "101", 0, "max_attempts must be an integer from 1 to 100");
    expect_number("max_attempts", 0, "2147483648", 0, "not 2147483648");
    expect_number("result_ttl_s", 0, "31536000", 1, NULL);
    expect_number("result_ttl_s", 0, "31536001", 0,
                  "result_ttl_s must be an integer from 1 to 31536000, not 31536001");
    expect_number("result_ttl_s", 0, "1e16", 0, "result_ttl_s must be an integer from 1 to "
                                                "31536000, not 1e16");
    expect_number("result_ttl_s", 0, "10000000000000000", 0, "not 10000000000000000");
    expect_number("timeout_ms", 0, "2.5", 0, "not 2.5");
    expect_number("timeout_ms", 0, "1000.0", 0, "not 1000.0");
    expect_number("timeout_ms", 0, "99999999999999999999", 0, "not a number that large");
    expect_number("timeout_ms", 0, "-99999999999999999999", 0, "not a number that large");
    expect_number("timeout_ms", 0, "1", 1, NULL);

    expect_number("n", 1, "1", 1, NULL);
    expect_number("n", 1, "128", 1, NULL);
    expect_number("n", 1, "129", 0, "body.n must be an integer from 1 to 128, not 129");
    expect_number("n", 1, "0", 0, "body.n");
    expect_number("n", 1, "2.0", 0, "body.n");
    expect_number("max_tokens", 1, "0", 1, NULL);
    expect_number("max_tokens", 1, "1000000000000000", 1, NULL); /* capped by the rate limiter */
    expect_number("max_tokens", 1, "-1", 0, "body.max_tokens must be an integer from 0 to");
    expect_number("max_tokens", 1, "1e15", 0, "not 1e15");
    expect_number("max_tokens", 1, "\"100\"", 0, "not string");
    expect_number("max_tokens", 1, "18446744073709551615", 0, "not a number that large");
    expect_number("max_completion_tokens", 1, "4096", 1, NULL);
    expect_number("max_completion_tokens", 1, "-3", 0, "body.max_completion_tokens");

    job j;
    assert_int_equal(parse_with(&j, "timeout_ms", "86400000", 0), 0);
    assert_int_equal(j.timeout_ms, 86400000);
    job_free(&j);

    /* an integer json-c would clamp, anywhere in the body: refused, with the
     * id still read (its failure is stored under it) */
    assert_int_equal(parse(&j, "{\"id\":\"big\",\"body\":{\"model\":\"m\",\"seed\":"
                               "123456789012345678901234567890," MSGS "}}"), -1);
    assert_non_null(strstr(err, "an integer outside [-2^63, 2^64-1] at byte"));
    assert_string_equal(j.id, "big");
    job_free(&j);
    assert_int_equal(parse(&j, "{\"id\":\"ok\",\"body\":{\"model\":\"m\",\"seed\":"
                               "18446744073709551615," MSGS "}}"), 0);
    job_free(&j);
}

/* ---- strings: NUL, UTF-8, tenant, model, custom_id ---- */

/* json-c reads "victim\u0000x" as "victim": such a field is refused by
 * name, and never filled (the failure must not land on victim's hash). */
static void test_nul_in_named_fields(void **state) {
    (void)state;
    job j;
    assert_int_equal(parse(&j, "{\"id\":\"victim\\u0000x\",\"reply_to\":\"rq\",\"body\":" BODY "}"),
                     -1);
    assert_string_equal(err, "id must not contain \\u0000 (NUL)");
    assert_null(j.id);
    assert_string_equal(j.reply_to, "rq");
    job_free(&j);

    assert_int_equal(parse(&j, "{\"custom_id\":\"victim\\u0000x\",\"body\":" BODY "}"), -1);
    assert_string_equal(err, "custom_id must not contain \\u0000 (NUL)");
    assert_null(j.id);
    assert_null(j.custom_id);
    job_free(&j);

    assert_int_equal(parse(&j, "{\"id\":\"a\",\"tenant\":\"acme\\u0000x\",\"body\":" BODY "}"), -1);
    assert_string_equal(err, "tenant must not contain \\u0000 (NUL)");
    assert_null(j.tenant);
    assert_string_equal(j.id, "a");
    job_free(&j);

    expect_invalid("{\"reply_to\":\"q\\u0000x\",\"body\":" BODY "}",
                   "reply_to must not contain \\u0000");
    expect_invalid("{\"provider\":\"p\\u0000x\",\"body\":" BODY "}",
                   "provider must not contain \\u0000");
    expect_invalid("{\"body\":{\"model\":\"m\\u0000x\"," MSGS "}}",
                   "body.model must not contain \\u0000");
    expect_invalid("{\"method\":\"POST\\u0000x\",\"body\":" BODY "}", "method must be \"POST\"");
}

/* Anywhere else, the byte offset says where. */
static void test_nul_anywhere(void **state) {
    (void)state;
    job j;
    const char *s = "{\"id\":\"a\",\"body\":{\"model\":\"m\",\"messages\":[{\"content\":\"x\\u0000\"}]}}";
    assert_int_equal(parse(&j, s), -1);
    assert_string_equal(err, "a string holds \\u0000 (NUL) at byte 55: no string in a job may");
    assert_string_equal(j.id, "a"); /* the failure can be stored */
    job_free(&j);
    /* in a member name, which json-c would cut short without a trace */
    expect_invalid("{\"id\":\"a\",\"metadata\":{\"k\\u0000\":1},\"body\":" BODY "}",
                   "a string holds \\u0000 (NUL) at byte 24");
    expect_invalid("{\"id\\u0000\":\"victim\",\"body\":" BODY "}", "\\u0000 (NUL) at byte 4");
    /* a named field's NUL is named, even when another comes first */
    expect_invalid("{\"x\":\"\\u0000\",\"tenant\":\"t\\u0000\",\"body\":" BODY "}",
                   "tenant must not contain");
    /* an escaped backslash followed by u0000 is text */
    assert_int_equal(parse(&j, "{\"id\":\"a\",\"t\":\"\\\\u0000\",\"body\":" BODY "}"), 0);
    job_free(&j);
}

static void test_invalid_utf8(void **state) {
    (void)state;
    /* json-c's own check lets these through; jsonparse_strict() does not */
    expect_invalid("{\"id\":\"a\",\"body\":{\"model\":\"m\",\"messages\":[\"\xc0\xaf\"]}}",
                   "job is not valid JSON: invalid UTF-8 at byte");
    expect_invalid("{\"tenant\":\"\xed\xa0\x80\",\"body\":" BODY "}", "invalid UTF-8");
    expect_invalid("{\"tenant\":\"\xf4\x90\x80\x80\",\"body\":" BODY "}", "invalid UTF-8");
    expect_invalid("{\"tenant\":\"\xe2\x82\",\"body\":" BODY "}", "not valid JSON");
}

/* A string of n copies of `unit`. */
static char *repeat(const char *unit, size_t n) {
    size_t u = strlen(unit);
    char *s = xmalloc(u * n + 1);
    for (size_t i = 0; i < n; i++) memcpy(s + i * u, unit, u);
    s[u * n] = '\0';
    return s;
}

/* Parses {"id":"s",<field>:"<value>","body":BODY} (or value as body.model). */
static int parse_str(job *j, const char *field, const char *value) {
    buf b = {0};
    if (!strcmp(field, "model"))
        buf_printf(&b, "{\"id\":\"s\",\"body\":{\"model\":\"%s\"," MSGS "}}", value);
    else
        buf_printf(&b, "{\"id\":\"s\",\"%s\":\"%s\",\"body\":" BODY "}", field, value);
    int rc = parse(j, buf_cstr(&b));
    buf_free(&b);
    return rc;
}

static void expect_str(const char *field, const char *value, const char *needle) {
    job j;
    int rc = parse_str(&j, field, value);
    if (needle ? rc != -1 || !strstr(err, needle) : rc != 0)
        fail_msg("%s=\"%.60s\": rc=%d err=\"%s\", wanted %s", field, value, rc, err,
                 needle ? needle : "success");
    if (needle) { /* a refused field is never filled */
        if (!strcmp(field, "tenant")) assert_null(j.tenant);
        if (!strcmp(field, "model")) assert_null(j.model);
        if (!strcmp(field, "custom_id")) assert_null(j.custom_id);
        if (!strcmp(field, "reply_to")) assert_null(j.reply_to);
    }
    job_free(&j);
}

static void test_tenant_rules(void **state) {
    (void)state;
    char *s = repeat("t", 128);
    expect_str("tenant", s, NULL);
    free(s);
    s = repeat("t", 129);
    expect_str("tenant", s, "tenant must be at most 128 characters");
    free(s);
    s = repeat("\xc3\xa9", 128); /* 128 characters, 256 bytes */
    expect_str("tenant", s, NULL);
    free(s);
    expect_str("tenant", "acme|gpt-4o", "tenant must not contain '|'");
    expect_str("tenant", "ac\\u0001me", "tenant must not contain a control character");
    expect_str("tenant", "ac\\u007fme", "control character");
    expect_str("tenant", "ac\\u0085me", "control character"); /* C1: NEL */
    expect_str("tenant", "ac\xc2\x9bme", "control character"); /* C1: CSI, raw */
    expect_str("tenant", "\\u00a0acme \xe2\x82\xac", NULL);   /* not controls */
    expect_str("tenant", "", NULL);
}

static void test_model_rules(void **state) {
    (void)state;
    char *s = repeat("m", 256);
    expect_str("model", s, NULL);
    free(s);
    s = repeat("m", 257);
    expect_str("model", s, "body.model must be at most 256 bytes");
    free(s);
    expect_str("model", "gpt|4o", "body.model must not contain '|'");
    expect_str("model", "gpt\\n4o", "body.model must not contain a control character");
    expect_str("model", "org/model-7b:free", NULL);
}

static void test_custom_id_rules(void **state) {
    (void)state;
    char *s = repeat("c", 512);
    expect_str("custom_id", s, NULL);
    free(s);
    s = repeat("c", 513);
    expect_str("custom_id", s, "custom_id must be at most 512 bytes");
    free(s);
    expect_str("custom_id", "line\\nbreak", "custom_id must not contain a control character");
    expect_str("custom_id", "request 7 | caf\xc3\xa9", NULL); /* not an id, and need not be */
}

/* ---- reply_to ---- */

static int parse_reply_to(job *j, const char *prefix, const char *key) {
    char json[1024];
    snprintf(json, sizeof json, "{\"id\":\"r\",\"reply_to\":\"%s\",\"body\":" BODY "}", key);
    job_opts o = {.max_bytes = 1 << 20, .prefix = prefix};
    return job_parse_opts(j, json, strlen(json), &o, err, sizeof err);
}

static void test_reply_to_chatq_keys_refused(void **state) {
    (void)state;
    static const char *refused[] = {
        "chatq:queue:default", "chatq:job:x",      "chatq:dead",
        "chatq:processing:w1:default", "chatq:events:x", "chatq:usage:2026-01-01",
        "chatq:cancel:x",      "chatq:control",    "chatq:workers",
        "chatq:heartbeat:w1",  "chatq:crashes",    "chatq:requeued",
        "chatq:quarantine",    "chatq:ratelimit:p:*", "chatq:batch:b1",
        "chatq:batch::out",    "chatq:batch:a:b:out", "chatq:batch:out",
        "chatq:quarantine:default", "chatq:drop:t1", "chatq:stream:x",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        job j;
        if (parse_reply_to(&j, "chatq", refused[i]) != -1 ||
            !strstr(err, "reply_to must not name a key of chatq's own (under \"chatq:\")"))
            fail_msg("reply_to %s: err=\"%s\"", refused[i], err);
        assert_null(j.reply_to);       /* never answered */
        assert_string_equal(j.id, "r"); /* but the failure is stored */
        job_free(&j);
    }
}

static void test_reply_to_own_keys_accepted(void **state) {
    (void)state;
    static const char *accepted[] = {
        "chatq:batch:b1:out", "chatq:batch:b0123456789abcdef:out", "myapp:replies",
        "chatq", "chatqx:queue:default", "chatq-examples:reply:1", "CHATQ:queue:default",
        /* under the prefix, but none of chatq's state (docs/protocol.md §4) */
        "chatq:replies", "chatq:done", "chatq:", "chatq:anything:new", "chatq:queues",
        "chatq:jobs:x", "chatq:deadline",
    };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        job j;
        if (parse_reply_to(&j, "chatq", accepted[i]) != 0)
            fail_msg("reply_to %s: err=\"%s\"", accepted[i], err);
        assert_string_equal(j.reply_to, accepted[i]);
        job_free(&j);
    }
    /* the prefix is the configured one */
    job j;
    assert_int_equal(parse_reply_to(&j, "e2e1", "chatq:queue:default"), 0);
    job_free(&j);
    assert_int_equal(parse_reply_to(&j, "e2e1", "e2e1:queue:default"), -1);
    assert_non_null(strstr(err, "(under \"e2e1:\")"));
    job_free(&j);
    /* job_parse() does not know the prefix: only the other rules apply */
    assert_int_equal(parse(&j, "{\"reply_to\":\"chatq:queue:default\",\"body\":" BODY "}"), 0);
    job_free(&j);
}

static void test_reply_to_shape(void **state) {
    (void)state;
    char *s = repeat("k", 512);
    expect_str("reply_to", s, NULL);
    free(s);
    s = repeat("k", 513);
    expect_str("reply_to", s, "reply_to must be 1-512 bytes");
    free(s);
    expect_str("reply_to", "", "reply_to must be 1-512 bytes");
    expect_str("reply_to", "my\\rkey", "reply_to must not contain a control character");
    char e[200];
    assert_int_equal(job_check_reply_to("chatq", "chatq:dead", e, sizeof e), -1);
    assert_non_null(strstr(e, "reply_to"));
    assert_int_equal(job_check_reply_to("chatq", "mine", e, sizeof e), 0);
    assert_string_equal(e, "");
    assert_int_equal(job_check_reply_to(NULL, "chatq:dead", NULL, 0), 0);
    assert_int_equal(job_check_reply_to("chatq", NULL, e, sizeof e), -1);
}

/* ---- cost of the JSON ---- */

/* A job with `extra` as the value of top-level member "x". */
static char *job_with_x(const char *extra) {
    return xasprintf("{\"id\":\"c\",\"x\":%s,\"body\":" BODY "}", extra);
}

/* "[" + n copies of elem, comma-separated, + "]" */
static char *array_of(const char *elem, long n) {
    buf b = {0};
    buf_putc(&b, '[');
    for (long i = 0; i < n; i++) {
        if (i) buf_putc(&b, ',');
        buf_puts(&b, elem);
    }
    buf_putc(&b, ']');
    return buf_steal(&b);
}

static double ms_since(const struct timespec *a) {
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) * 1e3 + (double)(b.tv_nsec - a->tv_nsec) / 1e6;
}

/* The 1 MiB {"messages":[{},{},...]} of issue 8: some 260 MB of json-c
 * objects if parsed; refused by the scan, in about a millisecond. */
static void test_amplification_refused_quickly(void **state) {
    (void)state;
    char *arr = array_of("{}", 349000);
    char *s = xasprintf("{\"id\":\"amp\",\"body\":{\"model\":\"m\",\"messages\":%s}}", arr);
    assert_true(strlen(s) < (1 << 20));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    job j;
    assert_int_equal(parse(&j, s), -1);
    double ms = ms_since(&t0);
    assert_non_null(strstr(err, "job is too complex: more than 20000 objects and arrays"));
    assert_null(j.root);
    if (ms > 50) fail_msg("refusing took %.1f ms", ms);
    job_free(&j);
    free(s);
    free(arr);
}

static void test_container_limit(void **state) {
    (void)state;
    /* the root, body, messages and its object: 4; x and its 19995 objects */
    char *arr = array_of("{}", JOB_MAX_CONTAINERS - 5);
    char *s = job_with_x(arr);
    job j;
    assert_int_equal(parse(&j, s), 0);
    job_free(&j);
    free(s);
    free(arr);
    arr = array_of("{}", JOB_MAX_CONTAINERS - 4);
    s = job_with_x(arr);
    assert_int_equal(parse(&j, s), -1);
    assert_non_null(strstr(err, "more than 20000 objects and arrays"));
    job_free(&j);
    free(s);
    free(arr);
    /* a lower limit through the options */
    job_opts o = {.max_containers = 10};
    s = job_with_x("[[],[],[],[],[]]"); /* 4 + 6 */
    assert_int_equal(job_parse_opts(&j, s, strlen(s), &o, err, sizeof err), 0);
    job_free(&j);
    free(s);
    s = job_with_x("[[],[],[],[],[],[]]");
    assert_int_equal(job_parse_opts(&j, s, strlen(s), &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 10 objects"));
    job_free(&j);
    free(s);
}

static void test_value_limit(void **state) {
    (void)state;
    /* Every value counts, the root and containers included (see
     * strictjson.h): job_with_x("[]") holds 9 (the root, id, x, body,
     * model, messages, its message, role, content); k numbers in x add k. */
    long around = 9;
    job j;
    char *arr = array_of("1", JOB_MAX_VALUES - around);
    char *s = job_with_x(arr);
    assert_int_equal(parse(&j, s), 0);
    job_free(&j);
    free(s);
    free(arr);
    arr = array_of("1", JOB_MAX_VALUES - around + 1);
    s = job_with_x(arr);
    assert_int_equal(parse(&j, s), -1);
    assert_non_null(strstr(err, "job is too complex: more than 100000 values"));
    job_free(&j);
    free(s);
    free(arr);
}

static void test_depth_limit(void **state) {
    (void)state;
    /* the root object is level 1: x may hold 127 more */
    char inner[600];
    memset(inner, '[', 127);
    inner[127] = '1';
    memset(inner + 128, ']', 127);
    inner[255] = '\0';
    char *s = job_with_x(inner);
    job j;
    assert_int_equal(parse(&j, s), 0);
    job_free(&j);
    free(s);
    memset(inner, '[', 128);
    inner[128] = '1';
    memset(inner + 129, ']', 128);
    inner[257] = '\0';
    s = job_with_x(inner);
    assert_int_equal(parse(&j, s), -1);
    assert_non_null(strstr(err, "job is too complex: nested deeper than 128 at byte"));
    job_free(&j);
    free(s);
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

    const char *text = "{\"body\":" BODY "}";
    assert_int_equal(parse(&j, text), 0);
    assert_non_null(j.id);
    assert_int_equal(j.id_generated, 1);
    assert_true(job_id_valid(j.id));
    char want[32];
    job_id_from_text(text, strlen(text), want);
    assert_string_equal(j.id, want);
    job_free(&j);

    /* the same text is the same job; another text another one */
    assert_int_equal(parse(&j, text), 0);
    assert_string_equal(j.id, want);
    job_free(&j);
    assert_int_equal(parse(&j, "{\"body\":" BODY " }"), 0);
    assert_string_not_equal(j.id, want);
    job_free(&j);
}

/* "job-" + the first 24 hex digits of the SHA1 of the text (FIPS 180 test
 * vectors). */
static void test_id_from_text(void **state) {
    (void)state;
    char id[32], sha[41];
    job_id_from_text("abc", 3, id);
    assert_string_equal(id, "job-a9993e364706816aba3e2571");
    job_id_from_text("", 0, id);
    assert_string_equal(id, "job-da39a3ee5e6b4b0d3255bfef");
    digest_sha1_hex("abc", 3, sha);
    assert_string_equal(sha, "a9993e364706816aba3e25717850c26c9cd0d89d");
    digest_sha1_hex(NULL, 0, sha);
    assert_string_equal(sha, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    /* bytes past len do not count, NULs do */
    digest_sha1_hex("abcdef", 3, sha);
    assert_string_equal(sha, "a9993e364706816aba3e25717850c26c9cd0d89d");
    job_id_from_text("a\0b", 3, id);
    char id2[32];
    job_id_from_text("a", 1, id2);
    assert_string_not_equal(id, id2);
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
        cmocka_unit_test(test_number_ranges),
        cmocka_unit_test(test_nul_in_named_fields),
        cmocka_unit_test(test_nul_anywhere),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_tenant_rules),
        cmocka_unit_test(test_model_rules),
        cmocka_unit_test(test_custom_id_rules),
        cmocka_unit_test(test_reply_to_chatq_keys_refused),
        cmocka_unit_test(test_reply_to_own_keys_accepted),
        cmocka_unit_test(test_reply_to_shape),
        cmocka_unit_test(test_amplification_refused_quickly),
        cmocka_unit_test(test_container_limit),
        cmocka_unit_test(test_value_limit),
        cmocka_unit_test(test_depth_limit),
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
        cmocka_unit_test(test_id_from_text),
        cmocka_unit_test(test_generate_id_format),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_free_twice_is_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

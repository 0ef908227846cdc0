/* test_output.c — the error object and the Batch output line (docs/protocol.md §6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/output.h"

/* output_line() takes the body as JSON text, as the worker has it. */
static const char *plain(json_object *o) {
    return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static void test_line_success(void **state) {
    (void)state;
    json_object *body = json_tokener_parse(
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[],"
        "\"usage\":{\"total_tokens\":3}}");
    char *line = output_line("j1", "c1", 200, "req_abc", plain(body), NULL, NULL);
    assert_string_equal(line, "{\"id\":\"j1\",\"custom_id\":\"c1\",\"response\":{\"status_code\":200,"
                              "\"request_id\":\"req_abc\",\"body\":{\"id\":\"chatcmpl-1\","
                              "\"object\":\"chat.completion\",\"choices\":[],"
                              "\"usage\":{\"total_tokens\":3}}},\"error\":null}");
    free(line);
    /* body was borrowed: its count is back to ours alone, so this put frees it */
    assert_int_equal(json_object_put(body), 1);
}

static void test_line_custom_id_and_request_id_fallbacks(void **state) {
    (void)state;
    json_object *body = json_object_new_object();
    char *line = output_line("j2", NULL, 200, NULL, plain(body), NULL, NULL);
    assert_string_equal(line, "{\"id\":\"j2\",\"custom_id\":\"j2\",\"response\":{\"status_code\":200,"
                              "\"request_id\":null,\"body\":{}},\"error\":null}");
    free(line);
    json_object_put(body);
}

/* An upstream 4xx is an HTTP answer: response holds it, error stays null. */
static void test_line_upstream_4xx(void **state) {
    (void)state;
    json_object *body = json_tokener_parse(
        "{\"error\":{\"message\":\"bad model\",\"type\":\"invalid_request_error\","
        "\"code\":\"model_not_found\"}}");
    char *line = output_line("j3", "c3", 404, "req_9", plain(body), "upstream_error", "HTTP 404");
    json_object *o = json_tokener_parse(line);
    assert_non_null(o);
    json_object *resp = json_object_object_get(o, "response");
    assert_int_equal(json_object_get_int(json_object_object_get(resp, "status_code")), 404);
    assert_string_equal(json_object_get_string(json_object_object_get(resp, "request_id")),
                        "req_9");
    json_object *err = json_object_object_get(json_object_object_get(resp, "body"), "error");
    assert_string_equal(json_object_get_string(json_object_object_get(err, "code")),
                        "model_not_found");
    assert_true(json_object_object_get_ex(o, "error", &err));
    assert_null(err);
    json_object_put(o);
    free(line);
    json_object_put(body);
}

/* No HTTP answer (timeout): response null, error {code, message} only. */
static void test_line_timeout(void **state) {
    (void)state;
    char *line = output_line("j4", "c4", 0, NULL, NULL, "timeout",
                             "no answer within 600000 ms / 3 attempts");
    assert_string_equal(line, "{\"id\":\"j4\",\"custom_id\":\"c4\",\"response\":null,"
                              "\"error\":{\"code\":\"timeout\",\"message\":"
                              "\"no answer within 600000 ms / 3 attempts\"}}");
    free(line);
}

static void test_line_escapes_text(void **state) {
    (void)state;
    char *line = output_line("j5", "a \"q\" \xc3\xa9", 0, NULL, NULL, "invalid_job",
                             "line1\nline2\\");
    assert_string_equal(line, "{\"id\":\"j5\",\"custom_id\":\"a \\\"q\\\" \xc3\xa9\",\"response\":null,"
                              "\"error\":{\"code\":\"invalid_job\",\"message\":"
                              "\"line1\\nline2\\\\\"}}");
    assert_null(strchr(line, '\n')); /* one line, whatever the message holds */
    free(line);
}

static void test_error_object(void **state) {
    (void)state;
    json_object *up = json_tokener_parse("{\"message\":\"Rate limit\",\"type\":\"requests\"}");
    json_object *e = output_error("upstream_error", "HTTP 429 from p1", 429, up);
    assert_string_equal(json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN),
                        "{\"code\":\"upstream_error\",\"message\":\"HTTP 429 from p1\","
                        "\"status\":429,\"upstream\":{\"message\":\"Rate limit\","
                        "\"type\":\"requests\"}}");
    json_object_put(e);
    assert_int_equal(json_object_put(up), 1); /* borrowed: still ours, freed now */
}

static void test_error_object_without_upstream(void **state) {
    (void)state;
    json_object *e = output_error("connection_error", "connect to https://x/v1 failed", 0, NULL);
    assert_string_equal(json_object_to_json_string_ext(
                            e, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                        "{\"code\":\"connection_error\",\"message\":"
                        "\"connect to https://x/v1 failed\",\"status\":0,\"upstream\":null}");
    json_object_put(e);
}

/* ---- output_term_safe ---- */

static void expect_term(const char *in, size_t len, const char *want) {
    buf b = {0};
    output_term_safe(&b, in, len);
    if (strcmp(buf_cstr(&b), want) != 0)
        fail_msg("term_safe(%zu bytes) = \"%s\", want \"%s\"", len, buf_cstr(&b), want);
    buf_free(&b);
}
#define TERM(lit, want) expect_term(lit, sizeof lit - 1, want)

static void test_term_plain_text_passes(void **state) {
    (void)state;
    TERM("", "");
    TERM("Hello, world!\n\tindented ~ {}[]", "Hello, world!\n\tindented ~ {}[]");
    TERM("h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80 \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d",
         "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80 \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d");
    TERM("line\r\nnext\r\n", "line\nnext\n"); /* CRLF line ends */
}

static void test_term_escape_sequences(void **state) {
    (void)state;
    /* colour, cursor movement, screen clear, window title (OSC), a
     * hyperlink, the bell, a backspace over printed text */
    TERM("\x1b[31mred\x1b[0m", "^[[31mred^[[0m");
    TERM("\x1b[2J\x1b[H\x1b[10A", "^[[2J^[[H^[[10A");
    TERM("\x1b]0;pwned\x07", "^[]0;pwned^G");
    TERM("\x1b]8;;http://x\x1b\\link", "^[]8;;http://x^[\\link");
    TERM("abc\b\b\bxyz", "abc^H^H^Hxyz");
    TERM("hidden\rshown", "hidden^Mshown"); /* a lone CR would overwrite */
    TERM("\r", "^M");
    TERM("del\x7f", "del^?");
    TERM("nul\0x", "nul^@x");
    TERM("\x1f\x0b\x0c", "^_^K^L");
}

static void test_term_c1_and_bidi(void **state) {
    (void)state;
    TERM("\xc2\x9b" "31m", "<U+009B>31m"); /* CSI as a C1 control */
    TERM("\xc2\x80\xc2\x9f\xc2\xa0", "<U+0080><U+009F>\xc2\xa0"); /* NBSP passes */
    TERM("\xe2\x80\xae" "evil" "\xe2\x80\xac", "<U+202E>evil<U+202C>");
    TERM("\xe2\x81\xa6" "x" "\xe2\x81\xa9", "<U+2066>x<U+2069>");
    TERM("\xe2\x80\xa9", "\xe2\x80\xa9"); /* U+2029 is no override */
}

static void test_term_invalid_utf8(void **state) {
    (void)state;
    TERM("\x9b" "31m", "<9B>31m"); /* a raw C1 byte */
    TERM("a\xff\xfe", "a<FF><FE>");
    TERM("\xc3", "<C3>");          /* cut short */
    TERM("\xe4\xb8x", "<E4><B8>x");
    TERM("\xed\xa0\x80", "<ED><A0><80>"); /* a surrogate */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_success),
        cmocka_unit_test(test_line_custom_id_and_request_id_fallbacks),
        cmocka_unit_test(test_line_upstream_4xx),
        cmocka_unit_test(test_line_timeout),
        cmocka_unit_test(test_line_escapes_text),
        cmocka_unit_test(test_error_object),
        cmocka_unit_test(test_error_object_without_upstream),
        cmocka_unit_test(test_term_plain_text_passes),
        cmocka_unit_test(test_term_escape_sequences),
        cmocka_unit_test(test_term_c1_and_bidi),
        cmocka_unit_test(test_term_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

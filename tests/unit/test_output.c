/* test_output.c — the error object and the Batch output line (SPEC §6). */
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_success),
        cmocka_unit_test(test_line_custom_id_and_request_id_fallbacks),
        cmocka_unit_test(test_line_upstream_4xx),
        cmocka_unit_test(test_line_timeout),
        cmocka_unit_test(test_line_escapes_text),
        cmocka_unit_test(test_error_object),
        cmocka_unit_test(test_error_object_without_upstream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

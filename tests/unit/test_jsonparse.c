/* test_jsonparse.c — jsonparse_whole(): exactly one JSON value, with only
 * white space around it; a bare number at the very end; the messages and
 * byte offsets of its errors; a reused tokener; the caller's depth and
 * strictness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/jsonparse.h"

static char err[128];

/* Parses text (its whole length) with a default tokener; returns the rc. */
static int parse(const char *text, json_object **out) {
    json_tokener *tok = json_tokener_new();
    int rc = jsonparse_whole(tok, text, strlen(text), out, err, sizeof err);
    json_tokener_free(tok);
    return rc;
}

/* Parses, expects success and the value printed back as `want`. */
static void good(const char *text, const char *want) {
    json_object *o = (json_object *)1;
    if (parse(text, &o) != 0) fail_msg("'%s': %s", text, err);
    assert_string_equal(err, "");
    assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), want);
    json_object_put(o);
}

/* Parses, expects failure, *out NULL and `needle` in the message. */
static void bad(const char *text, const char *needle) {
    json_object *o = (json_object *)1;
    if (parse(text, &o) != -1 || !strstr(err, needle))
        fail_msg("'%s': err=\"%s\", wanted %s", text, err, needle);
    assert_null(o);
}

static void test_one_value(void **state) {
    (void)state;
    good("{\"a\":[1,2,{\"b\":null}]}", "{\"a\":[1,2,{\"b\":null}]}");
    good("[]", "[]");
    good("\"text\"", "\"text\"");
    good("true", "true");
    good("  \n\t{ }\r\n ", "{}");
}

/* json-c needs a terminator after a number that ends the text. */
static void test_bare_number_at_the_end(void **state) {
    (void)state;
    good("42", "42");
    good("-1.5", "-1.5");
    good("0", "0");
    good("7 \n", "7");
    good("1e3", "1e3"); /* json-c keeps a number's own text */
}

static void test_null_is_a_value(void **state) {
    (void)state;
    json_object *o = (json_object *)1;
    assert_int_equal(parse("null", &o), 0);
    assert_null(o);
    assert_string_equal(err, "");
    assert_int_equal(parse(" null ", &o), 0);
    assert_null(o);
}

static void test_trailing_data(void **state) {
    (void)state;
    bad("{} {}", "unexpected data after the value at byte 3");
    bad("{}x", "after the value at byte 2");
    bad("1 2", "after the value at byte 2");
    bad("[1]]", "after the value at byte 3");
    /* a NUL after the value is data too: it must not end the text early */
    json_object *o = (json_object *)1;
    json_tokener *tok = json_tokener_new();
    assert_int_equal(jsonparse_whole(tok, "{}\0", 3, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "at byte 2"));
    assert_null(o);
    json_tokener_free(tok);
}

static void test_incomplete_and_invalid(void **state) {
    (void)state;
    bad("", "at byte 0");
    bad("   ", "at byte");
    bad("{\"a\":", "at byte 5");
    bad("[1,2", "at byte 4");
    bad("\"open", "at byte");
    bad("{a}", "at byte 1");
    bad("nul", "at byte");
}

static void test_parses_only_len_bytes(void **state) {
    (void)state;
    json_object *o = NULL;
    json_tokener *tok = json_tokener_new();
    /* "[1] trailing" cut after "[1]" */
    assert_int_equal(jsonparse_whole(tok, "[1] trailing", 3, &o, err, sizeof err), 0);
    assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), "[1]");
    json_object_put(o);
    /* "123456" cut after "12": the number is 12 */
    assert_int_equal(jsonparse_whole(tok, "123456", 2, &o, err, sizeof err), 0);
    assert_int_equal(json_object_get_int(o), 12);
    json_object_put(o);
    json_tokener_free(tok);
}

/* The tokener is reset first: an error leaves nothing behind. */
static void test_tokener_reused(void **state) {
    (void)state;
    json_tokener *tok = json_tokener_new();
    json_object *o;
    assert_int_equal(jsonparse_whole(tok, "{\"a\":", 5, &o, err, sizeof err), -1);
    assert_int_equal(jsonparse_whole(tok, "[1", 2, &o, err, sizeof err), -1);
    assert_int_equal(jsonparse_whole(tok, "{\"b\":2}", 7, &o, err, sizeof err), 0);
    assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), "{\"b\":2}");
    json_object_put(o);
    json_tokener_free(tok);
}

/* Depth and strictness are the caller's choice. */
static void test_callers_tokener_settings(void **state) {
    (void)state;
    json_object *o;
    json_tokener *tok = json_tokener_new_ex(3);
    assert_int_equal(jsonparse_whole(tok, "[[1]]", 5, &o, err, sizeof err), 0);
    json_object_put(o);
    assert_int_equal(jsonparse_whole(tok, "[[[[1]]]]", 9, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "nesting too deep"));
    json_tokener_free(tok);

    const char *lenient = "[1, /* comment */ 2,]";
    tok = json_tokener_new();
    assert_int_equal(jsonparse_whole(tok, lenient, strlen(lenient), &o, err, sizeof err), 0);
    json_object_put(o);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    assert_int_equal(jsonparse_whole(tok, lenient, strlen(lenient), &o, err, sizeof err), -1);
    assert_null(o);
    json_tokener_free(tok);
}

static void test_err_optional_and_bounded(void **state) {
    (void)state;
    json_object *o;
    json_tokener *tok = json_tokener_new();
    assert_int_equal(jsonparse_whole(tok, "{} {}", 5, &o, NULL, 0), -1);
    char small[8];
    assert_int_equal(jsonparse_whole(tok, "{} {}", 5, &o, small, sizeof small), -1);
    assert_int_equal(strlen(small), sizeof small - 1);
    /* the size is checked before a byte is read */
    assert_int_equal(jsonparse_whole(tok, "", (size_t)INT32_MAX + 1, &o, err, sizeof err), -1);
    assert_string_equal(err, "too large to parse");
    assert_null(o);
    json_tokener_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_value),
        cmocka_unit_test(test_bare_number_at_the_end),
        cmocka_unit_test(test_null_is_a_value),
        cmocka_unit_test(test_trailing_data),
        cmocka_unit_test(test_incomplete_and_invalid),
        cmocka_unit_test(test_parses_only_len_bytes),
        cmocka_unit_test(test_tokener_reused),
        cmocka_unit_test(test_callers_tokener_settings),
        cmocka_unit_test(test_err_optional_and_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

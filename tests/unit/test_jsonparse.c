/* test_jsonparse.c — jsonparse_whole(): exactly one JSON value, with only
 * white space around it; a bare number at the very end; the messages and
 * byte offsets of its errors; a reused tokener; the caller's depth and
 * strictness. jsonparse_strict(): what strict JSON refuses beyond json-c's
 * strict mode (the numbers the fuzzer found among them), UTF-8, lone
 * surrogates, \u0000, the cost limits (each at the limit and one past it),
 * which problem is named first. strictjson_check()'s own rules are tested
 * in test_strictjson.c; here, that jsonparse_strict() keeps them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

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


/* ---- jsonparse_strict() ---- */

static strictjson_stats st;

/* jsonparse_strict() on len bytes of text, with lim (may be NULL). */
static int strict_n(const char *text, size_t len, const strictjson_limits *lim, unsigned flags,
                    json_object **out) {
    json_tokener *tok = json_tokener_new_ex(200);
    int rc = jsonparse_strict(tok, text, len, lim, flags, out, &st, err, sizeof err);
    json_tokener_free(tok);
    return rc;
}

static void strict_good(const char *text) {
    json_object *o = (json_object *)1;
    if (strict_n(text, strlen(text), NULL, 0, &o) != STRICTJSON_OK)
        fail_msg("'%s': %s", text, err);
    assert_string_equal(err, "");
    json_object_put(o);
}

static void strict_bad(const char *text, const char *needle) {
    json_object *o = (json_object *)1;
    if (strict_n(text, strlen(text), NULL, 0, &o) != STRICTJSON_INVALID || !strstr(err, needle))
        fail_msg("'%s': err=\"%s\", wanted %s", text, err, needle);
    assert_null(o);
}

static void test_strict_accepts_rfc8259(void **state) {
    (void)state;
    strict_good("{\"a\":[1,-2.5e3,0.5,-0,0e1,true,false,null,\"x\\\"y\\\\\"],\"b\":{}}");
    strict_good("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\""); /* 2,3,4 bytes, U+10FFFF */
    strict_good("\"\\ud83d\\ude00\"");  /* a surrogate pair */
    strict_good("\"\x7f\"");           /* DEL is no control character for JSON */
    strict_good(" 42 ");
    strict_good("\"[[[{{{\"");          /* brackets in strings are text */
}

static void test_strict_refuses_what_json_c_lets_through(void **state) {
    (void)state;
    strict_bad("[NaN]", "NaN or Infinity at byte 1");
    strict_bad("[Infinity]", "NaN or Infinity");
    strict_bad("[-Infinity]", "NaN or Infinity at byte 2");
    strict_bad("[1.]", "digits after its '.' at byte 3");
    strict_bad("{\"a\":1.}", "digits after");
    strict_bad("\"a\tb\"", "unescaped control character in a string at byte 2");
    strict_bad("\"a\nb\"", "unescaped control character");
    /* json-c refuses these too; the check says why */
    strict_bad("['a']", "single-quoted string at byte 1");
    strict_bad("[1, /* c */ 2]", "at byte 4");
    strict_bad("[1,]", "unexpected character at byte 3");
}

/* What fuzz_json found (tests/fuzz/crashes/): json-c's strict mode reads
 * these as numbers and keeps their text, which went upstream verbatim. */
static void test_strict_numbers_as_rfc8259_writes_them(void **state) {
    (void)state;
    strict_bad("00", "a number with a leading zero at byte 0");
    strict_bad("-02", "a number with a leading zero at byte 1");
    strict_bad("[00]", "leading zero at byte 1");
    strict_bad("{\"temperature\":01.5}", "leading zero at byte 15");
    strict_bad("-.5", "a number without digits after its '-' at byte 1");
    strict_bad("[-.05e10]", "without digits after its '-' at byte 2");
    strict_bad(".5", "unexpected character at byte 0");
    strict_bad("1e", "without digits in its exponent at byte 2");
    strict_bad("+1", "unexpected character at byte 0");
}

static void test_strict_utf8(void **state) {
    (void)state;
    strict_bad("\"\xc0\xaf\"", "invalid UTF-8 at byte 1");     /* overlong '/' */
    strict_bad("\"\xe0\x80\xaf\"", "invalid UTF-8");           /* overlong, 3 bytes */
    strict_bad("\"\xf0\x80\x80\xaf\"", "invalid UTF-8");       /* overlong, 4 bytes */
    strict_bad("\"\xed\xa0\x80\"", "invalid UTF-8");           /* a surrogate */
    strict_bad("\"\xf4\x90\x80\x80\"", "invalid UTF-8");       /* past U+10FFFF */
    strict_bad("\"\xf5\x80\x80\x80\"", "invalid UTF-8");
    strict_bad("\"ab\x80\"", "invalid UTF-8 at byte 3");       /* lone continuation */
    strict_bad("\"\xc3\"", "invalid UTF-8");                   /* cut short */
    strict_bad("\"\xe2\x82\"", "invalid UTF-8");
    strict_bad("[\xc3\xa9]", "unexpected character at byte 1"); /* outside a string */
    json_object *o;
    assert_int_equal(strict_n("\"\xc3", 2, NULL, 0, &o), STRICTJSON_INVALID); /* cut by len */
}

/* One rule for jobs and upstream answers: a lone surrogate escape has no
 * UTF-8 form, and json-c would turn it into U+FFFD unseen. */
static void test_strict_lone_surrogates_refused(void **state) {
    (void)state;
    strict_bad("\"\\ud800 alone\"", "a lone high surrogate at byte 7");
    strict_bad("[\"\\udc00\"]", "a lone low surrogate at byte 8");
    strict_bad("\"\\ud800\\u0041\"", "a lone high surrogate");
}

static void test_strict_nul(void **state) {
    (void)state;
    json_object *o;
    const char *t = "{\"id\":\"victim\\u0000x\"}";
    assert_int_equal(strict_n(t, strlen(t), NULL, 0, &o), STRICTJSON_OK); /* noted, not refused */
    assert_int_equal(st.first_nul, 13);
    json_object_put(o);
    assert_int_equal(strict_n(t, strlen(t), NULL, JSONPARSE_REFUSE_NUL, &o), STRICTJSON_INVALID);
    assert_string_equal(err, "\\u0000 (NUL) in a string at byte 13");
    assert_null(o);
    /* in a member name, where json-c would silently cut the name */
    t = "{\"a\\u0000b\":1}";
    assert_int_equal(strict_n(t, strlen(t), NULL, JSONPARSE_REFUSE_NUL, &o), STRICTJSON_INVALID);
    assert_string_equal(err, "\\u0000 (NUL) in a string at byte 3");
    /* an escaped backslash before u0000 is not an escape of it */
    t = "[\"\\\\u0000\"]";
    assert_int_equal(strict_n(t, strlen(t), NULL, JSONPARSE_REFUSE_NUL, &o), STRICTJSON_OK);
    assert_int_equal(st.first_nul, -1);
    json_object_put(o);
}

/* A text of `n` nested arrays around 1. */
static char *nested(int n) {
    char *s = malloc((size_t)n * 2 + 2);
    memset(s, '[', (size_t)n);
    s[n] = '1';
    memset(s + n + 1, ']', (size_t)n);
    s[2 * n + 1] = '\0';
    return s;
}

static void test_strict_depth_limit(void **state) {
    (void)state;
    strictjson_limits lim = {.max_depth = 128};
    json_object *o;
    char *s = nested(128);
    assert_int_equal(strict_n(s, strlen(s), &lim, 0, &o), STRICTJSON_OK);
    assert_int_equal(st.depth, 128);
    json_object_put(o);
    free(s);
    s = nested(129);
    assert_int_equal(strict_n(s, strlen(s), &lim, 0, &o), STRICTJSON_TOO_BIG);
    assert_string_equal(err, "nested deeper than 128 at byte 128");
    assert_null(o);
    free(s);
}

/* "[" + n elements `elem` separated by commas + "]" */
static char *array_of(const char *elem, long n) {
    size_t el = strlen(elem);
    char *s = malloc((size_t)n * (el + 1) + 3), *p = s;
    *p++ = '[';
    for (long i = 0; i < n; i++) {
        if (i) *p++ = ',';
        memcpy(p, elem, el);
        p += el;
    }
    *p++ = ']';
    *p = '\0';
    return s;
}

static void test_strict_container_limit(void **state) {
    (void)state;
    strictjson_limits lim = {.max_containers = 100};
    json_object *o;
    char *s = array_of("{}", 99); /* 99 objects and the array */
    assert_int_equal(strict_n(s, strlen(s), &lim, 0, &o), STRICTJSON_OK);
    assert_int_equal(st.containers, 100);
    json_object_put(o);
    free(s);
    s = array_of("{}", 100);
    assert_int_equal(strict_n(s, strlen(s), &lim, 0, &o), STRICTJSON_TOO_BIG);
    assert_string_equal(err, "more than 100 objects and arrays (byte 298)");
    assert_null(o);
    free(s);
}

static void test_strict_value_limit(void **state) {
    (void)state;
    strictjson_limits lim = {.max_values = 100};
    json_object *o;
    char *s = array_of("1", 99); /* the root and 99 elements */
    assert_int_equal(strict_n(s, strlen(s), &lim, 0, &o), STRICTJSON_OK);
    assert_int_equal(st.values, 100);
    json_object_put(o);
    free(s);
    s = array_of("1", 100);
    assert_int_equal(strict_n(s, strlen(s), &lim, 0, &o), STRICTJSON_TOO_BIG);
    assert_string_equal(err, "more than 100 values (byte 199)");
    free(s);
    /* members' values count, empty containers once, commas in strings not */
    s = "{\"a\":\",,,,\",\"b\":[1,2],\"c\":{}}";
    assert_int_equal(strict_n(s, strlen(s), &lim, 0, &o), STRICTJSON_OK);
    assert_int_equal(st.values, 6); /* root, a, b, 1, 2, c */
    json_object_put(o);
}

/* A 1 MiB "[{},{},...]" is refused by the check, before json-c allocates
 * anything: in far less time than the parse would take. */
static void test_strict_amplification_refused_before_parsing(void **state) {
    (void)state;
    strictjson_limits lim = {.max_depth = 128, .max_containers = 20000, .max_values = 100000};
    json_object *o;
    char *s = array_of("{}", 349525);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(strict_n(s, strlen(s), &lim, 0, &o), STRICTJSON_TOO_BIG);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_non_null(strstr(err, "more than 20000 objects and arrays"));
    double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
    if (ms > 50) fail_msg("refusing took %.1f ms", ms);
    free(s);
}

/* The first problem in the text is named, and tells a refusal for cost
 * (TOO_BIG) from one for strictness: a strictness problem before the byte
 * where a limit is passed, that limit before a later problem, a "\u0000"
 * before either (JSONPARSE_REFUSE_NUL). */
static void test_strict_first_problem_named(void **state) {
    (void)state;
    strict_bad("[NaN, x]", "NaN or Infinity at byte 1");
    strict_bad("[1 x, NaN]", "at byte 3");
    strictjson_limits lim = {.max_depth = 3};
    json_object *o;
    const char *t = "[NaN,[[[[1]]]]]";
    assert_int_equal(strict_n(t, strlen(t), &lim, 0, &o), STRICTJSON_INVALID);
    assert_string_equal(err, "NaN or Infinity at byte 1");
    t = "[[[[NaN]]]]";
    assert_int_equal(strict_n(t, strlen(t), &lim, 0, &o), STRICTJSON_TOO_BIG);
    assert_string_equal(err, "nested deeper than 3 at byte 3");
    t = "[\"\\u0000\",[[[[NaN]]]]]";
    assert_int_equal(strict_n(t, strlen(t), &lim, JSONPARSE_REFUSE_NUL, &o), STRICTJSON_INVALID);
    assert_string_equal(err, "\\u0000 (NUL) in a string at byte 2");
    t = "[NaN,\"\\u0000\"]";
    assert_int_equal(strict_n(t, strlen(t), &lim, JSONPARSE_REFUSE_NUL, &o), STRICTJSON_INVALID);
    assert_string_equal(err, "NaN or Infinity at byte 1");
}

static void test_strict_stats_and_reuse(void **state) {
    (void)state;
    json_object *o;
    json_tokener *tok = json_tokener_new_ex(10);
    const char *t = "[[1],{\"a\":[]}]";
    assert_int_equal(jsonparse_strict(tok, t, strlen(t), NULL, 0, &o, NULL, NULL, 0), 0);
    json_object_put(o);
    assert_int_equal(jsonparse_strict(tok, "[1", 2, NULL, 0, &o, &st, err, sizeof err),
                     STRICTJSON_INVALID);
    assert_string_equal(err, "a missing ',' or ']' at byte 2");
    assert_int_equal(jsonparse_strict(tok, t, strlen(t), NULL, 0, &o, &st, err, sizeof err), 0);
    assert_int_equal(st.values, 5);
    assert_int_equal(st.containers, 4);
    assert_int_equal(st.depth, 3);
    assert_int_equal(st.first_nul, -1);
    json_object_put(o);
    /* json-c keeps the check's verdict: a tokener too shallow for the text
     * is refused by json-c, and the text is not used */
    json_tokener_free(tok);
    tok = json_tokener_new_ex(2);
    assert_int_equal(jsonparse_strict(tok, "[[[1]]]", 7, NULL, 0, &o, &st, err, sizeof err),
                     STRICTJSON_INVALID);
    assert_non_null(strstr(err, "nesting too deep"));
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
        cmocka_unit_test(test_strict_accepts_rfc8259),
        cmocka_unit_test(test_strict_refuses_what_json_c_lets_through),
        cmocka_unit_test(test_strict_numbers_as_rfc8259_writes_them),
        cmocka_unit_test(test_strict_utf8),
        cmocka_unit_test(test_strict_lone_surrogates_refused),
        cmocka_unit_test(test_strict_nul),
        cmocka_unit_test(test_strict_depth_limit),
        cmocka_unit_test(test_strict_container_limit),
        cmocka_unit_test(test_strict_value_limit),
        cmocka_unit_test(test_strict_amplification_refused_before_parsing),
        cmocka_unit_test(test_strict_first_problem_named),
        cmocka_unit_test(test_strict_stats_and_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_strictjson.c — the strict JSON check: what RFC 8259 and valid UTF-8
 * accept, every lenient form json-c lets through, the messages and their
 * byte offsets, the counts (values, containers, depth, the first \u0000),
 * the limits on values, containers and depth, and the UTF-8 decoder, with
 * the maximal subparts buf_json_str() replaces as Python does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/strictjson.h"

static int check(const char *s) {
    return strictjson_check(s, strlen(s), NULL, NULL, NULL, 0);
}

/* Same, for texts with NUL bytes: the length is given. */
static int check_n(const char *s, size_t n) { return strictjson_check(s, n, NULL, NULL, NULL, 0); }

static void test_accepts_rfc8259(void **state) {
    (void)state;
    const char *ok[] = {
        "{}", "[]", "0", "-0", "1.5e+10", "-12.25E-3", "\"\"", "true", "false", "null",
        " \t\r\n{\"a\" : [1, 2.0, \"x\", null, true, {\"b\":{}}]} \n",
        "{\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}",
        "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0041 \\u00e9 \\u0000\"",
        "\"\\ud83d\\ude00\"",                 /* an escaped surrogate pair */
        "\"h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80\"", /* UTF-8 of 2, 3, 4 bytes */
        "\"\x7f\"",                           /* DEL is no control character to JSON */
        "{\"a\":1,\"a\":2}",                  /* duplicate keys: allowed */
        "1e400",                              /* a number out of double range is still JSON */
        "-9223372036854775808", "18446744073709551615", /* the integers json-c holds exactly */
        "123456789012345678901234567890",     /* valid JSON, noted as first_big_int */
        "123456789012345678901234567890.5",   /* a double keeps its text in json-c */
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char err[128];
        int rc = strictjson_check(ok[i], strlen(ok[i]), NULL, NULL, err, sizeof err);
        if (rc != STRICTJSON_OK) fail_msg("refused %s: %s", ok[i], err);
    }
}

/* Every lenient form json-c's default parser accepts, and more. */
static void test_refuses_lenient_json(void **state) {
    (void)state;
    const char *bad[] = {
        "", " ", "{'a':1}", "{\"a\":'x'}", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":-Infinity}",
        "{\"a\":nan}", "/* c */{}", "{} // c", "{\"a\":1 /* c */}", "{\"a\":1,}", "[1,2,]", "[,]",
        "{,}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":-}", "{\"a\":1e}",
        "{\"a\":1e+}", "{\"a\":0x10}", "{\"a\":tru}", "{\"a\":TRUE}", "{\"a\":True}",
        "{\"a\":nul}", "{a:1}", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "[1 2]", "{\"a\":1}}",
        "{\"a\":1} {}", "{\"a\":1", "[", "\"abc", "\"\\q\"", "\"\\u12\"", "\"\\u12G4\"",
        "\"\\x41\"", "\"a\tb\"", "\"a\nb\"", "\"\x1b[31m\"", "\"\x01\"",
        "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\ud800x\"",
        "\"\\ud83d\\ud83d\"", "\xef\xbb\xbf{}", /* a BOM is no JSON */
        "{\"a\":undefined}", "[1,,2]", "{\"a\"::1}", "{\"a\":1,\"b\"}", "'a'",
        /* numbers json-c's strict mode reads (found by fuzz_json) */
        "00", "-02", "[00]", "01.5", "-.5", "[-.05e10]", "-", "-x", "1.e5", "1e+", "- 1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[128];
        int rc = strictjson_check(bad[i], strlen(bad[i]), NULL, NULL, err, sizeof err);
        if (rc != STRICTJSON_INVALID) fail_msg("accepted %s", bad[i]);
        assert_true(strlen(err) > 0);
    }
    /* a NUL byte, raw in a string or outside one */
    assert_int_equal(check_n("\"a\0b\"", 5), STRICTJSON_INVALID);
    assert_int_equal(check_n("{}\0", 3), STRICTJSON_INVALID);
}

static void test_refuses_invalid_utf8(void **state) {
    (void)state;
    const char *bad[] = {
        "\"\x80\"",             /* a stray continuation byte */
        "\"\xc3\"",             /* cut short */
        "\"\xc3(\"",            /* a bad continuation */
        "\"\xc0\xaf\"",         /* overlong '/' */
        "\"\xc1\xbf\"",         /* overlong */
        "\"\xe0\x80\xaf\"",     /* overlong, 3 bytes */
        "\"\xf0\x80\x80\xaf\"", /* overlong, 4 bytes */
        "\"\xed\xa0\x80\"",     /* U+D800, a surrogate */
        "\"\xed\xbf\xbf\"",     /* U+DFFF */
        "\"\xf4\x90\x80\x80\"", /* U+110000 */
        "\"\xf5\x80\x80\x80\"", "\"\xff\"", "\"\xfe\"",
        "\"\xe4\xb8\"",         /* a 3-byte sequence cut short by the quote */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[128];
        assert_int_equal(strictjson_check(bad[i], strlen(bad[i]), NULL, NULL, err, sizeof err),
                         STRICTJSON_INVALID);
        assert_non_null(strstr(err, "UTF-8"));
    }
    /* invalid UTF-8 outside a string is no JSON either */
    assert_int_equal(check("\xc3\xa9"), STRICTJSON_INVALID);
    /* the last valid code points */
    assert_int_equal(check("\"\xf4\x8f\xbf\xbf \xed\x9f\xbf \xee\x80\x80\""), STRICTJSON_OK);
}

static void test_error_names_the_byte(void **state) {
    (void)state;
    static const struct {
        const char *text, *err;
    } cases[] = {
        {"{\"a\":NaN}", "NaN or Infinity at byte 5"},
        {"[-Infinity]", "NaN or Infinity at byte 2"},
        {"[1,2,]", "an unexpected character at byte 5"},
        {"{'a':1}", "a single-quoted string at byte 1"},
        {"{a:1}", "an object key that is not a string at byte 1"},
        {"['a']", "a single-quoted string at byte 1"},
        {"[1,-02]", "a number with a leading zero at byte 4"},
        {"[-.5]", "a number without digits after its '-' at byte 2"},
        {"[1.]", "a number without digits after its '.' at byte 3"},
        {"[1e]", "a number without digits in its exponent at byte 3"},
        {"\"a\tb\"", "an unescaped control character in a string at byte 2"},
        {"\"\\ud800\"", "a lone high surrogate at byte 7"},
        {"\"ab\x80\"", "invalid UTF-8 at byte 3"},
        {"{} x", "data after the value at byte 3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[128];
        const char *t = cases[i].text;
        assert_int_equal(strictjson_check(t, strlen(t), NULL, NULL, err, sizeof err),
                         STRICTJSON_INVALID);
        if (strcmp(err, cases[i].err) != 0) fail_msg("%s: \"%s\", wanted \"%s\"", t, err, cases[i].err);
    }
}

static void test_counts(void **state) {
    (void)state;
    strictjson_stats st;
    const char *s = "{\"a\":[1,{\"b\":null},[]],\"c\":\"x\"}";
    assert_int_equal(strictjson_check(s, strlen(s), NULL, &st, NULL, 0), STRICTJSON_OK);
    /* {} a:[] 1 {} null [] "x" */
    assert_int_equal(st.values, 7);
    assert_int_equal(st.containers, 4);
    assert_int_equal(st.depth, 3);
    assert_int_equal(st.first_nul, -1);
    assert_int_equal(strictjson_check("5", 1, NULL, &st, NULL, 0), STRICTJSON_OK);
    assert_int_equal(st.values, 1);
    assert_int_equal(st.containers, 0);
    assert_int_equal(st.depth, 0);
    /* the first "\u0000", at its backslash; "\\u0000" is text */
    s = "[\"\\\\u0000\",\"a\\u0000\",\"\\u0000\"]";
    assert_int_equal(strictjson_check(s, strlen(s), NULL, &st, NULL, 0), STRICTJSON_OK);
    assert_int_equal(st.first_nul, 13);
    /* counted up to where the check stopped */
    s = "[1,[2],x,\"\\u0000\"]";
    assert_int_equal(strictjson_check(s, strlen(s), NULL, &st, NULL, 0), STRICTJSON_INVALID);
    assert_int_equal(st.values, 5); /* x included: counted, then refused */
    assert_int_equal(st.containers, 2);
    assert_int_equal(st.first_nul, -1);
}

/* Builds "[" + n copies of el joined by "," + "]". */
static char *array_of(const char *el, size_t n) {
    size_t l = strlen(el);
    char *s = malloc(n * (l + 1) + 3), *p = s;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i) *p++ = ',';
        memcpy(p, el, l);
        p += l;
    }
    *p++ = ']';
    *p = '\0';
    return s;
}

static void test_limits(void **state) {
    (void)state;
    strictjson_limits lim = {.max_values = 10000, .max_containers = 0, .max_depth = 32};
    char err[128];
    /* the array and 9999 numbers: 10000 values, at the limit */
    char *s = array_of("1", 9999);
    assert_int_equal(strictjson_check(s, strlen(s), &lim, NULL, err, sizeof err), STRICTJSON_OK);
    free(s);
    s = array_of("1", 10000);
    assert_int_equal(strictjson_check(s, strlen(s), &lim, NULL, err, sizeof err),
                     STRICTJSON_TOO_BIG);
    assert_string_equal(err, "more than 10000 values (byte 19999)");
    free(s);
    /* containers alone */
    lim.max_values = 0;
    lim.max_containers = 100;
    s = array_of("{}", 99);
    assert_int_equal(strictjson_check(s, strlen(s), &lim, NULL, err, sizeof err), STRICTJSON_OK);
    free(s);
    s = array_of("{}", 100);
    assert_int_equal(strictjson_check(s, strlen(s), &lim, NULL, err, sizeof err),
                     STRICTJSON_TOO_BIG);
    assert_string_equal(err, "more than 100 objects and arrays (byte 298)");
    free(s);
    /* depth: 32 nested arrays pass, 33 do not */
    char deep[80];
    memset(deep, '[', 33);
    memset(deep + 33, ']', 33);
    assert_int_equal(strictjson_check(deep + 1, 64, &lim, NULL, err, sizeof err), STRICTJSON_OK);
    assert_int_equal(strictjson_check(deep, 66, &lim, NULL, err, sizeof err), STRICTJSON_TOO_BIG);
    assert_string_equal(err, "nested deeper than 32 at byte 32");
    /* an invalid text within the limits is invalid, not too big */
    assert_int_equal(strictjson_check("[1,2,]", 6, &lim, NULL, err, sizeof err),
                     STRICTJSON_INVALID);
}

/* Without limits, deep nesting still ends with an answer, not a crash. */
static void test_very_deep_without_limits(void **state) {
    (void)state;
    size_t n = 1000000;
    char *s = malloc(2 * n);
    memset(s, '[', n);
    memset(s + n, ']', n);
    assert_int_equal(strictjson_check(s, 2 * n, NULL, NULL, NULL, 0), STRICTJSON_TOO_BIG);
    free(s);
}

static void test_utf8_decoder(void **state) {
    (void)state;
    uint32_t cp;
    assert_int_equal(strictjson_utf8("A", 1, &cp), 1);
    assert_int_equal(cp, 'A');
    assert_int_equal(strictjson_utf8("\xc2\x9b", 2, &cp), 2);
    assert_int_equal(cp, 0x9b);
    assert_int_equal(strictjson_utf8("\xe2\x80\xae", 3, &cp), 3);
    assert_int_equal(cp, 0x202e);
    assert_int_equal(strictjson_utf8("\xf0\x9f\x98\x80", 4, &cp), 4);
    assert_int_equal(cp, 0x1f600);
    assert_int_equal(strictjson_utf8("\xf0\x9f\x98\x80", 3, &cp), 0); /* cut short by n */
    assert_int_equal(strictjson_utf8("\x9b", 1, &cp), 0);
    assert_int_equal(strictjson_utf8("\xc0\x80", 2, &cp), 0);
    assert_int_equal(strictjson_utf8("\xed\xa0\x80", 3, &cp), 0); /* a surrogate */
}

/* Each invalid sequence steps over its maximal subpart; the replacement
 * made that way is Python's bytes.decode("utf-8", "replace") (the expected
 * texts were made with it; '?' stands for U+FFFD). */
static void test_utf8_maximal_subparts(void **state) {
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"\xe0\x80\xaf", "???"},         /* overlong: E0 wants A0..BF next */
        {"\xed\xa0\x80", "???"},         /* a surrogate */
        {"\xf4\x90\x80\x80", "????"},   /* past U+10FFFF */
        {"\xf0\x9f\x98", "?"},           /* cut short: one subpart */
        {"\xe2\x82", "?"},
        {"\xc3(", "?("},
        {"\xf0\x9f\x98\x80\x80", "\xf0\x9f\x98\x80?"},
        {"a\xff" "b", "a?b"},
        {"\xc0\xaf", "??"},
        {"\xf1\x80\x80\xe1\x80\xc2", "???"},
        {"\xf5\x80", "??"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const char *in = cases[k].in;
        size_t n = strlen(in);
        char out[64];
        size_t o = 0;
        for (size_t i = 0; i < n;) {
            int valid;
            uint32_t cp = 0xFFFFFFFF;
            size_t step = strictjson_utf8_step(in + i, n - i, &cp, &valid);
            assert_true(step >= 1 && step <= n - i);
            if (valid) {
                assert_true(cp != 0xFFFFFFFF);
                memcpy(out + o, in + i, step);
                o += step;
            } else {
                out[o++] = '?';
            }
            i += step;
        }
        out[o] = '\0';
        if (strcmp(out, cases[k].out) != 0) fail_msg("case %zu: got \"%s\"", k, out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_rfc8259),
        cmocka_unit_test(test_refuses_lenient_json),
        cmocka_unit_test(test_refuses_invalid_utf8),
        cmocka_unit_test(test_error_names_the_byte),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_very_deep_without_limits),
        cmocka_unit_test(test_utf8_decoder),
        cmocka_unit_test(test_utf8_maximal_subparts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

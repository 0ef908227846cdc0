/* test_upstream.c — the pure helpers of worker/upstream.c: masking an echoed
 * API key, and excerpts of upstream text that are always valid UTF-8. (The
 * exchange itself is tested end to end: tests/e2e/test_upstream.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/strictjson.h"
#include "worker/upstream.h"

#define KEY "sk-test-secret"

/* Masks a copy of s; returns it (the caller frees). */
static char *masked(const char *s, const char *key) {
    char *c = strdup(s);
    c[upstream_mask(c, strlen(c), key)] = '\0';
    return c;
}

static void test_mask(void **state) {
    (void)state;
    struct {
        const char *in, *out;
    } cases[] = {
        {"", ""},
        {"no secret here", "no secret here"},
        {KEY, "***"},
        {"Incorrect API key provided: " KEY ".", "Incorrect API key provided: ***."},
        {"{\"error\":{\"message\":\"bad key " KEY "\",\"key\":\"" KEY "\"}}",
         "{\"error\":{\"message\":\"bad key ***\",\"key\":\"***\"}}"},
        {KEY KEY "x" KEY, "******x***"},
        {"sk-test-secre", "sk-test-secre"}, /* a part of the key is not the key */
        {"Bearer " KEY "\r\n", "Bearer ***\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *got = masked(cases[i].in, KEY);
        assert_string_equal(got, cases[i].out);
        free(got);
    }
    /* no key, or one too short to look for: nothing changes */
    char *got = masked("abc " KEY, NULL);
    assert_string_equal(got, "abc " KEY);
    free(got);
    got = masked("a short key: abc1234", "abc1234");
    assert_string_equal(got, "a short key: abc1234");
    free(got);
    /* bytes after a NUL are searched too: the length counts, not strlen */
    char bin[] = "a\0" KEY "b";
    size_t n = upstream_mask(bin, sizeof bin - 1, KEY);
    assert_int_equal(n, 6);
    assert_memory_equal(bin, "a\0***b", 6);
}

/* JSON stays JSON: the key can only be inside a string, and the mask is a
 * plain string. */
static void test_mask_keeps_json_strict(void **state) {
    (void)state;
    char *got = masked("{\"k\":\"" KEY "\",\"n\":1}", KEY);
    assert_int_equal(strictjson_check(got, strlen(got), NULL, NULL, NULL, 0), STRICTJSON_OK);
    free(got);
}

/* 1 when s is valid UTF-8 throughout. */
static int valid_utf8(const char *s) {
    size_t i = 0, n = strlen(s);
    while (i < n) {
        int l = strictjson_utf8(s + i, n - i, NULL);
        if (l == 0) return 0;
        i += (size_t)l;
    }
    return 1;
}

static void test_excerpt(void **state) {
    (void)state;
    char *e = upstream_excerpt("hello", 5, 100);
    assert_string_equal(e, "hello");
    free(e);
    /* cut at the limit, on a character boundary, then "..." */
    e = upstream_excerpt("abcdefghij", 10, 8);
    assert_string_equal(e, "abcdefgh...");
    free(e);
    e = upstream_excerpt("ab\xc3\xa9\xc3\xa9", 6, 5); /* "abéé": 4 bytes fit, 6 do not */
    assert_string_equal(e, "ab\xc3\xa9...");
    free(e);
    /* invalid bytes become U+FFFD; a NUL too */
    e = upstream_excerpt("a\xff" "b\x80\0c", 6, 100);
    assert_string_equal(e, "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c");
    assert_true(valid_utf8(e));
    free(e);
    /* a sequence cut by the input's end is invalid too */
    e = upstream_excerpt("x\xe4\xb8", 3, 100);
    assert_string_equal(e, "x\xef\xbf\xbd\xef\xbf\xbd");
    free(e);
    e = upstream_excerpt("", 0, 10);
    assert_string_equal(e, "");
    free(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_mask_keeps_json_strict),
        cmocka_unit_test(test_excerpt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

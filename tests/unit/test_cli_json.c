/* test_cli_json.c — cli_json_parse() (cli/cli.c), which every command uses
 * on text read from Redis: what it would cost json-c is bounded before
 * json-c builds anything, at bounds above anything chatq writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"

/* "[x,x,...]" with n copies of item. */
static char *list_of(const char *item, size_t n) {
    buf b = {0};
    buf_putc(&b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i) buf_putc(&b, ',');
        buf_puts(&b, item);
    }
    buf_putc(&b, ']');
    return buf_steal(&b);
}

static int parses(const char *s, char *err, size_t errlen) {
    json_object *o = NULL;
    int rc = cli_json_parse(s, strlen(s), &o, err, errlen);
    json_object_put(o);
    return rc;
}

static void test_objects_and_arrays_are_bounded(void **state) {
    (void)state;
    char err[128];
    char *ok = list_of("[]", 299999); /* with the outer one: 300,000 */
    assert_int_equal(parses(ok, err, sizeof err), 0);
    free(ok);
    char *bad = list_of("{}", 300000);
    assert_int_equal(parses(bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 300000 objects and arrays"));
    free(bad);
}

static void test_values_are_bounded(void **state) {
    (void)state;
    char err[128];
    char *ok = list_of("1", 1099999);
    assert_int_equal(parses(ok, err, sizeof err), 0);
    free(ok);
    char *bad = list_of("1", 1100000);
    assert_int_equal(parses(bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 1100000 values"));
    free(bad);
}

/* Brackets and commas inside strings (escaped quotes too) are text. */
static void test_strings_do_not_count(void **state) {
    (void)state;
    buf b = {0};
    buf_puts(&b, "{\"a\":\"\\\"");
    for (int i = 0; i < 400000; i++) buf_puts(&b, "[{,");
    buf_puts(&b, "\"}");
    assert_int_equal(parses(buf_cstr(&b), NULL, 0), 0);
    buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objects_and_arrays_are_bounded),
        cmocka_unit_test(test_values_are_bounded),
        cmocka_unit_test(test_strings_do_not_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_tally.c — summing one day's usage rows (cli/tally.c): the TOTAL row
 * of `chatq usage` and the totals of `chatq stats`. The counters come from
 * Redis, where anyone can write any integer: the sum must stay a count
 * (it saturates at LLONG_MAX) rather than overflow. Reading the hash
 * itself is tested end to end (tests/e2e/test_cli_hostile.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <string.h>

#include "cli/tally.h"

static void test_sum_adds_rows(void **state) {
    (void)state;
    tally_row rows[2];
    memset(rows, 0, sizeof rows);
    rows[0].m[USAGE_REQUESTS] = 2;
    rows[1].m[USAGE_REQUESTS] = 3;
    rows[1].m[USAGE_COST_MICRO_USD] = 7;
    rows[1].has_cost = 1;
    tally t = {.v = rows, .n = 2, .cap = 2};
    tally_row sum;
    tally_sum(&t, &sum);
    assert_int_equal(sum.m[USAGE_REQUESTS], 5);
    assert_int_equal(sum.m[USAGE_COST_MICRO_USD], 7);
    assert_true(sum.has_cost);
}

static void test_sum_saturates(void **state) {
    (void)state;
    tally_row rows[3];
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < 3; i++) rows[i].m[USAGE_TOTAL_TOKENS] = LLONG_MAX - 1;
    rows[2].m[USAGE_REQUESTS] = 1;
    tally t = {.v = rows, .n = 3, .cap = 3};
    tally_row sum;
    tally_sum(&t, &sum);
    assert_true(sum.m[USAGE_TOTAL_TOKENS] == LLONG_MAX);
    assert_int_equal(sum.m[USAGE_REQUESTS], 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum_adds_rows),
        cmocka_unit_test(test_sum_saturates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

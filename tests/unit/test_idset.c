/* test_idset.c — the custom_id set of cli/idset.c: new and repeated ids, a
 * hash match that the `same` callback says is not the same id (both kept),
 * growth keeping every id findable, and the hash itself.
 *
 * The ids of a test live in an array indexed by line number, which is what
 * the callback reads, as batchin reads the earlier line of its file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/idset.h"

/* The ids by line (line 0 unused), and the id being added. */
typedef struct ids {
    char (*by_line)[32];
    const char *adding;
    int calls;
    uint32_t last_line; /* the line the callback was asked about last */
} ids;

static int same_id(void *arg, uint32_t line) {
    ids *t = arg;
    t->calls++;
    t->last_line = line;
    return !strcmp(t->by_line[line], t->adding);
}

/* Adds `id` found on `line` with its real hash. */
static uint32_t add(idset *s, ids *t, const char *id, uint32_t line) {
    snprintf(t->by_line[line], sizeof t->by_line[line], "%s", id);
    t->adding = id;
    return idset_add(s, idset_hash(id, strlen(id)), line, same_id, t);
}

static void test_hash(void **state) {
    (void)state;
    assert_true(idset_hash("request-1", 9) == idset_hash("request-1", 9));
    assert_true(idset_hash("request-1", 9) != idset_hash("request-2", 9));
    assert_true(idset_hash("", 0) != 0);
    assert_true(idset_hash("a\0b", 3) != idset_hash("a\0c", 3)); /* bytes, not C strings */
    /* Ids that differ only at the end spread over the low bits, which pick
     * the slot: 1,000 such ids take many distinct slots of 1,024. */
    char seen[1024] = {0};
    int distinct = 0;
    for (int i = 0; i < 1000; i++) {
        char id[32];
        int n = snprintf(id, sizeof id, "request-%d", i);
        size_t slot = (size_t)idset_hash(id, (size_t)n) & 1023;
        distinct += !seen[slot];
        seen[slot] = 1;
    }
    assert_true(distinct > 550); /* random placement gives about 630 */
}

static void test_new_and_repeated(void **state) {
    (void)state;
    idset s = {0};
    char lines[8][32];
    ids t = {lines, NULL, 0, 0};
    assert_int_equal(add(&s, &t, "a", 1), 0);
    assert_int_equal(add(&s, &t, "b", 2), 0);
    assert_int_equal(t.calls, 0); /* no hash matched: no line read again */
    assert_int_equal(add(&s, &t, "a", 3), 1);
    assert_int_equal(t.calls, 1);
    assert_int_equal(t.last_line, 1);
    assert_int_equal(add(&s, &t, "b", 4), 2);
    assert_int_equal(s.n, 2); /* repeats are not added */
    assert_int_equal(add(&s, &t, "a", 5), 1); /* still the first line */
    idset_free(&s);
    assert_null(s.hash);
    assert_int_equal(s.cap, 0);
    assert_int_equal(s.n, 0);
}

/* Equal hashes of different ids: the callback tells them apart. */
static void test_hash_collision_keeps_both(void **state) {
    (void)state;
    idset s = {0};
    char lines[8][32];
    ids t = {lines, NULL, 0, 0};
    uint64_t h = 42;
    snprintf(lines[1], 32, "x");
    snprintf(lines[2], 32, "y");
    snprintf(lines[3], 32, "y");
    t.adding = "x";
    assert_int_equal(idset_add(&s, h, 1, same_id, &t), 0);
    t.adding = "y";
    assert_int_equal(idset_add(&s, h, 2, same_id, &t), 0);
    assert_int_equal(t.calls, 1);
    assert_int_equal(s.n, 2);
    /* A third with that hash: compared with both, found on line 2. */
    t.calls = 0;
    assert_int_equal(idset_add(&s, h, 3, same_id, &t), 2);
    assert_int_equal(t.calls, 2);
    idset_free(&s);
}

/* 100,000 ids: the set grows (load at most 3/4) and finds every one. */
static void test_growth(void **state) {
    (void)state;
    enum { N = 100000 };
    idset s = {0};
    char(*lines)[32] = calloc(2 * N + 1, sizeof *lines);
    ids t = {lines, NULL, 0, 0};
    for (uint32_t i = 1; i <= N; i++) {
        char id[32];
        snprintf(id, sizeof id, "request-%u", i);
        assert_int_equal(add(&s, &t, id, i), 0);
        assert_true(s.n * 4 <= s.cap * 3);
    }
    assert_int_equal(s.n, N);
    assert_int_equal(s.cap & (s.cap - 1), 0); /* a power of two */
    assert_int_equal(s.cap, 262144);         /* 3 MiB: 12 bytes a slot */
    for (uint32_t i = 1; i <= N; i++) {
        char id[32];
        snprintf(id, sizeof id, "request-%u", i);
        assert_int_equal(add(&s, &t, id, N + i), i);
    }
    assert_int_equal(s.n, N);
    idset_free(&s);
    free(lines);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_new_and_repeated),
        cmocka_unit_test(test_hash_collision_keeps_both),
        cmocka_unit_test(test_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

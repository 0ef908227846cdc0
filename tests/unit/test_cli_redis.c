/* test_cli_redis.c — the CLI's helpers for Redis replies (cli/redis.c):
 * reading an HGETALL reply whose elements are not all what a Redis server
 * sends (a proxy, a fake server, a RESP3 connection may send integers,
 * nils or nested arrays where bulk strings are expected).
 *
 * Replies are built by hand: the helpers only read them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cli/redis.h"

static redisReply str_reply(const char *s) {
    redisReply r;
    memset(&r, 0, sizeof r);
    r.type = REDIS_REPLY_STRING;
    r.str = (char *)s;
    r.len = strlen(s);
    return r;
}

static redisReply int_reply(long long v) {
    redisReply r;
    memset(&r, 0, sizeof r);
    r.type = REDIS_REPLY_INTEGER;
    r.integer = v;
    return r;
}

/* Pairs whose name is not a string are left out, not read as text. */
static void test_hash_fields_skip_names_that_are_not_strings(void **state) {
    (void)state;
    redisReply nested = {.type = REDIS_REPLY_ARRAY};
    redisReply nil = {.type = REDIS_REPLY_NIL};
    redisReply e[8] = {int_reply(7),     str_reply("x"), str_reply("status"), str_reply("ok"),
                       nested,           str_reply("y"), nil,                 int_reply(1)};
    redisReply *ptrs[8];
    for (int i = 0; i < 8; i++) ptrs[i] = &e[i];
    redisReply h = {.type = REDIS_REPLY_ARRAY, .elements = 8, .element = ptrs};
    static const char *const order[] = {"status", NULL};
    size_t n = 99;
    cli_redis_field *f = cli_redis_hash_fields(&h, order, &n);
    assert_int_equal(n, 1);
    assert_string_equal(f[0].name->str, "status");
    assert_string_equal(f[0].value->str, "ok");
    free(f);
    f = cli_redis_hash_fields(&h, NULL, &n);
    assert_int_equal(n, 1);
    free(f);
}

/* A reply that is not an array has no fields. */
static void test_hash_fields_of_a_reply_that_is_not_an_array(void **state) {
    (void)state;
    size_t n = 99;
    redisReply s = str_reply("not a hash");
    cli_redis_field *f = cli_redis_hash_fields(&s, NULL, &n);
    assert_int_equal(n, 0);
    free(f);
    assert_null(cli_redis_hash_get(&s, "a"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_fields_skip_names_that_are_not_strings),
        cmocka_unit_test(test_hash_fields_of_a_reply_that_is_not_an_array),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

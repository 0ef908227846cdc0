/* test_rconn.c — the parts of rconn.h that need no Redis server: the RESP
 * formatter (checked against hiredis' own redisFormatCommandArgv()), the
 * rargs argument vectors, and rconn_send()'s answer before the connection
 * is ready. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/rconn.h"

/* Formats with rconn_format_command() and with hiredis, and compares. */
static void same_as_hiredis(int argc, const char **argv, const size_t *lens) {
    buf b = {0};
    char *want = NULL;
    int wlen = redisFormatCommandArgv(&want, argc, argv, lens);
    assert_true(wlen >= 0);
    rconn_format_command(&b, argc, argv, lens);
    assert_int_equal(b.len, (size_t)wlen);
    assert_memory_equal(b.data, want, (size_t)wlen);
    assert_int_equal(b.data[b.len], '\0');
    redisFreeCommand(want);
    buf_free(&b);
}

static void test_format_simple(void **state) {
    (void)state;
    buf b = {0};
    const char *argv[] = {"SET", "k", "value"};
    size_t lens[] = {3, 1, 5};
    rconn_format_command(&b, 3, argv, lens);
    assert_string_equal(b.data, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n");
    assert_int_equal(b.len, strlen(b.data));
    buf_free(&b);
    same_as_hiredis(3, argv, lens);
}

static void test_format_edge_cases(void **state) {
    (void)state;
    /* no arguments, an empty argument */
    same_as_hiredis(0, NULL, NULL);
    const char *empty[] = {"GET", ""};
    size_t elens[] = {3, 0};
    same_as_hiredis(2, empty, elens);
    /* binary: NUL, CR LF and '$' inside an argument are sent as they are */
    const char bin[] = "a\0b\r\n$3\r\n*";
    const char *argv[] = {"RPUSH", "q", bin};
    size_t lens[] = {5, 1, sizeof bin - 1};
    same_as_hiredis(3, argv, lens);
    /* lengths of 9, 10 and 100000 bytes (digit counts change) */
    char *big = malloc(100000);
    memset(big, 'x', 100000);
    const char *sizes[] = {big, big, big};
    size_t slens[] = {9, 10, 100000};
    same_as_hiredis(3, sizes, slens);
    free(big);
}

static void test_format_many_arguments(void **state) {
    (void)state;
    enum { N = 1234 };
    static const char letters[] = "abcdefghij";
    const char *argv[N];
    size_t lens[N];
    for (int i = 0; i < N; i++) {
        argv[i] = letters + i % 10;
        lens[i] = (size_t)(10 - i % 10);
    }
    same_as_hiredis(N, argv, lens);
}

/* A buffer that held a longer command is overwritten, not appended to. */
static void test_format_replaces_content(void **state) {
    (void)state;
    buf b = {0};
    buf_puts(&b, "something much longer than the command that follows it");
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    rconn_format_command(&b, 1, argv, lens);
    assert_string_equal(b.data, "*1\r\n$4\r\nPING\r\n");
    assert_int_equal(b.len, 14);
    const char *argv2[] = {"ECHO", "hello"};
    size_t lens2[] = {4, 5};
    rconn_format_command(&b, 2, argv2, lens2);
    assert_string_equal(b.data, "*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n");
    buf_free(&b);
}

static void test_rargs(void **state) {
    (void)state;
    rargs a = {0};
    char borrowed[] = "borrowed";
    rargs_add(&a, borrowed, 3);
    rargs_adds(&a, borrowed);
    rargs_addf(&a, "%s:%d", "key", 42);
    rargs_addll(&a, 0);
    rargs_addll(&a, -7);
    rargs_addll(&a, LLONG_MAX);
    rargs_addll(&a, LLONG_MIN);
    rargs_take(&a, strdup("taken"));
    for (int i = 0; i < 40; i++) rargs_addll(&a, i); /* grows past its first 16 */
    assert_int_equal(a.argc, 48);
    assert_ptr_equal(a.argv[0], borrowed);
    assert_int_equal(a.lens[0], 3);
    assert_int_equal(a.lens[1], 8);
    const char *want[] = {"key:42", "0", "-7", "9223372036854775807", "-9223372036854775808",
                          "taken"};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(a.lens[2 + i], strlen(want[i]));
        assert_memory_equal(a.argv[2 + i], want[i], a.lens[2 + i]);
    }
    assert_memory_equal(a.argv[47], "39", 2);
    rargs_free(&a);
    assert_int_equal(a.argc, 0);
    assert_null(a.argv);
}

/* Copies and numbers live in blocks the rargs owns: many small ones, and
 * one larger than a block, all stay intact until rargs_free(). */
static void test_rargs_copies(void **state) {
    (void)state;
    rargs a = {0};
    char text[64];
    for (int i = 0; i < 3000; i++) {
        int n = snprintf(text, sizeof text, "copy %d of many", i);
        rargs_addcopy(&a, text, (size_t)n);
        rargs_addll(&a, i);
    }
    char big[10000];
    memset(big, 'x', sizeof big);
    big[5] = '\0'; /* binary safe */
    rargs_addcopy(&a, big, sizeof big);
    rargs_addcopy(&a, "", 0);
    rargs_setcopy(&a, 1, "set", 3);
    assert_int_equal(a.argc, 6002);
    for (int i = 0; i < 3000; i++) {
        int n = snprintf(text, sizeof text, "copy %d of many", i);
        assert_int_equal(a.lens[2 * i], (size_t)n);
        assert_memory_equal(a.argv[2 * i], text, (size_t)n);
        if (i == 0) continue;
        n = snprintf(text, sizeof text, "%d", i);
        assert_string_equal(a.argv[2 * i + 1], text);
    }
    assert_string_equal(a.argv[1], "set");
    assert_int_equal(a.lens[6000], sizeof big);
    assert_memory_equal(a.argv[6000], big, sizeof big);
    assert_int_equal(a.lens[6001], 0);
    assert_string_equal(a.argv[6001], "");
    rargs_free(&a);
    assert_int_equal(a.nowned, 0);
    assert_null(a.owned);
}

static void test_send_before_ready(void **state) {
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    redis_target t = {.host = "127.0.0.1", .port = 1};
    rconn *rc = rconn_new(&loop, &t, "test", NULL, NULL);
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    assert_false(rconn_ready(rc));
    assert_int_equal(rconn_send(rc, NULL, NULL, 1, argv, lens), RCONN_ENOTREADY);
    assert_string_equal(rconn_strerror(RCONN_ENOTREADY), "not ready");
    assert_string_equal(rconn_strerror(RCONN_OK), "ok");
    assert_non_null(strstr(rconn_strerror(RCONN_EHIREDIS), "hiredis"));
    rconn_free(rc); /* never started: only its timers to close */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_simple),
        cmocka_unit_test(test_format_edge_cases),
        cmocka_unit_test(test_format_many_arguments),
        cmocka_unit_test(test_format_replaces_content),
        cmocka_unit_test(test_rargs),
        cmocka_unit_test(test_rargs_copies),
        cmocka_unit_test(test_send_before_ready),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

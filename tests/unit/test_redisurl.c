/* test_redisurl.c — redis_target_parse(): every URL form chatq accepts
 * (redis:// with or without user info, port, database and query; IPv6 in
 * brackets; unix:// sockets), the errors it gives, and that an error
 * message never shows any part of a password, however the URL is broken. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/redisurl.h"

static char err[256];

/* Parses url and checks every field (NULL = absent). */
static void check_target(const char *url, const char *host, int port, const char *path,
                         const char *user, const char *pass, int db) {
    redis_target t;
    if (redis_target_parse(url, &t, err, sizeof err) != 0) fail_msg("%s: %s", url, err);
#define SAME(a, b) ((a) == NULL ? (b) == NULL : (b) != NULL && !strcmp((a), (b)))
    if (!SAME(host, t.host) || port != t.port || !SAME(path, t.unix_path) ||
        !SAME(user, t.user) || !SAME(pass, t.password) || db != t.db)
        fail_msg("%s: got host=%s port=%d path=%s user=%s pass=%s db=%d", url,
                 t.host ? t.host : "-", t.port, t.unix_path ? t.unix_path : "-",
                 t.user ? t.user : "-", t.password ? t.password : "-", t.db);
#undef SAME
    redis_target_free(&t);
}

/* Parsing must fail with `needle` in the message and leave t empty. */
static void bad_target(const char *url, const char *needle) {
    redis_target t;
    if (redis_target_parse(url, &t, err, sizeof err) != -1 || !strstr(err, needle))
        fail_msg("%s: err=\"%s\", wanted %s", url, err, needle);
    assert_null(t.host);
    assert_null(t.unix_path);
    assert_null(t.user);
    assert_null(t.password);
    assert_int_equal(t.port, 6379);
    assert_int_equal(t.db, 0);
}

static void test_tcp_forms(void **state) {
    (void)state;
    check_target("redis://h", "h", 6379, NULL, NULL, NULL, 0);
    check_target("REDIS://h", "h", 6379, NULL, NULL, NULL, 0);
    check_target("redis://127.0.0.1:6379/0", "127.0.0.1", 6379, NULL, NULL, NULL, 0);
    check_target("redis://h:7000/5", "h", 7000, NULL, NULL, NULL, 5);
    check_target("redis://h:1", "h", 1, NULL, NULL, NULL, 0);
    check_target("redis://h:65535", "h", 65535, NULL, NULL, NULL, 0);
    check_target("redis://h/", "h", 6379, NULL, NULL, NULL, 0);
    check_target("redis://h/2147483647", "h", 6379, NULL, NULL, NULL, 2147483647);
    check_target("redis://[::1]:6390/2", "::1", 6390, NULL, NULL, NULL, 2);
    check_target("redis://[::1]", "::1", 6379, NULL, NULL, NULL, 0);
}

static void test_user_and_password(void **state) {
    (void)state;
    check_target("redis://:pw@h", "h", 6379, NULL, NULL, "pw", 0);
    check_target("redis://alice@h", "h", 6379, NULL, "alice", NULL, 0);
    check_target("redis://alice:pw@h:6380/3", "h", 6380, NULL, "alice", "pw", 3);
    /* percent-encoded user and password */
    check_target("redis://al%40ce:p%3Aw%2F%25@h", "h", 6379, NULL, "al@ce", "p:w/%", 0);
    /* the last '@' ends the user info */
    check_target("redis://:p@ss@h", "h", 6379, NULL, NULL, "p@ss", 0);
    check_target("redis://u:pw@[::1]:7000/1", "::1", 7000, NULL, "u", "pw", 1);
}

static void test_query(void **state) {
    (void)state;
    check_target("redis://h?db=7", "h", 6379, NULL, NULL, NULL, 7);
    check_target("redis://h/1?db=2", "h", 6379, NULL, NULL, NULL, 2); /* the query wins */
    check_target("redis://h?user=bob&password=s%20t", "h", 6379, NULL, "bob", "s t", 0);
    check_target("redis://a:b@h?user=c&password=d", "h", 6379, NULL, "c", "d", 0);
}

static void test_unix_forms(void **state) {
    (void)state;
    check_target("unix:///run/redis/redis.sock", NULL, 6379, "/run/redis/redis.sock", NULL,
                 NULL, 0);
    check_target("UNIX:///r.sock", NULL, 6379, "/r.sock", NULL, NULL, 0);
    check_target("unix:///tmp/r.sock?db=2", NULL, 6379, "/tmp/r.sock", NULL, NULL, 2);
    check_target("unix:///tmp/r.sock?db=2&password=x%20y", NULL, 6379, "/tmp/r.sock", NULL,
                 "x y", 2);
    check_target("unix:///tmp/r.sock?user=u&password=p", NULL, 6379, "/tmp/r.sock", "u", "p",
                 0);
}

static void test_errors(void **state) {
    (void)state;
    redis_target t;
    assert_int_equal(redis_target_parse(NULL, &t, err, sizeof err), -1);
    assert_string_equal(err, "no URL");
    bad_target("rediss://h:6380", "TLS");
    bad_target("http://h", "redis://");
    bad_target("h:6379", "redis://");
    bad_target("", "redis://");
    bad_target("redis://", "no host");
    bad_target("redis://:6379", "no host");
    bad_target("redis://:secretpw@", "no host");
    bad_target("redis://[::1", "unclosed '['");
    bad_target("redis://[::1]x", "after ']'");
    bad_target("redis://[::1]:0", "bad port");
    bad_target("redis://h:0", "bad port");
    bad_target("redis://h:65536", "bad port");
    bad_target("redis://h:12345678901", "bad port");
    bad_target("redis://h:abc", "bad port");
    bad_target("redis://h:-1", "bad port");
    bad_target("redis://h:", "bad port");
    bad_target("redis://h/x", "bad database");
    bad_target("redis://h/-1", "bad database");
    bad_target("redis://h/2147483648", "bad database");
    bad_target("redis://h?db=x", "bad database");
    bad_target("redis://h?db=", "bad database");
    bad_target("redis://:p%zz@h", "percent-encoding");
    bad_target("redis://:p%00@h", "percent-encoding");
    bad_target("redis://:p%4@h", "percent-encoding");
    bad_target("redis://u%zz@h", "percent-encoding in the user");
    bad_target("redis://h?user=%zz", "percent-encoding in the user");
    bad_target("redis://h?password=%zz", "percent-encoding in the password");
    bad_target("redis://h?foo=1", "unknown parameter");
    bad_target("unix://relative/path", "unix:///");
    bad_target("unix://", "unix:///");
    bad_target("unix:///", "unix:///");
    bad_target("unix:///tmp/r.sock?db=x", "bad database");
    /* a NULL or zero-sized err is allowed */
    assert_int_equal(redis_target_parse("redis://h:0", &t, NULL, 0), -1);
}

/* A password written without its encoding or without "@host" lands where
 * the parser expects a port, a database or a parameter: the message must
 * say which part is wrong without quoting it. The password is "Zq9secret";
 * no 3-byte piece of it may appear. */
static void secret_not_shown(const char *url, const char *needle) {
    static const char *const pieces[] = {"Zq9", "q9s", "9se", "sec", "ecr", "cre", "ret"};
    bad_target(url, needle);
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
        if (strstr(err, pieces[i])) fail_msg("%s: the message shows the password: %s", url, err);
}

static void test_password_never_in_errors(void **state) {
    (void)state;
    secret_not_shown("redis://u:Zq9secret", "bad port");        /* no @host */
    secret_not_shown("redis://:Zq9secret", "no host");
    secret_not_shown("redis://u:Zq9/secret@h", "bad port");     /* unencoded '/' */
    secret_not_shown("redis://u:Zq9?secret@h", "bad port");     /* unencoded '?' */
    secret_not_shown("redis://u:12/Zq9secret@h", "bad database");
    secret_not_shown("redis://u:12?Zq9secret@h", "unknown parameter");
    secret_not_shown("unix:///r.sock?password=x&Zq9secret", "unknown parameter");
    secret_not_shown("redis://u:Zq9secret@h:99999", "bad port");
    secret_not_shown("redis://u:Zq9secret@h/x", "bad database");
    secret_not_shown("redis://u:Zq9secret%zz@h", "percent-encoding");
    secret_not_shown("redis://u:Zq9secret@", "no host");
    secret_not_shown("redis://u:Zq9secret@[::1", "unclosed");
    secret_not_shown("rediss://u:Zq9secret@h", "TLS");
    secret_not_shown("redis://h?password=Zq9secret%00", "percent-encoding");
}

static void test_free_is_idempotent(void **state) {
    (void)state;
    redis_target t;
    assert_int_equal(redis_target_parse("redis://u:p@h:7000/3", &t, err, sizeof err), 0);
    redis_target_free(&t);
    assert_null(t.host);
    assert_null(t.password);
    assert_int_equal(t.port, 6379);
    redis_target_free(&t);
    redis_target_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_forms),
        cmocka_unit_test(test_user_and_password),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_unix_forms),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_password_never_in_errors),
        cmocka_unit_test(test_free_is_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

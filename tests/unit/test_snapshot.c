/* test_snapshot.c — config_snapshot() and config_load_snapshot(): a worker
 * rebuilds exactly the configuration chatqd validated, keys included, even
 * when the file on disk changed or the key variables are gone, and a
 * snapshot that is not one is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "tests/unit/testutil.h"
#include "common/config.h"

static const char *tmpdir;
static char err[512];

static int setup(void **state) {
    (void)state;
    testutil_clear_config_env("TEST_SNAP_KEY");
    tmpdir = testutil_tmpdir("snap");
    return tmpdir ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    testutil_clear_config_env("TEST_SNAP_KEY");
    return testutil_tmpdir_remove();
}

/* Writes `text` to tmpdir/name and returns the path (caller frees). */
static char *write_file(const char *name, const char *text) {
    return testutil_write_file(name, text, strlen(text));
}

static const char *CONFIG_TEXT =
    "// comments survive, as the file had them\n"
    "{\"workers\": 3, \"timeout_ms\": 1234, \"queues\": [\"hi\", \"lo\"],\n"
    " \"providers\": [\n"
    "  {\"name\": \"env\", \"base_url\": \"http://a.example/v1\", \"api_key_env\": \"TEST_SNAP_KEY\",\n"
    "   \"headers\": {\"X-Quote\": \"a \\\"b\\\" \\\\ c\"}},\n"
    "  {\"name\": \"file\", \"base_url\": \"http://b.example/v1\", \"api_key_file\": \"key.txt\",\n"
    "   \"models\": [\"m*\"]},\n"
    "  {\"name\": \"none\", \"base_url\": \"http://c.example/v1\", \"models\": [\"n*\"]}]}\n";

/* chatqd's view: the file and the key variable as they are at its start. */
static void load_original(config *c, char **path) {
    char *key = write_file("key.txt", "sk-from-file\n");
    setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
    setenv("TEST_SNAP_KEY", "sk-from-env", 1);
    *path = write_file("chatq.json", CONFIG_TEXT);
    config_args a = {.config_file = *path};
    assert_int_equal(config_load(c, &a, err, sizeof err), 0);
    free(key);
}

static void test_round_trip_without_file_or_env(void **state) {
    (void)state;
    config orig, got;
    char *path;
    load_original(&orig, &path);
    size_t len;
    char *snap = config_snapshot(&orig, &len);
    assert_int_equal(strlen(snap), len);
    /* The worker's world: the file now broken, the keys gone. */
    free(write_file("chatq.json", "{not json"));
    free(write_file("key.txt", "sk-changed\n"));
    unsetenv("TEST_SNAP_KEY");
    config_args flags = {.concurrency = "7"};
    assert_int_equal(config_load_snapshot(&got, snap, len, &flags, err, sizeof err), 0);
    config_snapshot_free(snap, len);

    assert_string_equal(got.file, path);
    assert_int_equal(got.workers, 3);
    assert_int_equal(got.concurrency, 7); /* the flags still apply */
    assert_int_equal(got.timeout_ms, 1234);
    assert_int_equal(got.nqueues, 2);
    assert_string_equal(got.queues[1], "lo");
    assert_int_equal(got.nproviders, 3);
    assert_string_equal(got.providers[0].api_key, "sk-from-env");
    assert_string_equal(got.providers[1].api_key, "sk-from-file");
    assert_null(got.providers[2].api_key);
    assert_string_equal(got.providers[0].headers[0], "X-Quote: a \"b\" \\ c");
    assert_int_equal(got.no_secrets, 0);
    config_free(&got);
    /* without flags: the very same configuration (dumps, keys masked, equal) */
    snap = config_snapshot(&orig, &len);
    assert_int_equal(config_load_snapshot(&got, snap, len, NULL, err, sizeof err), 0);
    config_snapshot_free(snap, len);
    char *d1 = config_dump(&orig), *d2 = config_dump(&got);
    assert_string_equal(d1, d2);
    free(d1);
    free(d2);
    config_free(&orig);
    config_free(&got);
    free(path);
}

static void test_default_provider_key_from_snapshot(void **state) {
    (void)state;
    setenv("OPENAI_API_KEY", "sk-default", 1);
    config orig, got;
    assert_int_equal(config_load(&orig, NULL, err, sizeof err), 0);
    size_t len;
    char *snap = config_snapshot(&orig, &len);
    assert_non_null(strstr(snap, "\"file\":null"));
    /* a different key in the worker's environment is not used */
    setenv("OPENAI_API_KEY", "sk-other", 1);
    assert_int_equal(config_load_snapshot(&got, snap, len, NULL, err, sizeof err), 0);
    assert_null(got.file);
    assert_string_equal(got.providers[0].name, "default");
    assert_string_equal(got.providers[0].api_key, "sk-default");
    /* and none in the snapshot means none, whatever the environment says */
    config_snapshot_free(snap, len);
    config_free(&got);
    xfree_secret(orig.providers[0].api_key);
    orig.providers[0].api_key = NULL;
    snap = config_snapshot(&orig, &len);
    assert_int_equal(config_load_snapshot(&got, snap, len, NULL, err, sizeof err), 0);
    assert_null(got.providers[0].api_key);
    config_snapshot_free(snap, len);
    config_free(&got);
    config_free(&orig);
}

static void test_bad_snapshots(void **state) {
    (void)state;
    static const char *bad[] = {
        "",
        "{not json",
        "[1]",
        "{\"version\":2,\"file\":null,\"text\":\"\",\"keys\":{}}",
        "{\"version\":1,\"file\":null,\"keys\":{}}",
        "{\"version\":1,\"file\":null,\"text\":\"\",\"keys\":{}} trailing",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        config c;
        err[0] = '\0';
        if (config_load_snapshot(&c, bad[i], strlen(bad[i]), NULL, err, sizeof err) != -1 ||
            !strstr(err, "config snapshot"))
            fail_msg("snapshot %s: err=\"%s\"", bad[i], err);
    }
    /* a snapshot whose text is no longer valid names its file */
    const char *s = "{\"version\":1,\"file\":\"/etc/x.json\",\"text\":\"{\\\"wrokers\\\": 1}\",\"keys\":{}}";
    config c;
    assert_int_equal(config_load_snapshot(&c, s, strlen(s), NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "/etc/x.json"));
    assert_non_null(strstr(err, "wrokers"));
    /* a key with a line break would split an HTTP header */
    const char *k = "{\"version\":1,\"file\":null,\"text\":\"\",\"keys\":{\"default\":\"a\\nb\"}}";
    assert_int_equal(config_load_snapshot(&c, k, strlen(k), NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "control characters"));
    assert_null(strstr(err, "a\nb"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_without_file_or_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_provider_key_from_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_snapshots, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

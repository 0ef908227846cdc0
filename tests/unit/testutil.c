/* testutil.c — a temporary directory, files in it, a clean environment,
 * stderr captured: see testutil.h. */
#include "tests/unit/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "common/buf.h"

static char tu_dir[96];
static FILE *tu_saved_stderr;
static char *tu_captured;
static size_t tu_captured_len;

const char *testutil_tmpdir(const char *name) {
    snprintf(tu_dir, sizeof tu_dir, "/tmp/chatq-test-%s-XXXXXX", name);
    return mkdtemp(tu_dir);
}

int testutil_tmpdir_remove(void) {
    char *cmd = xasprintf("rm -rf '%s'", tu_dir);
    int rc = system(cmd);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

char *testutil_path(const char *name) { return xasprintf("%s/%s", tu_dir, name); }

char *testutil_write_file(const char *name, const char *text, size_t len) {
    char *path = testutil_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

void testutil_clear_config_env(const char *extra) {
    static const char *vars[] = {"CHATQ_CONFIG",    "CHATQ_REDIS_URL", "CHATQ_PREFIX",
                                 "OPENAI_BASE_URL", "OPENAI_API_KEY",  "CREDENTIALS_DIRECTORY"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
    if (extra) unsetenv(extra);
}

void testutil_capture_begin(void) {
    fflush(stderr);
    tu_saved_stderr = stderr;
    stderr = open_memstream(&tu_captured, &tu_captured_len);
    assert_non_null(stderr);
}

char *testutil_capture_end(void) {
    fclose(stderr);
    stderr = tu_saved_stderr;
    return tu_captured;
}

/* testutil.h — what several unit tests need: a temporary directory of their
 * own, files written into it, an environment without the config's
 * variables, and what the code under test prints on stderr.
 *
 * One directory at a time, made by testutil_tmpdir() in a cmocka setup
 * function and removed by testutil_tmpdir_remove() in the teardown.
 *
 * stderr is captured by swapping the stdio stream `stderr` for a memory
 * stream, not by redirecting fd 2: what the code under test prints is
 * captured, while a sanitizer's report (written to fd 2 directly) still
 * reaches the terminal if the test dies. */
#ifndef CHATQ_TESTUTIL_H
#define CHATQ_TESTUTIL_H

#include <stddef.h>

/* Makes /tmp/chatq-test-<name>-XXXXXX. Returns its path (static storage),
 * or NULL when it cannot be made. */
const char *testutil_tmpdir(const char *name);

/* Removes the directory and all in it. Returns 0, or -1. */
int testutil_tmpdir_remove(void);

/* The path of name in the directory (caller frees). */
char *testutil_path(const char *name);

/* Writes len bytes of text to the file name in the directory, replacing
 * it; returns its path (caller frees). Fails the test when it cannot. */
char *testutil_write_file(const char *name, const char *text, size_t len);

/* Unsets the environment variables the config reads (CHATQ_CONFIG,
 * CHATQ_REDIS_URL, ...) and extra, a test's own (may be NULL). */
void testutil_clear_config_env(const char *extra);

/* Starts capturing stderr. */
void testutil_capture_begin(void);

/* Ends the capture: what was printed since testutil_capture_begin(), as a
 * string (caller frees). */
char *testutil_capture_end(void);

#endif

/* test_jsonl.c — the bounded line reader of cli/jsonl.c: line boundaries
 * (a last line without '\n', empty lines, lines across chunks), line
 * numbers and offsets, over-long lines dropped but counted, starting at an
 * offset, the file hash, and a read error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/jsonl.h"
#include "common/buf.h"
#include "tests/unit/testutil.h"

static int setup(void **state) {
    (void)state;
    return testutil_tmpdir("jsonl") ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return testutil_tmpdir_remove();
}

/* A descriptor open on a new file holding len bytes of text. */
static int open_text(const char *text, size_t len) {
    char *path = testutil_path("f");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    free(path);
    return fd;
}

/* Reads the next line and checks it. */
static void expect_line(jsonl_reader *r, const char *text, long long lineno, long long off,
                        int has_nl) {
    assert_int_equal(jsonl_next(r), 1);
    assert_int_equal(r->line.len, strlen(text));
    assert_string_equal(buf_cstr(&r->line), text);
    assert_int_equal(r->lineno, lineno);
    assert_int_equal(r->line_off, off);
    assert_int_equal(r->line_len, (long long)strlen(text));
    assert_int_equal(r->has_nl, has_nl);
    assert_false(r->too_long);
}

static void test_fnv_vectors(void **state) {
    (void)state;
    /* The published FNV-1a 64-bit values. */
    assert_true(jsonl_fnv(JSONL_FNV_INIT, "", 0) == 0xcbf29ce484222325ULL);
    assert_true(jsonl_fnv(JSONL_FNV_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(jsonl_fnv(JSONL_FNV_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
    /* It continues: hashing in pieces is hashing the whole. */
    assert_true(jsonl_fnv(jsonl_fnv(JSONL_FNV_INIT, "foo", 3), "bar", 3) ==
                0x85944171f73967e8ULL);
}

static void test_lines_and_offsets(void **state) {
    (void)state;
    const char *text = "{\"a\":1}\n\nxy\r\nlast";
    int fd = open_text(text, strlen(text));
    jsonl_reader r;
    jsonl_init(&r, fd, 0, 1, 1000);
    expect_line(&r, "{\"a\":1}", 1, 0, 1);
    expect_line(&r, "", 2, 8, 1);            /* an empty line is a line */
    expect_line(&r, "xy\r", 3, 9, 1);        /* '\r' is the caller's business */
    expect_line(&r, "last", 4, 13, 0);       /* no '\n' at the end */
    assert_int_equal(jsonl_next(&r), 0);
    assert_int_equal(jsonl_next(&r), 0);     /* and stays at the end */
    assert_int_equal(r.lineno, 4);
    assert_int_equal(r.off, (long long)strlen(text));
    jsonl_free(&r);
    close(fd);
}

static void test_empty_file_has_no_line(void **state) {
    (void)state;
    int fd = open_text("", 0);
    jsonl_reader r;
    jsonl_init(&r, fd, 0, 1, 1000);
    assert_int_equal(jsonl_next(&r), 0);
    assert_int_equal(r.lineno, 0);
    jsonl_free(&r);
    close(fd);
    /* One '\n': one empty line. */
    fd = open_text("\n", 1);
    jsonl_init(&r, fd, 0, 1, 1000);
    expect_line(&r, "", 1, 0, 1);
    assert_int_equal(jsonl_next(&r), 0);
    jsonl_free(&r);
    close(fd);
}

/* Lines longer than a chunk, and a '\n' right at a chunk's edge. */
static void test_lines_across_chunks(void **state) {
    (void)state;
    buf b = {0};
    size_t first = JSONL_CHUNK - 1, second = 3 * JSONL_CHUNK + 17;
    for (size_t i = 0; i < first; i++) buf_putc(&b, (char)('a' + i % 26));
    buf_putc(&b, '\n'); /* the chunk's last byte */
    for (size_t i = 0; i < second; i++) buf_putc(&b, (char)('A' + i % 26));
    buf_puts(&b, "\nz\n");
    int fd = open_text(buf_cstr(&b), b.len);
    jsonl_reader r;
    jsonl_init(&r, fd, 0, 1, 1 << 20);
    assert_int_equal(jsonl_next(&r), 1);
    assert_int_equal(r.line.len, first);
    assert_memory_equal(r.line.data, b.data, first);
    assert_int_equal(jsonl_next(&r), 1);
    assert_int_equal(r.line.len, second);
    assert_int_equal(r.line_off, (long long)first + 1);
    assert_memory_equal(r.line.data, b.data + first + 1, second);
    expect_line(&r, "z", 3, (long long)(first + second + 2), 1);
    assert_int_equal(jsonl_next(&r), 0);
    jsonl_free(&r);
    close(fd);
    buf_free(&b);
}

static void test_too_long_is_counted_not_kept(void **state) {
    (void)state;
    buf b = {0};
    buf_puts(&b, "short\n");
    for (int i = 0; i < 2 * JSONL_CHUNK; i++) buf_putc(&b, 'x');
    buf_puts(&b, "\n0123456789\nend");
    int fd = open_text(buf_cstr(&b), b.len);
    jsonl_reader r;
    jsonl_init(&r, fd, 0, 1, 10);
    expect_line(&r, "short", 1, 0, 1);
    assert_int_equal(jsonl_next(&r), 1);
    assert_true(r.too_long);
    assert_int_equal(r.line.len, 0);
    assert_int_equal(r.line_len, 2 * JSONL_CHUNK);
    assert_int_equal(r.lineno, 2);
    assert_int_equal(r.has_nl, 1);
    expect_line(&r, "0123456789", 3, 6 + 2 * JSONL_CHUNK + 1, 1); /* exactly max_line: kept */
    expect_line(&r, "end", 4, 6 + 2 * JSONL_CHUNK + 12, 0);
    assert_int_equal(jsonl_next(&r), 0);
    jsonl_free(&r);
    close(fd);
    buf_free(&b);
}

/* Starting at a line's offset, numbering from that line; the descriptor's
 * own position is never used or moved. */
static void test_start_at_an_offset(void **state) {
    (void)state;
    const char *text = "one\ntwo\nthree\n";
    int fd = open_text(text, strlen(text));
    jsonl_reader r, r2;
    jsonl_init(&r, fd, 4, 2, 100);
    jsonl_init(&r2, fd, 0, 1, 100);
    expect_line(&r, "two", 2, 4, 1);
    expect_line(&r2, "one", 1, 0, 1); /* two readers, one descriptor */
    expect_line(&r, "three", 3, 8, 1);
    assert_int_equal(jsonl_next(&r), 0);
    expect_line(&r2, "two", 2, 4, 1);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)strlen(text));
    jsonl_free(&r);
    jsonl_free(&r2);
    close(fd);
}

static void test_hash_of_the_whole_file(void **state) {
    (void)state;
    buf b = {0};
    for (int i = 0; i < 20000; i++) buf_printf(&b, "{\"n\":%d}\n", i);
    buf_puts(&b, "tail");
    int fd = open_text(buf_cstr(&b), b.len);
    jsonl_reader r;
    jsonl_init(&r, fd, 0, 1, 100);
    r.hashing = 1;
    while (jsonl_next(&r) == 1) {}
    assert_int_equal(r.lineno, 20001);
    assert_true(r.hash == jsonl_fnv(JSONL_FNV_INIT, b.data, b.len));
    jsonl_free(&r);
    /* Without hashing, the hash is left alone. */
    jsonl_init(&r, fd, 0, 1, 100);
    while (jsonl_next(&r) == 1) {}
    assert_true(r.hash == JSONL_FNV_INIT);
    jsonl_free(&r);
    close(fd);
    buf_free(&b);
}

static void test_read_error(void **state) {
    (void)state;
    jsonl_reader r;
    int fd = open("/", O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    jsonl_init(&r, fd, 0, 1, 100);
    errno = 0;
    assert_int_equal(jsonl_next(&r), -1);
    assert_int_equal(errno, EISDIR);
    jsonl_free(&r);
    close(fd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fnv_vectors),
        cmocka_unit_test_setup_teardown(test_lines_and_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file_has_no_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lines_across_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_long_is_counted_not_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_at_an_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_of_the_whole_file, setup, teardown),
        cmocka_unit_test(test_read_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

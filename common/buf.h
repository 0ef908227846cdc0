/* buf.h — a growable byte buffer.
 *
 * A buf owns a heap block that holds `len` bytes and is always followed by a
 * NUL, so its data can be used as a C string when it holds text. The zero
 * value ({0}) is an empty buffer; buf_free() releases the block.
 * Allocation failure aborts the process: chatq cannot do anything sensible
 * without memory, and checking every append would hide the real logic. */
#ifndef CHATQ_BUF_H
#define CHATQ_BUF_H

#include <stddef.h>

typedef struct buf {
    char *data;   /* NUL-terminated; NULL while nothing was ever appended */
    size_t len;
    size_t cap;
} buf;

void buf_append(buf *b, const void *p, size_t n);
void buf_puts(buf *b, const char *s);
void buf_putc(buf *b, char c);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included; bytes that are not
 * valid UTF-8 become U+FFFD, so the result is always valid JSON text. */
void buf_json_str(buf *b, const char *s, size_t n);
void buf_reset(buf *b);              /* len = 0, keeps the block */
char *buf_steal(buf *b);             /* returns the block (never NULL), b becomes empty */
void buf_free(buf *b);
const char *buf_cstr(const buf *b);  /* "" for an empty buffer */

/* Allocation helpers that abort on failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Overwrites the string s (a password, an API key) with zeros, then frees
 * it, so the secret does not linger in freed memory. NULL is allowed. */
void xfree_secret(char *s);
/* Writes the message into err (when err is given) and returns -1, so error
 * paths read `return buf_err(err, errlen, "...", ...)`. */
int buf_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

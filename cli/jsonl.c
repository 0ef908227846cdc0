/* jsonl.c — the bounded line reader of jsonl.h.
 *
 * The chunk is refilled with pread() at `off + (len - pos)`, the offset just
 * past what it holds, so the reader keeps no state in the descriptor. Lines
 * are found with memchr() and appended to `line` piecewise, since a line
 * may span any number of chunks. */
#include "cli/jsonl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t jsonl_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void jsonl_init(jsonl_reader *r, int fd, long long off, long long first_lineno,
                size_t max_line) {
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->chunk = xmalloc(JSONL_CHUNK);
    r->off = off;
    r->max_line = max_line;
    r->hash = JSONL_FNV_INIT;
    r->lineno = first_lineno - 1;
}

void jsonl_free(jsonl_reader *r) {
    free(r->chunk);
    r->chunk = NULL;
    buf_free(&r->line);
}

/* Refills an empty chunk: 1 with bytes, 0 at the end, -1 on error. */
static int jsonl_fill(jsonl_reader *r) {
    ssize_t n;
    do {
        n = pread(r->fd, r->chunk, JSONL_CHUNK, (off_t)r->off);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    r->pos = 0;
    r->len = (size_t)n;
    if (r->hashing) r->hash = jsonl_fnv(r->hash, r->chunk, r->len);
    return n > 0;
}

/* Appends n bytes of the current line, or drops them once it is too long. */
static void jsonl_take(jsonl_reader *r, const char *p, size_t n) {
    r->line_len += (long long)n;
    if (r->too_long) return;
    if ((unsigned long long)r->line_len > r->max_line) {
        r->too_long = 1;
        buf_free(&r->line); /* give the memory back at once */
        return;
    }
    buf_append(&r->line, p, n);
}

int jsonl_next(jsonl_reader *r) {
    buf_reset(&r->line);
    r->line_off = r->off;
    r->line_len = 0;
    r->has_nl = r->too_long = 0;
    for (;;) {
        if (r->pos == r->len) {
            int rc = jsonl_fill(r);
            if (rc < 0) return -1;
            if (rc == 0) {
                if (r->line_len == 0) return 0;
                r->lineno++;
                return 1; /* a last line without '\n' */
            }
        }
        char *start = r->chunk + r->pos;
        char *nl = memchr(start, '\n', r->len - r->pos);
        size_t n = nl ? (size_t)(nl - start) : r->len - r->pos;
        jsonl_take(r, start, n);
        r->pos += n;
        r->off += (long long)n;
        if (nl) {
            r->pos++;
            r->off++;
            r->has_nl = 1;
            r->lineno++;
            return 1;
        }
    }
}

/* jsonl.h — reading a file one line at a time with bounded memory, for
 * `chatq batch` (its input, and its output files when it resumes).
 *
 * The reader reads with pread() from a given offset in chunks of
 * JSONL_CHUNK bytes, so it never moves the descriptor's file position and
 * several readers can share one descriptor. A line is the bytes up to a
 * '\n' (not included); a last line without '\n' is a line too, with has_nl
 * 0, and an empty file has no line at all. A line longer than `max_line`
 * bytes is read through but not kept: too_long is set, `line` is empty and
 * line_len still counts its bytes, so one huge line cannot grow the memory.
 *
 * With `hashing` set, every byte read goes into a 64-bit FNV-1a hash of the
 * file (`hash`), which identifies the input of a batch across runs.
 *
 * Ownership: the descriptor is borrowed; jsonl_free() releases the chunk
 * and the line buffer. */
#ifndef CHATQ_CLI_JSONL_H
#define CHATQ_CLI_JSONL_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define JSONL_CHUNK 65536
#define JSONL_FNV_INIT 0xcbf29ce484222325ULL

typedef struct jsonl_reader {
    int fd;
    char *chunk;          /* JSONL_CHUNK bytes */
    size_t pos, len;      /* unread bytes: chunk[pos..len) */
    long long off;        /* file offset of chunk[pos] */
    size_t max_line;
    int hashing;
    uint64_t hash;        /* FNV-1a of the bytes read so far (when hashing) */
    /* the current line */
    buf line;             /* its bytes without the '\n'; empty when too_long */
    long long line_off;   /* file offset of its first byte */
    long long line_len;   /* its length in bytes, '\n' not counted */
    int has_nl;
    int too_long;
    long long lineno;     /* 1-based number of the current line */
} jsonl_reader;

/* Starts reading at file offset `off`, which is the start of line
 * `first_lineno` (1 for the file's start). */
void jsonl_init(jsonl_reader *r, int fd, long long off, long long first_lineno,
                size_t max_line);
/* Reads the next line: 1 when there is one, 0 at the end of the file, -1 on
 * a read error (errno is set). */
int jsonl_next(jsonl_reader *r);
void jsonl_free(jsonl_reader *r);

/* 64-bit FNV-1a of n bytes, continuing from h (JSONL_FNV_INIT to start). */
uint64_t jsonl_fnv(uint64_t h, const void *p, size_t n);

#endif

/* batchin.h — the input file of `chatq batch`: checking every line, and
 * turning a line into the job that is queued for it.
 *
 * A line is an OpenAI Batch API request: a JSON object with custom_id (a
 * non-empty string, unique in the file), method "POST", url
 * "/v1/chat/completions" and body (docs/protocol.md §4), plus any other job field of
 * docs/protocol.md §4 except id and reply_to, which the batch sets. Its job is the line
 * with four members added: "id" "<batch id>-<line number>", "reply_to" (the
 * batch's output list), "stream" false (a batch never streams) and, with
 * --tenant, "tenant"; the job must then pass job_parse() with the
 * configured max_job_bytes, so a line the workers would refuse is refused
 * here, with their message.
 *
 * batchin_validate() reads the whole file as a stream: it keeps the
 * custom_id set (idset.h), one file offset every BATCHIN_MARK_EVERY lines
 * (to find a line again without reading from the start), the file's hash
 * and size, and, for pricing the answers, two bytes per line: the index of
 * the line's (provider, model) pair in a table of the distinct pairs (at
 * most BATCHIN_MAX_MODELS; lines past that are not priced). Nothing else
 * grows with the file. It prints every bad line, "chatq: PATH:N: message",
 * up to BATCHIN_MAX_REPORTED, then how many more there were.
 *
 * Ownership: the batchin owns its descriptor, marks and model tables
 * (batchin_close());
 * `path`, `batch_id`, `reply_to` and `tenant` are borrowed. */
#ifndef CHATQ_CLI_BATCHIN_H
#define CHATQ_CLI_BATCHIN_H

#include <stddef.h>
#include <stdint.h>

#include "cli/jsonl.h"

#define BATCHIN_MARK_EVERY 64
#define BATCHIN_MAX_REPORTED 100
#define BATCHIN_MAX_MODELS 65535

typedef struct batchin {
    const char *path;       /* as given, for messages */
    int fd;
    long long size;         /* bytes read by batchin_validate() */
    long long mtime_ns;     /* the file's modification time when opened */
    uint64_t hash;          /* FNV-1a of those bytes */
    long long lines;        /* number of lines, after batchin_validate() */
    long long *marks;       /* marks[k]: offset of line k * BATCHIN_MARK_EVERY + 1 */
    size_t nmarks, capmarks;
    size_t max_job_bytes;
    size_t max_line;        /* longer lines are refused unread */
    const char *batch_id;   /* what batchin_build() puts in */
    const char *reply_to;
    const char *tenant;     /* NULL: the line's own, if any */
    /* after batchin_validate(): */
    uint16_t *model_of;     /* [lineno - 1]: index in the tables below, 0 = none */
    char **models;          /* [1..nmodels]: body.model of the pair */
    char **providers;       /* [1..nmodels]: the line's "provider", NULL = routed */
    size_t nmodels;
} batchin;

/* What batchin_build() read from a line, each malloc'd or NULL. */
typedef struct batchin_info {
    char *custom_id;        /* may hold NUL bytes: custom_id_len counts */
    size_t custom_id_len;
    char *model;            /* set only when the line is good */
    char *provider;
} batchin_info;

/* Opens the file (a regular file: it is read twice). Returns 0, or -1
 * after printing why. */
int batchin_open(batchin *in, const char *path, size_t max_job_bytes);

/* Checks every line. Returns 0 when all are good (size, hash, lines and
 * marks are set), -1 after printing the bad lines or a read error. */
int batchin_validate(batchin *in);

/* The job text of line `lineno` (malloc'd), or NULL with a message in err.
 * When info is not NULL it is filled (batchin_info_free()): the custom_id
 * whenever it could be read, even from a bad line. */
char *batchin_build(const batchin *in, const char *line, size_t len, long long lineno,
                    char *err, size_t errlen, batchin_info *info);
void batchin_info_free(batchin_info *info);

/* Sets r up so that its next jsonl_next() returns line `lineno` (which
 * must be at most in->lines + 1). Returns 0, or -1 on a read error. */
int batchin_seek(const batchin *in, jsonl_reader *r, long long lineno);

/* 1 when the file still has the size batchin_validate() read and the
 * modification time it had when opened. */
int batchin_unchanged(const batchin *in);

void batchin_close(batchin *in);

#endif

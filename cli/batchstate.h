/* batchstate.h — the state file of a `chatq batch` run, OUT.chatq-batch.
 *
 * It is written once, before the first job is queued, and removed when
 * every line is answered; while it exists the batch is unfinished and only
 * `--resume` may touch OUT. It holds what a later run needs to continue
 * the same batch: the batch id (the jobs' ids and the Redis keys derive
 * from it), the identity of the input (size, line count and a 64-bit hash
 * of its bytes, so a changed file is refused), and the settings that shaped
 * the queued jobs (queue, tenant, errors file, key prefix). How far the
 * submission got is not in it: that is counted in Redis, atomically with
 * each push (batch_cmd.c), so the file never has to be rewritten.
 *
 * The file is JSON, written to a temporary name, fsync'd and renamed, and
 * the directory fsync'd, so it is either absent or whole.
 *
 * Ownership: a batchstate owns its strings (batchstate_free()). */
#ifndef CHATQ_CLI_BATCHSTATE_H
#define CHATQ_CLI_BATCHSTATE_H

#include <stdint.h>

#define BATCHSTATE_SUFFIX ".chatq-batch"

typedef struct batchstate {
    char *batch_id;     /* "b" + 16 hex digits */
    char *input;        /* absolute path, for messages */
    long long input_size;
    uint64_t input_hash;
    long long lines;
    char *output;       /* absolute paths */
    char *errors;       /* NULL: no errors file */
    char *queue;
    char *tenant;       /* NULL: none given */
    char *prefix;
    long long created_at; /* unix ms */
} batchstate;

/* A fresh random batch id into out[18]. */
void batchstate_new_id(char out[18]);

/* Writes the state atomically. Returns 0, or -1 after printing why. */
int batchstate_write(const char *path, const batchstate *st);
/* Reads the state. Returns 0, or -1 after printing why. */
int batchstate_read(const char *path, batchstate *st);
/* Removes the file (and makes that durable). Returns 0 or -1 (printed). */
int batchstate_remove(const char *path);

/* path made absolute against the working directory (malloc'd). */
char *batchstate_abspath(const char *path);

void batchstate_free(batchstate *st);

#endif

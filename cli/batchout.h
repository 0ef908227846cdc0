/* batchout.h — the output files of `chatq batch`: which lines are written
 * already, writing the new ones, making them durable, and the totals.
 *
 * Output lines (docs/protocol.md §6) come from the batch's reply list in Redis. Each
 * one names its job, "<batch id>-<line number>", so the set of lines
 * written is a bitmap of one bit per input line. batchout_take() writes a
 * line whose bit is clear and drops one whose bit is set, so a line read
 * twice from Redis (after a crash) is written once. A line must be strict
 * JSON (RFC 8259, valid UTF-8, as every worker writes it) within bounds on
 * what parsing it costs; anything else in the list is a stray, never
 * written (see batchout.c). A line is "failed" when
 * its error is not null or its response is missing or has a status code
 * below 100 or from 400; with an errors file, failed lines go there and the
 * others to the output file; without one, all go to the output file.
 *
 * Opening with `resume` reads both files back: every complete line of the
 * batch sets its bit and counts in the totals. A crash can leave only the
 * tail of a file damaged (what was written after the last
 * batchout_sync()): the file is cut at the first line that is incomplete
 * or not JSON; the lines lost that way are still in Redis (see batch_cmd.c)
 * and are written again. Without `resume` the files are emptied.
 *
 * Each file is locked (flock) while open, so two runs cannot write the
 * same output at once.
 *
 * Cost: the answer's usage is priced as the workers price it
 * (usage_cost_micro_usd()), at the price of the line's model, looked up by
 * the caller once per distinct (provider, model) of the input: `model_of`
 * gives a line's pair, `prices` the pair's price (NULL: none known). A
 * fallback model that served a line is not known here; the line is priced
 * as the model it asked for. `chatq usage` has the workers' exact figures.
 *
 * Ownership: the batchout owns its descriptors, streams and bitmap
 * (batchout_close()); the paths, the batch id, model_of and prices are
 * borrowed. */
#ifndef CHATQ_CLI_BATCHOUT_H
#define CHATQ_CLI_BATCHOUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/config.h"

typedef struct batchout {
    const char *path, *err_path; /* err_path NULL: one file */
    int fd, err_fd;              /* err_fd -1 without an errors file */
    FILE *f, *errf;
    const char *batch_id;
    long long total;             /* input lines */
    unsigned char *seen;         /* bit per input line: its output is written */
    long long done;              /* bits set */
    long long failed;
    long long out_lines, err_lines; /* lines of this batch in each file */
    long long strays;            /* lines dropped that were not of this batch */
    long long prompt_tokens, completion_tokens, total_tokens, cached_tokens;
    const uint16_t *model_of;    /* [lineno - 1] -> index in prices (borrowed) */
    const price_cfg *const *prices; /* (borrowed) */
    long long cost_micro_usd;    /* of the lines with a price */
    long long priced, unpriced;  /* lines with usage, with and without a price */
    int dirty;                   /* written since the last sync */
} batchout;

/* Opens (creating) the files. in_fd is the input's descriptor, which
 * neither may be. model_of and prices as above (both NULL: no pricing).
 * Returns 0, or -1 after printing why. */
int batchout_open(batchout *o, const char *path, const char *err_path, int resume,
                  const char *batch_id, long long total, int in_fd, const uint16_t *model_of,
                  const price_cfg *const *prices);

/* One output line from Redis: 1 written, 0 dropped (written before, or
 * not a line of this batch: strays counts those), -1 on a write error
 * (printed). */
int batchout_take(batchout *o, const char *line, size_t len);

/* Flushes both files to disk (fsync). Returns 0, or -1 after printing. */
int batchout_sync(batchout *o);

/* 1 when the output line of input line `lineno` is written. */
int batchout_has(const batchout *o, long long lineno);

void batchout_close(batchout *o);

#endif

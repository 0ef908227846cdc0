/* batchout.c — the output files of `chatq batch`; see batchout.h.
 *
 * Files are opened O_APPEND, so that after the damaged tail of a resumed
 * file is cut off with ftruncate() every write goes to the new end, and
 * wrapped in a stdio stream for buffering; batchout_sync() is the only
 * point where data is known to be on disk.
 *
 * An output line is parsed whole (json-c) to find its job id, outcome and
 * usage: the id's position in the line is not fixed (the workers write it
 * first, but the poison-pill line of a dead worker is encoded by Redis'
 * cjson, in no particular order). */
#include "cli/batchout.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/jsonl.h"
#include "common/buf.h"
#include "common/jsonparse.h"
#include "common/usage.h"

/* Reading a file back: an output line is as long as the answer it holds. */
#define BATCHOUT_MAX_LINE ((size_t)1 << 40)

/* What an output line may hold. A worker writes strict JSON (RFC 8259,
 * valid UTF-8) around an upstream body it took only within its own bounds
 * (1,000,000 values, 250,000 objects and arrays, nesting 32:
 * docs/reliability.md); these leave room for the line around it. Anything
 * else in the reply list is no worker's line: written as it came, lenient
 * JSON would make OUT unreadable to a strict reader, and a json-c bomb
 * ("[[],[],...]": about 150 bytes per 3 of text) would blow up the memory,
 * so it is refused before json-c builds anything. */
static const strictjson_limits batchout_limits = {1100000, 300000, 64};

typedef struct batchout_line {
    long long lineno;
    int failed;
    int has_usage;
    usage_counts u;
} batchout_line;

/* ---- reading one output line ---- */

static json_object *batchout_get(json_object *o, const char *key, json_type type) {
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
        return NULL;
    return v;
}

/* The line number in a job id "<batch id>-<n>", or 0 when the id is not
 * one of this batch's. */
static long long batchout_lineno(const batchout *o, const char *id) {
    size_t n = strlen(o->batch_id);
    if (strncmp(id, o->batch_id, n) || id[n] != '-') return 0;
    const char *d = id + n + 1;
    long long v = 0;
    if (*d < '1' || *d > '9') return 0;
    for (; *d; d++) {
        if (*d < '0' || *d > '9' || v > o->total) return 0;
        v = v * 10 + (*d - '0');
    }
    return v <= o->total ? v : 0;
}

/* Parses s as strict JSON within batchout_limits. Returns 0 with *out
 * set, or -1. */
static int batchout_json(const char *s, size_t len, json_object **out) {
    json_tokener *tok = json_tokener_new_ex(batchout_limits.max_depth + 1);
    if (!tok) return -1;
    int rc = jsonparse_strict(tok, s, len, &batchout_limits, 0, out, NULL, NULL, 0);
    json_tokener_free(tok);
    return rc == STRICTJSON_OK ? 0 : -1;
}

/* Parses an output line of this batch. Returns 0, -1 when it is JSON but
 * not one of this batch's lines, -2 when it is not strict JSON within the
 * limits (or holds a raw newline, which a JSONL line cannot). */
static int batchout_parse(const batchout *o, const char *s, size_t len, batchout_line *l) {
    json_object *root = NULL, *id, *resp, *code, *usage;
    memset(l, 0, sizeof *l);
    if (memchr(s, '\n', len) || batchout_json(s, len, &root) < 0) return -2;
    id = batchout_get(root, "id", json_type_string);
    l->lineno = id ? batchout_lineno(o, json_object_get_string(id)) : 0;
    if (!l->lineno) {
        json_object_put(root);
        return -1;
    }
    resp = batchout_get(root, "response", json_type_object);
    code = batchout_get(resp, "status_code", json_type_int);
    json_object *err = NULL;
    int has_err = json_object_object_get_ex(root, "error", &err) && err != NULL;
    long long status = code ? (long long)json_object_get_int64(code) : 0;
    l->failed = has_err || status < 100 || status >= 400;
    usage = batchout_get(batchout_get(resp, "body", json_type_object), "usage", json_type_object);
    l->has_usage = usage != NULL;
    usage_extract(usage, &l->u);
    json_object_put(root);
    return 0;
}

/* ---- the bitmap and totals ---- */

int batchout_has(const batchout *o, long long lineno) {
    if (lineno < 1 || lineno > o->total) return 0;
    return (o->seen[(lineno - 1) >> 3] >> ((lineno - 1) & 7)) & 1;
}

/* *sum += v for counts (>= 0), saturating at LLONG_MAX: each line's counts
 * are at most 1e12 (usage_extract()), but a batch may have more than the
 * 9.2 million lines that take such a sum past INT64_MAX. */
static void batchout_add(long long *sum, long long v) {
    *sum = *sum > LLONG_MAX - v ? LLONG_MAX : *sum + v;
}

/* Adds the cost of a line's usage, when its model has a price. */
static void batchout_price(batchout *o, const batchout_line *l) {
    const price_cfg *p = NULL;
    if (o->model_of && o->prices) p = o->prices[o->model_of[l->lineno - 1]];
    if (!p) {
        o->unpriced++;
        return;
    }
    o->priced++;
    batchout_add(&o->cost_micro_usd,
                 usage_cost_micro_usd(&l->u, p->input, p->cached_input, p->output));
}

/* Records a line as written. Returns 0, or -1 when it was already. */
static int batchout_count(batchout *o, const batchout_line *l, int to_err) {
    if (batchout_has(o, l->lineno)) return -1;
    o->seen[(l->lineno - 1) >> 3] |= (unsigned char)(1u << ((l->lineno - 1) & 7));
    o->done++;
    o->failed += l->failed;
    if (to_err)
        o->err_lines++;
    else
        o->out_lines++;
    batchout_add(&o->prompt_tokens, l->u.prompt);
    batchout_add(&o->completion_tokens, l->u.completion);
    batchout_add(&o->total_tokens, l->u.total);
    batchout_add(&o->cached_tokens, l->u.cached);
    if (l->has_usage) batchout_price(o, l);
    return 0;
}

/* ---- opening ---- */

/* Opens and locks one file. Returns the descriptor or -1 (printed). */
static int batchout_open_file(const char *path, int in_fd, int other_fd) {
    struct stat st, in_st, other_st;
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0) {
        cli_fail("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    const char *why = NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (fstat(in_fd, &in_st) == 0 && st.st_dev == in_st.st_dev && st.st_ino == in_st.st_ino)
        why = "it is the input file";
    else if (other_fd >= 0 && fstat(other_fd, &other_st) == 0 && st.st_dev == other_st.st_dev &&
             st.st_ino == other_st.st_ino)
        why = "the output and the errors file must differ";
    else if (flock(fd, LOCK_EX | LOCK_NB) < 0)
        why = errno == EWOULDBLOCK ? "another chatq batch is writing it" : strerror(errno);
    if (why) {
        cli_fail("%s: %s", path, why);
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads a file back (resume): counts its lines, cuts a damaged tail.
 * Returns 0 or -1 (printed). */
static int batchout_scan(batchout *o, int fd, const char *path, int to_err) {
    jsonl_reader r;
    batchout_line l;
    int rc;
    jsonl_init(&r, fd, 0, 1, BATCHOUT_MAX_LINE);
    while ((rc = jsonl_next(&r)) == 1) {
        int p = r.has_nl ? batchout_parse(o, buf_cstr(&r.line), r.line.len, &l) : -2;
        if (p == -2) break;
        if (p == 0) batchout_count(o, &l, to_err);
    }
    if (rc < 0) {
        cli_fail("cannot read %s: %s", path, strerror(errno));
    } else if (rc == 1) { /* cut at the damaged line */
        if (ftruncate(fd, (off_t)r.line_off) < 0) {
            cli_fail("cannot truncate %s: %s", path, strerror(errno));
            rc = -1;
        } else {
            fprintf(stderr, "chatq: %s: cut an incomplete line at byte %lld (it is written again)\n",
                    path, r.line_off);
        }
    }
    jsonl_free(&r);
    return rc < 0 ? -1 : 0;
}

/* Prepares one opened file: emptied, or read back. */
static int batchout_prepare(batchout *o, int fd, const char *path, int resume, int to_err) {
    if (resume) return batchout_scan(o, fd, path, to_err);
    if (ftruncate(fd, 0) < 0) {
        cli_fail("cannot truncate %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static FILE *batchout_stream(int fd, const char *path) {
    FILE *f = fdopen(fd, "a");
    if (!f) cli_fail("%s: %s", path, strerror(errno));
    return f;
}

int batchout_open(batchout *o, const char *path, const char *err_path, int resume,
                  const char *batch_id, long long total, int in_fd, const uint16_t *model_of,
                  const price_cfg *const *prices) {
    memset(o, 0, sizeof *o);
    o->model_of = model_of;
    o->prices = prices;
    o->path = path;
    o->err_path = err_path;
    o->batch_id = batch_id;
    o->total = total;
    o->fd = o->err_fd = -1;
    o->seen = xcalloc((size_t)(total + 7) / 8, 1);
    if ((o->fd = batchout_open_file(path, in_fd, -1)) < 0) goto fail;
    if (err_path && (o->err_fd = batchout_open_file(err_path, in_fd, o->fd)) < 0) goto fail;
    if (batchout_prepare(o, o->fd, path, resume, 0) < 0) goto fail;
    if (err_path && batchout_prepare(o, o->err_fd, err_path, resume, 1) < 0) goto fail;
    if (!(o->f = batchout_stream(o->fd, path))) goto fail;
    if (err_path && !(o->errf = batchout_stream(o->err_fd, err_path))) goto fail;
    return 0;
fail:
    batchout_close(o);
    return -1;
}

void batchout_close(batchout *o) {
    if (o->f)
        fclose(o->f); /* closes fd too */
    else if (o->fd >= 0)
        close(o->fd);
    if (o->errf)
        fclose(o->errf);
    else if (o->err_fd >= 0)
        close(o->err_fd);
    o->f = o->errf = NULL;
    o->fd = o->err_fd = -1;
    free(o->seen);
    o->seen = NULL;
}

/* ---- writing ---- */

int batchout_take(batchout *o, const char *line, size_t len) {
    batchout_line l;
    if (batchout_parse(o, line, len, &l) < 0) {
        o->strays++;
        return 0;
    }
    if (batchout_has(o, l.lineno)) return 0;
    int to_err = o->errf && l.failed;
    FILE *f = to_err ? o->errf : o->f;
    if (fwrite(line, 1, len, f) != len || putc('\n', f) == EOF) {
        cli_fail("cannot write %s: %s", to_err ? o->err_path : o->path, strerror(errno));
        return -1;
    }
    batchout_count(o, &l, to_err);
    o->dirty = 1;
    return 1;
}

static int batchout_sync_one(FILE *f, int fd, const char *path) {
    if (fflush(f) == EOF || fsync(fd) < 0) {
        cli_fail("cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int batchout_sync(batchout *o) {
    if (!o->dirty) return 0;
    if (batchout_sync_one(o->f, o->fd, o->path) < 0) return -1;
    if (o->errf && batchout_sync_one(o->errf, o->err_fd, o->err_path) < 0) return -1;
    o->dirty = 0;
    return 0;
}

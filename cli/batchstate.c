/* batchstate.c — the state file of `chatq batch`; see batchstate.h.
 *
 * Reading is strict: a file that is not a state file of this version, or
 * misses a field, is refused with a message naming it, rather than a batch
 * being resumed on a guess. */
#include "cli/batchstate.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/job.h"

#define BATCHSTATE_VERSION 1
#define BATCHSTATE_MAX_BYTES 65536

void batchstate_new_id(char out[18]) {
    char gen[32];
    job_generate_id(gen); /* "job-" + 24 random hex digits */
    out[0] = 'b';
    memcpy(out + 1, gen + 4, 16);
    out[17] = '\0';
}

char *batchstate_abspath(const char *path) {
    char cwd[PATH_MAX];
    if (path[0] == '/' || !getcwd(cwd, sizeof cwd)) return xstrdup(path);
    return xasprintf("%s/%s", cwd, path);
}

void batchstate_free(batchstate *st) {
    free(st->batch_id);
    free(st->input);
    free(st->output);
    free(st->errors);
    free(st->queue);
    free(st->tenant);
    free(st->prefix);
    memset(st, 0, sizeof *st);
}

/* ---- writing ---- */

static void batchstate_add_str(json_object *o, const char *key, const char *v) {
    json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

static char *batchstate_text(const batchstate *st) {
    char hash[17];
    json_object *o = json_object_new_object();
    snprintf(hash, sizeof hash, "%016" PRIx64, st->input_hash);
    json_object_object_add(o, "chatq_batch", json_object_new_int(BATCHSTATE_VERSION));
    batchstate_add_str(o, "batch_id", st->batch_id);
    batchstate_add_str(o, "input", st->input);
    json_object_object_add(o, "input_size", json_object_new_int64(st->input_size));
    batchstate_add_str(o, "input_hash", hash);
    json_object_object_add(o, "lines", json_object_new_int64(st->lines));
    batchstate_add_str(o, "output", st->output);
    batchstate_add_str(o, "errors", st->errors);
    batchstate_add_str(o, "queue", st->queue);
    batchstate_add_str(o, "tenant", st->tenant);
    batchstate_add_str(o, "prefix", st->prefix);
    json_object_object_add(o, "created_at", json_object_new_int64(st->created_at));
    char *text = xasprintf("%s\n", json_object_to_json_string_ext(
                                       o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                              JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return text;
}

/* fsync of the directory holding path, so a rename or unlink in it lasts. */
static int batchstate_sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = -1;
    if (fd >= 0) {
        rc = fsync(fd);
        close(fd);
    }
    free(dir);
    return rc;
}

static int batchstate_write_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int batchstate_write(const char *path, const batchstate *st) {
    char *tmp = xasprintf("%s.tmp", path), *text = batchstate_text(st);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666), rc = -1;
    if (fd < 0) {
        cli_fail("cannot create %s: %s", tmp, strerror(errno));
    } else if (batchstate_write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0) {
        cli_fail("cannot write %s: %s", tmp, strerror(errno));
    } else if (rename(tmp, path) < 0) {
        cli_fail("cannot rename %s to %s: %s", tmp, path, strerror(errno));
    } else if (batchstate_sync_dir(path) < 0) {
        cli_fail("cannot sync the directory of %s: %s", path, strerror(errno));
    } else {
        rc = 0;
    }
    if (fd >= 0) close(fd);
    if (rc < 0) unlink(tmp);
    free(tmp);
    free(text);
    return rc;
}

int batchstate_remove(const char *path) {
    if (unlink(path) < 0 && errno != ENOENT) {
        cli_fail("cannot remove %s: %s", path, strerror(errno));
        return -1;
    }
    batchstate_sync_dir(path); /* best effort: a leftover is only refused later */
    return 0;
}

/* ---- reading ---- */

/* A string field (NULL allowed when `nullable`). Returns 0 or -1. */
static int batchstate_get_str(json_object *o, const char *key, int nullable, char **out) {
    json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v)) return -1;
    if (!v) return nullable ? 0 : -1;
    if (!json_object_is_type(v, json_type_string)) return -1;
    *out = xstrdup(json_object_get_string(v));
    return 0;
}

static int batchstate_get_ll(json_object *o, const char *key, long long *out) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return -1;
    *out = (long long)json_object_get_int64(v);
    return *out >= 0 ? 0 : -1;
}

static int batchstate_valid_id(const char *id) {
    if (!id || strlen(id) != 17 || id[0] != 'b') return 0;
    for (int i = 1; i < 17; i++)
        if (!strchr("0123456789abcdef", id[i])) return 0;
    return 1;
}

/* Fills st from the parsed file; returns the name of the first bad field,
 * or NULL. */
static const char *batchstate_fields(json_object *o, batchstate *st) {
    long long version, hash_len;
    char *hash = NULL;
    if (batchstate_get_ll(o, "chatq_batch", &version) < 0 || version != BATCHSTATE_VERSION)
        return "chatq_batch";
    if (batchstate_get_str(o, "batch_id", 0, &st->batch_id) < 0 ||
        !batchstate_valid_id(st->batch_id))
        return "batch_id";
    if (batchstate_get_str(o, "input", 0, &st->input) < 0) return "input";
    if (batchstate_get_ll(o, "input_size", &st->input_size) < 0) return "input_size";
    if (batchstate_get_str(o, "input_hash", 0, &hash) < 0) return "input_hash";
    hash_len = (long long)strlen(hash);
    char *end;
    st->input_hash = strtoull(hash, &end, 16);
    int bad_hash = hash_len != 16 || *end;
    free(hash);
    if (bad_hash) return "input_hash";
    if (batchstate_get_ll(o, "lines", &st->lines) < 0) return "lines";
    if (batchstate_get_str(o, "output", 0, &st->output) < 0) return "output";
    if (batchstate_get_str(o, "errors", 1, &st->errors) < 0) return "errors";
    if (batchstate_get_str(o, "queue", 0, &st->queue) < 0) return "queue";
    if (batchstate_get_str(o, "tenant", 1, &st->tenant) < 0) return "tenant";
    if (batchstate_get_str(o, "prefix", 0, &st->prefix) < 0) return "prefix";
    if (batchstate_get_ll(o, "created_at", &st->created_at) < 0) return "created_at";
    return NULL;
}

static int batchstate_load_text(const char *path, buf *b) {
    FILE *f = fopen(path, "rb");
    char chunk[4096];
    size_t n;
    if (!f) {
        cli_fail("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b->len <= BATCHSTATE_MAX_BYTES)
        buf_append(b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        cli_fail("cannot read %s", path);
        return -1;
    }
    return 0;
}

int batchstate_read(const char *path, batchstate *st) {
    buf b = {0};
    json_object *o = NULL;
    memset(st, 0, sizeof *st);
    if (batchstate_load_text(path, &b) < 0) {
        buf_free(&b);
        return -1;
    }
    const char *bad = NULL;
    if (b.len > BATCHSTATE_MAX_BYTES || cli_json_parse(buf_cstr(&b), b.len, &o, NULL, 0) < 0 ||
        !json_object_is_type(o, json_type_object))
        bad = "";
    else
        bad = batchstate_fields(o, st);
    json_object_put(o);
    buf_free(&b);
    if (bad) {
        if (*bad)
            cli_fail("%s: not a chatq batch state file (field %s)", path, bad);
        else
            cli_fail("%s: not a chatq batch state file", path);
        batchstate_free(st);
        return -1;
    }
    return 0;
}

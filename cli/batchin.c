/* batchin.c — checking a batch input file and building its jobs; see
 * batchin.h.
 *
 * A line is parsed twice: job_parse() on the line itself (strict JSON, the
 * same parser as the workers; its verdict on the line is not used, since
 * the line's custom_id need not be a valid job id), then, once the batch
 * rules passed and the batch's members are added, job_parse() on the job
 * text that will be queued. Only the second verdict counts for docs/protocol.md §4, and
 * it sees exactly what the workers will see.
 *
 * Duplicate custom_ids: the set keeps hashes only; on a hash match the
 * earlier line is read again (found from the nearest mark) and its
 * custom_id compared, so a report of a duplicate is never a hash accident. */
#include "cli/batchin.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/idset.h"
#include "common/buf.h"
#include "common/job.h"

#define BATCHIN_ERR 320

int batchin_open(batchin *in, const char *path, size_t max_job_bytes) {
    struct stat st;
    memset(in, 0, sizeof *in);
    in->path = path;
    in->max_job_bytes = max_job_bytes;
    /* Room for a pretty-printed line; the real limit is on the job text. */
    in->max_line = max_job_bytes * 2 + 4096;
    in->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (in->fd < 0) {
        cli_fail("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(in->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        cli_fail("%s: not a regular file (a batch input is read more than once)", path);
        close(in->fd);
        in->fd = -1;
        return -1;
    }
    in->mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    return 0;
}

int batchin_unchanged(const batchin *in) {
    struct stat st;
    if (fstat(in->fd, &st) < 0) return 0;
    return (long long)st.st_size == in->size &&
           (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec == in->mtime_ns;
}

void batchin_close(batchin *in) {
    if (in->fd >= 0) close(in->fd);
    in->fd = -1;
    free(in->marks);
    in->marks = NULL;
    in->nmarks = in->capmarks = 0;
    for (size_t i = 1; i <= in->nmodels; i++) {
        free(in->models[i]);
        free(in->providers[i]);
    }
    free(in->models);
    free(in->providers);
    free(in->model_of);
    in->models = in->providers = NULL;
    in->model_of = NULL;
    in->nmodels = 0;
}

int batchin_seek(const batchin *in, jsonl_reader *r, long long lineno) {
    size_t k = (size_t)((lineno - 1) / BATCHIN_MARK_EVERY);
    if (k >= in->nmarks) { /* just past a last line that starts a new mark */
        jsonl_init(r, in->fd, in->size, in->lines + 1, in->max_line);
        return 0;
    }
    jsonl_init(r, in->fd, in->marks[k], (long long)k * BATCHIN_MARK_EVERY + 1, in->max_line);
    while (r->lineno + 1 < lineno) {
        if (jsonl_next(r) < 0) return -1;
    }
    return 0;
}

/* ---- one line ---- */

static int batchin_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r", s[i]) || !s[i]) return 0;
    return 1;
}

/* The rules of the Batch format that docs/protocol.md §4 leaves optional or that the
 * batch owns. Returns 0, or -1 with the message in err. */
static int batchin_batch_rules(json_object *root, char *err, size_t errlen) {
    json_object *v;
    if (!json_object_object_get_ex(root, "custom_id", &v)) {
        snprintf(err, errlen, "custom_id is required");
        return -1;
    }
    if (!json_object_is_type(v, json_type_string)) {
        snprintf(err, errlen, "custom_id must be a string, not %s",
                 json_type_to_name(json_object_get_type(v)));
        return -1;
    }
    if (!json_object_get_string_len(v)) {
        snprintf(err, errlen, "custom_id must not be empty");
        return -1;
    }
    if (!json_object_object_get_ex(root, "method", NULL)) {
        snprintf(err, errlen, "method is required (\"POST\")");
        return -1;
    }
    if (!json_object_object_get_ex(root, "url", NULL)) {
        snprintf(err, errlen, "url is required (\"/v1/chat/completions\")");
        return -1;
    }
    if (json_object_object_get_ex(root, "id", NULL)) {
        snprintf(err, errlen, "id is not allowed: chatq batch gives each line a job id of its own");
        return -1;
    }
    if (json_object_object_get_ex(root, "reply_to", NULL)) {
        snprintf(err, errlen, "reply_to is not allowed: chatq batch collects the results itself");
        return -1;
    }
    return 0;
}

/* Adds the batch's members to a line's object and returns the job text. */
static char *batchin_job_text(const batchin *in, json_object *root, long long lineno) {
    char id[160];
    snprintf(id, sizeof id, "%s-%lld", in->batch_id, lineno);
    json_object_object_add(root, "id", json_object_new_string(id));
    json_object_object_add(root, "reply_to", json_object_new_string(in->reply_to));
    json_object_object_add(root, "stream", json_object_new_boolean(0));
    if (in->tenant) json_object_object_add(root, "tenant", json_object_new_string(in->tenant));
    return xstrdup(json_object_to_json_string_ext(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* job_parse()'s messages about the text itself speak of "job"; here it is
 * the line. */
static void batchin_line_message(const char *jerr, char *err, size_t errlen) {
    if (!strncmp(jerr, "job ", 4))
        snprintf(err, errlen, "line %s", jerr + 4);
    else
        snprintf(err, errlen, "%s", jerr);
}

void batchin_info_free(batchin_info *info) {
    free(info->custom_id);
    free(info->model);
    free(info->provider);
    memset(info, 0, sizeof *info);
}

char *batchin_build(const batchin *in, const char *line, size_t len, long long lineno,
                    char *err, size_t errlen, batchin_info *info) {
    job j;
    char jerr[BATCHIN_ERR];
    char *text = NULL;
    json_object *v;
    if (info) memset(info, 0, sizeof *info);
    if (batchin_blank(line, len)) {
        snprintf(err, errlen, "empty line");
        return NULL;
    }
    job_parse(&j, line, len, 0, jerr, sizeof jerr); /* for j.root; see above */
    if (!j.root) {
        batchin_line_message(jerr, err, errlen);
        job_free(&j);
        return NULL;
    }
    if (info && json_object_object_get_ex(j.root, "custom_id", &v) &&
        json_object_is_type(v, json_type_string) && json_object_get_string_len(v)) {
        info->custom_id_len = (size_t)json_object_get_string_len(v);
        info->custom_id = xstrndup(json_object_get_string(v), info->custom_id_len);
    }
    if (batchin_batch_rules(j.root, err, errlen) == 0)
        text = batchin_job_text(in, j.root, lineno);
    job_free(&j);
    if (!text) return NULL;
    if (job_parse(&j, text, strlen(text), in->max_job_bytes, jerr, sizeof jerr) < 0) {
        snprintf(err, errlen, "%s", jerr);
        free(text);
        text = NULL;
    } else if (info) {
        info->model = j.model ? xstrdup(j.model) : NULL;
        info->provider = j.provider ? xstrdup(j.provider) : NULL;
    }
    job_free(&j);
    return text;
}

/* ---- the whole file ---- */

typedef struct batchin_check {
    batchin *in;
    idset ids;
    idset pairs;          /* (provider, model) -> index in in->models */
    size_t capmodels;     /* of in->models and in->providers */
    size_t capline;       /* of in->model_of */
    long long bad;
    const char *cid;      /* the custom_id being added */
    size_t cidlen;
    const batchin_info *info; /* the line whose pair is being added */
} batchin_check;

/* idset_same_fn: reads line `line` again and compares its custom_id. */
static int batchin_same(void *arg, uint32_t line) {
    batchin_check *ck = arg;
    jsonl_reader r;
    json_object *root = NULL, *v;
    int same = 0;
    if (batchin_seek(ck->in, &r, line) == 0 && jsonl_next(&r) == 1 && !r.too_long &&
        cli_json_parse(buf_cstr(&r.line), r.line.len, &root, NULL, 0) == 0 &&
        json_object_is_type(root, json_type_object) &&
        json_object_object_get_ex(root, "custom_id", &v) &&
        json_object_is_type(v, json_type_string)) {
        same = (size_t)json_object_get_string_len(v) == ck->cidlen &&
               !memcmp(json_object_get_string(v), ck->cid, ck->cidlen);
    }
    json_object_put(root);
    jsonl_free(&r);
    return same;
}

/* ---- the (provider, model) pairs ---- */

static uint64_t batchin_pair_hash(const char *provider, const char *model) {
    uint64_t h = idset_hash(model, strlen(model));
    return provider ? h ^ idset_hash(provider, strlen(provider)) * 31 : h;
}

static int batchin_same_str(const char *a, const char *b) {
    return a == b || (a && b && !strcmp(a, b));
}

/* idset_same_fn: compares pair `idx` with the line's. */
static int batchin_same_pair(void *arg, uint32_t idx) {
    batchin_check *ck = arg;
    return batchin_same_str(ck->in->models[idx], ck->info->model) &&
           batchin_same_str(ck->in->providers[idx], ck->info->provider);
}

/* Makes in->model_of hold lines 1..lineno, new entries 0. Only good lines
 * come here, so a run of bad lines can leave lineno far past the end:
 * doubling once would not be enough, the capacity doubles until it fits. */
static void batchin_grow_model_of(batchin_check *ck, long long lineno) {
    batchin *in = ck->in;
    size_t cap = ck->capline ? ck->capline : 1024;
    if ((size_t)lineno <= ck->capline) return;
    while (cap < (size_t)lineno) cap *= 2;
    in->model_of = xrealloc(in->model_of, cap * sizeof *in->model_of);
    memset(in->model_of + ck->capline, 0, (cap - ck->capline) * sizeof *in->model_of);
    ck->capline = cap;
}

/* Records the pair of a good line in in->model_of. */
static void batchin_note_model(batchin_check *ck, long long lineno, const batchin_info *info) {
    batchin *in = ck->in;
    batchin_grow_model_of(ck, lineno);
    if (!info->model || in->nmodels >= BATCHIN_MAX_MODELS) return;
    ck->info = info;
    uint32_t idx = (uint32_t)in->nmodels + 1;
    uint32_t found = idset_add(&ck->pairs, batchin_pair_hash(info->provider, info->model), idx,
                               batchin_same_pair, ck);
    if (!found) {
        if (idx >= ck->capmodels) {
            ck->capmodels = ck->capmodels ? ck->capmodels * 2 : 16;
            in->models = xrealloc(in->models, ck->capmodels * sizeof *in->models);
            in->providers = xrealloc(in->providers, ck->capmodels * sizeof *in->providers);
            in->models[0] = in->providers[0] = NULL;
        }
        in->models[idx] = xstrdup(info->model);
        in->providers[idx] = info->provider ? xstrdup(info->provider) : NULL;
        in->nmodels = idx;
        found = idx;
    }
    in->model_of[lineno - 1] = (uint16_t)found;
}

/* ---- reporting ---- */

static void batchin_report(batchin_check *ck, long long lineno, const char *msg) {
    if (++ck->bad <= BATCHIN_MAX_REPORTED) cli_fail("%s:%lld: %s", ck->in->path, lineno, msg);
}

static void batchin_mark(batchin *in, long long lineno, long long off) {
    if ((lineno - 1) % BATCHIN_MARK_EVERY) return;
    if (in->nmarks == in->capmarks) {
        in->capmarks = in->capmarks ? in->capmarks * 2 : 256;
        in->marks = xrealloc(in->marks, in->capmarks * sizeof *in->marks);
    }
    in->marks[in->nmarks++] = off;
}

/* Checks the line the reader holds, custom_id uniqueness included. */
static void batchin_check_line(batchin_check *ck, const jsonl_reader *r) {
    char err[BATCHIN_ERR];
    batchin_info info;
    batchin *in = ck->in;
    if (r->too_long) {
        snprintf(err, sizeof err, "line is longer than %zu bytes (max_job_bytes is %zu)",
                 in->max_line, in->max_job_bytes);
        batchin_report(ck, r->lineno, err);
        return;
    }
    char *text = batchin_build(in, buf_cstr(&r->line), r->line.len, r->lineno, err, sizeof err,
                               &info);
    int ok = text != NULL;
    free(text);
    if (info.custom_id) {
        size_t n = info.custom_id_len;
        ck->cid = info.custom_id;
        ck->cidlen = n;
        uint32_t first = idset_add(&ck->ids, idset_hash(info.custom_id, n), (uint32_t)r->lineno,
                                   batchin_same, ck);
        if (first && ok) {
            buf b = {0};
            buf_puts(&b, "duplicate custom_id ");
            buf_json_str(&b, info.custom_id, n > 80 ? 80 : n);
            buf_printf(&b, "%s (first on line %u)", n > 80 ? "..." : "", first);
            snprintf(err, sizeof err, "%s", buf_cstr(&b));
            buf_free(&b);
            ok = 0;
        }
    }
    if (ok)
        batchin_note_model(ck, r->lineno, &info);
    else
        batchin_report(ck, r->lineno, err);
    batchin_info_free(&info);
}

/* The end of the check: 0 when the file is good, else -1 with the count. */
static int batchin_verdict(batchin_check *ck) {
    batchin *in = ck->in;
    if (ck->bad > BATCHIN_MAX_REPORTED)
        cli_fail("%s: ... and %lld more bad lines", in->path, ck->bad - BATCHIN_MAX_REPORTED);
    if (ck->bad) {
        cli_fail("%s: %lld of %lld lines are invalid; nothing was submitted", in->path, ck->bad,
                 in->lines);
        return -1;
    }
    if (!in->lines) {
        cli_fail("%s: the file holds no request", in->path);
        return -1;
    }
    return 0;
}

int batchin_validate(batchin *in) {
    batchin_check ck;
    jsonl_reader r;
    int rc;
    memset(&ck, 0, sizeof ck);
    ck.in = in;
    in->nmarks = 0;
    jsonl_init(&r, in->fd, 0, 1, in->max_line);
    r.hashing = 1;
    while ((rc = jsonl_next(&r)) == 1) {
        if (r.lineno > (long long)UINT32_MAX) {
            cli_fail("%s: more than %u lines", in->path, UINT32_MAX);
            rc = -2;
            break;
        }
        batchin_mark(in, r.lineno, r.line_off);
        batchin_check_line(&ck, &r);
    }
    if (rc == -1) cli_fail("cannot read %s: %s", in->path, strerror(errno));
    in->lines = r.lineno;
    in->size = r.off;
    in->hash = r.hash;
    jsonl_free(&r);
    idset_free(&ck.ids);
    idset_free(&ck.pairs);
    if (rc < 0) return -1;
    return batchin_verdict(&ck);
}

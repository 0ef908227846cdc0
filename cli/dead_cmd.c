/* dead_cmd.c — `chatq dead`: look at the dead list P:dead (the default),
 * put its jobs back on a queue (`retry`), or remove entries (`purge`).
 *
 * P:dead holds one JSON entry per job that failed for good, newest on the
 * left (docs/protocol.md §6): {"job": <the job's text>, "error": {...},
 * "failed_at": <unix ms>, "job_bytes"?: <n>}. Workers LPUSH onto it at any
 * time, also while this command reads it, so:
 *
 * - Entries are numbered from the OLDEST (#0). A new failure lands at the
 *   other end and leaves every number as it was; numbers change only when
 *   entries are removed (retry, purge).
 * - The list is read in pages, newest first, from where it stood at the
 *   start, with ranges counted from the tail (LRANGE -pos ...): pushes at
 *   the head do not move them, and neither do our own removals (an entry
 *   we remove is newer than every entry still to read). Each page is read
 *   with the list's length in one MULTI, so its numbers are exact for that
 *   moment. Entries that fail after the start are left for the next run.
 * - An entry is acted on by its exact text, never by its number alone: the
 *   scripts DEAD_RETRY and DEAD_PURGE (common/scripts.c) LREM one copy of
 *   the text, walking from the end nearer to where it was seen. Identical
 *   texts are the same failure, so which copy goes does not matter. When
 *   someone else removes entries at the same time, entries not read yet may
 *   shift: one may then be read twice or missed by this run, never taken
 *   for another.
 *
 * retry: DEAD_RETRY removes the entry and pushes the job text onto the
 * queue's consuming end in one step, so a job is never both dead and
 * queued, and of two concurrent retries of one entry exactly one wins. It
 * deletes the dead run's hash and events (only when the hash says failed:
 * any other status means the id lives again, and the entry is left alone)
 * and marks the hash "queued"; START then runs the job afresh, attempts
 * from 1. The queue is --queue, else the entry's "queue" when it has one,
 * else the one the job's hash names while the hash is the failed run's,
 * else "default".
 * Entries that cannot be retried are reported and skipped: oversized jobs
 * (only their first bytes were kept) and entries holding no job text.
 *
 * Which entries: job ids (retry: the newest entry of each id; purge: every
 * entry of each), --index N (repeatable), or --all; --code and --older-than
 * narrow any of these, and purge also takes them alone. An entry with no
 * readable id can be picked only by --index or --all. */
#include "cli/dead_cmd.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/help.h"
#include "cli/redis.h"
#include "cli/table.h"
#include "common/buf.h"
#include "common/job.h"
#include "common/jobpeek.h"
#include "common/keys.h"
#include "common/output.h"
#include "common/scripts.h"

#define DEAD_PAGE 200            /* entries read, and acted on, per round trip */
#define DEAD_LIST_DEFAULT 100    /* entries listed without --limit */
#define DEAD_MESSAGE_MAX 300     /* bytes of an error message shown in the table */
#define DEAD_DEFAULT_QUEUE "default"
#define DEAD_MAX_AGE_MS (100LL * 366 * 86400 * 1000) /* --older-than at most */

/* ---- the command line ---------------------------------------------------- */

typedef enum dead_mode { DEAD_LIST, DEAD_RETRY, DEAD_PURGE } dead_mode;

typedef struct dead_args {
    dead_mode mode;
    int json;                 /* list */
    long long limit;          /* list: entries shown, 0 = all */
    int all;                  /* retry, purge */
    const char *code;         /* NULL = any */
    long long older_ms;       /* -1 = any age */
    const char *queue;        /* retry: NULL = where the job came from */
    const char **ids;         /* job ids (borrowed from argv) */
    int nids;
    long long *indexes;       /* entry numbers */
    int nindexes;
} dead_args;

enum { DO_JSON = 1, DO_LIMIT, DO_ALL, DO_INDEX, DO_CODE, DO_OLDER, DO_QUEUE };

static const cli_opt dead_list_opts[] = {
    {"json", 0, 0, DO_JSON}, {"limit", 0, 1, DO_LIMIT}, {NULL, 0, 0, 0},
};
static const cli_opt dead_retry_opts[] = {
    {"all", 0, 0, DO_ALL},          {"index", 0, 1, DO_INDEX}, {"code", 0, 1, DO_CODE},
    {"older-than", 0, 1, DO_OLDER}, {"queue", 0, 1, DO_QUEUE}, {NULL, 0, 0, 0},
};
static const cli_opt dead_purge_opts[] = {
    {"all", 0, 0, DO_ALL},          {"index", 0, 1, DO_INDEX}, {"code", 0, 1, DO_CODE},
    {"older-than", 0, 1, DO_OLDER}, {NULL, 0, 0, 0},
};

/* A queue name: the rule the configuration applies (docs/protocol.md §2). */
static int dead_queue_valid(const char *s, size_t len) { return s && config_name_valid(s, len); }

/* "7d", "12h", "30m", "45s" (or "2w") as milliseconds. Returns 0 or -1. */
static int dead_parse_age(const char *s, long long *ms) {
    static const struct {
        char unit;
        long long ms;
    } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}, {'w', 604800000}};
    size_t n = strlen(s);
    char num[24];
    long long v;
    if (n < 2 || n - 1 >= sizeof num || s[0] < '0' || s[0] > '9') return -1;
    memcpy(num, s, n - 1);
    num[n - 1] = '\0';
    if (cli_parse_ll(num, 0, LLONG_MAX, &v) < 0) return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (s[n - 1] != units[i].unit) continue;
        if (v > DEAD_MAX_AGE_MS / units[i].ms) return -1;
        *ms = v * units[i].ms;
        return 0;
    }
    return -1;
}

static int dead_take(cli_ctx *ctx, dead_args *a, int id, const char *val) {
    long long n;
    switch (id) {
    case DO_JSON: a->json = 1; break;
    case DO_ALL: a->all = 1; break;
    case DO_LIMIT:
        if (cli_parse_ll(val, 0, LLONG_MAX, &n) < 0)
            return cli_usage_fail(ctx, "--limit must be a whole number >= 0, not '%s'", val);
        a->limit = n;
        break;
    case DO_INDEX:
        if (cli_parse_ll(val, 0, LLONG_MAX - 1, &n) < 0) /* + 1 must not overflow */
            return cli_usage_fail(ctx, "--index must be an entry number (>= 0), not '%s'", val);
        a->indexes = xrealloc(a->indexes, sizeof *a->indexes * (size_t)(a->nindexes + 1));
        a->indexes[a->nindexes++] = n;
        break;
    case DO_CODE:
        if (!*val) return cli_usage_fail(ctx, "--code must not be empty");
        a->code = val;
        break;
    case DO_OLDER:
        if (dead_parse_age(val, &a->older_ms) < 0)
            return cli_usage_fail(ctx, "--older-than must be a number and a unit (s, m, h, d, w), "
                                       "like 7d or 12h, not '%s'", val);
        break;
    case DO_QUEUE:
        if (!dead_queue_valid(val, strlen(val)))
            return cli_usage_fail(ctx, "--queue must be a queue name of [A-Za-z0-9._:-], not '%s'",
                                  val);
        a->queue = val;
        break;
    }
    return CLI_OK;
}

/* The positional arguments: job ids for retry and purge, nothing for the
 * list. Then whether the options make sense together. */
static int dead_check(cli_ctx *ctx, dead_args *a, const cli_parser *p) {
    if (a->mode == DEAD_LIST && p->npos)
        return cli_usage_fail(ctx, "unexpected argument '%s' (retry and purge come right after "
                                   "'dead')", p->pos[0]);
    for (int i = 0; i < p->npos; i++)
        if (!job_id_valid(p->pos[i]))
            return cli_usage_fail(ctx, "'%s' is not a job id (1-128 characters of "
                                       "[A-Za-z0-9._:-])", p->pos[i]);
    a->ids = xcalloc((size_t)(p->npos ? p->npos : 1), sizeof *a->ids);
    for (int i = 0; i < p->npos; i++) a->ids[a->nids++] = p->pos[i];
    int named = a->nids || a->nindexes;
    if (a->all && named) return cli_usage_fail(ctx, "--all does not go with job ids or --index");
    if (a->mode == DEAD_RETRY && !named && !a->all)
        return cli_usage_fail(ctx, "retry needs job ids, --index N or --all");
    if (a->mode == DEAD_PURGE && !named && !a->all && !a->code && a->older_ms < 0)
        return cli_usage_fail(ctx, "purge needs --older-than, --code, job ids, --index N, or "
                                   "--all to remove every entry");
    return CLI_OK;
}

/* Parses argv (argv[0] "dead", then maybe "retry" or "purge"). Returns 1
 * when the caller should stop and exit with *status. */
static int dead_parse(cli_ctx *ctx, int argc, char **argv, dead_args *a, int *status) {
    const cli_opt *opts = dead_list_opts;
    int sub = 0, opt;
    memset(a, 0, sizeof *a);
    a->limit = DEAD_LIST_DEFAULT;
    a->older_ms = -1;
    if (argc > 1 && !strcmp(argv[1], "retry")) {
        a->mode = DEAD_RETRY;
        opts = dead_retry_opts;
        sub = 1;
    } else if (argc > 1 && !strcmp(argv[1], "purge")) {
        a->mode = DEAD_PURGE;
        opts = dead_purge_opts;
        sub = 1;
    }
    cli_parser p;
    cli_parser_init(&p, ctx, opts, argc - sub, argv + sub);
    *status = CLI_OK;
    while (*status == CLI_OK && (opt = cli_next(&p)) > 0) {
        if (opt == CLI_OPT_HELP) {
            cli_parser_free(&p);
            *status = help_print("dead");
            return 1;
        }
        *status = dead_take(ctx, a, opt, p.val);
    }
    if (*status == CLI_OK && opt < 0) *status = CLI_USAGE; /* cli_next() printed why */
    if (*status == CLI_OK) *status = dead_check(ctx, a, &p);
    cli_parser_free(&p);
    return *status != CLI_OK;
}

static void dead_args_free(dead_args *a) {
    free(a->ids);
    free(a->indexes);
}

/* ---- one entry ----------------------------------------------------------- */

typedef struct dead_entry {
    const char *text;       /* the entry as stored (borrowed from the reply) */
    size_t len;
    long long index;        /* its number: 0 = the oldest entry */
    int near_tail;          /* nearer the oldest end: LREM walks from there */
    json_object *root;      /* the entry parsed; NULL when not a JSON object */
    const char *job;        /* its "job" string (borrowed from root); NULL when none */
    size_t job_len;
    int oversized;          /* it has "job_bytes": "job" is only the first bytes */
    long long job_bytes;    /*   the job's size then (0 when not a number) */
    const char *code;       /* error.code and error.message; NULL when absent */
    const char *message;
    long long failed_at;    /* unix ms; -1 when absent */
    const char *queue;      /* the entry's "queue" when it names one, else NULL */
    char *id;               /* the job's id, read as a worker reads it; NULL when none */
} dead_entry;

/* The member `name` of o when it is a string, else NULL (borrowed). */
static const char *dead_str(json_object *o, const char *name) {
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* The id a worker gave the job (worker/jobrun.c): job_parse()'s for a whole
 * text (its id, custom_id, or the one made from the text), jobpeek's for an
 * oversized job's first bytes. NULL when it has none; the caller frees. */
static char *dead_job_id(const char *text, size_t len, int oversized) {
    if (oversized) {
        jobpeek pk;
        jobpeek_read(text, len, &pk);
        const char *id = pk.id ? pk.id : pk.custom_id;
        char *out = id && job_id_valid(id) ? xstrdup(id) : NULL;
        jobpeek_free(&pk);
        return out;
    }
    job j;
    job_parse(&j, text, len, 0, NULL, 0);
    char *id = j.id;
    j.id = NULL;
    job_free(&j);
    return id;
}

static void dead_entry_read(dead_entry *e, const char *text, size_t len, long long index,
                            long long total) {
    json_object *root = NULL, *v;
    memset(e, 0, sizeof *e);
    e->text = text;
    e->len = len;
    e->index = index;
    e->near_tail = index < total / 2;
    e->failed_at = -1;
    if (cli_json_parse(text, len, &root, NULL, 0) < 0 ||
        !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return;
    }
    e->root = root;
    if (json_object_object_get_ex(root, "job", &v) && json_object_is_type(v, json_type_string)) {
        e->job = json_object_get_string(v);
        e->job_len = (size_t)json_object_get_string_len(v);
    }
    if (json_object_object_get_ex(root, "job_bytes", &v)) {
        e->oversized = 1;
        if (json_object_is_type(v, json_type_int)) e->job_bytes = json_object_get_int64(v);
    }
    if (json_object_object_get_ex(root, "error", &v) && json_object_is_type(v, json_type_object)) {
        e->code = dead_str(v, "code");
        e->message = dead_str(v, "message");
    }
    /* a worker writes an integer; RECOVER's cjson may write a number */
    if (json_object_object_get_ex(root, "failed_at", &v) &&
        (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        e->failed_at = json_object_get_int64(v);
    e->queue = dead_str(root, "queue");
    json_object *qv = NULL; /* its length: a "\u0000" inside must not cut it short */
    json_object_object_get_ex(root, "queue", &qv);
    if (!e->queue || !dead_queue_valid(e->queue, (size_t)json_object_get_string_len(qv)))
        e->queue = NULL;
    if (e->job) e->id = dead_job_id(e->job, e->job_len, e->oversized);
}

static void dead_entry_free(dead_entry *e) {
    json_object_put(e->root);
    free(e->id);
    memset(e, 0, sizeof *e);
}

/* "j1 (#12)", or "#12" for an entry without an id. */
static void dead_label(const dead_entry *e, char *out, size_t n) {
    if (e->id)
        snprintf(out, n, "%s (#%lld)", e->id, e->index);
    else
        snprintf(out, n, "#%lld", e->index);
}

/* ---- the run ------------------------------------------------------------- */

typedef struct dead_run {
    cli_ctx *ctx;
    const dead_args *a;
    redisContext *c;
    const char *prefix;
    char *dead_key;
    long long now;           /* unix ms at the start: --older-than counts from it */
    int tty;                 /* stdout is a terminal */
    /* list */
    long long left;          /* entries still to show */
    long long shown;
    table tab;
    json_object *arr;        /* --json */
    /* retry and purge */
    char *id_found;          /* per a->ids[i]: an entry was picked for it */
    char *index_found;       /* per a->indexes[i] */
    long long done;          /* retried, or purged */
    long long skipped;       /* not retried */
    long long skipped_named; /*   of which named by id or number */
} dead_run;

/* Whether the command line picks entry e; *named says it was by its id or
 * its number rather than by --all or the filters alone. For retry an id
 * picks only its newest entry (the first one read). */
static int dead_pick(dead_run *r, const dead_entry *e, int *named) {
    const dead_args *a = r->a;
    *named = 0;
    if (a->code && (!e->code || strcmp(e->code, a->code))) return 0;
    if (a->older_ms >= 0 && (e->failed_at < 0 || r->now - e->failed_at < a->older_ms)) return 0;
    int picked = a->all || (a->mode == DEAD_PURGE && !a->nids && !a->nindexes);
    for (int i = 0; i < a->nindexes; i++) {
        if (a->indexes[i] != e->index || r->index_found[i]) continue;
        r->index_found[i] = 1;
        picked = *named = 1;
    }
    for (int i = 0; e->id && i < a->nids; i++) {
        if (strcmp(a->ids[i], e->id) || (a->mode == DEAD_RETRY && r->id_found[i])) continue;
        r->id_found[i] = 1;
        picked = *named = 1;
    }
    return picked;
}

/* 1 when every entry named was found and no other can be picked: the
 * scan can stop early. */
static int dead_all_found(const dead_run *r) {
    const dead_args *a = r->a;
    if (a->all || (!a->nids && !a->nindexes)) return 0;
    if (a->mode == DEAD_PURGE && a->nids) return 0; /* every entry of an id goes */
    for (int i = 0; i < a->nids; i++)
        if (!r->id_found[i]) return 0;
    for (int i = 0; i < a->nindexes; i++)
        if (!r->index_found[i]) return 0;
    return 1;
}

/* One line of text for a table cell or a message: line breaks and tabs
 * become spaces, at most `max` bytes (0 = all; cut on a character boundary,
 * "..." added), made harmless for a terminal when stdout is one. */
static char *dead_cell(const dead_run *r, const char *s, size_t len, size_t max) {
    buf flat = {0}, out = {0};
    size_t n = len;
    int cut = max && n > max;
    if (cut) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int blank = ch == '\n' || ch == '\r' || ch == '\t' || (ch == '\0' && !r->tty);
        buf_putc(&flat, blank ? ' ' : ch);
    }
    if (cut) buf_puts(&flat, "...");
    if (!r->tty) return buf_steal(&flat);
    output_term_safe(&out, buf_cstr(&flat), flat.len);
    buf_free(&flat);
    return buf_steal(&out);
}

/* ---- reading the list ---------------------------------------------------- */

/* Called with each page of entries, newest first: returns 0 to go on, 1 to
 * stop, -1 on a failure (printed). */
typedef int (*dead_page_fn)(dead_run *r, dead_entry *v, size_t n);

/* The entries numbered pos-n .. pos-1 (newest first) and the list's length,
 * in one MULTI: the numbers are exact for that moment. Returns the EXEC
 * reply ([length, entries]), or NULL (printed). */
static redisReply *dead_read_page(redisContext *c, const char *key, long long pos, long long n) {
    redisReply *rep[4] = {NULL, NULL, NULL, NULL};
    int ok = 1;
    redisAppendCommand(c, "MULTI");
    redisAppendCommand(c, "LLEN %s", key);
    redisAppendCommand(c, "LRANGE %s %lld %lld", key, -pos, -(pos - n + 1));
    redisAppendCommand(c, "EXEC");
    for (int i = 0; i < 4 && ok; i++) ok = redisGetReply(c, (void **)&rep[i]) == REDIS_OK;
    if (!ok) cli_fail("redis: %s", c->errstr[0] ? c->errstr : "connection lost");
    redisReply *x = rep[3];
    if (ok && (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
               x->element[0]->type != REDIS_REPLY_INTEGER ||
               x->element[1]->type != REDIS_REPLY_ARRAY)) {
        const redisReply *bad = x;
        if (x->type == REDIS_REPLY_ARRAY && x->elements == 2) bad = x->element[0];
        cli_fail("redis: %s",
                 bad->type == REDIS_REPLY_ERROR ? bad->str : "unexpected reply to LRANGE");
        ok = 0;
    }
    for (int i = 0; i < 3; i++)
        if (rep[i]) freeReplyObject(rep[i]);
    if (!ok && rep[3]) freeReplyObject(rep[3]);
    return ok ? rep[3] : NULL;
}

/* Reads the entries numbered below `start` (all when start < 0), newest
 * first, at most `max` of them (all when max < 0), a page at a time, and
 * hands each page to fn. *total is the list's length at the start.
 * Returns 0 or -1 (printed). */
static int dead_scan(dead_run *r, long long start, long long max, dead_page_fn fn,
                     long long *total) {
    redisReply *rep = cli_redis_cmd(r->c, "LLEN %s", r->dead_key);
    if (!rep) return -1;
    long long len = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
    freeReplyObject(rep);
    *total = len;
    long long pos = start >= 0 && start < len ? start : len;
    dead_entry *v = xcalloc(DEAD_PAGE, sizeof *v);
    int rc = 0;
    while (pos > 0 && max != 0 && rc == 0) {
        long long n = pos < DEAD_PAGE ? pos : DEAD_PAGE;
        if (max > 0 && n > max) n = max;
        rep = dead_read_page(r->c, r->dead_key, pos, n);
        if (!rep) {
            rc = -1;
            break;
        }
        long long now_len = rep->element[0]->integer;
        const redisReply *items = rep->element[1];
        /* when others removed entries, the range was clamped: number what came */
        long long top = (pos < now_len ? pos : now_len) - 1;
        /* Redis answers at most n bulk strings; anything else (a proxy, a
         * fake server) must not write past v nor hand a NULL text on */
        size_t came = items->elements < (size_t)n ? items->elements : (size_t)n, got = 0;
        for (size_t i = 0; i < came; i++) {
            const redisReply *it = items->element[i];
            if (it->type == REDIS_REPLY_STRING)
                dead_entry_read(&v[got++], it->str, it->len, top - (long long)i, now_len);
        }
        rc = !came ? 1 : got ? fn(r, v, got) : 0;
        for (size_t i = 0; i < got; i++) dead_entry_free(&v[i]);
        freeReplyObject(rep);
        pos -= n;
        if (max > 0) max -= n;
    }
    free(v);
    return rc < 0 ? -1 : 0;
}

/* Runs a script with EVAL: args holds numkeys, KEYS and ARGV. Returns the
 * reply, or NULL (printed). */
static redisReply *dead_eval(dead_run *r, const char *script, const rargs *args) {
    rargs a = {0};
    rargs_adds(&a, "EVAL");
    rargs_adds(&a, script);
    for (int i = 0; i < args->argc; i++) rargs_add(&a, args->argv[i], args->lens[i]);
    redisReply *rep = redisCommandArgv(r->c, a.argc, a.argv, a.lens);
    rargs_free(&a);
    if (!rep) {
        cli_fail("redis: %s", r->c->errstr[0] ? r->c->errstr : "connection lost");
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        cli_fail("redis: %s", rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* ---- chatq dead: the list ------------------------------------------------ */

static void dead_when(long long ms, char out[40]) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms < 0 || !gmtime_r(&t, &tm) || !strftime(out, 40, "%Y-%m-%dT%H:%M:%SZ", &tm))
        strcpy(out, "-");
}

/* The entry as --json shows it: its own members after "index" and "id"; an
 * entry that is not a JSON object as "entry", its text. */
static json_object *dead_entry_json(const dead_entry *e) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "index", json_object_new_int64(e->index));
    json_object_object_add(o, "id", e->id ? json_object_new_string(e->id) : NULL);
    if (!e->root) {
        json_object_object_add(o, "entry", json_object_new_string_len(e->text, (int)e->len));
        return o;
    }
    json_object_object_foreach(e->root, k, v) {
        if (strcmp(k, "index") && strcmp(k, "id")) json_object_object_add(o, k, json_object_get(v));
    }
    return o;
}

static void dead_entry_row(dead_run *r, const dead_entry *e) {
    char when[40];
    table_addf(&r->tab, "%lld", e->index);
    table_addf(&r->tab, "%s", e->id ? e->id : "-");
    char *code = e->code ? dead_cell(r, e->code, strlen(e->code), 64) : xstrdup("-");
    table_addf(&r->tab, "%s", code);
    free(code);
    dead_when(e->failed_at, when);
    table_addf(&r->tab, "%s", when);
    char *msg = e->message ? dead_cell(r, e->message, strlen(e->message), DEAD_MESSAGE_MAX)
                           : xstrdup(e->root ? "-" : "(not a dead-list entry: not a JSON object)");
    table_addf(&r->tab, "%s", msg);
    free(msg);
}

static int dead_list_page(dead_run *r, dead_entry *v, size_t n) {
    for (size_t i = 0; i < n && r->left > 0; i++, r->left--, r->shown++) {
        if (r->arr)
            json_object_array_add(r->arr, dead_entry_json(&v[i]));
        else
            dead_entry_row(r, &v[i]);
    }
    return r->left > 0 ? 0 : 1;
}

static int dead_list(dead_run *r) {
    static const char *const headers[] = {"INDEX", "ID", "CODE", "FAILED_AT", "MESSAGE"};
    static const int right[] = {1, 0, 0, 0, 0};
    long long total = 0;
    r->left = r->a->limit > 0 ? r->a->limit : LLONG_MAX;
    if (r->a->json)
        r->arr = json_object_new_array();
    else
        table_init(&r->tab, 5, headers, right);
    int rc = dead_scan(r, -1, r->a->limit > 0 ? r->a->limit : -1, dead_list_page, &total);
    if (rc == 0 && r->arr) {
        cli_print_json(r->arr);
    } else if (rc == 0 && !r->shown) {
        puts("no dead jobs");
    } else if (rc == 0) {
        table_print(&r->tab, stdout);
        if (r->shown < total)
            printf("(the newest %lld of %lld entries; --limit 0 lists them all)\n", r->shown,
                   total);
    }
    if (r->arr)
        json_object_put(r->arr);
    else
        table_free(&r->tab);
    return rc < 0 ? CLI_ERR : CLI_OK;
}

/* ---- chatq dead retry ---------------------------------------------------- */

typedef struct dead_cand {
    const dead_entry *e;
    int named;
    const char *queue;        /* where it goes (borrowed from args, entry or hint) */
    redisReply *hint;         /* the HMGET reply `queue` may point into */
} dead_cand;

static void dead_skip(dead_run *r, const dead_entry *e, int named, const char *why) {
    char label[160];
    dead_label(e, label, sizeof label);
    printf("skipped %s: %s\n", label, why);
    r->skipped++;
    if (named) r->skipped_named++;
}

/* Why entry e cannot be retried, written into why; 0 when it can. */
static int dead_unretryable(const dead_entry *e, char *why, size_t n) {
    if (!e->job) {
        snprintf(why, n, "the entry holds no job text (%s)",
                 e->root ? "no \"job\" string" : "it is not a JSON object");
        return 1;
    }
    if (e->oversized) {
        char size[48] = "";
        if (e->job_bytes > 0) snprintf(size, sizeof size, " (%lld bytes)", e->job_bytes);
        snprintf(why, n,
                 "the job was too large%s: the dead list keeps only its first %d bytes, so it "
                 "cannot be retried (push it again whole; 'chatq dead purge --index %lld' "
                 "removes the entry)",
                 size, SCRIPTS_EXCERPT_BYTES, e->index);
        return 1;
    }
    return 0;
}

/* The queue of each candidate: --queue, else the entry's own, else the one
 * its job hash names while the hash is the failed run's, else "default".
 * The hashes are read in one pipeline. Returns 0 or -1 (printed). */
static int dead_queues(dead_run *r, dead_cand *cand, size_t n) {
    size_t asked = 0;
    for (size_t i = 0; i < n; i++) {
        const dead_entry *e = cand[i].e;
        cand[i].queue = r->a->queue ? r->a->queue : e->queue;
        if (cand[i].queue || !e->id) continue;
        char *key = keys_job(r->prefix, e->id);
        redisAppendCommand(r->c, "HMGET %s status queue", key);
        free(key);
        asked++;
    }
    for (size_t i = 0; i < n && asked; i++) {
        if (cand[i].queue || !cand[i].e->id) continue;
        redisReply *h = NULL;
        asked--;
        if (redisGetReply(r->c, (void **)&h) != REDIS_OK) {
            cli_fail("redis: %s", r->c->errstr[0] ? r->c->errstr : "connection lost");
            return -1;
        }
        /* an error (the key is not a hash) or no failed run: no hint */
        if (h->type == REDIS_REPLY_ARRAY && h->elements == 2 &&
            h->element[0]->type == REDIS_REPLY_STRING && h->element[0]->len == 6 &&
            !memcmp(h->element[0]->str, "failed", 6) && h->element[1]->type == REDIS_REPLY_STRING &&
            dead_queue_valid(h->element[1]->str, h->element[1]->len)) {
            cand[i].queue = h->element[1]->str;
            cand[i].hint = h;
        } else {
            freeReplyObject(h);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!cand[i].queue) cand[i].queue = DEAD_DEFAULT_QUEUE;
    return 0;
}

/* What DEAD_RETRY answered for one candidate, told. */
static void dead_retry_result(dead_run *r, const dead_cand *c, const redisReply *res) {
    const dead_entry *e = c->e;
    const char *s = res->type == REDIS_REPLY_STRING ? res->str : "";
    char why[400], label[160];
    if (!strcmp(s, "retried")) {
        dead_label(e, label, sizeof label);
        printf("retried %s onto queue %s\n", label, c->queue);
        r->done++;
        return;
    }
    if (!strcmp(s, "gone")) {
        snprintf(why, sizeof why, "it left the dead list meanwhile (retried or purged by "
                                  "another client)");
    } else if (!strcmp(s, "queue_not_list")) {
        snprintf(why, sizeof why, "the key of queue %s is not a list", c->queue);
    } else if (!strcmp(s, "status:queued")) {
        snprintf(why, sizeof why, "job %s is queued already (retried from a newer entry, or "
                                  "pushed again)", e->id);
    } else if (!strcmp(s, "status:running")) {
        snprintf(why, sizeof why, "job %s is running", e->id);
    } else {
        if (!strncmp(s, "status:", 7)) s += 7;
        char *st = dead_cell(r, s, strlen(s), 40);
        snprintf(why, sizeof why, "job %s ran again after this failure and its hash says %s",
                 e->id ? e->id : "-", st);
        free(st);
    }
    dead_skip(r, e, c->named, why);
}

/* One DEAD_RETRY call for the candidates of a page. Returns 0 or -1. */
static int dead_retry_send(dead_run *r, const dead_cand *cand, size_t n) {
    scripts_batch b = {0};
    for (size_t i = 0; i < n; i++) {
        const dead_entry *e = cand[i].e;
        char *kq = keys_queue(r->prefix, cand[i].queue);
        char *kj = e->id ? keys_job(r->prefix, e->id) : NULL;
        char *ke = e->id ? keys_events(r->prefix, e->id) : NULL;
        char *kc = e->id ? keys_cancel(r->prefix, e->id) : NULL;
        scripts_dead_retry_call call = {
            .queue_key = kq, .job_key = kj, .events_key = ke, .cancel_key = kc,
            .entry = e->text, .entry_len = e->len, .from_tail = e->near_tail,
            .job = e->job, .job_len = e->job_len, .queue = cand[i].queue,
        };
        scripts_dead_retry_add(&b, &call); /* copies every string */
        free(kq);
        free(kj);
        free(ke);
        free(kc);
    }
    rargs args = {0};
    scripts_dead_retry_args(&b, r->dead_key, cli_unix_ms(), &args);
    redisReply *rep = dead_eval(r, scripts_dead_retry, &args);
    rargs_free(&args);
    scripts_batch_free(&b);
    if (!rep) return -1;
    int ok = rep->type == REDIS_REPLY_ARRAY && rep->elements == n;
    if (!ok) cli_fail("redis: unexpected reply to the retry script");
    for (size_t i = 0; ok && i < n; i++) dead_retry_result(r, &cand[i], rep->element[i]);
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

static int dead_retry_page(dead_run *r, dead_entry *v, size_t n) {
    dead_cand *cand = xcalloc(n, sizeof *cand);
    size_t nc = 0;
    char why[400];
    int rc = 0, named;
    for (size_t i = 0; i < n; i++) {
        if (!dead_pick(r, &v[i], &named)) continue;
        if (dead_unretryable(&v[i], why, sizeof why)) {
            dead_skip(r, &v[i], named, why);
            continue;
        }
        cand[nc].e = &v[i];
        cand[nc++].named = named;
    }
    if (nc) rc = dead_queues(r, cand, nc);
    if (nc && rc == 0) rc = dead_retry_send(r, cand, nc);
    for (size_t i = 0; i < nc; i++)
        if (cand[i].hint) freeReplyObject(cand[i].hint);
    free(cand);
    if (rc == 0 && dead_all_found(r)) rc = 1;
    return rc;
}

/* ---- chatq dead purge ---------------------------------------------------- */

static int dead_purge_page(dead_run *r, dead_entry *v, size_t n) {
    scripts_batch b = {0};
    int named;
    for (size_t i = 0; i < n; i++)
        if (dead_pick(r, &v[i], &named))
            scripts_dead_purge_add(&b, v[i].text, v[i].len, v[i].near_tail);
    int rc = 0;
    if (b.n) {
        rargs args = {0};
        scripts_dead_purge_args(&b, r->dead_key, &args);
        redisReply *rep = dead_eval(r, scripts_dead_purge, &args);
        rargs_free(&args);
        rc = rep && rep->type == REDIS_REPLY_INTEGER ? 0 : -1;
        if (rc == 0) r->done += rep->integer;
        if (rep && rc < 0) cli_fail("redis: unexpected reply to the purge script");
        if (rep) freeReplyObject(rep);
    }
    scripts_batch_free(&b);
    if (rc == 0 && dead_all_found(r)) rc = 1;
    return rc;
}

/* ---- retry and purge: the scan and the outcome --------------------------- */

/* The ids and numbers named that no entry answered, as "job a, #7". */
static void dead_missing(const dead_run *r, buf *out) {
    for (int i = 0; i < r->a->nids; i++) {
        if (r->id_found[i]) continue;
        buf_printf(out, "%sjob %s", out->len ? ", " : "", r->a->ids[i]);
    }
    for (int i = 0; i < r->a->nindexes; i++) {
        if (r->index_found[i]) continue;
        buf_printf(out, "%s#%lld", out->len ? ", " : "", r->a->indexes[i]);
    }
}

static int dead_act(dead_run *r) {
    const dead_args *a = r->a;
    long long total, start = -1;
    r->id_found = xcalloc((size_t)a->nids + 1, 1);
    r->index_found = xcalloc((size_t)a->nindexes + 1, 1);
    /* numbers alone: no need to read the newer entries */
    for (int i = 0; !a->nids && i < a->nindexes; i++)
        if (a->indexes[i] + 1 > start) start = a->indexes[i] + 1;
    int rc = dead_scan(r, start, -1, a->mode == DEAD_RETRY ? dead_retry_page : dead_purge_page,
                       &total);
    if (rc < 0) return CLI_ERR;
    if (a->mode == DEAD_RETRY)
        printf("retried %lld, skipped %lld\n", r->done, r->skipped);
    else
        printf("purged %lld %s\n", r->done, r->done == 1 ? "entry" : "entries");
    buf missing = {0};
    dead_missing(r, &missing);
    int status = CLI_OK;
    if (missing.len && r->skipped_named)
        status = cli_fail("no dead entry matches %s; %lld named entr%s not retried (see above)",
                          buf_cstr(&missing), r->skipped_named,
                          r->skipped_named == 1 ? "y" : "ies");
    else if (missing.len)
        status = cli_fail("no dead entry matches %s", buf_cstr(&missing));
    else if (r->skipped_named)
        status = cli_fail("%lld named entr%s not retried (see above)", r->skipped_named,
                          r->skipped_named == 1 ? "y" : "ies");
    buf_free(&missing);
    return status;
}

/* ---- the command ---------------------------------------------------------- */

int dead_cmd(cli_ctx *ctx, int argc, char **argv) {
    dead_args a;
    int status;
    if (dead_parse(ctx, argc, argv, &a, &status)) {
        dead_args_free(&a);
        return status;
    }
    redisContext *c = cli_redis_connect(ctx);
    if (!c) {
        dead_args_free(&a);
        return CLI_ERR;
    }
    dead_run r;
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    r.a = &a;
    r.c = c;
    r.prefix = cli_ctx_prefix(ctx);
    r.dead_key = keys_dead(r.prefix);
    r.now = cli_unix_ms();
    r.tty = isatty(STDOUT_FILENO);
    status = a.mode == DEAD_LIST ? dead_list(&r) : dead_act(&r);
    free(r.dead_key);
    free(r.id_found);
    free(r.index_found);
    redisFree(c);
    dead_args_free(&a);
    return status;
}

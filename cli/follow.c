/* follow.c — following a job's stream events to its end; see follow.h.
 *
 * Event order: next_seq is the seq expected next. An event below it is a
 * duplicate (seen in the list and again on the channel, or the reverse).
 * From the list, an event above it is taken as it comes (the list is the
 * record; a hole there will not fill). From the channel, an event above it
 * first makes us re-read the list, which by then holds the missing ones
 * when the producer appends before it publishes the next event; what is
 * still missing after that is skipped. A message without a seq that is an
 * integer from 0 to LLONG_MAX - 1 is not an event (follow_count()): json-c
 * reads any larger number as INT64_MAX, and seq + 1 must not overflow.
 *
 * Stale chunks: a retry event for attempt a means the chunks of attempts
 * <= a are void, so a late chunk of such an attempt is not printed.
 *
 * Upstream text (the content, the tool calls, an error message) goes to a
 * terminal through output_term_safe() (common/output.h), so it cannot move
 * the cursor or retitle the window; to a file or a pipe it goes as it is. */
#include "cli/follow.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/redis.h"
#include "common/buf.h"
#include "common/keys.h"
#include "common/output.h"

#define FOLLOW_HASH_CHECK_S 1.0
/* How long the job hash may lag behind the final event before we give up
 * waiting for the result to be stored. */
#define FOLLOW_RESULT_WAIT_S 2.0
#define FOLLOW_RESULT_POLL_NS 50000000L
/* Entries of the events list read per LRANGE. */
#define FOLLOW_PAGE 1000

typedef struct follow_state {
    const follow_opts *o;
    char *events_key;
    char *job_key;
    long long next_seq;
    long long list_read;    /* entries of the events list read so far */
    long long min_attempt;  /* chunks of earlier attempts are stale */
    int printed;            /* content printed in the current attempt */
    int line_open;          /* stdout's last printed byte is not '\n' */
    int tty;                /* stdout is a terminal: upstream text is filtered */
    int ended;              /* final event seen, or the hash says it ended */
    char *status;           /* the final status (owned) */
    json_object *error;     /* the final event's error (owned), may be NULL */
} follow_state;

/* What a job's status tells the follower. */
typedef enum follow_outcome {
    FOLLOW_NOT_ENDED,     /* queued, running, or no status at all */
    FOLLOW_SUCCEEDED,
    FOLLOW_ENDED_BADLY,   /* failed or cancelled */
} follow_outcome;

/* The outcome a status text (may be NULL) names. This is the one place the
 * CLI reads a job status as text; once common/job.h has the status enum it
 * becomes job_status_parse() and job_status_final(). */
static follow_outcome follow_outcome_of(const char *status) {
    if (!status) return FOLLOW_NOT_ENDED;
    if (!strcmp(status, "succeeded")) return FOLLOW_SUCCEEDED;
    if (!strcmp(status, "failed") || !strcmp(status, "cancelled")) return FOLLOW_ENDED_BADLY;
    return FOLLOW_NOT_ENDED;
}

/* 1 when a reply (the hash's status field, may be NULL) says the job ended. */
static int follow_reply_ended(const redisReply *v) {
    return v && v->type == REDIS_REPLY_STRING && follow_outcome_of(v->str) != FOLLOW_NOT_ENDED;
}

/* Prints upstream text: filtered for a terminal, as it is for anything else. */
static void follow_write(follow_state *fs, const char *s, size_t len) {
    buf safe = {0};
    if (fs->tty) {
        output_term_safe(&safe, s, len);
        s = safe.data;
        len = safe.len;
    }
    if (len) {
        fwrite(s, 1, len, stdout);
        fflush(stdout);
        fs->line_open = s[len - 1] != '\n';
    }
    buf_free(&safe);
}

/* Text for the one-line failure message on stderr: line breaks and tabs
 * become spaces (an upstream's error message may hold them, and anyone can
 * write the error), and the rest is filtered when stderr is a terminal.
 * Owned by *b; valid until b is freed. */
static const char *follow_err_text(buf *b, const char *s) {
    buf flat = {0};
    for (; s && *s; s++) buf_putc(&flat, *s == '\n' || *s == '\r' || *s == '\t' ? ' ' : *s);
    if (isatty(fileno(stderr)))
        output_term_safe(b, buf_cstr(&flat), flat.len);
    else
        buf_append(b, buf_cstr(&flat), flat.len);
    buf_free(&flat);
    return buf_cstr(b);
}

/* Ends a partly printed line, so what follows starts on its own. */
static void follow_close_line(follow_state *fs) {
    if (fs->line_open) follow_write(fs, "\n", 1);
}

static json_object *follow_get(json_object *o, const char *key, json_type type) {
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
        return NULL;
    return v;
}

/* An event's count (seq, attempt): an integer from 0 to LLONG_MAX - 1, so
 * that adding 1 cannot overflow (json-c reads anything above INT64_MAX as
 * INT64_MAX). Returns 1 with *out set, 0 when absent or out of range. */
static int follow_count(json_object *ev, const char *key, long long *out) {
    json_object *v = follow_get(ev, key, json_type_int);
    if (!v) return 0;
    int64_t n = json_object_get_int64(v);
    if (n < 0 || n >= LLONG_MAX) return 0;
    *out = (long long)n;
    return 1;
}

/* The choice with index 0 (else the first) of a chunk or a completion. */
static json_object *follow_choice0(json_object *obj) {
    json_object *choices = follow_get(obj, "choices", json_type_array);
    size_t n = choices ? json_object_array_length(choices) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(choices, i);
        json_object *idx = follow_get(c, "index", json_type_int);
        if (idx && json_object_get_int64(idx) == 0) return c;
    }
    return n ? json_object_array_get_idx(choices, 0) : NULL;
}

/* ---- events ---- */

static void follow_chunk(follow_state *fs, json_object *ev) {
    long long a;
    if (!fs->o->print_chunks || (follow_count(ev, "attempt", &a) && a < fs->min_attempt)) return;
    json_object *delta = follow_get(follow_choice0(follow_get(ev, "data", json_type_object)),
                                    "delta", json_type_object);
    json_object *content = follow_get(delta, "content", json_type_string);
    if (!content || !json_object_get_string_len(content)) return;
    follow_write(fs, json_object_get_string(content), (size_t)json_object_get_string_len(content));
    fs->printed = 1;
}

static void follow_retry(follow_state *fs, json_object *ev) {
    long long attempt = 0;
    follow_count(ev, "attempt", &attempt);
    if (fs->o->print_chunks) {
        fprintf(stderr, "\n[retry: attempt %lld]\n", attempt);
        fflush(stderr);
    }
    if (attempt + 1 > fs->min_attempt) fs->min_attempt = attempt + 1;
    fs->printed = 0;
}

static void follow_end(follow_state *fs, json_object *ev, const char *dflt) {
    json_object *st = follow_get(ev, "status", json_type_string);
    json_object *err = follow_get(ev, "error", json_type_object);
    fs->ended = 1;
    free(fs->status);
    fs->status = xstrdup(st ? json_object_get_string(st) : dflt);
    json_object_put(fs->error);
    fs->error = err ? json_object_get(err) : NULL;
}

static void follow_apply(follow_state *fs, json_object *ev) {
    json_object *t = follow_get(ev, "type", json_type_string);
    const char *type = t ? json_object_get_string(t) : "";
    if (!strcmp(type, "chunk"))
        follow_chunk(fs, ev);
    else if (!strcmp(type, "retry"))
        follow_retry(fs, ev);
    else if (!strcmp(type, "done"))
        follow_end(fs, ev, "succeeded");
    else if (!strcmp(type, "error"))
        follow_end(fs, ev, "failed");
    /* other types: a newer producer; nothing to show */
}

static int follow_replay(follow_state *fs);

/* One event's text, from the list (from_list) or the channel. Text that is
 * not an event is skipped: a stray publisher must not stop the watch.
 * Returns 0, or -1 when re-reading the list failed. */
static int follow_event(follow_state *fs, const char *text, size_t len, int from_list) {
    json_object *ev = NULL;
    if (fs->ended || cli_json_parse(text, len, &ev, NULL, 0) < 0) return 0;
    long long seq;
    if (!follow_count(ev, "seq", &seq)) {
        json_object_put(ev);
        return 0;
    }
    if (seq > fs->next_seq && !from_list && follow_replay(fs) < 0) {
        json_object_put(ev);
        return -1;
    }
    if (seq >= fs->next_seq && !fs->ended) {
        follow_apply(fs, ev);
        fs->next_seq = seq + 1;
    }
    json_object_put(ev);
    return 0;
}

/* Reads the events list from where the last read left it, a page at a
 * time, and applies what was not seen yet. Events are only ever appended
 * (RPUSH), so the entries read already keep their indexes: a long stream
 * (up to 100,000 chunks an attempt) is neither held whole nor read again
 * each time a seq skips ahead. */
static int follow_replay(follow_state *fs) {
    for (;;) {
        redisReply *r = cli_redis_cmd(fs->o->cmd, "LRANGE %s %lld %lld", fs->events_key,
                                      fs->list_read, fs->list_read + FOLLOW_PAGE - 1);
        if (!r) return -1;
        size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        for (size_t i = 0; i < n && !fs->ended; i++) {
            const redisReply *e = r->element[i];
            if (e->type == REDIS_REPLY_STRING) follow_event(fs, e->str, e->len, 1);
        }
        freeReplyObject(r);
        fs->list_read += (long long)n;
        if (n < FOLLOW_PAGE || fs->ended) return 0;
    }
}

/* A pub/sub reply: ["message", channel, payload]; anything else is ignored. */
static int follow_message(follow_state *fs, const redisReply *r) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return 0;
    const redisReply *kind = r->element[0], *payload = r->element[2];
    if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") ||
        payload->type != REDIS_REPLY_STRING)
        return 0;
    return follow_event(fs, payload->str, payload->len, 0);
}

/* The once-a-second look at the job hash. When it says the job ended, the
 * list is read once more for the final events; if the final event still is
 * not there, the hash's status ends the wait. */
static int follow_check_hash(follow_state *fs) {
    redisReply *r = cli_redis_cmd(fs->o->cmd, "HGET %s status", fs->job_key);
    if (!r) return -1;
    int terminal = follow_reply_ended(r);
    char *status = terminal ? xstrdup(r->str) : NULL;
    freeReplyObject(r);
    if (!terminal) return 0;
    int rc = follow_replay(fs);
    if (rc == 0 && !fs->ended) {
        fs->ended = 1;
        fs->status = status;
        status = NULL;
    }
    free(status);
    return rc;
}

/* Waits for the end. Returns 0, or -1 after printing why not. */
static int follow_wait(follow_state *fs) {
    const follow_opts *o = fs->o;
    double start = cli_now(), next_check = start;
    double deadline = o->timeout_s > 0 ? start + o->timeout_s : 0;
    if (follow_replay(fs) < 0) return -1;
    while (!fs->ended) {
        double now = cli_now();
        if (deadline && now >= deadline) {
            follow_close_line(fs);
            cli_fail("timed out after %g seconds waiting for job %s", o->timeout_s, o->id);
            return -1;
        }
        if (now >= next_check) {
            if (follow_check_hash(fs) < 0) return -1;
            next_check = now + FOLLOW_HASH_CHECK_S;
            continue;
        }
        double until = deadline && deadline < next_check ? deadline : next_check;
        redisReply *r;
        int n = cli_redis_read(o->sub, (int)((until - now) * 1000) + 1, &r);
        if (n < 0) return -1;
        if (n == 0) continue;
        int rc = follow_message(fs, r);
        freeReplyObject(r);
        if (rc < 0) return -1;
    }
    return 0;
}

/* ---- the result ---- */

/* HGETALL of the job, waiting up to FOLLOW_RESULT_WAIT_S for a terminal
 * status in case the final event was published before the hash was
 * written. NULL on a Redis failure. */
static redisReply *follow_fetch_result(follow_state *fs) {
    double give_up = cli_now() + FOLLOW_RESULT_WAIT_S;
    for (;;) {
        redisReply *r = cli_redis_cmd(fs->o->cmd, "HGETALL %s", fs->job_key);
        if (!r) return NULL;
        const redisReply *st = cli_redis_hash_get(r, "status");
        if (follow_reply_ended(st) || cli_now() >= give_up) return r;
        freeReplyObject(r);
        struct timespec ts = {0, FOLLOW_RESULT_POLL_NS};
        nanosleep(&ts, NULL);
    }
}

/* A JSON field of the job hash, parsed; NULL when absent or not JSON. */
static json_object *follow_hash_json(const redisReply *h, const char *field) {
    const redisReply *v = cli_redis_hash_get(h, field);
    json_object *o = NULL;
    if (!v || v->type != REDIS_REPLY_STRING) return NULL;
    if (cli_json_parse(v->str, v->len, &o, NULL, 0) < 0) return NULL;
    return o;
}

/* Prints the answer of a succeeded job: the content (unless it was streamed
 * already), else the refusal, then the tool calls. */
static int follow_print_answer(follow_state *fs, const redisReply *h) {
    int streamed = fs->o->print_chunks && fs->printed;
    json_object *resp = follow_hash_json(h, "response");
    json_object *msg = follow_get(follow_choice0(resp), "message", json_type_object);
    if (!msg) {
        json_object_put(resp);
        follow_close_line(fs);
        if (streamed) return CLI_OK;
        return cli_fail("job %s succeeded but its response is not stored", fs->o->id);
    }
    json_object *text = follow_get(msg, "content", json_type_string);
    if (!text) text = follow_get(msg, "refusal", json_type_string);
    if (text && !streamed)
        follow_write(fs, json_object_get_string(text), (size_t)json_object_get_string_len(text));
    follow_close_line(fs);
    json_object *calls = follow_get(msg, "tool_calls", json_type_array);
    if (calls && json_object_array_length(calls) > 0) {
        const char *s = json_object_to_json_string_ext(
            calls, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                       JSON_C_TO_STRING_NOSLASHESCAPE);
        follow_write(fs, s, strlen(s));
        follow_close_line(fs);
    }
    json_object_put(resp);
    return CLI_OK;
}

static int follow_print_failure(follow_state *fs, const redisReply *h) {
    json_object *from_hash = fs->error ? NULL : follow_hash_json(h, "error");
    json_object *err = fs->error ? fs->error : from_hash;
    json_object *code = follow_get(err, "code", json_type_string);
    json_object *msg = follow_get(err, "message", json_type_string);
    buf c = {0}, m = {0};
    follow_close_line(fs);
    cli_fail("job %s failed: %s: %s", fs->o->id,
             follow_err_text(&c, code ? json_object_get_string(code) : fs->status),
             follow_err_text(&m, msg ? json_object_get_string(msg) : "no error message"));
    buf_free(&c);
    buf_free(&m);
    json_object_put(from_hash);
    return CLI_ERR;
}

static int follow_finish(follow_state *fs) {
    int ok = follow_outcome_of(fs->status) == FOLLOW_SUCCEEDED;
    /* A failure with its error in the event needs nothing from the hash. */
    redisReply *h = ok || !fs->error ? follow_fetch_result(fs) : NULL;
    if (!h && (ok || !fs->error)) {
        follow_close_line(fs);
        return CLI_ERR;
    }
    int rc = ok ? follow_print_answer(fs, h) : follow_print_failure(fs, h);
    if (h) freeReplyObject(h);
    return rc;
}

redisContext *follow_subscribe(cli_ctx *ctx, const char *id) {
    redisContext *sub = cli_redis_connect(ctx);
    if (!sub) return NULL;
    char *chan = keys_stream(cli_ctx_prefix(ctx), id);
    int rc = cli_redis_subscribe(sub, chan);
    free(chan);
    if (rc < 0) {
        redisFree(sub);
        return NULL;
    }
    return sub;
}

int follow_job(const follow_opts *o) {
    follow_state fs;
    memset(&fs, 0, sizeof fs);
    fs.o = o;
    fs.tty = isatty(fileno(stdout));
    fs.events_key = keys_events(o->prefix, o->id);
    fs.job_key = keys_job(o->prefix, o->id);
    int rc = follow_wait(&fs) < 0 ? CLI_ERR : follow_finish(&fs);
    follow_close_line(&fs);
    free(fs.events_key);
    free(fs.job_key);
    free(fs.status);
    json_object_put(fs.error);
    return rc;
}

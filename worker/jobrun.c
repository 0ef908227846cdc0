/* jobrun.c — one job in flight, as a state machine; see jobrun.h for its life.
 *
 * States and what moves a job on:
 *   STARTING   START is in the outbox          -> its reply: LIMITED or REQUEST
 *   LIMITED    waiting for rate-limit capacity -> granted: REQUEST; waited too
 *                                                 long: the next fallback, or
 *                                                 the end
 *   REQUEST    an HTTP exchange runs           -> its outcome: the end, or
 *              (worker/upstream.h)                BACKOFF
 *   BACKOFF    waiting to retry                -> the timer: LIMITED or REQUEST
 *   FINISHING  FINISH is in the outbox         -> its reply: OVER, freed
 * A cancel ends the job at once in any state but STARTING (START's reply sees
 * it) and FINISHING (too late). The decisions (retry or not, how long to
 * wait, when to fall back) are worker/policy.h's; where the request goes is
 * worker/target.h's; this file carries them out and writes to Redis.
 *
 * One uv timer per job serves the backoff and the waits for rate-limit
 * capacity (never both at once). Everything the job writes to Redis before
 * its end is best effort (pipelined PUBLISH/RPUSH of events, the attempts
 * counter); START and FINISH go through the connection's reliable outbox, so
 * a Redis outage delays them but never loses them. */
#include "worker/jobrun.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/digest.h"
#include "common/job.h"
#include "common/jobpeek.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/output.h"
#include "common/random.h"
#include "common/scripts.h"
#include "common/usage.h"
#include "worker/metrics.h"
#include "worker/policy.h"
#include "worker/ratelimit.h"
#include "worker/report.h"
#include "worker/target.h"
#include "worker/upstream.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* The stream events a job may leave in P:events over all its attempts (an
 * attempt alone is bounded by UPSTREAM_MAX_CHUNKS): past it, no retry. */
#define JR_MAX_EVENTS 250000

/* Bounds of what a resumed run takes from Redis (jobrun_started): a seq far
 * past any JR_MAX_EVENTS, and how far ahead of our clock the first run's
 * started_at may be (another host's clock). */
#define JR_MAX_SEQ 1000000000000LL
#define JR_MAX_CLOCK_SKEW_MS 86400000LL

/* How soon to ask the rate limits again when Redis did not answer. */
#define JR_RATE_RETRY_MS 200

enum jr_state { JR_STARTING, JR_LIMITED, JR_REQUEST, JR_BACKOFF, JR_FINISHING, JR_OVER };

typedef struct jobrun_priv {
    enum jr_state state;
    job job;
    target tgt;             /* where the requests go now */
    upstream *up;           /* the HTTP exchange, made at the first request */
    int step_first_attempt; /* the first attempt number at the current target */
    long long rl_wait_since;/* unix ms the wait for capacity began, 0 = not waiting */
    int rl_pending;         /* a take is in flight (its reply has a pointer to us) */
    char *k_job, *k_events, *k_stream, *k_cancel;
    int attempt;            /* current attempt, 1-based */
    int first_attempt;      /* the attempt START counted */
    int max_attempts;
    long long seq;          /* next event seq */
    int chunks;             /* chunks published in this attempt */
    long long started_at, first_token_at;
    int charged;            /* attempts the upstream failed: they count toward max_attempts */
    int cancelled;
    int start_sent;         /* the START script is in the outbox */
    int aborted;            /* dropped by a drain while START was pending */
    char sha1[41];          /* of the job text: its name in the scripts */
    char *token;            /* this start's token, "<worker id>/<n>" */
    buf events;             /* events not sent yet, one after another ... */
    size_t *ev_ends;        /* ... event i ends at ev_ends[i] */
    int nev, ev_cap;
    int ev_queued;          /* on the worker's list of jobs with events to send */
    const char *end_code;   /* set: the job cannot run, and ends so after START */
    char *end_msg;
    long long job_bytes;    /* > 0: an oversized job, of which raw is the marker */
    char *metadata;         /* the job's metadata as JSON text, once the tree is dropped */
    uv_timer_t timer;
} jobrun_priv;

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const config *jr_cfg(const jobrun *jr) { return jr->w->cfg; }

static const char *jr_ratelimit_sha(const jobrun *jr) {
    return rconn_script_sha(jr->w->cmd, jr->w->scripts[WS_RATELIMIT]);
}

/* The first output of the exchange, if any, is the job's first token. */
static void jr_note_output(jobrun *jr) {
    jobrun_priv *p = jr->p;
    if (!p->first_token_at && p->up) p->first_token_at = upstream_first_output_ms(p->up);
}

/* ---- publishing events (best effort, pipelined) -------------------------- */

/* Events are written into p->events, one after another (p->ev_ends[i] is
 * where event i ends), and sent when the loop iteration's I/O is done
 * (jobrun_flush_events, from the worker): each is PUBLISHed, and all of
 * them go to the events list in one RPUSH. So the chunks of one read cost
 * one list command, and no allocation once the buffer has grown. */
static buf *jr_event_begin(jobrun *jr) {
    jobrun_priv *p = jr->p;
    if (p->nev == 0 && !p->ev_queued) {
        worker_events_pending(jr->w, jr);
        p->ev_queued = 1;
    }
    return &p->events;
}

static void jr_event_end(jobrun *jr) {
    jobrun_priv *p = jr->p;
    if (p->nev == p->ev_cap) {
        p->ev_cap = p->ev_cap ? 2 * p->ev_cap : 8;
        p->ev_ends = xrealloc(p->ev_ends, sizeof *p->ev_ends * (size_t)p->ev_cap);
    }
    p->ev_ends[p->nev++] = p->events.len;
}

/* A buffer grown past this by a burst is given back once sent: a slow
 * stream keeps only what its next event needs (one chunk event is a few
 * hundred bytes; a 4 KB limit let thousands of waiting streams keep 4 KB
 * each after a busy moment). */
#define JR_EVENTS_KEEP 1024

void jobrun_flush_events(jobrun *jr) {
    jobrun_priv *p = jr->p;
    p->ev_queued = 0;
    if (p->nev == 0) return;
    rconn *rc = jr->w->cmd;
    rargs push = {0};
    rargs_adds(&push, "RPUSH");
    rargs_adds(&push, p->k_events);
    size_t start = 0;
    for (int i = 0; i < p->nev; i++) {
        const char *text = p->events.data + start;
        size_t len = p->ev_ends[i] - start;
        const char *pub[] = {"PUBLISH", p->k_stream, text};
        size_t publ[] = {7, strlen(p->k_stream), len};
        rconn_send(rc, NULL, NULL, 3, pub, publ);
        rargs_add(&push, text, len);
        start = p->ev_ends[i];
    }
    rconn_send(rc, NULL, NULL, push.argc, push.argv, push.lens);
    rargs_free(&push);
    p->nev = 0;
    if (p->events.cap > JR_EVENTS_KEEP) {
        buf_free(&p->events);
        free(p->ev_ends);
        p->ev_ends = NULL;
        p->ev_cap = 0;
    } else {
        buf_reset(&p->events);
    }
}

static void jr_publish_retry(jobrun *jr, json_object *error) {
    buf *b = jr_event_begin(jr);
    buf_printf(b, "{\"seq\":%lld,\"type\":\"retry\",\"attempt\":%d,\"error\":%s}",
               jr->p->seq++, jr->p->attempt, json_object_to_json_string_ext(error, JSON_FLAGS));
    jr_event_end(jr);
}

/* A chunk of the upstream's stream: published as it came. */
static void jr_on_chunk(jobrun *jr, const char *data, size_t len) {
    jobrun_priv *p = jr->p;
    report_current(p->sha1);
    buf *b = jr_event_begin(jr);
    buf_printf(b, "{\"seq\":%lld,\"type\":\"chunk\",\"attempt\":%d,\"data\":", p->seq++,
               p->attempt);
    buf_append(b, data, len);
    buf_putc(b, '}');
    jr_event_end(jr);
    p->chunks++;
    report_current(NULL);
}

/* ---- the end: FINISH ------------------------------------------------------ */

/* How a job ends: what FINISH stores, publishes and sends to reply_to. */
typedef struct jr_end {
    job_status status;        /* succeeded, failed or cancelled */
    char *response;           /* success: the chat.completion as JSON text (owned) */
    json_object *error;       /* failure: the error object (owned) */
    const char *err_code;
    const char *err_msg;
    int http_status;          /* > 0: a final HTTP answer for the output line */
    const char *http_body;    /* its body as JSON text (borrowed) */
    const char *request_id;   /* its x-request-id (borrowed) */
    json_object *usage;       /* borrowed */
    const char *finish_reason;
} jr_end;

static void jr_free(jobrun *jr);

void jobrun_finished(jobrun *jr, const redisReply *reply) {
    if (reply->type == REDIS_REPLY_ERROR)
        log_error("finish_failed", "id=%s error=%s", log_quote(jr->p->job.id),
                  log_quote(reply->str));
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        /* A resend whose first try was stored before the reply got lost,
         * or the job was recovered and runs elsewhere (or another run owns
         * its id): either way its one result is not ours to add. */
        log_info("finish_skipped", "id=%s reason=not_ours", log_quote(jr->p->job.id));
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 2)
        log_warn("reply_to_failed", "id=%s key=%s reason=not_a_list", log_quote(jr->p->job.id),
                 log_quote(jr->p->job.reply_to));
    worker_run_gone(jr->w, jr);
    jr_free(jr);
}

/* JSON text of o, or NULL. It lives in o until o is freed or serialised
 * again: after the send. */
static const char *jr_json(json_object *o) {
    return o ? json_object_to_json_string_ext(o, JSON_FLAGS) : NULL;
}

/* The increments of the usage counters for end e. */
static void jr_usage_counts(const jobrun *jr, const jr_end *e, long long out[USAGE_NMETRICS]) {
    const target *t = &jr->p->tgt;
    usage_counts u;
    usage_extract(e->usage, &u);
    out[USAGE_REQUESTS] = 1;
    out[USAGE_SUCCEEDED] = e->status == JOB_SUCCEEDED;
    out[USAGE_FAILED] = e->status == JOB_FAILED;
    out[USAGE_PROMPT_TOKENS] = u.prompt;
    out[USAGE_COMPLETION_TOKENS] = u.completion;
    out[USAGE_TOTAL_TOKENS] = u.total;
    out[USAGE_CACHED_TOKENS] = u.cached;
    out[USAGE_REASONING_TOKENS] = u.reasoning;
    const price_cfg *price = config_price(t->prov, t->model);
    if (price && e->usage)
        out[USAGE_COST_MICRO_USD] =
            usage_cost_micro_usd(&u, price->input, price->cached_input, price->output);
}

/* The final stream event of end e into ev. */
static void jr_final_event(const jobrun *jr, const jr_end *e, const char *usage_json,
                           const char *error_json, buf *ev) {
    if (e->status == JOB_SUCCEEDED) {
        buf_printf(ev, "{\"seq\":%lld,\"type\":\"done\",\"status\":\"succeeded\",\"finish_reason\":",
                   jr->p->seq);
        if (e->finish_reason)
            buf_json_str(ev, e->finish_reason, strlen(e->finish_reason));
        else
            buf_puts(ev, "null");
        buf_printf(ev, ",\"usage\":%s}", usage_json ? usage_json : "null");
    } else {
        buf_printf(ev, "{\"seq\":%lld,\"type\":\"error\",\"status\":\"%s\",\"error\":%s}",
                   jr->p->seq, job_status_name(e->status), error_json);
    }
}

/* The dead-list entry of a failed job, in the shape of docs/protocol.md §3:
 * its text, or for a job too large to take out of Redis the first bytes
 * FETCH kept and its size. */
static void jr_dead_entry(const jobrun *jr, const char *error_json, long long when, buf *out) {
    const char *text = jr->raw;
    size_t len = jr->raw_len;
    long long bytes;
    if (jr->p->job_bytes > 0) scripts_oversized_parse(jr->raw, jr->raw_len, &bytes, &text, &len);
    buf_puts(out, "{\"job\":");
    buf_json_str(out, text, len);
    buf_printf(out, ",\"error\":%s,\"failed_at\":%lld", error_json, when);
    if (jr->p->job_bytes > 0) buf_printf(out, ",\"job_bytes\":%lld", jr->p->job_bytes);
    buf_putc(out, '}');
}

/* Builds and sends the FINISH script for end `e`; the jobrun leaves the
 * worker's slots now, and frees itself when the script has answered. */
static void jr_finish(jobrun *jr, jr_end *e) {
    jobrun_priv *p = jr->p;
    worker *w = jr->w;
    const config *cfg = jr_cfg(jr);
    long long end = now_ms();
    int has_id = p->job.id != NULL;
    p->state = JR_FINISHING;
    jobrun_flush_events(jr); /* they come before the final event */
    if (e->status == JOB_SUCCEEDED)
        w->done++;
    else
        w->failed++;
    const char *error_json = jr_json(e->error);
    const char *usage_json = jr_json(e->usage);

    buf ev = {0};
    jr_final_event(jr, e, usage_json, error_json, &ev);
    p->seq++;

    /* the output line for reply_to, and the dead-letter entry */
    char *line = NULL;
    if (p->job.reply_to)
        line = output_line(p->job.id, p->job.custom_id, e->http_status, e->request_id,
                           e->http_body, e->err_code, e->err_msg);
    buf dead = {0};
    if (e->status == JOB_FAILED) jr_dead_entry(jr, error_json, end, &dead);

    char day[11];
    keys_day(end, day);
    char *k_usage = keys_usage(cfg->prefix, day);
    scripts_finish_call call = {
        .processing_key = w->proc_keys[jr->queue],
        .job_key = has_id ? p->k_job : NULL,
        .events_key = has_id ? p->k_events : NULL,
        .stream_key = has_id ? p->k_stream : NULL,
        .usage_key = k_usage,
        .reply_to = p->job.reply_to,
        .cancel_key = has_id && p->cancelled ? p->k_cancel : NULL,
        .raw = jr->raw,
        .raw_len = jr->raw_len,
        .token = p->token,
        .sha1 = p->sha1,
        .ttl_s = p->job.result_ttl_s > 0 ? p->job.result_ttl_s : cfg->result_ttl_s,
        .event = ev.data,
        .event_len = ev.len,
        .output_line = line,
        .dead_entry = dead.data,
        .dead_entry_len = dead.len,
        .usage_tenant = p->job.tenant,
        .usage_model = p->job.model,
        .result = {
            .status = e->status,
            .attempts = p->attempt,
            .response = e->response,
            .error = error_json,
            .usage = usage_json,
            .model = p->tgt.model ? p->tgt.model : p->job.model, /* what served it */
            .provider = p->tgt.prov ? p->tgt.prov->name : NULL,
            .tenant = p->job.tenant,
            .queue = cfg->queues[jr->queue],
            .worker = w->id,
            .started_at = p->started_at,
            .first_token_at = p->first_token_at,
            .finished_at = end,
            .metadata = p->job.metadata ? jr_json(p->job.metadata) : p->metadata,
            .custom_id = p->job.custom_id,
        },
    };
    jr_usage_counts(jr, e, call.usage);
    metrics_job_finished(cfg->queues[jr->queue], e->status, e->err_code, p->job.tenant,
                         p->job.model, call.usage);
    /* the real usage corrects the estimate the buckets were charged */
    if (e->usage && p->tgt.rl.n > 0)
        rl_adjust(w->cmd, jr_ratelimit_sha(jr), &p->tgt.rl,
                  call.usage[USAGE_TOTAL_TOKENS] - p->tgt.rl_tokens);
    worker_finish(w, jr, &call);
    log_debug("job_end", "id=%s status=%s attempts=%d ms=%lld", log_quote(p->job.id),
              job_status_name(e->status), p->attempt, p->started_at ? end - p->started_at : 0);

    free(k_usage);
    free(line);
    buf_free(&dead);
    buf_free(&ev);
    free(e->response);
    json_object_put(e->error);
    upstream_stop(p->up); /* the HTTP handle goes back to the pool now */
    worker_run_end(w, jr);
}

/* Ends the job failed (or cancelled) with error `code`. http_status > 0 and
 * upstream_body: the upstream's final answer; request_id its x-request-id. */
static void jr_end_failed(jobrun *jr, job_status status, const char *code, const char *msg,
                          int http_status, json_object *upstream_body, const char *request_id) {
    jr_end e = {0};
    json_object *upstream = NULL;
    if (upstream_body) {
        json_object *err = NULL;
        if (json_object_object_get_ex(upstream_body, "error", &err) &&
            json_object_is_type(err, json_type_object))
            upstream = err;
        else
            upstream = upstream_body;
    }
    e.status = status;
    e.error = output_error(code, msg, http_status, upstream);
    e.err_code = code;
    e.err_msg = msg;
    /* Only an upstream 4xx/5xx is a "final HTTP answer" for the output line. */
    if (strcmp(code, "upstream_error") == 0 && http_status > 0) {
        e.http_status = http_status;
        e.http_body = jr_json(upstream_body);
        e.request_id = request_id;
    }
    e.usage = upstream_usage(jr->p->up);
    jr_finish(jr, &e);
}

/* Ends the job failed or cancelled for a reason of its own (no upstream
 * answer to report). */
static void jr_fail(jobrun *jr, job_status status, const char *code, const char *msg) {
    jr_end_failed(jr, status, code, msg, 0, NULL, NULL);
}

static void jr_cancelled(jobrun *jr) {
    jr_fail(jr, JOB_CANCELLED, "cancelled", "the job was cancelled");
}

/* Ends the job as succeeded with the upstream's answer in o. */
static void jr_succeed(jobrun *jr, upstream_outcome *o) {
    jr_end e = {0};
    e.status = JOB_SUCCEEDED;
    e.response = o->text; /* stored and sent as it is; jr_finish frees it */
    o->text = NULL;
    e.http_status = 200;
    e.http_body = e.response;
    e.request_id = o->request_id;
    e.usage = o->usage;
    e.finish_reason = o->finish_reason;
    jr_finish(jr, &e);
}

/* ---- freeing --------------------------------------------------------------- */

static void jr_on_timer_closed(uv_handle_t *h) {
    jobrun *jr = h->data;
    jobrun_priv *p = jr->p;
    job_free(&p->job);
    target_free(&p->tgt);
    free(p->k_job);
    free(p->k_events);
    free(p->k_stream);
    free(p->k_cancel);
    free(p->token);
    free(p->end_msg);
    free(p->metadata);
    buf_free(&p->events);
    free(p->ev_ends);
    free(p);
    free(jr->raw);
    free(jr);
}

static void jr_free(jobrun *jr) {
    jobrun_priv *p = jr->p;
    p->state = JR_OVER;
    upstream_free(p->up);
    p->up = NULL;
    uv_timer_stop(&p->timer);
    metrics_forget(jr);
    uv_close((uv_handle_t *)&p->timer, jr_on_timer_closed);
}

void jobrun_abort(jobrun *jr) {
    if (jr->p->ev_queued) worker_events_forget(jr->w, jr);
    upstream_stop(jr->p->up);
    worker_run_remove(jr->w, jr);
    /* A START or a rate-limit take still in flight holds a pointer to us:
     * its reply frees. */
    if ((jr->p->state == JR_STARTING && jr->p->start_sent) || jr->p->rl_pending) {
        jr->p->aborted = 1;
        return;
    }
    jr_free(jr);
}

/* ---- the parsed job: kept only while needed --------------------------------- */

/* The parsed job (json-c's tree) takes a few KB, and once the request body
 * is made only a fallback needs it, to make another body: so it is dropped
 * when the job has its first target, and parsed again from jr->raw by a
 * fallback. A thousand waiting streams keep a few MB less. The metadata,
 * which FINISH stores, is kept as JSON text. */
static void jr_drop_tree(jobrun *jr) {
    jobrun_priv *p = jr->p;
    if (!p->job.root) return;
    if (p->job.metadata && !p->metadata) p->metadata = xstrdup(jr_json(p->job.metadata));
    json_object_put(p->job.root);
    p->job.root = p->job.body = p->job.metadata = NULL;
}

/* The tree back from jr->raw, its body naming the current target's model as
 * target_set() left it. Returns 0, or -1 when the text does not parse again
 * (it did at the start: cannot happen). */
static int jr_tree(jobrun *jr) {
    jobrun_priv *p = jr->p;
    const config *cfg = jr_cfg(jr);
    if (p->job.root) return 0;
    job j;
    job_opts opts = {.max_bytes = (size_t)cfg->max_job_bytes, .prefix = cfg->prefix};
    char err[256];
    if (job_parse_opts(&j, jr->raw, jr->raw_len, &opts, err, sizeof err) != 0 || !j.body) {
        log_error("job_reparse_failed", "id=%s error=%s", log_quote(p->job.id), log_quote(err));
        job_free(&j);
        return -1;
    }
    p->job.root = j.root;
    p->job.body = j.body;
    p->job.metadata = j.metadata;
    j.root = NULL;
    job_free(&j);
    if (p->tgt.model)
        json_object_object_add(p->job.body, "model", json_object_new_string(p->tgt.model));
    return 0;
}

/* ---- targets ---------------------------------------------------------------- */

/* Moves to the next fallback target, if there is one; `code` says why (for
 * the log). Returns 1, or 0 when none is left. */
static int jr_next_target(jobrun *jr, const char *code) {
    jobrun_priv *p = jr->p;
    if (jr_tree(jr) != 0) return 0;
    int moved = target_next(&p->tgt, jr_cfg(jr), &p->job);
    jr_drop_tree(jr);
    if (!moved) return 0;
    p->step_first_attempt = p->attempt + 1;
    log_info("fallback", "id=%s code=%s to_provider=%s to_model=%s", log_quote(p->job.id), code,
             p->tgt.prov->name, log_quote(p->tgt.model));
    return 1;
}

/* ---- attempts ------------------------------------------------------------------ */

static void jr_send(jobrun *jr);
static void jr_rate_take(jobrun *jr);

/* Starts an attempt: first capacity from the shared rate limits, if any. */
static void jr_attempt(jobrun *jr) {
    jobrun_priv *p = jr->p;
    upstream_reset(p->up); /* nothing of an earlier attempt counts */
    p->chunks = 0;
    p->attempt++;
    if (p->tgt.rl.n > 0) {
        p->state = JR_LIMITED;
        p->rl_wait_since = now_ms();
        jr_rate_take(jr);
        return;
    }
    jr_send(jr);
}

static void jr_on_upstream_done(jobrun *jr, upstream_outcome *o);

/* Sends the HTTP request of the current attempt. */
static void jr_send(jobrun *jr) {
    jobrun_priv *p = jr->p;
    p->state = JR_REQUEST;

    /* the attempt counters, for observers and for a resumed run (START
     * counted the first attempt already) */
    if (p->attempt > p->first_attempt) {
        char n[16], c[16];
        snprintf(n, sizeof n, "%d", p->attempt);
        snprintf(c, sizeof c, "%d", p->charged);
        const char *a[] = {"HSET", p->k_job, "attempts", n, "charged", c};
        size_t al[] = {4, strlen(p->k_job), 8, strlen(n), 7, strlen(c)};
        rconn_send(jr->w->cmd, NULL, NULL, 6, a, al);
    }

    if (!p->up)
        p->up = upstream_new(jr->w->loop, jr->w->http, jr->w->tok, jr, jr_on_chunk,
                             jr_on_upstream_done);
    upstream_request req;
    target_request(&p->tgt, jr_cfg(jr), &p->job, &req);
    req.owner = p->sha1;
    const char *err = NULL;
    metrics_attempt_sent(jr, p->tgt.prov->name);
    if (upstream_start(p->up, &req, &err) != 0) jr_fail(jr, JOB_FAILED, "connection_error", err);
}

static void jr_on_backoff(uv_timer_t *t) { jr_attempt(t->data); }

/* A failed attempt: another one (after a backoff), at this target or the
 * next fallback, or the end of the job. */
static void jr_attempt_failed(jobrun *jr, upstream_outcome *o) {
    jobrun_priv *p = jr->p;
    const config *cfg = jr_cfg(jr);
    int tries = p->attempt - p->step_first_attempt + 1; /* attempts at this target */
    long long retry_after = o->limits.retry_after_ms;
    policy_next next = policy_after_failure(o->retryable, jr->w->aborting, tries, p->max_attempts);
    if (next == POLICY_FALLBACK && jr_next_target(jr, o->code)) {
        next = POLICY_RETRY;
        tries = 0;         /* a fresh set of attempts at the new target */
        retry_after = -1;  /* what the old target said is not the new one's */
    }
    if (next == POLICY_RETRY && p->seq >= JR_MAX_EVENTS) {
        char msg[160];
        snprintf(msg, sizeof msg, "the job's attempts published %lld stream events, more than %d",
                 p->seq, JR_MAX_EVENTS);
        jr_fail(jr, JOB_FAILED, "too_large", msg);
        return;
    }
    if (next != POLICY_RETRY) {
        jr_end_failed(jr, JOB_FAILED, o->code, o->message, o->status, o->upstream, o->request_id);
        return;
    }
    metrics_retry(o->code);
    log_info("attempt_failed", "id=%s attempt=%d code=%s status=%d error=%s",
             log_quote(p->job.id), p->attempt, o->code, o->status, log_quote(o->message));
    p->charged++;
    if (p->chunks > 0) {
        json_object *err = output_error(o->code, o->message, o->status, o->upstream);
        jr_publish_retry(jr, err);
        json_object_put(err);
    }
    long long delay = policy_retry_delay_ms(retry_after, tries, cfg->retry_base_ms,
                                            cfg->retry_max_ms, random_u32());
    upstream_stop(p->up);
    p->state = JR_BACKOFF;
    uv_timer_start(&p->timer, jr_on_backoff, (uint64_t)delay, 0);
}

/* The exchange of the current attempt is over. */
static void jr_on_upstream_done(jobrun *jr, upstream_outcome *o) {
    jobrun_priv *p = jr->p;
    report_current(p->sha1); /* the answer is assembled and stored below */
    metrics_attempt_done(jr, p->tgt.prov->name, upstream_first_output_ms(p->up));
    jr_note_output(jr);
    target_feedback(&p->tgt, jr->w->cmd, jr_ratelimit_sha(jr), o->http_status, &o->limits);
    if (o->ok)
        jr_succeed(jr, o);
    else
        jr_attempt_failed(jr, o);
    upstream_outcome_free(o);
    report_current(NULL);
}

/* ---- waiting for rate-limit capacity ------------------------------------------------ */

static void jr_on_rate_timer(uv_timer_t *t) { jr_rate_take(t->data); }

static int jr_token_limited(const jobrun *jr) {
    const rl_target *rl = &jr->p->tgt.rl;
    for (int i = 0; i < rl->n; i++)
        if (rl->tok_iv[i] > 0) return 1;
    return 0;
}

static void jr_on_rate(rconn *rc, redisReply *reply, void *priv) {
    jobrun *jr = priv;
    jobrun_priv *p = jr->p;
    const config *cfg = jr_cfg(jr);
    (void)rc;
    p->rl_pending = 0;
    if (p->aborted) {
        jr_free(jr);
        return;
    }
    if (p->cancelled) {
        jr_cancelled(jr);
        return;
    }
    long long wait = JR_RATE_RETRY_MS; /* Redis is away: ask again soon */
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        wait = reply->integer;
    else if (reply)
        log_error("ratelimit_failed", "error=%s",
                  log_quote(reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply"));
    long long d = policy_rate_wait_ms(wait, jr_token_limited(jr), now_ms() - p->rl_wait_since,
                                      cfg->rate_limit_wait_ms, random_u32());
    metrics_rate_reply(p->tgt.prov->name, d, now_ms() - p->rl_wait_since);
    if (d == 0) {
        p->rl_wait_since = 0;
        jr_send(jr);
        return;
    }
    if (d < 0) {
        p->rl_wait_since = 0;
        char msg[200];
        snprintf(msg, sizeof msg, "no capacity under the rate limits of provider %s within %lld ms",
                 p->tgt.prov->name, cfg->rate_limit_wait_ms);
        if (!jr->w->aborting && jr_next_target(jr, "rate_limited")) {
            jr_attempt(jr);
            return;
        }
        jr_fail(jr, JOB_FAILED, "rate_limited", msg);
        return;
    }
    uv_timer_start(&p->timer, jr_on_rate_timer, (uint64_t)d, 0);
}

/* Asks the shared buckets for capacity for one request of this job. */
static void jr_rate_take(jobrun *jr) {
    jobrun_priv *p = jr->p;
    rargs a = {0};
    rl_take_args(&p->tgt.rl, jr_ratelimit_sha(jr), p->tgt.rl_tokens, &a);
    if (rconn_send(jr->w->cmd, jr_on_rate, jr, a.argc, a.argv, a.lens) == 0)
        p->rl_pending = 1;
    else
        uv_timer_start(&p->timer, jr_on_rate_timer, JR_RATE_RETRY_MS, 0); /* Redis is away */
    rargs_free(&a);
}

/* ---- start --------------------------------------------------------------------- */

static void jr_on_dropped(rconn *rc, redisReply *reply, void *priv) {
    jobrun *jr = priv;
    (void)rc;
    if (reply->type == REDIS_REPLY_ERROR)
        log_error("drop_failed", "id=%s error=%s", log_quote(jr->p->job.id), log_quote(reply->str));
    worker_run_gone(jr->w, jr);
    jr_free(jr);
}

/* Another job with this id is queued, running or stored: this one is not
 * run and writes nothing; its entry leaves the processing list. */
static void jr_drop(jobrun *jr) {
    jobrun_priv *p = jr->p;
    worker *w = jr->w;
    log_info("job_duplicate", "id=%s", log_quote(p->job.id));
    metrics_job_duplicate(w->cfg->queues[jr->queue]);
    w->duplicates++;
    p->state = JR_FINISHING;
    worker_run_end(w, jr);
    char *marker = keys_drop(w->cfg->prefix, p->token);
    scripts_drop_call call = {.processing_key = w->proc_keys[jr->queue],
                              .marker_key = marker,
                              .raw = jr->raw,
                              .raw_len = jr->raw_len};
    rargs a = {0};
    scripts_drop_args(&call, &a);
    rconn_eval_reliable(w->cmd, w->scripts[WS_DROP], jr_on_dropped, jr, a.argc, a.argv, a.lens);
    rargs_free(&a);
    free(marker);
}

/* The job cannot run (invalid, no provider): it ends the way recorded. */
static void jr_end_now(jobrun *jr) {
    jobrun_priv *p = jr->p;
    if (strcmp(p->end_code, "invalid_job") == 0)
        log_warn("job_invalid", "id=%s error=%s", log_quote(p->job.id), log_quote(p->end_msg));
    jr_fail(jr, JOB_FAILED, p->end_code, p->end_msg);
}

static long long jr_int(const redisReply *r) {
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r->type == REDIS_REPLY_STRING) return strtoll(r->str, NULL, 10);
    return 0;
}

void jobrun_started(jobrun *jr, redisReply *const *v) {
    jobrun_priv *p = jr->p;
    p->start_sent = 0;
    if (p->aborted) {
        jr_free(jr);
        return;
    }
    if (!v) {
        jr_fail(jr, JOB_FAILED, "connection_error", "cannot record the job's start in Redis");
        return;
    }
    long long kind = jr_int(v[0]);
    if (kind == SCRIPTS_START_DUPLICATE) {
        jr_drop(jr);
        return;
    }
    long long cancel = jr_int(v[1]);
    p->seq = jr_int(v[2]);
    long long prior = jr_int(v[3]);
    long long charged = jr_int(v[4]);
    /* The seq and the first run's started_at come from the job hash and its
     * events, which anyone can write: out of range they are not trusted
     * (seq++ and `now - started_at` must not overflow). */
    if (p->seq < 0 || p->seq > JR_MAX_SEQ) p->seq = 0;
    if (v[5]->type == REDIS_REPLY_STRING && v[5]->len > 0) {
        long long first = strtoll(v[5]->str, NULL, 10);
        if (first > 0 && first <= p->started_at + JR_MAX_CLOCK_SKEW_MS) p->started_at = first;
    }
    /* A resumed job (its worker died or was stopped) keeps the attempts it
     * made, and what is left of max_attempts counts only the ones the
     * upstream failed: an interruption is not the job's fault. */
    if (prior < 0 || prior > 1000000) prior = 0;
    if (charged < 0 || charged > prior) charged = prior;
    p->attempt = (int)prior;
    p->first_attempt = (int)prior + 1;
    p->charged = (int)charged;
    p->step_first_attempt = (int)(prior - charged) + 1;
    if (p->end_code) {
        jr_end_now(jr);
        return;
    }
    if (cancel || p->cancelled) {
        p->cancelled = 1;
        jr_cancelled(jr);
        return;
    }
    if (kind == SCRIPTS_START_RESUMED && p->seq > 0) {
        json_object *err = output_error("interrupted",
                                        "the attempt was cut short: its worker stopped", 0, NULL);
        jr_publish_retry(jr, err);
        json_object_put(err);
    }
    jr_attempt(jr);
}

/* Records how the job ends once START has claimed its id. */
static void jr_cannot_run(jobrun *jr, const char *code, const char *msg) {
    jr->p->end_code = code;
    jr->p->end_msg = xstrdup(msg);
}

/* The provider of the job's own target: the one it names, else the first
 * that serves its model. Returns 0 (*prov NULL: none serves it), or -1 when
 * the job names a provider that is not configured (err says so). */
static int jr_route(const config *cfg, const job *j, const provider_cfg **prov, char *err,
                    size_t errlen) {
    if (!j->provider) {
        *prov = config_route(cfg, j->model);
        return 0;
    }
    *prov = config_provider(cfg, j->provider);
    if (*prov) return 0;
    snprintf(err, errlen, "provider: no provider named \"%s\" is configured", j->provider);
    return -1;
}

/* An oversized job's marker: what its excerpt tells of its id and reply_to
 * (only values that pass the rules for them). */
static void jr_read_oversized(jobrun *jr, long long bytes, const char *ex, size_t exlen) {
    jobrun_priv *p = jr->p;
    const config *cfg = jr_cfg(jr);
    jobpeek pk;
    jobpeek_read(ex, exlen, &pk);
    const char *id = pk.id ? pk.id : pk.custom_id;
    if (id && job_id_valid(id)) p->job.id = xstrdup(id);
    if (pk.custom_id && job_id_valid(pk.custom_id)) p->job.custom_id = xstrdup(pk.custom_id);
    if (pk.reply_to && job_check_reply_to(cfg->prefix, pk.reply_to, NULL, 0) == 0)
        p->job.reply_to = xstrdup(pk.reply_to);
    jobpeek_free(&pk);
    p->job_bytes = bytes;
    char msg[256];
    snprintf(msg, sizeof msg,
             "the job is %lld bytes, more than max_job_bytes (%lld): it was refused before "
             "leaving Redis",
             bytes, cfg->max_job_bytes);
    jr_cannot_run(jr, "invalid_job", msg);
}

/* Parses, validates and routes the job; what makes it unable to run is
 * recorded for after START. */
static void jr_prepare(jobrun *jr) {
    jobrun_priv *p = jr->p;
    const config *cfg = jr_cfg(jr);
    char err[512];
    long long bytes;
    const char *ex;
    size_t exlen;
    if (scripts_oversized_parse(jr->raw, jr->raw_len, &bytes, &ex, &exlen)) {
        jr_read_oversized(jr, bytes, ex, exlen);
        return;
    }
    job_opts opts = {.max_bytes = (size_t)cfg->max_job_bytes, .prefix = cfg->prefix};
    if (job_parse_opts(&p->job, jr->raw, jr->raw_len, &opts, err, sizeof err) != 0) {
        jr_cannot_run(jr, "invalid_job", err);
        return;
    }
#ifdef CHATQ_TEST_HOOKS
    /* Test builds only (build/chatq-worker-testhooks, never installed): a job
     * whose body has "chatq_test_crash": true kills its worker, so the tests
     * can make a poison pill. */
    json_object *crash = NULL;
    if (json_object_object_get_ex(p->job.body, "chatq_test_crash", &crash) &&
        json_object_get_boolean(crash))
        abort();
#endif
    const provider_cfg *prov;
    if (jr_route(cfg, &p->job, &prov, err, sizeof err) != 0) {
        jr_cannot_run(jr, "invalid_job", err);
        return;
    }
    p->max_attempts = p->job.max_attempts > 0 ? (int)p->job.max_attempts : cfg->max_attempts;
    if (!prov) {
        /* Not an invalid job (the model may be served once configured), but
         * nothing can run it: it fails without an attempt. */
        snprintf(err, sizeof err, "no provider serves model \"%s\"", p->job.model);
        jr_cannot_run(jr, "no_provider", err);
        return;
    }
    target_set(&p->tgt, cfg->prefix, &p->job, prov, p->job.model);
}

jobrun *jobrun_new(worker *w, const char *raw, size_t len, int queue) {
    jobrun *jr = xcalloc(1, sizeof *jr);
    jobrun_priv *p = xcalloc(1, sizeof *p);
    const config *cfg = w->cfg;
    jr->w = w;
    jr->p = p;
    jr->raw = xstrndup(raw, len);
    jr->raw_len = len;
    jr->queue = queue;
    uv_timer_init(w->loop, &p->timer);
    p->timer.data = jr;
    p->state = JR_STARTING;
    p->started_at = now_ms();
    target_init(&p->tgt);
    worker_run_add(w, jr);
    metrics_job_started(cfg->queues[queue]);
    digest_sha1_hex(raw, len, p->sha1);
    report_current(p->sha1); /* a fault while reading it is this job's */
    jr_prepare(jr);
    jr_drop_tree(jr);
    report_current(NULL);
    if (p->job.id) {
        p->k_job = keys_job(cfg->prefix, p->job.id);
        p->k_events = keys_events(cfg->prefix, p->job.id);
        p->k_stream = keys_stream(cfg->prefix, p->job.id);
        p->k_cancel = keys_cancel(cfg->prefix, p->job.id);
    }
    return jr;
}

int jobrun_start_add(jobrun *jr, scripts_batch *b) {
    jobrun_priv *p = jr->p;
    worker *w = jr->w;
    if (!p->job.id) { /* no id to claim: it ends at once */
        jr_end_now(jr);
        return 0;
    }
    p->token = xasprintf("%s/%llu", w->id, ++w->starts);
    scripts_start_call call = {
        .job_key = p->k_job,
        .events_key = p->k_events,
        .cancel_key = p->k_cancel,
        .sha1 = p->sha1,
        .worker_id = w->id,
        .queue = w->cfg->queues[jr->queue],
        .model = p->job.model,
        .tenant = p->job.tenant,
        .provider = p->tgt.prov ? p->tgt.prov->name : NULL,
        .now_ms = p->started_at,
        .token = p->token,
    };
    scripts_start_add(b, &call);
    p->start_sent = 1;
    return 1;
}

/* ---- cancel ------------------------------------------------------------------------ */

void jobrun_cancel_id(worker *w, const char *id) {
    jobrun *jr = w->runs;
    while (jr) {
        jobrun *next = jr->next;
        jobrun_priv *p = jr->p;
        if (p->job.id && strcmp(p->job.id, id) == 0 && !p->cancelled) {
            p->cancelled = 1;
            log_info("job_cancel", "id=%s state=%d", log_quote(id), (int)p->state);
            if (p->state == JR_REQUEST) {
                jr_note_output(jr);
                upstream_stop(p->up); /* closes the upstream connection */
                jr_cancelled(jr);
            } else if ((p->state == JR_LIMITED && !p->rl_pending) || p->state == JR_BACKOFF) {
                uv_timer_stop(&p->timer);
                jr_cancelled(jr);
            }
            /* JR_STARTING: the START reply sees p->cancelled; JR_LIMITED with
             * a take in flight: its reply does. */
        }
        jr = next;
    }
}

/* jobrun.c — one job in flight: validate, route, call the upstream, stream,
 * retry, store. See jobrun.h for the life cycle.
 *
 * All of a jobrun's state is in struct jobrun_priv below. One uv timer per job
 * serves both the retry backoff and the stream idle timeout (never both at
 * once). Everything the job writes to Redis before its end is best effort
 * (pipelined PUBLISH/RPUSH of events, the attempts counter); the START and
 * FINISH scripts go through the connection's reliable outbox, so a Redis
 * outage delays them but never loses them. */
#include "worker/jobrun.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/assembler.h"
#include "common/buf.h"
#include "common/job.h"
#include "common/jsonparse.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/output.h"
#include "common/random.h"
#include "common/scripts.h"
#include "common/sse.h"
#include "common/usage.h"
#include "worker/ratelimit.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

enum jr_state { JR_STARTING, JR_LIMITED, JR_REQUEST, JR_BACKOFF, JR_FINISHING, JR_OVER };

typedef struct jobrun_priv {
    enum jr_state state;
    job job;
    const provider_cfg *prov; /* the provider of the current target */
    char *model;            /* the model of the current target (job.model, or a fallback's) */
    int step;               /* -1: the job's own target; else the fallback step */
    int step_first_attempt; /* the first attempt number of the current target */
    rl_target rl;           /* rate-limit buckets of the current target */
    long long rl_tokens;    /* tokens taken from them for this job (estimate) */
    long long rl_wait_since;/* unix ms the wait for capacity began, 0 = not waiting */
    int rl_pending;         /* a take is in flight (its reply has a pointer to us) */
    long long rl_rem_req, rl_rem_tok;       /* x-ratelimit-remaining-*; -1 = none */
    long long rl_reset_req, rl_reset_tok;   /* x-ratelimit-reset-* in ms; -1 = none */
    char *body;             /* request body sent upstream */
    size_t body_len;
    char *k_job, *k_events, *k_stream, *k_cancel;
    int attempt;            /* current attempt, 1-based */
    int first_attempt;      /* the attempt START counted */
    int max_attempts;
    long long seq;          /* next event seq */
    int chunks;             /* chunks published in this attempt */
    long long started_at, first_token_at;
    int cancelled;
    int start_sent;         /* the START script is in the outbox */
    int aborted;            /* dropped by a drain while START was pending */
    /* the current HTTP attempt */
    CURL *easy;
    struct curl_slist *headers;
    sse_parser sse;
    assembler *asmb;
    buf in;                 /* a non-SSE response body */
    size_t received;        /* body bytes received in this attempt */
    int status;             /* HTTP status, 0 until known */
    int is_sse;
    int done_seen;          /* data: [DONE] seen */
    char *request_id;
    long long retry_after_ms; /* -1 when the upstream gave none */
    const char *fail_code;  /* set when a callback aborts the transfer */
    char *fail_msg;
    int fail_retryable;
    json_object *fail_upstream;
    uint64_t last_activity; /* uv_now() of the last byte received */
    uv_timer_t timer;
} jobrun_priv;

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const config *jr_cfg(const jobrun *jr) { return jr->w->cfg; }
static const char *jr_prefix(const jobrun *jr) { return jr->w->cfg->prefix; }

static long long jr_timeout_ms(const jobrun *jr) {
    if (jr->p->job.timeout_ms > 0) return jr->p->job.timeout_ms;
    if (jr->p->prov && jr->p->prov->timeout_ms > 0) return jr->p->prov->timeout_ms;
    return jr_cfg(jr)->timeout_ms;
}

static long long jr_idle_ms(const jobrun *jr) {
    if (jr->p->prov && jr->p->prov->idle_timeout_ms > 0) return jr->p->prov->idle_timeout_ms;
    return jr_cfg(jr)->idle_timeout_ms;
}

/* ---- publishing events (best effort, pipelined) -------------------------- */

static void jr_publish(jobrun *jr, const char *text, size_t len) {
    jobrun_priv *p = jr->p;
    const char *pub[] = {"PUBLISH", p->k_stream, text};
    size_t publ[] = {7, strlen(p->k_stream), len};
    const char *push[] = {"RPUSH", p->k_events, text};
    size_t pushl[] = {5, strlen(p->k_events), len};
    rconn_send(jr->w->cmd, NULL, NULL, 3, pub, publ);
    rconn_send(jr->w->cmd, NULL, NULL, 3, push, pushl);
}

static void jr_publish_retry(jobrun *jr, json_object *error) {
    buf b = {0};
    buf_printf(&b, "{\"seq\":%lld,\"type\":\"retry\",\"attempt\":%d,\"error\":%s}",
               jr->p->seq++, jr->p->attempt, json_object_to_json_string_ext(error, JSON_FLAGS));
    jr_publish(jr, b.data, b.len);
    buf_free(&b);
}

/* ---- the end: FINISH ------------------------------------------------------ */

typedef struct jr_outcome {
    job_status status;        /* succeeded, failed or cancelled */
    char *response;           /* success: the chat.completion as JSON text (owned) */
    json_object *error;       /* failure: the error object (owned) */
    const char *err_code;
    const char *err_msg;
    int http_status;          /* > 0: a final HTTP answer for the output line */
    const char *http_body;    /* its body as JSON text (borrowed) */
    json_object *usage;       /* borrowed */
    const char *finish_reason;
} jr_outcome;

static void jr_free(jobrun *jr);
static void jr_reset_attempt(jobrun *jr);

static void jr_on_finished(rconn *rc, redisReply *reply, void *priv) {
    jobrun *jr = priv;
    (void)rc;
    if (reply->type == REDIS_REPLY_ERROR)
        log_error("finish_failed", "id=%s error=%s", log_quote(jr->p->job.id),
                  log_quote(reply->str));
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        /* Not in our processing list: either this is a resend whose first
         * try was stored before the reply got lost, or the job was recovered
         * and runs elsewhere. Either way its one result is not ours to add. */
        log_info("finish_skipped", "id=%s reason=not_in_processing_list",
                 log_quote(jr->p->job.id));
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 2)
        log_warn("reply_to_failed", "id=%s key=%s reason=not_a_list", log_quote(jr->p->job.id),
                 log_quote(jr->p->job.reply_to));
    jr_free(jr);
}

/* JSON text of o, or NULL. It lives in o until o is freed or serialised
 * again: after the send. */
static const char *jr_json(json_object *o) {
    return o ? json_object_to_json_string_ext(o, JSON_FLAGS) : NULL;
}

/* The increments of the usage counters for outcome o. */
static void jr_usage_counts(const jobrun *jr, const jr_outcome *o,
                            long long out[USAGE_NMETRICS]) {
    const jobrun_priv *p = jr->p;
    usage_counts u;
    usage_extract(o->usage, &u);
    out[USAGE_REQUESTS] = 1;
    out[USAGE_SUCCEEDED] = o->status == JOB_SUCCEEDED;
    out[USAGE_FAILED] = o->status == JOB_FAILED;
    out[USAGE_PROMPT_TOKENS] = u.prompt;
    out[USAGE_COMPLETION_TOKENS] = u.completion;
    out[USAGE_TOTAL_TOKENS] = u.total;
    out[USAGE_CACHED_TOKENS] = u.cached;
    out[USAGE_REASONING_TOKENS] = u.reasoning;
    const price_cfg *price = config_price(p->prov, p->model);
    if (price && o->usage)
        out[USAGE_COST_MICRO_USD] =
            usage_cost_micro_usd(&u, price->input, price->cached_input, price->output);
}

/* Builds and sends the FINISH script for outcome `o`; the jobrun leaves the
 * worker's slots now, and frees itself when the script has answered. */
static void jr_finish(jobrun *jr, jr_outcome *o) {
    jobrun_priv *p = jr->p;
    worker *w = jr->w;
    const config *cfg = jr_cfg(jr);
    long long end = now_ms();
    int has_id = p->job.id != NULL;
    p->state = JR_FINISHING;
    if (o->status == JOB_SUCCEEDED)
        w->done++;
    else
        w->failed++;
    const char *error_json = jr_json(o->error);
    const char *usage_json = jr_json(o->usage);

    /* the final event */
    buf ev = {0};
    if (o->status == JOB_SUCCEEDED) {
        buf_printf(&ev, "{\"seq\":%lld,\"type\":\"done\",\"status\":\"succeeded\",\"finish_reason\":",
                   p->seq);
        if (o->finish_reason)
            buf_json_str(&ev, o->finish_reason, strlen(o->finish_reason));
        else
            buf_puts(&ev, "null");
        buf_printf(&ev, ",\"usage\":%s}", usage_json ? usage_json : "null");
    } else {
        buf_printf(&ev, "{\"seq\":%lld,\"type\":\"error\",\"status\":\"%s\",\"error\":%s}", p->seq,
                   job_status_name(o->status), error_json);
    }
    p->seq++;

    /* the output line for reply_to, and the dead-letter entry */
    char *line = NULL;
    if (p->job.reply_to)
        line = output_line(p->job.id, p->job.custom_id, o->http_status, p->request_id,
                           o->http_body, o->err_code, o->err_msg);
    buf dead = {0};
    if (o->status == JOB_FAILED) {
        buf_puts(&dead, "{\"job\":");
        buf_json_str(&dead, jr->raw, jr->raw_len);
        buf_printf(&dead, ",\"error\":%s,\"failed_at\":%lld}", error_json, end);
    }

    char day[11];
    keys_day(end, day);
    char *k_usage = keys_usage(jr_prefix(jr), day);
    char *k_dead = keys_dead(jr_prefix(jr));
    scripts_finish_call call = {
        .processing_key = w->proc_keys[jr->queue],
        .job_key = has_id ? p->k_job : NULL,
        .events_key = has_id ? p->k_events : NULL,
        .stream_key = has_id ? p->k_stream : NULL,
        .usage_key = k_usage,
        .reply_to = p->job.reply_to,
        .dead_key = k_dead,
        .cancel_key = has_id && p->cancelled ? p->k_cancel : NULL,
        .crashes_key = w->crashes_key,
        .raw = jr->raw,
        .raw_len = jr->raw_len,
        .ttl_s = p->job.result_ttl_s > 0 ? p->job.result_ttl_s : cfg->result_ttl_s,
        .event = ev.data,
        .event_len = ev.len,
        .output_line = line,
        .dead_entry = dead.data,
        .dead_entry_len = dead.len,
        .usage_tenant = p->job.tenant,
        .usage_model = p->job.model,
        .result = {
            .status = o->status,
            .attempts = p->attempt,
            .response = o->response,
            .error = error_json,
            .usage = usage_json,
            .model = p->model ? p->model : p->job.model, /* what served it */
            .provider = p->prov ? p->prov->name : NULL,
            .tenant = p->job.tenant,
            .queue = cfg->queues[jr->queue],
            .worker = w->id,
            .started_at = p->started_at,
            .first_token_at = p->first_token_at,
            .finished_at = end,
            .metadata = jr_json(p->job.metadata),
            .custom_id = p->job.custom_id,
        },
    };
    jr_usage_counts(jr, o, call.usage);
    if (o->usage && p->rl.n > 0)
        rl_adjust(w->cmd, rconn_script_sha(w->cmd, w->scripts[WS_RATELIMIT]), &p->rl,
                  call.usage[USAGE_TOTAL_TOKENS] - p->rl_tokens);
    rargs a = {0};
    scripts_finish_args(&call, &a);
    rconn_eval_reliable(w->cmd, w->scripts[WS_FINISH], jr_on_finished, jr, a.argc, a.argv, a.lens);
    log_debug("job_end", "id=%s status=%s attempts=%d ms=%lld", log_quote(p->job.id),
              job_status_name(o->status), p->attempt, p->started_at ? end - p->started_at : 0);

    rargs_free(&a);
    free(k_usage);
    free(k_dead);
    free(line);
    buf_free(&dead);
    buf_free(&ev);
    free(o->response);
    json_object_put(o->error);
    jr_reset_attempt(jr); /* the HTTP handle goes back to the pool now */
    worker_run_remove(w, jr);
}

/* Ends the job as failed (or cancelled) with error `code`. */
static void jr_fail(jobrun *jr, job_status status, const char *code, const char *msg,
                    int http_status, json_object *upstream_body) {
    jr_outcome o = {0};
    json_object *upstream = NULL;
    if (upstream_body) {
        json_object *e = NULL;
        if (json_object_object_get_ex(upstream_body, "error", &e) && json_object_is_type(e, json_type_object))
            upstream = e;
        else
            upstream = upstream_body;
    }
    o.status = status;
    o.error = output_error(code, msg, http_status, upstream);
    o.err_code = code;
    o.err_msg = msg;
    /* Only an upstream 4xx/5xx is a "final HTTP answer" for the output line. */
    if (strcmp(code, "upstream_error") == 0 && http_status > 0) {
        o.http_status = http_status;
        o.http_body = upstream_body ? json_object_to_json_string_ext(upstream_body, JSON_FLAGS) : NULL;
    }
    o.usage = jr->p->asmb ? assembler_usage(jr->p->asmb) : NULL;
    jr_finish(jr, &o);
}

/* ---- freeing --------------------------------------------------------------- */

static void jr_reset_attempt(jobrun *jr) {
    jobrun_priv *p = jr->p;
    if (p->easy) {
        http_remove(jr->w->http, p->easy);
        http_easy_put(jr->w->http, p->easy);
        p->easy = NULL;
    }
    curl_slist_free_all(p->headers);
    p->headers = NULL;
    sse_free(&p->sse);
    sse_init(&p->sse, NULL, NULL);
    buf_free(&p->in);
    free(p->request_id);
    p->request_id = NULL;
    free(p->fail_msg);
    p->fail_msg = NULL;
    json_object_put(p->fail_upstream);
    p->fail_upstream = NULL;
    p->fail_code = NULL;
    p->status = 0;
    p->is_sse = 0;
    p->done_seen = 0;
    p->chunks = 0;
    p->received = 0;
    p->retry_after_ms = -1;
    p->rl_rem_req = p->rl_rem_tok = p->rl_reset_req = p->rl_reset_tok = -1;
}

static void jr_on_timer_closed(uv_handle_t *h) {
    jobrun *jr = h->data;
    jobrun_priv *p = jr->p;
    jr_reset_attempt(jr);
    if (p->asmb) assembler_free(p->asmb);
    job_free(&p->job);
    rl_target_free(&p->rl);
    free(p->model);
    free(p->body);
    free(p->k_job);
    free(p->k_events);
    free(p->k_stream);
    free(p->k_cancel);
    free(p);
    free(jr->raw);
    free(jr);
}

static void jr_free(jobrun *jr) {
    jr->p->state = JR_OVER;
    uv_timer_stop(&jr->p->timer);
    uv_close((uv_handle_t *)&jr->p->timer, jr_on_timer_closed);
}

void jobrun_abort(jobrun *jr) {
    jr_reset_attempt(jr);
    worker_run_remove(jr->w, jr);
    /* A START still in the outbox holds a pointer to us: its reply frees. */
    if ((jr->p->state == JR_STARTING && jr->p->start_sent) || jr->p->rl_pending) {
        jr->p->aborted = 1;
        return;
    }
    jr_free(jr);
}

/* ---- one HTTP attempt -------------------------------------------------------- */

static void jr_attempt(jobrun *jr);

/* Stops the transfer from inside a curl callback: records why, and the
 * callback returns a value that makes curl abort it. */
static void jr_set_fail(jobrun *jr, const char *code, int retryable, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void jr_set_fail(jobrun *jr, const char *code, int retryable, const char *fmt, ...) {
    jobrun_priv *p = jr->p;
    if (p->fail_code) return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0) msg = xstrdup(code);
    va_end(ap);
    p->fail_code = code;
    p->fail_msg = msg;
    p->fail_retryable = retryable;
}

static int jr_retryable_status(int status) {
    return status == 408 || status == 409 || status == 429 || status >= 500;
}

/* One SSE event from the upstream. */
static int jr_on_event(void *ud, const char *event, const char *data, size_t len) {
    jobrun *jr = ud;
    jobrun_priv *p = jr->p;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        p->done_seen = 1;
        return 0;
    }
    if (len == 0) return 0;
    json_object *chunk = NULL;
    int ok = jsonparse_whole(jr->w->tok, data, len, &chunk, NULL, 0) == 0 &&
             json_object_is_type(chunk, json_type_object);
    if (!ok) {
        json_object_put(chunk);
        jr_set_fail(jr, "bad_upstream_response", 1, "unparseable stream chunk: %.120s", data);
        return 1;
    }
    json_object *err = NULL;
    json_object *choices = NULL;
    int has_choices = json_object_object_get_ex(chunk, "choices", &choices);
    if ((json_object_object_get_ex(chunk, "error", &err) && err && !has_choices) ||
        (event && strcmp(event, "error") == 0)) {
        /* An error sent inside a 200 stream (OpenRouter, vLLM do this). */
        json_object *msg = NULL, *code = NULL;
        json_object *e = err ? err : chunk;
        json_object_object_get_ex(e, "message", &msg);
        json_object_object_get_ex(e, "code", &code);
        int st = code && json_object_is_type(code, json_type_int) ? json_object_get_int(code) : 0;
        jr_set_fail(jr, "upstream_error", st == 0 || jr_retryable_status(st),
                    "upstream error in stream: %s",
                    msg ? json_object_get_string(msg) : "(no message)");
        p->fail_upstream = chunk;
        return 1;
    }
    if (!p->first_token_at) p->first_token_at = now_ms();
    buf ev = {0};
    buf_printf(&ev, "{\"seq\":%lld,\"type\":\"chunk\",\"attempt\":%d,\"data\":", p->seq++,
               p->attempt);
    buf_append(&ev, data, len);
    buf_putc(&ev, '}');
    jr_publish(jr, ev.data, ev.len);
    buf_free(&ev);
    p->chunks++;
    assembler_add(p->asmb, chunk);
    json_object_put(chunk);
    return 0;
}

static size_t jr_on_header(char *h, size_t size, size_t n, void *ud) {
    jobrun *jr = ud;
    jobrun_priv *p = jr->p;
    size_t len = size * n;
    char *colon = memchr(h, ':', len);
    if (!colon) return len;
    size_t klen = (size_t)(colon - h);
    const char *v = colon + 1;
    size_t vlen = len - klen - 1;
    while (vlen && (*v == ' ' || *v == '\t')) v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ')) vlen--;
    char val[128];
    if (vlen >= sizeof val) vlen = sizeof val - 1;
    memcpy(val, v, vlen);
    val[vlen] = '\0';
    if (klen > 12 && strncasecmp(h, "x-ratelimit-", 12) == 0) {
        const char *k = h + 12;
        size_t kl = klen - 12;
        if (kl == 18 && strncasecmp(k, "remaining-requests", 18) == 0)
            p->rl_rem_req = strtoll(val, NULL, 10);
        else if (kl == 16 && strncasecmp(k, "remaining-tokens", 16) == 0)
            p->rl_rem_tok = strtoll(val, NULL, 10);
        else if (kl == 14 && strncasecmp(k, "reset-requests", 14) == 0)
            p->rl_reset_req = rl_parse_duration(val);
        else if (kl == 12 && strncasecmp(k, "reset-tokens", 12) == 0)
            p->rl_reset_tok = rl_parse_duration(val);
    } else if (klen == 12 && strncasecmp(h, "x-request-id", 12) == 0) {
        free(p->request_id);
        p->request_id = xstrdup(val);
    } else if (klen == 14 && strncasecmp(h, "retry-after-ms", 14) == 0) {
        char *end;
        double ms = strtod(val, &end);
        if (end != val && ms >= 0) p->retry_after_ms = (long long)ms;
    } else if (klen == 11 && strncasecmp(h, "retry-after", 11) == 0 && p->retry_after_ms < 0) {
        char *end;
        double s = strtod(val, &end);
        if (end != val && s >= 0) {
            p->retry_after_ms = (long long)(s * 1000);
        } else {
            time_t when = curl_getdate(val, NULL);
            if (when > 0) {
                long long d = (long long)when * 1000 - now_ms();
                p->retry_after_ms = d > 0 ? d : 0;
            }
        }
    }
    return len;
}

static size_t jr_on_body(char *data, size_t size, size_t n, void *ud) {
    jobrun *jr = ud;
    jobrun_priv *p = jr->p;
    size_t len = size * n;
    p->last_activity = uv_now(jr->w->loop);
    if (!p->status) {
        long code = 0;
        char *ct = NULL;
        curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(p->easy, CURLINFO_CONTENT_TYPE, &ct);
        p->status = (int)code;
        p->is_sse = p->job.stream && code >= 200 && code < 300 && ct &&
                    strncasecmp(ct, "text/event-stream", 17) == 0;
        if (p->is_sse) p->sse.max_event = (size_t)jr_cfg(jr)->max_response_bytes;
    }
    p->received += len;
    if (p->is_sse) {
        if ((long long)p->received > jr_cfg(jr)->max_response_bytes) {
            jr_set_fail(jr, "too_large", 0, "the stream is larger than %lld bytes",
                        jr_cfg(jr)->max_response_bytes);
            return 0;
        }
        int rc = sse_feed(&p->sse, data, len);
        if (rc == -2)
            jr_set_fail(jr, "too_large", 0, "a stream event is larger than %lld bytes",
                        jr_cfg(jr)->max_response_bytes);
        return rc == 0 ? len : 0;
    }
    if ((long long)(p->in.len + len) > jr_cfg(jr)->max_response_bytes) {
        jr_set_fail(jr, "too_large", 0, "the response is larger than %lld bytes",
                    jr_cfg(jr)->max_response_bytes);
        return 0;
    }
    if (!p->first_token_at && p->status < 300) p->first_token_at = now_ms();
    buf_append(&p->in, data, len);
    return len;
}

/* The idle timer: fires idle_timeout after the last byte; re-arms itself for
 * the rest of the interval when bytes came meanwhile, so a busy stream costs
 * no timer operation per chunk. */
static void jr_on_idle(uv_timer_t *t) {
    jobrun *jr = t->data;
    jobrun_priv *p = jr->p;
    uint64_t idle = (uint64_t)jr_idle_ms(jr);
    uint64_t now = uv_now(jr->w->loop);
    if (now - p->last_activity < idle) {
        uv_timer_start(t, jr_on_idle, idle - (now - p->last_activity), 0);
        return;
    }
    jr_set_fail(jr, "timeout", 1, "no data from the upstream for %llu ms",
                (unsigned long long)idle);
    http_remove(jr->w->http, p->easy);
    jobrun_http_done(p->easy, CURLE_OPERATION_TIMEDOUT, jr);
}

static void jr_send(jobrun *jr);
static void jr_rate_take(jobrun *jr);

/* Starts an attempt: first capacity from the shared rate limits, if any. */
static void jr_attempt(jobrun *jr) {
    jobrun_priv *p = jr->p;
    jr_reset_attempt(jr);
    p->attempt++;
    if (p->asmb) assembler_free(p->asmb);
    p->asmb = assembler_new(); /* nothing of an earlier attempt counts */
    if (p->rl.n > 0) {
        p->state = JR_LIMITED;
        p->rl_wait_since = now_ms();
        jr_rate_take(jr);
        return;
    }
    jr_send(jr);
}

/* Sends the HTTP request of the current attempt. */
static void jr_send(jobrun *jr) {
    jobrun_priv *p = jr->p;
    const config *cfg = jr_cfg(jr);
    p->state = JR_REQUEST;
    sse_init(&p->sse, jr_on_event, jr);

    /* the attempt counter, for observers and for a resumed run (START
     * counted the first attempt already) */
    if (p->attempt > p->first_attempt) {
        const char *a[] = {"HSET", p->k_job, "attempts", NULL};
        char n[16];
        snprintf(n, sizeof n, "%d", p->attempt);
        a[3] = n;
        size_t al[] = {4, strlen(p->k_job), 8, strlen(n)};
        rconn_send(jr->w->cmd, NULL, NULL, 4, a, al);
    }

    CURL *e = http_easy_get(jr->w->http);
    if (!e) {
        jr_fail(jr, JOB_FAILED, "connection_error", "cannot create an HTTP handle", 0, NULL);
        return;
    }
    p->easy = e;
    char *url = xasprintf("%s/chat/completions", p->prov->base_url);
    curl_easy_setopt(e, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, jr);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, p->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->body_len);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Waiting for a connection to offer HTTP/2 multiplexing only makes sense
     * over TLS (no h2c): on plain HTTP it would hold new requests back until
     * the first answer's headers arrive. */
    if (strncmp(p->prov->base_url, "https:", 6) == 0) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)jr_timeout_ms(jr));
    long long cto = p->prov->connect_timeout_ms > 0 ? p->prov->connect_timeout_ms
                                                    : cfg->connect_timeout_ms;
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cto);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, jr_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, jr);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, jr_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, jr);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "chatq/0.1");

    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, p->job.stream ? "Accept: text/event-stream" : "Accept: application/json");
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip for big bodies */
    if (p->prov->api_key && *p->prov->api_key) {
        char *auth = xasprintf("Authorization: Bearer %s", p->prov->api_key);
        h = curl_slist_append(h, auth);
        free(auth);
    }
    for (int i = 0; i < p->prov->nheaders; i++) h = curl_slist_append(h, p->prov->headers[i]);
    p->headers = h;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);

    p->last_activity = uv_now(jr->w->loop);
    if (p->job.stream) uv_timer_start(&p->timer, jr_on_idle, (uint64_t)jr_idle_ms(jr), 0);
    CURLMcode mc = http_add(jr->w->http, e);
    if (mc != CURLM_OK) {
        log_error("http_add_failed", "id=%s error=%s", log_quote(p->job.id),
                  log_quote(curl_multi_strerror(mc)));
        uv_timer_stop(&p->timer);
        jr_fail(jr, JOB_FAILED, "connection_error", "cannot start the HTTP request", 0, NULL);
    }
}


/* ---- targets, fallbacks and rate limits -------------------------------------------- */

/* Points the job at provider `prov` and model `model` (the job's own, or a
 * fallback's): the request body, the rate-limit buckets and the token
 * estimate follow. */
static void jr_set_target(jobrun *jr, const provider_cfg *prov, const char *model) {
    jobrun_priv *p = jr->p;
    p->prov = prov;
    if (!p->model || strcmp(p->model, model) != 0) {
        free(p->model);
        p->model = xstrdup(model);
        json_object_object_add(p->job.body, "model", json_object_new_string(model));
    }
    free(p->body);
    p->body = job_request_body(&p->job);
    p->body_len = strlen(p->body);
    rl_target_free(&p->rl);
    rl_target_init(&p->rl, jr_prefix(jr), prov, model);
    /* ~4 bytes a token for the prompt, plus what the answer may use */
    p->rl_tokens = (long long)p->body_len / 4;
    json_object *mt = NULL;
    if ((json_object_object_get_ex(p->job.body, "max_completion_tokens", &mt) ||
         json_object_object_get_ex(p->job.body, "max_tokens", &mt)) &&
        json_object_is_type(mt, json_type_int))
        p->rl_tokens += json_object_get_int64(mt);
}

/* Moves to the next fallback of the job's model; 0 when there is none. */
static int jr_next_target(jobrun *jr) {
    jobrun_priv *p = jr->p;
    const config *cfg = jr_cfg(jr);
    const fallback_cfg *f = config_fallbacks(cfg, p->job.model);
    while (f && p->step + 1 < f->nsteps) {
        const fallback_step *st = &f->steps[++p->step];
        const char *model = st->model ? st->model : p->job.model;
        const provider_cfg *prov =
            st->provider ? config_provider(cfg, st->provider) : config_route(cfg, model);
        if (!prov) continue;
        jr_set_target(jr, prov, model);
        p->step_first_attempt = p->attempt + 1;
        return 1;
    }
    return 0;
}

/* What the upstream said about its limits slows everyone's buckets down. */
static void jr_rate_feedback(jobrun *jr, int status) {
    jobrun_priv *p = jr->p;
    if (p->rl.n == 0) return;
    const char *sha = rconn_script_sha(jr->w->cmd, jr->w->scripts[WS_RATELIMIT]);
    if (status == 429)
        rl_push(jr->w->cmd, sha, &p->rl, p->retry_after_ms >= 0 ? p->retry_after_ms : 1000, "rt");
    if (p->rl_rem_req == 0 && p->rl_reset_req > 0)
        rl_push(jr->w->cmd, sha, &p->rl, p->rl_reset_req, "r");
    if (p->rl_rem_tok == 0 && p->rl_reset_tok > 0)
        rl_push(jr->w->cmd, sha, &p->rl, p->rl_reset_tok, "t");
}

static void jr_on_rate_timer(uv_timer_t *t) { jr_rate_take(t->data); }

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
        jr_fail(jr, JOB_CANCELLED, "cancelled", "the job was cancelled", 0, NULL);
        return;
    }
    long long wait = 200; /* Redis is away: ask again soon */
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        wait = reply->integer;
    else if (reply)
        log_error("ratelimit_failed", "error=%s",
                  log_quote(reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply"));
    if (wait <= 0) {
        p->rl_wait_since = 0;
        jr_send(jr);
        return;
    }
    /* A token bucket's wait may be held up by other jobs' estimates, which
     * their real usage gives back as soon as they end: ask again soon rather
     * than sleep through (or give up on) capacity that comes back. */
    for (int i = 0; i < p->rl.n; i++)
        if (p->rl.tok_iv[i] > 0 && wait > 200) wait = 200;
    if (now_ms() + wait - p->rl_wait_since > cfg->rate_limit_wait_ms) {
        p->rl_wait_since = 0;
        char msg[200];
        snprintf(msg, sizeof msg, "no capacity under the rate limits of provider %s within %lld ms",
                 p->prov->name, cfg->rate_limit_wait_ms);
        if (!jr->w->aborting && jr_next_target(jr)) {
            log_info("fallback", "id=%s code=rate_limited to_provider=%s to_model=%s",
                     log_quote(p->job.id), p->prov->name, log_quote(p->model));
            jr_attempt(jr);
            return;
        }
        jr_fail(jr, JOB_FAILED, "rate_limited", msg, 0, NULL);
        return;
    }
    /* a little jitter, so the jobs waiting on one bucket do not all ask at
     * the same millisecond */
    wait += (long long)(random_u32() % (uint32_t)(wait / 10 + 2));
    uv_timer_start(&p->timer, jr_on_rate_timer, (uint64_t)wait, 0);
}

/* Asks the shared buckets for capacity for one request of this job. */
static void jr_rate_take(jobrun *jr) {
    jobrun_priv *p = jr->p;
    rargs a = {0};
    rl_take_args(&p->rl, rconn_script_sha(jr->w->cmd, jr->w->scripts[WS_RATELIMIT]), p->rl_tokens, &a);
    if (rconn_send(jr->w->cmd, jr_on_rate, jr, a.argc, a.argv, a.lens) == 0)
        p->rl_pending = 1;
    else
        uv_timer_start(&p->timer, jr_on_rate_timer, 200, 0); /* Redis is away */
    rargs_free(&a);
}

static void jr_on_backoff(uv_timer_t *t) { jr_attempt(t->data); }

/* Full jitter: a random delay in [0, min(max, base * 2^(attempt-1))]. */
static long long jr_backoff_ms(jobrun *jr) {
    const config *cfg = jr_cfg(jr);
    long long cap = cfg->retry_base_ms;
    int tries = jr->p->attempt - jr->p->step_first_attempt + 1;
    for (int i = 1; i < tries && cap < cfg->retry_max_ms; i++) cap *= 2;
    if (cap > cfg->retry_max_ms) cap = cfg->retry_max_ms;
    return cap > 0 ? (long long)(random_u32() % (unsigned long long)(cap + 1)) : 0;
}

/* A failed attempt: retry it, or end the job. Takes ownership of upstream. */
static void jr_attempt_failed(jobrun *jr, const char *code, const char *msg, int status,
                              json_object *upstream, int retryable) {
    jobrun_priv *p = jr->p;
    int tries = p->attempt - p->step_first_attempt + 1; /* attempts at this target */
    if (retryable && !jr->w->aborting && tries >= p->max_attempts && jr_next_target(jr)) {
        log_info("fallback", "id=%s code=%s to_provider=%s to_model=%s", log_quote(p->job.id),
                 code, p->prov->name, log_quote(p->model));
        tries = 0; /* a fresh set of attempts at the new target */
        p->retry_after_ms = -1;
    }
    if (retryable && tries < p->max_attempts && !jr->w->aborting) {
        log_info("attempt_failed", "id=%s attempt=%d code=%s status=%d error=%s",
                 log_quote(p->job.id), p->attempt, code, status, log_quote(msg));
        if (p->chunks > 0) {
            json_object *err = output_error(code, msg, status, upstream);
            jr_publish_retry(jr, err);
            json_object_put(err);
        }
        json_object_put(upstream);
        long long delay = p->retry_after_ms >= 0 ? p->retry_after_ms
                          : tries == 0            ? 0
                                                  : jr_backoff_ms(jr);
        if (delay > 600000) delay = 600000;
        jr_reset_attempt(jr);
        p->state = JR_BACKOFF;
        uv_timer_start(&p->timer, jr_on_backoff, (uint64_t)delay, 0);
        return;
    }
    jr_fail(jr, JOB_FAILED, code, msg, status, upstream);
    json_object_put(upstream);
}

static json_object *jr_parse_body(jobrun *jr) {
    buf *in = &jr->p->in;
    json_object *o = NULL;
    if (in->len) jsonparse_whole(jr->w->tok, in->data, in->len, &o, NULL, 0);
    return o;
}

/* Ends the job as succeeded. `response` (owned) is the parsed answer, `text`
 * (owned) the same as JSON text, stored and sent as it is. */
static void jr_succeed(jobrun *jr, json_object *response, char *text) {
    jr_outcome o = {0};
    o.status = JOB_SUCCEEDED;
    o.response = text;
    o.http_status = 200;
    o.http_body = text;
    json_object *usage = NULL;
    if (json_object_object_get_ex(response, "usage", &usage) &&
        json_object_is_type(usage, json_type_object))
        o.usage = usage;
    json_object *choices, *c0, *fr;
    if (json_object_object_get_ex(response, "choices", &choices) &&
        json_object_is_type(choices, json_type_array) && json_object_array_length(choices) > 0 &&
        (c0 = json_object_array_get_idx(choices, 0)) &&
        json_object_object_get_ex(c0, "finish_reason", &fr) && json_object_is_type(fr, json_type_string))
        o.finish_reason = json_object_get_string(fr);
    jr_finish(jr, &o);
    json_object_put(response);
}

static const char *jr_curl_code(CURLcode res) {
    switch (res) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    default: return "connection_error";
    }
}

void jobrun_http_done(void *easy, int curl_result, void *priv) {
    jobrun *jr = priv;
    jobrun_priv *p = jr->p;
    CURLcode res = (CURLcode)curl_result;
    (void)easy;
    uv_timer_stop(&p->timer);
    if (!p->status && p->easy) {
        long code = 0;
        curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &code);
        p->status = (int)code;
    }
    if (p->cancelled) {
        jr_fail(jr, JOB_CANCELLED, "cancelled", "the job was cancelled", 0, NULL);
        return;
    }
    jr_rate_feedback(jr, p->status);
    if (p->fail_code) {
        json_object *up = p->fail_upstream;
        p->fail_upstream = NULL;
        char *msg = xstrdup(p->fail_msg);
        jr_attempt_failed(jr, p->fail_code, msg, p->status, up, p->fail_retryable);
        free(msg);
        return;
    }
    if (res != CURLE_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", curl_easy_strerror(res));
        jr_attempt_failed(jr, jr_curl_code(res), msg, 0, NULL, 1);
        return;
    }
    if (p->status >= 400 || p->status < 200) {
        json_object *body = jr_parse_body(jr);
        json_object *m = NULL, *e = NULL;
        char msg[256];
        if (body && json_object_object_get_ex(body, "error", &e) &&
            json_object_object_get_ex(e, "message", &m) && json_object_is_type(m, json_type_string))
            snprintf(msg, sizeof msg, "HTTP %d: %s", p->status, json_object_get_string(m));
        else
            snprintf(msg, sizeof msg, "HTTP %d from the upstream", p->status);
        if (!body && p->in.len) body = json_object_new_string_len(p->in.data, (int)(p->in.len > 2000 ? 2000 : p->in.len));
        jr_attempt_failed(jr, "upstream_error", msg, p->status, body, jr_retryable_status(p->status));
        return;
    }
    if (p->is_sse) {
        sse_finish(&p->sse); /* drops an incomplete event: it calls back no more */
        if (p->done_seen || assembler_complete(p->asmb)) {
            json_object *r = assembler_result(p->asmb);
            jr_succeed(jr, r, xstrdup(json_object_to_json_string_ext(r, JSON_FLAGS)));
            return;
        }
        jr_attempt_failed(jr, "bad_upstream_response",
                          "the stream ended before [DONE] or a finish reason", p->status, NULL, 1);
        return;
    }
    json_object *body = jr_parse_body(jr);
    json_object *choices = NULL, *err = NULL;
    if (body && json_object_object_get_ex(body, "choices", &choices)) {
        /* Stored as it came, unless it spans lines (pretty-printed, as
         * OpenAI sends it): output lines must be one line each. */
        int multiline = memchr(p->in.data, '\n', p->in.len) || memchr(p->in.data, '\r', p->in.len);
        jr_succeed(jr, body,
                   multiline ? xstrdup(json_object_to_json_string_ext(body, JSON_FLAGS))
                             : buf_steal(&p->in));
        return;
    }
    if (body && json_object_object_get_ex(body, "error", &err)) {
        jr_attempt_failed(jr, "upstream_error", "the upstream answered with an error", p->status,
                          body, 1);
        return;
    }
    json_object_put(body);
    jr_attempt_failed(jr, "bad_upstream_response",
                      p->in.len ? "the response is not a chat completion" : "empty response",
                      p->status, NULL, 1);
}

/* ---- start --------------------------------------------------------------------- */

static void jr_on_started(rconn *rc, redisReply *reply, void *priv) {
    jobrun *jr = priv;
    jobrun_priv *p = jr->p;
    (void)rc;
    p->start_sent = 0;
    if (p->aborted) {
        jr_free(jr);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 5) {
        log_error("start_failed", "id=%s error=%s", log_quote(p->job.id),
                  log_quote(reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply"));
        jr_fail(jr, JOB_FAILED, "connection_error", "cannot record the job's start in Redis", 0, NULL);
        return;
    }
    long long cancel = reply->element[0]->integer;
    p->seq = reply->element[1]->integer;
    long long prior = reply->element[2]->integer;
    long long resumed = reply->element[3]->integer;
    if (reply->element[4]->type == REDIS_REPLY_STRING)
        p->started_at = strtoll(reply->element[4]->str, NULL, 10); /* the first run's */
    /* A resumed job (its worker died) keeps the attempts it made: it has
     * what is left of max_attempts, and always at least this one. */
    p->attempt = (int)prior;
    p->first_attempt = (int)prior + 1;
    p->step_first_attempt = 1;
    if (cancel || p->cancelled) {
        p->cancelled = 1;
        jr_fail(jr, JOB_CANCELLED, "cancelled", "the job was cancelled", 0, NULL);
        return;
    }
    if (resumed && p->seq > 0) {
        json_object *err = output_error("interrupted",
                                        "the attempt was cut short: its worker stopped", 0, NULL);
        jr_publish_retry(jr, err);
        json_object_put(err);
    }
    jr_attempt(jr);
}

static void jr_invalid(jobrun *jr, const char *msg) {
    jobrun_priv *p = jr->p;
    log_warn("job_invalid", "id=%s error=%s", log_quote(p->job.id), log_quote(msg));
    jr_fail(jr, JOB_FAILED, "invalid_job", msg, 0, NULL);
}

void jobrun_start(worker *w, const char *raw, size_t len, int queue) {
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
    p->retry_after_ms = -1;
    p->state = JR_STARTING;
    p->started_at = now_ms();
    sse_init(&p->sse, NULL, NULL);
    worker_run_add(w, jr);

    char err[512];
    int bad = job_parse(&p->job, raw, len, (size_t)cfg->max_job_bytes, err, sizeof err) != 0;
    if (p->job.id) {
        p->k_job = keys_job(cfg->prefix, p->job.id);
        p->k_events = keys_events(cfg->prefix, p->job.id);
        p->k_stream = keys_stream(cfg->prefix, p->job.id);
        p->k_cancel = keys_cancel(cfg->prefix, p->job.id);
    }
    if (bad) {
        jr_invalid(jr, err);
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
    if (p->job.provider) {
        p->prov = config_provider(cfg, p->job.provider);
        if (!p->prov) {
            snprintf(err, sizeof err, "provider: no provider named \"%s\" is configured",
                     p->job.provider);
            jr_invalid(jr, err);
            return;
        }
    } else {
        p->prov = config_route(cfg, p->job.model);
    }
    p->max_attempts = p->job.max_attempts > 0 ? (int)p->job.max_attempts : cfg->max_attempts;
    p->step = -1;
    if (p->prov) jr_set_target(jr, p->prov, p->job.model);

    if (!p->prov) {
        /* Not an invalid job (the model may be served once configured), but
         * nothing can run it: fail now, without an attempt. */
        char msg[300];
        snprintf(msg, sizeof msg, "no provider serves model \"%s\"", p->job.model);
        jr_fail(jr, JOB_FAILED, "no_provider", msg, 0, NULL);
        return;
    }
    scripts_start_call call = {
        .job_key = p->k_job,
        .events_key = p->k_events,
        .cancel_key = p->k_cancel,
        .worker_id = w->id,
        .queue = cfg->queues[queue],
        .model = p->job.model,
        .tenant = p->job.tenant,
        .provider = p->prov->name,
        .now_ms = p->started_at,
        .start_number = ++w->starts,
    };
    rargs a = {0};
    scripts_start_args(&call, &a);
    p->start_sent = 1;
    rconn_eval_reliable(w->cmd, w->scripts[WS_START], jr_on_started, jr, a.argc, a.argv, a.lens);
    rargs_free(&a);
}

void jobrun_cancel_id(worker *w, const char *id) {
    jobrun *jr = w->runs;
    while (jr) {
        jobrun *next = jr->next;
        jobrun_priv *p = jr->p;
        if (p->job.id && strcmp(p->job.id, id) == 0 && !p->cancelled) {
            p->cancelled = 1;
            log_info("job_cancel", "id=%s state=%d", log_quote(id), (int)p->state);
            if (p->state == JR_REQUEST) {
                uv_timer_stop(&p->timer);
                http_remove(w->http, p->easy); /* closes the upstream connection */
                jobrun_http_done(p->easy, CURLE_ABORTED_BY_CALLBACK, jr);
            } else if (p->state == JR_LIMITED && !p->rl_pending) {
                uv_timer_stop(&p->timer);
                jr_fail(jr, JOB_CANCELLED, "cancelled", "the job was cancelled", 0, NULL);
            } else if (p->state == JR_BACKOFF) {
                uv_timer_stop(&p->timer);
                jr_fail(jr, JOB_CANCELLED, "cancelled", "the job was cancelled", 0, NULL);
            }
            /* JR_STARTING: the START reply sees p->cancelled. */
        }
        jr = next;
    }
}

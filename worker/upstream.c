/* upstream.c — one HTTP exchange with the upstream; see upstream.h.
 *
 * The curl callbacks (up_on_header, up_on_body, and up_on_event through the
 * SSE parser) only record what arrives. A callback that finds the answer
 * unusable records why (up_set_fail) and makes curl abort the transfer; the
 * recorded failure then wins over curl's own error. up_finish() runs once
 * per exchange, when curl is done with it or the idle timer ends it, and
 * sorts what was recorded into the outcome:
 *   a recorded failure                 -> that failure
 *   a curl error (connect, timeout...) -> connection_error / timeout
 *   an HTTP status outside 2xx         -> upstream_error (retryable: policy)
 *   a stream with [DONE] or every
 *   choice finished                    -> ok, the assembled answer
 *   a stream cut before that           -> bad_upstream_response
 *   a body with "choices"              -> ok, the body as it came
 *   a body with "error"                -> upstream_error
 *   anything else                      -> bad_upstream_response
 *
 * Every text from the upstream goes through the same gate before it is
 * used: the API key masked (up_mask_text), then the strict check with the
 * bounds of its kind, then json-c (up_parse) — except a stream's common
 * chunk, which the assembler reads from the checked text itself
 * (assembler_add_text). Chunks are assembled before they are handed on, so
 * a chunk that passes a bound of the assembler is never published either. */
#include "worker/upstream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/assembler.h"
#include "common/buf.h"
#include "common/jsonparse.h"
#include "common/log.h"
#include "common/sse.h"
#include "common/strictjson.h"
#include "worker/policy.h"
#include "worker/report.h"
#include "worker/ratelimit.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* curl's receive buffer, 16 KB per transfer by default, held for as long as
 * the transfer runs: most of what a slow stream costs while it waits. Its
 * chunks are a few hundred bytes, so 4 KB holds a read of several; measured
 * with 2,000 paced streams in one worker, 5 KB less RSS per stream. A large
 * non-streamed answer just takes a few more reads. Every request asks the
 * same size: curl keeps a handle's buffer from one transfer to the next. */
#define UP_RECV_BUFFER 4096

struct upstream {
    uv_loop_t *loop;
    http_client *http;
    json_tokener *tok;
    jobrun *jr;
    upstream_chunk_cb on_chunk;
    upstream_done_cb on_done;
    upstream_request req;     /* the current exchange's */
    CURL *easy;               /* NULL when no transfer runs */
    struct curl_slist *headers;
    sse_parser sse;
    assembler *asmb;          /* the stream's answer so far */
    buf in;                   /* a plain (not SSE) body */
    size_t received;          /* body bytes received */
    int status;               /* HTTP status, 0 until known */
    int is_sse;
    int done_seen;            /* data: [DONE] seen */
    long chunks;              /* stream events handed on, or refused */
    buf masked;               /* a chunk's text with the key masked */
    char *request_id;
    upstream_limits limits;
    const char *fail_code;    /* set when a callback aborts the transfer */
    char *fail_msg;
    int fail_retryable;
    json_object *fail_upstream;
    long long first_output_ms;
    uint64_t last_activity;   /* uv_now() of the last byte received */
    uv_timer_t idle;
};

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void up_clear_limits(upstream_limits *l) {
    l->retry_after_ms = l->remaining_requests = l->remaining_tokens = -1;
    l->reset_requests_ms = l->reset_tokens_ms = -1;
}

/* Records why the transfer must stop, from inside a curl callback, which then
 * returns a value that makes curl abort it. The first reason stays. */
static void up_set_fail(upstream *u, const char *code, int retryable, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void up_set_fail(upstream *u, const char *code, int retryable, const char *fmt, ...) {
    if (u->fail_code) return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0) msg = xstrdup(code);
    va_end(ap);
    u->fail_code = code;
    u->fail_msg = msg;
    u->fail_retryable = retryable;
}

/* ---- the gate: secrets, strictness, bounds --------------------------------------- */

size_t upstream_mask(char *s, size_t len, const char *secret) {
    size_t klen = secret ? strlen(secret) : 0, mlen = strlen(UPSTREAM_SECRET_MASK);
    if (klen < UPSTREAM_MIN_SECRET || klen < mlen) return len;
    char *hit = memmem(s, len, secret, klen);
    if (!hit) return len;
    /* One pass: r reads, w writes behind it (the mask is never longer). */
    size_t r = 0, w = 0;
    while (hit) {
        size_t keep = (size_t)(hit - (s + r));
        memmove(s + w, s + r, keep);
        w += keep;
        memcpy(s + w, UPSTREAM_SECRET_MASK, mlen);
        w += mlen;
        r += keep + klen;
        hit = memmem(s + r, len - r, secret, klen);
    }
    memmove(s + w, s + r, len - r);
    return w + len - r;
}

char *upstream_excerpt(const char *s, size_t len, size_t max) {
    buf b = {0};
    size_t i = 0;
    buf_puts(&b, "");
    while (i < len) {
        int n = s[i] ? strictjson_utf8(s + i, len - i, NULL) : 0;
        size_t add = n ? (size_t)n : 3; /* U+FFFD is 3 bytes */
        if (b.len + add > max) {
            buf_puts(&b, "...");
            break;
        }
        if (n)
            buf_append(&b, s + i, (size_t)n);
        else
            buf_puts(&b, "\xEF\xBF\xBD");
        i += n ? (size_t)n : 1;
    }
    return buf_steal(&b);
}

static const char *up_secret(const upstream *u) { return u->req.prov->api_key; }

/* Masks the key in a NUL-terminated string of ours (a message). */
static void up_mask_str(const upstream *u, char *s) {
    if (s) s[upstream_mask(s, strlen(s), up_secret(u))] = '\0';
}

/* The text of a chunk to use: data itself, or a copy with the key masked
 * (in u->masked) when the key is in it. */
static const char *up_mask_text(upstream *u, const char *data, size_t *len) {
    const char *key = up_secret(u);
    size_t klen = key ? strlen(key) : 0;
    if (klen < UPSTREAM_MIN_SECRET || !memmem(data, *len, key, klen)) return data;
    buf_reset(&u->masked);
    buf_append(&u->masked, data, *len);
    *len = upstream_mask(u->masked.data, *len, key);
    u->masked.data[*len] = '\0';
    return u->masked.data;
}

static const strictjson_limits up_chunk_limits = {
    .max_values = UPSTREAM_MAX_CHUNK_VALUES,
    .max_containers = UPSTREAM_MAX_CHUNK_VALUES,
    .max_depth = UPSTREAM_MAX_DEPTH,
};
static const strictjson_limits up_body_limits = {
    .max_values = UPSTREAM_MAX_BODY_VALUES,
    .max_containers = UPSTREAM_MAX_BODY_CONTAINERS,
    .max_depth = UPSTREAM_MAX_DEPTH,
};

/* Parses text as strict JSON within lim. Returns the value (owned; NULL
 * for a JSON null), or NULL with *rc set to why not: STRICTJSON_INVALID or
 * STRICTJSON_TOO_BIG, with the reason in err. */
static json_object *up_parse(upstream *u, const char *text, size_t len,
                             const strictjson_limits *lim, int *rc, char *err, size_t errlen) {
    json_object *o = NULL;
    *rc = jsonparse_strict(u->tok, text, len, lim, 0, &o, NULL, err, errlen);
    return o;
}

/* Why a text did not pass up_parse (rc), as an error code, a message
 * (returned, owned) and whether another attempt may do better: too_large
 * (no), or bad_upstream_response (yes) quoting the start of the text. */
static char *up_refusal(int rc, const char *what, const char *why, const char *text, size_t len,
                        const char **code, int *retryable) {
    if (rc == STRICTJSON_TOO_BIG) {
        *code = "too_large";
        *retryable = 0;
        return xasprintf("%s is too large: %s", what, why);
    }
    *code = "bad_upstream_response";
    *retryable = 1;
    char *quote = upstream_excerpt(text, len, 120);
    char *msg = xasprintf("%s is not strict JSON (%s): %s", what, why, quote);
    free(quote);
    return msg;
}

/* ---- what arrives ------------------------------------------------------------ */

/* An error sent inside a 200 stream (OpenRouter, vLLM do this): a top-level
 * "error" object, whatever else the chunk carries (OpenRouter adds a
 * finish_reason and then sends [DONE]), another non-null "error" in a chunk
 * without choices, or an event of type "error". Records it (the attempt
 * ends with it) and returns 1, or returns 0 for any other chunk. */
static int up_stream_error(upstream *u, const char *event, json_object *chunk) {
    json_object *err = NULL, *choices = NULL;
    int has_choices = json_object_object_get_ex(chunk, "choices", &choices);
    int is_err = json_object_object_get_ex(chunk, "error", &err) && err &&
                 (json_object_is_type(err, json_type_object) || !has_choices);
    if (!is_err && !(event && strcmp(event, "error") == 0)) return 0;
    json_object *msg = NULL, *code = NULL, *e = err ? err : chunk;
    if (json_object_is_type(e, json_type_string)) msg = e;
    else json_object_object_get_ex(e, "message", &msg);
    json_object_object_get_ex(e, "code", &code);
    int st = code && json_object_is_type(code, json_type_int) ? json_object_get_int(code) : 0;
    int has_msg = msg && json_object_is_type(msg, json_type_string);
    const char *m = has_msg ? json_object_get_string(msg) : "(no message)";
    size_t mlen = has_msg ? (size_t)json_object_get_string_len(msg) : strlen(m);
    char *quote = upstream_excerpt(m, mlen, UPSTREAM_MAX_QUOTE);
    up_set_fail(u, "upstream_error", policy_stream_error_retryable(st),
                "upstream error in stream: %s", quote);
    free(quote);
    if (!u->fail_upstream) u->fail_upstream = json_object_get(chunk);
    return 1;
}

/* One SSE event: "[DONE]", a chunk, or an error sent inside the stream. A
 * chunk is handed on only once it passed every check and was assembled. */
static int up_on_event(void *ud, const char *event, const char *data, size_t len) {
    upstream *u = ud;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        u->done_seen = 1;
        return 0;
    }
    if (len == 0) return 0;
    if (++u->chunks > UPSTREAM_MAX_CHUNKS) {
        up_set_fail(u, "too_large", 0, "the stream has more than %d chunks", UPSTREAM_MAX_CHUNKS);
        return 1;
    }
    data = up_mask_text(u, data, &len);
    char why[128];
    json_object *chunk = NULL;
    int rc = strictjson_check(data, len, &up_chunk_limits, NULL, why, sizeof why);
    if (rc == STRICTJSON_OK && strcmp(event, "error") != 0) {
        /* The common chunk goes to the assembler as text: no json-c objects
         * built and freed for it (they were most of a stream's cost). It
         * holds no "error", so up_stream_error() has nothing to say. */
        int r = assembler_add_text(u->asmb, data, len);
        if (r == 0) goto assembled;
        if (r == -2) {
            up_set_fail(u, "too_large", 0, "the answer is too large: %s",
                        assembler_error(u->asmb));
            return 1;
        }
    }
    if (rc == STRICTJSON_OK && jsonparse_whole(u->tok, data, len, &chunk, why, sizeof why) != 0)
        rc = STRICTJSON_INVALID; /* json-c refused what the check let pass */
    if (rc == STRICTJSON_OK && !json_object_is_type(chunk, json_type_object)) {
        rc = STRICTJSON_INVALID;
        snprintf(why, sizeof why, "not an object");
    }
    if (rc != STRICTJSON_OK) {
        json_object_put(chunk);
        const char *code;
        int retryable;
        char *msg = up_refusal(rc, "a stream chunk", why, data, len, &code, &retryable);
        up_set_fail(u, code, retryable, "%s", msg);
        free(msg);
        return 1;
    }
    if (up_stream_error(u, event, chunk)) {
        json_object_put(chunk);
        return 1;
    }
    if (assembler_add(u->asmb, chunk) != 0) {
        json_object_put(chunk);
        up_set_fail(u, "too_large", 0, "the answer is too large: %s", assembler_error(u->asmb));
        return 1;
    }
    json_object_put(chunk);
assembled:
    if (!u->first_output_ms) u->first_output_ms = now_ms();
    u->on_chunk(u->jr, data, len);
    return 0;
}

/* One header line: the request id, Retry-After and the rate-limit state. */
static size_t up_on_header(char *h, size_t size, size_t n, void *ud) {
    upstream *u = ud;
    size_t len = size * n;
    char *colon = memchr(h, ':', len);
    if (!colon) return len;
    size_t klen = (size_t)(colon - h);
    const char *v = colon + 1;
    size_t vlen = len - klen - 1;
    while (vlen && (*v == ' ' || *v == '\t')) v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ')) vlen--;
    if (klen == 12 && strncasecmp(h, "x-request-id", 12) == 0) {
        /* stored and sent on: the key masked in the whole value, then cut */
        char *id = xstrndup(v, vlen);
        size_t n = upstream_mask(id, vlen, up_secret(u));
        free(u->request_id);
        u->request_id = upstream_excerpt(id, n, 128);
        free(id);
        return len;
    }
    char val[128];
    if (vlen >= sizeof val) vlen = sizeof val - 1;
    memcpy(val, v, vlen);
    val[vlen] = '\0';
    upstream_limits *l = &u->limits;
    if (klen > 12 && strncasecmp(h, "x-ratelimit-", 12) == 0) {
        const char *k = h + 12;
        size_t kl = klen - 12;
        if (kl == 18 && strncasecmp(k, "remaining-requests", 18) == 0)
            l->remaining_requests = policy_parse_count(val);
        else if (kl == 16 && strncasecmp(k, "remaining-tokens", 16) == 0)
            l->remaining_tokens = policy_parse_count(val);
        else if (kl == 14 && strncasecmp(k, "reset-requests", 14) == 0)
            l->reset_requests_ms = rl_parse_duration(val);
        else if (kl == 12 && strncasecmp(k, "reset-tokens", 12) == 0)
            l->reset_tokens_ms = rl_parse_duration(val);
    } else if (klen == 14 && strncasecmp(h, "retry-after-ms", 14) == 0) {
        long long ms = policy_parse_retry_after_ms(val);
        if (ms >= 0) l->retry_after_ms = ms;
    } else if (klen == 11 && strncasecmp(h, "retry-after", 11) == 0 && l->retry_after_ms < 0) {
        l->retry_after_ms = policy_parse_retry_after(val, now_ms());
    }
    return len;
}

static size_t up_body(upstream *u, char *data, size_t len);

/* curl's callbacks name the job whose answer they read, for the time they
 * run (worker/report.h): a fault in parsing it is this job's. */
static size_t up_on_body(char *data, size_t size, size_t n, void *ud) {
    upstream *u = ud;
    report_current(u->req.owner);
    size_t r = up_body(u, data, size * n);
    report_current(NULL);
    return r;
}

static size_t up_body(upstream *u, char *data, size_t len) {
    long long max = u->req.max_response_bytes;
    u->last_activity = uv_now(u->loop);
    if (!u->status) {
        long code = 0;
        char *ct = NULL;
        curl_easy_getinfo(u->easy, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(u->easy, CURLINFO_CONTENT_TYPE, &ct);
        u->status = (int)code;
        u->is_sse = u->req.stream && code >= 200 && code < 300 && ct &&
                    strncasecmp(ct, "text/event-stream", 17) == 0;
        if (u->is_sse) u->sse.max_event = (size_t)max;
    }
    u->received += len;
    if (u->is_sse) {
        if ((long long)u->received > max) {
            up_set_fail(u, "too_large", 0, "the stream is larger than %lld bytes", max);
            return 0;
        }
        int rc = sse_feed(&u->sse, data, len);
        if (rc == -2) up_set_fail(u, "too_large", 0, "a stream event is larger than %lld bytes", max);
        return rc == 0 ? len : 0;
    }
    if ((long long)(u->in.len + len) > max) {
        up_set_fail(u, "too_large", 0, "the response is larger than %lld bytes", max);
        return 0;
    }
    if (!u->first_output_ms && u->status < 300) u->first_output_ms = now_ms();
    buf_append(&u->in, data, len);
    return len;
}

/* ---- the outcome ------------------------------------------------------------------ */

static void up_failed(upstream_outcome *o, const char *code, char *msg, int status,
                      json_object *upstream, int retryable) {
    o->ok = 0;
    o->code = code;
    o->message = msg;
    o->status = status;
    o->upstream = upstream;
    o->retryable = retryable;
}

/* A chat.completion `response` (owned) with its `text` (owned). */
static void up_ok(upstream_outcome *o, json_object *response, char *text) {
    o->ok = 1;
    o->response = response;
    o->text = text;
    json_object *usage = NULL;
    if (json_object_object_get_ex(response, "usage", &usage) &&
        json_object_is_type(usage, json_type_object))
        o->usage = usage;
    json_object *choices, *c0, *fr;
    if (json_object_object_get_ex(response, "choices", &choices) &&
        json_object_is_type(choices, json_type_array) && json_object_array_length(choices) > 0 &&
        (c0 = json_object_array_get_idx(choices, 0)) &&
        json_object_object_get_ex(c0, "finish_reason", &fr) && json_object_is_type(fr, json_type_string))
        o->finish_reason = json_object_get_string(fr);
}

/* Masks the key in the buffered body, in place: all later uses see it so. */
static void up_mask_body(upstream *u) {
    if (!u->in.len) return;
    u->in.len = upstream_mask(u->in.data, u->in.len, up_secret(u));
    u->in.data[u->in.len] = '\0';
}

/* An HTTP status outside 2xx: the upstream's error, with its message. The
 * body is kept as JSON when it is strict JSON within the bounds of a body,
 * else as a string of its first UPSTREAM_MAX_ERROR_TEXT bytes. */
static void up_status_error(upstream *u, upstream_outcome *o) {
    int rc;
    char why[128];
    up_mask_body(u);
    json_object *body =
        u->in.len ? up_parse(u, u->in.data, u->in.len, &up_body_limits, &rc, why, sizeof why)
                  : NULL;
    json_object *m = NULL, *e = NULL;
    char *msg;
    if (body && json_object_object_get_ex(body, "error", &e) &&
        json_object_object_get_ex(e, "message", &m) && json_object_is_type(m, json_type_string)) {
        char *quote = upstream_excerpt(json_object_get_string(m),
                                       (size_t)json_object_get_string_len(m), UPSTREAM_MAX_QUOTE);
        msg = xasprintf("HTTP %d: %s", u->status, quote);
        free(quote);
    } else {
        msg = xasprintf("HTTP %d from the upstream", u->status);
    }
    if (!body && u->in.len) {
        char *text = upstream_excerpt(u->in.data, u->in.len, UPSTREAM_MAX_ERROR_TEXT);
        body = json_object_new_string(text);
        free(text);
    }
    up_failed(o, "upstream_error", msg, u->status, body, policy_status_retryable(u->status));
}

static void up_stream_answer(upstream *u, upstream_outcome *o) {
    sse_finish(&u->sse); /* drops an incomplete event: it calls back no more */
    if (u->done_seen || assembler_complete(u->asmb)) {
        json_object *r = assembler_result(u->asmb);
        up_ok(o, r, xstrdup(json_object_to_json_string_ext(r, JSON_FLAGS)));
        return;
    }
    up_failed(o, "bad_upstream_response",
              xstrdup("the stream ended before [DONE] or a finish reason"), u->status, NULL, 1);
}

static void up_plain_answer(upstream *u, upstream_outcome *o) {
    if (!u->in.len) {
        up_failed(o, "bad_upstream_response", xstrdup("empty response"), u->status, NULL, 1);
        return;
    }
    int rc;
    char why[128];
    up_mask_body(u);
    json_object *body = up_parse(u, u->in.data, u->in.len, &up_body_limits, &rc, why, sizeof why);
    if (rc != STRICTJSON_OK) {
        const char *code;
        int retryable;
        char *msg = up_refusal(rc, "the response", why, u->in.data, u->in.len, &code, &retryable);
        up_failed(o, code, msg, u->status, NULL, retryable);
        return;
    }
    json_object *choices = NULL, *err = NULL;
    if (body && json_object_object_get_ex(body, "choices", &choices)) {
        /* Stored as it came, unless it spans lines (pretty-printed, as
         * OpenAI sends it): output lines must be one line each. */
        int multiline = memchr(u->in.data, '\n', u->in.len) || memchr(u->in.data, '\r', u->in.len);
        up_ok(o, body,
              multiline ? xstrdup(json_object_to_json_string_ext(body, JSON_FLAGS))
                        : buf_steal(&u->in));
        return;
    }
    if (body && json_object_object_get_ex(body, "error", &err)) {
        up_failed(o, "upstream_error", xstrdup("the upstream answered with an error"), u->status,
                  body, 1);
        return;
    }
    json_object_put(body);
    up_failed(o, "bad_upstream_response", xstrdup("the response is not a chat completion"),
              u->status, NULL, 1);
}

static const char *up_curl_code(CURLcode res) {
    return res == CURLE_OPERATION_TIMEDOUT ? "timeout" : "connection_error";
}

/* The exchange is over (the transfer is out of the multi): sorts what came
 * into an outcome, releases the handle and hands the outcome on. */
static void up_finish(upstream *u, CURLcode res) {
    uv_timer_stop(&u->idle);
    if (!u->status && u->easy) {
        long code = 0;
        curl_easy_getinfo(u->easy, CURLINFO_RESPONSE_CODE, &code);
        u->status = (int)code;
    }
    upstream_outcome o = {0};
    o.http_status = u->status;
    o.limits = u->limits;
    o.request_id = u->request_id;
    u->request_id = NULL;
    if (u->fail_code) {
        up_failed(&o, u->fail_code, u->fail_msg, u->status, u->fail_upstream, u->fail_retryable);
        u->fail_msg = NULL;
        u->fail_upstream = NULL;
    } else if (res != CURLE_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", curl_easy_strerror(res));
        up_failed(&o, up_curl_code(res), xstrdup(msg), 0, NULL, 1);
    } else if (u->status >= 400 || u->status < 200) {
        up_status_error(u, &o);
    } else if (u->is_sse) {
        up_stream_answer(u, &o);
    } else {
        up_plain_answer(u, &o);
    }
    if (!o.ok) up_mask_str(u, o.message); /* whatever it quotes */
    upstream_stop(u);
    u->on_done(u->jr, &o); /* last: it may start the next exchange */
}

void upstream_http_done(CURL *easy, CURLcode result, void *priv) {
    upstream *u = priv;
    (void)easy;
    report_current(u->req.owner); /* the answer is parsed in there */
    up_finish(u, result);
    report_current(NULL);
}

/* The idle timer: fires idle_timeout after the last byte; re-arms itself for
 * the rest of the interval when bytes came meanwhile, so a busy stream costs
 * no timer operation per chunk. */
static void up_on_idle(uv_timer_t *t) {
    upstream *u = t->data;
    uint64_t idle = (uint64_t)u->req.idle_timeout_ms;
    uint64_t now = uv_now(u->loop);
    if (now - u->last_activity < idle) {
        uv_timer_start(t, up_on_idle, idle - (now - u->last_activity), 0);
        return;
    }
    up_set_fail(u, "timeout", 1, "no data from the upstream for %llu ms",
                (unsigned long long)idle);
    http_remove(u->http, u->easy);
    up_finish(u, CURLE_OPERATION_TIMEDOUT);
}

/* ---- the exchange ------------------------------------------------------------------- */

upstream *upstream_new(uv_loop_t *loop, http_client *http, json_tokener *tok, jobrun *jr,
                       upstream_chunk_cb on_chunk, upstream_done_cb on_done) {
    upstream *u = xcalloc(1, sizeof *u);
    u->loop = loop;
    u->http = http;
    u->tok = tok;
    u->jr = jr;
    u->on_chunk = on_chunk;
    u->on_done = on_done;
    up_clear_limits(&u->limits);
    sse_init(&u->sse, up_on_event, u);
    uv_timer_init(loop, &u->idle);
    u->idle.data = u;
    return u;
}

/* The request headers: JSON in, JSON or a stream out, the key, the
 * provider's own. */
static struct curl_slist *up_headers(const upstream_request *req) {
    const provider_cfg *prov = req->prov;
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, req->stream ? "Accept: text/event-stream" : "Accept: application/json");
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip for big bodies */
    if (prov->api_key && *prov->api_key) {
        char *auth = xasprintf("Authorization: Bearer %s", prov->api_key);
        h = curl_slist_append(h, auth);
        free(auth);
    }
    for (int i = 0; i < prov->nheaders; i++) h = curl_slist_append(h, prov->headers[i]);
    return h;
}

static void up_setopts(upstream *u, CURL *e) {
    const upstream_request *req = &u->req;
    char *url = xasprintf("%s/chat/completions", req->prov->base_url);
    curl_easy_setopt(e, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, u);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Waiting for a connection to offer HTTP/2 multiplexing only makes sense
     * over TLS (no h2c): on plain HTTP it would hold new requests back until
     * the first answer's headers arrive. */
    if (strncmp(req->prov->base_url, "https:", 6) == 0) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, up_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, u);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, up_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, u);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "chatq/0.1");
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)UP_RECV_BUFFER);
    u->headers = up_headers(req);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, u->headers);
}

int upstream_start(upstream *u, const upstream_request *req, const char **err) {
    upstream_reset(u);
    u->req = *req;
    u->asmb = assembler_new();
    CURL *e = http_easy_get(u->http);
    if (!e) {
        *err = "cannot create an HTTP handle";
        return -1;
    }
    u->easy = e;
    up_setopts(u, e);
    u->last_activity = uv_now(u->loop);
    if (req->idle_timeout_ms > 0)
        uv_timer_start(&u->idle, up_on_idle, (uint64_t)req->idle_timeout_ms, 0);
    CURLMcode mc = http_add(u->http, e);
    if (mc != CURLM_OK) {
        log_error("http_add_failed", "error=%s", log_quote(curl_multi_strerror(mc)));
        upstream_stop(u);
        *err = "cannot start the HTTP request";
        return -1;
    }
    return 0;
}

void upstream_stop(upstream *u) {
    if (!u) return;
    uv_timer_stop(&u->idle);
    if (u->easy) {
        http_remove(u->http, u->easy);
        http_easy_put(u->http, u->easy);
        u->easy = NULL;
    }
    curl_slist_free_all(u->headers);
    u->headers = NULL;
    sse_free(&u->sse);
    sse_init(&u->sse, up_on_event, u);
    buf_free(&u->in);
    buf_free(&u->masked);
    u->chunks = 0;
    free(u->request_id);
    u->request_id = NULL;
    free(u->fail_msg);
    u->fail_msg = NULL;
    json_object_put(u->fail_upstream);
    u->fail_upstream = NULL;
    u->fail_code = NULL;
    u->status = 0;
    u->is_sse = 0;
    u->done_seen = 0;
    u->received = 0;
    up_clear_limits(&u->limits);
}

void upstream_reset(upstream *u) {
    if (!u) return;
    upstream_stop(u);
    if (u->asmb) assembler_free(u->asmb);
    u->asmb = NULL;
    u->first_output_ms = 0;
}

json_object *upstream_usage(const upstream *u) {
    return u && u->asmb ? assembler_usage(u->asmb) : NULL;
}

long long upstream_first_output_ms(const upstream *u) { return u ? u->first_output_ms : 0; }

static void up_on_closed(uv_handle_t *h) { free(h->data); }

void upstream_free(upstream *u) {
    if (!u) return;
    upstream_reset(u); /* leaves the SSE parser holding nothing */
    uv_close((uv_handle_t *)&u->idle, up_on_closed);
}

void upstream_outcome_free(upstream_outcome *o) {
    free(o->request_id);
    json_object_put(o->response);
    free(o->text);
    free(o->message);
    json_object_put(o->upstream);
    memset(o, 0, sizeof *o);
}

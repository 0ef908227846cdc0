/* upstream.h — one HTTP exchange with an OpenAI-compatible upstream: a
 * chat-completion request in, one typed outcome out.
 *
 * upstream_start() sends the request through the worker's curl multi
 * (worker/http.h). While the answer arrives, upstream reads the headers it
 * cares about (x-request-id, Retry-After, retry-after-ms, x-ratelimit-*), and
 * either buffers the body (a plain answer) or parses it as Server-Sent Events
 * (a stream): each chunk is checked, assembled into the final answer
 * (common/assembler.h) and handed to the job through the chunk callback, in
 * order, so the job can publish it. An idle timer ends a stream that stops
 * sending. When the exchange is over, the done callback gets an outcome:
 *   ok:     the parsed chat.completion, its text as it is stored, its usage
 *           and finish reason;
 *   failed: an error code (connection_error, timeout, upstream_error,
 *           bad_upstream_response, too_large), a message, the HTTP status
 *           the error reports, the upstream's error body, and whether another
 *           attempt may do better.
 * Either way the outcome says what the upstream said about its limits.
 *
 * Nothing from the upstream is trusted (docs/reliability.md):
 *   - every chunk and every body must be strict JSON in valid UTF-8
 *     (common/strictjson.h): a chunk that is not is never handed on, and
 *     the attempt fails bad_upstream_response;
 *   - a chunk with a top-level "error" object (or an event of type "error")
 *     ends the attempt as upstream_error, whatever else it carries;
 *   - what one exchange may cost is bounded: UPSTREAM_MAX_CHUNKS chunks,
 *     UPSTREAM_MAX_CHUNK_VALUES JSON values in one chunk, the BODY bounds for
 *     a plain answer, the assembler's own (common/assembler.h), and
 *     max_response_bytes for the bytes; passing one fails too_large;
 *   - the provider's API key, should the upstream echo it, is replaced by
 *     UPSTREAM_SECRET_MASK in all that comes (chunks, bodies, x-request-id)
 *     before anything is parsed, published, stored or logged;
 *   - the upstream's text quoted in a message is cut on a character
 *     boundary, with invalid UTF-8 replaced (upstream_excerpt()).
 *
 * One upstream per job, reused for each attempt. upstream_stop() cuts a
 * running exchange short (no callback then). The stream's assembled usage
 * stays readable (upstream_usage) after the exchange, until upstream_reset()
 * or the next start: a job that ends during its backoff still accounts what
 * its last attempt used.
 *
 * Ownership: upstream_new() allocates; upstream_free() releases it (the
 * memory goes in its idle timer's close callback). Like free(), the
 * functions that take an upstream accept NULL: a job that never sent a
 * request has none, and nothing to stop. The request's strings are
 * borrowed until the exchange is over. The done callback owns the outcome's
 * contents and releases them with upstream_outcome_free(). */
#ifndef CHATQ_UPSTREAM_H
#define CHATQ_UPSTREAM_H

#include <curl/curl.h>
#include <json-c/json.h>
#include <stddef.h>
#include <uv.h>

#include "common/config.h"
#include "worker/http.h"

typedef struct jobrun jobrun;
typedef struct upstream upstream;

/* The bounds on one exchange; see the file comment. */
#define UPSTREAM_MAX_CHUNKS 100000
#define UPSTREAM_MAX_CHUNK_VALUES 10000
#define UPSTREAM_MAX_BODY_VALUES 1000000
#define UPSTREAM_MAX_BODY_CONTAINERS 250000
/* json-c's own parse depth (JSON_TOKENER_DEFAULT_DEPTH): deeper fails. */
#define UPSTREAM_MAX_DEPTH 32
/* An error body that is not JSON is kept as a string of at most this many
 * bytes; upstream text in a message, at most UPSTREAM_MAX_QUOTE. */
#define UPSTREAM_MAX_ERROR_TEXT 2000
#define UPSTREAM_MAX_QUOTE 300
/* What an echoed API key becomes. Keys shorter than UPSTREAM_MIN_SECRET
 * bytes are not looked for: masking them would garble ordinary text (and
 * JSON), and so short a key is no secret anyway. */
#define UPSTREAM_SECRET_MASK "***"
#define UPSTREAM_MIN_SECRET 8

typedef struct upstream_request {
    const provider_cfg *prov;     /* base_url, api key, extra headers */
    const char *body;             /* the JSON request body */
    size_t body_len;
    int stream;                   /* ask for text/event-stream */
    long long timeout_ms;         /* the whole exchange */
    long long connect_timeout_ms;
    long long idle_timeout_ms;    /* a stream's longest silence; 0 = none */
    long long max_response_bytes; /* larger answers fail too_large */
    const char *owner;            /* the job's SHA1, named to chatqd while its
                                     answer is read (report_current): a fault
                                     there is charged to this job alone */
} upstream_request;

/* What the upstream said about its limits; -1 = not said. */
typedef struct upstream_limits {
    long long retry_after_ms;     /* retry-after-ms, else Retry-After */
    long long remaining_requests; /* x-ratelimit-remaining-requests */
    long long remaining_tokens;   /* x-ratelimit-remaining-tokens */
    long long reset_requests_ms;  /* x-ratelimit-reset-requests */
    long long reset_tokens_ms;    /* x-ratelimit-reset-tokens */
} upstream_limits;

typedef struct upstream_outcome {
    int ok;
    int http_status;              /* the status line's, 0 when none came */
    char *request_id;             /* x-request-id, or NULL (owned) */
    upstream_limits limits;
    /* ok */
    json_object *response;        /* the chat.completion (owned) */
    char *text;                   /* it as JSON text, as stored (owned) */
    json_object *usage;           /* borrowed from response, or NULL */
    const char *finish_reason;    /* of the first choice, borrowed, or NULL */
    /* failed */
    const char *code;             /* static text */
    char *message;                /* owned */
    int status;                   /* the HTTP status the error reports: 0 for
                                     failures of the transport */
    json_object *upstream;        /* the upstream's error body, or NULL (owned) */
    int retryable;
} upstream_outcome;

/* A chunk of a stream (its JSON text, data[len]), valid during the call.
 * Called from inside curl: it must not stop or free the upstream. */
typedef void (*upstream_chunk_cb)(jobrun *jr, const char *data, size_t len);
/* The exchange is over; the callee owns o's contents. */
typedef void (*upstream_done_cb)(jobrun *jr, upstream_outcome *o);

/* tok: a JSON parser to reuse (borrowed). The callbacks get `jr`. */
upstream *upstream_new(uv_loop_t *loop, http_client *http, json_tokener *tok, jobrun *jr,
                       upstream_chunk_cb on_chunk, upstream_done_cb on_done);
/* Starts an exchange (after dropping what the last one left). Returns 0, or
 * -1 with *err set to why it could not start (static text). */
int upstream_start(upstream *u, const upstream_request *req, const char **err);
/* Ends the exchange now if one runs (no callback) and releases its HTTP
 * handle and buffers; the assembled usage and first output time stay. */
void upstream_stop(upstream *u);
/* upstream_stop(), and forgets those too: a new attempt begins. */
void upstream_reset(upstream *u);
/* The last usage object the stream carried, or NULL. Borrowed. */
json_object *upstream_usage(const upstream *u);
/* Unix ms when the first chunk of a stream, or the first byte of a 2xx
 * plain answer, arrived in the exchange; 0 = none yet. */
long long upstream_first_output_ms(const upstream *u);
void upstream_free(upstream *u);

/* The done callback of the worker's http_client: every transfer it runs is
 * an upstream's (CURLOPT_PRIVATE). */
void upstream_http_done(CURL *easy, CURLcode result, void *priv);

void upstream_outcome_free(upstream_outcome *o);

/* Replaces every occurrence of `secret` in s[0..len) by
 * UPSTREAM_SECRET_MASK, in place (nothing when secret is NULL or shorter
 * than UPSTREAM_MIN_SECRET). Returns the new length; s[len] is not
 * touched, so a NUL-terminated s needs s[new length] = 0 after. */
size_t upstream_mask(char *s, size_t len, const char *secret);

/* At most max bytes of s[0..len) as a new NUL-terminated string of valid
 * UTF-8: cut on a character boundary (then "..." follows), each byte that
 * is not part of a valid UTF-8 sequence (a NUL too) replaced by U+FFFD. */
char *upstream_excerpt(const char *s, size_t len, size_t max);

#endif

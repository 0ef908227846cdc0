/* job.h — parsing and validating one job (docs/protocol.md §4), and building the request
 * body sent upstream.
 *
 * job_parse_opts() reads the raw text a producer pushed. On success every
 * field is filled; on failure it returns -1 with a one-line message in `err`
 * that names the field ("body.messages must be a non-empty array", "tenant
 * must not contain '|'", "timeout_ms must be an integer from 1 to 86400000,
 * not 1e16", ...), and still fills whatever it could read and passed its own
 * rule (id, custom_id, reply_to, model, tenant, metadata), so the caller can
 * store the failure under the job's id and answer reply_to. A field that
 * breaks its rule is never filled: an id "victim\u0000x" does not become
 * "victim", a reply_to naming chatq's own keys is not answered.
 *
 * The limits are the JOB_* constants below; docs/reliability.md says why
 * each has its value and what a job beyond it gets.
 *
 * Ownership: the job owns `root` (the parsed JSON) and the strings; the
 * json_object pointers other than root are borrowed from root. job_free()
 * releases everything; the job struct itself belongs to the caller. */
#ifndef CHATQ_JOB_H
#define CHATQ_JOB_H

#include <json-c/json.h>
#include <stddef.h>

/* What the text may cost to parse (checked by a byte scan before json-c
 * builds anything, see jsonparse_strict()). A 1 MiB job of [{},{},...]
 * would otherwise be some 260 MB of json-c objects. */
#define JOB_MAX_DEPTH 128        /* nesting of objects and arrays: large tool schemas */
#define JOB_MAX_CONTAINERS 20000 /* objects and arrays in the whole job */
#define JOB_MAX_VALUES 100000    /* array elements and object members */

/* Strings (every string in a job is also valid UTF-8 with no \u0000). */
#define JOB_ID_MAX 128           /* id: 1-128 characters of [A-Za-z0-9._:-] */
#define JOB_CUSTOM_ID_MAX 512    /* custom_id: bytes, no control character */
#define JOB_TENANT_MAX 128       /* tenant: characters, no control character, no '|' */
#define JOB_MODEL_MAX 256        /* body.model: 1-256 bytes, no control character, no '|' */
#define JOB_REPLY_TO_MAX 512     /* reply_to: 1-512 bytes, no control character */

/* Numbers: integers (not 2.5, 1e3 or "3"), from 1 to: */
#define JOB_TIMEOUT_MS_MAX 86400000LL   /* a day */
#define JOB_MAX_ATTEMPTS_MAX 100LL
#define JOB_RESULT_TTL_S_MAX 31536000LL /* a year */
#define JOB_N_MAX 128LL                 /* body.n, when present */
/* body.max_tokens and body.max_completion_tokens, when present: integers
 * >= 0 (below 2^63); how much of them a rate limit charges is capped there. */

/* How to parse: the zero value is max_job_bytes unlimited, no reply_to
 * prefix rule and the default cost limits. */
typedef struct job_opts {
    size_t max_bytes;    /* max_job_bytes; 0 = no limit */
    const char *prefix;  /* the key prefix P: reply_to must not name a key
                            under "P:" (job_check_reply_to()); NULL = that
                            rule is not checked */
    long max_containers; /* 0 = JOB_MAX_CONTAINERS */
    long max_values;     /* 0 = JOB_MAX_VALUES */
} job_opts;

typedef struct job {
    json_object *root;     /* the parsed job, NULL when not an object */
    json_object *body;     /* root.body (borrowed) */
    json_object *metadata; /* root.metadata (borrowed), may be NULL */
    char *id;              /* id, else custom_id, else job_id_from_text(); NULL if unreadable */
    int id_generated;      /* 1 when chatq made the id up (from the text) */
    char *custom_id;       /* NULL when absent */
    char *model;           /* body.model, NULL when absent */
    char *tenant;          /* NULL when absent */
    char *reply_to;        /* NULL when absent */
    char *provider;        /* NULL when absent */
    int stream;            /* effective streaming flag */
    long long timeout_ms;  /* -1 when absent (use the config default) */
    long long max_attempts;/* -1 when absent */
    long long result_ttl_s;/* -1 when absent */
} job;

/* A job's status, as the "status" field of its hash holds it. A job is
 * "running" from its START to its FINISH; the last three are final. "queued"
 * is never written by chatq (docs/protocol.md: a client may set it). */
typedef enum job_status {
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELLED,
} job_status;

/* The text of status s ("running", "succeeded", ...). */
const char *job_status_name(job_status s);
/* Reads the text of a status: returns 0 with *out set, or -1 when `s` is no
 * status (NULL included). */
int job_status_parse(const char *s, job_status *out);
/* 1 for succeeded, failed and cancelled: the job has its result. */
int job_status_final(job_status s);

/* Parses and validates `raw` (len bytes, need not be NUL-terminated) with
 * the options `o` (NULL = the zero job_opts). Returns 0 or -1. */
int job_parse_opts(job *j, const char *raw, size_t len, const job_opts *o, char *err,
                   size_t errlen);

/* job_parse_opts() with only max_bytes set (the max_job_bytes limit, 0 =
 * none): every rule but reply_to's prefix rule. */
int job_parse(job *j, const char *raw, size_t len, size_t max_bytes, char *err, size_t errlen);

/* Checks a reply_to key: 1-512 bytes without control characters and, when
 * prefix is not NULL, no key under "<prefix>:" but a batch's output list
 * "<prefix>:batch:<batch>:out" (<batch> non-empty, without ':'): every
 * other key there is chatq's state (queues, processing lists, job hashes,
 * events, the dead list, usage, cancel and control keys, workers,
 * heartbeats, crash counts, rate limits, batch hashes, and any key a later
 * version adds). key NULL counts as empty. Returns 0, or -1 with a message
 * naming reply_to. */
int job_check_reply_to(const char *prefix, const char *key, char *err, size_t errlen);

/* The JSON text of the body to send upstream (malloc'd): body unchanged
 * except, when streaming, "stream":true and "stream_options" with
 * "include_usage":true (other stream_options kept); when not streaming,
 * "stream" and "stream_options" removed. */
char *job_request_body(const job *j);

/* Writes the id of a job without id and custom_id into out[32]: "job-" and
 * the first 24 hex digits of the SHA1 of its text raw[0..len). The same
 * text pushed twice is then the same job (docs/protocol.md §6). */
void job_id_from_text(const char *raw, size_t len, char out[32]);

/* Writes a fresh random id ("job-" + 24 hex digits) into out[32]: for a
 * client that makes up an id and writes it into the job (chatq submit, the
 * name of a chatq batch run). job_parse() never uses it. */
void job_generate_id(char out[32]);

/* 1 when s is a valid id: 1-128 characters of [A-Za-z0-9._:-]. */
int job_id_valid(const char *s);

void job_free(job *j);

#endif

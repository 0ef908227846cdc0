/* job.h — parsing and validating one job (SPEC §4), and building the request
 * body sent upstream.
 *
 * job_parse() reads the raw text a producer pushed. On success every field is
 * filled; on failure it returns -1 with a one-line message in `err` that
 * names the field ("body.messages must be a non-empty array", "id must be 1-128
 * characters of [A-Za-z0-9._:-]", ...), and still fills whatever it could read
 * (id, custom_id, reply_to, model, tenant, metadata), so the caller can store
 * the failure under the job's id and answer reply_to.
 *
 * Ownership: the job owns `root` (the parsed JSON) and the strings; the
 * json_object pointers other than root are borrowed from root. job_free()
 * releases everything; the job struct itself belongs to the caller. */
#ifndef CHATQ_JOB_H
#define CHATQ_JOB_H

#include <json-c/json.h>
#include <stddef.h>

typedef struct job {
    json_object *root;     /* the parsed job, NULL when not an object */
    json_object *body;     /* root.body (borrowed) */
    json_object *metadata; /* root.metadata (borrowed), may be NULL */
    char *id;              /* id, else custom_id, else generated; NULL if unreadable */
    int id_generated;      /* 1 when chatq made the id up */
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
 * is never written by chatq (SPEC: a client may set it). */
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

/* Parses and validates `raw` (len bytes, need not be NUL-terminated).
 * max_bytes: the max_job_bytes limit (0 = none). Returns 0 or -1. */
int job_parse(job *j, const char *raw, size_t len, size_t max_bytes, char *err, size_t errlen);

/* The JSON text of the body to send upstream (malloc'd): body unchanged
 * except, when streaming, "stream":true and "stream_options" with
 * "include_usage":true (other stream_options kept); when not streaming,
 * "stream" and "stream_options" removed. */
char *job_request_body(const job *j);

/* Writes a fresh random id ("job-" + 24 hex digits) into out[32]. */
void job_generate_id(char out[32]);

/* 1 when s is a valid id: 1-128 characters of [A-Za-z0-9._:-]. */
int job_id_valid(const char *s);

void job_free(job *j);

#endif

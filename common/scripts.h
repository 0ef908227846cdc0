/* scripts.h — the Lua scripts chatq runs in Redis, and how to call each one.
 *
 * Everything that must be atomic is one script: taking jobs from the queues
 * into a processing list, starting a job, storing its final result exactly
 * once, putting jobs back on their queues, a worker leaving, the shared rate
 * limits. The texts are in scripts.c with what each one does; this header
 * says how each is called.
 *
 * Calling a script. Each has a call struct with named fields and a builder,
 * scripts_<name>_args(), which appends to an rargs what EVALSHA takes after
 * the SHA: numkeys, the KEYS, then the ARGV. That is what
 * rconn_eval_reliable() wants; a best-effort caller adds "EVALSHA" and the
 * SHA first. The comments of the call structs are the one description of
 * each script's KEYS and ARGV.
 *
 * Ownership: the builders borrow every string of the call (rargs_add): keep
 * them until the command is sent (the rconn functions copy what they send).
 * Numbers are formatted into strings the rargs owns. A NULL string where a
 * field says "NULL = none" is sent as "". */
#ifndef CHATQ_SCRIPTS_H
#define CHATQ_SCRIPTS_H

#include <stddef.h>

#include "common/job.h"
#include "common/rconn.h"
#include "common/usage.h"

extern const char scripts_fetch[];
extern const char scripts_start[];
extern const char scripts_finish[];
extern const char scripts_requeue[];
extern const char scripts_recover[];
extern const char scripts_deregister[];
extern const char scripts_ratelimit[];
extern const char scripts_batch_push[];

/* FETCH: take up to `want` jobs, higher-priority queues first.
 * KEYS: queue 1, processing 1, queue 2, processing 2, ..., crashes hash.
 * ARGV[1] want, ARGV[2] busy.
 * Returns {mode, queue number (1-based), job, queue number, job, ...}: mode
 * 0 normal, 1 solo (the one job is a suspect: take no other until it ends),
 * 2 blocked (a suspect is next: fetch again once nothing is in flight). */
typedef struct scripts_fetch_call {
    char *const *queue_keys;      /* P:queue:<q>, in priority order */
    char *const *processing_keys; /* P:processing:<worker>:<q>, same order */
    int nqueues;
    const char *crashes_key;      /* P:crashes */
    long long want;               /* jobs to take at most */
    long long busy;               /* jobs the worker has in flight */
} scripts_fetch_call;
void scripts_fetch_args(const scripts_fetch_call *c, rargs *out);

/* START: a worker begins (or resumes) a job.
 * KEYS[1] job hash, KEYS[2] events list, KEYS[3] cancel key.
 * ARGV[1] worker id, ARGV[2] queue, ARGV[3] model, ARGV[4] tenant, ARGV[5]
 * provider, ARGV[6] now (unix ms), ARGV[7] start token
 * "<worker id>/<start number>", unique to this start of this job.
 * Returns {cancel requested 0/1, next seq, attempts made before, resumed
 * 0/1, started_at of the first run}. */
typedef struct scripts_start_call {
    const char *job_key;
    const char *events_key;
    const char *cancel_key;
    const char *worker_id;
    const char *queue;          /* the queue's name */
    const char *model;          /* as the job asked for it */
    const char *tenant;         /* NULL = none */
    const char *provider;       /* the provider's name */
    long long now_ms;
    unsigned long long start_number; /* counts the worker's starts */
} scripts_start_call;
void scripts_start_args(const scripts_start_call *c, rargs *out);

/* FINISH: store a job's final result, exactly once.
 * KEYS[1] processing list, KEYS[2] job hash, KEYS[3] events list, KEYS[4]
 * stream channel (those three '' when the job has no id), KEYS[5] usage
 * hash, KEYS[6] reply_to list ('' = none), KEYS[7] dead list, KEYS[8] cancel
 * key ('' = none), KEYS[9] crashes hash.
 * ARGV[1] the raw job text, ARGV[2] result ttl (s), ARGV[3] final event JSON,
 * ARGV[4] output line, ARGV[5] dead entry ('' = none), ARGV[6] usage field
 * prefix "<tenant>|<model>|" (usage_field_prefix), ARGV[7] m, then m pairs
 * (metric name, increment), then (field, value) pairs for the job hash.
 * Returns 0 when the job was not in the processing list (nothing written), 1
 * when stored, 2 when stored but reply_to is not a list. */
typedef struct scripts_finish_result {
    /* the job hash; NULL strings and 0 times are not written */
    job_status status;
    long long attempts;
    const char *response;       /* the chat.completion, JSON text */
    const char *error;          /* the error object, JSON text */
    const char *usage;          /* the usage object, JSON text */
    const char *model;          /* the model that served it */
    const char *provider;
    const char *tenant;
    const char *queue;
    const char *worker;
    long long started_at, first_token_at, finished_at; /* unix ms */
    const char *metadata;       /* JSON text */
    const char *custom_id;
} scripts_finish_result;

typedef struct scripts_finish_call {
    const char *processing_key;
    const char *job_key;        /* NULL = the job has no id: no hash, events */
    const char *events_key;     /*   or stream (then these three are NULL) */
    const char *stream_key;
    const char *usage_key;      /* P:usage:<day> */
    const char *reply_to;       /* NULL = none */
    const char *dead_key;
    const char *cancel_key;     /* NULL = no cancel key to delete */
    const char *crashes_key;
    const char *raw;            /* the job as taken from the queue */
    size_t raw_len;
    long long ttl_s;
    const char *event;          /* the final stream event */
    size_t event_len;
    const char *output_line;    /* NULL = none (no reply_to) */
    const char *dead_entry;     /* NULL = the job does not go to the dead list */
    size_t dead_entry_len;
    const char *usage_tenant;   /* the usage counters' field: NULL = none */
    const char *usage_model;    /*   the model as the job asked for it */
    long long usage[USAGE_NMETRICS]; /* increments; 0 = not sent */
    scripts_finish_result result;
} scripts_finish_call;
void scripts_finish_args(const scripts_finish_call *c, rargs *out);

/* REQUEUE: put jobs a worker holds back at the consuming end of their queues.
 * KEYS: processing 1, queue 1, processing 2, queue 2, ...
 * ARGV: the raw jobs to put back (each removed once from whichever processing
 * list holds it); with no ARGV, every job of every processing list.
 * Returns the number of jobs moved. */
typedef struct scripts_requeue_call {
    char *const *processing_keys;
    char *const *queue_keys;    /* queue_keys[i] is where processing_keys[i] goes */
    int nqueues;
    const char *const *jobs;    /* NULL = all the jobs of the lists */
    const size_t *job_lens;
    int njobs;
} scripts_requeue_call;
void scripts_requeue_args(const scripts_requeue_call *c, rargs *out);

/* RECOVER: put back the jobs of a worker that is gone, and forget it.
 * KEYS[1] workers hash, KEYS[2] its heartbeat key, KEYS[3] crashes hash,
 * KEYS[4] dead list, then pairs (processing list, queue).
 * ARGV[1] worker id, ARGV[2] "1" = only if its heartbeat has expired else
 * "0", ARGV[3] prefix, ARGV[4] now (unix ms), ARGV[5] poison limit, ARGV[6]
 * default result ttl (s), ARGV[7] UTC day (keys_day).
 * Returns the number of jobs requeued, -1 when the worker was unknown and
 * held nothing, -2 when its heartbeat is alive (nothing done). */
typedef struct scripts_recover_call {
    const char *workers_key;
    const char *heartbeat_key;  /* the gone worker's */
    const char *crashes_key;
    const char *dead_key;
    char *const *processing_keys; /* the gone worker's, one per queue */
    char *const *queue_keys;
    int nqueues;
    const char *worker_id;
    int only_if_expired;        /* a sweep of workers we did not start */
    const char *prefix;         /* poison pills' job keys are built from it */
    long long now_ms;
    long long poison_limit;     /* deaths after which a job is not requeued */
    long long result_ttl_s;     /* for a poison pill without its own */
    const char *day;            /* "YYYY-MM-DD", for the usage hash */
} scripts_recover_call;
void scripts_recover_args(const scripts_recover_call *c, rargs *out);

/* DEREGISTER: a worker that drained leaves P:workers and drops its
 * heartbeat, so nobody tries to recover it.
 * KEYS[1] workers hash, KEYS[2] heartbeat key; ARGV[1] worker id. */
typedef struct scripts_deregister_call {
    const char *workers_key;
    const char *heartbeat_key;
    const char *worker_id;
} scripts_deregister_call;
void scripts_deregister_args(const scripts_deregister_call *c, rargs *out);

/* RATELIMIT: GCRA buckets shared by every worker (see worker/ratelimit.h).
 * KEYS: the bucket hashes. ARGV[1] mode, then:
 *   take:   per key (request interval ms, token interval ms, tokens);
 *           returns 0 when granted, else the ms to wait;
 *   adjust: per key (token interval ms, delta tokens);
 *   push:   ARGV[2] delay (ms), ARGV[3] "r", "t" or "rt". */
typedef enum scripts_ratelimit_mode {
    SCRIPTS_RL_TAKE,
    SCRIPTS_RL_ADJUST,
    SCRIPTS_RL_PUSH,
} scripts_ratelimit_mode;

typedef struct scripts_ratelimit_call {
    scripts_ratelimit_mode mode;
    char *const *keys;          /* P:ratelimit:<provider>:<glob> */
    int nkeys;
    const double *req_iv;       /* per key: ms per request, 0 = no limit (take) */
    const double *tok_iv;       /* per key: ms per token, 0 = no limit */
    long long tokens;           /* take: the request's estimate; adjust: the delta */
    long long delay_ms;         /* push */
    const char *which;          /* push: "r", "t" or "rt" */
} scripts_ratelimit_call;
void scripts_ratelimit_args(const scripts_ratelimit_call *c, rargs *out);

#endif

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
extern const char scripts_drop[];
extern const char scripts_deregister[];
extern const char scripts_ratelimit[];
extern const char scripts_batch_push[];

/* FETCH: take up to `want` jobs, higher-priority queues first.
 * KEYS: queue 1, processing 1, queue 2, processing 2, ... (priority order).
 * ARGV[1] want, ARGV[2] max_job_bytes (0 = no limit), ARGV[3] the bytes of
 * an oversized job's excerpt.
 * Returns {queue number (1-based), job text, ...}; a job text may be an
 * oversized job's marker (scripts_oversized_parse). */
typedef struct scripts_fetch_call {
    char *const *queue_keys;      /* where jobs are taken from, priority order */
    char *const *processing_keys; /* P:processing:<worker>:<q>, same order */
    int nqueues;
    long long want;               /* jobs to take at most */
    long long max_job_bytes;
    long long excerpt_bytes;      /* SCRIPTS_EXCERPT_BYTES */
} scripts_fetch_call;
void scripts_fetch_args(const scripts_fetch_call *c, rargs *out);

/* The first bytes of an oversized job kept in its marker and dead entry. */
#define SCRIPTS_EXCERPT_BYTES 4096

/* An oversized job's marker, as FETCH leaves it in the processing list:
 * "\0chatq-oversized\0<bytes>\0<excerpt>". Returns 1 and fills *bytes and
 * the excerpt (borrowed from text) when text is one, else 0. */
int scripts_oversized_parse(const char *text, size_t len, long long *bytes,
                            const char **excerpt, size_t *excerpt_len);

/* Many jobs in one script call: *_add() appends one job's KEYS and ARGV
 * (copies of every string: the call may be freed right after), *_args()
 * builds the call. Zero value = empty; scripts_batch_free() releases it. */
typedef struct scripts_batch {
    rargs keys;
    rargs args;
    int n;                        /* jobs added */
} scripts_batch;
void scripts_batch_free(scripts_batch *b);

/* START: workers begin (or resume) jobs; one call for many jobs.
 * KEYS[1] requeued hash, then per job: job hash, events list, cancel key.
 * ARGV per job: SHA1 of the job text, worker id, queue, model, tenant,
 * provider, now (unix ms), start token "<worker id>/<start number>".
 * Returns per job 6 values: kind (scripts_start_kind), cancel requested 0/1,
 * next seq, attempts made before, charged attempts before, started_at. */
typedef enum scripts_start_kind {
    SCRIPTS_START_FRESH = 0,
    SCRIPTS_START_RESUMED = 1,
    SCRIPTS_START_DUPLICATE = 2,
} scripts_start_kind;
#define SCRIPTS_START_REPLY 6         /* values per job in START's reply */

typedef struct scripts_start_call {
    const char *job_key;
    const char *events_key;
    const char *cancel_key;
    const char *sha1;           /* of the job text, 40 hex digits */
    const char *worker_id;
    const char *queue;          /* the queue's name */
    const char *model;          /* as the job asked for it; NULL = none */
    const char *tenant;         /* NULL = none */
    const char *provider;       /* the provider's name; NULL = none */
    long long now_ms;
    const char *token;          /* the start token */
} scripts_start_call;
void scripts_start_add(scripts_batch *b, const scripts_start_call *c);
void scripts_start_args(const scripts_batch *b, const char *requeued_key, rargs *out);

/* FINISH: store jobs' final results, each exactly once; one call for many.
 * KEYS[1] crashes hash, KEYS[2] requeued hash, KEYS[3] dead list, then per
 * job 7 keys: processing list, job hash ('' = the job has no id: then events
 * and stream are '' too), events list, stream channel, usage hash, reply_to
 * list ('' = none), cancel key ('' = none).
 * ARGV[1] the default result ttl (s); then per job: the job text, start
 * token ('' = none), SHA1 of the text, result ttl (s), final event, output
 * line, dead entry ('' = none), usage field prefix "<tenant>|<model>|"
 * (usage_field_prefix), the usage increments as one string "<metric> <n>
 * <metric> <n> ..." (only those not 0), then the job hash: a string of 15
 * flags, '1' where the field of that place has a value (status, attempts,
 * response, error, usage, model, provider, tenant, queue, worker,
 * started_at, first_token_at, finished_at, metadata, custom_id), and the
 * values of the flagged fields in that order. (Names are not sent: Redis'
 * cost per job is mostly its cost per argument.)
 * Returns per job 0 (not stored: a resend, recovered elsewhere, or another
 * run owns the id), 1 (stored) or 2 (stored, but reply_to is not a list). */
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
    const char *cancel_key;     /* NULL = no cancel key to delete */
    const char *raw;            /* the job as taken from the queue */
    size_t raw_len;
    const char *token;          /* its start token; NULL = not started */
    const char *sha1;           /* of raw */
    long long ttl_s;
    const char *event;          /* the final stream event */
    size_t event_len;
    const char *output_line;    /* NULL = none (no reply_to) */
    const char *dead_entry;     /* NULL = the job does not go to the dead list */
    size_t dead_entry_len;
    const char *usage_tenant;   /* the usage counters' field */
    const char *usage_model;    /*   the model as the job asked for it */
    long long usage[USAGE_NMETRICS]; /* increments; 0 = not sent */
    scripts_finish_result result;
} scripts_finish_call;
void scripts_finish_add(scripts_batch *b, const scripts_finish_call *c);

typedef struct scripts_finish_shared {
    const char *crashes_key;
    const char *requeued_key;
    const char *dead_key;
    long long default_ttl_s;
} scripts_finish_shared;
void scripts_finish_args(const scripts_batch *b, const scripts_finish_shared *s, rargs *out);

/* REQUEUE: put jobs a worker holds back at the consuming end of their lists.
 * KEYS[1] requeued hash, then pairs (processing list, list it goes back to).
 * ARGV[1] the worker's id, then the job texts to put back (each removed once
 * from whichever processing list holds it); with none, every job of every
 * processing list. Returns the number of jobs moved. */
typedef struct scripts_requeue_call {
    const char *requeued_key;
    const char *worker_id;
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
 * KEYS[4] dead list, KEYS[5] requeued hash, then triples (processing list,
 * list its jobs go back to, quarantine list).
 * ARGV[1] worker id, ARGV[2] "1" = only if its heartbeat has expired else
 * "0", ARGV[3] prefix, ARGV[4] now (unix ms), ARGV[5] poison limit, ARGV[6]
 * default result ttl (s), ARGV[7] UTC day (keys_day), ARGV[8] "1" = it died
 * of a fault, ARGV[9] SHA1 of the job it faulted on ('' = not known).
 * Returns {requeued, quarantined, dead}, {-1} when the worker was unknown
 * and held nothing, {-2} when its heartbeat is alive (nothing done), and
 * {requeued, quarantined, dead, 1} when jobs had to stay in a processing
 * list (neither their queue nor its quarantine list is a list): the worker
 * stays registered, so a later sweep tries again. */
typedef struct scripts_recover_call {
    const char *workers_key;
    const char *heartbeat_key;  /* the gone worker's */
    const char *crashes_key;
    const char *dead_key;
    const char *requeued_key;
    char *const *processing_keys; /* the gone worker's, one per queue */
    char *const *queue_keys;      /* where each one's jobs go back */
    char *const *quarantine_keys; /* where suspects of each go */
    int nqueues;
    const char *worker_id;
    int only_if_expired;        /* a sweep of workers we did not start */
    const char *prefix;         /* poison pills' job keys are built from it */
    long long now_ms;
    long long poison_limit;     /* fault deaths after which a job is not requeued */
    long long result_ttl_s;     /* for a poison pill without its own */
    const char *day;            /* "YYYY-MM-DD", for the usage hash */
    int fault;                  /* it died of a fault signal */
    const char *culprit_sha1;   /* the job it faulted on; NULL = not known */
} scripts_recover_call;
void scripts_recover_args(const scripts_recover_call *c, rargs *out);

/* DROP: a worker lets go of a duplicate: its entry leaves the processing
 * list, nothing else is written. KEYS[1] processing list, KEYS[2] the drop's
 * marker key (keys_drop, from the start token). ARGV[1] the job text.
 * Returns 1 when removed. */
typedef struct scripts_drop_call {
    const char *processing_key;
    const char *marker_key;
    const char *raw;
    size_t raw_len;
} scripts_drop_call;
void scripts_drop_args(const scripts_drop_call *c, rargs *out);

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

/* ---- the dead list (`chatq dead`, cli/dead_cmd.c) ----
 *
 * Both scripts name each P:dead entry by its exact text, never by position:
 * workers LPUSH onto the list while the CLI reads it, so positions move.
 * With each entry goes the count given to LREM: 1 removes the copy nearest
 * the head, -1 the copy nearest the tail; the caller picks the end nearer
 * to where it saw the entry (LREM walks from that end, so a large list
 * costs what lies between, not the whole list). Identical texts are the
 * same failure, so which copy goes does not matter. */
extern const char scripts_dead_retry[];
extern const char scripts_dead_purge[];

/* DEAD_RETRY: put dead jobs back on a queue; one call for many, each job
 * atomic on its own.
 * KEYS[1] the dead list, then per job 4 keys: the queue, the job hash, the
 * events list and the cancel key ('' for all three when the job text has
 * no readable id).
 * ARGV[1] now (unix ms), then per job: the dead entry (exact text), its
 * LREM count (1 or -1), the job text, the queue's name.
 * Returns per job one string:
 *   "retried"          the entry left P:dead and the job is on the queue
 *   "gone"             the entry is no longer in P:dead (retried or purged
 *                      by someone else): nothing done
 *   "queue_not_list"   the queue key holds something else: nothing done
 *   "status:<status>"  the job hash's status ("status:queued",
 *                      "status:running", "status:succeeded", ...): the id
 *                      has a newer life than this entry, nothing done
 *                      (prefixed, since a hash may say anything) */
typedef struct scripts_dead_retry_call {
    const char *queue_key;      /* P:queue:<queue> */
    const char *job_key;        /* P:job:<id>; NULL = the text has no id */
    const char *events_key;     /* P:events:<id>; NULL likewise */
    const char *cancel_key;     /* P:cancel:<id>; NULL likewise */
    const char *entry;          /* the dead entry, byte for byte as read */
    size_t entry_len;
    int from_tail;              /* LREM count -1 (1: from the head) */
    const char *job;            /* the job text (the entry's "job") */
    size_t job_len;
    const char *queue;          /* the queue's name, for the job hash */
} scripts_dead_retry_call;
void scripts_dead_retry_add(scripts_batch *b, const scripts_dead_retry_call *c);
void scripts_dead_retry_args(const scripts_batch *b, const char *dead_key, long long now_ms,
                             rargs *out);

/* DEAD_PURGE: remove entries from the dead list, all in one step.
 * KEYS[1] the dead list. ARGV pairs: (LREM count 1 or -1, exact entry text).
 * Returns the number of entries removed (an entry already gone counts 0). */
void scripts_dead_purge_add(scripts_batch *b, const char *entry, size_t len, int from_tail);
void scripts_dead_purge_args(const scripts_batch *b, const char *dead_key, rargs *out);

#endif

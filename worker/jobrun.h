/* jobrun.h — one job in flight in a worker, from FETCH to its stored result.
 *
 * Life of a jobrun:
 *   jobrun_start()    parse and validate the job (invalid -> stored as
 *                     failed/invalid_job at once); route it to a provider
 *                     (worker/target.h); run the START script (cancel check,
 *                     seq and attempts of an earlier, interrupted run of the
 *                     same job);
 *   attempt           capacity from the shared rate limits, if any
 *                     (worker/ratelimit.h), then one HTTP exchange
 *                     (worker/upstream.h), whose streamed chunks are
 *                     published as they arrive;
 *   backoff           after a retryable failure: exponential backoff with
 *                     full jitter, or the upstream's Retry-After; when a
 *                     target's attempts are used up, its model's next
 *                     fallback (worker/policy.h decides);
 *   finish            the FINISH script stores result, usage, reply_to and
 *                     the final event atomically, once; the slot is freed.
 * A cancel (jobrun_cancel_id) aborts the HTTP request at once and finishes
 * the job as cancelled. jobrun_abort (drain over) drops the job without a
 * result, leaving it for requeueing.
 *
 * Ownership: the worker's running list holds the jobruns (worker_run_add,
 * worker_run_remove); a jobrun frees itself (after its uv timer's close
 * callback) once it is over. */
#ifndef CHATQ_JOBRUN_H
#define CHATQ_JOBRUN_H

#include <stddef.h>

#include "worker/worker.h"

struct jobrun {
    struct jobrun *prev, *next;
    worker *w;
    char *raw;          /* the job text exactly as taken from the queue */
    size_t raw_len;
    int queue;          /* index into w->cfg->queues */
    struct jobrun_priv *p;
};

/* Takes ownership of nothing: raw is copied. The jobrun is added to
 * w->runs. */
void jobrun_start(worker *w, const char *raw, size_t len, int queue);
/* Cancels the jobs whose id is `id`. */
void jobrun_cancel_id(worker *w, const char *id);
/* Drops the job without storing a result (the worker requeues it). */
void jobrun_abort(jobrun *jr);

#endif

/* jobrun.h — one job in flight in a worker, from FETCH to its stored result.
 *
 * Life of a jobrun:
 *   jobrun_new()      parse and validate the job, route it to a provider
 *                     (worker/target.h); what makes it unable to run
 *                     (invalid, too large, no provider) is kept for later;
 *   jobrun_start_add() its part of the START script, sent for every job of
 *                     a fetch at once, which claims the job's id: a
 *                     duplicate (another job with its id is queued, running
 *                     or stored) is dropped, writing nothing; an interrupted
 *                     run of the same job is resumed (seq and attempts go
 *                     on); a job that cannot run ends failed here;
 *   attempt           capacity from the shared rate limits, if any
 *                     (worker/ratelimit.h), then one HTTP exchange
 *                     (worker/upstream.h), whose streamed chunks are
 *                     published as they arrive;
 *   backoff           after a retryable failure: exponential backoff with
 *                     full jitter, or the upstream's Retry-After; when a
 *                     target's attempts are used up, its model's next
 *                     fallback (worker/policy.h decides);
 *   finish            the job's part of the FINISH script, sent with those of
 *                     every job that ended in the same loop iteration
 *                     (worker_finish), stores result, usage, reply_to and
 *                     the final event atomically, once; the slot is freed
 *                     at once, and the jobrun when the script answered.
 * A cancel (jobrun_cancel_id) aborts the HTTP request at once and finishes
 * the job as cancelled. jobrun_abort (drain over) drops the job without a
 * result, leaving it for requeueing.
 *
 * Ownership: the worker's running list holds the jobruns while they run, its
 * ending list while their FINISH (or DROP) is on its way (worker.h); a
 * jobrun frees itself (after its uv timer's close callback) once it is
 * over. */
#ifndef CHATQ_JOBRUN_H
#define CHATQ_JOBRUN_H

#include <stddef.h>

#include "common/scripts.h"
#include "worker/worker.h"

struct jobrun {
    struct jobrun *prev, *next;
    worker *w;
    char *raw;          /* the job text exactly as taken from the queue */
    size_t raw_len;
    int queue;          /* index into w->cfg->queues */
    struct jobrun_priv *p;
};

/* A new jobrun for a job text taken from queue `queue` (raw is copied); it is
 * added to the running list. */
jobrun *jobrun_new(worker *w, const char *raw, size_t len, int queue);
/* Adds the job's START to batch b and returns 1; or ends the job at once
 * (it has no id to claim) and returns 0. */
int jobrun_start_add(jobrun *jr, scripts_batch *b);
/* START answered: v points to the job's SCRIPTS_START_REPLY values, or is
 * NULL when the script failed. */
void jobrun_started(jobrun *jr, redisReply *const *v);
/* Sends the job's events written in this loop iteration (the worker calls
 * it for every job it was told of with worker_events_pending). */
void jobrun_flush_events(jobrun *jr);
/* FINISH answered with reply (the job's integer, or the script's error). */
void jobrun_finished(jobrun *jr, const redisReply *reply);
/* Cancels the jobs whose id is `id`. */
void jobrun_cancel_id(worker *w, const char *id);
/* Drops the job without storing a result (the worker requeues it). */
void jobrun_abort(jobrun *jr);

#endif

/* worker.h — one chatq worker process: its loop, connections and job slots.
 *
 * A worker owns, on one libuv loop:
 *   cmd      a Redis connection for every command: fetching (the FETCH
 *            script), starting and finishing jobs, publishing stream events;
 *            commands are pipelined, never one blocking round trip each;
 *   wake     a Redis connection subscribed to __redis__:invalidate. When
 *            the worker is idle (its last FETCH found the queues empty), cmd
 *            turns on client tracking in broadcast mode for the queue keys,
 *            redirected to wake: any LPUSH to a queue then sends wake a
 *            message naming the key (never the job itself: an oversized job
 *            must not reach a worker), and the worker runs FETCH, which takes
 *            jobs in priority order. So an idle worker sends nothing at all,
 *            a job on any queue is seen at once, and a higher queue's job is
 *            always taken first; a busy worker turns tracking off;
 *   control  a Redis connection subscribed to P:control, for cancellations;
 *   http     one curl multi handle (worker/http.h) for all upstream calls,
 *            with the pool of easy handles they reuse.
 *
 * Jobs in flight are jobruns (worker/jobrun.h) on a doubly linked list, the
 * running list, which this file links and unlinks (worker_run_add/remove). The
 * worker's identity is its id; its jobs live in P:processing:<id>:<queue>
 * until their result is stored, so nothing is lost if it dies. */
#ifndef CHATQ_WORKER_H
#define CHATQ_WORKER_H

#include <json-c/json.h>
#include <uv.h>

#include "common/config.h"
#include "common/rconn.h"
#include "common/scripts.h"
#include "worker/http.h"

typedef struct jobrun jobrun;

enum worker_script {
    WS_FETCH, WS_START, WS_FINISH, WS_REQUEUE, WS_RATELIMIT, WS_DEREGISTER, WS_DROP, WS_NSCRIPTS
};

typedef struct worker {
    uv_loop_t *loop;
    config *cfg;
    char *id;
    redis_target redis;
    rconn *cmd;
    rconn *control;
    rconn *wake;           /* subscribed to Redis' invalidation messages */
    long long wake_conn_id;/* its CLIENT ID ... */
    long long wake_id;     /* ... once it is subscribed (0 until then) */
    int tracking;          /* cmd has client tracking on, redirected to wake */
    int tracking_failed;   /* Redis refused it: an idle worker polls instead */
    int scripts[WS_NSCRIPTS];
    http_client *http;
    char **queue_keys;     /* where jobs are taken from: P:queue:<name>, priority
                              order (P:quarantine:<name> for a quarantine worker) */
    char **proc_keys;      /* P:processing:<id>:<name> */
    char *crashes_key;     /* P:crashes */
    char *requeued_key;    /* P:requeued */
    char *dead_key;        /* P:dead */
    int quarantine;        /* runs suspects, one at a time, and exits when none is left */
    jobrun *runs;          /* jobs in flight */
    int nruns;
    jobrun *ending;        /* jobs whose FINISH or DROP has not answered: their
                              entries are still in a processing list */
    int nending;
    jobrun **evq;          /* jobs with events to send at the end of this loop */
    int nevq, evq_cap;     /*   iteration (NULL: forgotten) */
    scripts_batch finish;  /* the FINISHes of this loop iteration ... */
    jobrun **finishing;    /* ... and their jobs, sent together (w_flush) */
    int finishing_cap;
    int fetching;          /* a FETCH is outstanding */
    int woken;             /* a wake-up came since the last FETCH was sent */
    int cmd_was_ready;     /* cmd has been ready before: a reconnect needs a resync */
    int draining;          /* SIGTERM seen: take no new job */
    int aborting;          /* grace period over: abort what is left */
    int exiting;
    int deregistering, deregistered;
    uv_check_t check;
    uv_timer_t heartbeat;
    uv_timer_t grace;
    uv_timer_t fetch_retry;
    uv_timer_t poll;       /* an idle worker's next fetch, without tracking */
    uv_signal_t sigterm, sigint;
    long long done, failed, duplicates;
    unsigned long long starts; /* jobs started: makes START tokens unique */
    json_tokener *tok;     /* one JSON parser, reset for each use */
    int supervised;        /* started by chatqd: SIGINT is not ours to handle */
} worker;

/* Sets up the worker on `loop` (config and id are borrowed). Returns 0, or -1
 * after logging why (nothing is left to free then). */
int worker_init(worker *w, uv_loop_t *loop, config *cfg, const char *id);
void worker_start(worker *w);
/* The running list: a jobrun is added when it starts, and leaves it when it
 * is over, which frees its slot and fetches more: to the ending list when its
 * FINISH or DROP is on its way (worker_run_end; worker_run_gone once it
 * answered), or for good when a drain drops it (worker_run_remove). The
 * lists do not own the jobruns. */
void worker_run_add(worker *w, jobrun *jr);
void worker_run_remove(worker *w, jobrun *jr);
void worker_run_end(worker *w, jobrun *jr);
void worker_run_gone(worker *w, jobrun *jr);
/* Queues jr's FINISH (c is copied) into the call sent at the end of this
 * loop iteration, with every other job that ended in it; jobrun_finished()
 * gets the answer. */
void worker_finish(worker *w, jobrun *jr, const scripts_finish_call *c);
/* jr has stream events to send: jobrun_flush_events(jr) is called at the end
 * of this loop iteration, unless worker_events_forget(jr) came first. */
void worker_events_pending(worker *w, jobrun *jr);
void worker_events_forget(worker *w, jobrun *jr);
/* Asks for more jobs when there are free slots. */
void worker_maybe_fetch(worker *w);
/* Begins a drain: no new job; in-flight jobs get the grace period. */
void worker_drain(worker *w);
/* Closes connections and handles; run the loop afterwards so the close
 * callbacks run, then call worker_free(). */
void worker_close(worker *w);
void worker_free(worker *w);

#endif

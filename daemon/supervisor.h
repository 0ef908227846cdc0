/* supervisor.h — chatqd's worker supervision.
 *
 * The supervisor keeps `workers` worker processes running, each started with
 * uv_spawn() (never a bare fork of a process that already has a loop) as
 * `chatq-worker --id ID ...` from the directory chatqd itself lives in. When
 * one exits, its exit callback runs the RECOVER script, which puts the jobs
 * of that worker's processing lists back at the consuming end of their queues
 * at once, and a new worker is started after a short backoff.
 *
 * SIGTERM/SIGINT: the supervisor forwards SIGTERM to every worker (which
 * drain: no new job, in-flight jobs get the grace period, the rest go back to
 * their queues), waits for them, recovers anything they left, and stops its
 * loop. A second signal is forwarded too: workers then stop waiting.
 *
 * Ownership: the caller owns the supervisor struct and the config; the
 * supervisor owns its slots, its Redis connection and its handles, released
 * by supervisor_close() (run the loop afterwards for the close callbacks). */
#ifndef CHATQ_SUPERVISOR_H
#define CHATQ_SUPERVISOR_H

#include <uv.h>

#include "common/config.h"
#include "common/rconn.h"

typedef struct supervisor supervisor;

typedef struct sup_slot {
    supervisor *sup;
    int index;
    uv_process_t proc;
    int running;          /* the process handle is live (not yet closed) */
    char *id;             /* worker id of the current (or last) process */
    uint64_t started_at;  /* uv_now() at spawn */
    long backoff_ms;      /* delay before the next restart */
    uv_timer_t restart;
} sup_slot;

struct supervisor {
    uv_loop_t *loop;
    config *cfg;
    char *worker_path;
    rconn *redis;
    int recover_script;
    sup_slot *slots;
    int nslots;
    int stopping;
    int exit_code;
    uv_signal_t sigterm, sigint;
    uv_timer_t stop_timer;
};

int supervisor_init(supervisor *s, uv_loop_t *loop, config *cfg);
void supervisor_start(supervisor *s);
/* Kills what still runs and closes the handles (run the loop after it). */
void supervisor_close(supervisor *s);
/* Frees the memory, once the loop has run the close callbacks. */
void supervisor_free(supervisor *s);

#endif

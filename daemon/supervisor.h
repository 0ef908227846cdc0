/* supervisor.h — chatqd's worker supervision.
 *
 * The supervisor keeps `workers` worker processes running. Each is started
 * with uv_spawn() (never a bare fork of a process that already has a loop) as
 * `chatq-worker --id ID ...` from the directory chatqd lives in, and watched
 * through its exit callback:
 *   - a worker that exits has its jobs put back on their queues at once (the
 *     RECOVER script; a job that was in flight at three deaths ends in P:dead
 *     as worker_crashed instead) and is restarted after a backoff with jitter
 *     (100 ms doubling to 10 s; reset once a worker has stayed up 30 s);
 *   - a worker that dies CRASH_LOOP_LIMIT times in a row without ever staying
 *     up makes chatqd stop and exit 1, so that systemd's Restart= takes over;
 *   - every SWEEP_MS the supervisor looks at P:workers for workers of other
 *     processes (other hosts, a chatqd killed whole) whose heartbeat expired,
 *     and recovers them; the script checks the heartbeat itself, atomically,
 *     so two supervisors never recover the same worker twice.
 * Signals: SIGTERM/SIGINT drain (workers get SIGTERM: no new job, in-flight
 * jobs have the grace period, the rest go back to their queues), a second one
 * shortens the wait; SIGHUP reloads the configuration: an invalid one is
 * refused with a log line and the old one stays, a valid one is applied by
 * replacing the workers one at a time, each new worker started before the old
 * one is told to drain, so consumption never stops and no job is dropped.
 * systemd: READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1 (notify.h).
 *
 * Ownership: the caller owns the supervisor struct and the args (their
 * strings must outlive it: argv); the supervisor takes the heap config it is
 * given (a reload replaces it: always read s->cfg) and frees it in
 * supervisor_free(). Each process is a heap sup_proc freed in its close
 * callback. */
#ifndef CHATQ_SUPERVISOR_H
#define CHATQ_SUPERVISOR_H

#include <uv.h>

#include "common/config.h"
#include "common/rconn.h"
#include "daemon/notify.h"

#define CHATQ_MAX_WORKERS 1024 /* the largest --workers config.c accepts */

typedef struct supervisor supervisor;

typedef struct sup_proc {
    supervisor *sup;
    uv_process_t proc;
    char *id;             /* the worker id given with --id */
    char **queues;        /* the queues it was started with (for recovery) */
    int nqueues;
    int slot;             /* its slot, or -1 once retired (draining) */
    uint64_t started_at;  /* uv_now() at spawn */
    int exited;
    struct sup_proc *next;
} sup_proc;

typedef struct sup_slot {
    sup_proc *proc;       /* NULL while waiting for a restart */
    long backoff_ms;
    int quick_deaths;     /* deaths in a row before STABLE_MS */
    uv_timer_t restart;
    supervisor *sup;
    int index;
} sup_slot;

struct supervisor {
    uv_loop_t *loop;
    config *cfg;
    config_args args;
    char *worker_path;
    rconn *redis;
    int recover_script;
    sup_slot *slots;
    int nslots;
    sup_proc *procs;      /* every live process, current and retiring */
    int stopping;
    int closing;          /* supervisor_close() has run */
    int exit_code;
    int reload_next;      /* next slot to replace in a rolling reload; -1 = none */
    int reload_pending;   /* SIGHUP during a reload: reload again after */
    notify notify;
    int ready_sent;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t stop_timer, sweep, watchdog, roll;
};

/* Returns 0 (s now owns cfg), or -1 after logging why (no worker program,
 * a bad Redis URL): then s holds nothing and cfg is still the caller's. */
int supervisor_init(supervisor *s, uv_loop_t *loop, config *cfg, const config_args *args);
void supervisor_start(supervisor *s);
/* Kills what still runs and closes the handles (run the loop after it). */
void supervisor_close(supervisor *s);
/* Frees the memory, once the loop has run the close callbacks. */
void supervisor_free(supervisor *s);

#endif

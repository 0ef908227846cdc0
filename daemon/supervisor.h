/* supervisor.h — chatqd's worker supervision.
 *
 * The supervisor keeps `workers` worker processes running. Each is started
 * with uv_spawn() (never a bare fork of a process that already has a loop) as
 * `chatq-worker --id ID --config-stdin --report-fd 3 ...` from the directory
 * chatqd lives in, with two pipes besides its stdout/stderr:
 *   - stdin carries the configuration snapshot (config_snapshot(): the config
 *     chatqd validated, API keys included) and is closed once written, so a
 *     worker never reads a file that may have been edited since; the key
 *     variables are taken out of the worker's environment;
 *   - fd 3 carries the worker's status lines (worker/report.h): "ready",
 *     "progress N", "crash SHA1", and its metrics ("metric V SERIES", added
 *     up in the metrics registry when chatqd serves metrics: daemon/metrics.h).
 * A worker's exit is handled once its exit status is known and its channel
 * has been read to the end (or EOF_WAIT_MS passed), so that a "crash" line
 * written just before the death is never missed. Then:
 *   - the death is judged: a fault (killed by SEGV, BUS, ILL, FPE or ABRT, or
 *     a "crash" line), an outside kill (any other signal: SIGKILL, the OOM
 *     killer, SIGTERM...), an error exit (status != 0) or a clean exit;
 *   - RECOVER puts its jobs back on their queues at once. Only a fault counts
 *     against the jobs (against the culprit named by the crash line when
 *     there is one): suspects go to the quarantine lists, a job counted three
 *     times ends in P:dead as worker_crashed;
 *   - its slot restarts: after RESTART_MIN_MS when the worker had said
 *     "ready", else after a backoff with jitter that doubles up to
 *     RESTART_MAX_MS (reset when a replacement says "ready");
 *   - CRASH_LOOP_LIMIT deaths in a row (faults or error exits) of workers
 *     that ended no job, with no "progress" from any worker in between, make
 *     chatqd stop and exit 1, so that systemd's Restart= takes over. Outside
 *     kills never count: a worker killed every second while it works is
 *     replaced every time.
 * The quarantine worker (`--quarantine`: one job at a time, from the
 * P:quarantine:<queue> lists) is started on demand, at most one per chatqd:
 * when RECOVER reports a quarantined job, and whenever the sweep finds a
 * quarantine list not empty. It exits by itself once they are empty. Its
 * deaths never count towards a crash loop, and its jobs go back to the
 * quarantine lists, never to the queues.
 * Every SWEEP_MS the supervisor also looks at P:workers for workers of other
 * processes (other hosts, a chatqd killed whole) whose heartbeat expired,
 * and recovers them (as outside kills: nothing says their jobs were at
 * fault); the script checks the heartbeat itself, atomically, so two
 * supervisors never recover the same worker twice.
 * Signals: SIGTERM/SIGINT drain (workers get SIGTERM: no new job, in-flight
 * jobs have the grace period, the rest go back to their queues), a second one
 * shortens the wait; SIGHUP reloads the configuration: an invalid one is
 * refused with a log line and the old one stays (for every worker, old and
 * new: they all get the snapshot of the config in force), a valid one is
 * applied by replacing the workers one at a time, each new worker started
 * before the old one is told to drain, so consumption never stops and no job
 * is dropped.
 * systemd: READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1 (notify.h).
 * Metrics (when s->metrics is set): the workers' lines, and chatqd's own
 * series: worker restarts by cause, quarantine worker runs, worker
 * processes, its Redis reconnects and outbox, and every SWEEP_MS the
 * lengths of the configured queues, their quarantine lists and P:dead.
 *
 * Ownership: the caller owns the supervisor struct and the args (their
 * strings must outlive it: argv); the supervisor takes the heap config it is
 * given (a reload replaces it: always read s->cfg) and frees it in
 * supervisor_free(); s->metrics is borrowed and must outlive
 * supervisor_free(). Each process is a heap sup_proc with four libuv handles
 * (the process, two pipes, a timer), freed when the last one is closed. */
#ifndef CHATQ_SUPERVISOR_H
#define CHATQ_SUPERVISOR_H

#include <uv.h>

#include "common/config.h"
#include "common/rconn.h"
#include "daemon/metrics.h"
#include "daemon/notify.h"
#include "worker/report.h" /* the status lines: REPORT_LINE_MAX */

#define CHATQ_MAX_WORKERS 1024 /* the largest --workers config.c accepts */

typedef struct supervisor supervisor;
typedef struct sup_recovery sup_recovery;

typedef struct sup_proc {
    supervisor *sup;
    uv_process_t proc;
    uv_pipe_t snap;       /* the worker's stdin: the config snapshot */
    uv_pipe_t chan;       /* the worker's fd 3: its status lines */
    uv_timer_t eof_wait;  /* exited, channel not at its end yet */
    uv_write_t snap_req;
    char *snap_data;      /* the snapshot being written (holds keys) */
    size_t snap_len;
    int handles;          /* libuv handles not closed yet */
    char *id;             /* the worker id given with --id */
    char **queues;        /* the queues it was started with (for recovery) */
    int nqueues;
    int slot;             /* its slot (SUP_QSLOT: the quarantine worker), or
                             -1 once retired (draining) */
    int quarantine;       /* the quarantine worker (even once retired) */
    uint64_t started_at;  /* uv_now() at spawn */
    int exited;           /* the exit callback ran */
    int64_t exit_status;
    int term_signal;
    int chan_eof;         /* the channel was read to its end */
    int ended;            /* its death was handled (sup_proc_end) */
    int ready;            /* it said "ready" */
    long long progress;   /* jobs it said it ended ("progress N") */
    int crashed;          /* it said "crash" */
    char culprit[41];     /* the SHA1 its crash line named, "" = none */
    metrics_proc *metrics; /* its part of the metrics (NULL: metrics off) */
    char line[REPORT_LINE_MAX]; /* the status line being read */
    size_t line_len;
    int line_skip;        /* the line is too long: skip to its end */
    char rbuf[1024];      /* read buffer for the channel */
    struct sup_proc *next;
} sup_proc;

typedef struct sup_slot {
    sup_proc *proc;       /* NULL while waiting for a restart */
    long backoff_ms;      /* the next restart delay of a worker not ready */
    uv_timer_t restart;
    supervisor *sup;
    int index;
} sup_slot;

/* slots[SUP_QSLOT], past the worker slots, is the quarantine worker's */
#define SUP_QSLOT CHATQ_MAX_WORKERS

struct supervisor {
    sup_recovery *recoveries; /* RECOVERs not answered yet */
    uv_loop_t *loop;
    config *cfg;
    config_args args;
    char *worker_path;
    rconn *redis;
    int recover_script;
    sup_slot *slots;      /* CHATQ_MAX_WORKERS + 1 (the quarantine slot) */
    int nslots;
    int barren_deaths;    /* faults and error exits in a row of workers that
                             ended no job, with no progress in between */
    sup_proc *procs;      /* every live process, current and retiring */
    int stopping;
    int closing;          /* supervisor_close() has run */
    int exit_code;
    int reload_next;      /* next slot to replace in a rolling reload; -1 = none */
    int reload_pending;   /* SIGHUP during a reload: reload again after */
    notify notify;
    int ready_sent;
    metrics *metrics;     /* NULL = off; borrowed: set it between
                             supervisor_init() and supervisor_start() */
    int redis_was_ready;  /* its connection has been ready before */
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

/* supervisor.c — start, watch, restart, reload and stop worker processes;
 * recover the jobs of workers that died. See supervisor.h for the behaviour.
 *
 * Processes and slots: a slot is a place for one worker (there are
 * cfg->workers of them); a sup_proc is one running process. A slot points to
 * its current process; a reload or a shrink "retires" a process (slot = -1),
 * which then drains in the background while its replacement already runs.
 * Whatever happens, a process's exit runs RECOVER for its id, so a process
 * that left jobs in its processing lists (crash, or a drain cut short) never
 * strands them. */
#include "daemon/supervisor.h"

#include <json-c/json.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/scripts.h"

#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 10000
#define STABLE_MS 30000
#define CRASH_LOOP_LIMIT 10
#define SWEEP_MS 2000
#define POISON_LIMIT 3
#define ROLL_MS 250

static void sup_spawn(supervisor *s, int slot);
static void sup_check_stopped(supervisor *s);
static void sup_stop(supervisor *s, int exit_code);

static long long sup_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned sup_random(void) {
    unsigned r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r) r = (unsigned)rand();
    return r;
}

/* ---- recovery ------------------------------------------------------------ */

typedef struct sup_recovery {
    supervisor *sup;
    char *id;
} sup_recovery;

static void sup_on_recovered(rconn *rc, redisReply *reply, void *priv) {
    sup_recovery *r = priv;
    (void)rc;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3)
        log_info("worker_recovered", "worker=%s jobs_requeued=%lld jobs_quarantined=%lld jobs_dead=%lld",
                 log_quote(r->id), reply->element[0]->integer, reply->element[1]->integer,
                 reply->element[2]->integer);
    else if (reply->type == REDIS_REPLY_ERROR)
        log_error("recover_failed", "worker=%s error=%s", log_quote(r->id), log_quote(reply->str));
    supervisor *s = r->sup;
    free(r->id);
    free(r);
    sup_check_stopped(s);
}

/* Puts the jobs of worker `id` (which served `queues`) back on their queues,
 * reliably: if Redis is down, as soon as it is back. only_if_expired: leave
 * it alone if its heartbeat still lives (for workers we did not start).
 * fault: it died of a fault signal, while running the job whose SHA1 is
 * culprit (NULL: not known). */
static void sup_recover(supervisor *s, const char *id, char **queues, int nqueues,
                        int only_if_expired, int fault, const char *culprit) {
    const config *cfg = s->cfg;
    char day[11];
    long long now = sup_now_ms();
    keys_day(now, day);
    char *workers = keys_workers(cfg->prefix), *heartbeat = keys_heartbeat(cfg->prefix, id);
    char *crashes = keys_crashes(cfg->prefix), *dead = keys_dead(cfg->prefix);
    char *requeued = keys_requeued(cfg->prefix);
    char **keys = xcalloc((size_t)nqueues * 3 + 1, sizeof *keys);
    for (int i = 0; i < nqueues; i++) {
        keys[i] = keys_processing(cfg->prefix, id, queues[i]);
        keys[nqueues + i] = keys_queue(cfg->prefix, queues[i]);
        keys[2 * nqueues + i] = keys_quarantine(cfg->prefix, queues[i]);
    }
    scripts_recover_call call = {
        .workers_key = workers,
        .heartbeat_key = heartbeat,
        .crashes_key = crashes,
        .dead_key = dead,
        .requeued_key = requeued,
        .processing_keys = keys,
        .queue_keys = keys + nqueues,
        .quarantine_keys = keys + 2 * nqueues,
        .nqueues = nqueues,
        .worker_id = id,
        .only_if_expired = only_if_expired,
        .prefix = cfg->prefix,
        .now_ms = now,
        .poison_limit = POISON_LIMIT,
        .result_ttl_s = cfg->result_ttl_s,
        .day = day,
        .fault = fault,
        .culprit_sha1 = culprit,
    };
    rargs a = {0};
    scripts_recover_args(&call, &a);
    sup_recovery *r = xmalloc(sizeof *r);
    r->sup = s;
    r->id = xstrdup(id);
    rconn_eval_reliable(s->redis, s->recover_script, sup_on_recovered, r, a.argc, a.argv, a.lens);
    rargs_free(&a);
    for (int i = 0; i < 3 * nqueues; i++) free(keys[i]);
    free(keys);
    free(workers);
    free(heartbeat);
    free(crashes);
    free(dead);
    free(requeued);
}

/* ---- the sweep: workers of other processes whose heartbeat expired -------- */

static int sup_is_ours(supervisor *s, const char *id) {
    for (sup_proc *p = s->procs; p; p = p->next)
        if (strcmp(p->id, id) == 0) return 1;
    return 0;
}

static void sup_on_workers(rconn *rc, redisReply *reply, void *priv) {
    supervisor *s = rconn_data(rc);
    (void)priv;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || s->stopping) return;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const char *id = reply->element[i]->str;
        const char *info = reply->element[i + 1]->str;
        if (!id || !info || sup_is_ours(s, id)) continue;
        json_object *o = json_tokener_parse(info), *qs = NULL;
        if (!o || !json_object_object_get_ex(o, "queues", &qs) ||
            !json_object_is_type(qs, json_type_array)) {
            json_object_put(o);
            continue;
        }
        int n = (int)json_object_array_length(qs);
        char **queues = xcalloc((size_t)n + 1, sizeof *queues);
        int k = 0;
        for (int j = 0; j < n; j++) {
            json_object *q = json_object_array_get_idx(qs, j);
            if (json_object_is_type(q, json_type_string))
                queues[k++] = (char *)json_object_get_string(q);
        }
        sup_recover(s, id, queues, k, 1, 0, NULL);
        free(queues);
        json_object_put(o);
    }
}

static void sup_status(supervisor *s);

static void sup_on_sweep(uv_timer_t *t) {
    supervisor *s = t->data;
    char *k = keys_workers(s->cfg->prefix);
    const char *a[] = {"HGETALL", k};
    size_t l[] = {7, strlen(k)};
    rconn_send(s->redis, sup_on_workers, NULL, 2, a, l);
    free(k);
    sup_status(s);
}

/* ---- STATUS= from our workers' heartbeats ----------------------------------- */

static void sup_on_heartbeats(rconn *rc, redisReply *reply, void *priv) {
    supervisor *s = rconn_data(rc);
    (void)priv;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) return;
    long long in_flight = 0, done = 0, failed = 0;
    int alive = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING) continue;
        json_object *o = json_tokener_parse(e->str), *v;
        if (!o) continue;
        alive++;
        if (json_object_object_get_ex(o, "in_flight", &v)) in_flight += json_object_get_int64(v);
        if (json_object_object_get_ex(o, "done", &v)) done += json_object_get_int64(v);
        if (json_object_object_get_ex(o, "failed", &v)) failed += json_object_get_int64(v);
        json_object_put(o);
    }
    char msg[256];
    snprintf(msg, sizeof msg, "STATUS=%s: workers %d/%d, %lld jobs in flight, %lld done, %lld failed",
             s->stopping ? "stopping" : "running", alive, s->nslots, in_flight, done, failed);
    notify_send(&s->notify, msg);
}

static void sup_status(supervisor *s) {
    if (s->notify.fd < 0) return;
    rargs a = {0};
    rargs_adds(&a, "MGET");
    for (sup_proc *p = s->procs; p; p = p->next)
        if (p->slot >= 0) rargs_take(&a, keys_heartbeat(s->cfg->prefix, p->id));
    if (a.argc > 1) rconn_send(s->redis, sup_on_heartbeats, NULL, a.argc, a.argv, a.lens);
    rargs_free(&a);
}

static void sup_on_watchdog(uv_timer_t *t) {
    supervisor *s = t->data;
    notify_send(&s->notify, "WATCHDOG=1");
}

/* ---- processes --------------------------------------------------------------- */

static void sup_proc_free(sup_proc *p) {
    for (int i = 0; i < p->nqueues; i++) free(p->queues[i]);
    free(p->queues);
    free(p->id);
    free(p);
}

static void sup_on_proc_closed(uv_handle_t *h) {
    sup_proc *p = h->data;
    supervisor *s = p->sup;
    for (sup_proc **pp = &s->procs; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    sup_proc_free(p);
    sup_check_stopped(s);
}

static void sup_on_restart(uv_timer_t *t) {
    sup_slot *sl = t->data;
    if (!sl->sup->stopping && !sl->proc) sup_spawn(sl->sup, sl->index);
}

static void sup_on_exit(uv_process_t *proc, int64_t status, int term_signal) {
    sup_proc *p = proc->data;
    supervisor *s = p->sup;
    uint64_t lived = uv_now(s->loop) - p->started_at;
    int clean = status == 0 && term_signal == 0;
    p->exited = 1;
    if (clean && (s->stopping || p->slot < 0))
        log_info("worker_stopped", "worker=%s pid=%d", log_quote(p->id), proc->pid);
    else
        log_warn("worker_exited", "worker=%s pid=%d status=%lld signal=%d lived_ms=%llu",
                 log_quote(p->id), proc->pid, (long long)status, term_signal,
                 (unsigned long long)lived);
    int fault = term_signal == SIGSEGV || term_signal == SIGBUS || term_signal == SIGILL ||
                term_signal == SIGFPE || term_signal == SIGABRT;
    sup_recover(s, p->id, p->queues, p->nqueues, 0, fault, NULL);
    int slot = p->slot;
    uv_close((uv_handle_t *)proc, sup_on_proc_closed);
    if (slot < 0) return;
    sup_slot *sl = &s->slots[slot];
    sl->proc = NULL;
    if (s->stopping) return;
    if (lived >= STABLE_MS) {
        sl->backoff_ms = RESTART_MIN_MS;
        sl->quick_deaths = 0;
    }
    if (++sl->quick_deaths >= CRASH_LOOP_LIMIT) {
        /* stop, so that the service manager restarts chatqd as a whole */
        log_error("crash_loop", "slot=%d deaths=%d action=exit", slot, sl->quick_deaths);
        sup_stop(s, 1);
        return;
    }
    /* jitter: between half and all of the backoff, so slots do not restart
     * in lock step */
    uint64_t delay = (uint64_t)(sl->backoff_ms / 2 + (long)(sup_random() % (unsigned)(sl->backoff_ms / 2 + 1)));
    uv_timer_start(&sl->restart, sup_on_restart, delay, 0);
    sl->backoff_ms = sl->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : sl->backoff_ms * 2;
}

static void sup_spawn(supervisor *s, int slot) {
    const config *cfg = s->cfg;
    sup_slot *sl = &s->slots[slot];
    char host[128] = "host";
    gethostname(host, sizeof host - 1);
    sup_proc *p = xcalloc(1, sizeof *p);
    p->sup = s;
    p->slot = slot;
    p->id = xasprintf("%s.%d.%lld.%d", host, (int)getpid(), sup_now_ms(), slot);
    p->nqueues = cfg->nqueues;
    p->queues = xcalloc((size_t)cfg->nqueues, sizeof *p->queues);
    buf queues = {0};
    for (int i = 0; i < cfg->nqueues; i++) {
        p->queues[i] = xstrdup(cfg->queues[i]);
        if (i) buf_putc(&queues, ',');
        buf_puts(&queues, cfg->queues[i]);
    }
    char conc[16];
    snprintf(conc, sizeof conc, "%d", cfg->concurrency);
    char *args[16];
    int n = 0;
    args[n++] = s->worker_path;
    args[n++] = "--id";
    args[n++] = p->id;
    args[n++] = "--concurrency";
    args[n++] = conc;
    args[n++] = "--queues";
    args[n++] = queues.data;
    args[n++] = "--log-level";
    args[n++] = cfg->log_level;
    if (cfg->file) {
        args[n++] = "--config";
        args[n++] = cfg->file;
    }
    args[n] = NULL;

    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t opt = {0};
    opt.file = s->worker_path;
    opt.args = args;
    opt.exit_cb = sup_on_exit;
    opt.stdio = stdio;
    opt.stdio_count = 3;
    p->proc.data = p;
    int rc = uv_spawn(s->loop, &p->proc, &opt);
    buf_free(&queues);
    p->started_at = uv_now(s->loop);
    p->next = s->procs;
    s->procs = p;
    if (rc != 0) {
        log_error("spawn_failed", "path=%s error=%s", log_quote(s->worker_path), uv_strerror(rc));
        /* uv_spawn initialised the handle even on failure: it must be closed */
        p->exited = 1;
        p->slot = -1;
        sl->proc = NULL; /* the slot has no worker until the restart */
        uv_close((uv_handle_t *)&p->proc, sup_on_proc_closed);
        uv_timer_start(&sl->restart, sup_on_restart, (uint64_t)sl->backoff_ms, 0);
        sl->backoff_ms = sl->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : sl->backoff_ms * 2;
        return;
    }
    sl->proc = p;
    log_info("worker_started", "worker=%s pid=%d", log_quote(p->id), p->proc.pid);
}

/* Tells a process to drain and forgets it as its slot's worker. */
static void sup_retire(sup_proc *p) {
    p->slot = -1;
    if (!p->exited) uv_process_kill(&p->proc, SIGTERM);
}

/* ---- stopping ------------------------------------------------------------------ */

static void sup_check_stopped(supervisor *s) {
    if (!s->stopping || s->procs || s->closing) return;
    /* Recoveries not yet stored (Redis down) are waited for until the stop
     * timer gives up; what is left then stays in Redis for a later chatqd. */
    if (rconn_pending(s->redis) > 0) return;
    log_info("chatqd_stopped", "exit_code=%d", s->exit_code);
    uv_stop(s->loop);
}

static void sup_on_stop_timeout(uv_timer_t *t) {
    supervisor *s = t->data;
    log_warn("stop_timeout", "pending_recoveries=%zu", rconn_pending(s->redis));
    uv_stop(s->loop);
}

static void sup_stop(supervisor *s, int exit_code) {
    int again = s->stopping;
    s->stopping = 1;
    if (exit_code) s->exit_code = exit_code;
    notify_send(&s->notify, "STOPPING=1");
    for (int i = 0; i < s->nslots; i++) uv_timer_stop(&s->slots[i].restart);
    uv_timer_stop(&s->roll);
    /* Retired workers (a reload) got their SIGTERM already: a second one
     * would cut their grace period short, so only a second stop sends it. */
    for (sup_proc *p = s->procs; p; p = p->next)
        if (!p->exited && (again || p->slot >= 0)) uv_process_kill(&p->proc, SIGTERM);
    if (!again) {
        /* the workers' grace period, plus time to store their last results */
        uint64_t limit = (uint64_t)s->cfg->shutdown_grace_ms + 10000;
        uv_timer_start(&s->stop_timer, sup_on_stop_timeout, limit, 0);
    }
    sup_check_stopped(s);
}

static void sup_on_signal(uv_signal_t *h, int signum) {
    supervisor *s = h->data;
    log_info(s->stopping ? "stop_now" : "stopping", "signal=%d", signum);
    sup_stop(s, 0);
}

/* ---- reload ------------------------------------------------------------------------ */

static void sup_send_ready(supervisor *s) {
    notify_send(&s->notify, "READY=1");
    s->ready_sent = 1;
    sup_status(s);
}

/* One step of a rolling replacement: start the new worker of slot
 * s->reload_next, then tell its old one to drain. */
static void sup_on_roll(uv_timer_t *t) {
    supervisor *s = t->data;
    if (s->stopping) return;
    int i = s->reload_next;
    if (i >= s->nslots) {
        s->reload_next = -1;
        log_info("reload_done", "workers=%d", s->nslots);
        sup_send_ready(s);
        if (s->reload_pending) {
            s->reload_pending = 0;
            raise(SIGHUP);
        }
        return;
    }
    sup_proc *old = s->slots[i].proc;
    s->slots[i].proc = NULL;
    uv_timer_stop(&s->slots[i].restart);
    s->slots[i].backoff_ms = RESTART_MIN_MS;
    s->slots[i].quick_deaths = 0;
    sup_spawn(s, i);
    if (old) sup_retire(old);
    s->reload_next = i + 1;
    uv_timer_start(&s->roll, sup_on_roll, ROLL_MS, 0);
}

static void sup_resize(supervisor *s, int n) {
    if (n < s->nslots) {
        for (int i = n; i < s->nslots; i++) {
            uv_timer_stop(&s->slots[i].restart);
            if (s->slots[i].proc) sup_retire(s->slots[i].proc);
            s->slots[i].proc = NULL;
        }
        /* the restart timers of dropped slots stay allocated (see below) */
        s->nslots = n;
        return;
    }
    /* Slots live in one array whose timers libuv references: never move it.
     * It is allocated with room for the maximum worker count at start. */
    for (int i = s->nslots; i < n; i++) s->slots[i].proc = NULL;
    s->nslots = n;
}

static void sup_on_hup(uv_signal_t *h, int signum) {
    supervisor *s = h->data;
    (void)signum;
    if (s->stopping) return;
    if (s->reload_next >= 0) {
        s->reload_pending = 1;
        return;
    }
    notify_reloading(&s->notify);
    config *fresh = xcalloc(1, sizeof *fresh);
    char err[512];
    if (config_load(fresh, &s->args, err, sizeof err) != 0) {
        log_error("reload_refused", "error=%s", log_quote(err));
        free(fresh);
        sup_send_ready(s);
        return;
    }
    /* redis_url and prefix stay as they were at start: chatqd put them in
     * the environment its workers inherit, which outranks the file, so a
     * change of either needs a restart of chatqd (docs/operations.md). */
    free(fresh->redis_url);
    fresh->redis_url = xstrdup(s->cfg->redis_url);
    free(fresh->prefix);
    fresh->prefix = xstrdup(s->cfg->prefix);
    log_set_level_name(fresh->log_level);
    config_free(s->cfg);
    free(s->cfg);
    s->cfg = fresh;
    int n = fresh->workers;
    if (n > CHATQ_MAX_WORKERS) n = CHATQ_MAX_WORKERS;
    log_info("reload", "workers=%d concurrency=%d", n, fresh->concurrency);
    sup_resize(s, n);
    s->reload_next = 0;
    uv_timer_start(&s->roll, sup_on_roll, 0, 0);
}

/* ---- set-up ----------------------------------------------------------------------- */

static void sup_on_redis_state(rconn *rc, int ready, void *ud) {
    supervisor *s = ud;
    (void)rc;
    if (ready) sup_check_stopped(s);
}

/* The worker program: $CHATQ_WORKER, else chatq-worker next to chatqd.
 * NULL (logged) when it cannot be found or run. */
static char *sup_worker_path(void) {
    char exe[4096];
    size_t len = sizeof exe;
    int rc = uv_exepath(exe, &len);
    if (rc != 0) {
        log_error("no_exe_path", "error=%s", log_quote(uv_strerror(rc)));
        return NULL;
    }
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    const char *override = getenv("CHATQ_WORKER");
    char *path = override ? xstrdup(override) : xasprintf("%s/chatq-worker", exe);
    if (access(path, X_OK) != 0) {
        log_error("no_worker_binary", "path=%s", log_quote(path));
        free(path);
        return NULL;
    }
    return path;
}

/* The slots' restart timers, the signal watchers and the other timers;
 * none is started yet (supervisor_start). */
static void sup_init_handles(supervisor *s) {
    s->slots = xcalloc(CHATQ_MAX_WORKERS, sizeof *s->slots);
    for (int i = 0; i < CHATQ_MAX_WORKERS; i++) {
        sup_slot *sl = &s->slots[i];
        sl->sup = s;
        sl->index = i;
        sl->backoff_ms = RESTART_MIN_MS;
        uv_timer_init(s->loop, &sl->restart);
        sl->restart.data = sl;
    }
    uv_signal_t *signals[] = {&s->sigterm, &s->sigint, &s->sighup};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(s->loop, signals[i]);
        signals[i]->data = s;
    }
    uv_timer_t *timers[] = {&s->stop_timer, &s->sweep, &s->watchdog, &s->roll};
    for (int i = 0; i < 4; i++) {
        uv_timer_init(s->loop, timers[i]);
        timers[i]->data = s;
    }
}

int supervisor_init(supervisor *s, uv_loop_t *loop, config *cfg, const config_args *args) {
    char err[256];
    redis_target t;
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->cfg = cfg;
    s->args = *args;
    s->reload_next = -1;
    notify_init(&s->notify);
    s->worker_path = sup_worker_path();
    if (!s->worker_path) goto fail;
    if (redis_target_parse(cfg->redis_url, &t, err, sizeof err) != 0) {
        log_error("bad_redis_url", "error=%s", log_quote(err));
        goto fail;
    }
    s->redis = rconn_new(loop, &t, "supervisor", sup_on_redis_state, s);
    redis_target_free(&t);
    s->recover_script = rconn_add_script(s->redis, scripts_recover);
    s->nslots = cfg->workers > CHATQ_MAX_WORKERS ? CHATQ_MAX_WORKERS : cfg->workers;
    sup_init_handles(s);
    return 0;

fail: /* no libuv handle exists yet: plain frees suffice */
    free(s->worker_path);
    s->worker_path = NULL;
    notify_close(&s->notify);
    return -1;
}

void supervisor_start(supervisor *s) {
    log_info("chatqd_start", "workers=%d concurrency=%d worker_path=%s", s->nslots,
             s->cfg->concurrency, log_quote(s->worker_path));
    rconn_start(s->redis);
    uv_signal_start(&s->sigterm, sup_on_signal, SIGTERM);
    uv_signal_start(&s->sigint, sup_on_signal, SIGINT);
    uv_signal_start(&s->sighup, sup_on_hup, SIGHUP);
    for (int i = 0; i < s->nslots; i++) sup_spawn(s, i);
    uv_timer_start(&s->sweep, sup_on_sweep, SWEEP_MS, SWEEP_MS);
    if (s->notify.watchdog_usec) {
        uint64_t every = s->notify.watchdog_usec / 2000;
        uv_timer_start(&s->watchdog, sup_on_watchdog, every ? every : 1, every ? every : 1);
    }
    sup_send_ready(s);
}

void supervisor_close(supervisor *s) {
    s->closing = 1; /* close callbacks must not look at s->redis any more */
    for (sup_proc *p = s->procs; p; p = p->next) {
        if (!p->exited && !uv_is_closing((uv_handle_t *)&p->proc)) {
            uv_process_kill(&p->proc, SIGKILL);
            uv_close((uv_handle_t *)&p->proc, sup_on_proc_closed);
        }
    }
    for (int i = 0; i < CHATQ_MAX_WORKERS; i++) uv_close((uv_handle_t *)&s->slots[i].restart, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
    uv_timer_t *timers[] = {&s->stop_timer, &s->sweep, &s->watchdog, &s->roll};
    for (int i = 0; i < 4; i++) uv_close((uv_handle_t *)timers[i], NULL);
    rconn_free(s->redis);
    notify_close(&s->notify);
}

void supervisor_free(supervisor *s) {
    while (s->procs) {
        sup_proc *p = s->procs;
        s->procs = p->next;
        sup_proc_free(p);
    }
    free(s->slots);
    free(s->worker_path);
    config_free(s->cfg);
    free(s->cfg);
}

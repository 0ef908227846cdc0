/* supervisor.c — start, watch, restart and stop worker processes; recover
 * the jobs of a worker that died. See supervisor.h.
 *
 * Restart backoff: 100 ms after the first exit, doubling to 10 s for a worker
 * that keeps dying, back to 100 ms once a worker has stayed up 30 s. */
#include "daemon/supervisor.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/scripts.h"

#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 10000
#define STABLE_MS 30000

static void sup_spawn(sup_slot *sl);
static void sup_check_stopped(supervisor *s);

static long long sup_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- recovery ------------------------------------------------------------ */

typedef struct sup_recovery {
    supervisor *sup;
    char *id;
} sup_recovery;

static void sup_on_recovered(rconn *rc, redisReply *reply, void *priv) {
    sup_recovery *r = priv;
    (void)rc;
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        log_info("jobs_recovered", "worker=%s jobs=%lld", log_quote(r->id), reply->integer);
    else if (reply->type == REDIS_REPLY_ERROR)
        log_error("recover_failed", "worker=%s error=%s", log_quote(r->id), log_quote(reply->str));
    supervisor *s = r->sup;
    free(r->id);
    free(r);
    sup_check_stopped(s);
}

/* Puts the jobs of worker `id` back on their queues (reliably: if Redis is
 * down, as soon as it is back). */
static void sup_recover(supervisor *s, const char *id) {
    const config *cfg = s->cfg;
    rargs a = {0};
    char *workers = keys_workers(cfg->prefix);
    char *hb = keys_heartbeat(cfg->prefix, id);
    char **keys = xcalloc((size_t)cfg->nqueues * 2, sizeof *keys);
    rargs_adds(&a, "EVALSHA");
    rargs_adds(&a, rconn_script_sha(s->redis, s->recover_script));
    rargs_addf(&a, "%d", 2 + 2 * cfg->nqueues);
    rargs_adds(&a, workers);
    rargs_adds(&a, hb);
    for (int i = 0; i < cfg->nqueues; i++) {
        keys[2 * i] = keys_processing(cfg->prefix, id, cfg->queues[i]);
        keys[2 * i + 1] = keys_queue(cfg->prefix, cfg->queues[i]);
        rargs_adds(&a, keys[2 * i]);
        rargs_adds(&a, keys[2 * i + 1]);
    }
    rargs_adds(&a, id);
    sup_recovery *r = xmalloc(sizeof *r);
    r->sup = s;
    r->id = xstrdup(id);
    rconn_send_reliable(s->redis, sup_on_recovered, r, a.argc, a.argv, a.lens);
    for (int i = 0; i < 2 * cfg->nqueues; i++) free(keys[i]);
    free(keys);
    free(workers);
    free(hb);
    rargs_free(&a);
}

/* ---- processes --------------------------------------------------------------- */

static void sup_on_restart(uv_timer_t *t) {
    sup_slot *sl = t->data;
    if (!sl->sup->stopping) sup_spawn(sl);
}

static void sup_on_proc_closed(uv_handle_t *h) {
    sup_slot *sl = h->data;
    sl->running = 0;
    sup_check_stopped(sl->sup);
}

static void sup_on_exit(uv_process_t *p, int64_t status, int term_signal) {
    sup_slot *sl = p->data;
    supervisor *s = sl->sup;
    uint64_t lived = uv_now(s->loop) - sl->started_at;
    if (s->stopping && status == 0 && term_signal == 0)
        log_info("worker_stopped", "worker=%s pid=%d", log_quote(sl->id), p->pid);
    else
        log_warn("worker_exited", "worker=%s pid=%d status=%lld signal=%d lived_ms=%llu",
                 log_quote(sl->id), p->pid, (long long)status, term_signal,
                 (unsigned long long)lived);
    sup_recover(s, sl->id);
    uv_close((uv_handle_t *)p, sup_on_proc_closed);
    if (s->stopping) return;
    if (lived >= STABLE_MS) sl->backoff_ms = RESTART_MIN_MS;
    uv_timer_start(&sl->restart, sup_on_restart, (uint64_t)sl->backoff_ms, 0);
    sl->backoff_ms = sl->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : sl->backoff_ms * 2;
}

static void sup_spawn(sup_slot *sl) {
    supervisor *s = sl->sup;
    const config *cfg = s->cfg;
    char host[128] = "host";
    gethostname(host, sizeof host - 1);
    free(sl->id);
    sl->id = xasprintf("%s.%d.%lld.%d", host, (int)getpid(), sup_now_ms(), sl->index);

    buf queues = {0};
    for (int i = 0; i < cfg->nqueues; i++) {
        if (i) buf_putc(&queues, ',');
        buf_puts(&queues, cfg->queues[i]);
    }
    char conc[16];
    snprintf(conc, sizeof conc, "%d", cfg->concurrency);
    char *args[16];
    int n = 0;
    args[n++] = s->worker_path;
    args[n++] = "--id";
    args[n++] = sl->id;
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
    sl->proc.data = sl;
    int rc = uv_spawn(s->loop, &sl->proc, &opt);
    buf_free(&queues);
    if (rc != 0) {
        log_error("spawn_failed", "path=%s error=%s", log_quote(s->worker_path), uv_strerror(rc));
        /* uv_spawn initialised the handle even on failure: close it. */
        sl->running = 1;
        uv_close((uv_handle_t *)&sl->proc, sup_on_proc_closed);
        uv_timer_start(&sl->restart, sup_on_restart, (uint64_t)sl->backoff_ms, 0);
        sl->backoff_ms = sl->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : sl->backoff_ms * 2;
        return;
    }
    sl->running = 1;
    sl->started_at = uv_now(s->loop);
    log_info("worker_started", "worker=%s pid=%d", log_quote(sl->id), sl->proc.pid);
}

/* ---- stopping ------------------------------------------------------------------ */

static void sup_check_stopped(supervisor *s) {
    if (!s->stopping) return;
    for (int i = 0; i < s->nslots; i++)
        if (s->slots[i].running) return;
    /* Recoveries not yet stored (Redis down) are waited for until the stop
     * timer gives up; what is left then stays in Redis for a later chatqd. */
    if (rconn_pending(s->redis) > 0) return;
    log_info("chatqd_stopped", "workers=%d", s->nslots);
    uv_stop(s->loop);
}

static void sup_on_stop_timeout(uv_timer_t *t) {
    supervisor *s = t->data;
    log_warn("stop_timeout", "pending_recoveries=%zu", rconn_pending(s->redis));
    uv_stop(s->loop);
}

static void sup_on_signal(uv_signal_t *h, int signum) {
    supervisor *s = h->data;
    int again = s->stopping;
    s->stopping = 1;
    log_info(again ? "stop_now" : "stopping", "signal=%d", signum);
    for (int i = 0; i < s->nslots; i++) {
        sup_slot *sl = &s->slots[i];
        uv_timer_stop(&sl->restart);
        if (sl->running && !uv_is_closing((uv_handle_t *)&sl->proc))
            uv_process_kill(&sl->proc, SIGTERM);
    }
    if (!again) {
        /* the workers' grace period, plus time to store their last results */
        uint64_t limit = (uint64_t)s->cfg->shutdown_grace_ms + 10000;
        uv_timer_start(&s->stop_timer, sup_on_stop_timeout, limit, 0);
    }
    sup_check_stopped(s);
}

/* ---- set-up ----------------------------------------------------------------------- */

static void sup_on_redis_state(rconn *rc, int ready, void *ud) {
    supervisor *s = ud;
    (void)rc;
    if (ready) sup_check_stopped(s);
}

int supervisor_init(supervisor *s, uv_loop_t *loop, config *cfg) {
    char err[256];
    char exe[4096];
    size_t len = sizeof exe;
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->cfg = cfg;
    if (uv_exepath(exe, &len) != 0) {
        log_error("no_exe_path", "error=%s", "uv_exepath failed");
        return -1;
    }
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    const char *override = getenv("CHATQ_WORKER");
    s->worker_path = override ? xstrdup(override) : xasprintf("%s/chatq-worker", exe);
    if (access(s->worker_path, X_OK) != 0) {
        log_error("no_worker_binary", "path=%s", log_quote(s->worker_path));
        free(s->worker_path);
        return -1;
    }
    redis_target t;
    if (redis_target_parse(cfg->redis_url, &t, err, sizeof err) != 0) {
        log_error("bad_redis_url", "error=%s", log_quote(err));
        free(s->worker_path);
        return -1;
    }
    s->redis = rconn_new(loop, &t, "supervisor", sup_on_redis_state, s);
    redis_target_free(&t);
    s->recover_script = rconn_add_script(s->redis, scripts_recover);
    s->nslots = cfg->workers;
    s->slots = xcalloc((size_t)s->nslots, sizeof *s->slots);
    for (int i = 0; i < s->nslots; i++) {
        sup_slot *sl = &s->slots[i];
        sl->sup = s;
        sl->index = i;
        sl->backoff_ms = RESTART_MIN_MS;
        uv_timer_init(loop, &sl->restart);
        sl->restart.data = sl;
    }
    uv_signal_init(loop, &s->sigterm);
    s->sigterm.data = s;
    uv_signal_init(loop, &s->sigint);
    s->sigint.data = s;
    uv_timer_init(loop, &s->stop_timer);
    s->stop_timer.data = s;
    return 0;
}

void supervisor_start(supervisor *s) {
    log_info("chatqd_start", "workers=%d concurrency=%d worker_path=%s", s->nslots,
             s->cfg->concurrency, log_quote(s->worker_path));
    rconn_start(s->redis);
    uv_signal_start(&s->sigterm, sup_on_signal, SIGTERM);
    uv_signal_start(&s->sigint, sup_on_signal, SIGINT);
    for (int i = 0; i < s->nslots; i++) sup_spawn(&s->slots[i]);
}

void supervisor_close(supervisor *s) {
    for (int i = 0; i < s->nslots; i++) {
        sup_slot *sl = &s->slots[i];
        if (sl->running && !uv_is_closing((uv_handle_t *)&sl->proc)) {
            uv_process_kill(&sl->proc, SIGKILL);
            uv_close((uv_handle_t *)&sl->proc, NULL);
        }
        uv_close((uv_handle_t *)&sl->restart, NULL);
    }
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->stop_timer, NULL);
    rconn_free(s->redis);
}

void supervisor_free(supervisor *s) {
    for (int i = 0; i < s->nslots; i++) free(s->slots[i].id);
    free(s->slots);
    free(s->worker_path);
}

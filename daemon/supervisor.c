/* supervisor.c — start, watch, restart, reload and stop worker processes;
 * judge their deaths and recover their jobs. See supervisor.h for the
 * behaviour.
 *
 * Processes and slots: a slot is a place for one worker (there are
 * cfg->workers of them, plus the quarantine slot); a sup_proc is one running
 * process. A slot points to its current process; a reload or a shrink
 * "retires" a process (slot = -1), which then drains in the background while
 * its replacement already runs. Whatever happens, a process's end runs
 * RECOVER for its id, so a process that left jobs in its processing lists
 * (crash, or a drain cut short) never strands them.
 *
 * The end of a process (sup_proc_end) needs two things, in either order:
 * its exit status (sup_on_exit) and the end of its status channel
 * (sup_on_chan_read), whose last line may be the "crash" line that names the
 * job at fault. The exit waits for the channel at most EOF_WAIT_MS. */
#include "daemon/supervisor.h"

#include <json-c/json.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/jsonparse.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/random.h"
#include "common/scripts.h"

#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 10000
#define CRASH_LOOP_LIMIT 10
#define SWEEP_MS 2000
#define POISON_LIMIT 3
#define ROLL_MS 250
#define EOF_WAIT_MS 500   /* an exited worker's channel should end at once */
#define REPORT_FD "3"     /* the worker's status channel (stdio[3]) */

extern char **environ;

typedef enum sup_death {
    SUP_CLEAN,   /* exit status 0 */
    SUP_ERROR,   /* exit status != 0 */
    SUP_KILLED,  /* a signal from outside: SIGKILL (the OOM killer too), SIGTERM... */
    SUP_FAULT,   /* SEGV, BUS, ILL, FPE, ABRT, or the worker's "crash" line */
} sup_death;

static const char *const sup_death_names[] = {"clean", "error", "killed", "fault"};

static void sup_spawn(supervisor *s, int slot);
static void sup_check_stopped(supervisor *s);
static void sup_stop(supervisor *s, int exit_code);
static void sup_quarantine_start(supervisor *s);
static void sup_quarantine_check(supervisor *s);

static long long sup_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- recovery ------------------------------------------------------------ */

/* A RECOVER on its way, on the supervisor's list until it answers: one
 * still unanswered when chatqd gives up waiting (Redis away) is freed with
 * the supervisor, its jobs left in Redis for a later chatqd. */
struct sup_recovery {
    supervisor *sup;
    char *id;
    struct sup_recovery *prev, *next;
};

static void sup_recovery_free(sup_recovery *r) {
    supervisor *s = r->sup;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->recoveries = r->next;
    if (r->next) r->next->prev = r->prev;
    free(r->id);
    free(r);
}

/* RECOVER answers {requeued, quarantined, dead} ({-1}: unknown worker, {-2}:
 * its heartbeat lives; a fourth element 1: jobs were left where they are,
 * see scripts.h); before issue 9 it answered the requeued count alone,
 * which is read as {n, 0, 0}. */
static void sup_on_recovered(rconn *rc, redisReply *reply, void *priv) {
    sup_recovery *r = priv;
    supervisor *s = r->sup;
    (void)rc;
    long long n[3] = {-1, 0, 0};
    if (reply->type == REDIS_REPLY_INTEGER) {
        n[0] = reply->integer;
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements && i < 3; i++)
            if (reply->element[i]->type == REDIS_REPLY_INTEGER) n[i] = reply->element[i]->integer;
        if (reply->elements > 3 && reply->element[3]->type == REDIS_REPLY_INTEGER &&
            reply->element[3]->integer == 1)
            log_warn("recover_stuck",
                     "worker=%s reason=\"a queue and its quarantine list are not lists\" "
                     "action=\"jobs left in its processing list, tried again at the next sweep\"",
                     log_quote(r->id));
    } else if (reply->type == REDIS_REPLY_ERROR) {
        log_error("recover_failed", "worker=%s error=%s", log_quote(r->id), log_quote(reply->str));
    }
    if (n[0] >= 0) {
        log_info("worker_recovered", "worker=%s jobs_requeued=%lld jobs_quarantined=%lld jobs_dead=%lld",
                 log_quote(r->id), n[0], n[1], n[2]);
        if (n[2] > 0)
            log_warn("poison_pill", "worker=%s jobs=%lld code=worker_crashed", log_quote(r->id), n[2]);
        if (n[1] > 0) sup_quarantine_start(s);
    }
    sup_recovery_free(r);
    sup_check_stopped(s);
}

/* What RECOVER needs to know about a gone worker. */
typedef struct sup_gone {
    const char *id;
    char **queues;        /* the queues it served */
    int nqueues;
    int quarantine;       /* it ran suspects: they go back to quarantine */
    int only_if_expired;  /* a worker we did not start: leave it if it lives */
    int fault;            /* it died of a fault: its jobs may have caused it */
    const char *culprit;  /* SHA1 of the job it named, "" = not known */
} sup_gone;

/* Puts the jobs of a gone worker back where they came from, reliably: if
 * Redis is down, as soon as it is back. */
static void sup_recover(supervisor *s, const sup_gone *g) {
    const config *cfg = s->cfg;
    char day[11];
    long long now = sup_now_ms();
    keys_day(now, day);
    char **proc = xcalloc((size_t)g->nqueues + 1, sizeof *proc);
    char **back = xcalloc((size_t)g->nqueues + 1, sizeof *back);
    for (int i = 0; i < g->nqueues; i++) {
        proc[i] = keys_processing(cfg->prefix, g->id, g->queues[i]);
        /* a suspect never goes back to its queue from the quarantine worker */
        back[i] = g->quarantine ? keys_quarantine(cfg->prefix, g->queues[i])
                                : keys_queue(cfg->prefix, g->queues[i]);
    }
    char *workers = keys_workers(cfg->prefix), *hb = keys_heartbeat(cfg->prefix, g->id);
    char *crashes = keys_crashes(cfg->prefix), *dead = keys_dead(cfg->prefix);
    char *requeued = keys_requeued(cfg->prefix);
    char **quar = xcalloc((size_t)g->nqueues + 1, sizeof *quar);
    for (int i = 0; i < g->nqueues; i++) quar[i] = keys_quarantine(cfg->prefix, g->queues[i]);
    scripts_recover_call c = {
        .workers_key = workers, .heartbeat_key = hb, .crashes_key = crashes, .dead_key = dead,
        .requeued_key = requeued, .processing_keys = proc, .queue_keys = back,
        .quarantine_keys = quar, .nqueues = g->nqueues, .worker_id = g->id,
        .only_if_expired = g->only_if_expired, .prefix = cfg->prefix, .now_ms = now,
        .poison_limit = POISON_LIMIT, .result_ttl_s = cfg->result_ttl_s, .day = day,
        .fault = g->fault, .culprit_sha1 = g->culprit};
    rargs a = {0};
    scripts_recover_args(&c, &a);
    sup_recovery *r = xcalloc(1, sizeof *r);
    r->sup = s;
    r->id = xstrdup(g->id);
    r->next = s->recoveries;
    if (r->next) r->next->prev = r;
    s->recoveries = r;
    rconn_eval_reliable(s->redis, s->recover_script, sup_on_recovered, r, a.argc, a.argv, a.lens);
    rargs_free(&a);
    for (int i = 0; i < g->nqueues; i++) {
        free(proc[i]);
        free(back[i]);
        free(quar[i]);
    }
    free(proc);
    free(back);
    free(quar);
    free(workers);
    free(hb);
    free(crashes);
    free(dead);
    free(requeued);
}

/* ---- the quarantine worker ------------------------------------------------ */

/* A quarantine worker runs or is about to: its restart timer is pending, or
 * one (current or retired) has not ended yet. At most one per chatqd. */
static int sup_quarantine_busy(supervisor *s) {
    if (uv_is_active((uv_handle_t *)&s->slots[SUP_QSLOT].restart)) return 1;
    for (sup_proc *p = s->procs; p; p = p->next)
        if (p->quarantine && !p->ended) return 1;
    return 0;
}

static void sup_quarantine_start(supervisor *s) {
    if (s->stopping || sup_quarantine_busy(s)) return;
    sup_spawn(s, SUP_QSLOT);
}

static void sup_on_quarantine_len(rconn *rc, redisReply *reply, void *priv) {
    supervisor *s = rconn_data(rc);
    (void)priv;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) sup_quarantine_start(s);
}

/* Starts the quarantine worker if a quarantine list of our queues holds a
 * job (asked of Redis: other chatqds' RECOVERs fill them too). */
static void sup_quarantine_check(supervisor *s) {
    if (s->stopping || sup_quarantine_busy(s)) return;
    for (int i = 0; i < s->cfg->nqueues; i++) {
        char *k = keys_quarantine(s->cfg->prefix, s->cfg->queues[i]);
        const char *a[] = {"LLEN", k};
        size_t l[] = {4, strlen(k)};
        rconn_send(s->redis, sup_on_quarantine_len, NULL, 2, a, l);
        free(k);
    }
}

/* ---- the sweep: workers of other processes whose heartbeat expired -------- */

/* Parses what a worker wrote to Redis (its P:workers entry, its heartbeat):
 * small objects, but anyone can write to Redis, and json-c makes a 1 MiB
 * text of "[{},{},...]" about 260 MB. Returns NULL for a text that is not
 * strict JSON or passes the limits (a few thousand queues fit). */
static json_object *sup_parse_worker_json(const char *s, size_t len) {
    const strictjson_limits lim = {.max_values = 10000, .max_containers = 16, .max_depth = 4};
    json_tokener *tok = json_tokener_new_ex(lim.max_depth + 1);
    if (!tok) return NULL;
    json_object *o = NULL;
    char err[128];
    jsonparse_strict(tok, s, len, &lim, 0, &o, NULL, err, sizeof err);
    json_tokener_free(tok);
    return o;
}

static int sup_is_ours(supervisor *s, const char *id) {
    for (sup_proc *p = s->procs; p; p = p->next)
        if (strcmp(p->id, id) == 0) return 1;
    return 0;
}

/* Worker ids end in their slot number, or in "q" for a quarantine worker. */
static int sup_id_is_quarantine(const char *id) {
    size_t n = strlen(id);
    return n >= 2 && strcmp(id + n - 2, ".q") == 0;
}

static void sup_on_workers(rconn *rc, redisReply *reply, void *priv) {
    supervisor *s = rconn_data(rc);
    (void)priv;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || s->stopping) return;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const char *id = reply->element[i]->str;
        const char *info = reply->element[i + 1]->str;
        if (!id || !info || sup_is_ours(s, id)) continue;
        json_object *o = sup_parse_worker_json(info, reply->element[i + 1]->len), *qs = NULL;
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
        /* Why it died is not known (a host lost, a chatqd killed whole):
         * nothing says its jobs were at fault. */
        sup_gone g = {.id = id, .queues = queues, .nqueues = k,
                      .quarantine = sup_id_is_quarantine(id), .only_if_expired = 1,
                      .fault = 0, .culprit = ""};
        sup_recover(s, &g);
        free(queues);
        json_object_put(o);
    }
}

/* ---- sampled metrics: queue lengths ------------------------------------------- */

static void sup_on_length(rconn *rc, redisReply *reply, void *priv) {
    supervisor *s = rconn_data(rc);
    char *series = priv;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        metrics_set(s->metrics, series, (double)reply->integer);
    free(series);
}

/* LLEN of key into the gauge `series` (taken: freed here or in the reply). */
static void sup_sample_length(supervisor *s, const char *key, char *series) {
    const char *a[] = {"LLEN", key};
    size_t l[] = {4, strlen(key)};
    if (rconn_send(s->redis, sup_on_length, series, 2, a, l) != RCONN_OK) free(series);
}

/* The lengths of the queues, their quarantine lists and P:dead, and our
 * own outbox: a few pipelined commands every SWEEP_MS. */
static void sup_sample_metrics(supervisor *s) {
    if (!s->metrics) return;
    const config *cfg = s->cfg;
    for (int i = 0; i < cfg->nqueues; i++) {
        char *q = keys_queue(cfg->prefix, cfg->queues[i]);
        char *qq = keys_quarantine(cfg->prefix, cfg->queues[i]);
        sup_sample_length(s, q, xasprintf("chatq_queue_length{queue=\"%s\"}", cfg->queues[i]));
        sup_sample_length(s, qq,
                          xasprintf("chatq_quarantine_length{queue=\"%s\"}", cfg->queues[i]));
        free(q);
        free(qq);
    }
    char *dead = keys_dead(cfg->prefix);
    sup_sample_length(s, dead, xstrdup("chatq_dead_jobs{}"));
    free(dead);
    metrics_set(s->metrics, "chatq_redis_outbox_depth{process=\"chatqd\"}",
                (double)rconn_pending(s->redis));
}

static void sup_status(supervisor *s);

static void sup_on_sweep(uv_timer_t *t) {
    supervisor *s = t->data;
    sup_sample_metrics(s);
    char *k = keys_workers(s->cfg->prefix);
    const char *a[] = {"HGETALL", k};
    size_t l[] = {7, strlen(k)};
    rconn_send(s->redis, sup_on_workers, NULL, 2, a, l);
    free(k);
    sup_quarantine_check(s);
    sup_status(s);
}

/* ---- STATUS= from our workers' heartbeats ----------------------------------- */

/* A count of a heartbeat: anyone can write to Redis, so a value that is not
 * a whole number counts 0 and one out of [0, 10^15] is clamped, so that the
 * sums of a few hundred workers cannot overflow. */
static long long sup_heartbeat_count(json_object *o, const char *key) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int)) return 0;
    long long n = json_object_get_int64(v);
    return n < 0 ? 0 : n > 1000000000000000LL ? 1000000000000000LL : n;
}

static void sup_on_heartbeats(rconn *rc, redisReply *reply, void *priv) {
    supervisor *s = rconn_data(rc);
    (void)priv;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) return;
    long long in_flight = 0, done = 0, failed = 0;
    int alive = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING) continue;
        json_object *o = sup_parse_worker_json(e->str, e->len);
        if (!o) continue;
        alive++;
        in_flight += sup_heartbeat_count(o, "in_flight");
        done += sup_heartbeat_count(o, "done");
        failed += sup_heartbeat_count(o, "failed");
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
        if (p->slot >= 0 && !p->quarantine) rargs_take(&a, keys_heartbeat(s->cfg->prefix, p->id));
    if (a.argc > 1) rconn_send(s->redis, sup_on_heartbeats, NULL, a.argc, a.argv, a.lens);
    rargs_free(&a);
}

static void sup_on_watchdog(uv_timer_t *t) {
    supervisor *s = t->data;
    notify_send(&s->notify, "WATCHDOG=1");
}

/* ---- a worker's status channel ------------------------------------------------ */

static int sup_is_sha1(const char *s) {
    size_t n = strspn(s, "0123456789abcdefABCDEF");
    return n == 40 && s[n] == '\0';
}

/* One line from a worker (worker/report.h); unknown ones are skipped, so a
 * newer worker may say more. */
static void sup_on_line(sup_proc *p, const char *line) {
    supervisor *s = p->sup;
    if (strncmp(line, "metric ", 7) == 0) { /* the most frequent: first */
        metrics_proc_line(s->metrics, p->metrics, line);
    } else if (strcmp(line, "ready") == 0) {
        if (!p->ready) log_debug("worker_ready", "worker=%s", log_quote(p->id));
        p->ready = 1;
        /* a replacement that got this far: the next death restarts fast */
        if (p->slot >= 0 && s->slots[p->slot].proc == p) s->slots[p->slot].backoff_ms = RESTART_MIN_MS;
    } else if (strncmp(line, "progress ", 9) == 0) {
        long long n = strtoll(line + 9, NULL, 10);
        if (n <= p->progress) return;
        p->progress = n;
        if (s->barren_deaths > 0)
            log_info("crash_count_reset", "worker=%s barren_deaths=%d", log_quote(p->id),
                     s->barren_deaths);
        s->barren_deaths = 0; /* workers finish jobs: whatever dies, it is no crash loop */
    } else if (strncmp(line, "crash ", 6) == 0) {
        p->crashed = 1;
        if (sup_is_sha1(line + 6)) {
            memcpy(p->culprit, line + 6, 40);
            p->culprit[40] = '\0';
        }
    } else {
        log_debug("worker_line_unknown", "worker=%s line=%s", log_quote(p->id), log_quote(line));
    }
}

static void sup_on_chan_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    sup_proc *p = h->data;
    (void)suggested;
    *b = uv_buf_init(p->rbuf, sizeof p->rbuf);
}

static void sup_proc_end(sup_proc *p);

static void sup_on_chan_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    sup_proc *p = st->data;
    for (ssize_t i = 0; i < n; i++) {
        char c = b->base[i];
        if (c == '\n') {
            p->line[p->line_len] = '\0';
            if (!p->line_skip) sup_on_line(p, p->line);
            p->line_len = 0;
            p->line_skip = 0;
        } else if (p->line_len + 1 < sizeof p->line) {
            p->line[p->line_len++] = c;
        } else {
            p->line_skip = 1;
        }
    }
    if (n >= 0) return; /* 0: nothing for now */
    /* EOF, or an error: either way nothing more will come */
    p->chan_eof = 1;
    uv_read_stop(st);
    if (p->exited) sup_proc_end(p);
}

/* ---- processes --------------------------------------------------------------- */

static void sup_proc_free(sup_proc *p) {
    metrics_proc_end(p->sup->metrics, p->metrics);
    for (int i = 0; i < p->nqueues; i++) free(p->queues[i]);
    free(p->queues);
    free(p->id);
    config_snapshot_free(p->snap_data, p->snap_len);
    free(p);
}

/* The close callback of each of a process's handles: the last one frees it. */
static void sup_on_proc_handle_closed(uv_handle_t *h) {
    sup_proc *p = h->data;
    supervisor *s = p->sup;
    if (--p->handles > 0) return;
    for (sup_proc **pp = &s->procs; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    sup_proc_free(p);
    sup_check_stopped(s);
}

static void sup_close_handle(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, sup_on_proc_handle_closed);
}

/* Closes whatever of the process's handles is still open. */
static void sup_proc_close(sup_proc *p) {
    sup_close_handle((uv_handle_t *)&p->proc);
    sup_close_handle((uv_handle_t *)&p->snap);
    sup_close_handle((uv_handle_t *)&p->chan);
    sup_close_handle((uv_handle_t *)&p->eof_wait);
}

static void sup_on_restart(uv_timer_t *t) {
    sup_slot *sl = t->data;
    supervisor *s = sl->sup;
    if (s->stopping || sl->proc) return;
    if (sl->index == SUP_QSLOT)
        sup_quarantine_check(s); /* only when suspects wait */
    else
        sup_spawn(s, sl->index);
}

/* Restarts the slot of a worker that just ended: at once (RESTART_MIN_MS)
 * if it had got as far as "ready", else after the slot's backoff, drawn
 * between half and all of it so slots do not restart in lock step, which
 * then doubles. */
static void sup_schedule_restart(sup_slot *sl, const sup_proc *p) {
    uint64_t delay;
    if (p->ready) {
        sl->backoff_ms = RESTART_MIN_MS;
        delay = RESTART_MIN_MS;
    } else {
        delay = (uint64_t)(sl->backoff_ms / 2 +
                           (long)(random_u32() % (unsigned)(sl->backoff_ms / 2 + 1)));
        sl->backoff_ms = sl->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : sl->backoff_ms * 2;
    }
    uv_timer_start(&sl->restart, sup_on_restart, delay, 0);
}

static sup_death sup_judge(const sup_proc *p) {
    int sig = p->term_signal;
    if (p->crashed || sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE ||
        sig == SIGABRT)
        return SUP_FAULT;
    if (sig) return SUP_KILLED;
    return p->exit_status != 0 ? SUP_ERROR : SUP_CLEAN;
}

static void sup_log_end(const sup_proc *p, sup_death death) {
    supervisor *s = p->sup;
    unsigned long long lived = uv_now(s->loop) - p->started_at;
    if (death == SUP_CLEAN && (s->stopping || p->slot < 0 || p->quarantine)) {
        log_info("worker_stopped", "worker=%s pid=%d%s", log_quote(p->id), p->proc.pid,
                 p->quarantine ? " quarantine=1" : "");
        return;
    }
    log_warn("worker_exited",
             "worker=%s pid=%d status=%lld signal=%d lived_ms=%llu cause=%s culprit=%s "
             "ready=%d jobs_ended=%lld%s",
             log_quote(p->id), p->proc.pid, (long long)p->exit_status, p->term_signal, lived,
             sup_death_names[death], p->culprit[0] ? p->culprit : "-", p->ready, p->progress,
             p->quarantine ? " quarantine=1" : "");
}

/* Counts the deaths that look like a crash loop: faults and error exits of
 * workers that ended no job. Outside kills never count (a worker killed while
 * it works is replaced, however often), nor does the quarantine worker (it
 * runs the jobs that crash). */
static void sup_count_death(supervisor *s, const sup_proc *p, sup_death death) {
    if (p->quarantine || p->progress > 0 || (death != SUP_FAULT && death != SUP_ERROR)) return;
    s->barren_deaths++;
    if (s->barren_deaths < CRASH_LOOP_LIMIT || s->stopping) return;
    /* stop, so that the service manager restarts chatqd as a whole */
    log_error("crash_loop", "deaths=%d action=exit", s->barren_deaths);
    sup_stop(s, 1);
}

/* A process has exited and its channel is read: judge the death, recover
 * its jobs, restart its slot. Runs once per process. */
static void sup_proc_end(sup_proc *p) {
    supervisor *s = p->sup;
    if (p->ended) return;
    p->ended = 1;
    uv_timer_stop(&p->eof_wait);
    sup_death death = sup_judge(p);
    sup_log_end(p, death);
    metrics_proc_end(s->metrics, p->metrics); /* its gauges leave the sums */
    p->metrics = NULL;
    metrics_add(s->metrics, "chatq_worker_processes{}", -1);
    sup_gone g = {.id = p->id, .queues = p->queues, .nqueues = p->nqueues,
                  .quarantine = p->quarantine, .only_if_expired = 0,
                  .fault = death == SUP_FAULT, .culprit = p->culprit};
    sup_recover(s, &g);
    sup_count_death(s, p, death);
    int slot = p->slot;
    sup_proc_close(p);
    if (slot < 0 || s->stopping) {
        if (p->quarantine) sup_quarantine_check(s); /* a retired one: maybe a new one */
        return;
    }
    sup_slot *sl = &s->slots[slot];
    sl->proc = NULL;
    if (p->quarantine && death == SUP_CLEAN) {
        sup_quarantine_check(s); /* it found the lists empty; are they still? */
        return;
    }
    sup_schedule_restart(sl, p);
    char series[64];
    snprintf(series, sizeof series, "chatq_worker_restarts_total{cause=\"%s\"}",
             sup_death_names[death]);
    metrics_add(s->metrics, series, 1);
}

static void sup_on_eof_wait(uv_timer_t *t) {
    sup_proc *p = t->data;
    log_debug("report_eof_timeout", "worker=%s", log_quote(p->id));
    sup_proc_end(p);
}

static void sup_on_exit(uv_process_t *proc, int64_t status, int term_signal) {
    sup_proc *p = proc->data;
    p->exited = 1;
    p->exit_status = status;
    p->term_signal = term_signal;
    if (p->chan_eof)
        sup_proc_end(p);
    else /* its last line may still be on its way */
        uv_timer_start(&p->eof_wait, sup_on_eof_wait, EOF_WAIT_MS, 0);
}

static void sup_on_snapshot_written(uv_write_t *req, int status) {
    sup_proc *p = req->data;
    if (status < 0 && status != UV_ECANCELED)
        log_debug("snapshot_not_written", "worker=%s error=%s", log_quote(p->id),
                  uv_strerror(status));
    config_snapshot_free(p->snap_data, p->snap_len);
    p->snap_data = NULL;
    sup_close_handle((uv_handle_t *)&p->snap); /* the worker reads EOF */
}

/* Hands the configuration in force to the worker, on its stdin. */
static void sup_send_snapshot(supervisor *s, sup_proc *p) {
    p->snap_data = config_snapshot(s->cfg, &p->snap_len);
    uv_buf_t b = uv_buf_init(p->snap_data, (unsigned)p->snap_len);
    p->snap_req.data = p;
    int rc = uv_write(&p->snap_req, (uv_stream_t *)&p->snap, &b, 1, sup_on_snapshot_written);
    if (rc != 0) {
        /* the worker reads a truncated snapshot, says so and exits 1 */
        log_error("snapshot_write_failed", "worker=%s error=%s", log_quote(p->id), uv_strerror(rc));
        config_snapshot_free(p->snap_data, p->snap_len);
        p->snap_data = NULL;
        sup_close_handle((uv_handle_t *)&p->snap);
    }
}

/* chatqd's environment less the variables that hold API keys (the worker
 * gets the keys in the snapshot). The strings are borrowed from environ;
 * free() the array only. */
static char **sup_worker_env(const config *cfg) {
    size_t n = 0;
    while (environ[n]) n++;
    char **env = xcalloc(n + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = environ[i];
        size_t len = strcspn(e, "=");
        int secret = 0;
        for (int j = 0; j < cfg->nproviders && !secret; j++) {
            const char *v = cfg->providers[j].api_key_env;
            secret = v && strlen(v) == len && strncmp(e, v, len) == 0;
        }
        if (!secret) env[k++] = (char *)e;
    }
    return env;
}

/* The process's handles, before uv_spawn (which wants the pipes ready). */
static sup_proc *sup_proc_new(supervisor *s, int slot) {
    const config *cfg = s->cfg;
    char host[128] = "host";
    gethostname(host, sizeof host - 1);
    sup_proc *p = xcalloc(1, sizeof *p);
    p->sup = s;
    p->slot = slot;
    p->quarantine = slot == SUP_QSLOT;
    if (p->quarantine)
        p->id = xasprintf("%s.%d.%lld.q", host, (int)getpid(), sup_now_ms());
    else
        p->id = xasprintf("%s.%d.%lld.%d", host, (int)getpid(), sup_now_ms(), slot);
    p->nqueues = cfg->nqueues;
    p->queues = xcalloc((size_t)cfg->nqueues, sizeof *p->queues);
    for (int i = 0; i < cfg->nqueues; i++) p->queues[i] = xstrdup(cfg->queues[i]);
    p->metrics = metrics_proc_new(s->metrics);
    p->proc.data = p;
    uv_pipe_init(s->loop, &p->snap, 0);
    p->snap.data = p;
    uv_pipe_init(s->loop, &p->chan, 0);
    p->chan.data = p;
    uv_timer_init(s->loop, &p->eof_wait);
    p->eof_wait.data = p;
    p->handles = 4;
    p->next = s->procs;
    s->procs = p;
    return p;
}

static void sup_spawn(supervisor *s, int slot) {
    const config *cfg = s->cfg;
    sup_slot *sl = &s->slots[slot];
    sup_proc *p = sup_proc_new(s, slot);
    buf queues = {0};
    for (int i = 0; i < cfg->nqueues; i++) {
        if (i) buf_putc(&queues, ',');
        buf_puts(&queues, cfg->queues[i]);
    }
    char conc[16];
    snprintf(conc, sizeof conc, "%d", p->quarantine ? 1 : cfg->concurrency);
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
    args[n++] = "--config-stdin";
    args[n++] = "--report-fd";
    args[n++] = REPORT_FD;
    if (p->quarantine) args[n++] = "--quarantine";
    args[n] = NULL;

    uv_stdio_container_t stdio[4] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&p->snap},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->chan}};
    char **env = sup_worker_env(cfg);
    uv_process_options_t opt = {0};
    opt.file = s->worker_path;
    opt.args = args;
    opt.env = env;
    opt.exit_cb = sup_on_exit;
    opt.stdio = stdio;
    opt.stdio_count = 4;
    int rc = uv_spawn(s->loop, &p->proc, &opt);
    free(env);
    buf_free(&queues);
    p->started_at = uv_now(s->loop);
    if (rc != 0) {
        log_error("spawn_failed", "path=%s error=%s", log_quote(s->worker_path), uv_strerror(rc));
        /* uv_spawn initialised the handle even on failure: it must be closed */
        p->exited = p->chan_eof = p->ended = 1;
        p->slot = -1;
        sl->proc = NULL; /* the slot has no worker until the restart */
        sup_proc_close(p);
        uv_timer_start(&sl->restart, sup_on_restart, (uint64_t)sl->backoff_ms, 0);
        sl->backoff_ms = sl->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : sl->backoff_ms * 2;
        return;
    }
    sl->proc = p;
    metrics_add(s->metrics, "chatq_worker_processes{}", 1);
    if (p->quarantine) metrics_add(s->metrics, "chatq_quarantine_worker_runs_total{}", 1);
    sup_send_snapshot(s, p);
    uv_read_start((uv_stream_t *)&p->chan, sup_on_chan_alloc, sup_on_chan_read);
    log_info("worker_started", "worker=%s pid=%d%s", log_quote(p->id), p->proc.pid,
             p->quarantine ? " quarantine=1" : "");
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
    uv_timer_stop(&s->slots[SUP_QSLOT].restart);
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

static int sup_same_str(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
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
        /* every worker, old and new, keeps the snapshot of s->cfg */
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
    /* so does the metrics endpoint, which listens from the start on */
    if (!sup_same_str(fresh->metrics, s->cfg->metrics))
        log_warn("reload_kept", "key=metrics reason=needs_restart");
    free(fresh->metrics);
    fresh->metrics = s->cfg->metrics ? xstrdup(s->cfg->metrics) : NULL;
    log_set_level_name(fresh->log_level);
    config_free(s->cfg);
    free(s->cfg);
    s->cfg = fresh;
    int n = fresh->workers;
    if (n > CHATQ_MAX_WORKERS) n = CHATQ_MAX_WORKERS;
    log_info("reload", "workers=%d concurrency=%d", n, fresh->concurrency);
    sup_resize(s, n);
    /* the quarantine worker drains too; the next one (on demand) gets the
     * new configuration */
    sup_slot *q = &s->slots[SUP_QSLOT];
    uv_timer_stop(&q->restart);
    if (q->proc) sup_retire(q->proc);
    q->proc = NULL;
    s->reload_next = 0;
    uv_timer_start(&s->roll, sup_on_roll, 0, 0);
}

/* ---- set-up ----------------------------------------------------------------------- */

static void sup_on_redis_state(rconn *rc, int ready, void *ud) {
    supervisor *s = ud;
    (void)rc;
    if (!ready) return;
    if (s->redis_was_ready)
        metrics_add(s->metrics, "chatq_redis_reconnects_total{process=\"chatqd\"}", 1);
    s->redis_was_ready = 1;
    sup_sample_metrics(s);
    sup_check_stopped(s);
    sup_quarantine_check(s); /* suspects left by an earlier run, or while Redis was away */
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

#define SUP_NSLOTS (CHATQ_MAX_WORKERS + 1) /* the worker slots and the quarantine slot */

/* The slots' restart timers, the signal watchers and the other timers;
 * none is started yet (supervisor_start). */
static void sup_init_handles(supervisor *s) {
    s->slots = xcalloc(SUP_NSLOTS, sizeof *s->slots);
    for (int i = 0; i < SUP_NSLOTS; i++) {
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
        if (!p->exited && !uv_is_closing((uv_handle_t *)&p->proc))
            uv_process_kill(&p->proc, SIGKILL);
        p->ended = 1; /* nothing more is handled */
        sup_proc_close(p);
    }
    for (int i = 0; i < SUP_NSLOTS; i++) uv_close((uv_handle_t *)&s->slots[i].restart, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
    uv_timer_t *timers[] = {&s->stop_timer, &s->sweep, &s->watchdog, &s->roll};
    for (int i = 0; i < 4; i++) uv_close((uv_handle_t *)timers[i], NULL);
    rconn_free(s->redis);
    notify_close(&s->notify);
}

void supervisor_free(supervisor *s) {
    while (s->recoveries) sup_recovery_free(s->recoveries);
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

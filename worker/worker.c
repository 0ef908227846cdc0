/* worker.c — a worker's connections, fetching, running list, cancellation,
 * heartbeat and drain; see worker.h for the design of the fetch.
 *
 * Fetch cycle. Whenever a slot may have become free (start, a job ended, a
 * waiter answered, the command connection came back), worker_maybe_fetch()
 * sends one FETCH asking for as many jobs as there are free slots (at most
 * FETCH_BATCH). Only one FETCH is outstanding at a time, which batches
 * naturally under load. When FETCH returns fewer jobs than asked, the queues
 * were empty: the waiters are armed and the worker sleeps until one answers.
 *
 * Reconnects. A FETCH whose reply was lost with the connection may have moved
 * jobs into the processing lists that this process never saw. So after every
 * reconnect of `cmd` the worker reads its processing lists and requeues any
 * job it does not hold (resync). */
#include "worker/worker.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/scripts.h"
#include "worker/jobrun.h"
#include "worker/report.h" /* issue 9: status lines to chatqd */
#include "worker/upstream.h"

#define FETCH_BATCH 128
#define HEARTBEAT_MS 3000
#define HEARTBEAT_TTL_MS 10000

static void w_check_exit(worker *w);

/* ---- fetching --------------------------------------------------------------- */

static void w_arm_waiters(worker *w);

static void w_resync(worker *w);

/* A FETCH failed with an error (Redis out of memory, read-only, a script
 * error half way): what it moved may sit in our processing lists unseen, and
 * nothing else would ask again. Resync, and fetch again in a second. */
static void w_on_fetch_retry(uv_timer_t *t) {
    worker *w = t->data;
    w_resync(w);
    worker_maybe_fetch(w);
}

static void w_on_fetch(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    long asked = (long)(intptr_t)priv;
    if (!reply) { /* connection lost: the resync after reconnect handles it */
        w->fetching = 0;
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) {
        log_error("fetch_failed", "error=%s",
                  log_quote(reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply"));
        w->fetching = 0;
        uv_timer_start(&w->fetch_retry, w_on_fetch_retry, 1000, 0);
        return;
    }
    long long mode = reply->element[0]->integer;
    long got = (long)(reply->elements - 1) / 2;
    if (mode != 0) {
        /* solo: one suspect job runs alone; blocked: a suspect waits for us
         * to be idle. Either way, the next fetch waits for nruns == 0. */
        w->solo = 1;
        if (mode == 1) log_warn("suspect_job_solo", "jobs=%ld", got);
    }
    /* `fetching` stays set while the jobs start: one that ends at once
     * (invalid) must not send another FETCH sized before the rest started */
    for (size_t i = 1; i + 1 < reply->elements; i += 2) {
        int q = (int)reply->element[i]->integer - 1;
        redisReply *j = reply->element[i + 1];
        if (q < 0 || q >= w->cfg->nqueues || j->type != REDIS_REPLY_STRING) continue;
        jobrun_start(w, j->str, j->len, q);
    }
    w->fetching = 0;
    if (w->solo)
        worker_maybe_fetch(w); /* does nothing until the worker is idle */
    else if (got < asked)
        w_arm_waiters(w);
    else
        worker_maybe_fetch(w);
}

void worker_maybe_fetch(worker *w) {
    if (w->draining || w->fetching || !rconn_ready(w->cmd)) return;
    if (w->solo) {
        if (w->nruns > 0) return;
        w->solo = 0;
    }
    int free_slots = w->cfg->concurrency - w->nruns;
    if (free_slots <= 0) return;
    long n = free_slots < FETCH_BATCH ? free_slots : FETCH_BATCH;
    scripts_fetch_call call = {
        .queue_keys = w->queue_keys,
        .processing_keys = w->proc_keys,
        .nqueues = w->cfg->nqueues,
        .crashes_key = w->crashes_key,
        .want = n,
        .busy = w->nruns,
    };
    rargs a = {0};
    rargs_adds(&a, "EVALSHA");
    rargs_adds(&a, rconn_script_sha(w->cmd, w->scripts[WS_FETCH]));
    scripts_fetch_args(&call, &a);
    if (rconn_send(w->cmd, w_on_fetch, (void *)(intptr_t)n, a.argc, a.argv, a.lens) == 0)
        w->fetching = 1;
    rargs_free(&a);
}

static void w_on_wait(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    int q = (int)(intptr_t)priv;
    w->waiting[q] = 0;
    if (!reply) return; /* lost: re-armed when the connection is back */
    worker_maybe_fetch(w);
}

/* Blocks each waiter in a non-destructive BLMOVE q q RIGHT RIGHT 0. */
static void w_arm_waiters(worker *w) {
    if (w->draining) return;
    for (int i = 0; i < w->cfg->nqueues; i++) {
        if (w->waiting[i] || !rconn_ready(w->waiters[i])) continue;
        const char *k = w->queue_keys[i];
        const char *a[] = {"BLMOVE", k, k, "RIGHT", "RIGHT", "0"};
        size_t l[] = {6, strlen(k), strlen(k), 5, 5, 1};
        if (rconn_send(w->waiters[i], w_on_wait, (void *)(intptr_t)i, 6, a, l) == 0)
            w->waiting[i] = 1;
    }
}

static void w_on_waiter_state(rconn *rc, int ready, void *ud) {
    worker *w = ud;
    (void)rc;
    if (ready) worker_maybe_fetch(w); /* then re-arms the waiters if the queues are empty */
}

/* ---- resync after a reconnect ------------------------------------------------- */

static void w_on_resync(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    int q = (int)(intptr_t)priv;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) return;
    /* Each held job of this queue matches one entry; the rest are orphans. */
    char *matched = xcalloc(reply->elements ? reply->elements : 1, 1);
    for (jobrun *jr = w->runs; jr; jr = jr->next) {
        if (jr->queue != q) continue;
        for (size_t i = 0; i < reply->elements; i++) {
            redisReply *e = reply->element[i];
            if (!matched[i] && e->len == jr->raw_len && memcmp(e->str, jr->raw, e->len) == 0) {
                matched[i] = 1;
                break;
            }
        }
    }
    size_t n = reply->elements ? reply->elements : 1;
    const char **jobs = xcalloc(n, sizeof *jobs);
    size_t *lens = xcalloc(n, sizeof *lens);
    int orphans = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        if (matched[i]) continue;
        jobs[orphans] = reply->element[i]->str;
        lens[orphans] = reply->element[i]->len;
        orphans++;
    }
    if (orphans) {
        scripts_requeue_call call = {
            .processing_keys = &w->proc_keys[q],
            .queue_keys = &w->queue_keys[q],
            .nqueues = 1,
            .jobs = jobs,
            .job_lens = lens,
            .njobs = orphans,
        };
        rargs a = {0};
        scripts_requeue_args(&call, &a);
        log_warn("requeue_orphans", "queue=%s jobs=%d", w->cfg->queues[q], orphans);
        rconn_eval_reliable(w->cmd, w->scripts[WS_REQUEUE], NULL, NULL, a.argc, a.argv, a.lens);
        rargs_free(&a);
    }
    free(jobs);
    free(lens);
    free(matched);
}

/* Reads the processing lists and requeues what this process does not hold. */
static void w_resync(worker *w) {
    for (int q = 0; q < w->cfg->nqueues; q++) {
        const char *a[] = {"LRANGE", w->proc_keys[q], "0", "-1"};
        size_t l[] = {6, strlen(w->proc_keys[q]), 1, 2};
        rconn_send(w->cmd, w_on_resync, (void *)(intptr_t)q, 4, a, l);
    }
}

static void w_register(worker *w) {
    buf info = {0};
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    buf_puts(&info, "{\"host\":");
    buf_json_str(&info, host, strlen(host));
    buf_printf(&info, ",\"pid\":%d,\"queues\":[", (int)getpid());
    for (int i = 0; i < w->cfg->nqueues; i++) {
        if (i) buf_putc(&info, ',');
        buf_json_str(&info, w->cfg->queues[i], strlen(w->cfg->queues[i]));
    }
    buf_printf(&info, "],\"started_at\":%lld}", (long long)time(NULL) * 1000);
    char *k = keys_workers(w->cfg->prefix);
    const char *a[] = {"HSET", k, w->id, info.data};
    size_t l[] = {4, strlen(k), strlen(w->id), info.len};
    rconn_send(w->cmd, NULL, NULL, 4, a, l);
    free(k);
    buf_free(&info);
}

/* The heartbeat key says the worker lives (it expires HEARTBEAT_TTL_MS after
 * the last beat) and carries its counters, which chatqd shows in STATUS=. */
static void w_heartbeat(worker *w) {
    char *k = keys_heartbeat(w->cfg->prefix, w->id);
    char v[128], ttl[24];
    snprintf(v, sizeof v, "{\"in_flight\":%d,\"done\":%lld,\"failed\":%lld}", w->nruns,
             w->done, w->failed);
    snprintf(ttl, sizeof ttl, "%d", HEARTBEAT_TTL_MS);
    const char *a[] = {"SET", k, v, "PX", ttl};
    size_t l[] = {3, strlen(k), strlen(v), 2, strlen(ttl)};
    rconn_send(w->cmd, NULL, NULL, 5, a, l);
    free(k);
}

static void w_on_heartbeat(uv_timer_t *t) { w_heartbeat(t->data); }

static void w_on_cmd_state(rconn *rc, int ready, void *ud) {
    worker *w = ud;
    (void)rc;
    if (!ready) return;
    /* Heartbeat first: a supervisor that sees us registered must also see
     * us alive, or it would recover the jobs of a live worker. */
    w_heartbeat(w);
    w_register(w);
    if (w->cmd_was_ready) w_resync(w);
    w->cmd_was_ready = 1;
    worker_maybe_fetch(w);
    w_check_exit(w);
    report_ready(); /* issue 9: chatqd resets its restart backoff */
}

/* ---- cancellation --------------------------------------------------------------- */

static void w_on_control(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    (void)priv;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
    redisReply *kind = reply->element[0];
    redisReply *msg = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") != 0) return;
    if (msg->type != REDIS_REPLY_STRING) return;
    char id[160];
    if (msg->len >= sizeof id) return;
    memcpy(id, msg->str, msg->len);
    id[msg->len] = '\0';
    jobrun_cancel_id(w, id);
}

static void w_on_control_state(rconn *rc, int ready, void *ud) {
    worker *w = ud;
    if (!ready) return;
    char *k = keys_control(w->cfg->prefix);
    const char *a[] = {"SUBSCRIBE", k};
    size_t l[] = {9, strlen(k)};
    rconn_send(rc, w_on_control, NULL, 2, a, l);
    free(k);
}

/* ---- drain and exit ---------------------------------------------------------------- */

static void w_stop_loop(worker *w) {
    if (w->exiting) return;
    w->exiting = 1;
    log_info("worker_exit", "id=%s done=%lld failed=%lld", log_quote(w->id), w->done, w->failed);
    uv_stop(w->loop);
}

static void w_on_deregistered(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    (void)reply;
    (void)priv;
    w->deregistered = 1;
    w_check_exit(w);
}

/* Exits once draining, with no job in flight and every result stored; then
 * the worker removes itself from P:workers, so nobody tries to recover it. */
static void w_check_exit(worker *w) {
    if (!w->draining || w->nruns > 0 || w->exiting) return;
    if (rconn_pending(w->cmd) > 0) return;
    if (w->deregistered) {
        w_stop_loop(w);
        return;
    }
    if (w->deregistering) return;
    w->deregistering = 1;
    char *k = keys_workers(w->cfg->prefix);
    char *hb = keys_heartbeat(w->cfg->prefix, w->id);
    scripts_deregister_call call = {.workers_key = k, .heartbeat_key = hb, .worker_id = w->id};
    rargs a = {0};
    scripts_deregister_args(&call, &a);
    rconn_eval_reliable(w->cmd, w->scripts[WS_DEREGISTER], w_on_deregistered, NULL, a.argc, a.argv,
                        a.lens);
    rargs_free(&a);
    free(k);
    free(hb);
}

void worker_run_add(worker *w, jobrun *jr) {
    jr->prev = NULL;
    jr->next = w->runs;
    if (w->runs) w->runs->prev = jr;
    w->runs = jr;
    w->nruns++;
}

void worker_run_remove(worker *w, jobrun *jr) {
    if (jr->prev)
        jr->prev->next = jr->next;
    else
        w->runs = jr->next;
    if (jr->next) jr->next->prev = jr->prev;
    jr->prev = jr->next = NULL;
    w->nruns--;
    report_progress(w->done + w->failed); /* issue 9: not a crash loop */
    worker_maybe_fetch(w);
}

static void w_on_requeued(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    (void)priv;
    if (reply->type == REDIS_REPLY_INTEGER)
        log_info("worker_requeued", "jobs=%lld", reply->integer);
    w_check_exit(w);
}

static void w_on_give_up(uv_timer_t *t) {
    worker *w = t->data;
    log_warn("redis_unreachable_at_exit", "unsaved=%zu", rconn_pending(w->cmd));
    w_stop_loop(w);
}

/* The grace period is over: abort what is left and put it back on its queue. */
static void w_on_grace(uv_timer_t *t) {
    worker *w = t->data;
    w->aborting = 1;
    log_warn("drain_timeout", "jobs_left=%d", w->nruns);
    while (w->runs) jobrun_abort(w->runs);
    scripts_requeue_call call = {
        .processing_keys = w->proc_keys,
        .queue_keys = w->queue_keys,
        .nqueues = w->cfg->nqueues,
    };
    rargs a = {0};
    scripts_requeue_args(&call, &a);
    rconn_eval_reliable(w->cmd, w->scripts[WS_REQUEUE], w_on_requeued, NULL, a.argc, a.argv, a.lens);
    rargs_free(&a);
    /* Redis may be unreachable: do not wait for it forever. What stays in the
     * processing lists is recovered by the supervisor. */
    uv_timer_start(&w->grace, w_on_give_up, 5000, 0);
    w_check_exit(w);
}

void worker_drain(worker *w) {
    if (w->draining) {
        /* A second signal: stop waiting. */
        if (!w->aborting) {
            uv_timer_stop(&w->grace);
            w_on_grace(&w->grace);
        }
        return;
    }
    w->draining = 1;
    log_info("worker_drain", "jobs=%d grace_ms=%lld", w->nruns, w->cfg->shutdown_grace_ms);
    uv_timer_start(&w->grace, w_on_grace, (uint64_t)w->cfg->shutdown_grace_ms, 0);
    w_check_exit(w);
}

static void w_on_signal(uv_signal_t *s, int signum) {
    (void)signum;
    worker_drain(s->data);
}

/* Runs after each loop iteration: a stored result may complete the drain. */
static void w_on_check(uv_check_t *c) { w_check_exit(c->data); }

/* ---- set-up ------------------------------------------------------------------------- */

int worker_init(worker *w, uv_loop_t *loop, config *cfg, const char *id) {
    char err[256];
    memset(w, 0, sizeof *w);
    w->loop = loop;
    w->cfg = cfg;
    w->id = xstrdup(id);
    if (redis_target_parse(cfg->redis_url, &w->redis, err, sizeof err) != 0) {
        log_error("bad_redis_url", "error=%s", log_quote(err));
        goto fail;
    }
    w->tok = json_tokener_new();
    /* libcurl limits connections per host for the whole multi handle, so
     * the largest max_connections of the providers applies to every host. */
    long max_host = 0;
    for (int i = 0; i < cfg->nproviders; i++)
        if (cfg->providers[i].max_connections > max_host) max_host = cfg->providers[i].max_connections;
    w->http = http_new(loop, cfg->concurrency + 16, max_host, cfg->concurrency,
                      upstream_http_done);
    if (!w->http) {
        log_error("curl_init_failed", "reason=curl_multi_init");
        goto fail;
    }
    w->cmd = rconn_new(loop, &w->redis, "cmd", w_on_cmd_state, w);
    w->scripts[WS_FETCH] = rconn_add_script(w->cmd, scripts_fetch);
    w->scripts[WS_START] = rconn_add_script(w->cmd, scripts_start);
    w->scripts[WS_FINISH] = rconn_add_script(w->cmd, scripts_finish);
    w->scripts[WS_REQUEUE] = rconn_add_script(w->cmd, scripts_requeue);
    w->scripts[WS_RATELIMIT] = rconn_add_script(w->cmd, scripts_ratelimit);
    w->scripts[WS_DEREGISTER] = rconn_add_script(w->cmd, scripts_deregister);
    w->control = rconn_new(loop, &w->redis, "control", w_on_control_state, w);
    w->waiters = xcalloc((size_t)cfg->nqueues, sizeof *w->waiters);
    w->waiting = xcalloc((size_t)cfg->nqueues, sizeof *w->waiting);
    w->crashes_key = keys_crashes(cfg->prefix);
    w->queue_keys = xcalloc((size_t)cfg->nqueues, sizeof *w->queue_keys);
    w->proc_keys = xcalloc((size_t)cfg->nqueues, sizeof *w->proc_keys);
    for (int i = 0; i < cfg->nqueues; i++) {
        w->queue_keys[i] = keys_queue(cfg->prefix, cfg->queues[i]);
        w->proc_keys[i] = keys_processing(cfg->prefix, id, cfg->queues[i]);
        w->waiters[i] = rconn_new(loop, &w->redis, "wait", w_on_waiter_state, w);
    }
    uv_timer_init(loop, &w->heartbeat);
    w->heartbeat.data = w;
    uv_timer_init(loop, &w->grace);
    w->grace.data = w;
    uv_timer_init(loop, &w->fetch_retry);
    w->fetch_retry.data = w;
    uv_signal_init(loop, &w->sigterm);
    w->sigterm.data = w;
    uv_signal_init(loop, &w->sigint);
    w->sigint.data = w;
    uv_check_init(loop, &w->check);
    w->check.data = w;
    return 0;

fail: /* nothing with a uv handle or a connection exists yet */
    if (w->tok) json_tokener_free(w->tok);
    redis_target_free(&w->redis);
    free(w->id);
    memset(w, 0, sizeof *w);
    return -1;
}

void worker_start(worker *w) {
    log_info("worker_start", "id=%s concurrency=%d queues=%d", log_quote(w->id),
             w->cfg->concurrency, w->cfg->nqueues);
    rconn_start(w->cmd);
    rconn_start(w->control);
    for (int i = 0; i < w->cfg->nqueues; i++) rconn_start(w->waiters[i]);
    uv_timer_start(&w->heartbeat, w_on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
    uv_signal_start(&w->sigterm, w_on_signal, SIGTERM);
    if (!w->supervised) uv_signal_start(&w->sigint, w_on_signal, SIGINT);
    uv_check_start(&w->check, w_on_check);
}

void worker_close(worker *w) {
    while (w->runs) jobrun_abort(w->runs);
    rconn_free(w->cmd);
    rconn_free(w->control);
    for (int i = 0; i < w->cfg->nqueues; i++) {
        rconn_free(w->waiters[i]);
        free(w->queue_keys[i]);
        free(w->proc_keys[i]);
    }
    free(w->waiters);
    free(w->waiting);
    free(w->queue_keys);
    free(w->proc_keys);
    free(w->crashes_key);
    http_free(w->http);
    uv_close((uv_handle_t *)&w->heartbeat, NULL);
    uv_close((uv_handle_t *)&w->grace, NULL);
    uv_close((uv_handle_t *)&w->fetch_retry, NULL);
    uv_close((uv_handle_t *)&w->sigterm, NULL);
    uv_close((uv_handle_t *)&w->sigint, NULL);
    uv_close((uv_handle_t *)&w->check, NULL);
}

void worker_free(worker *w) {
    json_tokener_free(w->tok);
    redis_target_free(&w->redis);
    free(w->id);
}

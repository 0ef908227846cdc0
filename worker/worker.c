/* worker.c — a worker's connections, fetching, running list, cancellation,
 * heartbeat and drain; see worker.h for the design of the fetch.
 *
 * Fetch cycle. Whenever a slot may have become free (start, a job ended, a
 * wake-up message came, the command connection came back), worker_maybe_fetch()
 * sends one FETCH asking for as many jobs as there are free slots (at most
 * FETCH_BATCH). Only one FETCH is outstanding at a time, which batches
 * naturally under load. When FETCH returns fewer jobs than asked, the queues
 * were empty: the worker turns on client tracking of its queues and sleeps
 * until a change to one of them wakes it (worker.h, `wake`).
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
#include "worker/metrics.h"
#include "worker/report.h" /* issue 9: status lines to chatqd */
#include "worker/upstream.h"

#define FETCH_BATCH 128
#define HEARTBEAT_MS 3000
#define HEARTBEAT_TTL_MS 10000
#define POLL_MS 500 /* an idle worker's fetches when Redis has no client tracking */

static void w_check_exit(worker *w);

/* ---- fetching --------------------------------------------------------------- */

static void w_idle(worker *w);
static void w_quiet(worker *w);

static void w_resync(worker *w);

/* A FETCH failed with an error (Redis out of memory, read-only, a script
 * error half way): what it moved may sit in our processing lists unseen, and
 * nothing else would ask again. Resync, and fetch again in a second. */
static void w_on_fetch_retry(uv_timer_t *t) {
    worker *w = t->data;
    w_resync(w);
    worker_maybe_fetch(w);
}

/* The jobs of one START call, for its answer. */
typedef struct w_starting {
    jobrun **jobs;
    int n;
} w_starting;

static void w_on_started(rconn *rc, redisReply *reply, void *priv) {
    w_starting *st = priv;
    (void)rc;
    size_t want = (size_t)st->n * SCRIPTS_START_REPLY;
    int ok = reply->type == REDIS_REPLY_ARRAY && reply->elements == want;
    if (!ok)
        log_error("start_failed", "jobs=%d error=%s", st->n,
                  log_quote(reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply"));
    for (int i = 0; i < st->n; i++)
        jobrun_started(st->jobs[i], ok ? reply->element + (size_t)i * SCRIPTS_START_REPLY : NULL);
    free(st->jobs);
    free(st);
}

/* Starts the jobs of a FETCH: each is parsed, and all of them claim their
 * ids in one START call. */
static void w_start_jobs(worker *w, redisReply *reply) {
    scripts_batch b = {0};
    w_starting *st = xcalloc(1, sizeof *st);
    st->jobs = xcalloc(reply->elements / 2 + 1, sizeof *st->jobs);
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        int q = (int)reply->element[i]->integer - 1;
        redisReply *j = reply->element[i + 1];
        if (q < 0 || q >= w->cfg->nqueues || j->type != REDIS_REPLY_STRING) continue;
        jobrun *jr = jobrun_new(w, j->str, j->len, q);
        if (jobrun_start_add(jr, &b)) st->jobs[st->n++] = jr;
    }
    if (st->n > 0) {
        rargs a = {0};
        scripts_start_args(&b, w->requeued_key, &a);
        rconn_eval_reliable(w->cmd, w->scripts[WS_START], w_on_started, st, a.argc, a.argv, a.lens);
        rargs_free(&a);
    } else {
        free(st->jobs);
        free(st);
    }
    scripts_batch_free(&b);
}

static void w_on_fetch(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    long asked = (long)(intptr_t)priv;
    if (!reply) { /* connection lost: the resync after reconnect handles it */
        w->fetching = 0;
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY) {
        log_error("fetch_failed", "error=%s",
                  log_quote(reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply"));
        w->fetching = 0;
        uv_timer_start(&w->fetch_retry, w_on_fetch_retry, 1000, 0);
        return;
    }
    long got = (long)reply->elements / 2;
    /* `fetching` stays set while the jobs start: one that ends at once
     * (invalid) must not send another FETCH sized before the rest started */
    w_start_jobs(w, reply);
    w->fetching = 0;
    if (got < asked && w->woken) {
        /* a wake-up came while this FETCH was on its way: the job it was
         * for may have been pushed after the FETCH ran */
        worker_maybe_fetch(w);
    } else if (got < asked) {
        /* (a FINISH still on its way is waited for by the drain) */
        if (w->quarantine && w->nruns == 0 && !w->draining) {
            log_info("quarantine_empty", "action=exit");
            worker_drain(w);
            return;
        }
        w_idle(w);
    } else {
        w_quiet(w);
        worker_maybe_fetch(w);
    }
}

/* A queue changed (or tracking was just turned on): fetch, or fetch again
 * once the FETCH on its way has answered. */
static void w_woken(worker *w) {
    w->woken = 1;
    worker_maybe_fetch(w);
}

void worker_maybe_fetch(worker *w) {
    if (w->draining || w->fetching || !rconn_ready(w->cmd)) return;
    int free_slots = w->cfg->concurrency - w->nruns;
    if (free_slots <= 0) return;
    long n = free_slots < FETCH_BATCH ? free_slots : FETCH_BATCH;
    scripts_fetch_call call = {
        .queue_keys = w->queue_keys,
        .processing_keys = w->proc_keys,
        .nqueues = w->cfg->nqueues,
        .want = n,
        .max_job_bytes = w->cfg->max_job_bytes,
        .excerpt_bytes = SCRIPTS_EXCERPT_BYTES,
    };
    rargs a = {0};
    rargs_adds(&a, "EVALSHA");
    rargs_adds(&a, rconn_script_sha(w->cmd, w->scripts[WS_FETCH]));
    scripts_fetch_args(&call, &a);
    if (rconn_send(w->cmd, w_on_fetch, (void *)(intptr_t)n, a.argc, a.argv, a.lens) == 0) {
        w->fetching = 1;
        w->woken = 0;
    }
    rargs_free(&a);
}

/* ---- waking up when a job arrives --------------------------------------------------- */

/* Any change to a queue of ours (a producer's LPUSH): fetch. */
static void w_on_invalidate(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    (void)priv;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
    redisReply *kind = reply->element[0];
    if (kind->type != REDIS_REPLY_STRING) return;
    if (strcmp(kind->str, "subscribe") == 0) {
        /* Only now may cmd redirect to us: Redis drops invalidation
         * messages for a connection that is not subscribed yet. */
        w->wake_id = w->wake_conn_id;
        w->tracking = 0; /* a redirect to an older connection is worth nothing */
        w_idle(w);
    } else if (strcmp(kind->str, "message") == 0) {
        w_woken(w);
    }
}

static void w_on_tracking(rconn *rc, redisReply *reply, void *priv);

static void w_on_wake_id(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    (void)priv;
    if (!reply) return;
    if (reply->type != REDIS_REPLY_INTEGER) { /* no CLIENT ID: no tracking either */
        w_on_tracking(w->cmd, reply, NULL);
        return;
    }
    w->wake_conn_id = reply->integer;
    const char *a[] = {"SUBSCRIBE", "__redis__:invalidate"};
    size_t l[] = {9, 20};
    rconn_send(rc, w_on_invalidate, NULL, 2, a, l);
}

static void w_on_poll(uv_timer_t *t) { worker_maybe_fetch(t->data); }

static void w_on_tracking(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    (void)priv;
    if (!reply || reply->type != REDIS_REPLY_ERROR) return;
    /* No client tracking (an ACL that forbids CLIENT, say): an idle worker
     * asks again every POLL_MS instead. */
    if (!w->tracking_failed)
        log_warn("tracking_failed", "error=%s action=poll every_ms=%d", log_quote(reply->str),
                 POLL_MS);
    w->tracking_failed = 1;
    w->tracking = 0;
    w_idle(w);
}

/* 1 when queue key i need not be tracked: another one is a prefix of it
 * (Redis refuses overlapping prefixes; the shorter one covers it). */
static int w_prefix_covered(const worker *w, int i) {
    const char *k = w->queue_keys[i];
    for (int j = 0; j < w->cfg->nqueues; j++) {
        const char *o = w->queue_keys[j];
        size_t n = strlen(o);
        if (j != i && strncmp(k, o, n) == 0 && (strlen(k) > n || j < i)) return 1;
    }
    return 0;
}

/* Asks Redis to tell the wake connection about every change to our queues
 * (client-side caching's broadcast mode: a message naming the key, never
 * its value), then fetches once more: a job pushed before the tracking took
 * effect is seen by that fetch. Only an idle worker is told: a busy one
 * turns the tracking off (w_quiet), so the LMOVEs of other workers under
 * load do not flood it. Tracking is turned off first: after a reconnect of
 * wake, cmd may still be tracking for the connection that is gone. (A
 * quarantine worker has no waking up: it exits once the quarantine is
 * empty.) */
static void w_idle(worker *w) {
    if (w->draining || w->quarantine || w->tracking || !rconn_ready(w->cmd)) return;
    if (w->tracking_failed) {
        uv_timer_start(&w->poll, w_on_poll, POLL_MS, 0);
        return;
    }
    if (w->wake_id <= 0) return;
    const char *off[] = {"CLIENT", "TRACKING", "OFF"};
    size_t offl[] = {6, 8, 3};
    rargs a = {0};
    rargs_adds(&a, "CLIENT");
    rargs_adds(&a, "TRACKING");
    rargs_adds(&a, "ON");
    rargs_adds(&a, "REDIRECT");
    rargs_addll(&a, w->wake_id);
    rargs_adds(&a, "BCAST");
    rargs_adds(&a, "NOLOOP");
    for (int i = 0; i < w->cfg->nqueues; i++) {
        if (w_prefix_covered(w, i)) continue;
        rargs_adds(&a, "PREFIX");
        rargs_adds(&a, w->queue_keys[i]);
    }
    if (rconn_send(w->cmd, NULL, NULL, 3, off, offl) == 0 &&
        rconn_send(w->cmd, w_on_tracking, NULL, a.argc, a.argv, a.lens) == 0) {
        w->tracking = 1;
        w_woken(w); /* a job pushed before the tracking took effect */
    }
    rargs_free(&a);
}

/* The worker is busy: no need to hear about the queues. */
static void w_quiet(worker *w) {
    if (!w->tracking) return;
    const char *a[] = {"CLIENT", "TRACKING", "OFF"};
    size_t l[] = {6, 8, 3};
    rconn_send(w->cmd, w_on_tracking, NULL, 3, a, l);
    w->tracking = 0;
}

static void w_on_wake_state(rconn *rc, int ready, void *ud) {
    worker *w = ud;
    w->wake_id = 0;
    if (!ready) return;
    const char *a[] = {"CLIENT", "ID"};
    size_t l[] = {6, 2};
    rconn_send(rc, w_on_wake_id, NULL, 2, a, l);
}

/* ---- resync after a reconnect ------------------------------------------------- */

static void w_on_resync(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    int q = (int)(intptr_t)priv;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) return;
    /* Each held job of this queue matches one entry, whether it runs or its
     * FINISH is on its way; the rest are orphans. */
    char *matched = xcalloc(reply->elements ? reply->elements : 1, 1);
    jobrun *lists[] = {w->runs, w->ending};
    for (int l = 0; l < 2; l++) {
        for (jobrun *jr = lists[l]; jr; jr = jr->next) {
            if (jr->queue != q) continue;
            for (size_t i = 0; i < reply->elements; i++) {
                redisReply *e = reply->element[i];
                if (!matched[i] && e->len == jr->raw_len &&
                    memcmp(e->str, jr->raw, e->len) == 0) {
                    matched[i] = 1;
                    break;
                }
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
            .requeued_key = w->requeued_key,
            .worker_id = w->id,
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
    w->tracking = 0; /* client tracking is a connection's: gone with it */
    if (!ready) return;
    /* Heartbeat first: a supervisor that sees us registered must also see
     * us alive, or it would recover the jobs of a live worker. */
    w_heartbeat(w);
    w_register(w);
    if (w->cmd_was_ready) metrics_redis_reconnect();
    if (w->cmd_was_ready) w_resync(w);
    w->cmd_was_ready = 1;
    worker_maybe_fetch(w);
    w_check_exit(w);
    report_ready(); /* chatqd resets its restart backoff */
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
    /* anyone can publish: a message with a NUL is no id (as a C string it
     * would read as the id before the NUL, and cancel that job) */
    char id[160];
    if (msg->len >= sizeof id || memchr(msg->str, '\0', msg->len)) return;
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
    if (w->finish.n > 0 || rconn_pending(w->cmd) > 0) return;
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

/* Unlinks jr from the list whose head is *head. */
static void w_unlink(jobrun **head, jobrun *jr) {
    if (jr->prev)
        jr->prev->next = jr->next;
    else
        *head = jr->next;
    if (jr->next) jr->next->prev = jr->prev;
    jr->prev = jr->next = NULL;
}

void worker_run_remove(worker *w, jobrun *jr) {
    w_unlink(&w->runs, jr);
    w->nruns--;
    worker_maybe_fetch(w);
}

void worker_run_end(worker *w, jobrun *jr) {
    w_unlink(&w->runs, jr);
    w->nruns--;
    jr->next = w->ending;
    if (w->ending) w->ending->prev = jr;
    w->ending = jr;
    w->nending++;
    worker_maybe_fetch(w);
}

void worker_run_gone(worker *w, jobrun *jr) {
    w_unlink(&w->ending, jr);
    w->nending--;
    /* a job's end is stored: chatqd counts this worker as making progress */
    report_progress(w->done + w->failed + w->duplicates);
}

/* ---- FINISH, many jobs a call ----------------------------------------------------- */

/* The jobs of one FINISH call, for its answer. */
typedef struct w_finishing {
    jobrun **jobs;
    int n;
} w_finishing;

static void w_on_finished(rconn *rc, redisReply *reply, void *priv) {
    w_finishing *f = priv;
    (void)rc;
    int ok = reply->type == REDIS_REPLY_ARRAY && reply->elements == (size_t)f->n;
    for (int i = 0; i < f->n; i++) jobrun_finished(f->jobs[i], ok ? reply->element[i] : reply);
    free(f->jobs);
    free(f);
}

void worker_finish(worker *w, jobrun *jr, const scripts_finish_call *c) {
    if (w->finish.n == w->finishing_cap) {
        w->finishing_cap = w->finishing_cap ? 2 * w->finishing_cap : 16;
        w->finishing = xrealloc(w->finishing, sizeof *w->finishing * (size_t)w->finishing_cap);
    }
    w->finishing[w->finish.n] = jr;
    scripts_finish_add(&w->finish, c);
}

void worker_events_pending(worker *w, jobrun *jr) {
    if (w->nevq == w->evq_cap) {
        w->evq_cap = w->evq_cap ? 2 * w->evq_cap : 16;
        w->evq = xrealloc(w->evq, sizeof *w->evq * (size_t)w->evq_cap);
    }
    w->evq[w->nevq++] = jr;
}

void worker_events_forget(worker *w, jobrun *jr) {
    for (int i = 0; i < w->nevq; i++)
        if (w->evq[i] == jr) w->evq[i] = NULL;
}

/* Sends the stream events, then the FINISHes, of this loop iteration: the
 * FINISHes in one call. */
static void w_flush(worker *w) {
    for (int i = 0; i < w->nevq; i++)
        if (w->evq[i]) jobrun_flush_events(w->evq[i]);
    w->nevq = 0;
    if (w->finish.n == 0) return;
    scripts_finish_shared shared = {.crashes_key = w->crashes_key,
                                    .requeued_key = w->requeued_key,
                                    .dead_key = w->dead_key,
                                    .default_ttl_s = w->cfg->result_ttl_s};
    w_finishing *f = xmalloc(sizeof *f);
    f->n = w->finish.n;
    f->jobs = xmalloc(sizeof *f->jobs * (size_t)f->n);
    memcpy(f->jobs, w->finishing, sizeof *f->jobs * (size_t)f->n);
    rargs a = {0};
    scripts_finish_args(&w->finish, &shared, &a);
    rconn_eval_reliable(w->cmd, w->scripts[WS_FINISH], w_on_finished, f, a.argc, a.argv, a.lens);
    rargs_free(&a);
    scripts_batch_free(&w->finish);
}

static void w_on_requeued(rconn *rc, redisReply *reply, void *priv) {
    worker *w = rconn_data(rc);
    (void)priv;
    if (reply->type == REDIS_REPLY_INTEGER)
        log_info("worker_requeued", "jobs=%lld", reply->integer);
    else if (reply->type == REDIS_REPLY_ERROR) /* the jobs stay in the processing lists */
        log_error("requeue_failed", "error=%s", log_quote(reply->str));
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
        .requeued_key = w->requeued_key,
        .worker_id = w->id,
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

/* Runs after each loop iteration's I/O: sends what ended in it, and a stored
 * result may complete the drain. */
static void w_on_check(uv_check_t *c) {
    w_flush(c->data);
    w_check_exit(c->data);
}

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
    /* deeper by one than the answers' limit: json-c counts the scalar in
     * the innermost array as a level (common/jsonparse.h) */
    w->tok = json_tokener_new_ex(UPSTREAM_MAX_DEPTH + 1);
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
    w->scripts[WS_DROP] = rconn_add_script(w->cmd, scripts_drop);
    w->control = rconn_new(loop, &w->redis, "control", w_on_control_state, w);
    w->wake = rconn_new(loop, &w->redis, "wake", w_on_wake_state, w);
    w->crashes_key = keys_crashes(cfg->prefix);
    w->requeued_key = keys_requeued(cfg->prefix);
    w->dead_key = keys_dead(cfg->prefix);
    w->quarantine = cfg->quarantine;
    w->queue_keys = xcalloc((size_t)cfg->nqueues, sizeof *w->queue_keys);
    w->proc_keys = xcalloc((size_t)cfg->nqueues, sizeof *w->proc_keys);
    for (int i = 0; i < cfg->nqueues; i++) {
        w->queue_keys[i] = w->quarantine ? keys_quarantine(cfg->prefix, cfg->queues[i])
                                         : keys_queue(cfg->prefix, cfg->queues[i]);
        w->proc_keys[i] = keys_processing(cfg->prefix, id, cfg->queues[i]);
    }
    uv_timer_init(loop, &w->heartbeat);
    w->heartbeat.data = w;
    uv_timer_init(loop, &w->grace);
    w->grace.data = w;
    uv_timer_init(loop, &w->fetch_retry);
    w->fetch_retry.data = w;
    uv_timer_init(loop, &w->poll);
    w->poll.data = w;
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
    rconn_start(w->wake);
    uv_timer_start(&w->heartbeat, w_on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
    uv_signal_start(&w->sigterm, w_on_signal, SIGTERM);
    if (!w->supervised) uv_signal_start(&w->sigint, w_on_signal, SIGINT);
    uv_check_start(&w->check, w_on_check);
    metrics_start(w);
}

void worker_close(worker *w) {
    metrics_stop(); /* the last counts, before anything is torn down */
    while (w->runs) jobrun_abort(w->runs);
    rconn_free(w->cmd);
    rconn_free(w->control);
    for (int i = 0; i < w->cfg->nqueues; i++) {
        free(w->queue_keys[i]);
        free(w->proc_keys[i]);
    }
    rconn_free(w->wake);
    free(w->queue_keys);
    free(w->proc_keys);
    free(w->crashes_key);
    free(w->requeued_key);
    free(w->dead_key);
    scripts_batch_free(&w->finish);
    free(w->finishing);
    free(w->evq);
    http_free(w->http);
    uv_close((uv_handle_t *)&w->heartbeat, NULL);
    uv_close((uv_handle_t *)&w->grace, NULL);
    uv_close((uv_handle_t *)&w->fetch_retry, NULL);
    uv_close((uv_handle_t *)&w->poll, NULL);
    uv_close((uv_handle_t *)&w->sigterm, NULL);
    uv_close((uv_handle_t *)&w->sigint, NULL);
    uv_close((uv_handle_t *)&w->check, NULL);
}

void worker_free(worker *w) {
    json_tokener_free(w->tok);
    redis_target_free(&w->redis);
    free(w->id);
}

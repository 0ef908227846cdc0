/* metrics.h — a worker's Prometheus metrics: counted here, sent to chatqd,
 * which adds them up over its workers and serves them (daemon/metrics.h).
 *
 * The job code calls one function where something countable happens
 * (metrics_job_started() and the rest below). Each updates a series in this
 * process's memory: no I/O, and no allocation once the series exists.
 * Every METRICS_SEND_MS a timer sends, over the status channel
 * (worker/report.h), one line per series whose value changed since it was
 * last sent; every METRICS_FULL_EVERY-th time, and at exit (metrics_stop),
 * one line per series:
 *     metric <value> <name>{<labels>}
 * e.g. `metric 12 chatq_jobs_started_total{queue="default"}`. Values are
 * cumulative since the worker started (counters; histogram buckets, sums
 * and counts) or current (gauges), so a lost line costs time, never a
 * count. The series is written as in the Prometheus text format, label
 * values escaped, and always with braces, so a line cut short is never a
 * valid series (chatqd checks each one).
 *
 * The series (names all start with chatq_; docs/operations.md lists them):
 *   jobs_started_total{queue}              a job taken from a queue
 *   jobs_finished_total{queue,status,code} a job ended: succeeded (code ""),
 *                                          failed or cancelled
 *   jobs_duplicate_total{queue}            a job dropped as a duplicate
 *   jobs_in_flight{}                       gauge: jobs this worker holds
 *   upstream_attempts_total{provider}      HTTP requests sent
 *   retries_total{code}                    failed attempts followed by another
 *   upstream_duration_seconds{provider}    histogram: request sent to exchange
 *                                          over (headers and whole answer)
 *   time_to_first_token_seconds{provider}  histogram: request sent to the first
 *                                          chunk (or a plain answer's first byte)
 *   tokens_total{tenant,model,kind}        prompt and completion tokens of
 *                                          ended jobs (kind "prompt"/"completion")
 *   ratelimit_waits_total{provider}        answers "wait" from the shared limits
 *   ratelimit_wait_seconds_total{provider} time spent getting capacity
 *   redis_reconnects_total{process}        the command connection came back
 *   redis_outbox_depth{process}            gauge: reliable commands unanswered
 * (process="worker" for the last two; chatqd adds its own.)
 *
 * Label values that jobs choose (tenant, model) are cut to
 * METRICS_LABEL_MAX bytes, and at most METRICS_MAX_PAIRS tenant|model pairs
 * get series of their own in a worker: the tokens of further pairs count
 * under tenant="_other",model="_other". Queue, provider and code values come
 * from the configuration and the code: they are few.
 *
 * State is per process (static), like the status channel's. */
#ifndef CHATQ_WORKER_METRICS_H
#define CHATQ_WORKER_METRICS_H

#include <stddef.h>

#include "common/job.h"
#include "common/usage.h"
#include "worker/worker.h"

#define METRICS_SEND_MS 1000
#define METRICS_FULL_EVERY 10
#define METRICS_LABEL_MAX 128
#define METRICS_MAX_PAIRS 1000

/* Starts the timer that sends the metrics on w's loop; w's jobs in flight
 * and command outbox are the gauges. */
void metrics_start(worker *w);
/* Sends every series one last time and closes the timer (run the loop
 * afterwards for its close callback). A no-op when not started. */
void metrics_stop(void);

/* ---- what the job code counts ---- */
void metrics_job_started(const char *queue);
void metrics_job_duplicate(const char *queue);
/* code: the error code, NULL on success; tenant NULL counts as "";
 * usage: the job's usage counts (usage.h), its tokens are added. */
void metrics_job_finished(const char *queue, job_status status, const char *code,
                          const char *tenant, const char *model,
                          const long long usage[USAGE_NMETRICS]);
/* A request of the job `key` (its jobrun) went to provider: counted, and
 * its time noted for metrics_attempt_done(). */
void metrics_attempt_sent(const void *key, const char *provider);
/* The exchange of key's request is over; first_output_ms: the unix ms of
 * its first output, 0 = none (upstream_first_output_ms). */
void metrics_attempt_done(const void *key, const char *provider, long long first_output_ms);
/* key's jobrun is freed: forget its request's time, if still noted. */
void metrics_forget(const void *key);
/* A failed attempt with error `code` is followed by another. */
void metrics_retry(const char *code);
/* The shared rate limits answered a job at provider: wait_ms > 0 = wait
 * that long (counted as a wait), else the wait is over (granted, or given
 * up), having lasted waited_ms. */
void metrics_rate_reply(const char *provider, long long wait_ms, long long waited_ms);
/* The command connection to Redis is ready again after a loss. */
void metrics_redis_reconnect(void);

/* ---- for tests ---- */
/* The lines a send would write now (full: every series), as malloc'd text
 * (*len bytes); the series are then counted as sent. */
char *metrics_snapshot(int full, size_t *len);
/* Forgets every series and noted request. */
void metrics_reset(void);

#endif

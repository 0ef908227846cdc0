/* metrics.h — chatqd's Prometheus endpoint: the registry in which its
 * workers' metric lines add up, chatqd's own series, and the HTTP server
 * that serves them all (GET /metrics, text format 0.0.4, libmicrohttpd).
 *
 * Registry. Each series has one value: the sum over every worker process
 * this chatqd ever ran, plus chatqd's own part. A worker process has a
 * metrics_proc, which remembers the last value the worker sent for each of
 * its series; a line "metric V SERIES" (worker/metrics.h) adds V - last to
 * the series. So when a worker exits, its counts stay in the sums (and its
 * gauges are taken out: metrics_proc_end), and its replacement, starting
 * from zero, adds on: counters never go back across restarts. A counter
 * only ever moves up: a smaller V (a line cut short) is ignored. A line is
 * used only when its series is well formed and its family known
 * (metrics_families, which gives each its type and HELP text); others are
 * skipped, so an older chatqd ignores the new series of a newer worker.
 *
 * Serving. The HTTP server runs in libmicrohttpd's own thread
 * (MHD_USE_INTERNAL_POLLING_THREAD); the registry is touched only on the
 * loop's thread. Every METRICS_RENDER_MS, when something changed, the loop
 * renders the whole exposition text and swaps it in under a mutex; a scrape
 * copies the latest text under the same mutex. So the registry needs no
 * lock, a scrape never waits for the loop, the loop never waits for a slow
 * client (the mutex guards a pointer swap and a copy), and a scrape sees
 * the registry at most METRICS_RENDER_MS late (which is itself at most
 * METRICS_SEND_MS behind the workers).
 *
 * Bounds: at most METRICS_MAX_SERIES series; lines that would add more are
 * dropped and counted (chatq_metrics_series_dropped_total).
 *
 * Every function takes m == NULL (metrics off) and then does nothing, so
 * callers need no test. Ownership: metrics_new() allocates; metrics_close()
 * stops the server and closes the timer, whose close callback frees the
 * rest (run the loop afterwards). */
#ifndef CHATQ_DAEMON_METRICS_H
#define CHATQ_DAEMON_METRICS_H

#include <stddef.h>
#include <uv.h>

#define METRICS_RENDER_MS 250
#define METRICS_MAX_SERIES 100000

typedef struct metrics metrics;
typedef struct metrics_proc metrics_proc;

/* Listens on addr ("HOST:PORT", config_metrics_addr) and serves /metrics,
 * rendering on loop's thread. Returns the registry, or NULL with a message
 * in err ("cannot listen on ADDR: Address already in use"). With addr NULL:
 * a registry without a server or timer (tests). */
metrics *metrics_new(uv_loop_t *loop, const char *addr, char *err, size_t errlen);
void metrics_close(metrics *m);

/* chatqd's own series, written as in the text format ("name{l=\"v\"}"):
 * a counter add, a gauge set. */
void metrics_add(metrics *m, const char *series, double d);
void metrics_set(metrics *m, const char *series, double v);

/* A worker process's part: one per process, from its start to its end. */
metrics_proc *metrics_proc_new(metrics *m);
/* A status line "metric V SERIES" (the whole line) from that worker;
 * returns 0, or -1 when it was skipped (malformed, unknown family, full). */
int metrics_proc_line(metrics *m, metrics_proc *mp, const char *line);
/* The process ended: its gauges leave the sums, its counts stay; mp is
 * freed. */
void metrics_proc_end(metrics *m, metrics_proc *mp);

/* The exposition text of the registry now (malloc'd, *len bytes). */
char *metrics_render(metrics *m, size_t *len);

#endif

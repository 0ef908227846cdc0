/* report.h — a worker's status channel to its chatqd.
 *
 * chatqd starts each worker with one end of a socket pair as an extra file
 * descriptor (`--report-fd 3`) and reads from the other end. The worker
 * writes newline-terminated text lines on it, one event per line, the first
 * word naming the event:
 *   ready              its command connection to Redis is up, scripts loaded
 *   progress N         N jobs ended so far in this process
 *   crash SHA1|-       it is dying of a fault signal, while running the job
 *                      whose text has this SHA1 (- = no job code was running)
 *   metric V SERIES    the value V of one Prometheus series (worker/metrics.h)
 * A reader ignores lines it does not know, so new events can be added
 * without breaking an older chatqd. No line is longer than REPORT_LINE_MAX
 * bytes, newline included.
 *
 * chatqd uses the lines to tell a crash from an outside kill and to name the
 * job that caused it (docs/operations.md, "How a death is judged"), to reset
 * its restart backoff once a replacement is ready, and to tell a crash loop
 * (deaths without any job finished) from a worker killed again and again
 * while it works.
 *
 * Writes never block and never raise SIGPIPE. The channel is a byte stream,
 * so a line the kernel took only in part must be finished before any other
 * is written: its rest waits in a small queue (REPORT_QUEUE_MAX bytes), as
 * do the lines that must not be lost lightly ("ready", "progress") while
 * something waits; each later call first pushes what waits. What does not
 * fit (a supervisor that stopped reading) is dropped: a metric line at
 * once (the next snapshot carries its value again), other lines once the
 * queue is full. Without a channel (a worker run by hand: report_init(-1))
 * every call is a no-op. */
#ifndef CHATQ_REPORT_H
#define CHATQ_REPORT_H

#include <stddef.h>

#define REPORT_LINE_MAX 1024   /* the longest line, newline included, chatqd reads */
#define REPORT_QUEUE_MAX 8192  /* bytes waiting for the channel to take them */

/* Uses fd (from --report-fd N) as the channel; fd < 0: no channel. Returns 0,
 * or -1 when fd is not an open descriptor (then there is no channel). */
int report_init(int fd);

/* "ready\n": the worker is connected to Redis and has its scripts loaded. */
void report_ready(void);

/* "progress N\n": N jobs have ended in this process so far. Call it after
 * each job ends; lines are coalesced (the first at once, then at most one
 * every REPORT_PROGRESS_MS, carrying the latest count). */
void report_progress(long long finished);

/* Sends text[0..len), whole lines of at most REPORT_LINE_MAX bytes each,
 * as far as the channel takes them now (after what waits in the queue);
 * the rest is dropped, but a line the kernel took in part is finished
 * through the queue. len 0 only pushes what waits. Returns 1 when all of it
 * went (or there is no channel), 0 when some lines were dropped. */
int report_send_lines(const char *text, size_t len);

/* The job whose code runs now: the SHA1 of its text as 40 hex digits, or
 * NULL when none. Kept in a static buffer that the crash handler reads;
 * anything but 40 hex digits counts as NULL. */
void report_current(const char *sha1_hex);

/* On SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT: write "crash <sha1 or ->"
 * to the channel (async-signal-safe calls only, on an alternate stack so a
 * stack overflow is reported too; after a newline when the channel holds a
 * line cut short, which chatqd then skips as garbage), then restore the
 * default action and raise the signal again, so the process dies of it as
 * it would have.
 * A no-op without a channel. */
void report_install_crash_handler(void);

#endif

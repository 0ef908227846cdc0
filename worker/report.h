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
 * A reader ignores lines it does not know, so new events (metrics) can be
 * added without breaking an older chatqd.
 *
 * chatqd uses the lines to tell a crash from an outside kill and to name the
 * job that caused it (docs/operations.md, "How a death is judged"), to reset
 * its restart backoff once a replacement is ready, and to tell a crash loop
 * (deaths without any job finished) from a worker killed again and again
 * while it works.
 *
 * Writes never block and never raise SIGPIPE: a line that does not fit (a
 * supervisor that stopped reading) is dropped. Without a channel (a worker
 * run by hand: report_init(-1)) every call is a no-op. */
#ifndef CHATQ_REPORT_H
#define CHATQ_REPORT_H

/* Uses fd (from --report-fd N) as the channel; fd < 0: no channel. Returns 0,
 * or -1 when fd is not an open descriptor (then there is no channel). */
int report_init(int fd);

/* "ready\n": the worker is connected to Redis and has its scripts loaded. */
void report_ready(void);

/* "progress N\n": N jobs have ended in this process so far. Call it after
 * each job ends; lines are coalesced (the first at once, then at most one
 * every REPORT_PROGRESS_MS, carrying the latest count). */
void report_progress(long long finished);

/* The job whose code runs now: the SHA1 of its text as 40 hex digits, or
 * NULL when none. Kept in a static buffer that the crash handler reads;
 * anything but 40 hex digits counts as NULL. */
void report_current(const char *sha1_hex);

/* On SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT: write "crash <sha1 or ->"
 * to the channel (async-signal-safe calls only, on an alternate stack so a
 * stack overflow is reported too), then restore the default action and
 * raise the signal again, so the process dies of it as it would have.
 * A no-op without a channel. */
void report_install_crash_handler(void);

#endif

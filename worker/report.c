/* report.c — a worker's status lines to chatqd; see report.h.
 *
 * The crash handler runs in a signal handler and reads what the rest
 * writes, so nothing here locks or allocates: the channel is a plain
 * descriptor written with send(MSG_NOSIGNAL | MSG_DONTWAIT) (or write(2) on
 * a non-blocking pipe when the descriptor is not a socket), the queue is a
 * static array, and the current job's SHA1 lives in two static buffers.
 * report_current() fills the buffer not in use and then publishes its index
 * with an atomic store, so the crash handler, which loads the index once,
 * never reads a half-written SHA1.
 *
 * The queue (report_queue) holds bytes accepted but not written yet; it
 * only ever fills when the kernel took part of a line, so it starts with
 * the rest of that line. report_midline says the stream written so far ends
 * inside a line: the crash handler then starts with a newline, giving up
 * that line's rest, so that its own line arrives whole. */
#include "worker/report.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REPORT_PROGRESS_MS 100 /* at most one progress line per this many ms */
#define SHA1_HEX 40

static int report_fd = -1;
static int report_is_socket;
static char report_queue[REPORT_QUEUE_MAX]; /* accepted, not written yet */
static size_t report_queued;
static volatile sig_atomic_t report_midline; /* the stream ends inside a line */
static char report_job[2][SHA1_HEX];
static atomic_int report_job_idx = -1; /* which buffer holds the job; -1 none */
static long long report_sent = -1;     /* the last progress count sent */
static long long report_sent_ms;
static char report_altstack[65536];    /* for a crash by stack overflow */

/* Writes what the channel takes of data now, without blocking or raising
 * SIGPIPE (for a socket); returns the bytes written, 0 when none (a full
 * channel, or a supervisor gone: a lost line is not worth dying for).
 * Async-signal-safe. */
static size_t report_write(const char *data, size_t len) {
    ssize_t w = report_is_socket ? send(report_fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT)
                                 : write(report_fd, data, len);
    if (w <= 0) return 0;
    report_midline = data[w - 1] != '\n';
    return (size_t)w;
}

/* Writes what waits in the queue; returns 1 when nothing waits any more. */
static int report_flush(void) {
    if (report_queued == 0) return 1;
    size_t n = report_write(report_queue, report_queued);
    memmove(report_queue, report_queue + n, report_queued - n);
    report_queued -= n;
    return report_queued == 0;
}

/* Adds data behind what waits, if it fits; returns 1, or 0 (dropped). */
static int report_enqueue(const char *data, size_t len) {
    if (len > sizeof report_queue - report_queued) return 0;
    memcpy(report_queue + report_queued, data, len);
    report_queued += len;
    return 1;
}

/* After a write of the first n bytes of text: the rest of a line cut short
 * waits in the queue (which is empty then), or, should it not fit, a
 * newline that ends it as a garbled line chatqd skips. */
static void report_finish_line(const char *text, size_t len, size_t n) {
    if (n == 0 || text[n - 1] == '\n') return;
    const char *eol = memchr(text + n, '\n', len - n);
    size_t rest = eol ? (size_t)(eol - (text + n)) + 1 : len - n;
    if (!eol || !report_enqueue(text + n, rest)) report_enqueue("\n", 1);
}

/* A line that should not be lost lightly ("ready", "progress"): written
 * now, or queued behind what waits; dropped only when the queue is full.
 * Keeps errno. */
static void report_send(const char *line, size_t len) {
    if (report_fd < 0) return;
    int saved = errno;
    if (report_flush()) {
        size_t n = report_write(line, len);
        report_finish_line(line, len, n);
        if (n == 0) report_enqueue(line, len);
    } else {
        report_enqueue(line, len);
    }
    errno = saved;
}

int report_send_lines(const char *text, size_t len) {
    if (report_fd < 0) return 1;
    int saved = errno, all = report_flush();
    if (all && len > 0) {
        size_t n = report_write(text, len);
        report_finish_line(text, len, n);
        all = n == len;
    }
    errno = saved;
    return all;
}

int report_init(int fd) {
    report_fd = -1;
    if (fd < 0) return 0;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    int type;
    socklen_t tlen = sizeof type;
    report_is_socket = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0;
    /* A pipe has no MSG_DONTWAIT: make the descriptor itself non-blocking. */
    if (!report_is_socket && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -1;
    fcntl(fd, F_SETFD, FD_CLOEXEC); /* nothing this process starts may hold it open */
    report_fd = fd;
    return 0;
}

void report_ready(void) {
    static const char line[] = "ready\n";
    report_send(line, sizeof line - 1);
}

static long long report_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void report_progress(long long finished) {
    if (report_fd < 0 || finished == report_sent) return;
    long long now = report_now_ms();
    /* The first line goes at once (it is what tells chatqd "not a crash
     * loop"); later ones are spaced out, a job ending in between is carried
     * by the next line. */
    if (report_sent >= 0 && now - report_sent_ms < REPORT_PROGRESS_MS) return;
    char line[40];
    int n = snprintf(line, sizeof line, "progress %lld\n", finished);
    report_send(line, (size_t)n);
    report_sent = finished;
    report_sent_ms = now;
}

static int report_is_sha1(const char *s) {
    for (int i = 0; i < SHA1_HEX; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return s[SHA1_HEX] == '\0';
}

void report_current(const char *sha1_hex) {
    if (!sha1_hex || !report_is_sha1(sha1_hex)) {
        atomic_store(&report_job_idx, -1);
        return;
    }
    int next = atomic_load(&report_job_idx) == 0 ? 1 : 0;
    memcpy(report_job[next], sha1_hex, SHA1_HEX);
    atomic_store(&report_job_idx, next);
}

/* The fault handler: say which job ran, then die of the same signal. */
static void report_on_fault(int sig) {
    char line[9 + SHA1_HEX];
    size_t n = 0;
    if (report_midline) line[n++] = '\n'; /* ends a line cut short */
    memcpy(line + n, "crash ", 6);
    n += 6;
    int idx = atomic_load(&report_job_idx);
    if (idx == 0 || idx == 1) {
        for (int i = 0; i < SHA1_HEX; i++) line[n++] = report_job[idx][i];
    } else {
        line[n++] = '-';
    }
    line[n++] = '\n';
    report_write(line, n);
    /* SA_RESETHAND restored the default action already; the signal is
     * blocked while we run, so it is delivered (and kills us) on return. */
    signal(sig, SIG_DFL);
    raise(sig);
}

void report_install_crash_handler(void) {
    if (report_fd < 0) return;
    stack_t ss = {.ss_sp = report_altstack, .ss_size = sizeof report_altstack};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = report_on_fault;
    sa.sa_flags = SA_RESETHAND | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
}

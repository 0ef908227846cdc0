/* report.c — a worker's status lines to chatqd; see report.h.
 *
 * Everything here may run in a signal handler or be read by one, so it uses
 * no lock and no allocation: the channel is a plain descriptor written with
 * send(MSG_NOSIGNAL | MSG_DONTWAIT) (or write(2) on a non-blocking pipe when
 * the descriptor is not a socket), and the current job's SHA1 lives in two
 * static buffers. report_current() fills the buffer not in use and then
 * publishes its index with an atomic store, so the crash handler, which loads
 * the index once, never reads a half-written SHA1. */
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
static char report_job[2][SHA1_HEX];
static atomic_int report_job_idx = -1; /* which buffer holds the job; -1 none */
static long long report_sent = -1;     /* the last progress count sent */
static long long report_sent_ms;
static char report_altstack[65536];    /* for a crash by stack overflow */

/* Writes one whole line or nothing useful; never blocks, never raises
 * SIGPIPE (for a socket), keeps errno. Async-signal-safe. */
static void report_send(const char *line, size_t len) {
    int saved = errno;
    if (report_fd >= 0) {
        ssize_t w = report_is_socket ? send(report_fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT)
                                     : write(report_fd, line, len);
        (void)w; /* a lost line is not worth dying for */
    }
    errno = saved;
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
    char line[8 + SHA1_HEX] = "crash ";
    size_t n = 6;
    int idx = atomic_load(&report_job_idx);
    if (idx == 0 || idx == 1) {
        for (int i = 0; i < SHA1_HEX; i++) line[n++] = report_job[idx][i];
    } else {
        line[n++] = '-';
    }
    line[n++] = '\n';
    report_send(line, n);
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

/* test_report.c — worker/report.c: the lines a worker writes to chatqd,
 * and the crash handler, which must name the running job and then let the
 * process die of the same signal. Each case runs in a child process (the
 * module's state is static, and the crash case must die). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "worker/report.h"

#define SHA "0123456789abcdef0123456789abcdef01234567"

/* cmocka catches fault signals to report them: a child must die of them. */
static void default_signals(void) {
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL);
}

/* Runs fn in a child whose report channel is one end of a socket pair;
 * returns what the child wrote and its wait status. */
static char *run_child(void (*fn)(void), int *status) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        default_signals();
        if (report_init(sv[1]) != 0) _exit(90);
        fn();
        _exit(0);
    }
    close(sv[1]);
    static char out[4096];
    size_t n = 0;
    ssize_t r;
    while ((r = read(sv[0], out + n, sizeof out - 1 - n)) > 0) n += (size_t)r;
    out[n] = '\0';
    close(sv[0]);
    assert_int_equal(waitpid(pid, status, 0), pid);
    return out;
}

static void lines(void) {
    report_ready();
    report_progress(1);
    report_progress(2); /* coalesced: within REPORT_PROGRESS_MS of the first */
    report_progress(2);
    usleep(150 * 1000);
    report_progress(3);
}

static void test_lines(void **state) {
    (void)state;
    int st;
    char *out = run_child(lines, &st);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_string_equal(out, "ready\nprogress 1\nprogress 3\n");
}

static void crash_in_job(void) {
    report_install_crash_handler();
    report_current("ffffffffffffffffffffffffffffffffffffffff");
    report_current(SHA);
    abort();
}

static void crash_outside_job(void) {
    report_install_crash_handler();
    report_current(SHA);
    report_current(NULL);
    raise(SIGSEGV);
}

static void crash_bad_sha(void) {
    report_install_crash_handler();
    report_current("not-a-sha");
    volatile int zero = 0;
    raise(SIGFPE + zero);
}

static void test_crash_names_the_job_and_dies_of_it(void **state) {
    (void)state;
    int st;
    char *out = run_child(crash_in_job, &st);
    assert_string_equal(out, "crash " SHA "\n");
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    out = run_child(crash_outside_job, &st);
    assert_string_equal(out, "crash -\n");
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    out = run_child(crash_bad_sha, &st);
    assert_string_equal(out, "crash -\n");
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGFPE);
}

static void no_channel(void) {
    report_init(-1);
    report_install_crash_handler(); /* a no-op: the default action stays */
    report_ready();
    report_progress(5);
    report_current(SHA);
    raise(SIGBUS);
}

static void test_no_channel_is_a_no_op(void **state) {
    (void)state;
    int st;
    char *out = run_child(no_channel, &st);
    assert_string_equal(out, "");
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);
    assert_int_equal(report_init(1000), -1); /* not an open descriptor */
}

static void peer_gone(void) {
    /* the supervisor's end is closed: no SIGPIPE, no block */
    for (int i = 0; i < 1000; i++) report_ready();
}

static void test_closed_channel_does_not_kill(void **state) {
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[0]);
    pid_t pid = fork();
    if (pid == 0) {
        if (report_init(sv[1]) != 0) _exit(90);
        peer_gone();
        _exit(0);
    }
    close(sv[1]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A channel nobody reads for a while: lines the kernel took in part are
 * finished from the queue, a "ready" written meanwhile waits behind them,
 * and the reader, once it reads, gets only whole lines. */
static void fill_then_ready(int fd) {
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    static char batch[65536];
    size_t n = 0;
    for (int i = 0; n + 200 < sizeof batch; i++)
        n += (size_t)snprintf(batch + n, sizeof batch - n,
                              "metric %d chatq_jobs_started_total{queue=\"q%0*d\"}\n", i, 20 + i % 37, i);
    int batches = 0;
    while (report_send_lines(batch, n) && batches < 10000) batches++;
    report_ready(); /* waits in the queue */
    for (int i = 0; i < 500 && !report_send_lines(NULL, 0); i++) usleep(10 * 1000);
}

static void test_full_channel_keeps_lines_whole(void **state) {
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        if (report_init(sv[1]) != 0) _exit(90);
        fill_then_ready(sv[1]);
        _exit(0);
    }
    close(sv[1]);
    usleep(300 * 1000); /* the child fills the channel meanwhile */
    static char out[1 << 20];
    size_t n = 0;
    ssize_t r;
    while ((r = read(sv[0], out + n, sizeof out - 1 - n)) > 0) n += (size_t)r;
    out[n] = '\0';
    close(sv[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(n > 0 && out[n - 1] == '\n');
    int ready = 0, metric = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strcmp(line, "ready")) {
            ready++;
            continue;
        }
        int i, width, used = 0;
        assert_int_equal(sscanf(line, "metric %d chatq_jobs_started_total{queue=\"q%n", &i, &used), 1);
        assert_true(used > 0);
        width = 20 + i % 37;
        char want[128];
        snprintf(want, sizeof want, "metric %d chatq_jobs_started_total{queue=\"q%0*d\"}", i, width, i);
        assert_string_equal(line, want);
        metric++;
    }
    assert_int_equal(ready, 1);
    assert_true(metric > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_crash_names_the_job_and_dies_of_it),
        cmocka_unit_test(test_no_channel_is_a_no_op),
        cmocka_unit_test(test_closed_channel_does_not_kill),
        cmocka_unit_test(test_full_channel_keeps_lines_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_rconn.c — rconn.h: the RESP formatter (checked against hiredis' own
 * redisFormatCommandArgv()), the rargs argument vectors, rconn_send()'s
 * answer before the connection is ready, the classification of Redis errors,
 * and, against a fake Redis server on a loopback port (fake_* below), the
 * order of the reliable outbox after a transient error and after a
 * reconnect, the NOSCRIPT reload, and the close-on-exec flag of the socket.
 *
 * The fake server speaks just enough RESP: it reads arrays of bulk strings,
 * logs each command as its arguments joined by spaces, and answers with
 * what the test's `answer` function returns for it (raw RESP), or drops the
 * connection when that is NULL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <dirent.h>

#include "common/rconn.h"

/* Formats with rconn_format_command() and with hiredis, and compares. */
static void same_as_hiredis(int argc, const char **argv, const size_t *lens) {
    buf b = {0};
    char *want = NULL;
    int wlen = redisFormatCommandArgv(&want, argc, argv, lens);
    assert_true(wlen >= 0);
    rconn_format_command(&b, argc, argv, lens);
    assert_int_equal(b.len, (size_t)wlen);
    assert_memory_equal(b.data, want, (size_t)wlen);
    assert_int_equal(b.data[b.len], '\0');
    redisFreeCommand(want);
    buf_free(&b);
}

static void test_format_simple(void **state) {
    (void)state;
    buf b = {0};
    const char *argv[] = {"SET", "k", "value"};
    size_t lens[] = {3, 1, 5};
    rconn_format_command(&b, 3, argv, lens);
    assert_string_equal(b.data, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n");
    assert_int_equal(b.len, strlen(b.data));
    buf_free(&b);
    same_as_hiredis(3, argv, lens);
}

static void test_format_edge_cases(void **state) {
    (void)state;
    /* no arguments, an empty argument */
    same_as_hiredis(0, NULL, NULL);
    const char *empty[] = {"GET", ""};
    size_t elens[] = {3, 0};
    same_as_hiredis(2, empty, elens);
    /* binary: NUL, CR LF and '$' inside an argument are sent as they are */
    const char bin[] = "a\0b\r\n$3\r\n*";
    const char *argv[] = {"RPUSH", "q", bin};
    size_t lens[] = {5, 1, sizeof bin - 1};
    same_as_hiredis(3, argv, lens);
    /* lengths of 9, 10 and 100000 bytes (digit counts change) */
    char *big = malloc(100000);
    memset(big, 'x', 100000);
    const char *sizes[] = {big, big, big};
    size_t slens[] = {9, 10, 100000};
    same_as_hiredis(3, sizes, slens);
    free(big);
}

static void test_format_many_arguments(void **state) {
    (void)state;
    enum { N = 1234 };
    static const char letters[] = "abcdefghij";
    const char *argv[N];
    size_t lens[N];
    for (int i = 0; i < N; i++) {
        argv[i] = letters + i % 10;
        lens[i] = (size_t)(10 - i % 10);
    }
    same_as_hiredis(N, argv, lens);
}

/* A buffer that held a longer command is overwritten, not appended to. */
static void test_format_replaces_content(void **state) {
    (void)state;
    buf b = {0};
    buf_puts(&b, "something much longer than the command that follows it");
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    rconn_format_command(&b, 1, argv, lens);
    assert_string_equal(b.data, "*1\r\n$4\r\nPING\r\n");
    assert_int_equal(b.len, 14);
    const char *argv2[] = {"ECHO", "hello"};
    size_t lens2[] = {4, 5};
    rconn_format_command(&b, 2, argv2, lens2);
    assert_string_equal(b.data, "*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n");
    buf_free(&b);
}

static void test_rargs(void **state) {
    (void)state;
    rargs a = {0};
    char borrowed[] = "borrowed";
    rargs_add(&a, borrowed, 3);
    rargs_adds(&a, borrowed);
    rargs_addf(&a, "%s:%d", "key", 42);
    rargs_addll(&a, 0);
    rargs_addll(&a, -7);
    rargs_addll(&a, LLONG_MAX);
    rargs_addll(&a, LLONG_MIN);
    rargs_take(&a, strdup("taken"));
    for (int i = 0; i < 40; i++) rargs_addll(&a, i); /* grows past its first 16 */
    assert_int_equal(a.argc, 48);
    assert_ptr_equal(a.argv[0], borrowed);
    assert_int_equal(a.lens[0], 3);
    assert_int_equal(a.lens[1], 8);
    const char *want[] = {"key:42", "0", "-7", "9223372036854775807", "-9223372036854775808",
                          "taken"};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(a.lens[2 + i], strlen(want[i]));
        assert_memory_equal(a.argv[2 + i], want[i], a.lens[2 + i]);
    }
    assert_memory_equal(a.argv[47], "39", 2);
    rargs_free(&a);
    assert_int_equal(a.argc, 0);
    assert_null(a.argv);
}

/* Copies and numbers live in blocks the rargs owns: many small ones, and
 * one larger than a block, all stay intact until rargs_free(). */
static void test_rargs_copies(void **state) {
    (void)state;
    rargs a = {0};
    char text[64];
    for (int i = 0; i < 3000; i++) {
        int n = snprintf(text, sizeof text, "copy %d of many", i);
        rargs_addcopy(&a, text, (size_t)n);
        rargs_addll(&a, i);
    }
    char big[10000];
    memset(big, 'x', sizeof big);
    big[5] = '\0'; /* binary safe */
    rargs_addcopy(&a, big, sizeof big);
    rargs_addcopy(&a, "", 0);
    rargs_setcopy(&a, 1, "set", 3);
    assert_int_equal(a.argc, 6002);
    for (int i = 0; i < 3000; i++) {
        int n = snprintf(text, sizeof text, "copy %d of many", i);
        assert_int_equal(a.lens[2 * i], (size_t)n);
        assert_memory_equal(a.argv[2 * i], text, (size_t)n);
        if (i == 0) continue;
        n = snprintf(text, sizeof text, "%d", i);
        assert_string_equal(a.argv[2 * i + 1], text);
    }
    assert_string_equal(a.argv[1], "set");
    assert_int_equal(a.lens[6000], sizeof big);
    assert_memory_equal(a.argv[6000], big, sizeof big);
    assert_int_equal(a.lens[6001], 0);
    assert_string_equal(a.argv[6001], "");
    rargs_free(&a);
    assert_int_equal(a.nowned, 0);
    assert_null(a.owned);
}

static void test_send_before_ready(void **state) {
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    redis_target t = {.host = "127.0.0.1", .port = 1};
    rconn *rc = rconn_new(&loop, &t, "test", NULL, NULL);
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    assert_false(rconn_ready(rc));
    assert_int_equal(rconn_send(rc, NULL, NULL, 1, argv, lens), RCONN_ENOTREADY);
    assert_string_equal(rconn_strerror(RCONN_ENOTREADY), "not ready");
    assert_string_equal(rconn_strerror(RCONN_OK), "ok");
    assert_non_null(strstr(rconn_strerror(RCONN_EHIREDIS), "hiredis"));
    rconn_free(rc); /* never started: only its timers to close */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- error classification --------------------------------------------- */

static void test_transient_errors(void **state) {
    (void)state;
    const char *transient[] = {
        "OOM command not allowed when used memory > 'maxmemory'.",
        "READONLY You can't write against a read only replica.",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "NOREPLICAS Not enough good replicas to write.",
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        "LOADING Redis is loading the dataset in memory",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "CLUSTERDOWN The cluster is down",
        "NOAUTH Authentication required.",
        "BUSY",
        /* Redis 7: raised by redis.call() inside a script */
        "NOREPLICAS Not enough good replicas to write. script: ff967d0ae0e68b4f9e360fa91c54598bc25ad9b6, on @user_script:1.",
        "READONLY You can't write against a read only replica. script: ff967d0ae0e68b4f9e360fa91c54598bc25ad9b6, on @user_script:1.",
        /* Redis 6: the same, wrapped */
        "ERR Error running script (call to f_ff967d0ae0e68b4f9e360fa91c54598bc25ad9b6): @user_script:1: @user_script: 1: -READONLY You can't write against a read only replica. ",
        "ERR Error running script (call to f_x): @user_script:3: @user_script: 3: -OOM command not allowed when used memory > 'maxmemory'. ",
    };
    const char *final[] = {
        "ERR wrong number of arguments for 'set' command",
        "ERR user_script:1: Script attempted to access nonexistent global variable 'x' script: 1a2b, on @user_script:1.",
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "NOPERM this user has no permissions to access one of the keys used as arguments",
        "EXECABORT Transaction discarded because of previous errors.",
        "MOVED 3999 127.0.0.1:6381",
        "BUSYKEY Target key name already exists.",
        "READONLYISH not a known code",
        "OOMX",
        "",
        "ERR Error running script (call to f_x): @user_script:1: @user_script: 1: -WRONGTYPE Operation against a key",
        "ERR Error running script (call to f_x): @user_script:1: no code here",
    };
    for (size_t i = 0; i < sizeof transient / sizeof *transient; i++)
        if (!rconn_error_is_transient(transient[i])) fail_msg("not transient: %s", transient[i]);
    for (size_t i = 0; i < sizeof final / sizeof *final; i++)
        if (rconn_error_is_transient(final[i])) fail_msg("not final: %s", final[i]);
}

/* ---- a fake Redis server ---------------------------------------------------- */

typedef struct fake fake;
/* The raw RESP reply to command number n (0-based) `cmd`, or NULL to drop
 * the connection without answering. */
typedef const char *(*fake_answer)(fake *f, int n, const char *cmd);

struct fake {
    uv_loop_t loop;
    uv_tcp_t server;
    uv_tcp_t *client;      /* the one open connection, or NULL */
    uv_timer_t tick;       /* wakes the loop up, for fake_run_until's deadline */
    int port;
    int connections;       /* accepted so far */
    fake_answer answer;
    buf in;                /* bytes read, not yet parsed */
    char log[64][128];     /* commands received, in order */
    int nlog;
    void *test;            /* the test's own state */
};

static void fake_on_closed(uv_handle_t *h) { free(h); }

static void fake_drop(fake *f) {
    if (!f->client) return;
    uv_close((uv_handle_t *)f->client, fake_on_closed);
    f->client = NULL;
}

static void fake_on_written(uv_write_t *w, int status) {
    (void)status;
    free(w->data);
    free(w);
}

static void fake_write(fake *f, const char *resp) {
    uv_write_t *w = malloc(sizeof *w);
    w->data = strdup(resp);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)strlen(resp));
    uv_write(w, (uv_stream_t *)f->client, &b, 1, fake_on_written);
}

/* Reads "<c><number>\r\n" at *p; returns the number, or -1 if incomplete. */
static long fake_num(const char **p, const char *end, char c) {
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (*p >= end || **p != c || !nl) return -1;
    long v = strtol(*p + 1, NULL, 10);
    *p = nl + 1;
    return v;
}

/* Parses one command from f->in into `cmd`; returns the bytes it took, or 0
 * if the buffer does not hold a whole command yet. */
static size_t fake_parse(fake *f, char *cmd, size_t cap) {
    const char *p = f->in.data, *end = f->in.data + f->in.len;
    long argc = fake_num(&p, end, '*');
    if (argc < 0) return 0;
    size_t k = 0;
    for (long i = 0; i < argc; i++) {
        long len = fake_num(&p, end, '$');
        if (len < 0 || end - p < len + 2) return 0;
        for (long j = 0; j < len && k + 2 < cap; j++) cmd[k++] = p[j];
        if (i + 1 < argc && k + 1 < cap) cmd[k++] = ' ';
        p += len + 2;
    }
    cmd[k] = '\0';
    return (size_t)(p - f->in.data);
}

static void fake_alloc(uv_handle_t *h, size_t size, uv_buf_t *b) {
    (void)h;
    b->base = malloc(size);
    b->len = size;
}

static void fake_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    fake *f = s->data;
    if (n > 0) buf_append(&f->in, b->base, (size_t)n);
    free(b->base);
    if (n < 0 && f->client == (uv_tcp_t *)s) fake_drop(f);
    char cmd[128];
    size_t used;
    while (f->client == (uv_tcp_t *)s && (used = fake_parse(f, cmd, sizeof cmd)) > 0) {
        memmove(f->in.data, f->in.data + used, f->in.len - used);
        f->in.len -= used;
        int seq = f->nlog;
        if (f->nlog < 64) snprintf(f->log[f->nlog++], sizeof f->log[0], "%s", cmd);
        const char *reply = f->answer(f, seq, cmd);
        if (reply)
            fake_write(f, reply);
        else
            fake_drop(f);
    }
}

static void fake_on_connection(uv_stream_t *server, int status) {
    fake *f = server->data;
    assert_int_equal(status, 0);
    uv_tcp_t *c = malloc(sizeof *c);
    uv_tcp_init(&f->loop, c);
    assert_int_equal(uv_accept(server, (uv_stream_t *)c), 0);
    c->data = f;
    fake_drop(f); /* one connection at a time, as rconn has */
    f->client = c;
    f->connections++;
    buf_reset(&f->in);
    uv_read_start((uv_stream_t *)c, fake_alloc, fake_on_read);
}

static void fake_on_tick(uv_timer_t *t) { (void)t; }

static void fake_start(fake *f, fake_answer answer) {
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->answer = answer;
    uv_tcp_init(&f->loop, &f->server);
    f->server.data = f;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&f->server, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->server, 16, fake_on_connection), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&f->server, (struct sockaddr *)&got, &len);
    f->port = ntohs(got.sin_port);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, fake_on_tick, 20, 20);
}

/* Runs the loop until *done or 5 s have passed; fails on the latter. */
static void fake_run_until(fake *f, const int *done) {
    uint64_t deadline = uv_now(&f->loop) + 5000;
    while (!*done && uv_now(&f->loop) < deadline) uv_run(&f->loop, UV_RUN_ONCE);
    if (!*done) fail_msg("timed out");
}

static void fake_stop(fake *f, rconn *rc) {
    rconn_free(rc);
    fake_drop(f);
    uv_close((uv_handle_t *)&f->server, NULL);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    buf_free(&f->in);
}

static rconn *fake_connect(fake *f, rconn_state_cb state_cb) {
    redis_target t = {.host = "127.0.0.1", .port = f->port};
    rconn *rc = rconn_new(&f->loop, &t, "test", state_cb, f);
    return rc;
}

static void fake_assert_log(const fake *f, const char *const *want, int n) {
    for (int i = 0; i < f->nlog && i < n; i++)
        if (strcmp(f->log[i], want[i]) != 0)
            fail_msg("command %d: got \"%s\", want \"%s\"", i, f->log[i], want[i]);
    assert_int_equal(f->nlog, n);
}

/* ---- the outbox order -------------------------------------------------------- */

typedef struct order_test {
    rconn *rc;
    char replies[8][64];   /* "<command>=<reply>" per reliable callback, in order */
    int nreplies;
    int done;
} order_test;

static void on_reliable(rconn *rc, redisReply *reply, void *priv) {
    fake *f = rconn_data(rc);
    order_test *t = f->test;
    assert_non_null(reply);
    snprintf(t->replies[t->nreplies++], sizeof t->replies[0], "%s=%s", (const char *)priv,
             reply->str ? reply->str : "?");
    if (strcmp(priv, "B") == 0 || strcmp(priv, "C") == 0) t->done = 1;
}

static void send_set(rconn *rc, const char *name) {
    const char *argv[] = {"SET", name, "1"};
    size_t lens[] = {3, strlen(name), 1};
    rconn_send_reliable(rc, on_reliable, (void *)name, 3, argv, lens);
}

/* The first SET A is refused as a replica would refuse it (a failover); a
 * PING pipelined behind it is answered. */
static const char *answer_readonly_once(fake *f, int n, const char *cmd) {
    (void)f;
    if (n == 0) /* SET A 1 */
        return "-READONLY You can't write against a read only replica.\r\n";
    if (strcmp(cmd, "PING") == 0) return "+PONG\r\n";
    return "+OK\r\n";
}

/* B is sent once the refusal of A is known (the PONG comes after it). */
static void on_pong(rconn *rc, redisReply *reply, void *priv) {
    (void)reply;
    (void)priv;
    send_set(rc, "B");
}

static void on_ready_send_a_ping(rconn *rc, int ready, void *ud) {
    (void)ud;
    if (!ready) return;
    send_set(rc, "A");
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    assert_int_equal(rconn_send(rc, on_pong, NULL, 1, argv, lens), RCONN_OK);
}

/* A command sent while an older one waits for its retry waits behind it. */
static void test_outbox_fifo_after_transient_error(void **state) {
    (void)state;
    fake f;
    order_test t = {0};
    fake_start(&f, answer_readonly_once);
    f.test = &t;
    rconn *rc = fake_connect(&f, on_ready_send_a_ping);
    rconn_start(rc);
    fake_run_until(&f, &t.done);
    const char *want[] = {"SET A 1", "PING", "SET A 1", "SET B 1"};
    fake_assert_log(&f, want, 4);
    assert_int_equal(t.nreplies, 2);
    assert_string_equal(t.replies[0], "A=OK");
    assert_string_equal(t.replies[1], "B=OK");
    assert_int_equal(rconn_pending(rc), 0);
    fake_stop(&f, rc);
}

/* The connection drops on the first SET A; B is queued while it is down.
 * After the reconnect, A goes first. A final error is the callback's. */
static const char *answer_drop_once(fake *f, int n, const char *cmd) {
    (void)n;
    if (strcmp(cmd, "SET A 1") == 0 && f->connections == 1) return NULL;
    if (strcmp(cmd, "SET B 1") == 0) return "-ERR final\r\n";
    return "+OK\r\n";
}

static void on_state_drop(rconn *rc, int ready, void *ud) {
    fake *f = ud;
    if (ready && f->connections == 1) send_set(rc, "A");
    if (!ready) send_set(rc, "B"); /* the connection is down: B waits */
}

static void test_outbox_fifo_after_reconnect(void **state) {
    (void)state;
    fake f;
    order_test t = {0};
    fake_start(&f, answer_drop_once);
    f.test = &t;
    rconn *rc = fake_connect(&f, on_state_drop);
    rconn_start(rc);
    fake_run_until(&f, &t.done);
    const char *want[] = {"SET A 1", "SET A 1", "SET B 1"};
    fake_assert_log(&f, want, 3);
    assert_int_equal(f.connections, 2);
    assert_int_equal(t.nreplies, 2);
    assert_string_equal(t.replies[0], "A=OK");
    assert_string_equal(t.replies[1], "B=ERR final");
    fake_stop(&f, rc);
}

/* NOSCRIPT: the connection is dropped, the script loaded again, and the
 * EVALSHA sent again before B, queued once the refusal was known. */
#define FAKE_SHA "0123456789abcdef0123456789abcdef01234567"
static const char *answer_noscript_once(fake *f, int n, const char *cmd) {
    (void)n;
    if (strncmp(cmd, "SCRIPT LOAD ", 12) == 0) return "$40\r\n" FAKE_SHA "\r\n";
    if (strncmp(cmd, "EVALSHA", 7) == 0 && f->connections == 1)
        return "-NOSCRIPT No matching script. Please use EVAL.\r\n";
    if (strcmp(cmd, "PING") == 0) return "+PONG\r\n";
    return "+OK\r\n";
}

static void on_ready_eval_ping(rconn *rc, int ready, void *ud) {
    fake *f = ud;
    if (!ready || f->connections != 1) return;
    const char *argv[] = {"0", "x"};
    size_t lens[] = {1, 1};
    rconn_eval_reliable(rc, 0, on_reliable, "A", 2, argv, lens);
    const char *ping[] = {"PING"};
    size_t plen[] = {4};
    assert_int_equal(rconn_send(rc, on_pong, NULL, 1, ping, plen), RCONN_OK);
}

static void test_outbox_noscript(void **state) {
    (void)state;
    fake f;
    order_test t = {0};
    fake_start(&f, answer_noscript_once);
    f.test = &t;
    rconn *rc = fake_connect(&f, on_ready_eval_ping);
    assert_int_equal(rconn_add_script(rc, "return 1"), 0);
    rconn_start(rc);
    fake_run_until(&f, &t.done);
    const char *want[] = {"SCRIPT LOAD return 1", "EVALSHA " FAKE_SHA " 0 x", "PING",
                          "SCRIPT LOAD return 1", "EVALSHA " FAKE_SHA " 0 x", "SET B 1"};
    fake_assert_log(&f, want, 6);
    assert_int_equal(f.connections, 2);
    assert_int_equal(t.nreplies, 2);
    assert_string_equal(t.replies[0], "A=OK");
    assert_string_equal(t.replies[1], "B=OK");
    assert_string_equal(rconn_script_sha(rc, 0), FAKE_SHA);
    fake_stop(&f, rc);
}

/* ---- close-on-exec ------------------------------------------------------------ */

static const char *answer_ok(fake *f, int n, const char *cmd) {
    (void)f;
    (void)n;
    (void)cmd;
    return "+OK\r\n";
}

static void on_ready_flag(rconn *rc, int ready, void *ud) {
    fake *f = ud;
    (void)rc;
    if (ready) *(int *)f->test = 1;
}

/* The fd of this process' TCP socket whose peer is 127.0.0.1:port, or -1. */
static int socket_to(int port) {
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int found = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        if (fd <= 2 || getpeername(fd, (struct sockaddr *)&peer, &len) != 0) continue;
        if (peer.sin_family == AF_INET && ntohs(peer.sin_port) == port) found = fd;
    }
    closedir(d);
    return found;
}

static void test_socket_close_on_exec(void **state) {
    (void)state;
    fake f;
    int ready = 0;
    fake_start(&f, answer_ok);
    f.test = &ready;
    rconn *rc = fake_connect(&f, on_ready_flag);
    rconn_start(rc);
    fake_run_until(&f, &ready);
    int fd = socket_to(f.port);
    assert_true(fd > 2);
    int flags = fcntl(fd, F_GETFD);
    assert_true(flags >= 0);
    assert_true(flags & FD_CLOEXEC);
    fake_stop(&f, rc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_simple),
        cmocka_unit_test(test_format_edge_cases),
        cmocka_unit_test(test_format_many_arguments),
        cmocka_unit_test(test_format_replaces_content),
        cmocka_unit_test(test_rargs),
        cmocka_unit_test(test_rargs_copies),
        cmocka_unit_test(test_send_before_ready),
        cmocka_unit_test(test_transient_errors),
        cmocka_unit_test(test_outbox_fifo_after_transient_error),
        cmocka_unit_test(test_outbox_fifo_after_reconnect),
        cmocka_unit_test(test_outbox_noscript),
        cmocka_unit_test(test_socket_close_on_exec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

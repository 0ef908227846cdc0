/* rconn.c — a self-reconnecting hiredis async connection; see rconn.h.
 *
 * States: DOWN (no context; a backoff timer will connect), CONNECTING (TCP
 * connect in progress), HANDSHAKE (connected; AUTH/SELECT/SCRIPT LOAD sent),
 * READY. hiredis frees its context itself after the disconnect callback (or
 * after a failed connect callback), so `ac` is cleared there and never used
 * again.
 *
 * The libuv glue is our own copy of hiredis' adapters/libuv.h with two
 * fixes the Debian 0.14.1 version lacks: it calls uv_poll_start() only when
 * the set of watched events changes (0.14.1 calls it for every command, and
 * libuv turns each call into epoll_ctl system calls), and it hands poll
 * errors to hiredis instead of dropping them (a refused connect would never
 * call back). A connect timer stays as a safety net.
 *
 * The socket hiredis opens is made close-on-exec at once (hiredis 0.14 does
 * not): chatqd spawns workers, and each would otherwise inherit, and keep
 * open, its parent's connection to Redis.
 *
 * The outbox of reliable commands is a FIFO list, and Redis runs the
 * commands of one connection in the order it reads them. Each entry is
 * either in flight (written on the current connection, reply not yet read)
 * or waiting (to be sent, or sent again). An entry becomes waiting when
 *   - it is queued while the connection is not ready,
 *   - the connection drops before its reply (hiredis then calls every
 *     pending reply callback with NULL),
 *   - Redis refuses it for now (a transient error, see rc_is_transient, or
 *     NOSCRIPT), which schedules a retry with backoff.
 * The order rule: a command is written only when no older entry is waiting.
 * A new command goes out at once only if nothing waits (nwaiting == 0);
 * otherwise it waits too, and rc_flush_outbox() (on READY, and when the
 * retry timer fires) writes the waiting entries from the oldest, stopping
 * at the first one hiredis refuses. So a command never overtakes an older
 * one that still has to run: a REQUEUE issued by a resync cannot run before
 * a FINISH of the same job that Redis refused a moment ago (the FINISH
 * removes the job from the processing list, so the REQUEUE that follows it
 * finds nothing to move).
 * The one reordering left is beyond any client: entries already written
 * behind a refused one were sent before the refusal was known, and Redis
 * runs them. They would be refused too unless the server's state changed
 * between two pipelined commands; callers issue a command that depends on
 * another (a REQUEUE after a resync's LRANGE) only after a reply that came
 * later in the pipeline, so by then the refusal is known and the rule
 * above applies. */
#include "common/rconn.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/async.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"

#define RCONN_MAX_SCRIPTS 8
#define RCONN_CONNECT_TIMEOUT_MS 1000
#define RCONN_RETRY_MIN_MS 250
#define RCONN_RETRY_MAX_MS 5000

enum rconn_state { RC_DOWN, RC_CONNECTING, RC_HANDSHAKE, RC_READY };

typedef struct rc_cmd {
    struct rc_cmd *next;
    rconn *rc;
    rconn_reply_cb cb;
    void *priv;
    char *cmd;      /* the command in RESP, formatted once; for a script, the
                     * arguments after EVALSHA and the SHA (see rc_send_cmd) */
    size_t len;
    int script;     /* index of the script to EVALSHA, or -1 */
    int argc;
    int in_flight;  /* written on the current connection, reply not read yet;
                     * 0 while it waits to be sent (or sent again) */
} rc_cmd;

struct rconn {
    uv_loop_t *loop;
    redis_target target;
    char *name;
    rconn_state_cb state_cb;
    void *ud;
    redisAsyncContext *ac;
    enum rconn_state state;
    uv_timer_t timer;         /* reconnect backoff */
    uv_timer_t retry;         /* resends reliable commands refused for a while */
    int open_handles;         /* timers not yet closed (freeing waits for 0) */
    long backoff_ms;
    int handshake_left;       /* replies still expected before READY */
    const char *scripts[RCONN_MAX_SCRIPTS];
    char shas[RCONN_MAX_SCRIPTS][41];
    int nscripts;
    rc_cmd *out_head, *out_tail;
    size_t nwaiting;          /* outbox entries not in flight */
    long retry_ms;            /* next delay of `retry` */
    buf fmt;                  /* reused to format best-effort commands */
    size_t npending;
    int freeing;
};

static void rc_connect(rconn *rc);
static void rc_flush_outbox(rconn *rc);

/* ---- libuv adapter (see the file comment) ------------------------------ */

typedef struct rc_events {
    redisAsyncContext *ac;
    uv_poll_t poll;
    int events;
} rc_events;

static void rc_ev_on_poll(uv_poll_t *h, int status, int events) {
    rc_events *e = h->data;
    if (status < 0) {
        /* libuv stopped the handle; let hiredis find the socket error */
        e->events = 0;
        events = UV_READABLE | UV_WRITABLE;
    }
    if (e->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
    if (e->ac && (events & UV_READABLE)) redisAsyncHandleRead(e->ac);
}

static void rc_ev_update(rc_events *e, int events) {
    if (events == e->events) return;
    e->events = events;
    if (events)
        uv_poll_start(&e->poll, events, rc_ev_on_poll);
    else
        uv_poll_stop(&e->poll);
}

static void rc_ev_add_read(void *p) { rc_ev_update(p, ((rc_events *)p)->events | UV_READABLE); }
static void rc_ev_del_read(void *p) { rc_ev_update(p, ((rc_events *)p)->events & ~UV_READABLE); }
static void rc_ev_add_write(void *p) { rc_ev_update(p, ((rc_events *)p)->events | UV_WRITABLE); }
static void rc_ev_del_write(void *p) { rc_ev_update(p, ((rc_events *)p)->events & ~UV_WRITABLE); }
static void rc_ev_on_closed(uv_handle_t *h) { free(h->data); }

static void rc_ev_cleanup(void *p) {
    rc_events *e = p;
    e->ac = NULL; /* hiredis frees the context: never touch it again */
    uv_close((uv_handle_t *)&e->poll, rc_ev_on_closed);
}

static int rc_ev_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    rc_events *e = xcalloc(1, sizeof *e);
    if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return -1;
    }
    e->ac = ac;
    e->poll.data = e;
    ac->ev.data = e;
    ac->ev.addRead = rc_ev_add_read;
    ac->ev.delRead = rc_ev_del_read;
    ac->ev.addWrite = rc_ev_add_write;
    ac->ev.delWrite = rc_ev_del_write;
    ac->ev.cleanup = rc_ev_cleanup;
    return 0;
}

/* ---- RESP formatting ------------------------------------------------------ */

/* Writes the decimal digits of n at p; returns the end. */
static char *rc_put_num(char *p, size_t n) {
    char tmp[24];
    int i = (int)sizeof tmp;
    do {
        tmp[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    memcpy(p, tmp + i, sizeof tmp - (size_t)i);
    return p + (sizeof tmp - (size_t)i);
}

/* hiredis 0.14's redisFormatCommandArgv() calls sprintf for every
 * argument, which the profile showed as the worker's largest single cost;
 * this sizes the buffer once and copies. */
void rconn_format_command(buf *b, int argc, const char **argv, const size_t *lens) {
    size_t total = 16;
    for (int i = 0; i < argc; i++) total += lens[i] + 26;
    if (b->cap < total + 1) {
        b->data = xrealloc(b->data, total + 1);
        b->cap = total + 1;
    }
    char *p = b->data;
    *p++ = '*';
    p = rc_put_num(p, (size_t)argc);
    *p++ = '\r';
    *p++ = '\n';
    for (int i = 0; i < argc; i++) {
        *p++ = '$';
        p = rc_put_num(p, lens[i]);
        *p++ = '\r';
        *p++ = '\n';
        memcpy(p, argv[i], lens[i]);
        p += lens[i];
        *p++ = '\r';
        *p++ = '\n';
    }
    *p = '\0';
    b->len = (size_t)(p - b->data);
}

/* ---- argument vectors --------------------------------------------------- */

void rargs_add(rargs *a, const char *s, size_t len) {
    if (a->argc == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->argv = xrealloc(a->argv, sizeof *a->argv * (size_t)a->cap);
        a->lens = xrealloc(a->lens, sizeof *a->lens * (size_t)a->cap);
    }
    a->argv[a->argc] = s;
    a->lens[a->argc] = len;
    a->argc++;
}

void rargs_adds(rargs *a, const char *s) { rargs_add(a, s, strlen(s)); }

/* Remembers s, a heap string, for rargs_free(). */
static void rargs_own(rargs *a, char *s) {
    if (a->nowned == a->owned_cap) {
        a->owned_cap = a->owned_cap ? 2 * a->owned_cap : 8;
        a->owned = xrealloc(a->owned, sizeof *a->owned * (size_t)a->owned_cap);
    }
    a->owned[a->nowned++] = s;
}

/* Blocks of RARGS_BLOCK bytes hold the copies and numbers; a string longer
 * than a quarter of that gets a block of its own, so a block wastes little. */
#define RARGS_BLOCK 4096

/* n bytes the rargs owns, valid until rargs_free(). */
static char *rargs_space(rargs *a, size_t n) {
    if (n > RARGS_BLOCK / 4) {
        char *s = xmalloc(n);
        rargs_own(a, s);
        return s;
    }
    if (n > a->space_left) {
        a->space = xmalloc(RARGS_BLOCK);
        a->space_left = RARGS_BLOCK;
        rargs_own(a, a->space);
    }
    char *s = a->space;
    a->space += n;
    a->space_left -= n;
    return s;
}

/* A copy of len bytes (NULs and all) and a NUL, that the rargs owns. */
static char *rargs_copy(rargs *a, const char *s, size_t len) {
    char *c = rargs_space(a, len + 1);
    memcpy(c, s, len);
    c[len] = '\0';
    return c;
}

void rargs_take(rargs *a, char *s) {
    rargs_own(a, s);
    rargs_adds(a, s);
}

void rargs_addcopy(rargs *a, const char *s, size_t len) {
    rargs_add(a, rargs_copy(a, s, len), len);
}

void rargs_setcopy(rargs *a, int i, const char *s, size_t len) {
    a->argv[i] = rargs_copy(a, s, len);
    a->lens[i] = len;
}

void rargs_addf(rargs *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = xstrdup("");
    va_end(ap);
    rargs_take(a, s);
}

void rargs_addll(rargs *a, long long v) {
    char tmp[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[n++] = '-';
    char *s = rargs_space(a, (size_t)n + 1);
    for (int k = 0; k < n; k++) s[k] = tmp[n - 1 - k];
    s[n] = '\0';
    rargs_add(a, s, (size_t)n);
}

void rargs_free(rargs *a) {
    for (int i = 0; i < a->nowned; i++) free(a->owned[i]);
    free(a->owned);
    free(a->argv);
    free(a->lens);
    memset(a, 0, sizeof *a);
}

/* ---- life cycle ---------------------------------------------------------- */

rconn *rconn_new(uv_loop_t *loop, const redis_target *target, const char *name,
                 rconn_state_cb state_cb, void *ud) {
    rconn *rc = xcalloc(1, sizeof *rc);
    rc->loop = loop;
    rc->target.host = target->host ? xstrdup(target->host) : NULL;
    rc->target.port = target->port;
    rc->target.unix_path = target->unix_path ? xstrdup(target->unix_path) : NULL;
    rc->target.user = target->user ? xstrdup(target->user) : NULL;
    rc->target.password = target->password ? xstrdup(target->password) : NULL;
    rc->target.db = target->db;
    rc->name = xstrdup(name);
    rc->state_cb = state_cb;
    rc->ud = ud;
    rc->backoff_ms = 100;
    rc->retry_ms = RCONN_RETRY_MIN_MS;
    uv_timer_init(loop, &rc->timer);
    uv_timer_init(loop, &rc->retry);
    rc->retry.data = rc;
    rc->open_handles = 2;
    rc->timer.data = rc;
    return rc;
}

int rconn_add_script(rconn *rc, const char *text) {
    if (rc->nscripts == RCONN_MAX_SCRIPTS) abort(); /* a programming error */
    rc->scripts[rc->nscripts] = text;
    rc->shas[rc->nscripts][0] = '\0';
    return rc->nscripts++;
}

const char *rconn_script_sha(const rconn *rc, int index) { return rc->shas[index]; }
int rconn_ready(const rconn *rc) { return rc->state == RC_READY; }
void *rconn_data(const rconn *rc) { return rc->ud; }
size_t rconn_pending(const rconn *rc) { return rc->npending; }

void rconn_start(rconn *rc) { rc_connect(rc); }

static void rc_free_cmd(rc_cmd *c) {
    free(c->cmd);
    free(c);
}

static void rc_on_timer_closed(uv_handle_t *h) {
    rconn *rc = h->data;
    if (--rc->open_handles > 0) return;
    rc_cmd *c = rc->out_head;
    while (c) {
        rc_cmd *next = c->next;
        rc_free_cmd(c);
        c = next;
    }
    redis_target_free(&rc->target);
    buf_free(&rc->fmt);
    free(rc->name);
    free(rc);
}

void rconn_free(rconn *rc) {
    rc->freeing = 1;
    if (rc->ac) {
        redisAsyncContext *ac = rc->ac;
        rc->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac); /* pending callbacks run with NULL; they see freeing */
    }
    uv_timer_stop(&rc->timer);
    uv_timer_stop(&rc->retry);
    uv_close((uv_handle_t *)&rc->timer, rc_on_timer_closed);
    uv_close((uv_handle_t *)&rc->retry, rc_on_timer_closed);
}

/* ---- connecting ---------------------------------------------------------- */

static void rc_on_backoff(uv_timer_t *t) { rc_connect(t->data); }

/* The connection is gone (or never came): tell the owner, retry later. */
static void rc_lost(rconn *rc, const char *why) {
    int was_ready = rc->state == RC_READY;
    rc->ac = NULL;
    rc->state = RC_DOWN;
    if (rc->freeing) return;
    /* One warning when the connection goes; the retries log at debug level. */
    if (was_ready || rc->backoff_ms == 100)
        log_warn("redis_down", "conn=%s error=%s retry_ms=%ld", rc->name, log_quote(why),
                 rc->backoff_ms);
    else
        log_debug("redis_retry", "conn=%s error=%s retry_ms=%ld", rc->name, log_quote(why),
                  rc->backoff_ms);
    uv_timer_start(&rc->timer, rc_on_backoff, (uint64_t)rc->backoff_ms, 0);
    rc->backoff_ms = rc->backoff_ms * 2 > 5000 ? 5000 : rc->backoff_ms * 2;
    if (was_ready && rc->state_cb) rc->state_cb(rc, 0, rc->ud);
}

static void rc_on_disconnect(const redisAsyncContext *ac, int status) {
    rconn *rc = ac->data;
    (void)status;
    if (!rc) return;
    rc_lost(rc, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void rc_handshake_step(redisAsyncContext *ac, void *r, void *priv);

/* One command of the handshake; script_index is the script a SCRIPT LOAD
 * loads (its reply is that script's SHA), else -1. */
static void rc_send_handshake(rconn *rc, int argc, const char **argv, intptr_t script_index) {
    size_t lens[4];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    rc->handshake_left++;
    redisAsyncCommandArgv(rc->ac, rc_handshake_step, (void *)script_index, argc, argv, lens);
}

static void rc_on_connect(const redisAsyncContext *cac, int status) {
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    rconn *rc = ac->data;
    if (!rc) return;
    if (status != REDIS_OK) {
        rc_lost(rc, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    rc->state = RC_HANDSHAKE;
    rc->handshake_left = 0;
    if (rc->target.password) {
        if (rc->target.user) {
            const char *a[] = {"AUTH", rc->target.user, rc->target.password};
            rc_send_handshake(rc, 3, a, -1);
        } else {
            const char *a[] = {"AUTH", rc->target.password};
            rc_send_handshake(rc, 2, a, -1);
        }
    }
    if (rc->target.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", rc->target.db);
        const char *a[] = {"SELECT", db};
        rc_send_handshake(rc, 2, a, -1);
    }
    for (int i = 0; i < rc->nscripts; i++) {
        const char *a[] = {"SCRIPT", "LOAD", rc->scripts[i]};
        rc_send_handshake(rc, 3, a, i);
    }
    if (rc->handshake_left == 0) {
        rc->handshake_left = 1;
        rc_handshake_step(ac, &(redisReply){.type = REDIS_REPLY_STATUS}, (void *)(intptr_t)-1);
    }
}

static void rc_handshake_step(redisAsyncContext *ac, void *r, void *priv) {
    redisReply *reply = r;
    rconn *rc = ac->data;
    if (!rc || !reply) return; /* the disconnect callback handles the rest */
    intptr_t script = (intptr_t)priv;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Wrong password or db: say so, drop the connection, try again later
         * (the operator may fix Redis without restarting chatq). */
        if (strncmp(reply->str, "LOADING", 7) == 0) /* Redis is starting: just wait */
            log_warn("redis_loading", "conn=%s", rc->name);
        else
            log_error("redis_handshake_failed", "conn=%s error=%s", rc->name,
                      log_quote(reply->str));
        redisAsyncDisconnect(ac);
        return;
    }
    if (script >= 0 && reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(rc->shas[script], reply->str, 40);
        rc->shas[script][40] = '\0';
    }
    if (--rc->handshake_left > 0) return;
    uv_timer_stop(&rc->timer);
    rc->state = RC_READY;
    rc->backoff_ms = 100;
    log_debug("redis_ready", "conn=%s", rc->name);
    rc_flush_outbox(rc);
    if (rc->state_cb) rc->state_cb(rc, 1, rc->ud);
}

/* hiredis 0.14's libuv adapter ignores poll errors, so a refused or
 * unanswered connect would never call back: a timer gives up on it. */
static void rc_on_connect_timeout(uv_timer_t *t) {
    rconn *rc = t->data;
    if (rc->state != RC_CONNECTING && rc->state != RC_HANDSHAKE) return;
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL;
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    rc_lost(rc, rc->state == RC_CONNECTING ? "connect failed or timed out" : "handshake timed out");
}

static void rc_connect(rconn *rc) {
    redisAsyncContext *ac;
    if (rc->target.unix_path)
        ac = redisAsyncConnectUnix(rc->target.unix_path);
    else
        ac = redisAsyncConnect(rc->target.host, rc->target.port);
    if (!ac) {
        rc_lost(rc, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        rc_lost(rc, why);
        return;
    }
    /* hiredis 0.14 leaves the socket inheritable; no other thread forks,
     * so setting the flag now leaves no window. */
    int fl = fcntl(ac->c.fd, F_GETFD);
    if (fl < 0 || fcntl(ac->c.fd, F_SETFD, fl | FD_CLOEXEC) < 0) {
        char why[128];
        snprintf(why, sizeof why, "fcntl(FD_CLOEXEC): %s", strerror(errno));
        redisAsyncFree(ac);
        rc_lost(rc, why);
        return;
    }
    if (rc_ev_attach(ac, rc->loop) != 0) {
        redisAsyncFree(ac);
        rc_lost(rc, "cannot watch the socket");
        return;
    }
    ac->data = rc;
    rc->ac = ac;
    rc->state = RC_CONNECTING;
    redisAsyncSetConnectCallback(ac, rc_on_connect);
    redisAsyncSetDisconnectCallback(ac, rc_on_disconnect);
    uv_timer_start(&rc->timer, rc_on_connect_timeout, RCONN_CONNECT_TIMEOUT_MS, 0);
}

/* ---- sending ------------------------------------------------------------- */

typedef struct rc_plain {
    rconn *rc;
    rconn_reply_cb cb;
    void *priv;
} rc_plain;

static int rc_is_noscript(const redisReply *reply);

static void rc_on_plain_reply(redisAsyncContext *ac, void *r, void *priv) {
    rc_plain *p = priv;
    rconn *rc = p->rc;
    /* Subscriptions call back once per message: keep p until the end, which
     * hiredis signals with a NULL reply (disconnect). Whether this is one is
     * read before the callback: a callback that SUBSCRIBEs (the wake
     * connection's, after CLIENT ID) turns the flag on for the commands to
     * come, not for the reply in hand, whose p was leaked so. */
    int subscription = (((redisAsyncContext *)ac)->c.flags & REDIS_SUBSCRIBED) != 0;
    if (p->cb && !rc->freeing) p->cb(rc, r, p->priv);
    /* The server forgot our scripts: reconnecting reloads them. */
    if (r && rc_is_noscript(r) && !rc->freeing && rc->ac == ac) {
        log_warn("redis_noscript", "conn=%s reloading scripts", rc->name);
        redisAsyncDisconnect(ac);
    }
    if (!r || !subscription) free(p);
}

const char *rconn_strerror(rconn_err err) {
    switch (err) {
    case RCONN_OK: return "ok";
    case RCONN_ENOTREADY: return "not ready";
    case RCONN_EHIREDIS: return "refused by hiredis (disconnecting)";
    }
    return "unknown error";
}

rconn_err rconn_send(rconn *rc, rconn_reply_cb cb, void *priv, int argc, const char **argv,
                     const size_t *lens) {
    if (rc->state != RC_READY) return RCONN_ENOTREADY;
    rc_plain *p = xmalloc(sizeof *p);
    p->rc = rc;
    p->cb = cb;
    p->priv = priv;
    rconn_format_command(&rc->fmt, argc, argv, lens);
    /* hiredis refuses a command while its context disconnects or is freed */
    if (redisAsyncFormattedCommand(rc->ac, rc_on_plain_reply, p, rc->fmt.data, rc->fmt.len) !=
        REDIS_OK) {
        free(p);
        return RCONN_EHIREDIS;
    }
    return RCONN_OK;
}

static void rc_on_reliable_reply(redisAsyncContext *ac, void *r, void *priv);

/* Writes c to the connection; returns 0 when hiredis took it (c is then in
 * flight on this connection), -1 when it refused (the context is
 * disconnecting: c stays waiting for the next connection).
 * A script's SHA is known only once the connection has loaded it, which may
 * be after the command was queued: so it is put in front here, at send time. */
static int rc_send_cmd(rconn *rc, rc_cmd *c) {
    int ok;
    if (c->script < 0) {
        ok = redisAsyncFormattedCommand(rc->ac, rc_on_reliable_reply, c, c->cmd, c->len);
    } else {
        buf b = {0};
        buf_printf(&b, "*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n", c->argc + 2,
                   rc->shas[c->script]);
        buf_append(&b, c->cmd, c->len);
        ok = redisAsyncFormattedCommand(rc->ac, rc_on_reliable_reply, c, b.data, b.len);
        buf_free(&b);
    }
    if (ok != REDIS_OK) return -1;
    c->in_flight = 1;
    return 0;
}

/* Marks c, which was in flight, as waiting to be sent again. */
static void rc_set_waiting(rconn *rc, rc_cmd *c) {
    c->in_flight = 0;
    rc->nwaiting++;
}

/* Sends every waiting command, oldest first. Stops at the first one hiredis
 * refuses: sending a younger one would let it overtake. */
static void rc_flush_outbox(rconn *rc) {
    for (rc_cmd *c = rc->out_head; c && rc->nwaiting > 0; c = c->next) {
        if (rc->state != RC_READY) return;
        if (c->in_flight) continue;
        if (rc_send_cmd(rc, c) != 0) return;
        rc->nwaiting--;
    }
}

static void rc_unlink(rconn *rc, rc_cmd *c) {
    rc_cmd **pp = &rc->out_head;
    rc_cmd *prev = NULL;
    while (*pp && *pp != c) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) return;
    *pp = c->next;
    if (rc->out_tail == c) rc->out_tail = prev;
    rc->npending--;
}

/* NOSCRIPT: the server forgot our scripts (someone ran SCRIPT FLUSH). A
 * script's SHA1 depends only on its text, so reloading it restores the same
 * SHA: drop the connection, and the reconnect reloads the scripts and resends
 * every unanswered reliable command, in order. */
static int rc_is_noscript(const redisReply *reply) {
    return reply->type == REDIS_REPLY_ERROR && reply->str &&
           strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

/* Where the error code of an error reply starts. Redis 7 keeps the code of
 * an error raised by redis.call() inside a script ("READONLY You can't
 * write ... script: <sha>, on @user_script:1."); Redis 6 and older wrap it:
 * "ERR Error running script (call to f_<sha>): @user_script:1:
 * @user_script: 1: -READONLY You can't write ...", so the code is after
 * the last " -". */
static const char *rc_error_code(const char *msg) {
    static const char wrapped[] = "ERR Error running script";
    if (strncmp(msg, wrapped, sizeof wrapped - 1) != 0) return msg;
    const char *code = msg, *p = msg;
    while ((p = strstr(p, " -")) != NULL) code = p += 2;
    return code;
}

/* Errors that say "not now" rather than "never", about the server's state
 * rather than the command: the command can succeed later unchanged.
 *   OOM         above maxmemory (until something is freed or evicted)
 *   READONLY    a replica: the master failed over, Redis demoted this node
 *   MASTERDOWN  a replica that lost its master (replica-serve-stale-data no)
 *   NOREPLICAS  fewer replicas than min-replicas-to-write
 *   MISCONF     writes stopped after a failed RDB save
 *   BUSY        another client's script runs past busy-reply-threshold
 *   LOADING     Redis is loading its data set after a restart
 *   TRYAGAIN, CLUSTERDOWN   a cluster resharding or without a quorum
 *   NOAUTH      the server's password changed under an open connection
 * Every other error is final and goes to the callback: ERR (a wrong
 * argument, a script's own error), WRONGTYPE, NOPERM (an ACL forbids it:
 * retrying would hold every younger command forever for one bad key),
 * EXECABORT, MOVED/ASK, CROSSSLOT (chatq talks to one node). NOSCRIPT has its
 * own handling above. A transient error raised inside a script comes from
 * its first write (Redis checks these before any write and a script that has
 * written may not be refused any more), so the script has not written. */
static int rc_is_transient(const redisReply *reply) {
    static const char *const kinds[] = {"OOM",     "READONLY",   "MASTERDOWN", "NOREPLICAS",
                                        "MISCONF", "BUSY",       "LOADING",    "TRYAGAIN",
                                        "CLUSTERDOWN", "NOAUTH"};
    if (reply->type != REDIS_REPLY_ERROR || !reply->str) return 0;
    const char *code = rc_error_code(reply->str);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t n = strlen(kinds[i]);
        if (strncmp(code, kinds[i], n) == 0 && (code[n] == ' ' || !code[n])) return 1;
    }
    return 0;
}

int rconn_error_is_transient(const char *msg) {
    redisReply r = {.type = REDIS_REPLY_ERROR, .str = (char *)msg, .len = strlen(msg)};
    return rc_is_transient(&r);
}

static void rc_on_retry(uv_timer_t *t) { rc_flush_outbox(t->data); }

/* Schedules the resend of the waiting commands after a transient error,
 * RCONN_RETRY_MIN_MS doubling up to RCONN_RETRY_MAX_MS while Redis keeps
 * refusing; one warning per retry, not one per refused command. */
static void rc_schedule_retry(rconn *rc, const char *why) {
    if (uv_is_active((uv_handle_t *)&rc->retry)) return;
    log_warn("redis_refused", "conn=%s error=%s waiting=%zu retry_ms=%ld", rc->name,
             log_quote(why), rc->nwaiting, rc->retry_ms);
    uv_timer_start(&rc->retry, rc_on_retry, (uint64_t)rc->retry_ms, 0);
    rc->retry_ms = rc->retry_ms * 2 > RCONN_RETRY_MAX_MS ? RCONN_RETRY_MAX_MS : rc->retry_ms * 2;
}

static void rc_on_reliable_reply(redisAsyncContext *ac, void *r, void *priv) {
    rc_cmd *c = priv;
    rconn *rc = c->rc;
    redisReply *reply = r;
    if (rc->freeing) return;
    if (!reply) {
        rc_set_waiting(rc, c); /* lost with the connection: resend on the next one */
        return;
    }
    if (rc_is_noscript(reply)) {
        log_warn("redis_noscript", "conn=%s reloading scripts", rc->name);
        rc_set_waiting(rc, c);
        if (rc->ac == ac) redisAsyncDisconnect(ac);
        return;
    }
    if (rc_is_transient(reply)) {
        rc_set_waiting(rc, c);
        rc_schedule_retry(rc, reply->str);
        return;
    }
    rc->retry_ms = RCONN_RETRY_MIN_MS; /* Redis takes commands again */
    rc_unlink(rc, c);
    if (c->cb) c->cb(rc, reply, c->priv);
    rc_free_cmd(c);
}

/* Appends c to the outbox. It goes out now only if nothing older waits to
 * be sent again, else it waits its turn (see the file comment). */
static void rc_enqueue(rconn *rc, rc_cmd *c) {
    if (rc->out_tail)
        rc->out_tail->next = c;
    else
        rc->out_head = c;
    rc->out_tail = c;
    rc->npending++;
    if (rc->state == RC_READY && rc->nwaiting == 0 && rc_send_cmd(rc, c) == 0) return;
    rc->nwaiting++;
}

void rconn_send_reliable(rconn *rc, rconn_reply_cb cb, void *priv, int argc,
                         const char **argv, const size_t *lens) {
    rc_cmd *c = xcalloc(1, sizeof *c);
    c->rc = rc;
    c->cb = cb;
    c->priv = priv;
    c->script = -1;
    buf b = {0};
    rconn_format_command(&b, argc, argv, lens);
    c->len = b.len;
    c->cmd = buf_steal(&b);
    rc_enqueue(rc, c);
}

void rconn_eval_reliable(rconn *rc, int script, rconn_reply_cb cb, void *priv, int argc,
                         const char **argv, const size_t *lens) {
    rc_cmd *c = xcalloc(1, sizeof *c);
    c->rc = rc;
    c->cb = cb;
    c->priv = priv;
    c->script = script;
    c->argc = argc;
    buf b = {0};
    rconn_format_command(&b, argc, argv, lens);
    /* keep only the arguments: drop the "*<argc>\r\n" header */
    char *body = memchr(b.data, '\n', b.len) + 1;
    c->len = b.len - (size_t)(body - b.data);
    c->cmd = xmalloc(c->len + 1);
    memcpy(c->cmd, body, c->len);
    c->cmd[c->len] = '\0';
    buf_free(&b);
    rc_enqueue(rc, c);
}

/* rconn.h — one Redis connection that reconnects by itself, on a libuv loop.
 *
 * It wraps a hiredis async context (attached with hiredis' libuv adapter) and
 * adds what chatq needs on top:
 *   - connect, AUTH and SELECT from a redis_target, then SCRIPT LOAD of the
 *     Lua scripts registered with rconn_add_script(); only after all of that
 *     is the connection "ready" and the state callback told so;
 *   - on any disconnect, reconnect with exponential backoff (100 ms .. 5 s);
 *   - two ways to send a command:
 *       rconn_send():     best effort. Sent now if ready, else dropped
 *                         (returns RCONN_ENOTREADY, the callback is not
 *                         called). When the connection drops before the
 *                         reply, the callback gets reply == NULL.
 *       rconn_send_reliable(): the arguments are copied into an outbox and
 *                         sent, in order, as soon as the connection is ready,
 *                         again after every reconnect until a reply arrives,
 *                         and again (with backoff) while Redis answers a
 *                         transient error (rconn_error_is_transient()).
 *                         Strictly FIFO: a command is never written before
 *                         an older one waiting to be sent again.
 *                         The callback is called exactly once, with a real
 *                         reply, which may be a final error. Only idempotent
 *                         commands may go this way (a reply lost in a
 *                         disconnect means a second execution).
 *   - EVALSHA of a registered script: rconn_script_sha() gives its SHA1 (from
 *     SCRIPT LOAD), and a NOSCRIPT error on a reliable command (the server lost
 *     its script cache) reloads the scripts and sends the command again.
 *
 * The socket is close-on-exec: a process this one spawns does not inherit it.
 *
 * Ownership: rconn_new() allocates; rconn_free() frees the connection, its
 * outbox (whose callbacks are not called) and its timer, asynchronously
 * through uv_close. Reply objects belong to hiredis and live only during the
 * callback. */
#ifndef CHATQ_RCONN_H
#define CHATQ_RCONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

#include "common/buf.h"
#include "common/redisurl.h"

typedef struct rconn rconn;

typedef void (*rconn_reply_cb)(rconn *rc, redisReply *reply, void *priv);
/* Called when the connection becomes ready (ready = 1) or is lost (0). */
typedef void (*rconn_state_cb)(rconn *rc, int ready, void *ud);

rconn *rconn_new(uv_loop_t *loop, const redis_target *target, const char *name,
                 rconn_state_cb state_cb, void *ud);
/* Registers a script to SCRIPT LOAD on every connect; returns its index.
 * Call before rconn_start(). `text` must outlive the connection. */
int rconn_add_script(rconn *rc, const char *text);
const char *rconn_script_sha(const rconn *rc, int index);
void rconn_start(rconn *rc);
int rconn_ready(const rconn *rc);
void *rconn_data(const rconn *rc);

/* Why rconn_send() did not send: 0 when it did, else negative. */
typedef enum rconn_err {
    RCONN_OK = 0,
    RCONN_ENOTREADY = -1, /* not connected, or AUTH/SELECT/SCRIPT LOAD not done yet */
    RCONN_EHIREDIS = -2,  /* hiredis refused it: the context is disconnecting */
} rconn_err;
/* A short text for a rconn_err ("not ready", ...), for log lines. */
const char *rconn_strerror(rconn_err err);

/* Best effort (see above): RCONN_OK, or why the command was dropped; the
 * callback is called only after RCONN_OK. */
rconn_err rconn_send(rconn *rc, rconn_reply_cb cb, void *priv, int argc, const char **argv,
                     const size_t *lens);
void rconn_send_reliable(rconn *rc, rconn_reply_cb cb, void *priv, int argc,
                         const char **argv, const size_t *lens);
/* EVALSHA of registered script `script` with argv = numkeys, keys, args,
 * reliably as above. The SHA is filled in when the command is sent, so this
 * may be called before the connection has loaded its scripts. */
void rconn_eval_reliable(rconn *rc, int script, rconn_reply_cb cb, void *priv, int argc,
                         const char **argv, const size_t *lens);
/* 1 if msg, the text of a Redis error reply, says "not now" (OOM,
 * READONLY, MASTERDOWN, NOREPLICAS, MISCONF, BUSY, LOADING, TRYAGAIN,
 * CLUSTERDOWN, NOAUTH; also when raised inside a script), 0 if it is final.
 * A reliable command that meets a transient error is retried, never
 * answered with it. */
int rconn_error_is_transient(const char *msg);
/* Number of reliable commands not yet answered. */
size_t rconn_pending(const rconn *rc);
void rconn_free(rconn *rc);

/* Replaces the content of b with the command argv[0..argc) (lens[i] bytes
 * each, binary safe) in RESP, the protocol text Redis reads:
 * "*<argc>\r\n" then "$<len>\r\n<bytes>\r\n" per argument. Every command
 * of this module is sent in this form. */
void rconn_format_command(buf *b, int argc, const char **argv, const size_t *lens);

/* Convenience for building argument vectors: a growable argv/len pair.
 * rargs_add() borrows the string (it must outlive the send); rargs_addf()
 * formats into a string the rargs owns, and rargs_take() adopts a heap
 * string (a key from keys.h, say). Zero value = empty; rargs_free()
 * releases the arrays and owned strings.
 * Copies and numbers are packed into blocks of a few KB that the rargs
 * owns (a FINISH for a hundred jobs holds thousands of arguments: one
 * malloc each was a tenth of a worker's time); a pointer to an argument
 * stays valid until rargs_free(). */
typedef struct rargs {
    const char **argv;
    size_t *lens;
    int argc;
    int cap;
    char **owned;      /* heap strings and blocks, freed by rargs_free() */
    int nowned;
    int owned_cap;
    char *space;       /* free room in the current block ... */
    size_t space_left; /* ... and how much */
} rargs;
void rargs_add(rargs *a, const char *s, size_t len);
void rargs_adds(rargs *a, const char *s);
void rargs_addf(rargs *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rargs_addll(rargs *a, long long v); /* a number, without printf's cost */
void rargs_take(rargs *a, char *s);      /* s is freed by rargs_free() */
void rargs_addcopy(rargs *a, const char *s, size_t len); /* a copy the rargs owns */
void rargs_setcopy(rargs *a, int i, const char *s, size_t len); /* argument i becomes a copy */
void rargs_free(rargs *a);

#endif

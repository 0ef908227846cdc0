/* redis.c — connecting to Redis and running commands for the CLI; see
 * redis.h. The messages never show the URL itself (it may hold a password):
 * only host:port or the socket path. */
#include "cli/redis.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common/buf.h"

#define CLI_REDIS_CONNECT_TIMEOUT_S 5
/* Plain commands: a Redis that stops answering must not hang the CLI. */
#define CLI_REDIS_COMMAND_TIMEOUT_S 30

/* AUTH and SELECT as the URL asks. Returns 0 or -1 (printed). */
static int cli_redis_login(redisContext *c, const redis_target *t) {
    if (t->password) {
        redisReply *r = t->user ? cli_redis_try(c, "AUTH %s %s", t->user, t->password)
                                : cli_redis_try(c, "AUTH %s", t->password);
        if (!r) return -1;
        if (r->type == REDIS_REPLY_ERROR) {
            cli_fail("redis authentication failed: %s", r->str);
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    if (t->db) {
        redisReply *r = cli_redis_cmd(c, "SELECT %d", t->db);
        if (!r) return -1;
        freeReplyObject(r);
    }
    return 0;
}

redisContext *cli_redis_connect(cli_ctx *ctx) {
    if (cli_ctx_load(ctx) < 0) return NULL;
    redis_target t;
    char err[256];
    memset(&t, 0, sizeof t);
    if (redis_target_parse(ctx->cfg.redis_url, &t, err, sizeof err) < 0) {
        cli_fail("%s", err[0] ? err : "bad redis URL");
        return NULL;
    }
    struct timeval ctv = {CLI_REDIS_CONNECT_TIMEOUT_S, 0};
    redisContext *c = t.unix_path ? redisConnectUnixWithTimeout(t.unix_path, ctv)
                                  : redisConnectWithTimeout(t.host, t.port, ctv);
    if (!c || c->err) {
        if (t.unix_path)
            cli_fail("cannot connect to redis at %s: %s", t.unix_path,
                     c ? c->errstr : "out of memory");
        else
            cli_fail("cannot connect to redis at %s:%d: %s", t.host, t.port,
                     c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        redis_target_free(&t);
        return NULL;
    }
    struct timeval tv = {CLI_REDIS_COMMAND_TIMEOUT_S, 0};
    redisSetTimeout(c, tv);
    int rc = cli_redis_login(c, &t);
    redis_target_free(&t);
    if (rc < 0) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Reads the bulk string at *p of a command in the protocol
 * ("$<len>\r\n<bytes>\r\n"), setting *s and *len and moving *p past it.
 * Returns 0, or -1 when *p holds no such thing. */
static int cli_redis_bulk(const char **p, const char **s, size_t *len) {
    char *end;
    if (**p != '$') return -1;
    unsigned long n = strtoul(*p + 1, &end, 10);
    if (end[0] != '\r' || end[1] != '\n') return -1;
    *s = end + 2;
    *len = n;
    *p = end + 2 + n + 2;
    return 0;
}

/* "HGETALL chatq:job:x" for a command formatted as redisvCommand() would:
 * its name and its first argument, which for every command sent through
 * cli_redis_cmd() that reads a key is that key. An error reply about a key
 * (WRONGTYPE above all) is useless without it: the command may read
 * several. Only called for commands without secrets (AUTH goes through
 * cli_redis_try()). Writes "" for a command without an argument. */
static void cli_redis_describe(const char *fmt, va_list ap, char *out, size_t n) {
    char *cmd = NULL;
    const char *name, *arg;
    size_t name_len, arg_len;
    out[0] = '\0';
    if (redisvFormatCommand(&cmd, fmt, ap) < 0 || !cmd) return;
    const char *p = strchr(cmd, '\n'); /* past "*<argc>\r\n" */
    if (p) {
        p++;
        if (cli_redis_bulk(&p, &name, &name_len) == 0 &&
            cli_redis_bulk(&p, &arg, &arg_len) == 0)
            snprintf(out, n, "%.*s %.*s: ", (int)name_len, name,
                     (int)(arg_len > 200 ? 200 : arg_len), arg);
    }
    free(cmd);
}

static redisReply *cli_redis_vcmd(redisContext *c, int errors_ok, const char *fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    redisReply *r = redisvCommand(c, fmt, ap);
    if (!r) {
        cli_fail("redis: %s", c->errstr[0] ? c->errstr : "connection lost");
    } else if (r->type == REDIS_REPLY_ERROR && !errors_ok) {
        char what[256];
        cli_redis_describe(fmt, again, what, sizeof what);
        cli_fail("redis: %s%s", what, r->str);
        freeReplyObject(r);
        r = NULL;
    }
    va_end(again);
    return r;
}

redisReply *cli_redis_cmd(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = cli_redis_vcmd(c, 0, fmt, ap);
    va_end(ap);
    return r;
}

redisReply *cli_redis_try(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = cli_redis_vcmd(c, 1, fmt, ap);
    va_end(ap);
    return r;
}

int cli_redis_subscribe(redisContext *c, const char *channel) {
    redisReply *r = cli_redis_cmd(c, "SUBSCRIBE %s", channel);
    if (!r) return -1;
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
             r->element[0]->type == REDIS_REPLY_STRING &&
             !strcmp(r->element[0]->str, "subscribe");
    freeReplyObject(r);
    if (!ok) {
        cli_fail("redis: unexpected reply to SUBSCRIBE");
        return -1;
    }
    return 0;
}

int cli_redis_read(redisContext *c, int timeout_ms, redisReply **out) {
    void *r = NULL;
    *out = NULL;
    /* A reply may already sit in hiredis' buffer from the last read. */
    if (redisGetReplyFromReader(c, &r) != REDIS_OK) goto fail;
    if (!r) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int n = poll(&pfd, 1, timeout_ms < 0 ? 0 : timeout_ms);
        if (n < 0 && errno == EINTR) return 0;
        if (n < 0) {
            cli_fail("redis: poll: %s", strerror(errno));
            return -1;
        }
        if (n == 0) return 0;
        if (redisBufferRead(c) != REDIS_OK) goto fail;
        if (redisGetReplyFromReader(c, &r) != REDIS_OK) goto fail;
        if (!r) return 0; /* part of a reply; the rest comes later */
    }
    *out = r;
    return 1;
fail:
    cli_fail("redis: %s", c->errstr[0] ? c->errstr : "connection lost");
    return -1;
}

const redisReply *cli_redis_hash_get(const redisReply *r, const char *field) {
    if (!r || r->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == strlen(field) &&
            !memcmp(k->str, field, k->len))
            return r->element[i + 1];
    }
    return NULL;
}

static int cli_redis_field_cmp(const void *a, const void *b) {
    const cli_redis_field *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return strcmp(x->name->str, y->name->str);
}

cli_redis_field *cli_redis_hash_fields(const redisReply *h, const char *const *order, size_t *n) {
    size_t pairs = h->type == REDIS_REPLY_ARRAY ? h->elements / 2 : 0;
    cli_redis_field *f = xcalloc(pairs, sizeof *f);
    *n = 0;
    for (size_t i = 0; i < pairs; i++) {
        const redisReply *name = h->element[2 * i];
        /* Redis sends names as bulk strings; anything else (a proxy, a
         * RESP3 map) has no text to sort or print by */
        if (name->type != REDIS_REPLY_STRING) continue;
        cli_redis_field *x = &f[(*n)++];
        x->name = name;
        x->value = h->element[2 * i + 1];
        int r = order ? cli_str_index(order, name->str) : -1;
        x->rank = r >= 0 ? r : INT_MAX;
    }
    if (*n) qsort(f, *n, sizeof *f, cli_redis_field_cmp);
    return f;
}

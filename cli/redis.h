/* redis.h — the CLI's Redis connections (hiredis, synchronous API).
 *
 * cli_redis_connect() connects to the configured URL (TCP or unix socket),
 * authenticates (AUTH user pass, or AUTH pass) and selects the database.
 * Commands go through cli_redis_cmd(), which turns connection failures and
 * error replies into the one-line "chatq: redis: ..." message. A subscribed
 * connection is read with cli_redis_read(), which waits on the socket with
 * poll() so that callers can keep a deadline without hiredis' socket timeout
 * (which would leave the context unusable).
 *
 * Ownership: contexts are freed with redisFree(), replies with
 * freeReplyObject(). Every function that fails has printed why. */
#ifndef CHATQ_CLI_REDIS_H
#define CHATQ_CLI_REDIS_H

#include <hiredis/hiredis.h>

#include "cli/cli.h"

/* Loads the configuration if needed and connects. NULL on failure. */
redisContext *cli_redis_connect(cli_ctx *ctx);

/* Runs one command. NULL on a connection failure or an error reply. */
redisReply *cli_redis_cmd(redisContext *c, const char *fmt, ...);
/* Same, but an error reply is returned to the caller (NULL only when the
 * connection failed). */
redisReply *cli_redis_try(redisContext *c, const char *fmt, ...);

/* SUBSCRIBE to one channel and wait for the confirmation, so that nothing
 * published afterwards can be missed. Returns 0 or -1. */
int cli_redis_subscribe(redisContext *c, const char *channel);
/* Waits at most timeout_ms for the next reply on a subscribed connection.
 * Returns 1 with *out set, 0 when none came in time, -1 on failure. */
int cli_redis_read(redisContext *c, int timeout_ms, redisReply **out);

/* In an HGETALL reply (field, value, field, value...), the value of
 * `field`, or NULL. Borrowed from the reply. */
const redisReply *cli_redis_hash_get(const redisReply *r, const char *field);

/* A (field, value) pair of an HGETALL reply, both borrowed from it. */
typedef struct cli_redis_field {
    const redisReply *name, *value;
    int rank; /* its name's index in the order given, INT_MAX when not there */
} cli_redis_field;

/* The pairs of an HGETALL reply, sorted by the index of their name in
 * `order` (a NULL-terminated list; names not in it, and all names when
 * `order` is NULL, come after those in it), then by name. A pair whose
 * name is not a string is left out; a value may be of any type (the caller
 * checks). Returns a malloc'd array of *n pairs, which the caller frees. */
cli_redis_field *cli_redis_hash_fields(const redisReply *h, const char *const *order, size_t *n);

#endif

/* redisurl.h — parsing the Redis URL chatq connects to.
 *
 * Two forms (docs/configuration.md, "Redis URLs"):
 *   redis://[user[:password]@]host[:port][/db][?db=N&user=U&password=P]
 *   unix:///path/to/redis.sock[?db=N&user=U&password=P]
 * IPv6 hosts go in brackets (redis://[::1]:6379). User and password are
 * percent-decoded (an encoded NUL is refused). rediss:// is refused with a
 * message saying chatq has no TLS for Redis.
 *
 * Secrets: an error message never quotes text of the URL, since a password
 * with an unencoded '/', '?' or a missing '@host' would be read as the port,
 * the database or a parameter; it says only which part is wrong.
 *
 * Ownership: redis_target_parse() fills a caller-owned struct with heap
 * strings; redis_target_free() releases them and wipes the password. */
#ifndef CHATQ_REDISURL_H
#define CHATQ_REDISURL_H

#include <stddef.h>

typedef struct redis_target {
    char *host;      /* NULL for unix sockets */
    int port;        /* 6379 */
    char *unix_path; /* NULL for TCP */
    char *user;      /* NULL when none */
    char *password;  /* NULL when none */
    int db;          /* 0 */
} redis_target;

/* Returns 0, or -1 with a one-line message in err and *t empty (nothing to
 * free). */
int redis_target_parse(const char *url, redis_target *t, char *err, size_t errlen);
/* Frees the strings; t is left empty (port 6379) and may be freed again. */
void redis_target_free(redis_target *t);

#endif

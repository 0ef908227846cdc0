/* redisurl.c — parsing redis:// and unix:// URLs; see redisurl.h.
 *
 * A TCP URL is cut at its first '/' or '?': what comes before is the
 * authority ([user[:password]@]host[:port]), whose last '@' ends the user
 * info, so an unencoded '@' in a password still works. The path is the
 * database number; the query may set db, user and password again (the
 * query wins, as it comes last). Every error path frees what was parsed so
 * far, through redis_target_free(), which also wipes the password. */
#include "common/redisurl.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"

#define REDISURL_DEFAULT_PORT 6379

static int redisurl_hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string (NULL when empty). Returns -1 on
 * a bad escape or an encoded NUL. The partial copy is wiped: it may be part
 * of a password. */
static int redisurl_pct_decode(const char *s, size_t n, char **out) {
    *out = NULL;
    if (n == 0) return 0;
    char *d = xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            d[k++] = s[i];
            continue;
        }
        int hi = i + 2 < n ? redisurl_hexval(s[i + 1]) : -1;
        int lo = i + 2 < n ? redisurl_hexval(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            d[k] = '\0';
            xfree_secret(d);
            return -1;
        }
        d[k++] = (char)(hi * 16 + lo);
        i += 2;
    }
    d[k] = '\0';
    *out = d;
    return 0;
}

/* Digits only, within [min, max]. */
static int redisurl_parse_uint(const char *s, size_t n, long long min, long long max, int *out) {
    if (n == 0 || n > 10) return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max) return -1;
    *out = (int)v;
    return 0;
}

/* "db=N&user=U&password=P" (each optional), the text after '?'. */
static int redisurl_query(const char *q, redis_target *t, char *err, size_t errlen) {
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        size_t klen = eq ? (size_t)(eq - q) : n;
        const char *v = eq ? eq + 1 : q + n;
        size_t vlen = (size_t)(q + n - v);
        if (klen == 2 && !strncmp(q, "db", 2)) {
            if (redisurl_parse_uint(v, vlen, 0, INT_MAX, &t->db) < 0)
                return buf_err(err, errlen, "bad database number in ?db=");
        } else if (klen == 4 && !strncmp(q, "user", 4)) {
            free(t->user);
            if (redisurl_pct_decode(v, vlen, &t->user) < 0)
                return buf_err(err, errlen, "bad percent-encoding in the user name");
        } else if (klen == 8 && !strncmp(q, "password", 8)) {
            xfree_secret(t->password);
            if (redisurl_pct_decode(v, vlen, &t->password) < 0)
                return buf_err(err, errlen, "bad percent-encoding in the password");
        } else {
            /* not quoted: with a '?' in an unencoded password, the
             * "parameter" would be the rest of the password */
            return buf_err(err, errlen,
                                "unknown parameter in the query (known: db, user, password)");
        }
        q += n;
        if (*q) q++;
    }
    return 0;
}

/* The user info s[0..n) ("user", "user:password", ":password"). */
static int redisurl_userinfo(const char *s, size_t n, redis_target *t, char *err,
                             size_t errlen) {
    const char *colon = memchr(s, ':', n);
    size_t ulen = colon ? (size_t)(colon - s) : n;
    if (redisurl_pct_decode(s, ulen, &t->user) < 0)
        return buf_err(err, errlen, "bad percent-encoding in the user name");
    if (colon && redisurl_pct_decode(colon + 1, n - ulen - 1, &t->password) < 0)
        return buf_err(err, errlen, "bad percent-encoding in the password");
    return 0;
}

/* host[:port] or [IPv6][:port] in hp[0..hend). The port is never quoted in
 * a message: a password without its '@host' would be read as the port. */
static int redisurl_hostport(const char *hp, const char *hend, redis_target *t, char *err,
                             size_t errlen) {
    const char *port = NULL;
    if (*hp == '[') {
        const char *rb = memchr(hp, ']', (size_t)(hend - hp));
        if (!rb) return buf_err(err, errlen, "unclosed '[' in the host");
        t->host = xstrndup(hp + 1, (size_t)(rb - hp - 1));
        if (rb + 1 < hend && rb[1] != ':') return buf_err(err, errlen, "bad text after ']'");
        if (rb + 1 < hend) port = rb + 2;
    } else {
        const char *colon = memchr(hp, ':', (size_t)(hend - hp));
        t->host = xstrndup(hp, (size_t)((colon ? colon : hend) - hp));
        if (colon) port = colon + 1;
    }
    if (!t->host[0]) return buf_err(err, errlen, "no host");
    if (port && redisurl_parse_uint(port, (size_t)(hend - port), 1, 65535, &t->port) < 0)
        return buf_err(err, errlen, "bad port: must be a number 1..65535");
    return 0;
}

/* [user[:password]@]host[:port][/db][?query], the text after "redis://". */
static int redisurl_tcp(const char *s, redis_target *t, char *err, size_t errlen) {
    size_t alen = strcspn(s, "/?");
    const char *at = NULL;
    for (const char *p = s; p < s + alen; p++)
        if (*p == '@') at = p;
    const char *hp = s;
    if (at) {
        if (redisurl_userinfo(s, (size_t)(at - s), t, err, errlen) < 0) return -1;
        hp = at + 1;
    }
    if (redisurl_hostport(hp, s + alen, t, err, errlen) < 0) return -1;
    const char *p = s + alen;
    if (*p == '/') {
        size_t dlen = strcspn(p + 1, "?");
        if (dlen && redisurl_parse_uint(p + 1, dlen, 0, INT_MAX, &t->db) < 0)
            return buf_err(err, errlen,
                                "bad database number after '/': must be a number 0 or more");
        p += 1 + dlen;
    }
    return *p == '?' ? redisurl_query(p + 1, t, err, errlen) : 0;
}

/* /path/to/redis.sock[?query], the text after "unix://". */
static int redisurl_unix(const char *s, redis_target *t, char *err, size_t errlen) {
    size_t plen = strcspn(s, "?");
    if (s[0] != '/' || plen < 2)
        return buf_err(err, errlen, "a unix socket URL is unix:///absolute/path/redis.sock");
    t->unix_path = xstrndup(s, plen);
    return s[plen] == '?' ? redisurl_query(s + plen + 1, t, err, errlen) : 0;
}

int redis_target_parse(const char *url, redis_target *t, char *err, size_t errlen) {
    int rc;
    memset(t, 0, sizeof *t);
    t->port = REDISURL_DEFAULT_PORT;
    if (!url) return buf_err(err, errlen, "no URL");
    if (!strncasecmp(url, "rediss://", 9))
        return buf_err(err, errlen,
                            "rediss:// (Redis over TLS) is not supported: chatq has no TLS for "
                            "Redis; use redis:// or unix://");
    if (!strncasecmp(url, "redis://", 8))
        rc = redisurl_tcp(url + 8, t, err, errlen);
    else if (!strncasecmp(url, "unix://", 7))
        rc = redisurl_unix(url + 7, t, err, errlen);
    else
        return buf_err(err, errlen,
                            "must be redis://[user:password@]host[:port][/db] or "
                            "unix:///path/redis.sock[?db=N]");
    if (rc < 0) redis_target_free(t);
    return rc;
}

void redis_target_free(redis_target *t) {
    if (!t) return;
    free(t->host);
    free(t->unix_path);
    free(t->user);
    xfree_secret(t->password);
    memset(t, 0, sizeof *t);
    t->port = REDISURL_DEFAULT_PORT;
}

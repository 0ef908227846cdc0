/* config.c — loading, validating and printing chatq's configuration (docs/protocol.md §2).
 *
 * config_load() fills the struct layer by layer, lowest precedence first:
 * built-in defaults, the JSON file, the environment, the flags. Each layer
 * validates what it sets and names its source in the error ("FILE: key ...",
 * "CHATQ_PREFIX: ...", "--workers: ..."), so a bad value is reported where
 * the user wrote it even if a higher layer would have replaced it.
 *
 * Top-level scalar keys are described once in config_keys[] (name, kind,
 * field offset, range); the file parser and the flag parser share it, so a
 * key's range is the same wherever it is set. Providers are parsed on their
 * own. The file is read with json-c's tokener in its default (non-strict)
 * mode, which accepts C block comments and // line comments outside strings
 * (checked on json-c 0.16; it also takes 'single-quoted' strings, a harmless
 * leniency for a file the operator writes). An empty file means defaults.
 *
 * redis_url is checked with redis_target_parse() (redisurl.h) and kept as
 * text: each program parses it again where it connects.
 *
 * Snapshots: chatqd hands its validated configuration down to its workers
 * as a snapshot (config_snapshot: the file's text as read, and the resolved
 * API keys), and a worker rebuilds it with config_load_snapshot(): the same
 * layers, with the snapshot's text in place of the file and its keys in
 * place of api_key_env/api_key_file. So a file edited on disk reaches no
 * worker before chatqd has validated it (SIGHUP).
 *
 * Secrets: API keys are read (from the environment or a file) into
 * provider_cfg.api_key and go nowhere else but a snapshot. Error messages name the variable
 * or path that holds a key, never the key; config_dump() masks keys and
 * passwords in URLs. */
#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/redisurl.h"

#define CONFIG_DEFAULT_FILE "/etc/chatq/chatq.json"
#define CONFIG_MAX_FILE (16 << 20)  /* a config file larger than this is a mistake */
#define CONFIG_MAX_KEY_FILE 65536
#define HOUR_MS 3600000LL
#define DAY_MS 86400000LL

/* ---- top-level keys ---------------------------------------------------- */

typedef enum {
    CK_REDIS,    /* redis_url: a URL redis_target_parse() accepts */
    CK_PREFIX,   /* prefix: non-empty, no spaces or control characters */
    CK_LEVEL,    /* log_level: error, warn, info, debug */
    CK_INT,      /* int field in [min, max] */
    CK_LL,       /* long long field in [min, max] */
    CK_QUEUES,   /* array of names, or "a,b,c" */
    CK_METRICS,  /* metrics: "HOST:PORT" to serve /metrics on, null or "" = off */
    CK_PROVIDERS, /* array of provider objects */
    CK_FALLBACKS  /* object: model glob -> array of steps */
} config_kind;

typedef struct config_key {
    const char *name;
    config_kind kind;
    size_t off;
    long long min, max;
} config_key;

#define CK_NUM(name, kind, min, max) {#name, kind, offsetof(config, name), min, max}

static const config_key config_keys[] = {
    {"redis_url", CK_REDIS, 0, 0, 0},
    {"prefix", CK_PREFIX, 0, 0, 0},
    CK_NUM(workers, CK_INT, 1, 1024),
    CK_NUM(concurrency, CK_INT, 1, 100000),
    {"queues", CK_QUEUES, 0, 0, 0},
    {"log_level", CK_LEVEL, 0, 0, 0},
    CK_NUM(timeout_ms, CK_LL, 1, DAY_MS),
    CK_NUM(idle_timeout_ms, CK_LL, 1, DAY_MS),
    CK_NUM(connect_timeout_ms, CK_LL, 1, HOUR_MS),
    CK_NUM(max_attempts, CK_INT, 1, 100),
    CK_NUM(result_ttl_s, CK_LL, 1, INT_MAX),
    CK_NUM(max_job_bytes, CK_LL, 1, 512LL << 20),
    CK_NUM(max_response_bytes, CK_LL, 1, 1LL << 30),
    CK_NUM(retry_base_ms, CK_LL, 1, HOUR_MS),
    CK_NUM(retry_max_ms, CK_LL, 1, DAY_MS),
    CK_NUM(shutdown_grace_ms, CK_LL, 0, DAY_MS),
    CK_NUM(rate_limit_wait_ms, CK_LL, 0, DAY_MS),
    {"metrics", CK_METRICS, 0, 0, 0},
    {"fallbacks", CK_FALLBACKS, 0, 0, 0},
    {"providers", CK_PROVIDERS, 0, 0, 0},
};

static const config_key *config_key_find(const char *name) {
    for (size_t i = 0; i < sizeof config_keys / sizeof config_keys[0]; i++)
        if (!strcmp(config_keys[i].name, name)) return &config_keys[i];
    return NULL;
}

static void config_set_num(config *c, const config_key *k, long long v) {
    char *field = (char *)c + k->off;
    if (k->kind == CK_INT)
        *(int *)field = (int)v;
    else
        *(long long *)field = v;
}

/* ---- small validators -------------------------------------------------- */

int config_name_valid(const char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '.' && ch != '_' && ch != ':' && ch != '-') return 0;
    }
    return 1;
}

static int config_level_valid(const char *s) {
    return !strcmp(s, "error") || !strcmp(s, "warn") || !strcmp(s, "info") ||
           !strcmp(s, "debug");
}

static int config_prefix_valid(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f) return 0;
    return 1;
}

/* An http(s) URL with a host part and no whitespace or control characters. */
static int config_http_url_valid(const char *s) {
    size_t skip;
    if (!strncasecmp(s, "http://", 7))
        skip = 7;
    else if (!strncasecmp(s, "https://", 8))
        skip = 8;
    else
        return 0;
    if (s[skip] == '\0' || s[skip] == '/') return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f) return 0;
    return 1;
}

/* Drops the trailing slashes of a base URL in place ("…/v1/" -> "…/v1"). */
static void config_strip_slash(char *s) {
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/') s[--n] = '\0';
}

/* Parses a whole decimal integer (no sign games, no trailing text). */
static int config_parse_ll(const char *s, long long *out) {
    if (!*s || !(isdigit((unsigned char)*s) || *s == '-')) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* ---- strings: redis_url, prefix, log_level ----------------------------- */

/* Sets one of the string keys after validating it. `what` names the source
 * ("FILE: redis_url", "--redis:", "CHATQ_PREFIX:"). */
static int config_set_string(config *c, config_kind kind, const char *v, const char *what,
                             char *err, size_t errlen) {
    char **field;
    if (kind == CK_REDIS) {
        redis_target t;
        char why[256];
        if (redis_target_parse(v, &t, why, sizeof why) < 0)
            return buf_err(err, errlen, "%s must be a usable Redis URL: %s", what, why);
        redis_target_free(&t);
        field = &c->redis_url;
    } else if (kind == CK_PREFIX) {
        if (!config_prefix_valid(v))
            return buf_err(err, errlen,
                              "%s must be a non-empty string without spaces or control characters",
                              what);
        field = &c->prefix;
    } else {
        if (!config_level_valid(v))
            return buf_err(err, errlen, "%s must be one of error, warn, info, debug", what);
        field = &c->log_level;
    }
    free(*field);
    *field = xstrdup(v);
    return 0;
}

/* ---- metrics: "HOST:PORT" ---------------------------------------------- */

int config_metrics_addr(const char *s, char *host, size_t hostlen, int *port) {
    const char *h = s, *colon;
    size_t hn;
    if (*s == '[') { /* [IPv6]:PORT */
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return -1;
        h = s + 1;
        hn = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s))) return -1; /* bare IPv6 */
        hn = (size_t)(colon - s);
    }
    if (hn == 0 || hn >= hostlen) return -1;
    for (size_t i = 0; i < hn; i++)
        if ((unsigned char)h[i] <= ' ' || h[i] == 0x7f || h[i] == '/') return -1;
    long long p;
    if (config_parse_ll(colon + 1, &p) < 0 || p < 1 || p > 65535) return -1;
    memcpy(host, h, hn);
    host[hn] = '\0';
    *port = (int)p;
    return 0;
}

/* Sets c->metrics from "HOST:PORT", or turns it off for "". */
static int config_set_metrics(config *c, const char *v, const char *what, char *err,
                              size_t errlen) {
    char host[256];
    int port;
    if (*v && config_metrics_addr(v, host, sizeof host, &port) < 0)
        return buf_err(err, errlen,
                          "%s must be \"HOST:PORT\" (IPv6 as \"[ADDR]:PORT\", port 1..65535), "
                          "or \"\" for none",
                          what);
    free(c->metrics);
    c->metrics = *v ? xstrdup(v) : NULL;
    return 0;
}

/* ---- queues ------------------------------------------------------------ */

static void config_free_list(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Appends name[0..n) to the list after checking it is valid and new. */
static int config_queue_add(char ***list, int *count, const char *name, size_t n,
                            const char *what, char *err, size_t errlen) {
    if (!config_name_valid(name, n))
        return buf_err(err, errlen, "%s must be queue names of [A-Za-z0-9._:-] (got \"%.*s\")",
                          what, (int)(n > 64 ? 64 : n), name);
    for (int i = 0; i < *count; i++)
        if (strlen((*list)[i]) == n && !memcmp((*list)[i], name, n))
            return buf_err(err, errlen, "%s lists queue \"%.*s\" twice", what, (int)n, name);
    *list = xrealloc(*list, sizeof(char *) * (size_t)(*count + 1));
    (*list)[(*count)++] = xstrndup(name, n);
    return 0;
}

/* "a,b,c" (spaces around names allowed) into a new list. */
static int config_queues_from_csv(const char *csv, char ***list, int *count, const char *what,
                                  char *err, size_t errlen) {
    const char *p = csv;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        if (config_queue_add(list, count, a, (size_t)(b - a), what, err, errlen) < 0) return -1;
        if (!*end) return 0;
        p = end + 1;
    }
}

/* A JSON array of names, or one "a,b,c" string. Replaces c->queues. */
static int config_queues_json(config *c, json_object *v, const char *what, char *err,
                              size_t errlen) {
    char **list = NULL;
    int n = 0, rc = 0;
    if (json_object_is_type(v, json_type_string)) {
        rc = config_queues_from_csv(json_object_get_string(v), &list, &n, what, err, errlen);
    } else if (json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0) {
        for (size_t i = 0; rc == 0 && i < json_object_array_length(v); i++) {
            json_object *e = json_object_array_get_idx(v, i);
            if (!json_object_is_type(e, json_type_string))
                rc = buf_err(err, errlen, "%s must be an array of queue names", what);
            else
                rc = config_queue_add(&list, &n, json_object_get_string(e),
                                      (size_t)json_object_get_string_len(e), what, err, errlen);
        }
    } else {
        rc = buf_err(err, errlen, "%s must be a non-empty array of queue names or \"a,b,c\"",
                        what);
    }
    if (rc < 0) {
        config_free_list(list, n);
        return -1;
    }
    config_free_list(c->queues, c->nqueues);
    c->queues = list;
    c->nqueues = n;
    return 0;
}

/* ---- files ------------------------------------------------------------- */

/* Reads a whole file (at most max bytes) into a NUL-terminated block.
 * Returns 0, or a negative errno saying why not (-EFBIG: larger than max),
 * for config_slurp_error(). */
static int config_slurp(const char *path, size_t max, char **out, size_t *outlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return -errno;
    buf b = {0};
    char chunk[8192];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > max) {
            rc = EFBIG;
            break;
        }
        buf_append(&b, chunk, n);
    }
    if (!rc && ferror(f)) rc = errno ? errno : EIO;
    fclose(f);
    explicit_bzero(chunk, sizeof chunk);
    if (rc) {
        if (b.data) explicit_bzero(b.data, b.len); /* may be a key file */
        buf_free(&b);
        return -rc;
    }
    *outlen = b.len;
    *out = buf_steal(&b);
    return 0;
}

/* Why config_slurp() failed, in words; too_large for -EFBIG. */
static const char *config_slurp_error(int rc, const char *too_large) {
    return rc == -EFBIG ? too_large : strerror(-rc);
}

/* Checks a secret once its trailing whitespace is gone: it goes into an HTTP
 * header, so a line break inside would split the header. */
static int config_key_clean(char *key) {
    size_t n = strlen(key);
    while (n > 0 && isspace((unsigned char)key[n - 1])) key[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < ' ' || key[i] == 0x7f) return -1;
    return 0;
}

/* ---- providers --------------------------------------------------------- */

static int config_provider_key_env(provider_cfg *p, const char *what, char *err, size_t errlen) {
    const char *v = getenv(p->api_key_env);
    if (!v || !*v) return 0; /* no key: a local server may need none */
    p->api_key = xstrdup(v);
    if (config_key_clean(p->api_key) < 0)
        return buf_err(err, errlen, "%s: $%s holds control characters", what, p->api_key_env);
    return 0;
}

static int config_provider_key_file(provider_cfg *p, const char *what, char *err,
                                    size_t errlen) {
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    char *path = (p->api_key_file[0] != '/' && dir && *dir)
                     ? xasprintf("%s/%s", dir, p->api_key_file)
                     : xstrdup(p->api_key_file);
    size_t len;
    int rc = config_slurp(path, CONFIG_MAX_KEY_FILE, &p->api_key, &len);
    if (rc) {
        buf_err(err, errlen, "%s: cannot read %s: %s", what, path,
                   config_slurp_error(rc, "file too large for a key"));
    } else if (strlen(p->api_key) != len || config_key_clean(p->api_key) < 0) {
        rc = buf_err(err, errlen, "%s: %s holds control characters (a key is one line)", what,
                        path);
    } else if (!p->api_key[0]) {
        rc = buf_err(err, errlen, "%s: %s is empty", what, path);
    }
    free(path);
    return rc ? -1 : 0;
}

/* A JSON array of non-empty strings into a new list. */
static int config_models(provider_cfg *p, json_object *v, const char *what, char *err,
                         size_t errlen) {
    if (!json_object_is_type(v, json_type_array))
        return buf_err(err, errlen, "%s must be an array of model patterns", what);
    size_t n = json_object_array_length(v);
    p->models = xcalloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        if (!json_object_is_type(e, json_type_string) || !json_object_get_string_len(e))
            return buf_err(err, errlen, "%s[%zu] must be a non-empty string", what, i);
        p->models[p->nmodels++] = xstrdup(json_object_get_string(e));
    }
    return 0;
}

/* RFC 9110 token characters, for header names. */
static int config_header_name_valid(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s)) return 0;
    return 1;
}

static int config_headers(provider_cfg *p, json_object *v, const char *what, char *err,
                          size_t errlen) {
    if (!json_object_is_type(v, json_type_object))
        return buf_err(err, errlen, "%s must be an object of header names to values", what);
    p->headers = xcalloc((size_t)json_object_object_length(v), sizeof(char *));
    json_object_object_foreach(v, name, val) {
        if (!config_header_name_valid(name))
            return buf_err(err, errlen, "%s: \"%.64s\" is not a valid header name", what, name);
        if (!json_object_is_type(val, json_type_string))
            return buf_err(err, errlen, "%s.%s must be a string", what, name);
        const char *s = json_object_get_string(val);
        for (const char *q = s; *q; q++)
            if ((unsigned char)*q < ' ' && *q != '\t')
                return buf_err(err, errlen, "%s.%s holds control characters", what, name);
        if (strlen(s) != (size_t)json_object_get_string_len(val))
            return buf_err(err, errlen, "%s.%s holds control characters", what, name);
        p->headers[p->nheaders++] = xasprintf("%s: %s", name, s);
    }
    return 0;
}

static int config_provider_num(json_object *v, long long max, long long *dst, const char *what,
                               char *err, size_t errlen);

/* A non-negative number member of a price; absent = -1. */
static int config_price_num(json_object *o, const char *key, double *dst, const char *what,
                            char *err, size_t errlen) {
    json_object *v;
    *dst = -1;
    if (!json_object_object_get_ex(o, key, &v)) return 0;
    if ((!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int)) ||
        json_object_get_double(v) < 0 || json_object_get_double(v) > 1e6)
        return buf_err(err, errlen, "%s.%s must be a number 0..1000000 (USD per million tokens)",
                          what, key);
    *dst = json_object_get_double(v);
    return 0;
}

/* Each entry of a {model glob: {...}} object ("prices", "limits"); `at`
 * names the entry in messages. */
typedef int (*config_entry_fn)(provider_cfg *p, const char *pattern, json_object *o,
                               const char *at, char *err, size_t errlen);

static int config_pattern_map(provider_cfg *p, json_object *v, const char *what,
                              const char *shape, config_entry_fn fn, char *err, size_t errlen) {
    if (!json_object_is_type(v, json_type_object))
        return buf_err(err, errlen, "%s must be an object of model patterns to %s", what,
                          shape);
    json_object_object_foreach(v, pattern, o) {
        char *at = xasprintf("%s.%s", what, pattern);
        int rc = json_object_is_type(o, json_type_object)
                     ? fn(p, pattern, o, at, err, errlen)
                     : buf_err(err, errlen, "%s must be an object %s", at, shape);
        free(at);
        if (rc) return rc;
    }
    return 0;
}

/* "prices": {"gpt-4o*": {"input": 2.5, "cached_input": 1.25, "output": 10}} */
static int config_price_entry(provider_cfg *p, const char *pattern, json_object *o,
                              const char *at, char *err, size_t errlen) {
    p->prices = xrealloc(p->prices, sizeof *p->prices * (size_t)(p->nprices + 1));
    price_cfg *pr = &p->prices[p->nprices++];
    memset(pr, 0, sizeof *pr);
    pr->pattern = xstrdup(pattern);
    json_object_object_foreach(o, k, unused) {
        (void)unused;
        if (strcmp(k, "input") && strcmp(k, "cached_input") && strcmp(k, "output"))
            return buf_err(err, errlen, "%s: unknown key \"%.64s\"", at, k);
    }
    if (config_price_num(o, "input", &pr->input, at, err, errlen) < 0 ||
        config_price_num(o, "cached_input", &pr->cached_input, at, err, errlen) < 0 ||
        config_price_num(o, "output", &pr->output, at, err, errlen) < 0)
        return -1;
    if (pr->input < 0 || pr->output < 0)
        return buf_err(err, errlen, "%s needs both input and output", at);
    if (pr->cached_input < 0) pr->cached_input = pr->input;
    return 0;
}

/* "limits": {"*": {"rpm": 600, "tpm": 100000}} */
static int config_limit_entry(provider_cfg *p, const char *pattern, json_object *o,
                              const char *at, char *err, size_t errlen) {
    p->limits = xrealloc(p->limits, sizeof *p->limits * (size_t)(p->nlimits + 1));
    limit_cfg *l = &p->limits[p->nlimits++];
    memset(l, 0, sizeof *l);
    l->pattern = xstrdup(pattern);
    json_object_object_foreach(o, k, n) {
        char *kat = xasprintf("%s.%s", at, k);
        int rc;
        if (!strcmp(k, "rpm"))
            rc = config_provider_num(n, 100000000, &l->rpm, kat, err, errlen);
        else if (!strcmp(k, "tpm"))
            rc = config_provider_num(n, 100000000000LL, &l->tpm, kat, err, errlen);
        else
            rc = buf_err(err, errlen, "%s: unknown key \"%.64s\"", at, k);
        free(kat);
        if (rc) return rc;
    }
    return 0;
}

/* "fallbacks": {"gpt-4o": [{"provider": "backup"}, {"model": "gpt-4o-mini"}]} */
static int config_fallbacks_json(config *c, json_object *v, const char *what, char *err,
                                 size_t errlen) {
    if (!json_object_is_type(v, json_type_object))
        return buf_err(err, errlen, "%s must be an object of model patterns to lists", what);
    c->fallbacks = xcalloc((size_t)json_object_object_length(v) + 1, sizeof *c->fallbacks);
    json_object_object_foreach(v, pattern, list) {
        fallback_cfg *f = &c->fallbacks[c->nfallbacks++];
        f->pattern = xstrdup(pattern);
        if (!json_object_is_type(list, json_type_array))
            return buf_err(err, errlen, "%s.%s must be an array of {provider, model}", what,
                              pattern);
        size_t n = json_object_array_length(list);
        f->steps = xcalloc(n + 1, sizeof *f->steps);
        for (size_t i = 0; i < n; i++) {
            json_object *st = json_object_array_get_idx(list, i);
            fallback_step *s = &f->steps[f->nsteps++];
            if (!json_object_is_type(st, json_type_object))
                return buf_err(err, errlen, "%s.%s[%zu] must be an object {provider, model}",
                                  what, pattern, i);
            json_object_object_foreach(st, k, sv) {
                char **dst = !strcmp(k, "provider") ? &s->provider
                             : !strcmp(k, "model")  ? &s->model
                                                    : NULL;
                if (!dst)
                    return buf_err(err, errlen, "%s.%s[%zu]: unknown key \"%.64s\"", what,
                                      pattern, i, k);
                if (!json_object_is_type(sv, json_type_string) || !json_object_get_string_len(sv))
                    return buf_err(err, errlen, "%s.%s[%zu].%s must be a non-empty string",
                                      what, pattern, i, k);
                *dst = xstrdup(json_object_get_string(sv));
            }
            if (!s->provider && !s->model)
                return buf_err(err, errlen, "%s.%s[%zu] needs a provider or a model", what,
                                  pattern, i);
        }
    }
    return 0;
}

/* Reads a string member into *dst (which must be NULL). */
static int config_provider_str(json_object *v, char **dst, const char *what, char *err,
                               size_t errlen) {
    if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
        return buf_err(err, errlen, "%s must be a non-empty string", what);
    *dst = xstrdup(json_object_get_string(v));
    return 0;
}

static int config_provider_num(json_object *v, long long max, long long *dst, const char *what,
                               char *err, size_t errlen) {
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
        json_object_get_int64(v) > max)
        return buf_err(err, errlen, "%s must be an integer 0..%lld", what, max);
    *dst = json_object_get_int64(v);
    return 0;
}

/* One member of a provider object. */
static int config_provider_member(provider_cfg *p, const char *key, json_object *v,
                                  const char *at, char *err, size_t errlen) {
    char *what = xasprintf("%s.%s", at, key);
    long long n = 0;
    int rc;
    if (!strcmp(key, "name"))
        rc = config_provider_str(v, &p->name, what, err, errlen);
    else if (!strcmp(key, "base_url"))
        rc = config_provider_str(v, &p->base_url, what, err, errlen);
    else if (!strcmp(key, "api_key_env"))
        rc = config_provider_str(v, &p->api_key_env, what, err, errlen);
    else if (!strcmp(key, "api_key_file"))
        rc = config_provider_str(v, &p->api_key_file, what, err, errlen);
    else if (!strcmp(key, "models"))
        rc = config_models(p, v, what, err, errlen);
    else if (!strcmp(key, "headers"))
        rc = config_headers(p, v, what, err, errlen);
    else if (!strcmp(key, "max_connections")) {
        rc = config_provider_num(v, 100000, &n, what, err, errlen);
        p->max_connections = (int)n;
    }
    else if (!strcmp(key, "connect_timeout_ms"))
        rc = config_provider_num(v, HOUR_MS, &p->connect_timeout_ms, what, err, errlen);
    else if (!strcmp(key, "timeout_ms"))
        rc = config_provider_num(v, DAY_MS, &p->timeout_ms, what, err, errlen);
    else if (!strcmp(key, "idle_timeout_ms"))
        rc = config_provider_num(v, DAY_MS, &p->idle_timeout_ms, what, err, errlen);
    else if (!strcmp(key, "prices"))
        rc = config_pattern_map(p, v, what, "{input, cached_input, output}", config_price_entry,
                                err, errlen);
    else if (!strcmp(key, "limits"))
        rc = config_pattern_map(p, v, what, "{rpm, tpm}", config_limit_entry, err, errlen);
    else
        rc = buf_err(err, errlen, "%s: unknown key \"%.64s\"", at, key);
    free(what);
    return rc;
}

/* Parses providers[i]; `at` is "FILE: providers[i]". */
static int config_provider_parse(const config *c, provider_cfg *p, json_object *o,
                                  const char *at, char *err, size_t errlen) {
    if (!json_object_is_type(o, json_type_object))
        return buf_err(err, errlen, "%s must be an object", at);
    json_object_object_foreach(o, key, v) {
        if (config_provider_member(p, key, v, at, err, errlen) < 0) return -1;
    }
    if (!p->name) return buf_err(err, errlen, "%s.name is required", at);
    if (!config_name_valid(p->name, strlen(p->name)))
        return buf_err(err, errlen, "%s.name must be 1+ characters of [A-Za-z0-9._:-]", at);
    if (!p->base_url) return buf_err(err, errlen, "%s.base_url is required", at);
    if (!config_http_url_valid(p->base_url))
        return buf_err(err, errlen, "%s.base_url must be an http:// or https:// URL", at);
    config_strip_slash(p->base_url);
    if (!p->models) {
        p->models = xcalloc(1, sizeof(char *));
        p->models[p->nmodels++] = xstrdup("*");
    }
    if (p->api_key_env && p->api_key_file)
        return buf_err(err, errlen, "%s: set api_key_env or api_key_file, not both", at);
    int rc = 0;
    if (!c->no_secrets && (p->api_key_env || p->api_key_file)) {
        char *what = xasprintf("%s.%s", at, p->api_key_env ? "api_key_env" : "api_key_file");
        rc = p->api_key_env ? config_provider_key_env(p, what, err, errlen)
                            : config_provider_key_file(p, what, err, errlen);
        free(what);
    }
    return rc;
}

static int config_providers_json(config *c, json_object *v, const char *file, char *err,
                                 size_t errlen) {
    if (!json_object_is_type(v, json_type_array))
        return buf_err(err, errlen, "%s: providers must be an array of objects", file);
    size_t n = json_object_array_length(v);
    /* Allocated up front, so config_free() releases a half-parsed list. */
    c->providers = xcalloc(n, sizeof(provider_cfg));
    c->nproviders = (int)n;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *at = xasprintf("%s: providers[%zu]", file, i);
        rc = config_provider_parse(c, &c->providers[i], json_object_array_get_idx(v, i), at, err,
                                   errlen);
        for (size_t k = 0; rc == 0 && k < i; k++)
            if (!strcmp(c->providers[k].name, c->providers[i].name))
                rc = buf_err(err, errlen, "%s.name \"%s\" is already used by providers[%zu]",
                                at, c->providers[i].name, k);
        free(at);
    }
    return rc;
}

/* The provider used when the file defines none: OpenAI, or whatever
 * OPENAI_BASE_URL points at, with OPENAI_API_KEY. */
static int config_default_provider(config *c, char *err, size_t errlen) {
    const char *url = getenv("OPENAI_BASE_URL");
    if (!url || !*url) url = "https://api.openai.com/v1";
    else if (!config_http_url_valid(url))
        return buf_err(err, errlen, "OPENAI_BASE_URL: must be an http:// or https:// URL");
    free(c->providers);
    c->providers = xcalloc(1, sizeof(provider_cfg));
    c->nproviders = 1;
    provider_cfg *p = &c->providers[0];
    p->name = xstrdup("default");
    p->base_url = xstrdup(url);
    config_strip_slash(p->base_url);
    p->api_key_env = xstrdup("OPENAI_API_KEY");
    p->models = xcalloc(1, sizeof(char *));
    p->models[p->nmodels++] = xstrdup("*");
    return c->no_secrets ? 0 : config_provider_key_env(p, "default provider", err, errlen);
}

/* ---- the layers -------------------------------------------------------- */

static void config_defaults(config *c) {
    memset(c, 0, sizeof *c);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->redis_url = xstrdup("redis://127.0.0.1:6379/0");
    c->prefix = xstrdup("chatq");
    c->workers = cpus < 1 ? 1 : cpus > 1024 ? 1024 : (int)cpus;
    c->concurrency = 256;
    c->queues = xcalloc(1, sizeof(char *));
    c->queues[0] = xstrdup("default");
    c->nqueues = 1;
    c->log_level = xstrdup("info");
    c->timeout_ms = 600000;
    c->idle_timeout_ms = 60000;
    c->connect_timeout_ms = 10000;
    c->max_attempts = 3;
    c->result_ttl_s = 86400;
    c->max_job_bytes = 1048576;
    c->max_response_bytes = 16777216;
    c->retry_base_ms = 500;
    c->retry_max_ms = 30000;
    c->shutdown_grace_ms = 30000;
    c->rate_limit_wait_ms = 300000;
}

/* One top-level member of the file. */
static int config_file_member(config *c, const char *file, const char *key, json_object *v,
                              char *err, size_t errlen) {
    const config_key *k = config_key_find(key);
    if (!k) return buf_err(err, errlen, "%s: unknown key \"%.64s\"", file, key);
    char *what = xasprintf("%s: %s", file, key);
    int rc = 0;
    switch (k->kind) {
    case CK_REDIS:
    case CK_PREFIX:
    case CK_LEVEL:
        if (!json_object_is_type(v, json_type_string))
            rc = buf_err(err, errlen, "%s must be a string", what);
        else
            rc = config_set_string(c, k->kind, json_object_get_string(v), what, err, errlen);
        break;
    case CK_INT:
    case CK_LL:
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < k->min ||
            json_object_get_int64(v) > k->max)
            rc = buf_err(err, errlen, "%s must be an integer %lld..%lld", what, k->min,
                            k->max);
        else
            config_set_num(c, k, json_object_get_int64(v));
        break;
    case CK_QUEUES:
        rc = config_queues_json(c, v, what, err, errlen);
        break;
    case CK_METRICS:
        if (json_object_is_type(v, json_type_null))
            rc = config_set_metrics(c, "", what, err, errlen);
        else if (!json_object_is_type(v, json_type_string))
            rc = buf_err(err, errlen, "%s must be a string or null", what);
        else
            rc = config_set_metrics(c, json_object_get_string(v), what, err, errlen);
        break;
    case CK_PROVIDERS:
        rc = config_providers_json(c, v, file, err, errlen);
        break;
    case CK_FALLBACKS:
        rc = config_fallbacks_json(c, v, what, err, errlen);
        break;
    }
    free(what);
    return rc;
}

/* Parses the file's text: one JSON object, comments allowed. */
static int config_parse_text(const char *file, const char *text, size_t len, json_object **out,
                             char *err, size_t errlen) {
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i])) i++;
    if (i == len) { /* an empty file means "no settings" */
        *out = json_object_new_object();
        return 0;
    }
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (e == json_tokener_success)
        for (i = end; i < len; i++)
            if (!isspace((unsigned char)text[i])) {
                e = json_tokener_error_parse_unexpected;
                end = i;
                break;
            }
    if (e != json_tokener_success || !json_object_is_type(o, json_type_object)) {
        int line = 1;
        for (i = 0; i < end && i < len; i++) line += text[i] == '\n';
        json_object_put(o);
        if (e == json_tokener_continue) e = json_tokener_error_parse_eof;
        if (e != json_tokener_success)
            return buf_err(err, errlen, "%s: not valid JSON: %s (line %d)", file,
                              json_tokener_error_desc(e), line);
        return buf_err(err, errlen, "%s: must hold one JSON object", file);
    }
    *out = o;
    return 0;
}

/* Which file to load: --config, $CHATQ_CONFIG, the default path if present.
 * Returns 0 with *path (NULL = none) or -1 when a named file is missing. */
static int config_pick_file(const config_args *a, const char **path, char *err, size_t errlen) {
    const char *env = getenv("CHATQ_CONFIG");
    *path = NULL;
    if (a && a->config_file) {
        if (!*a->config_file) return buf_err(err, errlen, "--config: empty file name");
        *path = a->config_file;
    } else if (env && *env) {
        *path = env;
    } else if (access(CONFIG_DEFAULT_FILE, F_OK) == 0) {
        *path = CONFIG_DEFAULT_FILE;
    }
    return 0;
}

/* The file layer from the file's text; `path` names it in messages. The
 * text is kept (c->file_text) for config_snapshot(). */
static int config_apply_text(config *c, const char *path, const char *text, size_t len,
                             char *err, size_t errlen) {
    json_object *root;
    if (config_parse_text(path, text, len, &root, err, errlen) < 0) return -1;
    c->file = xstrdup(path);
    c->file_text = xstrndup(text, len);
    c->file_len = len;
    json_object_object_foreach(root, key, v) {
        if (config_file_member(c, path, key, v, err, errlen) < 0) {
            json_object_put(root);
            return -1;
        }
    }
    json_object_put(root);
    return 0;
}

static int config_apply_file(config *c, const char *path, char *err, size_t errlen) {
    char *text;
    size_t len;
    int rc = config_slurp(path, CONFIG_MAX_FILE, &text, &len);
    if (rc)
        return buf_err(err, errlen, "%s: cannot read: %s", path,
                          config_slurp_error(rc, "file too large"));
    rc = config_apply_text(c, path, text, len, err, errlen);
    free(text);
    return rc;
}

static int config_apply_env(config *c, char *err, size_t errlen) {
    const char *v = getenv("CHATQ_REDIS_URL");
    if (v && *v && config_set_string(c, CK_REDIS, v, "CHATQ_REDIS_URL:", err, errlen) < 0)
        return -1;
    v = getenv("CHATQ_PREFIX");
    if (v && *v && config_set_string(c, CK_PREFIX, v, "CHATQ_PREFIX:", err, errlen) < 0)
        return -1;
    return 0; /* OPENAI_* feed the default provider, see config_default_provider() */
}

/* --workers / --concurrency: the same ranges as the file's keys. */
static int config_flag_num(config *c, const char *key, const char *flag, const char *text,
                           char *err, size_t errlen) {
    const config_key *k = config_key_find(key);
    long long v;
    if (config_parse_ll(text, &v) < 0 || v < k->min || v > k->max)
        return buf_err(err, errlen, "%s: must be an integer %lld..%lld", flag, k->min, k->max);
    config_set_num(c, k, v);
    return 0;
}

static int config_apply_flags(config *c, const config_args *a, char *err, size_t errlen) {
    if (!a) return 0;
    if (a->redis_url && config_set_string(c, CK_REDIS, a->redis_url, "--redis:", err, errlen) < 0)
        return -1;
    if (a->workers && config_flag_num(c, "workers", "--workers", a->workers, err, errlen) < 0)
        return -1;
    if (a->concurrency &&
        config_flag_num(c, "concurrency", "--concurrency", a->concurrency, err, errlen) < 0)
        return -1;
    if (a->log_level &&
        config_set_string(c, CK_LEVEL, a->log_level, "--log-level:", err, errlen) < 0)
        return -1;
    if (a->metrics && config_set_metrics(c, a->metrics, "--metrics:", err, errlen) < 0)
        return -1;
    if (a->queues) {
        char **list = NULL;
        int n = 0;
        if (config_queues_from_csv(a->queues, &list, &n, "--queues:", err, errlen) < 0) {
            config_free_list(list, n);
            return -1;
        }
        config_free_list(c->queues, c->nqueues);
        c->queues = list;
        c->nqueues = n;
    }
    return 0;
}

/* The layers above the file (environment, flags, the default provider) and
 * the checks across keys; shared by config_load and config_load_snapshot. */
static int config_finish(config *c, const config_args *args, char *err, size_t errlen) {
    if (config_apply_env(c, err, errlen) < 0 || config_apply_flags(c, args, err, errlen) < 0 ||
        (c->nproviders == 0 && config_default_provider(c, err, errlen) < 0))
        return -1;
    const char *file = c->file ? c->file : "", *sep = c->file ? ": " : "";
    for (int i = 0; i < c->nfallbacks; i++) {
        for (int j = 0; j < c->fallbacks[i].nsteps; j++) {
            const char *pn = c->fallbacks[i].steps[j].provider;
            const char *mn = c->fallbacks[i].steps[j].model;
            if (pn && !config_provider(c, pn))
                return buf_err(err, errlen, "%s%sfallbacks.%s[%d]: no provider named \"%s\"",
                                  file, sep, c->fallbacks[i].pattern, j, pn);
            if (!pn && !config_route(c, mn))
                return buf_err(err, errlen,
                                  "%s%sfallbacks.%s[%d]: no provider serves model \"%s\"", file,
                                  sep, c->fallbacks[i].pattern, j, mn);
        }
    }
    if (c->retry_base_ms > c->retry_max_ms)
        return buf_err(err, errlen, "%s%sretry_base_ms (%lld) must not exceed retry_max_ms (%lld)",
                          file, sep, c->retry_base_ms, c->retry_max_ms);
    return 0;
}

int config_load(config *c, const config_args *args, char *err, size_t errlen) {
    const char *file;
    config_defaults(c);
    c->no_secrets = args ? args->no_secrets : 0;
    if (config_pick_file(args, &file, err, errlen) < 0 ||
        (file && config_apply_file(c, file, err, errlen) < 0) ||
        config_finish(c, args, err, errlen) < 0) {
        config_free(c);
        return -1;
    }
    return 0;
}

/* ---- snapshots ---------------------------------------------------------- */

char *config_snapshot(const config *c, size_t *len) {
    buf b = {0};
    buf_puts(&b, "{\"version\":1,\"file\":");
    if (c->file && c->file_text)
        buf_json_str(&b, c->file, strlen(c->file));
    else
        buf_puts(&b, "null");
    buf_puts(&b, ",\"text\":");
    buf_json_str(&b, c->file_text ? c->file_text : "", c->file_text ? c->file_len : 0);
    /* the keys last, so that growing the buffer rarely leaves a copy of one
     * in a freed block */
    buf_puts(&b, ",\"keys\":{");
    int n = 0;
    for (int i = 0; i < c->nproviders; i++) {
        const provider_cfg *p = &c->providers[i];
        if (!p->api_key) continue;
        if (n++) buf_putc(&b, ',');
        buf_json_str(&b, p->name, strlen(p->name));
        buf_putc(&b, ':');
        buf_json_str(&b, p->api_key, strlen(p->api_key));
    }
    buf_puts(&b, "}}");
    *len = b.len;
    return buf_steal(&b);
}

void config_snapshot_free(char *snap, size_t len) {
    if (!snap) return;
    explicit_bzero(snap, len);
    free(snap);
}

/* Takes the keys of the snapshot's "keys" object: every provider's key is
 * the snapshot's or none, whatever the environment says. */
static int config_snapshot_keys(config *c, json_object *keys, char *err, size_t errlen) {
    for (int i = 0; i < c->nproviders; i++) {
        provider_cfg *p = &c->providers[i];
        xfree_secret(p->api_key);
        p->api_key = NULL;
        json_object *k;
        if (!keys || !json_object_object_get_ex(keys, p->name, &k)) continue;
        if (!json_object_is_type(k, json_type_string))
            return buf_err(err, errlen, "config snapshot: the key of provider %s is not a string",
                              p->name);
        size_t n = (size_t)json_object_get_string_len(k);
        p->api_key = xstrndup(json_object_get_string(k), n);
        if (strlen(p->api_key) != n || config_key_clean(p->api_key) < 0)
            return buf_err(err, errlen, "config snapshot: the key of provider %s holds control "
                              "characters", p->name);
    }
    return 0;
}

int config_load_snapshot(config *c, const char *snap, size_t len, const config_args *args,
                         char *err, size_t errlen) {
    json_object *root = NULL, *v;
    const char *file = NULL, *text = "";
    size_t text_len = 0;
    config_defaults(c);
    json_tokener *tok = json_tokener_new();
    root = json_tokener_parse_ex(tok, snap, (int)len);
    int ok = root && json_tokener_get_error(tok) == json_tokener_success &&
             json_tokener_get_parse_end(tok) == len && json_object_is_type(root, json_type_object) &&
             json_object_object_get_ex(root, "version", &v) && json_object_get_int(v) == 1 &&
             json_object_object_get_ex(root, "text", &v) && json_object_is_type(v, json_type_string);
    json_tokener_free(tok);
    if (!ok) {
        json_object_put(root);
        config_free(c);
        return buf_err(err, errlen, "config snapshot: not a chatq configuration snapshot");
    }
    text = json_object_get_string(v);
    text_len = (size_t)json_object_get_string_len(v);
    if (json_object_object_get_ex(root, "file", &v) && json_object_is_type(v, json_type_string))
        file = json_object_get_string(v);
    json_object *keys = NULL;
    json_object_object_get_ex(root, "keys", &keys);
    if (keys && !json_object_is_type(keys, json_type_object)) keys = NULL;
    /* no_secrets while building: no key is read from the environment or a
     * key file; the snapshot's keys are put in afterwards */
    c->no_secrets = 1;
    int rc = (file && config_apply_text(c, file, text, text_len, err, errlen) < 0) ||
             config_finish(c, args, err, errlen) < 0 ||
             config_snapshot_keys(c, keys, err, errlen) < 0;
    json_object_put(root);
    if (rc) {
        config_free(c);
        return -1;
    }
    c->no_secrets = args ? args->no_secrets : 0;
    return 0;
}

/* ---- lookups ----------------------------------------------------------- */

const provider_cfg *config_provider(const config *c, const char *name) {
    for (int i = 0; name && i < c->nproviders; i++)
        if (!strcmp(c->providers[i].name, name)) return &c->providers[i];
    return NULL;
}

const provider_cfg *config_route(const config *c, const char *model) {
    for (int i = 0; model && i < c->nproviders; i++)
        for (int m = 0; m < c->providers[i].nmodels; m++)
            if (fnmatch(c->providers[i].models[m], model, 0) == 0) return &c->providers[i];
    return NULL;
}

/* ---- dump -------------------------------------------------------------- */

/* A copy of url with the password of its user info ("scheme://user:PASS@")
 * and any password=... query value replaced by "***". */
static char *config_mask_url(const char *url) {
    buf b = {0};
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++)
        if (*p == '@') at = p;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon) {
        buf_append(&b, url, (size_t)(colon + 1 - url));
        buf_puts(&b, "***");
        buf_append(&b, at, (size_t)(auth + alen - at));
    } else {
        buf_append(&b, url, (size_t)(auth + alen - url));
    }
    const char *rest = auth + alen;
    const char *q = strchr(rest, '?');
    if (!q) {
        buf_puts(&b, rest);
        return buf_steal(&b);
    }
    buf_append(&b, rest, (size_t)(q + 1 - rest));
    for (const char *p = q + 1; *p;) {
        size_t plen = strcspn(p, "&#");
        if (!strncmp(p, "password=", 9) && plen >= 9) {
            buf_puts(&b, "password=***");
        } else {
            buf_append(&b, p, plen);
        }
        p += plen;
        if (*p) buf_putc(&b, *p++);
    }
    return buf_steal(&b);
}

/* Header values that are likely credentials are masked too. */
static int config_header_secret(const char *line) {
    static const char *words[] = {"auth", "key", "token", "secret", "cookie", "password"};
    size_t n = strcspn(line, ":");
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t w = strlen(words[i]);
        for (size_t k = 0; k + w <= n; k++)
            if (!strncasecmp(line + k, words[i], w)) return 1;
    }
    return 0;
}

static json_object *config_str_or_null(const char *s) {
    return s ? json_object_new_string(s) : NULL;
}

static json_object *config_list_json(char **v, int n) {
    json_object *a = json_object_new_array();
    for (int i = 0; i < n; i++) json_object_array_add(a, json_object_new_string(v[i]));
    return a;
}

/* A price as the operator would write it (0.15, not 0.14999999999999999). */
static json_object *config_price_json(double v) {
    char s[32];
    snprintf(s, sizeof s, "%.10g", v);
    return json_object_new_double_s(v, s);
}

static json_object *config_provider_json(const provider_cfg *p) {
    json_object *o = json_object_new_object();
    char *masked = config_mask_url(p->base_url);
    json_object_object_add(o, "name", json_object_new_string(p->name));
    json_object_object_add(o, "base_url", json_object_new_string(masked));
    free(masked);
    json_object_object_add(o, "api_key_env", config_str_or_null(p->api_key_env));
    json_object_object_add(o, "api_key_file", config_str_or_null(p->api_key_file));
    json_object_object_add(o, "api_key", p->api_key ? json_object_new_string("***") : NULL);
    json_object_object_add(o, "models", config_list_json(p->models, p->nmodels));
    json_object *h = json_object_new_object();
    for (int i = 0; i < p->nheaders; i++) {
        const char *line = p->headers[i];
        size_t n = strcspn(line, ":");
        char *name = xstrndup(line, n);
        const char *val = line[n] ? line + n + 2 : "";
        json_object_object_add(h, name,
                               json_object_new_string(config_header_secret(line) ? "***" : val));
        free(name);
    }
    json_object_object_add(o, "headers", h);
    json_object_object_add(o, "max_connections", json_object_new_int(p->max_connections));
    json_object_object_add(o, "connect_timeout_ms", json_object_new_int64(p->connect_timeout_ms));
    json_object_object_add(o, "timeout_ms", json_object_new_int64(p->timeout_ms));
    json_object_object_add(o, "idle_timeout_ms", json_object_new_int64(p->idle_timeout_ms));
    json_object *prices = json_object_new_object();
    for (int i = 0; i < p->nprices; i++) {
        json_object *pr = json_object_new_object();
        json_object_object_add(pr, "input", config_price_json(p->prices[i].input));
        json_object_object_add(pr, "cached_input", config_price_json(p->prices[i].cached_input));
        json_object_object_add(pr, "output", config_price_json(p->prices[i].output));
        json_object_object_add(prices, p->prices[i].pattern, pr);
    }
    json_object_object_add(o, "prices", prices);
    json_object *limits = json_object_new_object();
    for (int i = 0; i < p->nlimits; i++) {
        json_object *l = json_object_new_object();
        json_object_object_add(l, "rpm", json_object_new_int64(p->limits[i].rpm));
        json_object_object_add(l, "tpm", json_object_new_int64(p->limits[i].tpm));
        json_object_object_add(limits, p->limits[i].pattern, l);
    }
    json_object_object_add(o, "limits", limits);
    return o;
}

const price_cfg *config_price(const provider_cfg *p, const char *model) {
    for (int i = 0; p && model && i < p->nprices; i++)
        if (fnmatch(p->prices[i].pattern, model, 0) == 0) return &p->prices[i];
    return NULL;
}

const fallback_cfg *config_fallbacks(const config *c, const char *model) {
    for (int i = 0; model && i < c->nfallbacks; i++)
        if (fnmatch(c->fallbacks[i].pattern, model, 0) == 0) return &c->fallbacks[i];
    return NULL;
}

char *config_dump(const config *c) {
    json_object *o = json_object_new_object();
    char *masked = config_mask_url(c->redis_url);
    json_object_object_add(o, "file", config_str_or_null(c->file));
    json_object_object_add(o, "redis_url", json_object_new_string(masked));
    free(masked);
    json_object_object_add(o, "prefix", json_object_new_string(c->prefix));
    for (size_t i = 0; i < sizeof config_keys / sizeof config_keys[0]; i++) {
        const config_key *k = &config_keys[i];
        const char *field = (const char *)c + k->off;
        if (k->kind == CK_INT)
            json_object_object_add(o, k->name, json_object_new_int(*(const int *)field));
        else if (k->kind == CK_LL)
            json_object_object_add(o, k->name, json_object_new_int64(*(const long long *)field));
        else if (k->kind == CK_QUEUES)
            json_object_object_add(o, k->name, config_list_json(c->queues, c->nqueues));
        else if (k->kind == CK_LEVEL)
            json_object_object_add(o, k->name, json_object_new_string(c->log_level));
        else if (k->kind == CK_METRICS)
            json_object_object_add(o, k->name, config_str_or_null(c->metrics));
    }
    json_object *fb = json_object_new_object();
    for (int i = 0; i < c->nfallbacks; i++) {
        json_object *steps = json_object_new_array();
        for (int j = 0; j < c->fallbacks[i].nsteps; j++) {
            json_object *st = json_object_new_object();
            json_object_object_add(st, "provider", config_str_or_null(c->fallbacks[i].steps[j].provider));
            json_object_object_add(st, "model", config_str_or_null(c->fallbacks[i].steps[j].model));
            json_object_array_add(steps, st);
        }
        json_object_object_add(fb, c->fallbacks[i].pattern, steps);
    }
    json_object_object_add(o, "fallbacks", fb);
    json_object *ps = json_object_new_array();
    for (int i = 0; i < c->nproviders; i++)
        json_object_array_add(ps, config_provider_json(&c->providers[i]));
    json_object_object_add(o, "providers", ps);
    char *text = xstrdup(json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return text;
}

/* ---- freeing ----------------------------------------------------------- */

static void config_provider_free(provider_cfg *p) {
    free(p->name);
    free(p->base_url);
    free(p->api_key_env);
    free(p->api_key_file);
    xfree_secret(p->api_key);
    config_free_list(p->models, p->nmodels);
    config_free_list(p->headers, p->nheaders);
    for (int i = 0; i < p->nprices; i++) free(p->prices[i].pattern);
    free(p->prices);
    for (int i = 0; i < p->nlimits; i++) free(p->limits[i].pattern);
    free(p->limits);
}

void config_free(config *c) {
    if (!c) return;
    free(c->file);
    if (c->file_text) { /* may hold header values that are secrets */
        explicit_bzero(c->file_text, c->file_len);
        free(c->file_text);
    }
    xfree_secret(c->redis_url); /* may hold a password */
    free(c->prefix);
    config_free_list(c->queues, c->nqueues);
    free(c->log_level);
    free(c->metrics);
    for (int i = 0; i < c->nproviders; i++) config_provider_free(&c->providers[i]);
    free(c->providers);
    for (int i = 0; i < c->nfallbacks; i++) {
        for (int j = 0; j < c->fallbacks[i].nsteps; j++) {
            free(c->fallbacks[i].steps[j].provider);
            free(c->fallbacks[i].steps[j].model);
        }
        free(c->fallbacks[i].steps);
        free(c->fallbacks[i].pattern);
    }
    free(c->fallbacks);
    memset(c, 0, sizeof *c);
}

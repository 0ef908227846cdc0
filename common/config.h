/* config.h — chatq's configuration (docs/protocol.md §2).
 *
 * Precedence, lowest first: built-in defaults, the JSON config file (comments
 * allowed), the environment, the command-line flags. config_load() applies
 * them in that order and validates the result.
 *
 * File: --config FILE, else $CHATQ_CONFIG, else /etc/chatq/chatq.json when it
 * exists, else none (defaults only). Keys (all optional; an unknown key is an
 * error naming it, so a typo never passes silently):
 *   redis_url, prefix, workers, concurrency, queues (array or "a,b,c"),
 *   log_level, timeout_ms, idle_timeout_ms, connect_timeout_ms, max_attempts,
 *   result_ttl_s, max_job_bytes, max_response_bytes, retry_base_ms,
 *   retry_max_ms, shutdown_grace_ms, rate_limit_wait_ms, metrics ("HOST:PORT"),
 *   fallbacks: {model glob: [{provider?, model?}, ...]},
 *   providers: [{name, base_url, api_key_env, api_key_file, models: [globs],
 *                headers: {name: value}, max_connections, connect_timeout_ms,
 *                timeout_ms, idle_timeout_ms,
 *                prices: {model glob: {input, cached_input?, output}},
 *                limits: {model glob: {rpm?, tpm?}}}]
 * Environment: CHATQ_REDIS_URL, CHATQ_PREFIX, OPENAI_BASE_URL, OPENAI_API_KEY.
 * With no providers in the file, there is one provider named "default":
 * base_url $OPENAI_BASE_URL (default https://api.openai.com/v1), key from
 * $OPENAI_API_KEY, models ["*"].
 * api_key_file: a relative path is read from $CREDENTIALS_DIRECTORY (systemd
 * LoadCredential=) when that is set; trailing whitespace is dropped.
 *
 * Ownership: config_load() fills a caller-owned struct; config_free()
 * releases what it allocated. Secrets live only in provider_cfg.api_key and
 * redis_url (config_dump() masks both) and in a snapshot (config_snapshot()),
 * which goes to a worker through a pipe and nowhere else. */
#ifndef CHATQ_CONFIG_H
#define CHATQ_CONFIG_H

#include <stddef.h>

/* redis_url is a URL redis_target_parse() accepts; callers that connect
 * parse it with that header, included here for them. */
#include "common/redisurl.h"

/* A price, in USD per million tokens, for the models matching `pattern`. */
typedef struct price_cfg {
    char *pattern;
    double input;
    double cached_input;     /* defaults to input */
    double output;
} price_cfg;

/* A rate limit shared by every worker on every host: requests and tokens
 * per minute (0 = none) for the models matching `pattern`. Every limit whose
 * pattern matches a job's model applies (one shared bucket each). */
typedef struct limit_cfg {
    char *pattern;
    long long rpm;
    long long tpm;
} limit_cfg;

typedef struct provider_cfg {
    char *name;
    char *base_url;          /* no trailing slash */
    char *api_key_env;       /* NULL when not set */
    char *api_key_file;      /* NULL when not set */
    char *api_key;           /* the resolved secret, NULL when none */
    char **models;           /* glob patterns (fnmatch), default {"*"} */
    int nmodels;
    char **headers;          /* extra headers as "Name: value" */
    int nheaders;
    int max_connections;     /* per host; 0 = no limit */
    long long connect_timeout_ms; /* 0 = the global value */
    long long timeout_ms;         /* 0 = the global value */
    long long idle_timeout_ms;    /* 0 = the global value */
    price_cfg *prices;       /* "prices": {glob: {input, cached_input, output}} */
    int nprices;
    limit_cfg *limits;       /* "limits": {glob: {rpm, tpm}} */
    int nlimits;
} provider_cfg;

/* One step of a fallback chain: another provider and/or model (NULL = the
 * same model; provider NULL = routed by model). */
typedef struct fallback_step {
    char *provider;
    char *model;
} fallback_step;

/* "fallbacks": {glob: [{provider, model}...]}: what to try, in order, when a
 * job for a model matching `pattern` ends in a retryable failure after its
 * retries. */
typedef struct fallback_cfg {
    char *pattern;
    fallback_step *steps;
    int nsteps;
} fallback_cfg;

typedef struct config {
    char *file;                   /* config file loaded, NULL when none */
    char *redis_url;              /* redis://127.0.0.1:6379/0 */
    char *prefix;                 /* chatq */
    int workers;                  /* number of CPUs */
    int concurrency;              /* 256 */
    char **queues;                /* {"default"}, priority order */
    int nqueues;
    char *log_level;              /* info */
    long long timeout_ms;         /* 600000: whole-job deadline per attempt */
    long long idle_timeout_ms;    /* 60000: stream idle timeout */
    long long connect_timeout_ms; /* 10000 */
    int max_attempts;             /* 3 */
    long long result_ttl_s;       /* 86400 */
    long long max_job_bytes;      /* 1048576 */
    long long max_response_bytes; /* 16777216: larger answers fail too_large */
    long long retry_base_ms;      /* 500 */
    long long retry_max_ms;       /* 30000 */
    long long shutdown_grace_ms;  /* 30000 */
    long long rate_limit_wait_ms; /* 300000: give up with rate_limited after */
    char *metrics;                /* "HOST:PORT" chatqd serves /metrics on; NULL = off */
    fallback_cfg *fallbacks;
    int nfallbacks;
    provider_cfg *providers;
    int nproviders;
    int no_secrets;               /* from config_args: API keys were not read */
    int quarantine;               /* chatq-worker --quarantine: runs suspect jobs */
    char *file_text;              /* the file's text as read and validated (for */
    size_t file_len;              /*   config_snapshot); NULL when no file */
} config;

/* Command-line values, each NULL when the flag was not given. */
typedef struct config_args {
    const char *config_file;
    const char *redis_url;
    const char *workers;
    const char *concurrency;
    const char *queues;
    const char *log_level;
    const char *metrics;  /* --metrics HOST:PORT ("" = off) */
    int no_secrets;   /* do not read API keys (the CLI needs none) */
} config_args;

/* Returns 0, or -1 with a one-line message in err (naming the file, key or
 * flag at fault). On -1 the struct is freed already. */
int config_load(config *c, const config_args *args, char *err, size_t errlen);

/* A snapshot of a loaded configuration, for chatqd to hand down to a worker
 * (docs/protocol.md §2: workers run with the configuration chatqd validated, never with a
 * file that may have changed since): the file's text as it was read, its
 * path, and the API keys that were resolved from api_key_env or
 * api_key_file. JSON text (malloc'd, *len bytes; free it with
 * config_snapshot_free, which wipes it: it holds the keys):
 *   {"version": 1, "file": PATH or null, "text": TEXT, "keys": {PROVIDER: KEY}}
 * The environment and the flags are not in it: the worker has the same
 * environment (less the key variables) and gets the effective flags. */
char *config_snapshot(const config *c, size_t *len);
void config_snapshot_free(char *snap, size_t len);

/* Builds the configuration from a snapshot instead of a file: defaults, the
 * snapshot's text (errors name its file), the environment, the flags; API
 * keys come from the snapshot only (never from the environment or a key
 * file). Returns 0, or -1 with a message in err (then c is freed already). */
int config_load_snapshot(config *c, const char *snap, size_t len, const config_args *args,
                         char *err, size_t errlen);

/* Splits a `metrics` value, "HOST:PORT" or "[IPv6]:PORT", into host (a
 * name or an address, without brackets; hostlen bytes at most, NUL
 * included) and port (1..65535). Returns 0, or -1 when s is not of that
 * form. */
int config_metrics_addr(const char *s, char *host, size_t hostlen, int *port);

/* Whether s[0..n) is a valid queue or provider name: 1 to n characters of
 * [A-Za-z0-9._:-], the characters Redis keys and logs take safely (a NUL
 * among the n bytes is not one). */
int config_name_valid(const char *s, size_t n);

/* The provider called `name`, or NULL. */
const provider_cfg *config_provider(const config *c, const char *name);
/* The first provider with a model pattern matching `model`, or NULL. */
const provider_cfg *config_route(const config *c, const char *model);

/* The price of `model` at provider p (first matching pattern), or NULL. */
const price_cfg *config_price(const provider_cfg *p, const char *model);
/* The fallback chain for `model` (first matching pattern), or NULL. */
const fallback_cfg *config_fallbacks(const config *c, const char *model);

/* The effective configuration as pretty JSON text (malloc'd), with secrets
 * masked: api keys as "***" (or null when none), a Redis password as "***". */
char *config_dump(const config *c);

void config_free(config *c);

#endif

/* policy.c — the decisions of a job's run; see policy.h.
 *
 * Every function here is pure: same arguments, same answer, nothing touched.
 * The one exception in spirit is curl_getdate(), a parser of HTTP dates. */
#include "worker/policy.h"

#include <ctype.h>
#include <curl/curl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* A delay in ms read from the network: at most POLICY_MAX_DELAY_MS, so it is
 * never converted with undefined behaviour and never asks for more than a
 * job would wait anyway. */
static long long policy_ms(double ms) {
    return ms > (double)POLICY_MAX_DELAY_MS ? POLICY_MAX_DELAY_MS : (long long)ms;
}

/* Reads "digits[.digits]" with spaces around, and nothing else, into *out.
 * strtod() alone would also take "-5", "inf", "nan", "0x10", "1e300" and
 * trailing garbage. Returns 0, or -1. */
static int policy_decimal(const char *s, double *out) {
    while (*s == ' ' || *s == '\t') s++;
    const char *p = s;
    while (isdigit((unsigned char)*p)) p++;
    if (p == s) return -1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) return -1;
        while (isdigit((unsigned char)*p)) p++;
    }
    const char *end = p;
    while (*p == ' ' || *p == '\t') p++;
    if (*p) return -1;
    char num[64];
    size_t n = (size_t)(end - s);
    if (n >= sizeof num) {
        *out = 1e300; /* more digits than any real delay has: huge */
        return 0;
    }
    memcpy(num, s, n);
    num[n] = '\0';
    *out = strtod(num, NULL);
    return 0;
}

int policy_status_retryable(int status) {
    return status == 408 || status == 409 || status == 429 || status >= 500;
}

int policy_stream_error_retryable(int code) {
    return code == 0 || policy_status_retryable(code);
}

policy_next policy_after_failure(int retryable, int aborting, int tries, int max_attempts) {
    if (!retryable || aborting) return POLICY_FAIL;
    return tries < max_attempts ? POLICY_RETRY : POLICY_FALLBACK;
}

long long policy_backoff_ms(long long base_ms, long long max_ms, int tries, uint32_t r) {
    long long cap = base_ms;
    for (int i = 1; i < tries && cap < max_ms; i++) cap *= 2;
    if (cap > max_ms) cap = max_ms;
    return cap > 0 ? (long long)(r % (unsigned long long)(cap + 1)) : 0;
}

long long policy_retry_delay_ms(long long retry_after_ms, int tries, long long base_ms,
                                long long max_ms, uint32_t r) {
    long long delay = retry_after_ms >= 0 ? retry_after_ms
                      : tries == 0        ? 0
                                          : policy_backoff_ms(base_ms, max_ms, tries, r);
    return delay > POLICY_MAX_DELAY_MS ? POLICY_MAX_DELAY_MS : delay;
}

long long policy_parse_retry_after(const char *value, long long now_ms) {
    double s;
    if (policy_decimal(value, &s) == 0) return policy_ms(s * 1000);
    /* An HTTP date starts with the day's name; anything that starts like a
     * number and was not one above ("-5", "1e3") is no date either. */
    const char *v = value;
    while (*v == ' ' || *v == '\t') v++;
    if (!isalpha((unsigned char)*v)) return -1;
    time_t when = curl_getdate(value, NULL);
    if (when <= 0) return -1;
    double d = (double)when * 1000 - (double)now_ms;
    return d > 0 ? policy_ms(d) : 0;
}

long long policy_parse_retry_after_ms(const char *value) {
    double ms;
    return policy_decimal(value, &ms) == 0 ? policy_ms(ms) : -1;
}

long long policy_parse_count(const char *value) {
    const char *s = value;
    while (*s == ' ' || *s == '\t') s++;
    const char *p = s;
    long long n = 0;
    while (isdigit((unsigned char)*p)) {
        int d = *p++ - '0';
        n = n > (LLONG_MAX - d) / 10 ? LLONG_MAX : n * 10 + d;
    }
    if (p == s) return -1;
    while (*p == ' ' || *p == '\t') p++;
    return *p ? -1 : n;
}

long long policy_shared_pause_ms(long long ms) {
    if (ms < 0) return 0;
    return ms > POLICY_MAX_SHARED_PAUSE_MS ? POLICY_MAX_SHARED_PAUSE_MS : ms;
}

long long policy_rate_wait_ms(long long wait, int token_limited, long long waited_ms,
                              long long limit_ms, uint32_t r) {
    if (wait <= 0) return 0;
    if (token_limited && wait > 200) wait = 200;
    if (waited_ms + wait > limit_ms) return -1;
    return wait + (long long)(r % (uint32_t)(wait / 10 + 2));
}

int policy_next_target(const config *cfg, const char *job_model, int step,
                       const provider_cfg **prov, const char **model) {
    const fallback_cfg *f = config_fallbacks(cfg, job_model);
    while (f && step + 1 < f->nsteps) {
        const fallback_step *st = &f->steps[++step];
        const char *m = st->model ? st->model : job_model;
        const provider_cfg *p = st->provider ? config_provider(cfg, st->provider)
                                             : config_route(cfg, m);
        if (!p) continue;
        *prov = p;
        *model = m;
        return step;
    }
    return -1;
}

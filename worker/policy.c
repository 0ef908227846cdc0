/* policy.c — the decisions of a job's run; see policy.h.
 *
 * Every function here is pure: same arguments, same answer, nothing touched.
 * The one exception in spirit is curl_getdate(), a parser of HTTP dates. */
#include "worker/policy.h"

#include <curl/curl.h>
#include <math.h>
#include <stdlib.h>

/* A delay in ms read from the network becomes a long long only when it is
 * finite and fits (about 285,000 years): anything larger is clamped there,
 * never converted with undefined behaviour. */
#define POLICY_HUGE_MS 9e15

static long long policy_ms(double ms) {
    return ms > POLICY_HUGE_MS ? (long long)POLICY_HUGE_MS : (long long)ms;
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
    char *end;
    double s = strtod(value, &end);
    if (end != value && isfinite(s) && s >= 0) return policy_ms(s * 1000);
    time_t when = curl_getdate(value, NULL);
    if (when <= 0) return -1;
    long long d = (long long)when * 1000 - now_ms;
    return d > 0 ? d : 0;
}

long long policy_parse_retry_after_ms(const char *value) {
    char *end;
    double ms = strtod(value, &end);
    return end != value && isfinite(ms) && ms >= 0 ? policy_ms(ms) : -1;
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

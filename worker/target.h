/* target.h — where a job's request goes, and what follows from that.
 *
 * A target is a provider and a model: the job's own (routed by its model, or
 * the provider it names), or a step of the fallback chain of its model
 * (config "fallbacks"). Moving to a target sets the body sent upstream (its
 * "model" is the target's), the shared rate-limit buckets that apply
 * (worker/ratelimit.h) and the estimate of the tokens the request takes from
 * them. The request's settings (timeouts, streaming) come from the job, the
 * provider and the configuration, in that order.
 *
 * Ownership: a target belongs to its jobrun; target_free() releases what it
 * holds. The provider is borrowed from the configuration. */
#ifndef CHATQ_TARGET_H
#define CHATQ_TARGET_H

#include <stddef.h>

#include "common/config.h"
#include "common/job.h"
#include "common/rconn.h"
#include "worker/ratelimit.h"
#include "worker/upstream.h"

typedef struct target {
    const provider_cfg *prov;  /* NULL until set: no provider serves the job */
    char *model;               /* the model asked of prov */
    int step;                  /* -1: the job's own target; else the fallback step */
    char *body;                /* the request body sent upstream */
    size_t body_len;
    rl_target rl;              /* the rate-limit buckets of (prov, model) */
    long long rl_tokens;       /* tokens the request takes from them (estimate,
                                  capped: rl_capped_tokens) */
} target;

/* An empty target (no provider yet, step -1). */
void target_init(target *t);
/* Points t at provider `prov` and model `model`; the job's body gets that
 * model. prefix: the key prefix, for the buckets. */
void target_set(target *t, const char *prefix, job *j, const provider_cfg *prov,
                const char *model);
/* Moves t to the next fallback of the job's model (policy_next_target).
 * Returns 1, or 0 when no step is left (t unchanged). */
int target_next(target *t, const config *cfg, job *j);
/* The HTTP request of job j at target t; the strings are borrowed from t, j
 * and cfg. */
void target_request(const target *t, const config *cfg, const job *j, upstream_request *out);
/* After an exchange at t: what the upstream said about its limits (a 429,
 * x-ratelimit-remaining-* of 0) holds the shared buckets back for at most
 * POLICY_MAX_SHARED_PAUSE_MS, which slows every worker down at once; an
 * HTTP error answer (http_status >= 400) also gives the request's token
 * estimate back, since the upstream refused it. Best effort, through rc
 * with the RATELIMIT script's sha. */
void target_feedback(const target *t, rconn *rc, const char *sha, int http_status,
                     const upstream_limits *l);
void target_free(target *t);

#endif

/* ratelimit.h — rate limits shared by every worker on every host.
 *
 * A provider's "limits" ({model glob: {rpm, tpm}}) become buckets in Redis,
 * one hash per matching pattern, P:ratelimit:<provider>:<pattern>, updated
 * only by the RATELIMIT script (common/scripts.c), so there is no
 * read-then-write race between workers. The algorithm is GCRA with no burst:
 * each bucket holds the theoretical arrival time of the next request (r) and
 * of the next token (t); a request is granted when neither lies in the future,
 * and then pushes r by 60000/rpm ms and t by tokens * 60000/tpm ms. Requests
 * are therefore spread evenly, never bunched at the start of a minute.
 *
 * Tokens are estimated before sending (request body bytes / 4, plus
 * max_tokens or max_completion_tokens) and corrected with the real usage
 * afterwards (rl_adjust). The estimate comes from the job, so it is capped
 * (rl_capped_tokens): at most RL_MAX_TOKENS, and at most one minute of the
 * smallest token limit that applies, so a job asking for max_tokens 1e15
 * cannot hold the buckets of its model for everyone for ages. A 429 or an
 * x-ratelimit-remaining-* of 0 pushes the buckets to when the upstream says
 * capacity returns (rl_push, for at most POLICY_MAX_SHARED_PAUSE_MS), which
 * slows every worker down at once.
 *
 * Ownership: an rl_target belongs to its jobrun; rl_target_free() releases
 * it. */
#ifndef CHATQ_RATELIMIT_H
#define CHATQ_RATELIMIT_H

#include "common/config.h"
#include "common/rconn.h"

/* The most tokens one request is ever charged before its usage is known. */
#define RL_MAX_TOKENS 1000000LL

typedef struct rl_target {
    char **keys;       /* one bucket per matching limit */
    double *req_iv;    /* ms per request, 0 = no request limit */
    double *tok_iv;    /* ms per token, 0 = no token limit */
    int n;
} rl_target;

/* Fills t with the buckets of `model` at provider p (t->n = 0: no limit). */
void rl_target_init(rl_target *t, const char *prefix, const provider_cfg *p, const char *model);
void rl_target_free(rl_target *t);

/* tokens clamped into [0, cap]: cap is RL_MAX_TOKENS, or the tokens per
 * minute of t's smallest token limit when that is lower. */
long long rl_capped_tokens(const rl_target *t, long long tokens);

/* Builds the "take" command for `tokens`; the reply is an integer: 0 =
 * granted, > 0 = milliseconds to wait before asking again. */
void rl_take_args(const rl_target *t, const char *sha, long long tokens, rargs *a);
/* Corrects the token buckets by delta tokens (best effort). */
void rl_adjust(rconn *rc, const char *sha, const rl_target *t, long long delta);
/* Holds the buckets back for delay_ms from now: requests ('r'), tokens ('t')
 * or both ("rt") (best effort). */
void rl_push(rconn *rc, const char *sha, const rl_target *t, long long delay_ms, const char *which);

/* Parses a duration as the x-ratelimit-reset-* headers give it ("6m0s",
 * "1s", "20ms", "0.5s", "1h2m"); returns ms, or -1. */
long long rl_parse_duration(const char *s);

#endif

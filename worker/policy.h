/* policy.h — the decisions of a job's run, as pure functions.
 *
 * Which failures are worth another attempt, how long to wait before it,
 * when a target (provider and model) is given up for the next fallback, what
 * the upstream's Retry-After asks for, how long to wait for rate-limit
 * capacity. jobrun.c carries them out; here they have no loop, no clock and
 * no randomness of their own (the time and a random number come in as
 * arguments), so the unit tests (tests/unit/test_policy.c) check them
 * directly.
 *
 * Terms: an attempt is one HTTP request; `tries` counts the attempts made at
 * the current target (0 right after moving to a fallback). */
#ifndef CHATQ_POLICY_H
#define CHATQ_POLICY_H

#include <stdint.h>

#include "common/config.h"

/* No wait before a retry is longer than this (10 minutes), whatever the
 * upstream's Retry-After says. */
#define POLICY_MAX_DELAY_MS 600000LL

/* No pause of the shared rate limits is longer than this (1 minute),
 * whatever one upstream answer asks for (the Retry-After of a 429, an
 * x-ratelimit-reset-*). Unlike a job's own retry delay, a pause holds back
 * every job of the model on every worker, so one answer — from a broken
 * proxy, or a hostile one — must not stop them all for long; if the
 * upstream still has no capacity after it, its next answer pauses again. */
#define POLICY_MAX_SHARED_PAUSE_MS 60000LL

/* 1 when an upstream's HTTP error status is worth another attempt: 408, 409,
 * 429 and 5xx; other 4xx would fail again the same way. */
int policy_status_retryable(int status);

/* 1 when an error object inside a 200 stream is worth another attempt: its
 * "code" is 0 (none, or not a number) or a retryable status. */
int policy_stream_error_retryable(int code);

/* What to do after a failed attempt. */
typedef enum policy_next {
    POLICY_RETRY,    /* another attempt at the same target */
    POLICY_FALLBACK, /* this target is used up: the next fallback, if any, else fail */
    POLICY_FAIL,     /* end the job failed */
} policy_next;

/* retryable: the failure is worth another attempt; aborting: the worker's
 * drain is over (no new attempt); tries: attempts made at the current
 * target; max_attempts (>= 1): the attempts a target gets. */
policy_next policy_after_failure(int retryable, int aborting, int tries, int max_attempts);

/* Full jitter: r (a uniform random number) mapped into [0, cap], where cap
 * is base_ms * 2^(tries-1), at most max_ms. */
long long policy_backoff_ms(long long base_ms, long long max_ms, int tries, uint32_t r);

/* The wait before the next attempt: the upstream's Retry-After when it gave
 * one (retry_after_ms >= 0), none for the first attempt at a new target
 * (tries == 0), else the backoff above; never over POLICY_MAX_DELAY_MS. */
long long policy_retry_delay_ms(long long retry_after_ms, int tries, long long base_ms,
                                long long max_ms, uint32_t r);

/* The delay a Retry-After header value asks for, in ms: a number of seconds
 * (digits, with an optional fraction) or an HTTP date (then relative to
 * now_ms; a date in the past is 0). -1 when the value is neither (negative,
 * "inf", "nan", "1e3", hex...). A longer delay reads as
 * POLICY_MAX_DELAY_MS: the header comes from the network. */
long long policy_parse_retry_after(const char *value, long long now_ms);
/* The delay a retry-after-ms header value (OpenAI, Azure) asks for: digits
 * with an optional fraction, at most POLICY_MAX_DELAY_MS; -1 otherwise. It
 * wins over Retry-After. */
long long policy_parse_retry_after_ms(const char *value);
/* A count from a header (x-ratelimit-remaining-*): digits only, spaces
 * around allowed; -1 otherwise (so "abc" never reads as 0 = "none left").
 * A count too large for a long long reads as LLONG_MAX. */
long long policy_parse_count(const char *value);
/* How long a pause of the shared rate limits that the upstream asked for
 * (ms) may be: at most POLICY_MAX_SHARED_PAUSE_MS, 0 for a negative one. */
long long policy_shared_pause_ms(long long ms);

/* The wait for rate-limit capacity after the RATELIMIT script answered
 * `wait` ms (0: granted). Returns 0 to send now, -1 when waiting would pass
 * limit_ms since the wait began (waited_ms ago: give the target up), else
 * the ms to wait before asking again: at most 200 when a token limit is
 * involved (other jobs' estimates, given back as they end, may free capacity
 * sooner), plus a jitter from r of up to a tenth, so the jobs waiting on one
 * bucket do not all ask at the same millisecond. */
long long policy_rate_wait_ms(long long wait, int token_limited, long long waited_ms,
                              long long limit_ms, uint32_t r);

/* The next fallback of a job that asked for `job_model`, after step `step`
 * (-1: the job's own target). Steps whose provider is not configured, or
 * whose model no provider serves, are skipped. Returns the step's index with
 * *prov and *model set (model borrowed from cfg or job_model), or -1 when no
 * step is left. */
int policy_next_target(const config *cfg, const char *job_model, int step,
                       const provider_cfg **prov, const char **model);

#endif

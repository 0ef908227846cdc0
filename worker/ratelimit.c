/* ratelimit.c — shared GCRA rate limits; see ratelimit.h. */
#include "worker/ratelimit.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/keys.h"
#include "common/scripts.h"

void rl_target_init(rl_target *t, const char *prefix, const provider_cfg *p, const char *model) {
    memset(t, 0, sizeof *t);
    if (!p || !model || p->nlimits == 0) return;
    t->keys = xcalloc((size_t)p->nlimits, sizeof *t->keys);
    t->req_iv = xcalloc((size_t)p->nlimits, sizeof *t->req_iv);
    t->tok_iv = xcalloc((size_t)p->nlimits, sizeof *t->tok_iv);
    for (int i = 0; i < p->nlimits; i++) {
        const limit_cfg *l = &p->limits[i];
        if (fnmatch(l->pattern, model, 0) != 0 || (l->rpm <= 0 && l->tpm <= 0)) continue;
        t->keys[t->n] = keys_ratelimit(prefix, p->name, l->pattern);
        t->req_iv[t->n] = l->rpm > 0 ? 60000.0 / (double)l->rpm : 0;
        t->tok_iv[t->n] = l->tpm > 0 ? 60000.0 / (double)l->tpm : 0;
        t->n++;
    }
}

void rl_target_free(rl_target *t) {
    for (int i = 0; i < t->n; i++) free(t->keys[i]);
    free(t->keys);
    free(t->req_iv);
    free(t->tok_iv);
    memset(t, 0, sizeof *t);
}

long long rl_capped_tokens(const rl_target *t, long long tokens) {
    long long cap = RL_MAX_TOKENS;
    for (int i = 0; i < t->n; i++) {
        if (t->tok_iv[i] <= 0) continue;
        double per_minute = floor(60000.0 / t->tok_iv[i] + 0.5); /* the tpm */
        if (per_minute < (double)cap) cap = per_minute < 1 ? 1 : (long long)per_minute;
    }
    if (tokens < 0) return 0;
    return tokens > cap ? cap : tokens;
}

/* Appends the whole command of call c: EVALSHA, the SHA, then its arguments. */
static void rl_call(const scripts_ratelimit_call *c, const char *sha, rargs *a) {
    rargs_adds(a, "EVALSHA");
    rargs_adds(a, sha);
    scripts_ratelimit_args(c, a);
}

/* The RATELIMIT call of `mode` for the buckets of t. */
static scripts_ratelimit_call rl_call_of(const rl_target *t, scripts_ratelimit_mode mode) {
    scripts_ratelimit_call c = {
        .mode = mode, .keys = t->keys, .nkeys = t->n, .req_iv = t->req_iv, .tok_iv = t->tok_iv};
    return c;
}

void rl_take_args(const rl_target *t, const char *sha, long long tokens, rargs *a) {
    scripts_ratelimit_call c = rl_call_of(t, SCRIPTS_RL_TAKE);
    c.tokens = tokens;
    rl_call(&c, sha, a);
}

void rl_adjust(rconn *rc, const char *sha, const rl_target *t, long long delta) {
    if (t->n == 0 || delta == 0) return;
    scripts_ratelimit_call c = rl_call_of(t, SCRIPTS_RL_ADJUST);
    c.tokens = delta;
    rargs a = {0};
    rl_call(&c, sha, &a);
    rconn_send(rc, NULL, NULL, a.argc, a.argv, a.lens);
    rargs_free(&a);
}

void rl_push(rconn *rc, const char *sha, const rl_target *t, long long delay_ms, const char *which) {
    if (t->n == 0) return;
    scripts_ratelimit_call c = rl_call_of(t, SCRIPTS_RL_PUSH);
    c.delay_ms = delay_ms;
    c.which = which;
    rargs a = {0};
    rl_call(&c, sha, &a);
    rconn_send(rc, NULL, NULL, a.argc, a.argv, a.lens);
    rargs_free(&a);
}

long long rl_parse_duration(const char *s) {
    double total = 0;
    int any = 0;
    while (*s == ' ') s++;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s) return -1;
        s = end;
        if (strncmp(s, "ms", 2) == 0) {
            total += v;
            s += 2;
        } else if (*s == 'h') {
            total += v * 3600000;
            s++;
        } else if (*s == 'm') {
            total += v * 60000;
            s++;
        } else if (*s == 's' || *s == '\0') {
            total += v * 1000; /* a bare number is seconds */
            if (*s) s++;
        } else {
            return -1;
        }
        any = 1;
        while (*s == ' ') s++;
    }
    /* nonsense (or more than a week) is ignored rather than trusted */
    return any && total >= 0 && total <= 7 * 86400000.0 ? (long long)total : -1;
}

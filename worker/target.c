/* target.c — a job's provider and model, and what follows from them; see
 * target.h.
 *
 * The token estimate is about 4 bytes a token for the whole request body,
 * plus what the answer may use (max_completion_tokens, else max_tokens),
 * capped by rl_capped_tokens(); the real usage corrects the buckets when the
 * job ends (rl_adjust). An attempt the upstream refused with an HTTP error
 * used no tokens: target_feedback() gives its estimate back at once, or a
 * job with an absurd max_tokens that the upstream refuses (400) would keep
 * the buckets charged, with no usage ever coming to correct them. */
#include "worker/target.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "worker/policy.h"

void target_init(target *t) {
    memset(t, 0, sizeof *t);
    t->step = -1;
}

/* What the job lets the answer use: max_completion_tokens, else max_tokens,
 * when a whole number >= 0 (1000.0 too); 0 otherwise. Held to RL_MAX_TOKENS
 * here already, so adding the body's share cannot overflow. */
static long long target_max_tokens(const job *j) {
    json_object *mt = NULL;
    if (!json_object_object_get_ex(j->body, "max_completion_tokens", &mt) &&
        !json_object_object_get_ex(j->body, "max_tokens", &mt))
        return 0;
    double v;
    if (json_object_is_type(mt, json_type_int)) {
        int64_t n = json_object_get_int64(mt);
        return n < 0 ? 0 : n > RL_MAX_TOKENS ? RL_MAX_TOKENS : n;
    }
    if (!json_object_is_type(mt, json_type_double)) return 0;
    v = json_object_get_double(mt);
    if (!(v >= 0)) return 0; /* negative or NaN */
    return v > (double)RL_MAX_TOKENS ? RL_MAX_TOKENS : (long long)v;
}

void target_set(target *t, const char *prefix, job *j, const provider_cfg *prov,
                const char *model) {
    t->prov = prov;
    if (!t->model || strcmp(t->model, model) != 0) {
        char *m = xstrdup(model); /* model may be t->model's own text */
        free(t->model);
        t->model = m;
        json_object_object_add(j->body, "model", json_object_new_string(model));
    }
    free(t->body);
    t->body = job_request_body(j);
    t->body_len = strlen(t->body);
    rl_target_free(&t->rl);
    rl_target_init(&t->rl, prefix, prov, model);
    t->rl_tokens = rl_capped_tokens(&t->rl, (long long)(t->body_len / 4) + target_max_tokens(j));
}

int target_next(target *t, const config *cfg, job *j) {
    const provider_cfg *prov;
    const char *model;
    int step = policy_next_target(cfg, j->model, t->step, &prov, &model);
    if (step < 0) return 0;
    t->step = step;
    target_set(t, cfg->prefix, j, prov, model);
    return 1;
}

void target_request(const target *t, const config *cfg, const job *j, upstream_request *out) {
    const provider_cfg *p = t->prov;
    memset(out, 0, sizeof *out);
    out->prov = p;
    out->body = t->body;
    out->body_len = t->body_len;
    out->stream = j->stream;
    out->timeout_ms = j->timeout_ms > 0   ? j->timeout_ms
                      : p->timeout_ms > 0 ? p->timeout_ms
                                          : cfg->timeout_ms;
    out->connect_timeout_ms = p->connect_timeout_ms > 0 ? p->connect_timeout_ms
                                                        : cfg->connect_timeout_ms;
    /* only a stream has an idle timeout: a plain answer comes all at once */
    if (j->stream)
        out->idle_timeout_ms = p->idle_timeout_ms > 0 ? p->idle_timeout_ms : cfg->idle_timeout_ms;
    out->max_response_bytes = cfg->max_response_bytes;
}

void target_feedback(const target *t, rconn *rc, const char *sha, int http_status,
                     const upstream_limits *l) {
    if (t->rl.n == 0) return;
    if (http_status >= 400) rl_adjust(rc, sha, &t->rl, -t->rl_tokens);
    if (http_status == 429)
        rl_push(rc, sha, &t->rl,
                policy_shared_pause_ms(l->retry_after_ms >= 0 ? l->retry_after_ms : 1000), "rt");
    if (l->remaining_requests == 0 && l->reset_requests_ms > 0)
        rl_push(rc, sha, &t->rl, policy_shared_pause_ms(l->reset_requests_ms), "r");
    if (l->remaining_tokens == 0 && l->reset_tokens_ms > 0)
        rl_push(rc, sha, &t->rl, policy_shared_pause_ms(l->reset_tokens_ms), "t");
}

void target_free(target *t) {
    free(t->model);
    free(t->body);
    rl_target_free(&t->rl);
    memset(t, 0, sizeof *t);
    t->step = -1;
}

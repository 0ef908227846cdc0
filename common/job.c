/* job.c — parsing and validating one job (docs/protocol.md §4), and the upstream body.
 *
 * job_parse_opts() checks the size first (an oversized job costs no parse),
 * then parses with jsonparse_strict(): strictjson_check() refuses a job that
 * is not strict JSON, or whose objects, arrays, values or nesting would cost
 * too much, before json-c builds anything. It then reads every field —
 * a field that keeps its rule is filled, one that breaks it is left
 * NULL/-1 — and each rule that fails calls job_fail(), which keeps only the
 * first message. So an invalid job still comes back with everything that
 * could safely be read, and the caller can store the failure under its id
 * and answer reply_to. A "\u0000" anywhere is refused last, so that one in a
 * named field is reported with the field's name; json-c would read
 * "victim\u0000x" as "victim", so a string field is compared with its C
 * length before anything else.
 *
 * The id is id, else custom_id, else made from the SHA1 of the text (only
 * when the job has neither field); an id or custom_id that is present but
 * unusable leaves j->id NULL.
 *
 * job_request_body() never changes j->body: it builds a new top-level object
 * that shares (by reference count) every member except "stream" and
 * "stream_options", so it can be called any number of times, costs no deep
 * copy, and keeps the members' order and their original text (json-c keeps
 * the source text of parsed doubles). Sharing touches the members' counts,
 * so one job must not be used from two threads at once. */
#include "common/job.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/keys.h"
#include "common/digest.h"
#include "common/jsonparse.h"
#include "common/random.h"

#define JOB_ID_RULE "1-128 characters of [A-Za-z0-9._:-]"

/* The state of one parse: the first failure's message goes to err. */
typedef struct job_check {
    int failed;
    char *err;
    size_t errlen;
} job_check;

/* Records the first failure only: later rules keep reading fields. */
static void job_fail(job_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void job_fail(job_check *c, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = 1;
    if (!c->err || !c->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
}

static const char *const job_status_names[] = {
    [JOB_QUEUED] = "queued",       [JOB_RUNNING] = "running", [JOB_SUCCEEDED] = "succeeded",
    [JOB_FAILED] = "failed",       [JOB_CANCELLED] = "cancelled",
};
#define JOB_NSTATUS ((int)(sizeof job_status_names / sizeof job_status_names[0]))

const char *job_status_name(job_status s) {
    return (int)s >= 0 && (int)s < JOB_NSTATUS ? job_status_names[s] : "unknown";
}

int job_status_parse(const char *s, job_status *out) {
    for (int i = 0; s && i < JOB_NSTATUS; i++)
        if (strcmp(s, job_status_names[i]) == 0) {
            *out = (job_status)i;
            return 0;
        }
    return -1;
}

int job_status_final(job_status s) {
    return s == JOB_SUCCEEDED || s == JOB_FAILED || s == JOB_CANCELLED;
}

int job_id_valid(const char *s) {
    if (!s) return 0;
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                 (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok || n >= JOB_ID_MAX) return 0;
    }
    return n >= 1;
}

/* "job-" + the first 12 bytes of `bytes` as 24 hex digits. */
static void job_id_of_bytes(const unsigned char bytes[12], char out[32]) {
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "job-", 4);
    for (size_t i = 0; i < 12; i++) {
        out[4 + 2 * i] = hex[bytes[i] >> 4];
        out[5 + 2 * i] = hex[bytes[i] & 15];
    }
    out[28] = '\0';
}

void job_id_from_text(const char *raw, size_t len, char out[32]) {
    char sha[41];
    digest_sha1_hex(raw, len, sha);
    memcpy(out, "job-", 4);
    memcpy(out + 4, sha, 24);
    out[28] = '\0';
}

void job_generate_id(char out[32]) {
    unsigned char r[12];
    random_bytes(r, sizeof r);
    job_id_of_bytes(r, out);
}

/* ---- string rules ---- */

/* 1 when s holds a control character: C0, DEL or C1 (U+0080-U+009F, which
 * is C2 80-9F in UTF-8; the text is valid UTF-8 by now). */
static int job_has_control(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
            return 1;
    return 0;
}

/* The number of characters (code points) of the UTF-8 string s. */
static size_t job_utf8_chars(const char *s) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        n += (*p & 0xc0) != 0x80;
    return n;
}

int job_check_reply_to(const char *prefix, const char *key, char *err, size_t errlen) {
    job_check c = {.err = err, .errlen = errlen};
    if (err && errlen) err[0] = '\0';
    if (!key) key = "";
    size_t n = strlen(key);
    if (n == 0 || n > JOB_REPLY_TO_MAX) {
        job_fail(&c, "reply_to must be 1-%d bytes", JOB_REPLY_TO_MAX);
    } else if (job_has_control(key)) {
        job_fail(&c, "reply_to must not contain a control character");
    } else if (prefix) {
        const char *kind = keys_state_kind(prefix, key);
        if (kind)
            job_fail(&c,
                     "reply_to must not name a key of chatq's own (under \"%s:\"): %s:%s... "
                     "holds chatq's state; a batch's output list %s:batch:<batch>:out, or any "
                     "other key, may be used",
                     prefix, prefix, kind, prefix);
    }
    return c.failed ? -1 : 0;
}

/* Reads optional string field `key` of obj, named `name` in messages: NULL
 * when absent; NULL and a failure when not a string or holding a NUL. The
 * string is borrowed from obj. */
static const char *job_str(json_object *obj, const char *key, const char *name, job_check *c) {
    json_object *v;
    if (!obj || !json_object_object_get_ex(obj, key, &v)) return NULL;
    if (!json_object_is_type(v, json_type_string)) {
        job_fail(c, "%s must be a string, not %s", name,
                 v ? json_type_to_name(json_object_get_type(v)) : "null");
        return NULL;
    }
    const char *s = json_object_get_string(v);
    if (strlen(s) != (size_t)json_object_get_string_len(v)) {
        job_fail(c, "%s must not contain \\u0000 (NUL)", name);
        return NULL;
    }
    return s;
}

/* A copy of s when it passes: bounded (max bytes, or characters when
 * in_chars), no control character, and no '|' when no_bar. */
static char *job_str_rule(const char *s, const char *name, size_t max, int in_chars,
                          int no_bar, job_check *c) {
    if (!s) return NULL;
    size_t n = in_chars ? job_utf8_chars(s) : strlen(s);
    if (n > max)
        job_fail(c, "%s must be at most %zu %s", name, max, in_chars ? "characters" : "bytes");
    else if (job_has_control(s))
        job_fail(c, "%s must not contain a control character", name);
    else if (no_bar && strchr(s, '|'))
        job_fail(c, "%s must not contain '|'", name);
    else
        return xstrdup(s);
    return NULL;
}

/* ---- number rules ---- */

/* Reads optional integer field `key` of obj: -1 when absent or refused;
 * refused unless a JSON integer from min to max. */
static long long job_int(json_object *obj, const char *key, const char *name, long long min,
                         long long max, job_check *c) {
    json_object *v;
    if (!obj || !json_object_object_get_ex(obj, key, &v)) return -1;
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x >= min && x <= max && x != INT64_MAX) return x;
        if (x == INT64_MAX || x == INT64_MIN) /* json-c saturates at the int64 range */
            job_fail(c, "%s must be an integer from %lld to %lld, not a number that large", name,
                     min, max);
        else
            job_fail(c, "%s must be an integer from %lld to %lld, not %lld", name, min, max,
                     (long long)x);
    } else if (json_object_is_type(v, json_type_double)) {
        /* json-c keeps the number's text: say what was written (1e16, 2.5) */
        job_fail(c, "%s must be an integer from %lld to %lld, not %.40s", name, min, max,
                 json_object_get_string(v));
    } else {
        job_fail(c, "%s must be an integer from %lld to %lld, not %s", name, min, max,
                 v ? json_type_to_name(json_object_get_type(v)) : "null");
    }
    return -1;
}

/* ---- the fields ---- */

/* A field that may be absent but, when present, must equal `want`. */
static void job_check_fixed(json_object *root, const char *key, const char *want, job_check *c) {
    json_object *v;
    if (!json_object_object_get_ex(root, key, &v)) return;
    if (!json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), want) ||
        strlen(want) != (size_t)json_object_get_string_len(v))
        job_fail(c, "%s must be \"%s\"", key, want);
}

/* id, else custom_id, else one made from the text (only when both are
 * absent). */
static void job_read_id(job *j, const char *raw, size_t len, job_check *c) {
    int has_id = json_object_object_get_ex(j->root, "id", NULL);
    int has_custom = json_object_object_get_ex(j->root, "custom_id", NULL);
    j->custom_id = job_str_rule(job_str(j->root, "custom_id", "custom_id", c), "custom_id",
                                JOB_CUSTOM_ID_MAX, 0, 0, c);
    if (has_id) {
        const char *id = job_str(j->root, "id", "id", c);
        if (id && job_id_valid(id))
            j->id = xstrdup(id);
        else if (id)
            job_fail(c, "id must be " JOB_ID_RULE);
        return;
    }
    if (has_custom) {
        if (j->custom_id && job_id_valid(j->custom_id))
            j->id = xstrdup(j->custom_id);
        else if (j->custom_id)
            job_fail(c, "custom_id must be " JOB_ID_RULE " to serve as the job id "
                        "(or give a valid id)");
        return;
    }
    char gen[32];
    job_id_from_text(raw, len, gen);
    j->id = xstrdup(gen);
    j->id_generated = 1;
}

/* body, body.model, body.messages, and the numbers of body chatq reads. */
static void job_read_body(job *j, job_check *c) {
    json_object *body, *v;
    if (!json_object_object_get_ex(j->root, "body", &body)) {
        job_fail(c, "body is required");
        return;
    }
    if (!json_object_is_type(body, json_type_object)) {
        job_fail(c, "body must be an object, not %s",
                 body ? json_type_to_name(json_object_get_type(body)) : "null");
        return;
    }
    j->body = body;
    const char *model = job_str(body, "model", "body.model", c);
    if (!json_object_object_get_ex(body, "model", NULL))
        job_fail(c, "body.model is required");
    else if (model && !*model)
        job_fail(c, "body.model must be a non-empty string");
    else
        j->model = job_str_rule(model, "body.model", JOB_MODEL_MAX, 0, 1, c);
    if (!json_object_object_get_ex(body, "messages", &v) ||
        !json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0)
        job_fail(c, "body.messages must be a non-empty array");
    job_int(body, "n", "body.n", 1, JOB_N_MAX, c);
    job_int(body, "max_tokens", "body.max_tokens", 0, INT64_MAX - 1, c);
    job_int(body, "max_completion_tokens", "body.max_completion_tokens", 0, INT64_MAX - 1, c);
}

/* The effective stream flag: job.stream, else body.stream, else false. */
static void job_read_stream(job *j, job_check *c) {
    json_object *v;
    if (json_object_object_get_ex(j->root, "stream", &v)) {
        if (json_object_is_type(v, json_type_boolean)) {
            j->stream = json_object_get_boolean(v);
            return;
        }
        job_fail(c, "stream must be a boolean, not %s",
                 v ? json_type_to_name(json_object_get_type(v)) : "null");
    }
    if (j->body && json_object_object_get_ex(j->body, "stream", &v) &&
        json_object_is_type(v, json_type_boolean))
        j->stream = json_object_get_boolean(v);
}

/* reply_to: job_check_reply_to()'s rules; kept only when it passes, so that
 * a refused key is never written to. */
static void job_read_reply_to(job *j, const char *prefix, job_check *c) {
    const char *key = job_str(j->root, "reply_to", "reply_to", c);
    char msg[256];
    if (!key) return;
    if (job_check_reply_to(prefix, key, msg, sizeof msg) < 0)
        job_fail(c, "%s", msg);
    else
        j->reply_to = xstrdup(key);
}

/* Parses the text; on failure returns NULL after job_fail(). */
static json_object *job_parse_text(const char *raw, size_t len, const job_opts *o,
                                   strictjson_stats *st, job_check *c) {
    strictjson_limits lim = {
        .max_depth = JOB_MAX_DEPTH,
        .max_containers = o->max_containers > 0 ? o->max_containers : JOB_MAX_CONTAINERS,
        .max_values = o->max_values > 0 ? o->max_values : JOB_MAX_VALUES,
    };
    json_tokener *tok = json_tokener_new_ex(JOB_MAX_DEPTH + 1);
    if (!tok) {
        job_fail(c, "job is not valid JSON: out of memory");
        return NULL;
    }
    char why[200];
    json_object *root;
    int rc = jsonparse_strict(tok, raw, len, &lim, 0, &root, st, why, sizeof why);
    json_tokener_free(tok);
    if (rc != STRICTJSON_OK) {
        job_fail(c, "job is %s: %.160s",
                 rc == STRICTJSON_TOO_BIG ? "too complex" : "not valid JSON", why);
        return NULL;
    }
    if (!json_object_is_type(root, json_type_object)) {
        job_fail(c, "job must be a JSON object, not %s",
                 root ? json_type_to_name(json_object_get_type(root)) : "null");
        json_object_put(root);
        return NULL;
    }
    return root;
}

int job_parse_opts(job *j, const char *raw, size_t len, const job_opts *o, char *err,
                   size_t errlen) {
    static const job_opts none;
    job_check c = {.err = err, .errlen = errlen};
    memset(j, 0, sizeof *j);
    j->timeout_ms = j->max_attempts = j->result_ttl_s = -1;
    if (err && errlen) err[0] = '\0';
    if (!o) o = &none;
    if (!raw) {
        raw = "";
        len = 0;
    }

    /* Before parsing, so an oversized job costs no parse. */
    if (o->max_bytes && len > o->max_bytes) {
        job_fail(&c, "job is %zu bytes, longer than max_job_bytes (%zu)", len, o->max_bytes);
        return -1;
    }
    strictjson_stats st;
    j->root = job_parse_text(raw, len, o, &st, &c);
    if (!j->root) return -1;
    json_object *root = j->root;

    job_read_id(j, raw, len, &c);
    job_check_fixed(root, "method", "POST", &c);
    job_check_fixed(root, "url", "/v1/chat/completions", &c);
    job_read_body(j, &c);
    job_read_stream(j, &c);
    j->tenant = job_str_rule(job_str(root, "tenant", "tenant", &c), "tenant", JOB_TENANT_MAX, 1,
                             1, &c);
    job_read_reply_to(j, o->prefix, &c);
    const char *provider = job_str(root, "provider", "provider", &c);
    j->provider = provider ? xstrdup(provider) : NULL;

    json_object *v;
    if (json_object_object_get_ex(root, "metadata", &v)) {
        if (json_object_is_type(v, json_type_object))
            j->metadata = v;
        else
            job_fail(&c, "metadata must be an object, not %s",
                     v ? json_type_to_name(json_object_get_type(v)) : "null");
    }
    j->timeout_ms = job_int(root, "timeout_ms", "timeout_ms", 1, JOB_TIMEOUT_MS_MAX, &c);
    j->max_attempts = job_int(root, "max_attempts", "max_attempts", 1, JOB_MAX_ATTEMPTS_MAX, &c);
    j->result_ttl_s = job_int(root, "result_ttl_s", "result_ttl_s", 1, JOB_RESULT_TTL_S_MAX, &c);

    /* Last, so that a NUL or number in a named field was reported by its
     * name. */
    if (st.first_nul >= 0)
        job_fail(&c, "a string holds \\u0000 (NUL) at byte %ld: no string in a job may",
                 st.first_nul);
    if (st.first_big_int >= 0)
        job_fail(&c, "an integer outside [-2^63, 2^64-1] at byte %ld: it would not reach "
                     "the upstream unchanged",
                 st.first_big_int);
    return c.failed ? -1 : 0;
}

int job_parse(job *j, const char *raw, size_t len, size_t max_bytes, char *err, size_t errlen) {
    job_opts o = {.max_bytes = max_bytes};
    return job_parse_opts(j, raw, len, &o, err, errlen);
}

/* stream_options for a streaming request: the job's own options (when an
 * object) with include_usage forced to true, since accounting needs it. */
static json_object *job_stream_options(json_object *orig) {
    json_object *so = json_object_new_object();
    if (json_object_is_type(orig, json_type_object)) {
        json_object_object_foreach(orig, k, v) {
            if (strcmp(k, "include_usage"))
                json_object_object_add(so, k, json_object_get(v));
            else /* keep its place among the other options */
                json_object_object_add(so, k, json_object_new_boolean(1));
        }
    }
    if (!json_object_object_get_ex(so, "include_usage", NULL))
        json_object_object_add(so, "include_usage", json_object_new_boolean(1));
    return so;
}

char *job_request_body(const job *j) {
    json_object *out = json_object_new_object();
    int seen_stream = 0, seen_opts = 0;
    if (j->body) {
        json_object_object_foreach(j->body, k, v) {
            if (!strcmp(k, "stream")) {
                seen_stream = 1;
                if (j->stream) json_object_object_add(out, k, json_object_new_boolean(1));
            } else if (!strcmp(k, "stream_options")) {
                seen_opts = 1;
                if (j->stream) json_object_object_add(out, k, job_stream_options(v));
            } else {
                json_object_object_add(out, k, json_object_get(v));
            }
        }
    }
    if (j->stream && !seen_stream)
        json_object_object_add(out, "stream", json_object_new_boolean(1));
    if (j->stream && !seen_opts)
        json_object_object_add(out, "stream_options", job_stream_options(NULL));
    char *text = xstrdup(json_object_to_json_string_ext(
        out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(out);
    return text;
}

void job_free(job *j) {
    if (!j) return;
    json_object_put(j->root);
    free(j->id);
    free(j->custom_id);
    free(j->model);
    free(j->tenant);
    free(j->reply_to);
    free(j->provider);
    memset(j, 0, sizeof *j);
    j->timeout_ms = j->max_attempts = j->result_ttl_s = -1;
}

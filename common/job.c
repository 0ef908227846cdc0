/* job.c — parsing and validating one job (SPEC §4), and the upstream body.
 *
 * job_parse() checks the size first (an oversized job costs no parse), then
 * parses with json-c in strict mode plus a byte scan for what strict mode
 * still lets through (single quotes, NaN, raw control characters). It then
 * reads every field leniently — a field of the right type is kept, one of the
 * wrong type is left NULL/-1 — and each rule that fails calls job_fail(),
 * which keeps only the first message. So an invalid job still comes back with
 * everything that could be read, and the caller can store the failure under
 * its id and answer reply_to. An id is generated only when the job has
 * neither id nor custom_id; an id or custom_id that is present but unusable
 * leaves j->id NULL.
 *
 * job_request_body() never changes j->body: it builds a new top-level object
 * that shares (by reference count) every member except "stream" and
 * "stream_options", so it can be called any number of times, costs no deep
 * copy, and keeps the members' order and their original text (json-c keeps
 * the source text of parsed doubles). Sharing touches the members' counts,
 * so one job must not be used from two threads at once. */
#include "common/job.h"

#include "common/jsonparse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/random.h"

/* Deep enough for large tool JSON schemas; json-c's default is 32. */
#define JOB_MAX_DEPTH 128

#define JOB_ID_RULE "1-128 characters of [A-Za-z0-9._:-]"

/* Records the first failure only: later rules keep reading fields. */
static void job_fail(int *failed, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void job_fail(int *failed, char *err, size_t errlen, const char *fmt, ...) {
    if (*failed) return;
    *failed = 1;
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
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
        if (!ok || n >= 128) return 0;
    }
    return n >= 1;
}

void job_generate_id(char out[32]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char r[12];
    random_bytes(r, sizeof r);
    memcpy(out, "job-", 4);
    for (size_t i = 0; i < sizeof r; i++) {
        out[4 + 2 * i] = hex[r[i] >> 4];
        out[5 + 2 * i] = hex[r[i] & 15];
    }
    out[4 + 2 * sizeof r] = '\0';
}

/* json-c's strict mode still takes 'single quotes', NaN, Infinity and raw
 * control characters in strings; RFC 8259 does not, and neither does an
 * upstream. Run after json-c accepted the text, so the structure is known to
 * be sound and a byte scan suffices. Returns the offending offset or -1. */
static long job_strict_scan(const char *raw, size_t len, const char **why) {
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (in_str) {
            if (c == '\\') {
                i++; /* the escaped byte cannot end the string */
            } else if (c == '"') {
                in_str = 0;
            } else if (c < 0x20) {
                *why = "unescaped control character in a string";
                return (long)i;
            }
        } else if (c == '"') {
            in_str = 1;
        } else if (!strchr("{}[],:+-.0123456789eE \t\r\n" "truefalsn", c) || c == '\0') {
            *why = c == '\'' ? "single-quoted string" : "unexpected character";
            return (long)i;
        }
    }
    return -1;
}

/* Parses exactly one JSON value from raw[0..len), allowing only whitespace
 * after it. Returns 0 with *out set (may be NULL for a JSON null) or -1 with
 * a message. */
static int job_parse_json(const char *raw, size_t len, json_object **out, char *msg,
                          size_t msglen) {
    *out = NULL;
    json_tokener *tok = json_tokener_new_ex(JOB_MAX_DEPTH);
    if (!tok) {
        snprintf(msg, msglen, "job is not valid JSON: out of memory");
        return -1;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    char why_json[200];
    json_object *o;
    int rc = jsonparse_whole(tok, raw, len, &o, why_json, sizeof why_json);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (rc < 0) {
        snprintf(msg, msglen, "job is not valid JSON: %.120s", why_json);
        return -1;
    }
    const char *why;
    long bad = job_strict_scan(raw, end, &why);
    if (bad >= 0) {
        snprintf(msg, msglen, "job is not valid JSON: %s at byte %ld", why, bad);
        json_object_put(o);
        return -1;
    }
    *out = o;
    return 0;
}

static const char *job_type_name(json_object *o) {
    return o ? json_type_to_name(json_object_get_type(o)) : "null";
}

/* Reads optional string field `key`: NULL when absent, a copy when a string,
 * and a failure when present with another type. */
static char *job_opt_string(json_object *root, const char *key, int *failed, char *err,
                            size_t errlen) {
    json_object *v;
    if (!json_object_object_get_ex(root, key, &v)) return NULL;
    if (!json_object_is_type(v, json_type_string)) {
        job_fail(failed, err, errlen, "%s must be a string, not %s", key, job_type_name(v));
        return NULL;
    }
    return xstrdup(json_object_get_string(v));
}

/* Optional positive integer: -1 when absent or invalid. */
static long long job_opt_posint(json_object *root, const char *key, int *failed, char *err,
                                size_t errlen) {
    json_object *v;
    if (!json_object_object_get_ex(root, key, &v)) return -1;
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) <= 0) {
        job_fail(failed, err, errlen, "%s must be a positive integer", key);
        return -1;
    }
    return (long long)json_object_get_int64(v);
}

/* A field that may be absent but, when present, must equal `want`. */
static void job_check_fixed(json_object *root, const char *key, const char *want,
                            int *failed, char *err, size_t errlen) {
    json_object *v;
    if (!json_object_object_get_ex(root, key, &v)) return;
    if (!json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), want))
        job_fail(failed, err, errlen, "%s must be \"%s\"", key, want);
}

/* id, else custom_id, else a generated one (only when both are absent). */
static void job_read_id(job *j, int *failed, char *err, size_t errlen) {
    json_object *v;
    int has_id = json_object_object_get_ex(j->root, "id", &v);
    j->custom_id = job_opt_string(j->root, "custom_id", failed, err, errlen);
    if (has_id) {
        if (!json_object_is_type(v, json_type_string))
            job_fail(failed, err, errlen, "id must be a string of " JOB_ID_RULE);
        else if (!job_id_valid(json_object_get_string(v)))
            job_fail(failed, err, errlen, "id must be " JOB_ID_RULE);
        else
            j->id = xstrdup(json_object_get_string(v));
        return;
    }
    if (j->custom_id) {
        if (job_id_valid(j->custom_id))
            j->id = xstrdup(j->custom_id);
        else
            job_fail(failed, err, errlen,
                     "custom_id must be " JOB_ID_RULE " to serve as the job id "
                     "(or give a valid id)");
        return;
    }
    if (json_object_object_get_ex(j->root, "custom_id", NULL)) return; /* wrong type */
    char gen[32];
    job_generate_id(gen);
    j->id = xstrdup(gen);
    j->id_generated = 1;
}

/* body, body.model, body.messages. */
static void job_read_body(job *j, int *failed, char *err, size_t errlen) {
    json_object *body, *v;
    if (!json_object_object_get_ex(j->root, "body", &body)) {
        job_fail(failed, err, errlen, "body is required");
        return;
    }
    if (!json_object_is_type(body, json_type_object)) {
        job_fail(failed, err, errlen, "body must be an object, not %s", job_type_name(body));
        return;
    }
    j->body = body;
    if (!json_object_object_get_ex(body, "model", &v))
        job_fail(failed, err, errlen, "body.model is required");
    else if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
        job_fail(failed, err, errlen, "body.model must be a non-empty string");
    else
        j->model = xstrdup(json_object_get_string(v));
    if (!json_object_object_get_ex(body, "messages", &v) ||
        !json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0)
        job_fail(failed, err, errlen, "body.messages must be a non-empty array");
}

/* The effective stream flag: job.stream, else body.stream, else false. */
static void job_read_stream(job *j, int *failed, char *err, size_t errlen) {
    json_object *v;
    if (json_object_object_get_ex(j->root, "stream", &v)) {
        if (json_object_is_type(v, json_type_boolean)) {
            j->stream = json_object_get_boolean(v);
            return;
        }
        job_fail(failed, err, errlen, "stream must be a boolean, not %s", job_type_name(v));
    }
    if (j->body && json_object_object_get_ex(j->body, "stream", &v) &&
        json_object_is_type(v, json_type_boolean))
        j->stream = json_object_get_boolean(v);
}

int job_parse(job *j, const char *raw, size_t len, size_t max_bytes, char *err, size_t errlen) {
    int failed = 0;
    memset(j, 0, sizeof *j);
    j->timeout_ms = j->max_attempts = j->result_ttl_s = -1;
    if (err && errlen) err[0] = '\0';
    if (!raw) {
        raw = "";
        len = 0;
    }

    /* Before parsing, so an oversized job costs no parse. */
    if (max_bytes && len > max_bytes) {
        job_fail(&failed, err, errlen, "job is %zu bytes, longer than max_job_bytes (%zu)", len,
                 max_bytes);
        return -1;
    }
    char msg[160];
    json_object *root;
    if (job_parse_json(raw, len, &root, msg, sizeof msg) < 0) {
        job_fail(&failed, err, errlen, "%s", msg);
        return -1;
    }
    if (!json_object_is_type(root, json_type_object)) {
        job_fail(&failed, err, errlen, "job must be a JSON object, not %s", job_type_name(root));
        json_object_put(root);
        return -1;
    }
    j->root = root;

    job_read_id(j, &failed, err, errlen);
    job_check_fixed(root, "method", "POST", &failed, err, errlen);
    job_check_fixed(root, "url", "/v1/chat/completions", &failed, err, errlen);
    job_read_body(j, &failed, err, errlen);
    job_read_stream(j, &failed, err, errlen);
    j->tenant = job_opt_string(root, "tenant", &failed, err, errlen);
    j->reply_to = job_opt_string(root, "reply_to", &failed, err, errlen);
    j->provider = job_opt_string(root, "provider", &failed, err, errlen);

    json_object *v;
    if (json_object_object_get_ex(root, "metadata", &v)) {
        if (json_object_is_type(v, json_type_object))
            j->metadata = v;
        else
            job_fail(&failed, err, errlen, "metadata must be an object, not %s",
                     job_type_name(v));
    }
    j->timeout_ms = job_opt_posint(root, "timeout_ms", &failed, err, errlen);
    j->max_attempts = job_opt_posint(root, "max_attempts", &failed, err, errlen);
    j->result_ttl_s = job_opt_posint(root, "result_ttl_s", &failed, err, errlen);
    return failed ? -1 : 0;
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

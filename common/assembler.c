/* assembler.c — builds the final `chat.completion` from streamed chunks; see
 * assembler.h for the merge rules.
 *
 * One assembler runs per streamed job and there are thousands of them, so
 * assembler_add() does little per chunk: text deltas are appended to `buf`s,
 * the few scalars we keep (role, finish reason, tool-call id/type/name) are
 * copied once, and json objects are only referenced where they must be kept
 * whole (top-level id/model/..., logprobs entries, usage). The result object
 * is built only in assembler_result(), with deep copies, so it shares nothing
 * with the assembler or with the chunks and may outlive both.
 *
 * Choices live in `slot`, an array indexed directly by the choice index and
 * grown on demand (NULL where no chunk named that index), so the output comes
 * out sorted for free. Tool calls of a choice live in `calls` in order of
 * first appearance; `call_slot` maps a tool-call index to its position there.
 * Indexes at or above the limits of assembler.h spoil the assembler (asm_fail)
 * rather than grow those arrays; negative ones, or ones that are not whole
 * numbers, are ignored. The logprobs entries kept are counted as they come
 * (asm_count), since they are the one part of a stream kept whole.
 *
 * The common chunk (one choice, a content/role delta, nothing else the
 * assembler would keep) also comes as text: assembler_add_text() reads it
 * with a small scanner (asm_scan_*) over the strictly checked text, appends
 * the decoded content and role as asm_delta_add() would, and leaves every
 * other chunk to the json-c path by returning 1. Building and freeing the
 * json-c objects of every chunk was most of what a stream cost a worker.
 *
 * Provider quirks handled here (besides the plain OpenAI stream):
 *   - Azure's first chunk has "choices": [] and id "", model "", created 0:
 *     for the top-level fields, "" and 0 count as not seen, so the real
 *     values of later chunks win. Filter results are ignored.
 *   - A choice without "index" takes its position in the chunk's array.
 *   - Tool-call deltas without "index" (Gemini) are calls of their own.
 *   - "usage": null on every chunk (OpenRouter) is ignored.
 *   - function.arguments that is not a string (some providers send an
 *     object) is appended as its JSON text, which is what a client expects. */
#include "common/assembler.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

typedef struct asm_tool_call {
    char *id, *type, *name; /* first non-empty value seen, or NULL */
    buf args;               /* function.arguments fragments, joined */
} asm_tool_call;

typedef struct asm_choice {
    char *role;          /* first delta.role, or NULL */
    char *finish_reason; /* last non-null finish_reason, or NULL */
    buf content, refusal, reasoning_content, reasoning;
    /* Whether any delta of that kind came: an empty delta still makes the
     * field a string ("") rather than null/absent. */
    int has_content, has_refusal, has_reasoning_content, has_reasoning;
    int has_logprobs;
    json_object *lp_content, *lp_refusal; /* arrays we own; NULL until seen */
    asm_tool_call *calls;
    int ncalls, calls_cap;
    int *call_slot; /* tool-call index -> position in calls, or -1 */
    int call_slot_len;
} asm_choice;

/* Top-level fields kept from the first chunk that has a real value. */
enum { ASM_ID, ASM_CREATED, ASM_MODEL, ASM_FINGERPRINT, ASM_TIER, ASM_NTOP };
static const char *const asm_top_names[ASM_NTOP] = {
    "id", "created", "model", "system_fingerprint", "service_tier"};

struct assembler {
    asm_choice **slot; /* by choice index; NULL where none was seen */
    int nslot;
    int nchoices;
    json_object *top[ASM_NTOP]; /* referenced, NULL until seen */
    json_object *usage;         /* last non-null usage object, referenced */
    int has_output;
    size_t lp_values, lp_containers; /* in the logprobs entries kept */
    char *error;                /* the limit passed, NULL while none was */
};

/* ---------------------------------------------------------------- helpers */

/* Records the first limit passed; the assembler is spoiled from then on. */
static void asm_fail(assembler *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void asm_fail(assembler *a, const char *fmt, ...) {
    if (a->error) return;
    va_list ap;
    va_start(ap, fmt);
    char msg[160];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    a->error = xstrdup(msg);
}

/* Reads an index: a whole number >= 0, at most `limit` (anything larger
 * reads as limit). Some encoders send numbers as doubles, so 1.0 is
 * accepted. Returns 0, or -1 when unusable (negative, not a whole number). */
static int asm_index(json_object *v, int limit, int *out) {
    if (json_object_is_type(v, json_type_int)) {
        int64_t n = json_object_get_int64(v);
        if (n < 0) return -1;
        *out = n > limit ? limit : (int)n;
        return 0;
    }
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!(d >= 0) || d != floor(d)) return -1; /* NaN fails d >= 0 */
        *out = d > limit ? limit : (int)d;
        return 0;
    }
    return -1;
}

/* Adds the values and containers of v to the counts, as strictjson counts. */
static void asm_count(json_object *v, size_t *values, size_t *containers) {
    size_t i, n;
    (*values)++;
    if (json_object_is_type(v, json_type_object)) {
        (*containers)++;
        json_object_object_foreach(v, key, member) {
            (void)key;
            asm_count(member, values, containers);
        }
    } else if (json_object_is_type(v, json_type_array)) {
        (*containers)++;
        n = json_object_array_length(v);
        for (i = 0; i < n; i++) asm_count(json_object_array_get_idx(v, i), values, containers);
    }
}

/* obj[key] when it is a string, else NULL; *len gets its length (strings may
 * hold NUL bytes, so we never strlen() a delta). Borrowed. */
static const char *asm_str(json_object *obj, const char *key, size_t *len) {
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v)) return NULL;
    if (!json_object_is_type(v, json_type_string)) return NULL;
    if (len) *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

/* Sets *dst to a copy of obj[key] unless *dst is set already or the value is
 * not a non-empty string ("first delta that has it"). */
static void asm_take_first(char **dst, json_object *obj, const char *key) {
    size_t len;
    const char *s;
    if (*dst) return;
    s = asm_str(obj, key, &len);
    if (s && len) *dst = xstrndup(s, len);
}

/* A deep copy for the result, so it shares nothing with the assembler.
 * Failure means out of memory, which aborts as everywhere in chatq. */
static json_object *asm_copy(json_object *src) {
    json_object *dst = NULL;
    if (!src) return NULL;
    if (json_object_deep_copy(src, &dst, NULL) != 0) {
        fputs("chatq: out of memory\n", stderr);
        abort();
    }
    return dst;
}

static json_object *asm_new_string(const buf *b) {
    /* json-c takes an int length; a >2 GiB answer is cut, not overflowed
     * (the job size limits make it unreachable anyway). */
    int n = b->len > INT_MAX ? INT_MAX : (int)b->len;
    return json_object_new_string_len(buf_cstr(b), n);
}

/* Appends every element of `src` (if an array) to *dst, creating it, unless
 * that would keep more logprobs values than the limits allow. */
static void asm_array_extend(assembler *a, json_object **dst, json_object *src) {
    size_t i, n, values = a->lp_values, containers = a->lp_containers;
    if (!json_object_is_type(src, json_type_array)) return;
    n = json_object_array_length(src);
    for (i = 0; i < n; i++) asm_count(json_object_array_get_idx(src, i), &values, &containers);
    if (values > ASSEMBLER_MAX_LOGPROB_VALUES || containers > ASSEMBLER_MAX_LOGPROB_CONTAINERS) {
        asm_fail(a, "logprobs of more than %d values or %d objects and arrays",
                 ASSEMBLER_MAX_LOGPROB_VALUES, ASSEMBLER_MAX_LOGPROB_CONTAINERS);
        return;
    }
    a->lp_values = values;
    a->lp_containers = containers;
    if (!*dst) *dst = json_object_new_array();
    for (i = 0; i < n; i++)
        json_object_array_add(*dst, json_object_get(json_object_array_get_idx(src, i)));
}

/* Grows an int array to hold index `idx`, filling new cells with -1. */
static void asm_grow_slots(int **arr, int *len, int idx) {
    int i, n = *len ? *len : 4;
    if (idx < *len) return;
    while (n <= idx) n *= 2;
    *arr = xrealloc(*arr, (size_t)n * sizeof(**arr));
    for (i = *len; i < n; i++) (*arr)[i] = -1;
    *len = n;
}

/* ------------------------------------------------------------- tool calls */

static asm_tool_call *asm_call_push(asm_choice *c) {
    if (c->ncalls == c->calls_cap) {
        c->calls_cap = c->calls_cap ? c->calls_cap * 2 : 2;
        c->calls = xrealloc(c->calls, (size_t)c->calls_cap * sizeof(*c->calls));
    }
    memset(&c->calls[c->ncalls], 0, sizeof(c->calls[0]));
    return &c->calls[c->ncalls++];
}

/* The call with tool-call index idx (< ASSEMBLER_MAX_TOOL_CALLS), made when
 * new; NULL when a new one would be one call too many. */
static asm_tool_call *asm_call_by_index(asm_choice *c, int idx) {
    asm_grow_slots(&c->call_slot, &c->call_slot_len, idx);
    if (c->call_slot[idx] < 0) {
        if (c->ncalls >= ASSEMBLER_MAX_TOOL_CALLS) return NULL;
        c->call_slot[idx] = c->ncalls;
        asm_call_push(c);
    }
    return &c->calls[c->call_slot[idx]];
}

/* One element of delta.tool_calls of choice c (index ci). */
static void asm_tool_call_add(assembler *a, asm_choice *c, int ci, json_object *jt) {
    json_object *v, *fn;
    asm_tool_call *t;
    int idx;

    if (!json_object_is_type(jt, json_type_object)) return;
    if (json_object_object_get_ex(jt, "index", &v) && v) {
        if (asm_index(v, ASSEMBLER_MAX_TOOL_CALLS, &idx) != 0) return; /* -1, "0": ignored */
        if (idx >= ASSEMBLER_MAX_TOOL_CALLS) {
            asm_fail(a, "a tool-call index over %d in choice %d", ASSEMBLER_MAX_TOOL_CALLS - 1, ci);
            return;
        }
        t = asm_call_by_index(c, idx);
    } else {
        /* no index: a call of its own */
        t = c->ncalls < ASSEMBLER_MAX_TOOL_CALLS ? asm_call_push(c) : NULL;
    }
    if (!t) {
        asm_fail(a, "more than %d tool calls in choice %d", ASSEMBLER_MAX_TOOL_CALLS, ci);
        return;
    }
    asm_take_first(&t->id, jt, "id");
    asm_take_first(&t->type, jt, "type");
    if (!json_object_object_get_ex(jt, "function", &fn) ||
        !json_object_is_type(fn, json_type_object))
        return;
    asm_take_first(&t->name, fn, "name");
    if (json_object_object_get_ex(fn, "arguments", &v) && v) {
        if (json_object_is_type(v, json_type_string))
            buf_append(&t->args, json_object_get_string(v),
                       (size_t)json_object_get_string_len(v));
        else
            buf_puts(&t->args, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
    }
    if (t->name || t->args.len) a->has_output = 1;
}

/* ---------------------------------------------------------------- choices */

static asm_choice *asm_choice_get(assembler *a, int idx) {
    if (idx >= a->nslot) {
        int n = a->nslot ? a->nslot : 4;
        while (n <= idx) n *= 2;
        a->slot = xrealloc(a->slot, (size_t)n * sizeof(*a->slot));
        memset(a->slot + a->nslot, 0, (size_t)(n - a->nslot) * sizeof(*a->slot));
        a->nslot = n;
    }
    if (!a->slot[idx]) {
        a->slot[idx] = xcalloc(1, sizeof(asm_choice));
        a->nchoices++;
    }
    return a->slot[idx];
}

/* Appends delta[key] to `b` when it is a string. */
static void asm_text_add(assembler *a, json_object *delta, const char *key, buf *b, int *has) {
    size_t len;
    const char *s = asm_str(delta, key, &len);
    if (!s) return;
    buf_append(b, s, len);
    *has = 1;
    if (len) a->has_output = 1;
}

static void asm_delta_add(assembler *a, asm_choice *c, int ci, json_object *delta) {
    json_object *tcs;
    size_t i, n;

    if (!json_object_is_type(delta, json_type_object)) return;
    asm_take_first(&c->role, delta, "role");
    asm_text_add(a, delta, "content", &c->content, &c->has_content);
    asm_text_add(a, delta, "refusal", &c->refusal, &c->has_refusal);
    asm_text_add(a, delta, "reasoning_content", &c->reasoning_content,
                 &c->has_reasoning_content);
    asm_text_add(a, delta, "reasoning", &c->reasoning, &c->has_reasoning);
    if (!json_object_object_get_ex(delta, "tool_calls", &tcs) ||
        !json_object_is_type(tcs, json_type_array))
        return;
    n = json_object_array_length(tcs);
    for (i = 0; i < n && !a->error; i++)
        asm_tool_call_add(a, c, ci, json_object_array_get_idx(tcs, i));
}

static void asm_logprobs_add(assembler *a, asm_choice *c, json_object *lp) {
    json_object *v;
    if (!json_object_is_type(lp, json_type_object)) return;
    c->has_logprobs = 1;
    if (json_object_object_get_ex(lp, "content", &v)) asm_array_extend(a, &c->lp_content, v);
    if (json_object_object_get_ex(lp, "refusal", &v)) asm_array_extend(a, &c->lp_refusal, v);
}

/* One element of a chunk's "choices"; `pos` is its place in that array,
 * used as the index when the provider left "index" out. */
static void asm_choice_add(assembler *a, json_object *jc, size_t pos) {
    json_object *v;
    asm_choice *c;
    size_t len;
    const char *fr;
    int idx;

    if (!json_object_is_type(jc, json_type_object)) return;
    if (json_object_object_get_ex(jc, "index", &v) && v) {
        if (asm_index(v, ASSEMBLER_MAX_CHOICES, &idx) != 0) return; /* -1, "0": ignored */
    } else {
        idx = pos > ASSEMBLER_MAX_CHOICES ? ASSEMBLER_MAX_CHOICES : (int)pos;
    }
    if (idx >= ASSEMBLER_MAX_CHOICES) {
        asm_fail(a, "a choice index over %d", ASSEMBLER_MAX_CHOICES - 1);
        return;
    }
    c = asm_choice_get(a, idx);
    if (json_object_object_get_ex(jc, "delta", &v)) asm_delta_add(a, c, idx, v);
    fr = asm_str(jc, "finish_reason", &len);
    if (fr) {
        free(c->finish_reason);
        c->finish_reason = xstrndup(fr, len);
    }
    if (json_object_object_get_ex(jc, "logprobs", &v)) asm_logprobs_add(a, c, v);
}

/* Keeps the first real value of each top-level field. "" and 0 are not real
 * values: Azure's filter-results chunk carries id "", model "", created 0. */
static void asm_top_add(assembler *a, json_object *chunk) {
    json_object *v;
    int i;
    for (i = 0; i < ASM_NTOP; i++) {
        if (a->top[i] || !json_object_object_get_ex(chunk, asm_top_names[i], &v) || !v)
            continue;
        if (json_object_is_type(v, json_type_string) && json_object_get_string_len(v) == 0)
            continue;
        if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) == 0) continue;
        a->top[i] = json_object_get(v);
    }
}

/* ------------------------------------------- the common chunk, as text */

/* A reader over strict JSON text (strictjson_check passed it), so it checks
 * only what tells the common chunk from another: anything unexpected makes
 * the caller fall back to json-c. */
typedef struct asm_scan {
    const char *p, *end;
} asm_scan;

static void asm_ws(asm_scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Takes the character c (after white space): 1, else 0. */
static int asm_char(asm_scan *s, char c) {
    asm_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

/* A string: its raw text between the quotes in [*b, *b + *n), *esc = it holds
 * a backslash escape. Returns 0, or -1 when no string is there. */
static int asm_scan_string(asm_scan *s, const char **b, size_t *n, int *esc) {
    asm_ws(s);
    if (s->p >= s->end || *s->p != '"') return -1;
    const char *start = ++s->p;
    int e = 0;
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\') {
            e = 1;
            s->p++; /* the escaped character, a quote included */
        }
        s->p++;
    }
    if (s->p >= s->end) return -1;
    *b = start;
    *n = (size_t)(s->p - start);
    if (esc) *esc = e;
    s->p++;
    return 0;
}

/* The literal null: 1 (taken), else 0 (nothing taken). */
static int asm_scan_null(asm_scan *s) {
    asm_ws(s);
    if (s->end - s->p >= 4 && memcmp(s->p, "null", 4) == 0) {
        s->p += 4;
        return 1;
    }
    return 0;
}

/* Skips one value of any kind. Returns 0, or -1. */
static int asm_scan_skip(asm_scan *s) {
    const char *b;
    size_t n;
    int depth = 0;
    asm_ws(s);
    if (s->p >= s->end) return -1;
    if (*s->p == '"') return asm_scan_string(s, &b, &n, NULL);
    if (*s->p != '{' && *s->p != '[') { /* a number, true, false or null */
        while (s->p < s->end && !strchr(",}] \t\r\n", *s->p)) s->p++;
        return 0;
    }
    while (s->p < s->end) {
        char c = *s->p;
        if (c == '"') {
            if (asm_scan_string(s, &b, &n, NULL) != 0) return -1;
            continue;
        }
        if (c == '{' || c == '[') depth++;
        if ((c == '}' || c == ']') && --depth == 0) {
            s->p++;
            return 0;
        }
        s->p++;
    }
    return -1;
}

/* Is the raw key [k, k + n) the name `name`? */
static int asm_key(const char *k, size_t n, const char *name) {
    return strlen(name) == n && memcmp(k, name, n) == 0;
}

static int asm_hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* Appends the string body [s, s + n) decoded (its escapes, \uXXXX pairs as
 * one code point, in UTF-8), as json-c decodes it. */
static void asm_unescape(buf *out, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const char *bs = memchr(s + i, '\\', n - i);
        size_t run = bs ? (size_t)(bs - (s + i)) : n - i;
        buf_append(out, s + i, run);
        i += run;
        if (i >= n) break;
        char c = s[i + 1], ch;
        i += 2;
        switch (c) {
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            unsigned cp = (unsigned)asm_hex4(s + i);
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= n) { /* a pair: strictjson checked it */
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned)asm_hex4(s + i + 2) - 0xDC00);
                i += 6;
            }
            char u[4];
            size_t k;
            if (cp < 0x80) {
                u[0] = (char)cp;
                k = 1;
            } else if (cp < 0x800) {
                u[0] = (char)(0xC0 | (cp >> 6));
                u[1] = (char)(0x80 | (cp & 0x3F));
                k = 2;
            } else if (cp < 0x10000) {
                u[0] = (char)(0xE0 | (cp >> 12));
                u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u[2] = (char)(0x80 | (cp & 0x3F));
                k = 3;
            } else {
                u[0] = (char)(0xF0 | (cp >> 18));
                u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u[3] = (char)(0x80 | (cp & 0x3F));
                k = 4;
            }
            buf_append(out, u, k);
            continue;
        }
        default: ch = c; /* " \ / */
        }
        buf_append(out, &ch, 1);
    }
}

/* What the common chunk carries for its one choice. */
typedef struct asm_common {
    int index;
    const char *content, *role; /* raw string bodies, or NULL */
    size_t content_len, role_len;
} asm_common;

/* The delta of the common chunk: "content" and/or "role" strings, no other
 * key. 0, or -1 for another form. */
static int asm_scan_delta(asm_scan *s, asm_common *c) {
    const char *k;
    size_t kn;
    int esc;
    if (!asm_char(s, '{')) return -1;
    if (asm_char(s, '}')) return 0;
    do {
        if (asm_scan_string(s, &k, &kn, &esc) != 0 || esc || !asm_char(s, ':')) return -1;
        if (asm_key(k, kn, "content") && !c->content) {
            if (asm_scan_string(s, &c->content, &c->content_len, NULL) != 0) return -1;
        } else if (asm_key(k, kn, "role") && !c->role) {
            if (asm_scan_string(s, &c->role, &c->role_len, NULL) != 0) return -1;
        } else {
            return -1;
        }
    } while (asm_char(s, ','));
    return asm_char(s, '}') ? 0 : -1;
}

/* "choices" of the common chunk: one object with an integer "index", a
 * delta as above, finish_reason and logprobs null. 0, or -1. */
static int asm_scan_choices(asm_scan *s, asm_common *c) {
    const char *k;
    size_t kn;
    int esc, seen_delta = 0;
    if (!asm_char(s, '[') || !asm_char(s, '{')) return -1;
    c->index = -1;
    do {
        if (asm_scan_string(s, &k, &kn, &esc) != 0 || esc || !asm_char(s, ':')) return -1;
        if (asm_key(k, kn, "index") && c->index < 0) {
            asm_ws(s);
            int v = 0, digits = 0;
            while (s->p < s->end && *s->p >= '0' && *s->p <= '9' && digits < 4) {
                v = v * 10 + (*s->p++ - '0');
                digits++;
            }
            if (!digits || (s->p < s->end && strchr("0123456789.eE", *s->p))) return -1;
            c->index = v;
        } else if (asm_key(k, kn, "delta") && !seen_delta) {
            seen_delta = 1;
            if (asm_scan_delta(s, c) != 0) return -1;
        } else if (asm_key(k, kn, "finish_reason") || asm_key(k, kn, "logprobs")) {
            if (!asm_scan_null(s)) return -1;
        } else {
            return -1;
        }
    } while (asm_char(s, ','));
    if (!asm_char(s, '}') || !asm_char(s, ']')) return -1;
    return c->index >= 0 && c->index < ASSEMBLER_MAX_CHOICES ? 0 : -1;
}

int assembler_add_text(assembler *a, const char *text, size_t len) {
    asm_scan s = {text, text + len};
    asm_common c = {0};
    const char *k;
    size_t kn;
    int esc, seen_choices = 0;
    if (a->error) return -2;
    if (!asm_char(&s, '{') || asm_char(&s, '}')) return 1;
    do {
        if (asm_scan_string(&s, &k, &kn, &esc) != 0 || esc || !asm_char(&s, ':')) return 1;
        if (asm_key(k, kn, "choices") && !seen_choices) {
            seen_choices = 1;
            if (asm_scan_choices(&s, &c) != 0) return 1;
        } else if (asm_key(k, kn, "object")) {
            if (asm_scan_skip(&s) != 0) return 1;
        } else if (asm_key(k, kn, "usage")) {
            if (!asm_scan_null(&s)) return 1;
        } else {
            int t = 0;
            while (t < ASM_NTOP && !asm_key(k, kn, asm_top_names[t])) t++;
            if (t == ASM_NTOP) return 1; /* a key the assembler may want */
            /* asm_top_add() ignores it: null, or the assembler has its value */
            if (!asm_scan_null(&s) && (!a->top[t] || asm_scan_skip(&s) != 0)) return 1;
        }
    } while (asm_char(&s, ','));
    if (!asm_char(&s, '}') || !seen_choices) return 1;

    /* as asm_choice_add() and asm_delta_add() take it */
    asm_choice *ch = asm_choice_get(a, c.index);
    if (c.role && !ch->role) {
        buf r = {0};
        asm_unescape(&r, c.role, c.role_len);
        if (r.len) ch->role = xstrndup(r.data, r.len);
        buf_free(&r);
    }
    if (c.content) {
        size_t before = ch->content.len;
        asm_unescape(&ch->content, c.content, c.content_len);
        ch->has_content = 1;
        if (ch->content.len > before) a->has_output = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ public */

assembler *assembler_new(void) { return xcalloc(1, sizeof(assembler)); }

int assembler_add(assembler *a, json_object *chunk) {
    json_object *v;
    size_t i, n;

    if (!json_object_is_type(chunk, json_type_object)) return -1;
    if (a->error) return -2;
    asm_top_add(a, chunk);
    if (json_object_object_get_ex(chunk, "choices", &v) &&
        json_object_is_type(v, json_type_array)) {
        n = json_object_array_length(v);
        for (i = 0; i < n && !a->error; i++)
            asm_choice_add(a, json_object_array_get_idx(v, i), i);
    }
    if (a->error) return -2;
    if (json_object_object_get_ex(chunk, "usage", &v) &&
        json_object_is_type(v, json_type_object)) {
        json_object_put(a->usage);
        a->usage = json_object_get(v);
    }
    return 0;
}

const char *assembler_error(const assembler *a) { return a->error; }

int assembler_choices(const assembler *a) { return a->nchoices; }

int assembler_complete(const assembler *a) {
    int i;
    if (a->nchoices == 0) return 0;
    for (i = 0; i < a->nslot; i++)
        if (a->slot[i] && !a->slot[i]->finish_reason) return 0;
    return 1;
}

const char *assembler_finish_reason(const assembler *a) {
    int i;
    for (i = 0; i < a->nslot; i++)
        if (a->slot[i]) return a->slot[i]->finish_reason;
    return NULL;
}

json_object *assembler_usage(const assembler *a) { return a->usage; }

int assembler_has_output(const assembler *a) { return a->has_output; }

static json_object *asm_tool_call_json(const asm_tool_call *t) {
    json_object *o = json_object_new_object(), *fn = json_object_new_object();
    if (t->id) json_object_object_add(o, "id", json_object_new_string(t->id));
    json_object_object_add(o, "type", json_object_new_string(t->type ? t->type : "function"));
    json_object_object_add(fn, "name", json_object_new_string(t->name ? t->name : ""));
    json_object_object_add(fn, "arguments", asm_new_string(&t->args));
    json_object_object_add(o, "function", fn);
    return o;
}

static json_object *asm_message_json(const asm_choice *c) {
    json_object *m = json_object_new_object();
    int i;

    json_object_object_add(m, "role", json_object_new_string(c->role ? c->role : "assistant"));
    json_object_object_add(m, "content", c->has_content ? asm_new_string(&c->content) : NULL);
    if (c->has_refusal) json_object_object_add(m, "refusal", asm_new_string(&c->refusal));
    if (c->has_reasoning_content)
        json_object_object_add(m, "reasoning_content", asm_new_string(&c->reasoning_content));
    if (c->has_reasoning) json_object_object_add(m, "reasoning", asm_new_string(&c->reasoning));
    if (c->ncalls) {
        json_object *arr = json_object_new_array();
        for (i = 0; i < c->ncalls; i++)
            json_object_array_add(arr, asm_tool_call_json(&c->calls[i]));
        json_object_object_add(m, "tool_calls", arr);
    }
    return m;
}

static json_object *asm_choice_json(const asm_choice *c, int idx) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "index", json_object_new_int(idx));
    json_object_object_add(o, "message", asm_message_json(c));
    if (c->has_logprobs) {
        json_object *lp = json_object_new_object();
        json_object_object_add(lp, "content", asm_copy(c->lp_content));
        json_object_object_add(lp, "refusal", asm_copy(c->lp_refusal));
        json_object_object_add(o, "logprobs", lp);
    } else {
        json_object_object_add(o, "logprobs", NULL);
    }
    json_object_object_add(o, "finish_reason",
                           c->finish_reason ? json_object_new_string(c->finish_reason) : NULL);
    return o;
}

json_object *assembler_result(const assembler *a) {
    json_object *r = json_object_new_object(), *choices = json_object_new_array();
    int i;

    json_object_object_add(r, "id", asm_copy(a->top[ASM_ID]));
    json_object_object_add(r, "object", json_object_new_string("chat.completion"));
    json_object_object_add(r, "created", asm_copy(a->top[ASM_CREATED]));
    json_object_object_add(r, "model", asm_copy(a->top[ASM_MODEL]));
    if (a->top[ASM_FINGERPRINT])
        json_object_object_add(r, "system_fingerprint", asm_copy(a->top[ASM_FINGERPRINT]));
    if (a->top[ASM_TIER])
        json_object_object_add(r, "service_tier", asm_copy(a->top[ASM_TIER]));
    for (i = 0; i < a->nslot; i++)
        if (a->slot[i]) json_object_array_add(choices, asm_choice_json(a->slot[i], i));
    json_object_object_add(r, "choices", choices);
    if (a->usage) json_object_object_add(r, "usage", asm_copy(a->usage));
    return r;
}

static void asm_choice_free(asm_choice *c) {
    int i;
    if (!c) return;
    for (i = 0; i < c->ncalls; i++) {
        free(c->calls[i].id);
        free(c->calls[i].type);
        free(c->calls[i].name);
        buf_free(&c->calls[i].args);
    }
    free(c->calls);
    free(c->call_slot);
    free(c->role);
    free(c->finish_reason);
    buf_free(&c->content);
    buf_free(&c->refusal);
    buf_free(&c->reasoning_content);
    buf_free(&c->reasoning);
    json_object_put(c->lp_content);
    json_object_put(c->lp_refusal);
    free(c);
}

void assembler_free(assembler *a) {
    int i;
    if (!a) return;
    for (i = 0; i < a->nslot; i++) asm_choice_free(a->slot[i]);
    free(a->slot);
    for (i = 0; i < ASM_NTOP; i++) json_object_put(a->top[i]);
    json_object_put(a->usage);
    free(a->error);
    free(a);
}

/* strictjson.c — the strict JSON check; see strictjson.h for the rules.
 *
 * A recursive-descent recognizer over the bytes: one function per part of
 * the RFC 8259 grammar, each advancing `pos` past what it accepted or
 * recording why not (sj_fail) and returning -1. It stops at the first
 * problem, so the message always names the first one in the text, whether
 * it breaks the grammar or a limit. The recursion goes one level per nested
 * container, so the depth limit bounds the stack too; without a limit the
 * depth is capped at SJ_MAX_DEPTH all the same. Nothing is built and
 * nothing is allocated.
 *
 * It is the only JSON checker of chatq: jsonparse_strict() (jobs) runs it
 * before json-c, and so does the worker for upstream answers. */
#include "common/strictjson.h"

#include <stdio.h>
#include <string.h>

/* The deepest nesting checked when the caller sets no limit: json-c parses
 * no deeper by default (JSON_TOKENER_DEFAULT_DEPTH, 32), and this bounds our
 * own recursion. */
#define SJ_MAX_DEPTH 1000

typedef struct sj {
    const unsigned char *s;
    size_t len, pos;
    strictjson_limits lim;
    strictjson_stats st;
    int depth;
    int rc;                /* STRICTJSON_INVALID or _TOO_BIG once failed */
    char *err;
    size_t errlen;
} sj;

static int sj_fail(sj *p, int rc, const char *what) {
    p->rc = rc;
    if (p->err && p->errlen) {
        if (rc == STRICTJSON_INVALID)
            snprintf(p->err, p->errlen, "%s at byte %zu", what, p->pos);
        else
            snprintf(p->err, p->errlen, "%s", what);
    }
    return -1;
}

size_t strictjson_utf8_step(const char *str, size_t n, uint32_t *cp, int *valid) {
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];
    *valid = 0;
    if (c < 0x80) {
        if (cp) *cp = c;
        *valid = 1;
        return 1;
    }
    /* The first byte sets the length and the range the second byte must be
     * in; that range is what rules out overlong forms (E0 80..9F, F0
     * 80..8F), surrogates (ED A0..BF) and code points past U+10FFFF (F4
     * 90..BF). The maximal subpart ends at the first byte out of range. */
    size_t len;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 1; /* a continuation byte, C0, C1 or F5..FF: alone */
    }
    for (size_t i = 1; i < len; i++) {
        if (i >= n) return i; /* cut short by the end of the text */
        if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xBF)) return i;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (cp) *cp = v;
    *valid = 1;
    return len;
}

int strictjson_utf8(const char *s, size_t n, uint32_t *cp) {
    int valid;
    size_t len = strictjson_utf8_step(s, n, cp, &valid);
    return valid ? (int)len : 0;
}

/* ---- the grammar ---------------------------------------------------------- */

static void sj_ws(sj *p) {
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
        p->pos++;
    }
}

/* Counts one more value at pos; a container also opens one more level of
 * nesting (closed by sj_container). When one byte passes several limits,
 * the most telling is named: depth, then containers, then values. */
static int sj_count(sj *p, int container) {
    char msg[96];
    p->st.values++;
    if (container) {
        p->st.containers++;
        if (++p->depth > p->st.depth) p->st.depth = p->depth;
        if (p->depth > p->lim.max_depth) {
            snprintf(msg, sizeof msg, "nested deeper than %d at byte %zu", p->lim.max_depth,
                     p->pos);
            return sj_fail(p, STRICTJSON_TOO_BIG, msg);
        }
        if (p->lim.max_containers && p->st.containers > p->lim.max_containers) {
            snprintf(msg, sizeof msg, "more than %zu objects and arrays (byte %zu)",
                     p->lim.max_containers, p->pos);
            return sj_fail(p, STRICTJSON_TOO_BIG, msg);
        }
    }
    if (p->lim.max_values && p->st.values > p->lim.max_values) {
        snprintf(msg, sizeof msg, "more than %zu values (byte %zu)", p->lim.max_values, p->pos);
        return sj_fail(p, STRICTJSON_TOO_BIG, msg);
    }
    return 0;
}

static int sj_hex4(sj *p, uint32_t *out) {
    uint32_t v = 0;
    if (p->len - p->pos < 4) return sj_fail(p, STRICTJSON_INVALID, "a \\u escape cut short");
    for (int i = 0; i < 4; i++) {
        unsigned char c = p->s[p->pos + (size_t)i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return sj_fail(p, STRICTJSON_INVALID, "a bad \\u escape");
        v = v << 4 | (uint32_t)d;
    }
    p->pos += 4;
    *out = v;
    return 0;
}

/* An escape after its backslash. A high surrogate must be followed by
 * "\u" and a low one; a low one alone is refused. A "\u0000" is noted. */
static int sj_escape(sj *p) {
    size_t backslash = p->pos - 1;
    if (p->pos >= p->len) return sj_fail(p, STRICTJSON_INVALID, "a string cut short");
    unsigned char c = p->s[p->pos++];
    if (c && strchr("\"\\/bfnrt", c)) return 0;
    if (c != 'u') return sj_fail(p, STRICTJSON_INVALID, "a bad escape");
    uint32_t u;
    if (sj_hex4(p, &u) < 0) return -1;
    if (u == 0 && p->st.first_nul < 0) p->st.first_nul = (long)backslash;
    if (u >= 0xDC00 && u <= 0xDFFF) return sj_fail(p, STRICTJSON_INVALID, "a lone low surrogate");
    if (u < 0xD800 || u > 0xDBFF) return 0;
    if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
        return sj_fail(p, STRICTJSON_INVALID, "a lone high surrogate");
    p->pos += 2;
    if (sj_hex4(p, &u) < 0) return -1;
    if (u < 0xDC00 || u > 0xDFFF) return sj_fail(p, STRICTJSON_INVALID, "a lone high surrogate");
    return 0;
}

/* A string, at its opening quote. */
static int sj_string(sj *p) {
    p->pos++;
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            return 0;
        }
        if (c == '\\') {
            p->pos++;
            if (sj_escape(p) < 0) return -1;
        } else if (c < 0x20) {
            return sj_fail(p, STRICTJSON_INVALID, "an unescaped control character in a string");
        } else if (c < 0x80) {
            p->pos++;
        } else {
            int valid;
            size_t n = strictjson_utf8_step((const char *)p->s + p->pos, p->len - p->pos, NULL,
                                            &valid);
            if (!valid) return sj_fail(p, STRICTJSON_INVALID, "invalid UTF-8");
            p->pos += n;
        }
    }
    return sj_fail(p, STRICTJSON_INVALID, "a string cut short");
}

static int sj_is_digit(sj *p) {
    return p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9';
}

/* One or more digits, else `why`. */
static int sj_digits(sj *p, const char *why) {
    if (!sj_is_digit(p)) return sj_fail(p, STRICTJSON_INVALID, why);
    while (sj_is_digit(p)) p->pos++;
    return 0;
}

/* 1 when the integer text s[0..n) (an optional '-', then digits without a
 * leading zero) lies outside what json-c holds exactly, [-2^63, 2^64-1]:
 * json-c would clamp it, and chatq would pass a changed number on. */
static int sj_int_out_of_range(const char *s, size_t n) {
    int neg = s[0] == '-';
    const char *d = s + neg;
    size_t nd = n - (size_t)neg;
    const char *max = neg ? "9223372036854775808" : "18446744073709551615";
    size_t nmax = strlen(max);
    return nd > nmax || (nd == nmax && memcmp(d, max, nd) > 0);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; the first integer
 * json-c cannot hold exactly is noted (a valid number all the same) */
static int sj_number(sj *p) {
    size_t start = p->pos;
    if (p->s[p->pos] == '-') p->pos++;
    if (p->pos < p->len && p->s[p->pos] == 'I')
        return sj_fail(p, STRICTJSON_INVALID, "NaN or Infinity");
    if (p->pos < p->len && p->s[p->pos] == '0') {
        p->pos++;
        if (sj_is_digit(p)) {
            p->pos--;
            return sj_fail(p, STRICTJSON_INVALID, "a number with a leading zero");
        }
    } else if (sj_digits(p, "a number without digits after its '-'") < 0) {
        return -1;
    }
    int integer = 1;
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        integer = 0;
        if (sj_digits(p, "a number without digits after its '.'") < 0) return -1;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (sj_digits(p, "a number without digits in its exponent") < 0) return -1;
        integer = 0;
    }
    if (integer && p->st.first_big_int < 0 &&
        sj_int_out_of_range((const char *)p->s + start, p->pos - start))
        p->st.first_big_int = (long)start;
    return 0;
}

static int sj_literal(sj *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return sj_fail(p, STRICTJSON_INVALID, "an unexpected character");
    p->pos += n;
    return 0;
}

static int sj_value(sj *p);

/* An object or an array, at its opening bracket (counted, and its level
 * opened, by sj_count): members (an object's are "key": value) separated by
 * commas, no trailing comma. */
static int sj_container(sj *p, int object) {
    char close = object ? '}' : ']';
    p->pos++;
    sj_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return 0;
    }
    for (;;) {
        if (object) {
            if (p->pos < p->len && p->s[p->pos] == '\'')
                return sj_fail(p, STRICTJSON_INVALID, "a single-quoted string");
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return sj_fail(p, STRICTJSON_INVALID, "an object key that is not a string");
            if (sj_string(p) < 0) return -1;
            sj_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return sj_fail(p, STRICTJSON_INVALID, "a missing ':'");
            p->pos++;
        }
        if (sj_value(p) < 0) return -1;
        sj_ws(p);
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            p->depth--;
            return 0;
        }
        if (p->pos >= p->len || p->s[p->pos] != ',')
            return sj_fail(p, STRICTJSON_INVALID, object ? "a missing ',' or '}'"
                                                         : "a missing ',' or ']'");
        p->pos++;
        sj_ws(p);
    }
}

/* One value, with the white space around it. */
static int sj_value(sj *p) {
    sj_ws(p);
    if (p->pos >= p->len) return sj_fail(p, STRICTJSON_INVALID, "a missing value");
    unsigned char c = p->s[p->pos];
    int container = c == '{' || c == '[';
    if (sj_count(p, container) < 0) return -1;
    int rc;
    if (container)
        rc = sj_container(p, c == '{');
    else if (c == '"')
        rc = sj_string(p);
    else if (c == '-' || (c >= '0' && c <= '9'))
        rc = sj_number(p);
    else if (c == 't')
        rc = sj_literal(p, "true");
    else if (c == 'f')
        rc = sj_literal(p, "false");
    else if (c == 'n')
        rc = sj_literal(p, "null");
    else if (c == 'N' || c == 'I')
        rc = sj_fail(p, STRICTJSON_INVALID, "NaN or Infinity");
    else if (c == '\'')
        rc = sj_fail(p, STRICTJSON_INVALID, "a single-quoted string");
    else
        rc = sj_fail(p, STRICTJSON_INVALID, "an unexpected character");
    if (rc < 0) return -1;
    sj_ws(p);
    return 0;
}

int strictjson_check(const char *s, size_t len, const strictjson_limits *lim,
                     strictjson_stats *st, char *err, size_t errlen) {
    sj p;
    memset(&p, 0, sizeof p);
    p.s = (const unsigned char *)s;
    p.len = len;
    if (lim) p.lim = *lim;
    if (p.lim.max_depth <= 0 || p.lim.max_depth > SJ_MAX_DEPTH) p.lim.max_depth = SJ_MAX_DEPTH;
    p.st.first_nul = -1;
    p.st.first_big_int = -1;
    p.err = err;
    p.errlen = errlen;
    if (err && errlen) err[0] = '\0';
    if (sj_value(&p) == 0 && p.pos < p.len)
        sj_fail(&p, STRICTJSON_INVALID, "data after the value");
    if (st) *st = p.st;
    return p.rc;
}

/* jsonparse.c — one whole JSON text, and the strict scan; see jsonparse.h.
 *
 * jsonparse_strict() is a byte scan (jsonparse_scan) and then json-c. The
 * scan walks the text once, in or out of a string, counting containers and
 * values and noting the first byte that breaks strict JSON; it stops at once
 * when a cost limit is passed, because only then is it unsafe to let json-c
 * go on. The strictness problems wait for json-c's verdict, so that a text
 * whose structure is broken earlier gets json-c's message for that. */
#include "common/jsonparse.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The parse behind both entry points. *fail_at: the byte where it failed. */
static int jsonparse_run(json_tokener *tok, const char *s, size_t len, json_object **out,
                         char *err, size_t errlen, size_t *fail_at) {
    *out = NULL;
    *fail_at = 0;
    if (err && errlen) err[0] = '\0';
    if (len > INT32_MAX) {
        if (err) snprintf(err, errlen, "too large to parse");
        return -1;
    }
    json_tokener_reset(tok);
    json_object *o = json_tokener_parse_ex(tok, s, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (!o && e == json_tokener_continue && end == len) {
        /* A bare number at the very end needs a terminator to complete. */
        o = json_tokener_parse_ex(tok, "", 1);
        e = json_tokener_get_error(tok);
    }
    if (e != json_tokener_success) {
        if (e == json_tokener_continue) e = json_tokener_error_parse_eof;
        if (err) snprintf(err, errlen, "%s at byte %zu", json_tokener_error_desc(e), end);
        json_object_put(o);
        *fail_at = end;
        return -1;
    }
    for (size_t i = end; i < len; i++) {
        char c = s[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            if (err) snprintf(err, errlen, "unexpected data after the value at byte %zu", i);
            json_object_put(o);
            *fail_at = i;
            return -1;
        }
    }
    *out = o;
    return 0;
}

int jsonparse_whole(json_tokener *tok, const char *s, size_t len, json_object **out, char *err,
                    size_t errlen) {
    size_t at;
    return jsonparse_run(tok, s, len, out, err, errlen, &at);
}

/* ---- UTF-8 ---- */

/* The length (1-4) of the valid UTF-8 sequence at p[0..n), or 0. The
 * ranges of the second byte are RFC 3629's table: they exclude overlong
 * forms (E0 80-9F, F0 80-8F), surrogates (ED A0-BF) and code points past
 * U+10FFFF (F4 90-BF, F5-FF). */
static size_t jsonparse_utf8_seq(const unsigned char *p, size_t n) {
    unsigned char c = p[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return len;
}

int jsonparse_utf8_valid(const char *s, size_t len, size_t *bad_at) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = jsonparse_utf8_seq(p + i, len - i);
        if (!n) {
            if (bad_at) *bad_at = i;
            return 0;
        }
        i += n;
    }
    return 1;
}

/* ---- the scan ---- */

typedef struct jsonparse_scan {
    const unsigned char *s;
    size_t len;
    const jsonparse_limits *lim;
    unsigned flags;
    jsonparse_info *info;
    int depth_now;       /* the nesting at the current byte */
    size_t bad_at;       /* the first strictness problem, when bad_why is set */
    const char *bad_why;
} jsonparse_scan;

static void jsonparse_note(jsonparse_scan *sc, size_t at, const char *why) {
    if (!sc->bad_why) {
        sc->bad_why = why;
        sc->bad_at = at;
    }
}

/* The string byte at i (not the opening quote). Returns the index of the
 * last byte it used, and clears *in_str at the closing quote. */
static size_t jsonparse_scan_str(jsonparse_scan *sc, size_t i, int *in_str) {
    unsigned char c = sc->s[i];
    if (c == '"') {
        *in_str = 0;
    } else if (c == '\\') {
        /* "\u0000": json-c's C string would stop there */
        if (i + 5 < sc->len && sc->s[i + 1] == 'u' && !memcmp(sc->s + i + 2, "0000", 4)) {
            if (sc->info->first_nul < 0) sc->info->first_nul = (long)i;
            if (sc->flags & JSONPARSE_REFUSE_NUL) jsonparse_note(sc, i, "\\u0000 (NUL) in a string");
        }
        return i + 1; /* the escaped byte cannot end the string */
    } else if (c < 0x20) {
        jsonparse_note(sc, i, "unescaped control character in a string");
    } else if (c >= 0x80) {
        size_t n = jsonparse_utf8_seq(sc->s + i, sc->len - i);
        if (n) return i + n - 1;
        jsonparse_note(sc, i, "invalid UTF-8");
    }
    return i;
}

/* The byte at i outside strings. Returns -1 when a cost limit is passed
 * (message in err), else 0. */
static int jsonparse_scan_out(jsonparse_scan *sc, size_t i, char *err, size_t errlen) {
    const jsonparse_limits *lim = sc->lim;
    jsonparse_info *info = sc->info;
    unsigned char c = sc->s[i];
    switch (c) {
    case '{':
    case '[':
        info->containers++;
        info->values++;
        if (++sc->depth_now > info->depth) info->depth = sc->depth_now;
        if (lim && lim->max_depth && sc->depth_now > lim->max_depth) {
            if (err) snprintf(err, errlen, "nested deeper than %d at byte %zu", lim->max_depth, i);
            return -1;
        }
        if (lim && lim->max_containers && info->containers > lim->max_containers) {
            if (err)
                snprintf(err, errlen, "more than %ld objects and arrays (byte %zu)",
                         lim->max_containers, i);
            return -1;
        }
        break;
    case '}':
    case ']':
        if (sc->depth_now > 0) sc->depth_now--;
        return 0;
    case ',':
        info->values++;
        break;
    case '.':
        if (i + 1 >= sc->len || sc->s[i + 1] < '0' || sc->s[i + 1] > '9')
            jsonparse_note(sc, i, "a number without digits after its '.'");
        return 0;
    case 'N':
    case 'I':
        jsonparse_note(sc, i, "NaN or Infinity");
        return 0;
    case '\'':
        jsonparse_note(sc, i, "single-quoted string");
        return 0;
    default:
        if (!strchr(":+-0123456789eE \t\r\n" "truefalsn", c) || c == '\0')
            jsonparse_note(sc, i, "unexpected character");
        return 0;
    }
    if (lim && lim->max_values && info->values > lim->max_values) {
        if (err) snprintf(err, errlen, "more than %ld values (byte %zu)", lim->max_values, i);
        return -1;
    }
    return 0;
}

/* Scans s[0..len). Returns -1 when a cost limit is passed (or a strictness
 * problem comes before that point: the text is refused either way, and the
 * first problem is the one to name), else 0 with sc->bad_why set or not. */
static int jsonparse_scan_text(jsonparse_scan *sc, char *err, size_t errlen) {
    int in_str = 0;
    sc->info->values = 1; /* the root */
    for (size_t i = 0; i < sc->len; i++) {
        if (in_str) {
            i = jsonparse_scan_str(sc, i, &in_str);
        } else if (sc->s[i] == '"') {
            in_str = 1;
        } else if (jsonparse_scan_out(sc, i, err, errlen) < 0) {
            if (sc->bad_why && err)
                snprintf(err, errlen, "%s at byte %zu", sc->bad_why, sc->bad_at);
            sc->info->limit_hit = !sc->bad_why;
            return -1;
        }
    }
    return 0;
}

int jsonparse_strict(json_tokener *tok, const char *s, size_t len, const jsonparse_limits *lim,
                     unsigned flags, json_object **out, jsonparse_info *info, char *err,
                     size_t errlen) {
    jsonparse_info local;
    if (!info) info = &local;
    *info = (jsonparse_info){.first_nul = -1};
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    if (len > INT32_MAX) {
        if (err) snprintf(err, errlen, "too large to parse");
        return -1;
    }
    jsonparse_scan sc = {
        .s = (const unsigned char *)s, .len = len, .lim = lim, .flags = flags, .info = info};
    if (jsonparse_scan_text(&sc, err, errlen) < 0) return -1;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    size_t fail_at;
    int rc = jsonparse_run(tok, s, len, out, err, errlen, &fail_at);
    if (sc.bad_why && (rc == 0 || sc.bad_at <= fail_at)) {
        json_object_put(*out);
        *out = NULL;
        if (err) snprintf(err, errlen, "%s at byte %zu", sc.bad_why, sc.bad_at);
        return -1;
    }
    return rc;
}

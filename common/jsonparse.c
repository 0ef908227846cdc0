/* jsonparse.c — one whole JSON text; see jsonparse.h.
 *
 * jsonparse_strict() adds no rule of its own but the NUL flag: strictness
 * and cost are strictjson_check()'s, so that jobs and upstream answers obey
 * one grammar, one count and one UTF-8 decoder. (A byte scan of its own here
 * once let through what json-c's strict mode lets through, such as
 * "01.5" and "-.5", which then reached the upstream verbatim.) The check
 * stops at the first problem, so a "\u0000" it noted came before anything
 * else wrong with the text, and is the problem to name. */
#include "common/jsonparse.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int jsonparse_whole(json_tokener *tok, const char *s, size_t len, json_object **out, char *err,
                    size_t errlen) {
    *out = NULL;
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
        return -1;
    }
    for (size_t i = end; i < len; i++) {
        char c = s[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            if (err) snprintf(err, errlen, "unexpected data after the value at byte %zu", i);
            json_object_put(o);
            return -1;
        }
    }
    *out = o;
    return 0;
}

int jsonparse_strict(json_tokener *tok, const char *s, size_t len, const strictjson_limits *lim,
                     unsigned flags, json_object **out, strictjson_stats *st, char *err,
                     size_t errlen) {
    strictjson_stats local;
    if (!st) st = &local;
    *out = NULL;
    int rc = strictjson_check(s, len, lim, st, err, errlen);
    if ((flags & JSONPARSE_REFUSE_NUL) && st->first_nul >= 0) {
        if (err) snprintf(err, errlen, "\\u0000 (NUL) in a string at byte %ld", st->first_nul);
        return STRICTJSON_INVALID;
    }
    if (rc != STRICTJSON_OK) return rc;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    /* json-c refusing what the check passed would be a bug of one of them,
     * or a tokener shallower than the limit: the text is not used. */
    if (jsonparse_whole(tok, s, len, out, err, errlen) < 0) return STRICTJSON_INVALID;
    return STRICTJSON_OK;
}

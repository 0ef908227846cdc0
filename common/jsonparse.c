/* jsonparse.c — one whole JSON text; see jsonparse.h. */
#include "common/jsonparse.h"

#include <stdint.h>
#include <stdio.h>

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

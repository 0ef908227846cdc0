/* jsonparse.h — parsing exactly one whole JSON text with json-c.
 *
 * json_tokener_parse_ex() stops after the first complete value and needs a
 * terminator after a bare number at the very end; every caller that must
 * accept exactly one value (a job, an upstream answer, a line of a batch
 * file, a stored result) wants the same handling, so it lives here once.
 *
 * The caller owns the tokener (its depth and flags are the caller's choice,
 * e.g. JSON_TOKENER_STRICT for jobs) and may reuse it: it is reset first. */
#ifndef CHATQ_JSONPARSE_H
#define CHATQ_JSONPARSE_H

#include <json-c/json.h>
#include <stddef.h>

/* Parses s[0..len) as one JSON value followed only by white space. Returns 0
 * with *out set (NULL for a JSON null), or -1 with *out NULL and, when err is
 * given, a message such as "unexpected character at byte 12". */
int jsonparse_whole(json_tokener *tok, const char *s, size_t len, json_object **out, char *err,
                    size_t errlen);

#endif

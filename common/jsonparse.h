/* jsonparse.h — parsing exactly one whole JSON text with json-c.
 *
 * json_tokener_parse_ex() stops after the first complete value and needs a
 * terminator after a bare number at the very end; every caller that must
 * accept exactly one value (a job, an upstream answer, a line of a batch
 * file, a stored result) wants the same handling, so it lives here once.
 *
 * The caller owns the tokener and may reuse it: it is reset first. With
 * jsonparse_whole() its depth and flags are the caller's choice.
 *
 * jsonparse_strict() is for untrusted text: strictjson_check()
 * (common/strictjson.h, the one strict checker, shared with the upstream
 * side) and then json-c. The check does all that makes it strict and safe:
 *
 *   - strictness: RFC 8259 exactly and valid UTF-8, which json-c's strict
 *     mode is not (NaN, "1.", "01", raw control characters, overlong UTF-8
 *     and surrogates pass it). Lone surrogate escapes ("\ud800") are
 *     refused, see strictjson.h for why.
 *   - cost: json-c spends hundreds of bytes on every object and array (an
 *     empty object is a hash table of 16 slots, about 780 bytes) and tens
 *     on every other value, so a 1 MiB text of "[{},{},...]" would become
 *     about 260 MB. The check counts values, objects and arrays and measures
 *     the nesting; a text past a limit is refused before json-c allocates
 *     anything.
 *   - NUL: "\u0000" is valid JSON, but json-c's C strings stop at it
 *     ("victim\u0000x" reads as "victim", a member name "a\u0000b" as
 *     "a"). The check notes where the first one is; JSONPARSE_REFUSE_NUL
 *     refuses it. */
#ifndef CHATQ_JSONPARSE_H
#define CHATQ_JSONPARSE_H

#include <json-c/json.h>
#include <stddef.h>

#include "common/strictjson.h"

/* Parses s[0..len) as one JSON value followed only by white space. Returns 0
 * with *out set (NULL for a JSON null), or -1 with *out NULL and, when err is
 * given, a message such as "unexpected character at byte 12". */
int jsonparse_whole(json_tokener *tok, const char *s, size_t len, json_object **out, char *err,
                    size_t errlen);

/* Flags of jsonparse_strict(). */
#define JSONPARSE_REFUSE_NUL 0x1u /* a "\u0000" in any string is an error */

/* Parses s[0..len) as one strict JSON value within lim (may be NULL: no
 * limits but strictjson's own depth cap). st, when given, gets the check's
 * counts whatever the result (up to where it stopped; first_nul -1 when no
 * "\u0000" came before that). json-c then reads the text in its strict mode
 * (the tokener's flags are set to JSON_TOKENER_STRICT); the tokener's depth
 * (json_tokener_new_ex()) must be greater than lim->max_depth, since json-c
 * counts the scalar inside the innermost array as a level.
 *
 * Returns STRICTJSON_OK (0) with *out set (NULL for a JSON null), or with
 * *out NULL: STRICTJSON_TOO_BIG when the text passes a limit, with
 * strictjson's message ("nested deeper than 128 at byte 130", "more than
 * 20000 objects and arrays (byte 80001)", "more than 100000 values (byte
 * 200001)"); STRICTJSON_INVALID when it is not strict JSON, with
 * strictjson's message ("invalid UTF-8 at byte 7"), "\u0000 (NUL) in a
 * string at byte 9" (JSONPARSE_REFUSE_NUL), or json-c's own (a tokener too
 * shallow, no memory). The first problem in the text is the one named. */
int jsonparse_strict(json_tokener *tok, const char *s, size_t len, const strictjson_limits *lim,
                     unsigned flags, json_object **out, strictjson_stats *st, char *err,
                     size_t errlen);

#endif

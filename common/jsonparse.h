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
 * jsonparse_strict() is for untrusted text (jobs, upstream answers): RFC
 * 8259 exactly, valid UTF-8, and a bound on what the parse may cost. It
 * runs one byte scan over the text before json-c sees it:
 *
 *   - cost: json-c spends hundreds of bytes on every object and array (an
 *     empty object is a hash table of 16 slots, about 780 bytes) and tens
 *     on every other value, so a 1 MiB text of "[{},{},...]" would become
 *     about 260 MB. The scan counts objects and arrays, and values (array
 *     elements and object members, see jsonparse_info), and measures the
 *     nesting; a text over a limit is refused before anything is allocated.
 *   - strictness: json-c's strict mode still takes NaN, Infinity, "1.",
 *     raw control characters in strings, and its UTF-8 check lets overlong
 *     forms, surrogates (ED A0 80) and code points past U+10FFFF through.
 *     The scan refuses all of them. Lone surrogate escapes ("\ud800") are
 *     RFC 8259 JSON and json-c reads them as U+FFFD, so they pass.
 *   - NUL: "\u0000" is valid JSON, but json-c's C strings stop at it
 *     ("victim\u0000x" reads as "victim", a member name "a\u0000b" as
 *     "a"). The scan notes where the first one is; JSONPARSE_REFUSE_NUL
 *     refuses it.
 *
 * Strings are tracked the way json-c's strict mode reads them (only double
 * quotes, backslash escapes), so the counts are those of what json-c would
 * build; the scan is an upper bound on a text json-c refuses part way. */
#ifndef CHATQ_JSONPARSE_H
#define CHATQ_JSONPARSE_H

#include <json-c/json.h>
#include <stddef.h>

/* Parses s[0..len) as one JSON value followed only by white space. Returns 0
 * with *out set (NULL for a JSON null), or -1 with *out NULL and, when err is
 * given, a message such as "unexpected character at byte 12". */
int jsonparse_whole(json_tokener *tok, const char *s, size_t len, json_object **out, char *err,
                    size_t errlen);

/* Limits for jsonparse_strict(); a field of 0 means no limit. */
typedef struct jsonparse_limits {
    int max_depth;       /* nesting of objects and arrays ([[1]] is 2) */
    long max_containers; /* objects and arrays */
    long max_values;     /* values, as counted in jsonparse_info */
} jsonparse_limits;

/* What the scan of jsonparse_strict() found. */
typedef struct jsonparse_info {
    long containers; /* objects and arrays */
    long values;     /* the commas, objects and arrays outside strings, plus
                        one: for a text json-c accepts, every array element and
                        object member and the root, plus one per empty object
                        or array (an upper bound, cheap to count) */
    int depth;       /* deepest nesting */
    long first_nul;  /* byte offset of the first "\u0000" escape, -1 if none */
    int limit_hit;   /* 1 when the text was refused for passing a limit (the
                        counts then stop where the scan stopped) */
} jsonparse_info;

/* Flags of jsonparse_strict(). */
#define JSONPARSE_REFUSE_NUL 0x1u /* a "\u0000" in any string is an error */

/* Parses s[0..len) as one strict JSON value, as jsonparse_whole() does, after
 * the scan described above. It sets the tokener's flags to
 * JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8; the tokener's depth
 * (json_tokener_new_ex()) must be greater than lim->max_depth, since json-c
 * counts the scalar inside the innermost array as a level. lim may be NULL (no
 * limits). info, when given, is filled whatever the result (all zero and
 * first_nul -1 when the scan did not run).
 *
 * Returns 0 with *out set, or -1 with *out NULL and a message naming the
 * first problem and its byte offset: "nested deeper than 128 at byte 130",
 * "more than 20000 objects and arrays (byte 80001)", "more than 100000
 * values (byte 200001)", "invalid UTF-8 at byte 7", "unescaped control
 * character in a string at byte 12", "NaN or Infinity at byte 3", "\u0000
 * (NUL) in a string at byte 9", or one of json-c's. When the text breaks
 * more than one rule, the first in the text is named; but json-c's own
 * syntax errors are looked for only when the scan found the cost within the
 * limits (a text past a limit is never handed to json-c). info->limit_hit
 * tells a refusal for cost from the others. */
int jsonparse_strict(json_tokener *tok, const char *s, size_t len, const jsonparse_limits *lim,
                     unsigned flags, json_object **out, jsonparse_info *info, char *err,
                     size_t errlen);

/* 1 when s[0..len) is valid UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF); otherwise 0 and, when bad_at is given,
 * the offset of the first invalid sequence. */
int jsonparse_utf8_valid(const char *s, size_t len, size_t *bad_at);

#endif

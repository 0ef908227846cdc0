/* strictjson.h — is a text one strict JSON value, and what would it cost?
 *
 * chatq publishes and stores upstream answers as they came, so it promises
 * consumers strict RFC 8259 JSON in valid UTF-8 (SPEC §5). json-c's parser
 * is lenient (single quotes, NaN, comments, trailing commas, raw control
 * characters and invalid UTF-8 pass), so every upstream text is checked here
 * before it is parsed. The same single pass counts what parsing it would
 * build — values (containers included), containers, nesting depth — because
 * json-c's objects cost far more memory than their text (an empty object
 * "{}", 3 bytes, costs about 780 bytes parsed): an answer is refused before
 * it is parsed, not after.
 *
 * Strict means, beyond the RFC 8259 grammar (one value, surrounded only by
 * spaces, tabs, CR and LF):
 *   - strings hold no raw byte below 0x20, only the escapes \" \\ \/ \b \f
 *     \n \r \t \uXXXX, and valid UTF-8 (no overlong forms, no surrogates,
 *     nothing above U+10FFFF);
 *   - a \u escape of a surrogate must be a high one followed by a low one
 *     (a lone surrogate decodes to no character, so its text could not be
 *     passed on as UTF-8);
 *   - numbers as the RFC writes them: no leading zeros, "+", ".5", "1.",
 *     hex, NaN or Infinity.
 * Duplicate object keys are allowed (the RFC allows them too).
 *
 * strictjson_utf8() is the UTF-8 decoder the check uses, for other code that
 * must tell valid UTF-8 from bytes that are not (the terminal filter of
 * common/output.h, the excerpts of upstream text in error messages).
 *
 * This is meant to be folded into common/jsonparse.h once that module parses
 * strictly itself; until then it stands alone and allocates nothing. */
#ifndef CHATQ_STRICTJSON_H
#define CHATQ_STRICTJSON_H

#include <stddef.h>
#include <stdint.h>

/* Bounds on what one text may hold; 0 = no bound. */
typedef struct strictjson_limits {
    size_t max_values;     /* every value, containers and members' values included */
    size_t max_containers; /* objects and arrays */
    int max_depth;         /* nesting: "[]" is depth 1 */
} strictjson_limits;

/* What a text holds (counted up to where the check stopped). */
typedef struct strictjson_stats {
    size_t values;
    size_t containers;
    int depth;             /* the deepest nesting seen */
} strictjson_stats;

#define STRICTJSON_OK 0
#define STRICTJSON_INVALID (-1) /* not one strict JSON value */
#define STRICTJSON_TOO_BIG (-2) /* valid so far, but past one of the limits */

/* Checks s[0..len). Returns STRICTJSON_OK, or STRICTJSON_INVALID /
 * STRICTJSON_TOO_BIG with a one-line reason in err (when given), such as
 * "invalid UTF-8 at byte 12" or "more than 10000 values". lim may be NULL
 * (no bounds), st too (not wanted). */
int strictjson_check(const char *s, size_t len, const strictjson_limits *lim,
                     strictjson_stats *st, char *err, size_t errlen);

/* The length (1 to 4) of the valid UTF-8 sequence at s[0..n), with its code
 * point in *cp (may be NULL); 0 when s does not start with one (a stray
 * continuation byte, an overlong form, a surrogate, a code point above
 * U+10FFFF, or a sequence cut short by n). n must be at least 1. */
int strictjson_utf8(const char *s, size_t n, uint32_t *cp);

#endif

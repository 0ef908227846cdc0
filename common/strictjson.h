/* strictjson.h — is a text one strict JSON value, and what would it cost?
 *
 * chatq takes JSON from outside twice: jobs from producers (docs/protocol.md §4, via
 * jsonparse_strict() in common/jsonparse.h) and answers from upstreams,
 * which it publishes and stores as they came (docs/protocol.md §5). Both must be strict
 * RFC 8259 JSON in valid UTF-8, and json-c's parser is lenient (single
 * quotes, NaN, comments, trailing commas, leading zeros, raw control
 * characters and invalid UTF-8 pass, even in its strict mode), so every such
 * text is checked here before json-c sees it. This is the one check: the
 * job side and the upstream side use the same grammar and the same counts.
 *
 * The same single pass counts what parsing the text would build — values
 * (containers included), containers, nesting depth — because json-c's
 * objects cost far more memory than their text (an empty object "{}",
 * 3 bytes, costs about 780 bytes parsed): a text is refused before it is
 * parsed, not after. It also notes where the first "\u0000" escape is,
 * since json-c's C strings stop there (the job side refuses it).
 *
 * Strict means, beyond the RFC 8259 grammar (one value, surrounded only by
 * spaces, tabs, CR and LF):
 *   - strings hold no raw byte below 0x20, only the escapes \" \\ \/ \b \f
 *     \n \r \t \uXXXX, and valid UTF-8 (no overlong forms, no surrogates,
 *     nothing above U+10FFFF);
 *   - a \u escape of a surrogate must be a high one followed by a low one.
 *     A lone surrogate is RFC 8259 syntax but decodes to no character: the
 *     string has no UTF-8 form (docs/protocol.md §4: every string in a job is valid
 *     UTF-8), json-c would silently turn it into U+FFFD (so a job's text
 *     would reach the upstream changed), and a published answer holding one
 *     breaks consumers that decode strictly. So it is refused, on both sides;
 *   - numbers as the RFC writes them: no leading zeros ("01", "-02"), no
 *     "+", ".5", "-.5", "1.", hex, NaN or Infinity.
 * Duplicate object keys are allowed (the RFC allows them too).
 *
 * strictjson_utf8_step() is the one UTF-8 decoder of chatq: the check uses
 * it, and so does other code that must tell valid UTF-8 from bytes that are
 * not (the terminal filter of common/output.h, the U+FFFD replacement of
 * buf_json_str() in common/buf.h, the excerpts of upstream text in error
 * messages). It allocates nothing and needs nothing but libc. */
#ifndef CHATQ_STRICTJSON_H
#define CHATQ_STRICTJSON_H

#include <stddef.h>
#include <stdint.h>

/* Bounds on what one text may hold; 0 = no bound. */
typedef struct strictjson_limits {
    size_t max_values;     /* every value, containers and members' values included */
    size_t max_containers; /* objects and arrays */
    int max_depth;         /* nesting: "[]" is depth 1 (and at most 1000 anyway) */
} strictjson_limits;

/* What a text holds (counted up to where the check stopped). */
typedef struct strictjson_stats {
    size_t values;         /* the root, every array element, every member's value:
                              "[1,{}]" is 3, "{"a":[]}" is 2 */
    size_t containers;     /* objects and arrays */
    int depth;             /* the deepest nesting seen */
    long first_nul;        /* byte offset of the first "\u0000" escape (its
                              backslash), -1 when there is none */
    long first_big_int;    /* byte offset of the first integer outside
                              [-2^63, 2^64-1], which json-c would clamp (and
                              so change when written back); -1 = none */
} strictjson_stats;

#define STRICTJSON_OK 0
#define STRICTJSON_INVALID (-1) /* not one strict JSON value */
#define STRICTJSON_TOO_BIG (-2) /* valid so far, but past one of the limits */

/* Checks s[0..len). Returns STRICTJSON_OK, or STRICTJSON_INVALID /
 * STRICTJSON_TOO_BIG with a one-line reason in err (when given) naming the
 * first problem in the text and its byte offset: "invalid UTF-8 at byte 12",
 * "a number with a leading zero at byte 5", "nested deeper than 32 at byte
 * 40", "more than 20000 objects and arrays (byte 60104)", "more than 10000
 * values (byte 20001)". lim may be NULL (no bounds), st too (not wanted). */
int strictjson_check(const char *s, size_t len, const strictjson_limits *lim,
                     strictjson_stats *st, char *err, size_t errlen);

/* Decodes the UTF-8 sequence at s[0..n) (n at least 1) and returns how many
 * bytes to step over. *valid is set to 1 for a valid sequence (RFC 3629: no
 * overlong form, no surrogate, nothing above U+10FFFF): the step is its
 * length (1 to 4) and its code point goes to *cp (may be NULL). Otherwise
 * *valid is 0 and the step is the length of the sequence's "maximal
 * subpart" (Unicode §3.9: the lead byte and the continuation bytes that fit
 * it, at least 1), which a decoder replaces by one U+FFFD, as Python does. */
size_t strictjson_utf8_step(const char *s, size_t n, uint32_t *cp, int *valid);

/* The length (1 to 4) of the valid UTF-8 sequence at s[0..n), with its code
 * point in *cp (may be NULL); 0 when s does not start with one (a stray
 * continuation byte, an overlong form, a surrogate, a code point above
 * U+10FFFF, or a sequence cut short by n). n must be at least 1. The same
 * decoder as strictjson_utf8_step(), for callers that only ask "valid?". */
int strictjson_utf8(const char *s, size_t n, uint32_t *cp);

#endif

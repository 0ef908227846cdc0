/* output.h — the error object and the Batch-format output line (docs/protocol.md §6).
 *
 * output_error():   {"code","message","status","upstream"}   (upstream: the
 *                   upstream's error object or null)
 * output_line():    {"id","custom_id","response":{"status_code","request_id",
 *                   "body"}|null,"error":null|{"code","message"}}
 * A final HTTP answer (status_code > 0: success or upstream 4xx/5xx) fills
 * "response" with `body` and leaves "error" null; anything else
 * (status_code 0) has "response" null and "error" {code, message}.
 * body_json is the body as JSON text (NULL: null), put in as it is.
 *
 * output_term_safe(): upstream text made harmless for a terminal, for the
 * CLI commands that print it (`submit --stream`, `watch`). A model's answer
 * (or a hostile upstream's) may hold escape sequences that move the cursor,
 * rewrite what was printed, retitle the window or worse; printed raw to a
 * terminal they take effect. So, of all the characters:
 *   - \n and \t pass; a \r just before a \n is dropped (CRLF line ends);
 *   - other C0 controls and DEL show in caret notation, as `cat -v` shows
 *     them: ESC is "^[", a lone CR "^M", DEL "^?";
 *   - C1 controls (U+0080-U+009F, which some terminals obey like ESC
 *     sequences) and the bidirectional overrides and isolates (U+202A-U+202E,
 *     U+2066-U+2069, which reorder what is shown: "Trojan Source") show as
 *     "<U+009B>";
 *   - bytes that are not valid UTF-8 show as "<9B>", as `less` shows them;
 *   - everything else passes as it is.
 * When the output is not a terminal (a file, a pipe), the CLI prints the
 * text as it is: the filter is for eyes, not for data.
 *
 * Ownership: output_error() returns a new object; `upstream` is borrowed
 * (its reference count is raised). output_line() returns malloc'd text. */
#ifndef CHATQ_OUTPUT_H
#define CHATQ_OUTPUT_H

#include <json-c/json.h>
#include <stddef.h>

#include "common/buf.h"

json_object *output_error(const char *code, const char *message, int status,
                          json_object *upstream);

char *output_line(const char *id, const char *custom_id, int status_code,
                  const char *request_id, const char *body_json, const char *err_code,
                  const char *err_message);

/* Appends s[0..len) to out, made safe for a terminal (see above). */
void output_term_safe(buf *out, const char *s, size_t len);

#endif

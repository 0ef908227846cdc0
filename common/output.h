/* output.h — the error object and the Batch-format output line (SPEC §6).
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
 * Ownership: output_error() returns a new object; `upstream` is borrowed
 * (its reference count is raised). output_line() returns malloc'd text. */
#ifndef CHATQ_OUTPUT_H
#define CHATQ_OUTPUT_H

#include <json-c/json.h>

json_object *output_error(const char *code, const char *message, int status,
                          json_object *upstream);

char *output_line(const char *id, const char *custom_id, int status_code,
                  const char *request_id, const char *body_json, const char *err_code,
                  const char *err_message);

#endif

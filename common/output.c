/* output.c — the error object and the Batch-format output line (SPEC §6).
 *
 * Both are built as json-c objects and serialised plain (no spaces, no
 * escaped slashes), so a line is one compact JSON text with no newline. The
 * objects the caller passes in (`upstream`, `body`) are borrowed: their
 * reference count is raised while they sit in the new object, and dropped
 * again when the new object goes. */
#include "common/output.h"

#include "common/buf.h"

#define OUTPUT_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* A string member, or null when s is NULL. */
static json_object *output_str(const char *s) { return s ? json_object_new_string(s) : NULL; }

json_object *output_error(const char *code, const char *message, int status,
                          json_object *upstream) {
    json_object *e = json_object_new_object();
    json_object_object_add(e, "code", output_str(code));
    json_object_object_add(e, "message", output_str(message));
    json_object_object_add(e, "status", json_object_new_int(status));
    json_object_object_add(e, "upstream", json_object_get(upstream));
    return e;
}

char *output_line(const char *id, const char *custom_id, int status_code,
                  const char *request_id, json_object *body, const char *err_code,
                  const char *err_message) {
    json_object *line = json_object_new_object();
    json_object_object_add(line, "id", output_str(id));
    json_object_object_add(line, "custom_id", output_str(custom_id ? custom_id : id));
    if (status_code > 0) {
        /* A final HTTP answer, success or not: OpenAI puts it in response. */
        json_object *resp = json_object_new_object();
        json_object_object_add(resp, "status_code", json_object_new_int(status_code));
        json_object_object_add(resp, "request_id", output_str(request_id));
        json_object_object_add(resp, "body", json_object_get(body));
        json_object_object_add(line, "response", resp);
        json_object_object_add(line, "error", NULL);
    } else {
        json_object *err = json_object_new_object();
        json_object_object_add(err, "code", output_str(err_code));
        json_object_object_add(err, "message", output_str(err_message));
        json_object_object_add(line, "response", NULL);
        json_object_object_add(line, "error", err);
    }
    char *text = xstrdup(json_object_to_json_string_ext(line, OUTPUT_FLAGS));
    json_object_put(line);
    return text;
}

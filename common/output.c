/* output.c — the error object and the Batch-format output line (docs/protocol.md §6).
 *
 * Both are built as json-c objects and serialised plain (no spaces, no
 * escaped slashes), so a line is one compact JSON text with no newline. The
 * objects the caller passes in (`upstream`, `body`) are borrowed: their
 * reference count is raised while they sit in the new object, and dropped
 * again when the new object goes. */
#include "common/output.h"

#include <string.h>

#include "common/strictjson.h"

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

/* Appends s as a JSON string, or null. */
static void output_put_str(buf *b, const char *s) {
    if (s)
        buf_json_str(b, s, strlen(s));
    else
        buf_puts(b, "null");
}

/* Built as text, not through json-c: the body is usually the upstream's
 * answer, already JSON, and re-parsing it for every job would be waste. */
char *output_line(const char *id, const char *custom_id, int status_code,
                  const char *request_id, const char *body_json, const char *err_code,
                  const char *err_message) {
    buf b = {0};
    buf_puts(&b, "{\"id\":");
    output_put_str(&b, id);
    buf_puts(&b, ",\"custom_id\":");
    output_put_str(&b, custom_id ? custom_id : id);
    if (status_code > 0) {
        /* A final HTTP answer, success or not: OpenAI puts it in response. */
        buf_printf(&b, ",\"response\":{\"status_code\":%d,\"request_id\":", status_code);
        output_put_str(&b, request_id);
        buf_puts(&b, ",\"body\":");
        buf_puts(&b, body_json ? body_json : "null");
        buf_puts(&b, "},\"error\":null}");
    } else {
        buf_puts(&b, ",\"response\":null,\"error\":{\"code\":");
        output_put_str(&b, err_code);
        buf_puts(&b, ",\"message\":");
        output_put_str(&b, err_message);
        buf_puts(&b, "}}");
    }
    return buf_steal(&b);
}

/* ---- text for a terminal ---------------------------------------------------- */

/* 1 for the code points shown as <U+XXXX>: C1 controls, bidi overrides and
 * isolates. */
static int output_hidden_cp(uint32_t cp) {
    return (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

void output_term_safe(buf *out, const char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7F)) {
            buf_putc(out, (char)c);
            i++;
        } else if (c == '\r' && i + 1 < len && s[i + 1] == '\n') {
            i++; /* CRLF: the LF alone */
        } else if (c < 0x80) { /* C0 or DEL: ^@ .. ^_, ^? */
            buf_putc(out, '^');
            buf_putc(out, (char)(c ^ 0x40));
            i++;
        } else {
            uint32_t cp;
            int n = strictjson_utf8(s + i, len - i, &cp);
            if (n == 0)
                buf_printf(out, "<%02X>", c);
            else if (output_hidden_cp(cp))
                buf_printf(out, "<U+%04X>", (unsigned)cp);
            else
                buf_append(out, s + i, (size_t)n);
            i += n ? (size_t)n : 1;
        }
    }
}

/* sse.c — incremental Server-Sent Events parser; see sse.h for the rules.
 *
 * How it works: sse_feed() walks its input looking for the next line end with
 * memchr() (one scan for LF, one for CR, each result cached until the walk
 * passes it, so every input byte is scanned at most twice and an LF-only
 * stream costs a single memchr per line). A line that lies whole inside the
 * input is interpreted in place, without copying; only the piece left over at
 * the end of an input (a line still open) is copied into p->line, and the
 * next feed completes it there. Data lines are appended to p->data, whose
 * block is reused from event to event, so a steady stream allocates nothing.
 *
 * State carried between feeds, besides the open line and event:
 *   - bom_state: how many bytes of a leading BOM were matched; when the
 *     stream turns out not to start with a BOM, those held-back bytes are
 *     given back as the start of the first line;
 *   - last_was_cr: the input ended in a CR that ended a line, so an LF that
 *     starts the next input is the second half of that CRLF.
 *
 * Size limit: with p->max_event set, the bytes buffered for one event (the
 * data lines kept so far, each with its '\n', plus the open line) may not
 * exceed it; sse_feed() returns -2 when they do. The parser is then in the
 * middle of a line it gave up on: the caller is expected to abandon the
 * stream (sse_finish() or sse_free()), not to feed it more. */
#include "common/sse.h"

#include <string.h>

static const unsigned char sse_bom[3] = {0xEF, 0xBB, 0xBF};

/* bom_state value once the stream start has been dealt with, either way. */
#define SSE_BOM_DONE 3

void sse_init(sse_parser *p, sse_event_cb cb, void *ud) {
    memset(p, 0, sizeof(*p));
    p->cb = cb;
    p->ud = ud;
}

/* Forgets the current event; buffers keep their blocks for the next one. */
static void sse_reset_event(sse_parser *p) {
    buf_reset(&p->data);
    buf_reset(&p->event);
    p->has_data = 0;
}

/* Blank line: hand the event to the callback if it has data. The type is
 * reset either way, as WHATWG requires. */
static int sse_dispatch(sse_parser *p) {
    int rc = 0;
    if (p->has_data) {
        /* data holds each line followed by '\n': the last one is not data. */
        p->data.len--;
        p->data.data[p->data.len] = '\0';
        const char *type = p->event.len ? p->event.data : "message";
        if (p->cb) rc = p->cb(p->ud, type, p->data.data, p->data.len);
    }
    sse_reset_event(p);
    return rc;
}

/* Interprets one complete line (without its line end). Returns 0, the
 * callback's value, or -2 when the event's data grew past the limit. */
static int sse_line(sse_parser *p, const char *s, size_t n) {
    if (n == 0) return sse_dispatch(p);
    if (s[0] == ':') return 0; /* comment, e.g. ": keep-alive" */

    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    if (vlen && *v == ' ') { /* only one space goes: "data:  x" is " x" */
        v++;
        vlen--;
    }

    if (name_len == 4 && memcmp(s, "data", 4) == 0) {
        buf_append(&p->data, v, vlen);
        buf_putc(&p->data, '\n');
        p->has_data = 1;
        if (p->max_event && p->data.len > p->max_event) return -2;
    } else if (name_len == 5 && memcmp(s, "event", 5) == 0) {
        buf_reset(&p->event);
        buf_append(&p->event, v, vlen);
    }
    /* "id", "retry" and unknown fields: nothing chatq needs. */
    return 0;
}

/* Matches the leading BOM, which may come split across feeds. Returns how
 * many bytes of `data` it consumed. */
static size_t sse_skip_bom(sse_parser *p, const char *data, size_t len) {
    size_t i = 0;
    while (p->bom_state >= 0 && p->bom_state < SSE_BOM_DONE && i < len) {
        if ((unsigned char)data[i] == sse_bom[p->bom_state]) {
            p->bom_state++;
            i++;
        } else {
            /* Not a BOM after all: the bytes held back start the first line.
             * None of them is a CR or LF, so they can only be line content. */
            buf_append(&p->line, sse_bom, (size_t)p->bom_state);
            p->bom_state = SSE_BOM_DONE;
        }
    }
    return i;
}

/* Index of the first c in data[from, len), or len when there is none. */
static size_t sse_find(const char *data, size_t from, size_t len, char c) {
    const char *q = memchr(data + from, c, len - from);
    return q ? (size_t)(q - data) : len;
}

/* Keeps data[pos, len), a line still open at the end of the input. */
static int sse_keep_open_line(sse_parser *p, const char *data, size_t pos, size_t len) {
    buf_append(&p->line, data + pos, len - pos);
    if (p->max_event && p->data.len + p->line.len > p->max_event) return -2;
    return 0;
}

int sse_feed(sse_parser *p, const char *data, size_t len) {
    if (len == 0) return 0;
    size_t pos = sse_skip_bom(p, data, len);
    if (pos < len && p->last_was_cr) {
        if (data[pos] == '\n') pos++; /* second half of a split CRLF */
        p->last_was_cr = 0;
    }

    /* Next LF / CR at or after pos; len when there is none, which is never
     * below pos, so a failed search is not repeated. */
    size_t lf = sse_find(data, pos, len, '\n');
    size_t cr = sse_find(data, pos, len, '\r');
    while (pos < len) {
        if (lf < pos) lf = sse_find(data, pos, len, '\n');
        if (cr < pos) cr = sse_find(data, pos, len, '\r');
        size_t eol = lf < cr ? lf : cr;
        if (eol == len) return sse_keep_open_line(p, data, pos, len);

        const char *s = data + pos;
        size_t n = eol - pos;
        int from_line = p->line.len > 0;
        if (from_line) { /* completes a line begun in an earlier feed */
            buf_append(&p->line, s, n);
            s = p->line.data;
            n = p->line.len;
        }

        /* Step over the line end before the callback can stop us, so the
         * CRLF state is right even when the rest of the input is dropped. */
        pos = eol + 1;
        if (data[eol] == '\r') {
            if (pos == len) p->last_was_cr = 1;
            else if (data[pos] == '\n') pos++;
        }

        int rc = sse_line(p, s, n);
        if (from_line) buf_reset(&p->line);
        if (rc) return rc;
    }
    return 0;
}

void sse_finish(sse_parser *p) {
    buf_reset(&p->line);
    sse_reset_event(p);
    /* Ready for a new stream (e.g. the next attempt), BOM rule included. */
    p->last_was_cr = 0;
    p->bom_state = 0;
}

void sse_free(sse_parser *p) {
    buf_free(&p->line);
    buf_free(&p->data);
    buf_free(&p->event);
}

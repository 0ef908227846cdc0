/* sse.h — an incremental Server-Sent Events parser (WHATWG HTML §9.2.6).
 *
 * Feed it the response body in pieces of any size, split at any byte; it
 * calls back once per dispatched event. Rules followed:
 *   - lines end in LF, CRLF or a lone CR; a CR at the end of one piece followed
 *     by an LF at the start of the next is one line end, not two;
 *   - a UTF-8 BOM (EF BB BF) at the very start of the stream is skipped, even
 *     when split across pieces;
 *   - a line starting with ':' is a comment and is ignored;
 *   - "field:value" with one optional space after the colon removed; a line
 *     without a colon is a field with an empty value;
 *   - "data" lines are joined with '\n'; "event" sets the event type; "id" and
 *     "retry" are recorded/ignored; unknown fields are ignored;
 *   - a blank line dispatches the event; an event with no data line is not
 *     dispatched (its type is reset); the final '\n' of the data is removed;
 *   - at end of stream (sse_finish), an incomplete event is discarded.
 * Bytes are passed through untouched, so a UTF-8 sequence split across pieces
 * comes out whole in the event data.
 *
 * Ownership: the parser owns its buffers; sse_free() releases them. The
 * strings passed to the callback are valid only during the call. */
#ifndef CHATQ_SSE_H
#define CHATQ_SSE_H

#include <stddef.h>

#include "common/buf.h"

/* Called for each dispatched event. `event` is the event type ("message" when
 * no event field was given), `data`/`len` the joined data (NUL-terminated).
 * Return 0 to go on, non-zero to stop: sse_feed() then returns that value
 * at once without parsing the rest of its input. */
typedef int (*sse_event_cb)(void *ud, const char *event, const char *data, size_t len);

typedef struct sse_parser {
    sse_event_cb cb;
    void *ud;
    buf line;        /* the current, incomplete line */
    buf data;        /* data of the current event, each line followed by '\n' */
    buf event;       /* event type of the current event */
    int has_data;    /* a data field was seen in the current event */
    int last_was_cr; /* the previous byte was a CR that ended a line */
    int bom_state;   /* bytes of the BOM matched so far; 3 (or -1) = done */
    size_t max_event; /* 0 = no limit; else sse_feed returns -2 past it */
} sse_parser;

void sse_init(sse_parser *p, sse_event_cb cb, void *ud);
/* Returns 0, the callback's non-zero value, or -2 when an event grew past
 * p->max_event bytes. */
int sse_feed(sse_parser *p, const char *data, size_t len);
/* End of stream: drops any incomplete line and event. */
void sse_finish(sse_parser *p);
void sse_free(sse_parser *p);

#endif

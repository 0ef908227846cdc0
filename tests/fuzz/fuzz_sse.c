/* fuzz_sse.c — libFuzzer target for the SSE parser (common/sse.h).
 *
 * The first input byte seeds how the rest, the stream, is cut into pieces;
 * sse.h promises the same events whatever the cut. So the stream is parsed
 * twice, in one piece and in pieces of 0 to 16 bytes, and the two lists of
 * events must be equal (else the target aborts, which libFuzzer reports as
 * a crash). A third pass, in pieces, sets max_event and has the callback
 * stop the parser after a number of events (as the worker does), for the
 * early-exit paths; only its memory safety is checked. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/sse.h"

typedef struct events {
    buf log;      /* every event as "<type>\0<len>:<data>\n" */
    int count;
    int stop_at;  /* the callback returns 1 at this event; 0 = never */
} events;

static int on_event(void *ud, const char *event, const char *data, size_t len) {
    events *e = ud;
    if (!event || !data || data[len] != '\0') abort(); /* the header's promises */
    buf_puts(&e->log, event);
    buf_printf(&e->log, "%c%zu:", '\0', len);
    buf_append(&e->log, data, len);
    buf_putc(&e->log, '\n');
    e->count++;
    return e->stop_at && e->count == e->stop_at;
}

/* A small deterministic sequence of piece lengths. */
static unsigned next_len(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s % 17;
}

/* Parses the stream in pieces; returns what the last sse_feed returned. */
static int feed_in_pieces(sse_parser *p, const char *d, size_t n, uint32_t seed) {
    int rc = 0;
    size_t off = 0;
    while (off < n && rc == 0) {
        size_t k = next_len(&seed);
        if (k > n - off) k = n - off;
        rc = sse_feed(p, d + off, k);
        off += k;
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint32_t seed = 0x9e3779b9u ^ data[0];
    const char *d = (const char *)data + 1;
    size_t n = size - 1;

    events whole = {0}, pieces = {0};
    sse_parser p;
    sse_init(&p, on_event, &whole);
    if (sse_feed(&p, d, n) != 0) abort();
    sse_finish(&p);
    sse_free(&p);

    sse_init(&p, on_event, &pieces);
    if (feed_in_pieces(&p, d, n, seed) != 0) abort();
    sse_finish(&p);
    sse_free(&p);

    if (whole.log.len != pieces.log.len ||
        (whole.log.len && memcmp(whole.log.data, pieces.log.data, whole.log.len) != 0)) {
        fprintf(stderr, "fuzz_sse: %d events in one piece, %d in pieces (seed byte %u)\n",
                whole.count, pieces.count, data[0]);
        abort();
    }

    events limited = {.stop_at = data[0] % 5};
    sse_init(&p, on_event, &limited);
    p.max_event = (size_t)(data[0] % 7) * 16; /* 0 = no limit */
    feed_in_pieces(&p, d, n, seed);
    sse_finish(&p);
    sse_free(&p);

    buf_free(&whole.log);
    buf_free(&pieces.log);
    buf_free(&limited.log);
    return 0;
}

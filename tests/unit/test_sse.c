/* test_sse.c — unit tests for the SSE parser (common/sse.c).
 *
 * Most rules are checked by a table of cases: an input stream and the events
 * it must give. Each case is run fed whole, one byte at a time, cut in two at
 * every position and cut in three at every pair of positions, so every rule
 * is also checked against every way a network read could split it. Events
 * are recorded as a string `type=<json>,data=<json>;...` so a mismatch shows
 * exactly what came out. The rest (callback stop, size limit, sse_finish,
 * a realistic OpenAI stream) have tests of their own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/sse.h"

/* ---- recording events ---------------------------------------------------- */

typedef struct rec {
    buf out;      /* events seen, serialized */
    int count;    /* events seen */
    int stop_at;  /* return stop_rc from the stop_at-th event (1-based); 0 = never */
    int stop_rc;
} rec;

static void rec_put(buf *b, const char *event, const char *data, size_t len) {
    buf_puts(b, "type=");
    buf_json_str(b, event, strlen(event));
    buf_puts(b, ",data=");
    buf_json_str(b, data, len);
    buf_puts(b, ";");
}

static int rec_cb(void *ud, const char *event, const char *data, size_t len) {
    rec *r = ud;
    assert_non_null(event);
    assert_non_null(data);
    assert_int_equal(data[len], '\0'); /* the contract: NUL-terminated */
    rec_put(&r->out, event, data, len);
    r->count++;
    return r->count == r->stop_at ? r->stop_rc : 0;
}

/* ---- the table ------------------------------------------------------------ */

typedef struct want {
    const char *event;
    const char *data;
} want;

typedef struct sse_case {
    const char *name;
    const char *input;
    want events[6]; /* ends at the first {NULL} */
} sse_case;

#define BOM "\xEF\xBB\xBF"

static const sse_case cases[] = {
    {"LF line ends", "data: a\n\ndata: b\n\n", {{"message", "a"}, {"message", "b"}}},
    {"CRLF line ends", "data: a\r\n\r\ndata: b\r\n\r\n", {{"message", "a"}, {"message", "b"}}},
    {"lone CR line ends", "data: a\r\rdata: b\r\r", {{"message", "a"}, {"message", "b"}}},
    {"mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", {{"message", "a\nb\nc"}}},
    {"CR CR is two line ends", "data: a\r\r\r\n", {{"message", "a"}}},
    {"comment keep-alive", ": keep-alive\n\ndata: x\n\n", {{"message", "x"}}},
    {"comment OPENROUTER", ": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\n", {{NULL}}},
    {"comment inside an event", "data: a\n: note\ndata: b\n\n", {{"message", "a\nb"}}},
    {"colon alone is a comment", ":\n\ndata: x\n\n", {{"message", "x"}}},
    {"data without space", "data:x\n\n", {{"message", "x"}}},
    {"data with one space", "data: x\n\n", {{"message", "x"}}},
    {"only one space removed", "data:  x\n\n", {{"message", " x"}}},
    {"tab is not removed", "data:\tx\n\n", {{"message", "\tx"}}},
    {"trailing space kept", "data: x \n\n", {{"message", "x "}}},
    {"colon inside value kept", "data: {\"a\":\"b: c\"}\n\n", {{"message", "{\"a\":\"b: c\"}"}}},
    {"multi-line data", "data: a\ndata: b\ndata: c\n\n", {{"message", "a\nb\nc"}}},
    {"empty data line", "data:\n\n", {{"message", ""}}},
    {"empty data lines join", "data\ndata\n\n", {{"message", "\n"}}},
    {"empty line inside data", "data: a\ndata:\ndata: b\n\n", {{"message", "a\n\nb"}}},
    {"no colon: data with empty value", "data\n\n", {{"message", ""}}},
    {"no colon: unknown field", "foo\n\n", {{NULL}}},
    {"event field", "event: delta\ndata: x\n\n", {{"delta", "x"}}},
    {"event field after data", "data: x\nevent: delta\n\n", {{"delta", "x"}}},
    {"last event field wins", "event: a\nevent: b\ndata: x\n\n", {{"b", "x"}}},
    {"event type resets per event", "event: a\ndata: 1\n\ndata: 2\n\n",
     {{"a", "1"}, {"message", "2"}}},
    {"empty event type is message", "event:\ndata: x\n\n", {{"message", "x"}}},
    {"event without data resets type", "event: ping\n\ndata: x\n\n", {{"message", "x"}}},
    {"id and retry ignored", "id: 42\nretry: 1000\ndata: x\n\n", {{"message", "x"}}},
    {"id alone dispatches nothing", "id: 42\n\nretry: 5\n\n", {{NULL}}},
    {"unknown fields ignored", "foo: bar\nDATA: y\ndata : z\ndatax: w\ndata: x\n\n",
     {{"message", "x"}}},
    {"blank lines without data", "\n\n\r\n\r\r\n", {{NULL}}},
    {"BOM at start skipped", BOM "data: x\n\n", {{"message", "x"}}},
    {"BOM at start then comment", BOM ": hi\n\ndata: x\n\n", {{"message", "x"}}},
    /* Were the BOM kept, the field name would be BOM"data" and nothing would
     * be dispatched; only one leading BOM is removed. */
    {"second BOM kept", BOM BOM "data: x\n\n", {{NULL}}},
    {"BOM inside data kept", "data: " BOM "x\n\n", {{"message", BOM "x"}}},
    {"BOM on a later line kept", "data: a\n\n" BOM "data: b\n\n", {{"message", "a"}}},
    /* A BOM prefix that is not a BOM stays in the line (were it dropped, the
     * line would read "data: x"). */
    {"partial BOM kept", "\xEF\xBB" "data: x\n\n", {{NULL}}},
    {"partial BOM in data position", "\xEF" "\n\ndata: x\n\n", {{"message", "x"}}},
    {"[DONE] passed through", "data: {\"a\":1}\n\ndata: [DONE]\n\n",
     {{"message", "{\"a\":1}"}, {"message", "[DONE]"}}},
    {"UTF-8 passes whole", "data: caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\n\n",
     {{"message", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"}}},
    {"incomplete trailing event dropped", "data: a\n\ndata: b\n", {{"message", "a"}}},
    {"incomplete trailing line dropped", "data: a\n\ndata: b", {{"message", "a"}}},
    {"trailing CR ends the line only", "data: a\n\ndata: b\r", {{"message", "a"}}},
    {"empty stream", "", {{NULL}}},
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* Expected serialization of a case, built the same way rec_cb builds it. */
static void want_str(const sse_case *c, buf *b) {
    for (const want *w = c->events; w < c->events + 6 && w->event; w++)
        rec_put(b, w->event, w->data, strlen(w->data));
}

/* Feeds `in` cut at the given positions (ascending), then ends the stream. */
static void run_cut(const char *in, size_t len, const size_t *cuts, int ncuts, buf *out) {
    rec r = {0};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    size_t from = 0;
    for (int i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        assert_int_equal(sse_feed(&p, in + from, to - from), 0);
        from = to;
    }
    sse_finish(&p);
    sse_free(&p);
    buf_reset(out);
    buf_append(out, buf_cstr(&r.out), r.out.len);
    buf_free(&r.out);
}

static void run_bytes(const char *in, size_t len, buf *out) {
    rec r = {0};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    for (size_t i = 0; i < len; i++) assert_int_equal(sse_feed(&p, in + i, 1), 0);
    sse_finish(&p);
    sse_free(&p);
    buf_reset(out);
    buf_append(out, buf_cstr(&r.out), r.out.len);
    buf_free(&r.out);
}

/* Says which case and which cuts failed before cmocka reports the diff. */
static void check(const sse_case *c, const char *how, size_t i, size_t j,
                  const buf *want, const buf *got) {
    if (strcmp(buf_cstr(want), buf_cstr(got)) != 0)
        print_error("case \"%s\", %s (cuts %zu, %zu)\n", c->name, how, i, j);
    assert_string_equal(buf_cstr(got), buf_cstr(want));
}

static void test_table(void **state) {
    (void)state;
    buf want = {0}, got = {0};
    for (size_t k = 0; k < NCASES; k++) {
        const sse_case *c = &cases[k];
        size_t len = strlen(c->input);
        buf_reset(&want);
        want_str(c, &want);

        run_cut(c->input, len, NULL, 0, &got);
        check(c, "whole", 0, 0, &want, &got);

        run_bytes(c->input, len, &got);
        check(c, "byte at a time", 0, 0, &want, &got);

        for (size_t i = 0; i <= len; i++) {
            size_t cut[1] = {i};
            run_cut(c->input, len, cut, 1, &got);
            check(c, "two pieces", i, 0, &want, &got);
        }
        for (size_t i = 0; i <= len; i++) {
            for (size_t j = i; j <= len; j++) {
                size_t cut[2] = {i, j};
                run_cut(c->input, len, cut, 2, &got);
                check(c, "three pieces", i, j, &want, &got);
            }
        }
    }
    buf_free(&want);
    buf_free(&got);
}

/* ---- explicit split cases ---------------------------------------------------
 * The table covers them through its cuts; these spell the important ones out
 * so that a failure names the rule. */

static void feed_ok(sse_parser *p, const char *s) {
    assert_int_equal(sse_feed(p, s, strlen(s)), 0);
}

static void test_cr_then_lf_across_feeds(void **state) {
    (void)state;
    rec r = {0};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    /* Were the LF a second line end, the blank line would dispatch "a" alone. */
    feed_ok(&p, "data: a\r");
    feed_ok(&p, "\ndata: b\r");
    feed_ok(&p, ""); /* an empty read in between changes nothing */
    feed_ok(&p, "\n\r");
    feed_ok(&p, "\n");
    assert_int_equal(r.count, 1);
    assert_string_equal(buf_cstr(&r.out), "type=\"message\",data=\"a\\nb\";");
    sse_finish(&p);
    sse_free(&p);
    buf_free(&r.out);
}

static void test_cr_then_cr_across_feeds(void **state) {
    (void)state;
    rec r = {0};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    feed_ok(&p, "data: a\r");
    assert_int_equal(r.count, 0);
    feed_ok(&p, "\r"); /* a second CR is a blank line: dispatch */
    assert_int_equal(r.count, 1);
    assert_string_equal(buf_cstr(&r.out), "type=\"message\",data=\"a\";");
    sse_finish(&p);
    sse_free(&p);
    buf_free(&r.out);
}

static void test_bom_split(void **state) {
    (void)state;
    static const char *const splits[][3] = {
        {"\xEF", "\xBB\xBF" "data: x\n\n", NULL},
        {"\xEF\xBB", "\xBF" "data: x\n\n", NULL},
        {"\xEF", "\xBB", "\xBF" "data: x\n\n"},
    };
    for (size_t k = 0; k < sizeof(splits) / sizeof(splits[0]); k++) {
        rec r = {0};
        sse_parser p;
        sse_init(&p, rec_cb, &r);
        for (int i = 0; i < 3 && splits[k][i]; i++) feed_ok(&p, splits[k][i]);
        assert_string_equal(buf_cstr(&r.out), "type=\"message\",data=\"x\";");
        sse_finish(&p);
        sse_free(&p);
        buf_free(&r.out);
    }
}

static void test_utf8_split(void **state) {
    (void)state;
    /* "é" is C3 A9, "😀" is F0 9F 98 80: cut inside each. */
    rec r = {0};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    feed_ok(&p, "data: caf\xC3");
    feed_ok(&p, "\xA9 \xF0\x9F");
    feed_ok(&p, "\x98");
    feed_ok(&p, "\x80!\n\n");
    assert_int_equal(r.count, 1);
    static const char expect[] = "type=\"message\",data=\"caf\xC3\xA9 \xF0\x9F\x98\x80!\";";
    assert_string_equal(buf_cstr(&r.out), expect);
    sse_finish(&p);
    sse_free(&p);
    buf_free(&r.out);
}

/* ---- a realistic OpenAI stream --------------------------------------------- */

static const char openai_stream[] =
    ": OPENROUTER PROCESSING\n\n"
    "data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Caf\xC3\xA9\"},"
    "\"finish_reason\":null}]}\n\n"
    ": keep-alive\n\n"
    "data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" \xF0\x9F\x98\x80\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
    "\"completion_tokens\":3,\"total_tokens\":12}}\n\n"
    "data: [DONE]\n\n";

static const char *const openai_events[] = {
    "{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"finish_reason\":null}]}",
    "{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Caf\xC3\xA9\"},"
    "\"finish_reason\":null}]}",
    "{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" \xF0\x9F\x98\x80\"},"
    "\"finish_reason\":null}]}",
    "{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}",
    "{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
    "\"completion_tokens\":3,\"total_tokens\":12}}",
    "[DONE]",
};

static void openai_want(buf *b) {
    for (size_t i = 0; i < sizeof(openai_events) / sizeof(openai_events[0]); i++)
        rec_put(b, "message", openai_events[i], strlen(openai_events[i]));
}

static void test_openai_whole_and_bytewise(void **state) {
    (void)state;
    size_t len = sizeof(openai_stream) - 1;
    buf want = {0}, whole = {0}, bytes = {0};
    openai_want(&want);
    run_cut(openai_stream, len, NULL, 0, &whole);
    run_bytes(openai_stream, len, &bytes);
    assert_string_equal(buf_cstr(&whole), buf_cstr(&want));
    assert_string_equal(buf_cstr(&bytes), buf_cstr(&whole));
    buf_free(&want);
    buf_free(&whole);
    buf_free(&bytes);
}

static void test_openai_every_split(void **state) {
    (void)state;
    size_t len = sizeof(openai_stream) - 1;
    buf want = {0}, got = {0};
    openai_want(&want);
    for (size_t i = 0; i <= len; i++) {
        size_t cut[1] = {i};
        run_cut(openai_stream, len, cut, 1, &got);
        if (strcmp(buf_cstr(&got), buf_cstr(&want)) != 0) print_error("cut at %zu\n", i);
        assert_string_equal(buf_cstr(&got), buf_cstr(&want));
    }
    buf_free(&want);
    buf_free(&got);
}

/* The same stream with CRLF line ends, read in pieces of 1 to 7 bytes (a
 * fixed pseudo-random sequence) — many CR / LF splits at once. */
static void test_openai_crlf_random_pieces(void **state) {
    (void)state;
    buf crlf = {0}, want = {0}, got = {0};
    for (const char *s = openai_stream; *s; s++) {
        if (*s == '\n') buf_putc(&crlf, '\r');
        buf_putc(&crlf, *s);
    }
    openai_want(&want);
    uint32_t seed = 12345;
    for (int round = 0; round < 50; round++) {
        size_t cuts[4096];
        int n = 0;
        for (size_t at = 0;;) {
            seed = seed * 1103515245u + 12345u;
            at += 1 + (seed >> 16) % 7;
            if (at >= crlf.len) break;
            cuts[n++] = at;
        }
        run_cut(crlf.data, crlf.len, cuts, n, &got);
        assert_string_equal(buf_cstr(&got), buf_cstr(&want));
    }
    buf_free(&crlf);
    buf_free(&want);
    buf_free(&got);
}

/* ---- end of stream, callback stop, size limit ------------------------------ */

static void test_finish_drops_incomplete(void **state) {
    (void)state;
    rec r = {0};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    feed_ok(&p, "event: delta\ndata: a\n\ndata: b\nevent: x\ndata: par");
    assert_int_equal(r.count, 1);
    sse_finish(&p);
    assert_int_equal(r.count, 1); /* "b" never arrives */
    /* Nothing of the dropped event leaks into the next stream. */
    feed_ok(&p, "tial\n\ndata: c\n\n");
    assert_string_equal(buf_cstr(&r.out),
                        "type=\"delta\",data=\"a\";type=\"message\",data=\"c\";");
    sse_finish(&p);
    sse_free(&p);
    buf_free(&r.out);
}

static void test_finish_with_pending_cr(void **state) {
    (void)state;
    rec r = {0};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    feed_ok(&p, "data: a\r");
    sse_finish(&p);
    /* The line "data: a" was complete, but its event was not: were it kept,
     * the LF below (or the blank line after "data: b") would send it. */
    feed_ok(&p, "\ndata: b\n\n");
    assert_string_equal(buf_cstr(&r.out), "type=\"message\",data=\"b\";");
    sse_finish(&p);
    sse_free(&p);
    buf_free(&r.out);
}

/* After sse_finish the parser can read a new stream (the next attempt), whose
 * leading BOM is skipped like the first one's. */
static void test_finish_then_new_stream(void **state) {
    (void)state;
    rec r = {0};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    feed_ok(&p, BOM "data: a\n\n");
    sse_finish(&p);
    feed_ok(&p, "\xEF\xBB");
    feed_ok(&p, "\xBF" "data: b\n\n");
    assert_string_equal(buf_cstr(&r.out),
                        "type=\"message\",data=\"a\";type=\"message\",data=\"b\";");
    sse_finish(&p);
    sse_free(&p);
    buf_free(&r.out);
}

static void test_callback_stop(void **state) {
    (void)state;
    rec r = {.stop_at = 2, .stop_rc = 7};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    const char *in = "data: a\n\ndata: b\n\ndata: c\n\n";
    assert_int_equal(sse_feed(&p, in, strlen(in)), 7);
    assert_int_equal(r.count, 2); /* "c" is not parsed */
    /* The parser goes on with the next input, with no trace of "b". */
    feed_ok(&p, "data: d\n\n");
    assert_string_equal(buf_cstr(&r.out),
                        "type=\"message\",data=\"a\";type=\"message\",data=\"b\";"
                        "type=\"message\",data=\"d\";");
    sse_finish(&p);
    sse_free(&p);
    buf_free(&r.out);
}

static void test_callback_stop_negative(void **state) {
    (void)state;
    rec r = {.stop_at = 1, .stop_rc = -1};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    assert_int_equal(sse_feed(&p, "data: a\r\r", 9), -1);
    assert_int_equal(r.count, 1);
    sse_finish(&p);
    sse_free(&p);
    buf_free(&r.out);
}

typedef struct limit_case {
    const char *name;
    size_t max_event;
    const char *pieces[4]; /* fed in turn, up to the first NULL */
    int want_rc;           /* of the last sse_feed */
    int want_count;        /* events dispatched */
} limit_case;

/* The limit counts the data kept for the event (each line with its '\n')
 * plus the line still open. */
static const limit_case limit_cases[] = {
    {"under the limit", 16, {"data: 0123456789abcde\n\n"}, 0, 1},            /* 16 bytes */
    {"one byte past", 16, {"data: 0123456789abcdef\n\n"}, -2, 0},            /* 17 bytes */
    {"data lines add up", 16, {"data: 01234567\ndata: 01234567\n"}, -2, 0},  /* 18 bytes */
    {"each event counted alone", 16,
     {"data: 0123456789\n\n", "data: 0123456789\n\n", "data: 0123456789\n\n"}, 0, 3},
    {"open line across feeds", 16, {"data: 0123", "456789", "abcdefghij"}, -2, 0},
    {"open comment across feeds", 16, {": 0123456789", "abcdefghij"}, -2, 0},
    {"no limit", 0, {"data: 0123456789abcdefghijklmnopqrstuvwxyz\n\n"}, 0, 1},
};

static void test_max_event(void **state) {
    (void)state;
    for (size_t k = 0; k < sizeof(limit_cases) / sizeof(limit_cases[0]); k++) {
        const limit_case *c = &limit_cases[k];
        rec r = {0};
        sse_parser p;
        sse_init(&p, rec_cb, &r);
        p.max_event = c->max_event;
        int rc = 0;
        for (int i = 0; i < 4 && c->pieces[i]; i++) {
            assert_int_equal(rc, 0); /* only the last piece may fail */
            rc = sse_feed(&p, c->pieces[i], strlen(c->pieces[i]));
        }
        if (rc != c->want_rc || r.count != c->want_count) print_error("case \"%s\"\n", c->name);
        assert_int_equal(rc, c->want_rc);
        assert_int_equal(r.count, c->want_count);
        sse_finish(&p);
        sse_free(&p);
        buf_free(&r.out);
    }
}

/* A 1 MiB data line read in 4 KiB pieces arrives whole and exact. */
static void test_large_event(void **state) {
    (void)state;
    enum { N = 1 << 20, PIECE = 4096 };
    buf in = {0};
    buf_puts(&in, "data: ");
    for (size_t i = 0; i < N; i++) buf_putc(&in, (char)('a' + i % 26));
    buf_puts(&in, "\n\n");

    rec r = {0};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    for (size_t at = 0; at < in.len; at += PIECE) {
        size_t n = in.len - at < PIECE ? in.len - at : PIECE;
        assert_int_equal(sse_feed(&p, in.data + at, n), 0);
    }
    assert_int_equal(r.count, 1);
    buf want = {0};
    rec_put(&want, "message", in.data + 6, N);
    assert_int_equal(r.out.len, want.len);
    assert_memory_equal(r.out.data, want.data, want.len);
    sse_finish(&p);
    sse_free(&p);
    buf_free(&r.out);
    buf_free(&want);
    buf_free(&in);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_cr_then_lf_across_feeds),
        cmocka_unit_test(test_cr_then_cr_across_feeds),
        cmocka_unit_test(test_bom_split),
        cmocka_unit_test(test_utf8_split),
        cmocka_unit_test(test_openai_whole_and_bytewise),
        cmocka_unit_test(test_openai_every_split),
        cmocka_unit_test(test_openai_crlf_random_pieces),
        cmocka_unit_test(test_finish_drops_incomplete),
        cmocka_unit_test(test_finish_with_pending_cr),
        cmocka_unit_test(test_finish_then_new_stream),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_callback_stop_negative),
        cmocka_unit_test(test_max_event),
        cmocka_unit_test(test_large_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

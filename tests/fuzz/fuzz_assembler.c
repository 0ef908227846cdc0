/* fuzz_assembler.c — libFuzzer target for the response assembler
 * (common/assembler.h).
 *
 * The input is a sequence of stream chunks, one per line, as the data of
 * the SSE events an upstream sends. Each line is taken as the worker takes
 * an event (worker/upstream.c): checked by strictjson_check() within the
 * chunk bounds, parsed by jsonparse_whole() with a default tokener, kept
 * only if an object, then added. The assembler's questions are asked after
 * every chunk, and the final chat.completion is built and serialised.
 * Checked beyond memory safety: assembler_add() refuses only non-objects
 * (-1) or, past one of its limits, says which (-2, and -2 ever after, when
 * the worker stops the stream); the result is always an object. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/assembler.h"
#include "common/jsonparse.h"
#include "common/strictjson.h"
#include "worker/upstream.h"

static json_tokener *tok;

static const strictjson_limits chunk_limits = {
    .max_values = UPSTREAM_MAX_CHUNK_VALUES,
    .max_containers = UPSTREAM_MAX_CHUNK_VALUES,
    .max_depth = UPSTREAM_MAX_DEPTH,
};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    tok = json_tokener_new();
    return 0;
}

/* The chunk on a line, as the worker would have it, or NULL. */
static json_object *parse_chunk(const char *s, size_t len) {
    json_object *chunk = NULL;
    if (strictjson_check(s, len, &chunk_limits, NULL, NULL, 0) != STRICTJSON_OK) return NULL;
    if (jsonparse_whole(tok, s, len, &chunk, NULL, 0) != 0) return NULL;
    if (!json_object_is_type(chunk, json_type_object)) {
        json_object_put(chunk);
        return NULL;
    }
    return chunk;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data, *end = s + size;
    assembler *a = assembler_new();
    int spoiled = 0;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t len = (size_t)((nl ? nl : end) - s);
        json_object *chunk = parse_chunk(s, len);
        if (chunk) {
            int rc = assembler_add(a, chunk);
            if (rc == -2) {
                if (!assembler_error(a)) abort(); /* a limit is named */
                spoiled = 1;
            } else if (rc != 0 || spoiled) {
                abort(); /* an object is refused only past a limit, and then for good */
            }
            json_object_put(chunk);
        }
        (void)assembler_choices(a);
        (void)assembler_complete(a);
        (void)assembler_finish_reason(a);
        (void)assembler_usage(a);
        (void)assembler_has_output(a);
        s += len + 1;
    }
    if (!spoiled) {
        json_object *r = assembler_result(a);
        if (!r || !json_object_is_type(r, json_type_object)) abort();
        if (!json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN)) abort();
        json_object_put(r);
    }
    assembler_free(a);
    return 0;
}

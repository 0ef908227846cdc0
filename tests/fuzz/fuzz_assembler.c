/* fuzz_assembler.c — libFuzzer target for the response assembler
 * (common/assembler.h).
 *
 * The input is a sequence of stream chunks, one per line, as the data of
 * the SSE events an upstream sends. Each line is parsed as the worker
 * parses an event (jsonparse_whole with a default tokener) and, when it is
 * an object, added; the assembler's questions are asked after every chunk,
 * and the final chat.completion is built and serialised. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/assembler.h"
#include "common/jsonparse.h"

static json_tokener *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    tok = json_tokener_new();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data, *end = s + size;
    assembler *a = assembler_new();
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t len = (size_t)((nl ? nl : end) - s);
        json_object *chunk = NULL;
        if (jsonparse_whole(tok, s, len, &chunk, NULL, 0) == 0 && chunk) {
            if (assembler_add(a, chunk) != 0 && json_object_is_type(chunk, json_type_object))
                abort(); /* only a non-object may be refused */
            json_object_put(chunk);
        }
        (void)assembler_choices(a);
        (void)assembler_complete(a);
        (void)assembler_finish_reason(a);
        (void)assembler_usage(a);
        (void)assembler_has_output(a);
        s += len + 1;
    }
    json_object *r = assembler_result(a);
    if (!r || !json_object_is_type(r, json_type_object)) abort();
    if (!json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN)) abort();
    json_object_put(r);
    assembler_free(a);
    return 0;
}

/* fuzz_json.c — libFuzzer target for the strict JSON checks of untrusted
 * text: strictjson_check() (common/strictjson.h: upstream answers) and
 * jsonparse_strict() (common/jsonparse.h: jobs).
 *
 * The input is one JSON text. Checked beyond memory safety:
 *   - strictjson_check() answers OK, INVALID or TOO_BIG, with a reason when
 *     not OK; what it passes is within its bounds and parses with json-c
 *     (the worker takes a json-c refusal after a pass for a bad answer: a
 *     disagreement is a bug of one or the other);
 *   - its answer without bounds agrees: OK stays OK, INVALID stays INVALID,
 *     and TOO_BIG comes only past the nesting strictjson.c checks at most
 *     (SJ_MAX_DEPTH, 1000);
 *   - jsonparse_strict() with the job bounds keeps within them;
 *   - the two checkers agree on texts without a \u escape (they differ, by
 *     design, on lone surrogate escapes), both with a depth bound of 100. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/job.h"
#include "common/jsonparse.h"
#include "common/strictjson.h"

#define FUZZ_DEPTH 100

static json_tokener *tok_default, *tok_job, *tok_deep;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    tok_default = json_tokener_new_ex(FUZZ_DEPTH + 2);
    tok_job = json_tokener_new_ex(JOB_MAX_DEPTH + 1);
    tok_deep = json_tokener_new_ex(FUZZ_DEPTH + 1);
    return 0;
}

static void disagree(const char *what, const char *err) {
    fprintf(stderr, "fuzz_json: %s (%s)\n", what, err ? err : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    char err[256] = "", err2[256] = "";
    json_object *o = NULL;

    /* the worker's bounds for one stream chunk */
    strictjson_limits lim = {.max_values = 10000, .max_containers = 10000, .max_depth = 32};
    strictjson_stats st;
    int rc = strictjson_check(s, size, &lim, &st, err, sizeof err);
    if (rc != STRICTJSON_OK && rc != STRICTJSON_INVALID && rc != STRICTJSON_TOO_BIG) abort();
    if (rc != STRICTJSON_OK && !err[0]) abort();
    if (rc == STRICTJSON_OK) {
        if (st.values > lim.max_values || st.containers > lim.max_containers ||
            st.depth > lim.max_depth)
            disagree("strictjson passed a text past its bounds", NULL);
        if (jsonparse_whole(tok_default, s, size, &o, err2, sizeof err2) != 0)
            disagree("json-c refused what strictjson passed", err2);
        json_object_put(o);
        o = NULL;
    }
    strictjson_stats ust;
    int unbounded = strictjson_check(s, size, NULL, &ust, NULL, 0);
    if (unbounded == STRICTJSON_TOO_BIG && ust.depth < 1000)
        disagree("TOO_BIG without bounds", NULL);
    if (rc == STRICTJSON_OK && unbounded != STRICTJSON_OK)
        disagree("refused without bounds what passed within them", NULL);
    if (rc == STRICTJSON_INVALID && unbounded != STRICTJSON_INVALID)
        disagree("passed without bounds what was invalid within them", err);

    /* the job bounds */
    jsonparse_limits jl = {.max_depth = JOB_MAX_DEPTH, .max_containers = JOB_MAX_CONTAINERS,
                           .max_values = JOB_MAX_VALUES};
    jsonparse_info info;
    if (jsonparse_strict(tok_job, s, size, &jl, JSONPARSE_REFUSE_NUL, &o, &info, err,
                         sizeof err) == 0) {
        if (info.depth > jl.max_depth || info.containers > jl.max_containers ||
            info.values > jl.max_values || info.first_nul >= 0)
            disagree("jsonparse_strict passed a text past its bounds", NULL);
        json_object_put(o);
        o = NULL;
    } else if (!err[0]) {
        abort();
    }

    /* the two checkers, same depth bound, on texts without \u */
    if (!memmem(s, size, "\\u", 2)) {
        strictjson_limits dl = {.max_depth = FUZZ_DEPTH};
        jsonparse_limits jd = {.max_depth = FUZZ_DEPTH};
        int a = strictjson_check(s, size, &dl, NULL, err, sizeof err) == STRICTJSON_OK;
        int b = jsonparse_strict(tok_deep, s, size, &jd, 0, &o, NULL, err2, sizeof err2) == 0;
        json_object_put(o);
        if (a != b) {
            fprintf(stderr, "fuzz_json: strictjson %s (%s), jsonparse_strict %s (%s)\n",
                    a ? "passes" : "refuses", a ? "" : err, b ? "passes" : "refuses",
                    b ? "" : err2);
            abort();
        }
    }
    return 0;
}

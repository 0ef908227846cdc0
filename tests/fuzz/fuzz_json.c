/* fuzz_json.c — libFuzzer target for the strict JSON check of untrusted
 * text: strictjson_check() (common/strictjson.h), the one checker of both
 * upstream answers and jobs, and jsonparse_strict() (common/jsonparse.h),
 * which runs it before json-c for jobs.
 *
 * The input is one JSON text. Checked beyond memory safety:
 *   - strictjson_check() answers OK, INVALID or TOO_BIG, with a reason when
 *     not OK; what it passes is within its bounds and parses with json-c's
 *     default (lenient) tokener, as the worker parses an answer (the worker
 *     takes a json-c refusal after a pass for a bad answer: a disagreement
 *     is a bug of one or the other);
 *   - its answer without bounds agrees: OK stays OK, INVALID stays INVALID,
 *     and TOO_BIG comes only past the nesting strictjson.c checks at most
 *     (SJ_MAX_DEPTH, 1000);
 *   - jsonparse_strict() with the job bounds and JSONPARSE_REFUSE_NUL gives
 *     the check's verdict (INVALID for a "\u0000" the check noted), with a
 *     message: json-c's strict mode takes whatever the check passes;
 *   - what it returns, written back by json-c as job_request_body() writes
 *     a job's body for the upstream, is strict JSON again, of no more
 *     values and containers;
 *   - the check agrees with a second one made independently here: json-c's
 *     strict mode plus fuzz_lex(), the lexical rules json-c's strict mode
 *     leaves out (numbers by a POSIX regex, the words true/false/null,
 *     escapes, surrogate pairs, raw control characters, stray bytes). What
 *     the check passes must pass the second one; on texts of ASCII only
 *     (UTF-8 is the decoder's, tested against Python in test_strictjson.c)
 *     what the second one passes must pass the check too. This is what
 *     found "01.5" and "-.5" (tests/fuzz/crashes/) when jobs had a checker
 *     of their own: with one checker, it is the comparison that is left. */
#include <json-c/json.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/job.h"
#include "common/jsonparse.h"
#include "common/strictjson.h"

#define FUZZ_DEPTH 100
#define FUZZ_MAXLEN 65536 /* FUZZ_MAXLEN_json of mk/fuzz.mk */

static json_tokener *tok_default, *tok_strict, *tok_job;
static regex_t number_re;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    tok_default = json_tokener_new_ex(FUZZ_DEPTH + 2);
    tok_strict = json_tokener_new_ex(FUZZ_DEPTH + 2);
    json_tokener_set_flags(tok_strict, JSON_TOKENER_STRICT);
    tok_job = json_tokener_new_ex(JOB_MAX_DEPTH + 1);
    /* RFC 8259 section 6, as the RFC writes it */
    if (regcomp(&number_re, "^-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][-+]?[0-9]+)?$",
                REG_EXTENDED | REG_NOSUB) != 0)
        abort();
    return 0;
}

static void disagree(const char *what, const char *err) {
    fprintf(stderr, "fuzz_json: %s (%s)\n", what, err ? err : "");
    abort();
}

/* The check alone, with the worker's bounds for one stream chunk, and
 * without bounds. */
static void fuzz_check(const char *s, size_t size) {
    char err[256] = "", err2[256] = "";
    strictjson_limits lim = {.max_values = 10000, .max_containers = 10000, .max_depth = 32};
    strictjson_stats st;
    int rc = strictjson_check(s, size, &lim, &st, err, sizeof err);
    if (rc != STRICTJSON_OK && rc != STRICTJSON_INVALID && rc != STRICTJSON_TOO_BIG) abort();
    if (rc != STRICTJSON_OK && !err[0]) abort();
    if (rc == STRICTJSON_OK) {
        json_object *o;
        if (st.values > lim.max_values || st.containers > lim.max_containers ||
            st.depth > lim.max_depth)
            disagree("strictjson passed a text past its bounds", NULL);
        if (jsonparse_whole(tok_default, s, size, &o, err2, sizeof err2) != 0)
            disagree("json-c refused what strictjson passed", err2);
        json_object_put(o);
    }
    strictjson_stats ust;
    int unbounded = strictjson_check(s, size, NULL, &ust, NULL, 0);
    if (unbounded == STRICTJSON_TOO_BIG && ust.depth < 1000)
        disagree("TOO_BIG without bounds", NULL);
    if (rc == STRICTJSON_OK && unbounded != STRICTJSON_OK)
        disagree("refused without bounds what passed within them", NULL);
    if (rc == STRICTJSON_INVALID && unbounded != STRICTJSON_INVALID)
        disagree("passed without bounds what was invalid within them", err);
}

/* The four hex digits of a \u escape at s[i..i+4), or -1. */
static int fuzz_hex(const char *s, size_t n, size_t i, unsigned *u) {
    if (n - i < 4) return -1;
    *u = 0;
    for (size_t k = i; k < i + 4; k++) {
        const char *digits = "0123456789abcdef0123456789ABCDEF";
        const char *d = s[k] ? strchr(digits, s[k]) : NULL;
        if (!d) return -1;
        *u = *u * 16 + (unsigned)(d - digits) % 16;
    }
    return 0;
}

/* The lexical rules json-c's strict mode leaves out, over a text json-c's
 * strict mode took (so its strings and brackets are well formed). Returns
 * NULL when they hold, else what broke. */
static const char *fuzz_lex(const char *s, size_t n) {
    static char token[FUZZ_MAXLEN + 1];
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++) {
                unsigned u, lo;
                if ((unsigned char)s[i] < 0x20) return "a raw control character";
                if (s[i] != '\\') continue;
                if (++i >= n) return "a string cut short";
                if (s[i] != 'u') {
                    if (!s[i] || !strchr("\"\\/bfnrt", s[i])) return "an escape";
                    continue;
                }
                if (fuzz_hex(s, n, i + 1, &u) < 0) return "a \\u escape";
                i += 4;
                if (u >= 0xDC00 && u <= 0xDFFF) return "a lone low surrogate";
                if (u < 0xD800 || u > 0xDBFF) continue;
                if (n - i < 7 || s[i + 1] != '\\' || s[i + 2] != 'u' ||
                    fuzz_hex(s, n, i + 3, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return "a lone high surrogate";
                i += 6;
            }
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i;
            while (j < n && s[j] && strchr("+-.0123456789eE", s[j])) j++;
            if (j - i > FUZZ_MAXLEN) return "a number too long";
            memcpy(token, s + i, j - i);
            token[j - i] = '\0';
            if (regexec(&number_re, token, 0, NULL, 0) != 0) return "a number";
            i = j;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            size_t j = i;
            while (j < n && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z'))) j++;
            if (!((j - i == 4 && (!memcmp(s + i, "true", 4) || !memcmp(s + i, "null", 4))) ||
                  (j - i == 5 && !memcmp(s + i, "false", 5))))
                return "a word";
            i = j;
        } else if (c && strchr("{}[],: \t\r\n", c)) {
            i++;
        } else {
            return "a stray byte";
        }
    }
    return NULL;
}

/* strictjson_check() against json-c's strict mode and fuzz_lex(). */
static void fuzz_compare(const char *s, size_t size) {
    char err[256] = "", err2[256] = "";
    json_object *o = NULL;
    int checked = strictjson_check(s, size, NULL, NULL, err, sizeof err) == STRICTJSON_OK;
    int parsed = jsonparse_whole(tok_strict, s, size, &o, err2, sizeof err2) == 0;
    json_object_put(o);
    const char *lex = parsed ? fuzz_lex(s, size) : "not parsed";
    int other = parsed && !lex;
    int ascii = 1;
    for (size_t i = 0; i < size && ascii; i++) ascii = (unsigned char)s[i] < 0x80;
    if (checked && !other)
        disagree("strictjson passed what json-c's strict mode and fuzz_lex refuse",
                 parsed ? lex : err2);
    if (other && ascii && !checked)
        disagree("strictjson refused what json-c's strict mode and fuzz_lex pass", err);
}

/* jsonparse_strict() as a job is parsed, and json-c's text of its value. */
static void fuzz_job_parse(const char *s, size_t size) {
    char err[256] = "", err2[256] = "";
    strictjson_limits jl = {.max_depth = JOB_MAX_DEPTH, .max_containers = JOB_MAX_CONTAINERS,
                            .max_values = JOB_MAX_VALUES};
    strictjson_stats st, cst;
    int want = strictjson_check(s, size, &jl, &cst, NULL, 0);
    if (cst.first_nul >= 0) want = STRICTJSON_INVALID;
    json_object *o;
    int rc = jsonparse_strict(tok_job, s, size, &jl, JSONPARSE_REFUSE_NUL, &o, &st, err,
                              sizeof err);
    if (rc != want) {
        fprintf(stderr, "fuzz_json: jsonparse_strict %d (%s), strictjson_check %d\n", rc, err,
                want);
        abort();
    }
    if (rc != STRICTJSON_OK) {
        if (!err[0] || o) abort();
        return;
    }
    if (st.depth > jl.max_depth || st.containers > jl.max_containers ||
        st.values > jl.max_values || st.first_nul >= 0)
        disagree("jsonparse_strict passed a text past its bounds", NULL);
    const char *back =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    strictjson_stats bst;
    if (strictjson_check(back, strlen(back), NULL, &bst, err2, sizeof err2) != STRICTJSON_OK) {
        fprintf(stderr, "fuzz_json: json-c wrote back \"%.200s\": not strict JSON (%s)\n", back,
                err2);
        abort();
    }
    /* fewer only where json-c kept one of duplicate keys */
    if (bst.values > st.values || bst.containers > st.containers)
        disagree("json-c wrote back more than it read", back);
    json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_check((const char *)data, size);
    fuzz_job_parse((const char *)data, size);
    fuzz_compare((const char *)data, size);
    return 0;
}

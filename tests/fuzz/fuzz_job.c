/* fuzz_job.c — libFuzzer target for job validation (common/job.h).
 *
 * The input is the raw text a producer LPUSHes, parsed as the worker does
 * (job_parse_opts() with the key prefix "chatq", so the reply_to rule
 * applies). It must be accepted or refused without a crash, a leak or
 * undefined behaviour; the checks here are the header's promises: a refusal
 * comes with a message, an accepted job has a valid id and a body, and
 * job_request_body() of an accepted job is a JSON object in strict JSON
 * (strictjson_check(): it goes upstream as it is). max_job_bytes is
 * 32 KiB, half of -max_len, so inputs on both sides of the limit are
 * tried. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/job.h"
#include "common/strictjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    job j;
    char err[512];
    memset(&j, 0, sizeof j);
    memset(err, 'x', sizeof err);
    job_opts opts = {.max_bytes = 32768, .prefix = "chatq"};
    int rc = job_parse_opts(&j, (const char *)data, size, &opts, err, sizeof err);
    if (rc < 0) {
        if (!memchr(err, '\0', sizeof err) || !err[0]) abort(); /* a message, terminated */
    } else {
        if (rc != 0 || !j.id || !job_id_valid(j.id) || !j.body || !j.root) abort();
        char *body = job_request_body(&j);
        json_object *o = body ? json_tokener_parse(body) : NULL;
        if (!o || !json_object_is_type(o, json_type_object)) abort();
        char why[256];
        if (strictjson_check(body, strlen(body), NULL, NULL, why, sizeof why) != STRICTJSON_OK) {
            fprintf(stderr, "fuzz_job: the request body is not strict JSON: %s\n", why);
            abort();
        }
        json_object_put(o);
        free(body);
    }
    job_free(&j);
    return 0;
}

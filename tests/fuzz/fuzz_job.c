/* fuzz_job.c — libFuzzer target for job validation (common/job.h).
 *
 * The input is the raw text a producer LPUSHes. job_parse() must accept or
 * refuse it without a crash, a leak or undefined behaviour; the checks here
 * are the header's promises: a refusal comes with a message, an accepted
 * job has an id and a body, and job_request_body() of an accepted job is a
 * JSON object. max_job_bytes is 32 KiB, half of -max_len, so inputs on
 * both sides of the limit are tried. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    job j;
    char err[512];
    memset(&j, 0, sizeof j);
    memset(err, 'x', sizeof err);
    int rc = job_parse(&j, (const char *)data, size, 32768, err, sizeof err);
    if (rc < 0) {
        if (!memchr(err, '\0', sizeof err) || !err[0]) abort(); /* a message, terminated */
    } else {
        if (rc != 0 || !j.id || !j.body || !j.root) abort();
        char *body = job_request_body(&j);
        json_object *o = body ? json_tokener_parse(body) : NULL;
        if (!o || !json_object_is_type(o, json_type_object)) abort();
        json_object_put(o);
        free(body);
    }
    job_free(&j);
    return 0;
}

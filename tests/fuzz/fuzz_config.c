/* fuzz_config.c — libFuzzer target for the config file parser
 * (common/config.h).
 *
 * config_load() reads its file by name, so the input goes into a memfd
 * (fuzz_memfd.h) named as --config. The environment variables config_load
 * reads are cleared first, so only the input decides; no_secrets keeps it
 * from reading key files the input might name. An accepted config is then
 * dumped and looked up, as chatqd and `chatq config` do. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "tests/fuzz/fuzz_memfd.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *vars[] = {"CHATQ_CONFIG", "CHATQ_REDIS_URL", "CHATQ_PREFIX",
                          "OPENAI_BASE_URL", "OPENAI_API_KEY", "CREDENTIALS_DIRECTORY"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) unsetenv(vars[i]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    config c;
    config_args args = {.config_file = fuzz_memfd_write(data, size), .no_secrets = 1};
    char err[512];
    memset(err, 'x', sizeof err);
    if (config_load(&c, &args, err, sizeof err) != 0) {
        if (!memchr(err, '\0', sizeof err) || !err[0]) abort(); /* a message, terminated */
        return 0;
    }
    free(config_dump(&c));
    (void)config_route(&c, "gpt-4o-mini");
    (void)config_fallbacks(&c, "gpt-4o-mini");
    for (int i = 0; i < c.nproviders; i++) {
        if (config_provider(&c, c.providers[i].name) == NULL) abort();
        (void)config_price(&c.providers[i], "gpt-4o-mini");
    }
    config_free(&c);
    return 0;
}

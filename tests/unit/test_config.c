/* test_config.c — config_load() layers and validation, providers and keys,
 * config_route(), config_dump() masking. Redis URL parsing itself is tested
 * in test_redisurl.c. Each test starts from a clean environment and writes
 * its files in a fresh temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "tests/unit/testutil.h"
#include "common/config.h"

static const char *tmpdir;
static char err[512];

static int setup(void **state) {
    (void)state;
    testutil_clear_config_env("TEST_CHATQ_KEY");
    tmpdir = testutil_tmpdir("config");
    return tmpdir ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    testutil_clear_config_env("TEST_CHATQ_KEY");
    return testutil_tmpdir_remove();
}

/* Writes `text` to tmpdir/name and returns the path (caller frees). */
static char *write_file(const char *name, const char *text) {
    return testutil_write_file(name, text, strlen(text));
}

/* Loads with only --config FILE (the file written from `text`). */
static int load_text(config *c, const char *text) {
    char *path = write_file("chatq.json", text);
    config_args a = {.config_file = path};
    int rc = config_load(c, &a, err, sizeof err);
    free(path);
    return rc;
}

static void expect_file_error(const char *text, const char *needle) {
    config c;
    if (load_text(&c, text) != -1 || !strstr(err, needle) || !strstr(err, "chatq.json"))
        fail_msg("config %s: err=\"%s\", wanted the file and %s", text, err, needle);
    assert_null(c.providers); /* freed on failure */
}

/* ---- layers ---- */

static void test_defaults(void **state) {
    (void)state;
    if (access("/etc/chatq/chatq.json", F_OK) == 0) skip(); /* the host has a config */
    config c;
    assert_int_equal(config_load(&c, NULL, err, sizeof err), 0);
    assert_null(c.file);
    assert_string_equal(c.redis_url, "redis://127.0.0.1:6379/0");
    assert_string_equal(c.prefix, "chatq");
    assert_int_equal(c.workers, sysconf(_SC_NPROCESSORS_ONLN));
    assert_int_equal(c.concurrency, 256);
    assert_int_equal(c.nqueues, 1);
    assert_string_equal(c.queues[0], "default");
    assert_string_equal(c.log_level, "info");
    assert_int_equal(c.timeout_ms, 600000);
    assert_int_equal(c.idle_timeout_ms, 60000);
    assert_int_equal(c.connect_timeout_ms, 10000);
    assert_int_equal(c.max_attempts, 3);
    assert_int_equal(c.result_ttl_s, 86400);
    assert_int_equal(c.max_job_bytes, 1048576);
    assert_int_equal(c.max_response_bytes, 16777216);
    assert_int_equal(c.retry_base_ms, 500);
    assert_int_equal(c.retry_max_ms, 30000);
    assert_int_equal(c.shutdown_grace_ms, 30000);
    assert_int_equal(c.nproviders, 1);
    assert_string_equal(c.providers[0].name, "default");
    assert_string_equal(c.providers[0].base_url, "https://api.openai.com/v1");
    assert_null(c.providers[0].api_key);
    assert_int_equal(c.providers[0].nmodels, 1);
    assert_string_equal(c.providers[0].models[0], "*");
    config_free(&c);
}

static void test_default_provider_from_env(void **state) {
    (void)state;
    setenv("OPENAI_BASE_URL", "http://localhost:8000/v1//", 1);
    setenv("OPENAI_API_KEY", "sk-local-1\n", 1);
    config c;
    assert_int_equal(load_text(&c, "{}"), 0);
    assert_string_equal(c.providers[0].base_url, "http://localhost:8000/v1");
    assert_string_equal(c.providers[0].api_key, "sk-local-1");
    config_free(&c);
    setenv("OPENAI_BASE_URL", "localhost:8000", 1);
    assert_int_equal(load_text(&c, "{}"), -1);
    assert_non_null(strstr(err, "OPENAI_BASE_URL"));
}

static void test_file_overrides_defaults(void **state) {
    (void)state;
    config c;
    assert_int_equal(load_text(&c, "{\"concurrency\": 10, \"prefix\": \"cq\", \"workers\": 3,"
                                   " \"queues\": [\"hi\", \"lo\"], \"max_attempts\": 5,"
                                   " \"timeout_ms\": 1234, \"log_level\": \"debug\","
                                   " \"shutdown_grace_ms\": 0}"),
                     0);
    assert_non_null(strstr(c.file, "chatq.json"));
    assert_int_equal(c.concurrency, 10);
    assert_string_equal(c.prefix, "cq");
    assert_int_equal(c.workers, 3);
    assert_int_equal(c.nqueues, 2);
    assert_string_equal(c.queues[0], "hi");
    assert_string_equal(c.queues[1], "lo");
    assert_int_equal(c.max_attempts, 5);
    assert_int_equal(c.timeout_ms, 1234);
    assert_int_equal(c.shutdown_grace_ms, 0);
    assert_string_equal(c.log_level, "debug");
    assert_int_equal(c.idle_timeout_ms, 60000); /* untouched keys keep their default */
    config_free(&c);
}

static void test_file_from_chatq_config_env(void **state) {
    (void)state;
    char *path = write_file("env.json", "{\"prefix\": \"from-env-file\"}");
    setenv("CHATQ_CONFIG", path, 1);
    config c;
    assert_int_equal(config_load(&c, NULL, err, sizeof err), 0);
    assert_string_equal(c.prefix, "from-env-file");
    assert_string_equal(c.file, path);
    config_free(&c);
    /* --config wins over $CHATQ_CONFIG */
    char *other = write_file("flag.json", "{\"prefix\": \"from-flag-file\"}");
    config_args a = {.config_file = other};
    assert_int_equal(config_load(&c, &a, err, sizeof err), 0);
    assert_string_equal(c.prefix, "from-flag-file");
    config_free(&c);
    /* a named file that is missing is an error naming it */
    setenv("CHATQ_CONFIG", "/nonexistent/chatq.json", 1);
    assert_int_equal(config_load(&c, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/chatq.json"));
    free(path);
    free(other);
}

static void test_env_overrides_file(void **state) {
    (void)state;
    setenv("CHATQ_PREFIX", "envprefix", 1);
    setenv("CHATQ_REDIS_URL", "redis://envhost:7000/3", 1);
    config c;
    assert_int_equal(load_text(&c, "{\"prefix\": \"fileprefix\","
                                   " \"redis_url\": \"redis://filehost/1\"}"),
                     0);
    assert_string_equal(c.prefix, "envprefix");
    assert_string_equal(c.redis_url, "redis://envhost:7000/3");
    config_free(&c);
}

static void test_flags_override_env(void **state) {
    (void)state;
    setenv("CHATQ_REDIS_URL", "redis://envhost:7000/3", 1);
    char *path = write_file("chatq.json", "{\"workers\": 2, \"concurrency\": 5,"
                                          " \"queues\": \"x\", \"log_level\": \"warn\"}");
    config_args a = {.config_file = path, .redis_url = "unix:///run/redis.sock?db=4",
                     .workers = "7", .concurrency = "99", .queues = "a, b ,c",
                     .log_level = "error"};
    config c;
    assert_int_equal(config_load(&c, &a, err, sizeof err), 0);
    assert_string_equal(c.redis_url, "unix:///run/redis.sock?db=4");
    assert_int_equal(c.workers, 7);
    assert_int_equal(c.concurrency, 99);
    assert_int_equal(c.nqueues, 3);
    assert_string_equal(c.queues[0], "a");
    assert_string_equal(c.queues[1], "b");
    assert_string_equal(c.queues[2], "c");
    assert_string_equal(c.log_level, "error");
    config_free(&c);
    free(path);
}

static void expect_flag_error(config_args a, const char *want) {
    config c;
    if (config_load(&c, &a, err, sizeof err) != -1 || strcmp(err, want))
        fail_msg("err=\"%s\", wanted \"%s\"", err, want);
}

static void test_flag_validation(void **state) {
    (void)state;
    char *path = write_file("empty.json", "");
    const char *w = "--workers: must be an integer 1..1024";
    expect_flag_error((config_args){.config_file = path, .workers = "0"}, w);
    expect_flag_error((config_args){.config_file = path, .workers = "1025"}, w);
    expect_flag_error((config_args){.config_file = path, .workers = "4x"}, w);
    expect_flag_error((config_args){.config_file = path, .workers = ""}, w);
    expect_flag_error((config_args){.config_file = path, .workers = "99999999999999999999"}, w);
    expect_flag_error((config_args){.config_file = path, .concurrency = "-1"},
                      "--concurrency: must be an integer 1..100000");
    expect_flag_error((config_args){.config_file = path, .log_level = "loud"},
                      "--log-level: must be one of error, warn, info, debug");
    config c;
    config_args a = {.config_file = path, .queues = "a,,b"};
    assert_int_equal(config_load(&c, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "--queues"));
    a.queues = "a,b,a";
    assert_int_equal(config_load(&c, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "--queues"));
    assert_non_null(strstr(err, "twice"));
    a.queues = "a b";
    assert_int_equal(config_load(&c, &a, err, sizeof err), -1);
    a.queues = NULL;
    a.redis_url = "rediss://h:6380";
    assert_int_equal(config_load(&c, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "--redis"));
    assert_non_null(strstr(err, "TLS"));
    free(path);
}

/* ---- file syntax and validation ---- */

static void test_comments_in_file(void **state) {
    (void)state;
    config c;
    assert_int_equal(load_text(&c, "/* chatq settings */\n"
                                   "{\n"
                                   "  // how many jobs per worker\n"
                                   "  \"concurrency\": 42, /* inline */\n"
                                   "  \"providers\": [{\"name\": \"p\", \"base_url\": "
                                   "\"http://h//v1/\",\n"
                                   "    \"headers\": {\"X-Note\": \"a /* b */ c // d\"}}]\n"
                                   "}\n// the end\n"),
                     0);
    assert_int_equal(c.concurrency, 42);
    assert_string_equal(c.providers[0].base_url, "http://h//v1");
    assert_int_equal(c.providers[0].nheaders, 1);
    assert_string_equal(c.providers[0].headers[0], "X-Note: a /* b */ c // d");
    config_free(&c);
}

static void test_empty_file_is_defaults(void **state) {
    (void)state;
    config c;
    assert_int_equal(load_text(&c, "  \n"), 0);
    assert_int_equal(c.concurrency, 256);
    config_free(&c);
}

static void test_unknown_key(void **state) {
    (void)state;
    expect_file_error("{\"concurency\": 5}", "unknown key \"concurency\"");
    expect_file_error("{\"providers\": [{\"name\": \"p\", \"base_url\": \"http://h\","
                      " \"apikey\": \"x\"}]}",
                      "providers[0]: unknown key \"apikey\"");
}

static void test_bad_type(void **state) {
    (void)state;
    config c;
    assert_int_equal(load_text(&c, "{\"concurrency\": \"10\"}"), -1);
    char *want = xasprintf("%s/chatq.json: concurrency must be an integer 1..100000", tmpdir);
    assert_string_equal(err, want);
    free(want);
    expect_file_error("{\"concurrency\": 0}", "concurrency must be an integer 1..100000");
    expect_file_error("{\"timeout_ms\": 1.5}", "timeout_ms must be an integer");
    expect_file_error("{\"prefix\": 5}", "prefix must be a string");
    expect_file_error("{\"prefix\": \"a b\"}", "prefix must be");
    expect_file_error("{\"log_level\": \"verbose\"}", "log_level must be one of");
    expect_file_error("{\"redis_url\": \"http://x\"}", "redis_url must be");
    expect_file_error("{\"queues\": []}", "queues must be");
    expect_file_error("{\"queues\": [\"a\", \"a\"]}", "twice");
    expect_file_error("{\"queues\": [\"a/b\"]}", "queues must be");
    expect_file_error("{\"providers\": {}}", "providers must be an array");
    expect_file_error("{\"retry_base_ms\": 5000, \"retry_max_ms\": 1000}",
                      "retry_base_ms (5000) must not exceed retry_max_ms (1000)");
}

static void test_not_json_names_line(void **state) {
    (void)state;
    expect_file_error("{\n\"concurrency\": 5\n\"prefix\": \"x\"\n}", "not valid JSON");
    expect_file_error("{\n\"concurrency\": 5\n", "line 3");
    expect_file_error("[1, 2]", "JSON object");
    expect_file_error("{\"concurrency\": 5} {}", "not valid JSON");
}

/* ---- providers ---- */

static void test_providers_parsed(void **state) {
    (void)state;
    setenv("TEST_CHATQ_KEY", "sk-env-key  \n", 1);
    config c;
    assert_int_equal(load_text(&c, "{\"providers\": ["
                                   " {\"name\": \"gw\", \"base_url\": \"https://gw.example/v1/\","
                                   "  \"api_key_env\": \"TEST_CHATQ_KEY\", \"models\": [\"a*\"],"
                                   "  \"headers\": {\"X-Org\": \"acme\"}, \"max_connections\": 8,"
                                   "  \"timeout_ms\": 5000, \"connect_timeout_ms\": 700,"
                                   "  \"idle_timeout_ms\": 900},"
                                   " {\"name\": \"local\", \"base_url\": \"http://127.0.0.1:8080\","
                                   "  \"api_key_env\": \"TEST_CHATQ_UNSET_VAR\"}]}"),
                     0);
    assert_int_equal(c.nproviders, 2);
    const provider_cfg *p = &c.providers[0];
    assert_string_equal(p->name, "gw");
    assert_string_equal(p->base_url, "https://gw.example/v1");
    assert_string_equal(p->api_key, "sk-env-key");
    assert_int_equal(p->nmodels, 1);
    assert_string_equal(p->models[0], "a*");
    assert_int_equal(p->nheaders, 1);
    assert_string_equal(p->headers[0], "X-Org: acme");
    assert_int_equal(p->max_connections, 8);
    assert_int_equal(p->timeout_ms, 5000);
    assert_int_equal(p->connect_timeout_ms, 700);
    assert_int_equal(p->idle_timeout_ms, 900);
    p = &c.providers[1];
    assert_null(p->api_key); /* a missing variable is no key, not an error */
    assert_int_equal(p->nmodels, 1);
    assert_string_equal(p->models[0], "*");
    assert_int_equal(p->timeout_ms, 0);
    assert_ptr_equal(config_provider(&c, "local"), p);
    assert_null(config_provider(&c, "nope"));
    config_free(&c);
}

static void test_provider_errors(void **state) {
    (void)state;
    expect_file_error("{\"providers\": [{\"base_url\": \"http://h\"}]}",
                      "providers[0].name is required");
    expect_file_error("{\"providers\": [{\"name\": \"p\"}]}", "providers[0].base_url is required");
    expect_file_error("{\"providers\": [{\"name\": \"p\", \"base_url\": \"ftp://h\"}]}",
                      "providers[0].base_url must be an http:// or https:// URL");
    expect_file_error("{\"providers\": [{\"name\": \"p\", \"base_url\": \"http://a\"},"
                      " {\"name\": \"p\", \"base_url\": \"http://b\"}]}",
                      "providers[1].name \"p\" is already used");
    expect_file_error("{\"providers\": [{\"name\": \"p\", \"base_url\": \"http://a\","
                      " \"models\": \"*\"}]}",
                      "providers[0].models must be an array");
    expect_file_error("{\"providers\": [{\"name\": \"p\", \"base_url\": \"http://a\","
                      " \"headers\": {\"Bad Name\": \"v\"}}]}",
                      "not a valid header name");
    expect_file_error("{\"providers\": [{\"name\": \"p\", \"base_url\": \"http://a\","
                      " \"headers\": {\"X\": \"a\\r\\nInjected: 1\"}}]}",
                      "control characters");
    expect_file_error("{\"providers\": [{\"name\": \"p\", \"base_url\": \"http://a\","
                      " \"max_connections\": -1}]}",
                      "providers[0].max_connections must be an integer");
    expect_file_error("{\"providers\": [{\"name\": \"p\", \"base_url\": \"http://a\","
                      " \"api_key_env\": \"A\", \"api_key_file\": \"b\"}]}",
                      "not both");
}

static void test_api_key_file_credentials_directory(void **state) {
    (void)state;
    char *creds = xasprintf("%s/creds", tmpdir);
    assert_int_equal(mkdir(creds, 0700), 0);
    char *keyfile = xasprintf("%s/openai", creds);
    FILE *f = fopen(keyfile, "w");
    fputs("sk-from-credential-file\n\n", f);
    fclose(f);
    setenv("CREDENTIALS_DIRECTORY", creds, 1);
    config c;
    assert_int_equal(load_text(&c, "{\"providers\": [{\"name\": \"p\", \"base_url\":"
                                   " \"https://x/v1\", \"api_key_file\": \"openai\"}]}"),
                     0);
    assert_string_equal(c.providers[0].api_key, "sk-from-credential-file");
    assert_string_equal(c.providers[0].api_key_file, "openai");
    config_free(&c);

    /* an absolute path ignores CREDENTIALS_DIRECTORY */
    char *text = xasprintf("{\"providers\": [{\"name\": \"p\", \"base_url\": \"https://x\","
                           " \"api_key_file\": \"%s\"}]}",
                           keyfile);
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_int_equal(load_text(&c, text), 0);
    assert_string_equal(c.providers[0].api_key, "sk-from-credential-file");
    config_free(&c);
    free(text);

    /* missing: an error naming the resolved path */
    setenv("CREDENTIALS_DIRECTORY", creds, 1);
    assert_int_equal(load_text(&c, "{\"providers\": [{\"name\": \"p\", \"base_url\":"
                                   " \"https://x\", \"api_key_file\": \"missing-key\"}]}"),
                     -1);
    char *want = xasprintf("%s/missing-key", creds);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "api_key_file"));
    free(want);

    /* a two-line file is refused, and the error never shows its contents */
    f = fopen(keyfile, "w");
    fputs("sk-line-one-SECRET\nsk-line-two\n", f);
    fclose(f);
    assert_int_equal(load_text(&c, "{\"providers\": [{\"name\": \"p\", \"base_url\":"
                                   " \"https://x\", \"api_key_file\": \"openai\"}]}"),
                     -1);
    assert_non_null(strstr(err, keyfile));
    assert_null(strstr(err, "SECRET"));
    free(keyfile);
    free(creds);
}

/* ---- routing ---- */

static void test_route_glob_order(void **state) {
    (void)state;
    config c;
    assert_int_equal(load_text(&c, "{\"providers\": ["
                                   " {\"name\": \"a\", \"base_url\": \"http://a\","
                                   "  \"models\": [\"gpt-4*\"]},"
                                   " {\"name\": \"b\", \"base_url\": \"http://b\","
                                   "  \"models\": [\"gpt-*\", \"o[13]\"]},"
                                   " {\"name\": \"c\", \"base_url\": \"http://c\","
                                   "  \"models\": [\"*\"]}]}"),
                     0);
    assert_string_equal(config_route(&c, "gpt-4o")->name, "a");
    assert_string_equal(config_route(&c, "gpt-3.5-turbo")->name, "b");
    assert_string_equal(config_route(&c, "o3")->name, "b");
    assert_string_equal(config_route(&c, "o2")->name, "c");
    assert_string_equal(config_route(&c, "claude-x")->name, "c");
    config_free(&c);

    assert_int_equal(load_text(&c, "{\"providers\": [{\"name\": \"only\", \"base_url\":"
                                   " \"http://a\", \"models\": [\"llama-*\"]}]}"),
                     0);
    assert_string_equal(config_route(&c, "llama-3")->name, "only");
    assert_null(config_route(&c, "gpt-4o"));
    config_free(&c);
}

/* ---- dump ---- */

static void test_dump_masks_secrets(void **state) {
    (void)state;
    setenv("OPENAI_API_KEY", "sk-TOPSECRET-4242", 1);
    setenv("CHATQ_REDIS_URL", "redis://app:hunter2pass@db.local:6380/2", 1);
    config c;
    assert_int_equal(load_text(&c, "{\"concurrency\": 12}"), 0);
    assert_string_equal(c.providers[0].api_key, "sk-TOPSECRET-4242");
    char *dump = config_dump(&c);
    assert_null(strstr(dump, "TOPSECRET"));
    assert_null(strstr(dump, "hunter2pass"));
    json_object *o = json_tokener_parse(dump);
    assert_non_null(o);
    assert_string_equal(json_object_get_string(json_object_object_get(o, "redis_url")),
                        "redis://app:***@db.local:6380/2");
    assert_int_equal(json_object_get_int(json_object_object_get(o, "concurrency")), 12);
    json_object *ps = json_object_object_get(o, "providers");
    assert_int_equal(json_object_array_length(ps), 1);
    json_object *p = json_object_array_get_idx(ps, 0);
    assert_string_equal(json_object_get_string(json_object_object_get(p, "api_key")), "***");
    assert_string_equal(json_object_get_string(json_object_object_get(p, "api_key_env")),
                        "OPENAI_API_KEY");
    assert_string_equal(json_object_get_string(json_object_object_get(p, "base_url")),
                        "https://api.openai.com/v1");
    json_object_put(o);
    free(dump);
    config_free(&c);

    /* no key: null; unix socket password in the query: masked */
    unsetenv("OPENAI_API_KEY");
    setenv("CHATQ_REDIS_URL", "unix:///run/r.sock?db=1&password=s3cr3tpw", 1);
    assert_int_equal(load_text(&c, "{\"providers\": [{\"name\": \"p\", \"base_url\": \"http://h\","
                                   " \"headers\": {\"X-Api-Key\": \"hdr-secret-value\","
                                   " \"X-Org\": \"acme\"}}]}"),
                     0);
    dump = config_dump(&c);
    assert_null(strstr(dump, "s3cr3tpw"));
    assert_null(strstr(dump, "hdr-secret-value"));
    o = json_tokener_parse(dump);
    assert_string_equal(json_object_get_string(json_object_object_get(o, "redis_url")),
                        "unix:///run/r.sock?db=1&password=***");
    p = json_object_array_get_idx(json_object_object_get(o, "providers"), 0);
    json_object *k;
    assert_true(json_object_object_get_ex(p, "api_key", &k));
    assert_null(k);
    json_object *h = json_object_object_get(p, "headers");
    assert_string_equal(json_object_get_string(json_object_object_get(h, "X-Org")), "acme");
    assert_string_equal(json_object_get_string(json_object_object_get(h, "X-Api-Key")), "***");
    json_object_put(o);
    free(dump);
    config_free(&c);
}

/* ---- redis_url (the parser itself: test_redisurl.c) ---- */

static void test_redis_url_error_hides_password(void **state) {
    (void)state;
    config c;
    /* no "@host": the password is read as the port */
    setenv("CHATQ_REDIS_URL", "redis://app:Zq9secret", 1);
    assert_int_equal(config_load(&c, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "CHATQ_REDIS_URL"));
    assert_non_null(strstr(err, "bad port"));
    assert_null(strstr(err, "Zq9"));
}

/* ---- prices, limits, fallbacks, rate_limit_wait_ms ---- */

static void test_rate_limit_wait(void **state) {
    (void)state;
    config c;
    assert_int_equal(load_text(&c, "{}"), 0);
    assert_int_equal(c.rate_limit_wait_ms, 300000);
    assert_int_equal(c.nfallbacks, 0);
    assert_null(config_fallbacks(&c, "gpt-4o"));
    assert_int_equal(c.providers[0].nprices, 0);
    assert_int_equal(c.providers[0].nlimits, 0);
    assert_null(config_price(&c.providers[0], "gpt-4o"));
    config_free(&c);
    assert_int_equal(load_text(&c, "{\"rate_limit_wait_ms\": 0}"), 0);
    assert_int_equal(c.rate_limit_wait_ms, 0);
    config_free(&c);
    assert_int_equal(load_text(&c, "{\"rate_limit_wait_ms\": 1234}"), 0);
    assert_int_equal(c.rate_limit_wait_ms, 1234);
    config_free(&c);
    expect_file_error("{\"rate_limit_wait_ms\": -1}", "rate_limit_wait_ms must be an integer");
    expect_file_error("{\"rate_limit_wait_ms\": \"5s\"}", "rate_limit_wait_ms must be an integer");
    expect_file_error("{\"rate_limit_wait_ms\": 86400001}", "rate_limit_wait_ms");
}

static void test_prices_parsed(void **state) {
    (void)state;
    config c;
    assert_int_equal(load_text(&c, "{\"providers\": [{\"name\": \"gw\", \"base_url\": \"http://gw\","
                                   " \"prices\": {\"gpt-4o-mini*\": {\"input\": 0.15, \"output\": 0.6},"
                                   "  \"gpt-4o*\": {\"input\": 2.5, \"cached_input\": 1.25,"
                                   "   \"output\": 10}, \"free\": {\"input\": 0, \"output\": 0}}}]}"),
                     0);
    const provider_cfg *p = &c.providers[0];
    assert_int_equal(p->nprices, 3);
    const price_cfg *pr = config_price(p, "gpt-4o-mini-2024-07-18");
    assert_non_null(pr);
    assert_string_equal(pr->pattern, "gpt-4o-mini*");
    assert_true(pr->input == 0.15);
    assert_true(pr->cached_input == 0.15); /* defaults to input */
    assert_true(pr->output == 0.6);
    pr = config_price(p, "gpt-4o"); /* the first matching pattern, in file order */
    assert_non_null(pr);
    assert_string_equal(pr->pattern, "gpt-4o*");
    assert_true(pr->input == 2.5);
    assert_true(pr->cached_input == 1.25);
    assert_true(pr->output == 10.0);
    pr = config_price(p, "free");
    assert_non_null(pr);
    assert_true(pr->input == 0 && pr->cached_input == 0 && pr->output == 0);
    assert_null(config_price(p, "claude-3"));
    assert_null(config_price(p, NULL));
    assert_null(config_price(NULL, "gpt-4o"));

    char *dump = config_dump(&c);
    json_object *o = json_tokener_parse(dump);
    assert_non_null(o);
    json_object *prices = json_object_object_get(
        json_object_array_get_idx(json_object_object_get(o, "providers"), 0), "prices");
    json_object *mini = json_object_object_get(prices, "gpt-4o-mini*");
    assert_non_null(mini);
    assert_true(json_object_get_double(json_object_object_get(mini, "cached_input")) == 0.15);
    assert_true(json_object_get_double(json_object_object_get(mini, "output")) == 0.6);
    json_object_put(o);
    free(dump);
    config_free(&c);
}

static void test_price_errors(void **state) {
    (void)state;
#define PRICES(x) "{\"providers\": [{\"name\": \"gw\", \"base_url\": \"http://gw\", \"prices\": " x "}]}"
    expect_file_error(PRICES("[1]"), "providers[0].prices must be an object");
    expect_file_error(PRICES("{\"m\": 5}"), "providers[0].prices.m must be an object");
    expect_file_error(PRICES("{\"m\": {\"input\": 1}}"), "providers[0].prices.m needs both input and output");
    expect_file_error(PRICES("{\"m\": {\"output\": 1}}"), "needs both input and output");
    expect_file_error(PRICES("{\"m\": {\"input\": -1, \"output\": 1}}"),
                      "providers[0].prices.m.input must be a number");
    expect_file_error(PRICES("{\"m\": {\"input\": \"2.5\", \"output\": 1}}"),
                      "providers[0].prices.m.input must be a number");
    expect_file_error(PRICES("{\"m\": {\"input\": 1, \"output\": 1, \"cached_input\": true}}"),
                      "providers[0].prices.m.cached_input must be a number");
    expect_file_error(PRICES("{\"m\": {\"input\": 1, \"output\": 1e7}}"), "output must be a number");
    expect_file_error(PRICES("{\"m\": {\"input\": 1, \"output\": 1, \"cached\": 1}}"),
                      "unknown key \"cached\"");
#undef PRICES
}

static void test_limits_parsed(void **state) {
    (void)state;
    config c;
    assert_int_equal(load_text(&c, "{\"providers\": [{\"name\": \"gw\", \"base_url\": \"http://gw\","
                                   " \"limits\": {\"*\": {\"rpm\": 600, \"tpm\": 100000},"
                                   "  \"gpt-*\": {\"tpm\": 5}, \"o1\": {\"rpm\": 3}}}]}"),
                     0);
    const provider_cfg *p = &c.providers[0];
    assert_int_equal(p->nlimits, 3);
    assert_string_equal(p->limits[0].pattern, "*");
    assert_int_equal(p->limits[0].rpm, 600);
    assert_int_equal(p->limits[0].tpm, 100000);
    assert_string_equal(p->limits[1].pattern, "gpt-*");
    assert_int_equal(p->limits[1].rpm, 0); /* absent: no limit */
    assert_int_equal(p->limits[1].tpm, 5);
    assert_string_equal(p->limits[2].pattern, "o1");
    assert_int_equal(p->limits[2].rpm, 3);
    assert_int_equal(p->limits[2].tpm, 0);

    char *dump = config_dump(&c);
    json_object *o = json_tokener_parse(dump);
    json_object *l = json_object_object_get(json_object_object_get(
        json_object_array_get_idx(json_object_object_get(o, "providers"), 0), "limits"), "*");
    assert_int_equal(json_object_get_int64(json_object_object_get(l, "rpm")), 600);
    assert_int_equal(json_object_get_int64(json_object_object_get(l, "tpm")), 100000);
    json_object_put(o);
    free(dump);
    config_free(&c);
}

static void test_limit_errors(void **state) {
    (void)state;
#define LIMITS(x) "{\"providers\": [{\"name\": \"gw\", \"base_url\": \"http://gw\", \"limits\": " x "}]}"
    expect_file_error(LIMITS("[]"), "providers[0].limits must be an object");
    expect_file_error(LIMITS("{\"*\": 600}"), "providers[0].limits.* must be an object");
    expect_file_error(LIMITS("{\"*\": {\"rpm\": -1}}"), "providers[0].limits.*.rpm must be an integer");
    expect_file_error(LIMITS("{\"*\": {\"rpm\": 1.5}}"), "providers[0].limits.*.rpm must be an integer");
    expect_file_error(LIMITS("{\"*\": {\"tpm\": \"1000\"}}"), "providers[0].limits.*.tpm must be an integer");
    expect_file_error(LIMITS("{\"*\": {\"rps\": 10}}"), "unknown key \"rps\"");
#undef LIMITS
}

static void test_fallbacks_parsed(void **state) {
    (void)state;
    config c;
    assert_int_equal(load_text(&c, "{\"providers\": [{\"name\": \"main\", \"base_url\": \"http://a\"},"
                                   "  {\"name\": \"backup\", \"base_url\": \"http://b\"}],"
                                   " \"fallbacks\": {\"gpt-4o\": [{\"provider\": \"backup\"},"
                                   "   {\"model\": \"gpt-4o-mini\"},"
                                   "   {\"provider\": \"backup\", \"model\": \"gpt-4.1\"}],"
                                   "  \"claude-*\": [{\"model\": \"claude-haiku\"}]}}"),
                     0);
    assert_int_equal(c.nfallbacks, 2);
    const fallback_cfg *f = config_fallbacks(&c, "gpt-4o");
    assert_non_null(f);
    assert_int_equal(f->nsteps, 3);
    assert_string_equal(f->steps[0].provider, "backup");
    assert_null(f->steps[0].model);
    assert_null(f->steps[1].provider);
    assert_string_equal(f->steps[1].model, "gpt-4o-mini");
    assert_string_equal(f->steps[2].provider, "backup");
    assert_string_equal(f->steps[2].model, "gpt-4.1");
    f = config_fallbacks(&c, "claude-sonnet");
    assert_non_null(f);
    assert_string_equal(f->pattern, "claude-*");
    assert_int_equal(f->nsteps, 1);
    assert_null(config_fallbacks(&c, "gpt-4o-mini")); /* patterns are globs, not prefixes */
    assert_null(config_fallbacks(&c, NULL));

    char *dump = config_dump(&c);
    json_object *o = json_tokener_parse(dump);
    json_object *steps = json_object_object_get(json_object_object_get(o, "fallbacks"), "gpt-4o");
    assert_int_equal(json_object_array_length(steps), 3);
    json_object *s1 = json_object_array_get_idx(steps, 1);
    assert_string_equal(json_object_get_string(json_object_object_get(s1, "model")), "gpt-4o-mini");
    json_object *np;
    assert_true(json_object_object_get_ex(s1, "provider", &np));
    assert_null(np);
    json_object_put(o);
    free(dump);
    config_free(&c);
}

static void test_fallback_errors(void **state) {
    (void)state;
    expect_file_error("{\"fallbacks\": [1]}", "fallbacks must be an object");
    expect_file_error("{\"fallbacks\": {\"m\": {\"model\": \"n\"}}}", "fallbacks.m must be an array");
    expect_file_error("{\"fallbacks\": {\"m\": [\"n\"]}}", "fallbacks.m[0] must be an object");
    expect_file_error("{\"fallbacks\": {\"m\": [{}]}}", "fallbacks.m[0] needs a provider or a model");
    expect_file_error("{\"fallbacks\": {\"m\": [{\"model\": \"n\"}, {\"model\": \"\"}]}}",
                      "fallbacks.m[1].model must be a non-empty string");
    expect_file_error("{\"fallbacks\": {\"m\": [{\"model\": 5}]}}",
                      "fallbacks.m[0].model must be a non-empty string");
    expect_file_error("{\"fallbacks\": {\"m\": [{\"modle\": \"n\"}]}}", "unknown key \"modle\"");
    expect_file_error("{\"providers\": [{\"name\": \"a\", \"base_url\": \"http://a\"}],"
                      " \"fallbacks\": {\"m\": [{\"provider\": \"a\"}, {\"provider\": \"nope\"}]}}",
                      "fallbacks.m[1]: no provider named \"nope\"");
    /* without providers in the file, only "default" exists */
    config c;
    assert_int_equal(load_text(&c, "{\"fallbacks\": {\"m\": [{\"provider\": \"default\"}]}}"), 0);
    config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_provider_from_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_overrides_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_from_chatq_config_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_overrides_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags_override_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flag_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_comments_in_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file_is_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_json_names_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_providers_parsed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provider_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_key_file_credentials_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_glob_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_masks_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_url_error_hides_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prices_parsed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_price_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_parsed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallbacks_parsed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* submit_cmd.c — `chatq submit`: queues one chat-completion job.
 *
 * submit builds the job object (from the prompt and flags, or from a whole
 * job given with --json and then amended by the flags), checks it with
 * job_parse() so that a job the daemon would reject is refused here with
 * the same message, and LPUSHes it. With --stream or --wait it subscribes
 * to P:stream:<id> on a second connection BEFORE the push, so not even the
 * first event can be missed, and then follows the job (follow.c).
 *
 * The job id is printed on stdout as the first line, once the job is
 * pushed. An id is always made explicit: the given --id, else the job's own
 * id or custom_id, else job_generate_id(). */
#include "cli/submit_cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/follow.h"
#include "cli/help.h"
#include "cli/redis.h"
#include "common/buf.h"
#include "common/job.h"
#include "common/keys.h"

/* What --json may read at most, whatever max_job_bytes says: the file may
 * be pretty-printed, and the real limit is checked on the compact text. */
#define SUBMIT_MAX_FILE_BYTES (64u << 20)

enum {
    SUB_MODEL = 1, SUB_QUEUE, SUB_STREAM, SUB_WAIT, SUB_TENANT, SUB_ID, SUB_SYSTEM,
    SUB_MAX_TOKENS, SUB_TIMEOUT, SUB_JSON,
};

static const cli_opt submit_opts[] = {
    {"model", 'm', 1, SUB_MODEL},
    {"queue", 0, 1, SUB_QUEUE},
    {"stream", 0, 0, SUB_STREAM},
    {"wait", 0, 0, SUB_WAIT},
    {"tenant", 0, 1, SUB_TENANT},
    {"id", 0, 1, SUB_ID},
    {"system", 0, 1, SUB_SYSTEM},
    {"max-tokens", 0, 1, SUB_MAX_TOKENS},
    {"timeout", 0, 1, SUB_TIMEOUT},
    {"json", 0, 1, SUB_JSON},
    {NULL, 0, 0, 0},
};

typedef struct submit_args {
    const char *model, *queue, *tenant, *id, *system, *json_path;
    long long max_tokens;  /* 0: not given */
    int stream, wait;
    double timeout_s;      /* 0: not given */
    char *prompt;          /* owned: the positional words joined by spaces */
} submit_args;

/* ---- arguments ---- */

static int submit_take(cli_ctx *ctx, submit_args *a, int id, const char *val) {
    switch (id) {
    case SUB_MODEL: a->model = val; break;
    case SUB_QUEUE: a->queue = val; break;
    case SUB_STREAM: a->stream = 1; break;
    case SUB_WAIT: a->wait = 1; break;
    case SUB_TENANT: a->tenant = val; break;
    case SUB_ID: a->id = val; break;
    case SUB_SYSTEM: a->system = val; break;
    case SUB_JSON: a->json_path = val; break;
    case SUB_MAX_TOKENS:
        if (cli_parse_ll(val, 1, 1LL << 40, &a->max_tokens) < 0)
            return cli_usage_fail(ctx, "--max-tokens must be a positive integer, not '%s'", val);
        break;
    case SUB_TIMEOUT:
        if (cli_parse_seconds(val, &a->timeout_s) < 0)
            return cli_usage_fail(ctx, "--timeout must be a positive number of seconds, not '%s'",
                                  val);
        break;
    }
    return CLI_OK;
}

/* Checks the combination of flags once all are read. */
static int submit_check(cli_ctx *ctx, const submit_args *a) {
    if (a->json_path && a->prompt)
        return cli_usage_fail(ctx, "give either a prompt or --json, not both");
    if (!a->json_path && !a->prompt) return cli_usage_fail(ctx, "missing the prompt");
    if (!a->json_path && !a->model) return cli_usage_fail(ctx, "missing -m MODEL");
    if (a->model && !*a->model) return cli_usage_fail(ctx, "the model must not be empty");
    if (a->queue && !*a->queue) return cli_usage_fail(ctx, "the queue name must not be empty");
    if (a->id && !job_id_valid(a->id))
        return cli_usage_fail(ctx, "--id must be 1-128 characters of [A-Za-z0-9._:-]");
    if (a->timeout_s > 0 && !a->stream && !a->wait)
        return cli_usage_fail(ctx, "--timeout needs --stream or --wait");
    return CLI_OK;
}

/* Returns 1 when the caller should stop with *status (help, bad flags). */
static int submit_parse(cli_ctx *ctx, int argc, char **argv, submit_args *a, int *status) {
    cli_parser p;
    int id;
    *status = CLI_OK;
    cli_parser_init(&p, ctx, submit_opts, argc, argv);
    while ((id = cli_next(&p)) > 0) {
        if (id == CLI_OPT_HELP) {
            cli_parser_free(&p);
            *status = help_print(ctx->cmd);
            return 1;
        }
        if ((*status = submit_take(ctx, a, id, p.val)) != CLI_OK) break;
    }
    if (id < 0) *status = CLI_USAGE;
    if (*status == CLI_OK && p.npos > 0) {
        buf b = {0};
        for (int i = 0; i < p.npos; i++) {
            if (i) buf_putc(&b, ' ');
            buf_puts(&b, p.pos[i]);
        }
        a->prompt = buf_steal(&b);
    }
    cli_parser_free(&p);
    if (*status == CLI_OK) *status = submit_check(ctx, a);
    return *status != CLI_OK;
}

/* ---- the job ---- */

/* Reads the --json input (a file, or stdin for "-") into out. Returns 0 or
 * -1 (printed). */
static int submit_read_input(const char *path, buf *out) {
    int is_stdin = !strcmp(path, "-");
    const char *name = is_stdin ? "stdin" : path;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        cli_fail("cannot open %s: %s", name, strerror(errno));
        return -1;
    }
    char chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        buf_append(out, chunk, n);
        if (out->len > SUBMIT_MAX_FILE_BYTES) {
            rc = -1;
            cli_fail("%s: larger than %u bytes", name, SUBMIT_MAX_FILE_BYTES);
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        rc = -1;
        cli_fail("cannot read %s: %s", name, strerror(errno));
    }
    if (!is_stdin) fclose(f);
    return rc;
}

/* The --json job, parsed. NULL after printing why not. */
static json_object *submit_load_json(const char *path) {
    buf in = {0};
    json_object *root = NULL;
    char err[160];
    const char *name = strcmp(path, "-") ? path : "stdin";
    if (submit_read_input(path, &in) < 0) goto out;
    if (cli_json_parse(buf_cstr(&in), in.len, &root, err, sizeof err) < 0) {
        cli_fail("%s: not valid JSON: %s", name, err);
        goto out;
    }
    if (!json_object_is_type(root, json_type_object)) {
        cli_fail("%s: a job must be a JSON object", name);
        json_object_put(root);
        root = NULL;
    }
out:
    buf_free(&in);
    return root;
}

static json_object *submit_message(const char *role, const char *content) {
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", json_object_new_string(content));
    return m;
}

/* The job of `chatq submit -m MODEL "prompt"`, id first. */
static json_object *submit_from_prompt(const submit_args *a) {
    char gen[32];
    json_object *root = json_object_new_object(), *body = json_object_new_object();
    json_object *msgs = json_object_new_array();
    if (!a->id) job_generate_id(gen);
    json_object_object_add(root, "id", json_object_new_string(a->id ? a->id : gen));
    json_object_object_add(body, "model", json_object_new_string(a->model));
    json_object_array_add(msgs, submit_message("user", a->prompt));
    json_object_object_add(body, "messages", msgs);
    json_object_object_add(root, "body", body);
    return root;
}

/* --system: a system message in front of body.messages (when that is an
 * array or absent; anything else is left for job_parse() to reject). */
static void submit_add_system(json_object *body, const char *text) {
    json_object *old = NULL;
    if (json_object_object_get_ex(body, "messages", &old) &&
        !json_object_is_type(old, json_type_array))
        return;
    json_object *msgs = json_object_new_array();
    json_object_array_add(msgs, submit_message("system", text));
    for (size_t i = 0; old && i < json_object_array_length(old); i++)
        json_object_array_add(msgs, json_object_get(json_object_array_get_idx(old, i)));
    json_object_object_add(body, "messages", msgs); /* releases the old array */
}

/* The flags amend the job: they win over what --json said. */
static void submit_amend(json_object *root, const submit_args *a) {
    json_object *body = NULL;
    if (a->id) json_object_object_add(root, "id", json_object_new_string(a->id));
    if (!json_object_object_get_ex(root, "body", &body) &&
        (a->model || a->system || a->max_tokens)) {
        body = json_object_new_object();
        json_object_object_add(root, "body", body);
    }
    if (json_object_is_type(body, json_type_object)) {
        if (a->model) json_object_object_add(body, "model", json_object_new_string(a->model));
        if (a->system) submit_add_system(body, a->system);
        if (a->max_tokens)
            json_object_object_add(body, "max_tokens", json_object_new_int64(a->max_tokens));
    }
    if (a->stream) json_object_object_add(root, "stream", json_object_new_boolean(1));
    if (a->tenant) json_object_object_add(root, "tenant", json_object_new_string(a->tenant));
    if (!json_object_object_get_ex(root, "id", NULL) &&
        !json_object_object_get_ex(root, "custom_id", NULL)) {
        char gen[32];
        job_generate_id(gen);
        json_object_object_add(root, "id", json_object_new_string(gen));
    }
}

/* Builds, serialises and validates the job. Returns 0 with *text (owned)
 * and *j (job_free()) set, or -1 after printing why. */
static int submit_build(const cli_ctx *ctx, const submit_args *a, char **text, job *j) {
    json_object *root = a->json_path ? submit_load_json(a->json_path) : submit_from_prompt(a);
    char err[256];
    if (!root) return -1;
    submit_amend(root, a);
    *text = xstrdup(json_object_to_json_string_ext(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(root);
    job_opts opts = {.max_bytes = (size_t)ctx->cfg.max_job_bytes, .prefix = ctx->cfg.prefix};
    if (job_parse_opts(j, *text, strlen(*text), &opts, err, sizeof err) < 0) {
        cli_fail("invalid job: %s", err);
        job_free(j);
        free(*text);
        *text = NULL;
        return -1;
    }
    return 0;
}

/* ---- submit ---- */

static int submit_push(cli_ctx *ctx, redisContext *c, const char *queue, const char *text) {
    char *key = keys_queue(cli_ctx_prefix(ctx), queue);
    redisReply *r = cli_redis_cmd(c, "LPUSH %s %s", key, text);
    free(key);
    if (!r) return -1;
    freeReplyObject(r);
    return 0;
}

/* Pushes the built job and, with --stream or --wait, follows it. */
static int submit_run(cli_ctx *ctx, const submit_args *a, const char *id, const char *text) {
    int follow = a->stream || a->wait, status = CLI_ERR;
    redisContext *cmd = cli_redis_connect(ctx), *sub = NULL;
    if (cmd && (!follow || (sub = follow_subscribe(ctx, id))) &&
        submit_push(ctx, cmd, a->queue ? a->queue : "default", text) == 0) {
        printf("%s\n", id);
        fflush(stdout);
        status = CLI_OK;
        if (follow) {
            follow_opts fo = {.cmd = cmd, .sub = sub, .prefix = cli_ctx_prefix(ctx), .id = id,
                              .print_chunks = a->stream, .timeout_s = a->timeout_s};
            status = follow_job(&fo);
        }
    }
    if (sub) redisFree(sub);
    if (cmd) redisFree(cmd);
    return status;
}

int submit_cmd(cli_ctx *ctx, int argc, char **argv) {
    submit_args a;
    int status;
    memset(&a, 0, sizeof a);
    if (!submit_parse(ctx, argc, argv, &a, &status)) {
        char *text = NULL;
        job j;
        status = CLI_ERR;
        if (cli_ctx_load(ctx) == 0 && submit_build(ctx, &a, &text, &j) == 0) {
            status = submit_run(ctx, &a, j.id, text);
            job_free(&j);
            free(text);
        }
    }
    free(a.prompt);
    return status;
}

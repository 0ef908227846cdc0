/* cli.c — the shared parts of `chatq`: run context, failure messages, the
 * option parser and value helpers. See cli.h.
 *
 * The parser is hand-written rather than getopt_long() so that every
 * message is ours (one line, naming the command) and so that the common
 * flags can be taken by every command without each one listing them. */
#include "cli/cli.h"

#include "common/jsonparse.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/help.h"
#include "common/buf.h"
#include "common/job.h"
#include "common/output.h"

/* Deep enough for large tool schemas; json-c's default is 32. */
#define CLI_JSON_MAX_DEPTH 128
/* What cli_json_parse() lets json-c build. json-c spends about 780 bytes
 * on an empty object and 150 on an array (docs/reliability.md), and the CLI
 * parses text anyone can write to Redis: 4.5 MB of "[[],[],...]" cost 225
 * MB. These bounds are above what any chatq program writes (an upstream
 * body of at most 1,000,000 values, 250,000 of them objects and arrays;
 * jobs far less) and keep the worst text near 300 MB. */
#define CLI_JSON_MAX_CONTAINERS 300000
#define CLI_JSON_MAX_VALUES 1100000

void (*cli_before_message)(void);

int cli_fail(const char *fmt, ...) {
    va_list ap;
    if (cli_before_message) cli_before_message();
    fflush(stdout); /* keep what was printed before the message */
    fputs("chatq: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_ERR;
}

int cli_usage_fail(const cli_ctx *ctx, const char *fmt, ...) {
    va_list ap;
    const char *cmd = ctx && ctx->cmd ? ctx->cmd : NULL;
    fputs("chatq: ", stderr);
    if (cmd) fprintf(stderr, "%s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'chatq %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
    return CLI_USAGE;
}

int cli_ctx_load(cli_ctx *ctx) {
    if (ctx->loaded) return 0;
    config_args args = {0};
    args.config_file = ctx->config_flag;
    args.redis_url = ctx->redis_flag;
    args.no_secrets = 1; /* the client never calls an upstream */
    char err[512];
    if (config_load(&ctx->cfg, &args, err, sizeof err) < 0) {
        cli_fail("%s", err[0] ? err : "cannot load the configuration");
        return -1;
    }
    ctx->loaded = 1;
    /* The same rule the configuration applies to its own prefix. */
    const char *p = cli_ctx_prefix(ctx);
    int ok = p && *p;
    for (const unsigned char *s = (const unsigned char *)p; ok && *s; s++)
        ok = *s > ' ' && *s != 0x7f;
    if (!ok) {
        cli_fail("--prefix: must be non-empty, without spaces or control characters");
        return -1;
    }
    return 0;
}

const char *cli_ctx_prefix(const cli_ctx *ctx) {
    if (ctx->prefix_flag) return ctx->prefix_flag;
    return ctx->loaded ? ctx->cfg.prefix : NULL;
}

void cli_ctx_free(cli_ctx *ctx) {
    if (ctx->loaded) config_free(&ctx->cfg);
    ctx->loaded = 0;
}

/* ---- option parsing ---- */

static const cli_opt cli_common_opts[] = {
    {"redis", 0, 1, CLI_OPT_REDIS},
    {"config", 0, 1, CLI_OPT_CONFIG},
    {"prefix", 0, 1, CLI_OPT_PREFIX},
    {"help", 'h', 0, CLI_OPT_HELP},
    {NULL, 0, 0, 0},
};

void cli_parser_init(cli_parser *p, cli_ctx *ctx, const cli_opt *opts, int argc, char **argv) {
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    p->opts = opts;
    p->argc = argc;
    p->argv = argv;
    p->i = 1;
    p->pos = xcalloc((size_t)(argc > 0 ? argc : 1), sizeof *p->pos);
}

void cli_parser_free(cli_parser *p) {
    free(p->pos);
    p->pos = NULL;
    p->npos = 0;
}

/* Looks in the command's table first, then in the common one. */
static const cli_opt *cli_find(const cli_parser *p, const char *name, size_t n, char c) {
    const cli_opt *tables[2] = {p->opts, cli_common_opts};
    for (int t = 0; t < 2; t++) {
        for (const cli_opt *o = tables[t]; o && o->name; o++) {
            if (name && strlen(o->name) == n && !strncmp(o->name, name, n)) return o;
            if (!name && c && o->short_name == c) return o;
        }
    }
    return NULL;
}

/* Stores a common flag in the context; returns 1 when `o` was one. */
static int cli_take_common(cli_parser *p, const cli_opt *o, const char *val) {
    switch (o->id) {
    case CLI_OPT_REDIS: p->ctx->redis_flag = val; return 1;
    case CLI_OPT_CONFIG: p->ctx->config_flag = val; return 1;
    case CLI_OPT_PREFIX: p->ctx->prefix_flag = val; return 1;
    default: return 0;
    }
}

int cli_next(cli_parser *p) {
    while (p->i < p->argc) {
        char *a = p->argv[p->i++];
        if (p->no_more_opts || a[0] != '-' || a[1] == '\0') {
            if (p->stop_at_pos) {
                p->i--;
                return 0;
            }
            p->pos[p->npos++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            p->no_more_opts = 1;
            continue;
        }
        const cli_opt *o;
        const char *inline_val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t n = eq ? (size_t)(eq - name) : strlen(name);
            o = cli_find(p, name, n, 0);
            if (!o) {
                cli_usage_fail(p->ctx, "unknown option --%.*s", (int)n, name);
                return -1;
            }
            if (eq) inline_val = eq + 1;
        } else {
            o = cli_find(p, NULL, 0, a[1]);
            if (!o || (a[2] && !o->has_arg)) {
                cli_usage_fail(p->ctx, "unknown option %s", a);
                return -1;
            }
            if (a[2]) inline_val = a + 2;
        }
        p->val = NULL;
        if (o->has_arg) {
            if (inline_val) {
                p->val = inline_val;
            } else if (p->i < p->argc) {
                p->val = p->argv[p->i++];
            } else {
                cli_usage_fail(p->ctx, "option %s needs a value", a);
                return -1;
            }
        } else if (inline_val) {
            cli_usage_fail(p->ctx, "option --%s takes no value", o->name);
            return -1;
        }
        if (cli_take_common(p, o, p->val)) continue;
        return o->id;
    }
    return 0;
}

/* The positional arguments of cli_parse_cmd(): one job id, or none. */
static int cli_take_id(cli_ctx *ctx, const cli_parser *p, const char **id) {
    if (!id && p->npos) return cli_usage_fail(ctx, "unexpected argument '%s'", p->pos[0]);
    if (!id) return CLI_OK;
    if (p->npos != 1)
        return cli_usage_fail(ctx, p->npos ? "expects one job id" : "missing the job id");
    if (!job_id_valid(p->pos[0]))
        return cli_usage_fail(ctx, "'%s' is not a job id (1-128 characters of [A-Za-z0-9._:-])",
                              p->pos[0]);
    *id = p->pos[0];
    return CLI_OK;
}

int cli_parse_cmd(cli_ctx *ctx, const cli_opt *opts, int argc, char **argv, cli_take_fn take,
                  void *arg, const char **id, int *status) {
    cli_parser p;
    int opt = 0;
    *status = CLI_OK;
    cli_parser_init(&p, ctx, opts, argc, argv);
    while (*status == CLI_OK && (opt = cli_next(&p)) > 0) {
        if (opt == CLI_OPT_HELP) {
            cli_parser_free(&p);
            *status = help_print(ctx->cmd);
            return 1;
        }
        *status = take(ctx, arg, opt, p.val);
    }
    if (*status == CLI_OK && opt < 0) *status = CLI_USAGE; /* cli_next() printed why */
    if (*status == CLI_OK) *status = cli_take_id(ctx, &p, id);
    cli_parser_free(&p);
    return *status != CLI_OK;
}

int cli_take_flag(cli_ctx *ctx, void *arg, int id, const char *val) {
    (void)ctx;
    (void)id;
    (void)val;
    *(int *)arg = 1;
    return CLI_OK;
}

int cli_take_value(cli_ctx *ctx, void *arg, int id, const char *val) {
    (void)ctx;
    (void)id;
    *(const char **)arg = val;
    return CLI_OK;
}

/* ---- values ---- */

int cli_parse_ll(const char *s, long long min, long long max, long long *out) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int cli_parse_seconds(const char *s, double *out) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    /* A year bounds it well below where poll()'s int milliseconds overflow
     * in our per-step arithmetic, and rejects inf/nan. */
    if (errno || *end || end == s || !isfinite(v) || v <= 0 || v > 366.0 * 86400) return -1;
    *out = v;
    return 0;
}

/* Counts, without checking the syntax (json-c does that), what parsing s
 * would build: objects and arrays, and values, of which there are at most
 * one per container and one per comma, strings aside. Returns 0 within
 * the bounds above, else -1 with the reason in err. */
static int cli_json_cost(const char *s, size_t len, char *err, size_t errlen) {
    size_t containers = 0, values = 1;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            containers++;
            values++;
        } else if (c == ',') {
            values++;
        }
        if (containers > CLI_JSON_MAX_CONTAINERS || values > CLI_JSON_MAX_VALUES) {
            if (err)
                snprintf(err, errlen, "too complex: more than %d %s at byte %zu",
                         containers > CLI_JSON_MAX_CONTAINERS ? CLI_JSON_MAX_CONTAINERS
                                                              : CLI_JSON_MAX_VALUES,
                         containers > CLI_JSON_MAX_CONTAINERS ? "objects and arrays" : "values",
                         i);
            return -1;
        }
    }
    return 0;
}

int cli_json_parse(const char *s, size_t len, json_object **out, char *err, size_t errlen) {
    *out = NULL;
    if (cli_json_cost(s, len, err, errlen) < 0) return -1;
    json_tokener *tok = json_tokener_new_ex(CLI_JSON_MAX_DEPTH);
    if (!tok) {
        if (err) snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = jsonparse_whole(tok, s, len, out, err, errlen);
    json_tokener_free(tok);
    return rc;
}

const char *cli_quote(buf *b, const char *s, size_t len, size_t max) {
    buf q = {0};
    size_t n = len > max ? max : len;
    while (n < len && n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--; /* whole characters */
    buf_json_str(&q, s, n);
    if (n < len) buf_puts(&q, "...");
    if (isatty(STDERR_FILENO))
        output_term_safe(b, q.data, q.len);
    else
        buf_append(b, q.data, q.len);
    buf_free(&q);
    return buf_cstr(b);
}

int cli_str_index(const char *const *list, const char *s) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], s)) return i;
    return -1;
}

void cli_print_json(json_object *o) {
    if (json_object_is_type(o, json_type_array) && !json_object_array_length(o)) {
        puts("[]"); /* json-c's pretty form of it spans two lines */
        return;
    }
    const char *text = json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!isatty(STDOUT_FILENO)) {
        puts(text);
        return;
    }
    /* JSON escapes C0 controls, but DEL, C1 controls and bidi overrides in
     * upstream text pass as they are: on a terminal they are made harmless */
    buf b = {0};
    output_term_safe(&b, text, strlen(text));
    puts(buf_cstr(&b));
    buf_free(&b);
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

long long cli_unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

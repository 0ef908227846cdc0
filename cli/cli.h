/* cli.h — what every `chatq` command shares: the run context (common flags
 * and the loaded configuration), failure messages with their exit statuses,
 * a small option parser (with the option handlers several commands share),
 * and value helpers: numbers, times, JSON in and out.
 *
 * Exit statuses: CLI_OK (0) success, CLI_ERR (1) any failure, CLI_USAGE (2)
 * bad command line. Every failure prints exactly one line on stderr,
 * "chatq: ...", through cli_fail() or cli_usage_fail(), which return the
 * status so call sites can write `return cli_fail(...)`.
 *
 * Option parsing: a command describes its options in a cli_opt table (ended
 * by a zeroed entry) and calls cli_next() until it returns 0. The common
 * flags (--redis, --config, --prefix) are accepted by every command and
 * stored in the context without the command seeing them; --help/-h comes
 * back as CLI_OPT_HELP. Options and positional arguments may be mixed
 * ("chatq get ID --raw"); "--" ends the options; "--name=value", "--name
 * value", "-x value" and "-xvalue" all work; a lone "-" is positional.
 *
 * Ownership: the context owns the configuration (cli_ctx_free()); the
 * parser's `pos` array is owned by the parser (cli_parser_free()), its
 * strings are the argv strings. */
#ifndef CHATQ_CLI_H
#define CHATQ_CLI_H

#include <json-c/json.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/config.h"

enum { CLI_OK = 0, CLI_ERR = 1, CLI_USAGE = 2 };

typedef struct cli_ctx {
    const char *cmd;          /* the command being run, for messages */
    const char *redis_flag;   /* --redis, NULL when not given */
    const char *config_flag;  /* --config */
    const char *prefix_flag;  /* --prefix */
    config cfg;               /* valid once `loaded` */
    int loaded;
} cli_ctx;

/* Loads the configuration once (file, environment, --redis/--config).
 * Returns 0, or prints the error and returns -1. */
int cli_ctx_load(cli_ctx *ctx);
/* The effective key prefix: --prefix, else the configuration's. Only valid
 * after cli_ctx_load(). */
const char *cli_ctx_prefix(const cli_ctx *ctx);
void cli_ctx_free(cli_ctx *ctx);

/* "chatq: <message>" on stderr; return CLI_ERR. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Called, when set, before cli_fail() prints: a command that draws on the
 * terminal (batch's progress bar) clears its line there. */
extern void (*cli_before_message)(void);
/* "chatq: <cmd>: <message> (see 'chatq <cmd> --help')"; return CLI_USAGE. */
int cli_usage_fail(const cli_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- option parsing ---- */

enum {
    CLI_OPT_HELP = 1000, /* -h, --help: returned to the command */
    CLI_OPT_REDIS,       /* the rest are handled inside cli_next() */
    CLI_OPT_CONFIG,
    CLI_OPT_PREFIX,
};

typedef struct cli_opt {
    const char *name;  /* long name without the dashes; NULL ends a table */
    char short_name;   /* 0 when none */
    int has_arg;
    int id;            /* > 0, below CLI_OPT_HELP */
} cli_opt;

typedef struct cli_parser {
    cli_ctx *ctx;
    const cli_opt *opts;
    int argc;
    char **argv;
    int i;             /* next argv index */
    int no_more_opts;  /* "--" was seen */
    int stop_at_pos;   /* return 0 at the first positional, p->i on it */
    const char *val;   /* the value of the option just returned */
    char **pos;        /* positional arguments, in order */
    int npos;
} cli_parser;

/* argv[0] is the command name and is skipped. */
void cli_parser_init(cli_parser *p, cli_ctx *ctx, const cli_opt *opts, int argc, char **argv);
/* Next option id (with p->val set when it takes a value), 0 when all
 * arguments are read, or -1 after printing a usage error. */
int cli_next(cli_parser *p);
void cli_parser_free(cli_parser *p);

/* Stores one option of a command: returns CLI_OK, or a usage status after
 * printing why the value is bad. */
typedef int (*cli_take_fn)(cli_ctx *ctx, void *arg, int id, const char *val);

/* The whole parse of a command of the form `CMD [options] [ID]`: each
 * option goes to take(ctx, arg, ...); with `id` non-NULL exactly one
 * positional argument, a valid job id, is required and stored there (it
 * points into argv); with `id` NULL none is allowed. --help prints the
 * command's help. Returns 1 when the caller should stop and exit with
 * *status (help shown, bad command line), else 0. */
int cli_parse_cmd(cli_ctx *ctx, const cli_opt *opts, int argc, char **argv, cli_take_fn take,
                  void *arg, const char **id, int *status);

/* Two cli_take_fn for commands with a single option: cli_take_flag sets
 * the int at arg to 1; cli_take_value stores the value in the const char *
 * at arg. */
int cli_take_flag(cli_ctx *ctx, void *arg, int id, const char *val);
int cli_take_value(cli_ctx *ctx, void *arg, int id, const char *val);

/* ---- values ---- */

/* Parses a whole decimal integer in [min, max]. Returns 0 or -1. */
int cli_parse_ll(const char *s, long long min, long long max, long long *out);
/* Parses a whole number of seconds (may have decimals), > 0. Returns 0 or -1. */
int cli_parse_seconds(const char *s, double *out);
/* Parses exactly one JSON value from s[0..len) (whitespace may follow).
 * A text that would build more than 300,000 objects and arrays or
 * 1,100,000 values is refused before json-c builds anything (text read
 * from Redis may be anything; json-c's objects cost far more than their
 * text). Returns 0 with *out set (NULL for a JSON null; the caller owns
 * it), or -1 with a message in err (which may be NULL). */
int cli_json_parse(const char *s, size_t len, json_object **out, char *err, size_t errlen);
/* Text read from Redis, quoted for a message on stderr: appended to b as a
 * JSON string literal (control characters escaped, invalid UTF-8 replaced)
 * of at most `max` bytes of s ("..." after the quote when cut), made
 * harmless for a terminal when stderr is one. Returns b's text. */
const char *cli_quote(buf *b, const char *s, size_t len, size_t max);
/* The index of s in a NULL-terminated list of strings, or -1. */
int cli_str_index(const char *const *list, const char *s);
/* Prints a JSON value on stdout, pretty (two-space indent, "/" as is). */
void cli_print_json(json_object *o);
/* Monotonic clock in seconds. */
double cli_now(void);
/* Unix time in milliseconds. */
long long cli_unix_ms(void);

#endif

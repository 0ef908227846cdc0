/* main.c — `chatq`, the command-line client: reads the common flags that
 * come before the command, then hands the rest of the command line to the
 * command, each in its own file (cli/<command>_cmd.c). Each command returns
 * its exit status; main only frees the context. */
#include <stdio.h>
#include <string.h>

#include "cli/batch_cmd.h"
#include "cli/cancel_cmd.h"
#include "cli/cli.h"
#include "cli/dead_cmd.h"
#include "cli/get_cmd.h"
#include "cli/help.h"
#include "cli/stats_cmd.h"
#include "cli/submit_cmd.h"
#include "cli/usage_cmd.h"
#include "cli/watch_cmd.h"

typedef int (*main_cmd_fn)(cli_ctx *ctx, int argc, char **argv);

static const struct {
    const char *name;
    main_cmd_fn fn;
} main_cmds[] = {
    {"submit", submit_cmd}, {"batch", batch_cmd}, {"watch", watch_cmd}, {"cancel", cancel_cmd},
    {"get", get_cmd},       {"usage", usage_cmd}, {"stats", stats_cmd},   {"dead", dead_cmd},
};

enum { MAIN_VERSION = 1 };
static const cli_opt main_opts[] = {{"version", 0, 0, MAIN_VERSION}, {NULL, 0, 0, 0}};

/* `chatq help [CMD]`, for those who type it that way. */
static int main_help(cli_ctx *ctx, int argc, char **argv) {
    (void)ctx;
    return help_print(argc > 1 ? argv[1] : NULL);
}

int main(int argc, char **argv) {
    cli_ctx ctx;
    cli_parser p;
    int opt, rc = CLI_USAGE;
    memset(&ctx, 0, sizeof ctx);
    cli_parser_init(&p, &ctx, main_opts, argc, argv);
    p.stop_at_pos = 1;
    while ((opt = cli_next(&p)) > 0) {
        if (opt == CLI_OPT_HELP || opt == MAIN_VERSION) break;
    }
    int at = p.i;
    cli_parser_free(&p);
    if (opt == CLI_OPT_HELP) return help_print(NULL);
    if (opt == MAIN_VERSION) {
        puts("chatq " CHATQ_VERSION);
        return CLI_OK;
    }
    if (opt < 0) return CLI_USAGE;
    if (at >= argc) return cli_usage_fail(NULL, "missing command");

    const char *name = argv[at];
    ctx.cmd = name;
    if (!strcmp(name, "help")) {
        rc = main_help(&ctx, argc - at, argv + at);
    } else {
        size_t i, n = sizeof main_cmds / sizeof main_cmds[0];
        for (i = 0; i < n && strcmp(main_cmds[i].name, name); i++) {}
        if (i < n) {
            rc = main_cmds[i].fn(&ctx, argc - at, argv + at);
        } else {
            ctx.cmd = NULL;
            rc = cli_usage_fail(NULL, "unknown command '%s'", name);
        }
    }
    cli_ctx_free(&ctx);
    return rc;
}

/* show.h — the read-only commands: get, usage, stats.
 *
 * Each takes the context and its own argv (argv[0] is the command name)
 * and returns the exit status. See help.c for their flags. */
#ifndef CHATQ_CLI_SHOW_H
#define CHATQ_CLI_SHOW_H

#include "cli/cli.h"

int show_get_cmd(cli_ctx *ctx, int argc, char **argv);
int show_usage_cmd(cli_ctx *ctx, int argc, char **argv);
int show_stats_cmd(cli_ctx *ctx, int argc, char **argv);

#endif

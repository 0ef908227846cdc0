/* usage_cmd.h — `chatq usage [--day D] [--tenant T] [--json]`: one day's
 * token usage and cost, by tenant and model.
 *
 * Takes the context and its own argv (argv[0] is the command name) and
 * returns the exit status. See usage_cmd.c for the output, help.c for the
 * flags. */
#ifndef CHATQ_CLI_USAGE_CMD_H
#define CHATQ_CLI_USAGE_CMD_H

#include "cli/cli.h"

int usage_cmd(cli_ctx *ctx, int argc, char **argv);

#endif

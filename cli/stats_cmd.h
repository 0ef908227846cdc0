/* stats_cmd.h — `chatq stats [--json]`: queue lengths, workers, dead jobs
 * and today's totals.
 *
 * Takes the context and its own argv (argv[0] is the command name) and
 * returns the exit status. See stats_cmd.c for where each figure comes
 * from, help.c for the flags. */
#ifndef CHATQ_CLI_STATS_CMD_H
#define CHATQ_CLI_STATS_CMD_H

#include "cli/cli.h"

int stats_cmd(cli_ctx *ctx, int argc, char **argv);

#endif

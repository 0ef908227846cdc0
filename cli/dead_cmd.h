/* dead_cmd.h — `chatq dead`: the dead list P:dead, to look at (`chatq
 * dead`), to run again (`chatq dead retry`) and to clear (`chatq dead
 * purge`).
 *
 * Takes the context and its own argv (argv[0] is the command name; a
 * subcommand, when there is one, comes right after it) and returns the exit
 * status. See dead_cmd.c for how, help.c for the flags. */
#ifndef CHATQ_CLI_DEAD_CMD_H
#define CHATQ_CLI_DEAD_CMD_H

#include "cli/cli.h"

int dead_cmd(cli_ctx *ctx, int argc, char **argv);

#endif

/* get_cmd.h — `chatq get ID [--raw]`: prints a job's hash as JSON.
 *
 * Takes the context and its own argv (argv[0] is the command name) and
 * returns the exit status. See get_cmd.c for the output, help.c for the
 * flags. */
#ifndef CHATQ_CLI_GET_CMD_H
#define CHATQ_CLI_GET_CMD_H

#include "cli/cli.h"

int get_cmd(cli_ctx *ctx, int argc, char **argv);

#endif

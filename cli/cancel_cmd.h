/* cancel_cmd.h — `chatq cancel ID [--ttl S]`: asks for a job to be
 * cancelled.
 *
 * Takes the context and its own argv (argv[0] is the command name) and
 * returns the exit status. See cancel_cmd.c for how, help.c for the
 * flags. */
#ifndef CHATQ_CLI_CANCEL_CMD_H
#define CHATQ_CLI_CANCEL_CMD_H

#include "cli/cli.h"

int cancel_cmd(cli_ctx *ctx, int argc, char **argv);

#endif

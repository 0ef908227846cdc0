/* watch_cmd.h — `chatq watch ID [--timeout S]`: follows a job's output
 * until it ends.
 *
 * Takes the context and its own argv (argv[0] is the command name) and
 * returns the exit status. See follow.h for what is printed, help.c for
 * the flags. */
#ifndef CHATQ_CLI_WATCH_CMD_H
#define CHATQ_CLI_WATCH_CMD_H

#include "cli/cli.h"

int watch_cmd(cli_ctx *ctx, int argc, char **argv);

#endif

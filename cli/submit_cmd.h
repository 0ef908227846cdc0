/* submit_cmd.h — `chatq submit`: pushes one chat-completion job, built
 * from a prompt and flags or read with --json, and with --stream or --wait
 * follows it to its end.
 *
 * Takes the context and its own argv (argv[0] is the command name) and
 * returns the exit status. See submit_cmd.c for how the job is built,
 * help.c for the flags. */
#ifndef CHATQ_CLI_SUBMIT_CMD_H
#define CHATQ_CLI_SUBMIT_CMD_H

#include "cli/cli.h"

int submit_cmd(cli_ctx *ctx, int argc, char **argv);

#endif

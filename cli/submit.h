/* submit.h — the commands that act on one job: submit, watch, cancel.
 *
 * Each takes the context and its own argv (argv[0] is the command name)
 * and returns the exit status. See help.c for their flags. */
#ifndef CHATQ_CLI_SUBMIT_H
#define CHATQ_CLI_SUBMIT_H

#include "cli/cli.h"

int submit_cmd(cli_ctx *ctx, int argc, char **argv);
int submit_watch_cmd(cli_ctx *ctx, int argc, char **argv);
int submit_cancel_cmd(cli_ctx *ctx, int argc, char **argv);

#endif

/* batch_cmd.h — `chatq batch`: runs an OpenAI Batch API input file
 * through chatq and writes the output lines (docs/protocol.md §6, §9). See
 * batch_cmd.c for how it works and help.c for its flags.
 *
 * Takes the context and its own argv (argv[0] is the command name) and
 * returns the exit status: 0 when every line is answered (some may have
 * failed upstream), 1 on an error (a refused input file included), 2 on a
 * bad command line, 130 after Ctrl-C (143 after SIGTERM). */
#ifndef CHATQ_CLI_BATCH_CMD_H
#define CHATQ_CLI_BATCH_CMD_H

#include "cli/cli.h"

int batch_cmd(cli_ctx *ctx, int argc, char **argv);

#endif

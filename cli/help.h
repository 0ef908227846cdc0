/* help.h — the usage texts of `chatq` and of each command. */
#ifndef CHATQ_CLI_HELP_H
#define CHATQ_CLI_HELP_H

#include "common/version.h" /* CHATQ_VERSION, for main.c */

/* Prints the help of `cmd` (NULL: the overview) on stdout; returns CLI_OK,
 * or CLI_USAGE (with a message) when there is no such command. */
int help_print(const char *cmd);

#endif

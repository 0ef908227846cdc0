/* help.c — the usage texts of `chatq` and its commands, printed on stdout
 * by --help. Kept in one place so that the flags of every command can be
 * read side by side. */
#include "cli/help.h"

#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char help_overview[] =
    "usage: chatq [--redis URL] [--config FILE] [--prefix P] COMMAND [ARGS...]\n"
    "\n"
    "chatq is the command-line client of the chatq job queue.\n"
    "\n"
    "Commands:\n"
    "  submit   push a chat-completion job; optionally stream it or wait for its answer\n"
    "  watch    follow a job's output until it ends\n"
    "  get      print a job's status and result as JSON\n"
    "  cancel   ask for a job to be cancelled\n"
    "  usage    token usage and cost of one day, by tenant and model\n"
    "  stats    queue lengths, workers, dead jobs and today's totals\n"
    "\n"
    "Common options (before or after the command):\n"
    "  --redis URL     redis://[user[:password]@]host[:port][/db] or unix:///path.sock\n"
    "                  (default: $CHATQ_REDIS_URL, the config file, redis://127.0.0.1:6379/0)\n"
    "  --config FILE   JSON config file (default: $CHATQ_CONFIG, else /etc/chatq/chatq.json)\n"
    "  --prefix P      Redis key prefix (default: $CHATQ_PREFIX, the config file, chatq)\n"
    "  -h, --help      this text; 'chatq COMMAND --help' for one command\n"
    "  --version       print the version\n"
    "\n"
    "Exit status: 0 success, 1 failure (a job that failed, a Redis error...),\n"
    "2 bad command line. Every failure prints one line on stderr.\n";

static const char help_submit[] =
    "usage: chatq submit -m MODEL [options] \"prompt\"\n"
    "       chatq submit --json FILE|- [options]\n"
    "\n"
    "Pushes a job onto P:queue:<queue> and prints its id on the first line.\n"
    "\n"
    "  -m, --model MODEL    the model (with --json: replaces body.model)\n"
    "  --json FILE|-        a whole job object (SPEC section 4) from FILE or stdin;\n"
    "                       the other flags amend it\n"
    "  --queue Q            the queue (default: default)\n"
    "  --id ID              the job id (default: the job's id or custom_id, else a new one)\n"
    "  --tenant T           who the usage is accounted to\n"
    "  --system TEXT        a system message before the others\n"
    "  --max-tokens N       body.max_tokens\n"
    "  --stream             stream the job and print its content as it arrives\n"
    "  --wait               wait for the end and print the final answer\n"
    "  --timeout SECONDS    give up waiting after this long (with --stream or --wait)\n"
    "\n"
    "With --stream or --wait the exit status is 0 when the job succeeded and 1\n"
    "when it failed or was cancelled (\"chatq: job ID failed: CODE: MESSAGE\").\n"
    "A retried stream prints \"[retry: attempt N]\" on stderr and goes on.\n";

static const char help_watch[] =
    "usage: chatq watch [--timeout SECONDS] ID\n"
    "\n"
    "Follows a job: prints its content as it streams (what was already\n"
    "published first), or its final answer when it was not streamed, and\n"
    "exits when it ends: 0 when it succeeded, 1 when it failed or was\n"
    "cancelled. Waits for a job that has not started yet.\n"
    "\n"
    "  --timeout SECONDS    give up waiting after this long (exit 1)\n";

static const char help_get[] =
    "usage: chatq get [--raw] ID\n"
    "\n"
    "Prints the job hash P:job:<id> as one JSON object: response, error,\n"
    "usage and metadata as JSON values, attempts and the times as numbers.\n"
    "Exits 1 when there is no such job.\n"
    "\n"
    "  --raw    every field as the string stored in Redis\n";

static const char help_cancel[] =
    "usage: chatq cancel [--ttl SECONDS] ID\n"
    "\n"
    "Asks for a job to be cancelled: sets P:cancel:<id> and publishes the id\n"
    "on P:control. A queued job is dropped when reached, a running one is\n"
    "aborted; both end as cancelled.\n"
    "\n"
    "  --ttl SECONDS    how long the request stays (default 86400)\n";

static const char help_usage[] =
    "usage: chatq usage [--day YYYY-MM-DD] [--tenant T] [--json]\n"
    "\n"
    "Token usage of one UTC day (default: today) by tenant and model, with a\n"
    "total row. COST_USD is \"-\" where no price was known.\n"
    "\n"
    "  --day YYYY-MM-DD   the day\n"
    "  --tenant T         only this tenant (\"\" for jobs without one)\n"
    "  --json             an array of {day, tenant, model, requests, succeeded,\n"
    "                     failed, prompt_tokens, completion_tokens, total_tokens,\n"
    "                     cached_tokens, reasoning_tokens, cost_micro_usd}\n";

static const char help_stats[] =
    "usage: chatq stats [--json]\n"
    "\n"
    "Queue lengths, the registered workers (alive or not, jobs in flight),\n"
    "the number of dead jobs, and today's request and token totals.\n"
    "\n"
    "  --json   the same as one JSON object\n";

static const struct {
    const char *cmd, *text;
} help_texts[] = {
    {"submit", help_submit}, {"watch", help_watch}, {"get", help_get},
    {"cancel", help_cancel}, {"usage", help_usage}, {"stats", help_stats},
};

int help_print(const char *cmd) {
    if (!cmd) {
        fputs(help_overview, stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof help_texts / sizeof help_texts[0]; i++) {
        if (!strcmp(help_texts[i].cmd, cmd)) {
            fputs(help_texts[i].text, stdout);
            return CLI_OK;
        }
    }
    return cli_usage_fail(NULL, "no command '%s'", cmd);
}

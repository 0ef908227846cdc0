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
    "  batch    run an OpenAI Batch API input file (JSONL) and write the output lines\n"
    "  watch    follow a job's output until it ends\n"
    "  get      print a job's status and result as JSON\n"
    "  cancel   ask for a job to be cancelled\n"
    "  usage    token usage and cost of one day, by tenant and model\n"
    "  stats    queue lengths, workers, dead jobs and today's totals\n"
    "  dead     list the jobs that failed for good; retry or purge them\n"
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
    "2 bad command line, 130 an interrupted batch. Every failure prints one\n"
    "line on stderr (a refused batch file: one per bad line, then a total).\n";

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

static const char help_batch[] =
    "usage: chatq batch IN.jsonl -o OUT.jsonl [--errors ERR.jsonl] [--resume]\n"
    "                   [--queue Q] [--tenant T] [--window N] [--timeout SECONDS]\n"
    "\n"
    "Runs every line of an OpenAI Batch API input file as a job and writes one\n"
    "output line (the Batch output format) per input line, in the order the\n"
    "answers come.\n"
    "\n"
    "Each line must be a JSON object with custom_id (a non-empty string, unique\n"
    "in the file), method \"POST\", url \"/v1/chat/completions\" and body, and\n"
    "may have the other job fields except id and reply_to. Lines run without\n"
    "streaming. An empty line is an error. All lines are checked first: if any\n"
    "is bad, each bad line is reported as \"IN.jsonl:N: message\" and nothing is\n"
    "submitted (exit 1).\n"
    "\n"
    "  -o, --output OUT     the output file (emptied first, unless --resume)\n"
    "  --errors ERR         write the lines of failed requests here instead\n"
    "                       (an error, or an HTTP status of 400 or more)\n"
    "  --resume             continue an interrupted batch: nothing is submitted\n"
    "                       twice and no output line is written twice\n"
    "  --queue Q            the queue (default: default)\n"
    "  --tenant T           who the usage is accounted to (replaces the lines' own)\n"
    "  --window N           at most N requests submitted and not answered (1000)\n"
    "  --timeout SECONDS    give up when no answer came for this long (exit 1;\n"
    "                       the batch can be resumed)\n"
    "\n"
    "Line N's job id is \"<batch id>-N\"; the batch id is printed at the start.\n"
    "While the batch runs, OUT.chatq-batch holds its state: it is removed at the\n"
    "end, and a run without --resume refuses to start while it exists.\n"
    "On a terminal a progress bar shows lines answered, failed, rate, time left,\n"
    "tokens and, when the config has a price for the models, cost; otherwise a\n"
    "progress line is printed every 5 seconds. At the end a summary goes to\n"
    "stdout.\n"
    "\n"
    "Exit status: 0 when every line is answered, even when some failed (their\n"
    "count is in the summary), 1 on an error, 130 on Ctrl-C (the output written\n"
    "so far is kept; --resume continues).\n";

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

static const char help_dead[] =
    "usage: chatq dead [--json] [--limit N]\n"
    "       chatq dead retry ID...|--index N...|--all [--code C] [--older-than D]\n"
    "                  [--queue Q]\n"
    "       chatq dead purge [ID...|--index N...|--all] [--code C] [--older-than D]\n"
    "\n"
    "The dead list P:dead holds every job that failed for good. Entries are\n"
    "numbered from the oldest (0), so a new failure does not renumber them;\n"
    "removing entries does. An entry is acted on by its exact text, so a\n"
    "running chatqd may keep adding to the list meanwhile.\n"
    "\n"
    "chatq dead: the entries, newest first: INDEX, the job's ID (\"-\" when its\n"
    "text has none), the error CODE, FAILED_AT (UTC) and the MESSAGE.\n"
    "  --json           an array of the entries as stored, each with \"index\" and\n"
    "                   \"id\" (null when none) set by chatq, in place of any\n"
    "                   the entry holds\n"
    "  --limit N        show the newest N (default 100; 0: all)\n"
    "\n"
    "chatq dead retry: puts jobs back on a queue, at the end taken next, to\n"
    "run afresh (attempts from 1). Each one atomically: the entry leaves\n"
    "P:dead as the job is queued, so it is never both, and never retried\n"
    "twice. The job's old hash and events are deleted; a job whose hash says\n"
    "it is queued, running or ended otherwise since is left dead. Oversized\n"
    "jobs (P:dead kept only their first bytes) and entries without a job\n"
    "text are skipped.\n"
    "  ID...            the newest entry of each of these job ids\n"
    "  --index N        entry number N (repeatable): also for entries without an id\n"
    "  --all            every entry (those without an id too)\n"
    "  --code C         only entries whose error code is C\n"
    "  --older-than D   only entries that failed more than D ago: 30m, 12h, 7d\n"
    "  --queue Q        the queue (default: the one the job's hash names while it\n"
    "                   lives, else \"default\")\n"
    "Prints a line per entry (retried, or skipped and why) and a total. Exit\n"
    "status 1 when an ID or --index named was not found or not retried.\n"
    "\n"
    "chatq dead purge: removes entries and prints how many; needs --all, or\n"
    "ids, --index, --code or --older-than (which narrow each other).\n"
    "  ID...            every entry of these job ids\n"
    "  --index N, --all, --code C, --older-than D   as for retry\n";

static const struct {
    const char *cmd, *text;
} help_texts[] = {
    {"submit", help_submit}, {"batch", help_batch}, {"watch", help_watch}, {"get", help_get},
    {"cancel", help_cancel}, {"usage", help_usage}, {"stats", help_stats}, {"dead", help_dead},
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

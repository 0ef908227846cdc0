/* follow.h — following one job to its end, for `submit --stream/--wait`
 * and `watch`.
 *
 * The caller subscribes `sub` to P:stream:<id> first (follow_subscribe();
 * submit pushes the job only after that), so no event published from then
 * on can be missed. follow_job() then reads P:events:<id> for what was
 * published before, and the channel for what comes next, dropping
 * duplicates by `seq` (docs/protocol.md §5). A message whose seq skips ahead makes it re-read the list, for
 * a producer that publishes before it appends. Once a second it also looks
 * at the job hash's status, so a job that ended without a final event (or
 * whose events expired) still ends the wait.
 *
 * With print_chunks, the content deltas of choice 0 go to stdout as they
 * arrive, and a retry event prints "\n[retry: attempt N]\n" on stderr (N is
 * the event's `attempt`, the attempt that failed). When the job succeeds and
 * no content was streamed in its last attempt, the final answer is printed
 * from P:job:<id>: response.choices[0].message.content, then the tool_calls
 * as pretty JSON when there are any. Failure prints
 * "chatq: job ID failed: CODE: MESSAGE".
 *
 * Returns the exit status: CLI_OK when the job succeeded, CLI_ERR when it
 * failed, was cancelled, the wait timed out or Redis failed. */
#ifndef CHATQ_CLI_FOLLOW_H
#define CHATQ_CLI_FOLLOW_H

#include <hiredis/hiredis.h>

#include "cli/cli.h"

typedef struct follow_opts {
    redisContext *cmd;  /* borrowed: LRANGE, HGET, HGETALL */
    redisContext *sub;  /* borrowed: already subscribed to P:stream:<id> */
    const char *prefix;
    const char *id;
    int print_chunks;   /* stream the content deltas to stdout */
    double timeout_s;   /* 0: wait for ever */
} follow_opts;

/* A new connection, subscribed to P:stream:<id> (the subscription is
 * confirmed): what follow_job() takes as `sub`. NULL after printing why. */
redisContext *follow_subscribe(cli_ctx *ctx, const char *id);

int follow_job(const follow_opts *o);

#endif

/* keys.h — the Redis key names of docs/protocol.md §3, and chatq's own bookkeeping keys.
 *
 * Every function returns a new heap string that the caller frees. `prefix` is
 * the configured prefix (default "chatq"), written P below.
 *
 * Bookkeeping keys (chatq's design, see docs/design.md):
 *   P:processing:<worker>:<queue>  list   jobs a worker has taken from <queue>
 *   P:workers                      hash   worker id -> JSON {host,pid,queues,started_at}
 *   P:heartbeat:<worker>           string set with a TTL while the worker lives
 *   P:crashes                      hash   SHA1 of a job's text -> times a worker
 *                                         died of a fault while running it
 *   P:requeued                     hash   SHA1 of a job's text -> the worker it was
 *                                         taken back from (lets START resume it)
 *   P:quarantine:<queue>           list   suspects of <queue>, run apart, one at a time
 *   P:drop:<token>                 string a duplicate's DROP is done (expires in 1 h)
 *   P:ratelimit:<provider>:<glob>  hash   a shared rate-limit bucket (worker/ratelimit.h)
 *   P:batch:<batch>                hash   a `chatq batch` run: lines submitted
 *   P:batch:<batch>:out            list   its jobs' output lines (their reply_to) */
#ifndef CHATQ_KEYS_H
#define CHATQ_KEYS_H

char *keys_queue(const char *prefix, const char *queue);
/* The SCAN MATCH pattern of every queue key (the prefix's glob characters
 * escaped), and the queue name in a key it matched (NULL when it is not a
 * queue key; the name points into key). */
char *keys_queue_pattern(const char *prefix);
const char *keys_queue_name(const char *prefix, const char *key);
char *keys_job(const char *prefix, const char *id);
char *keys_stream(const char *prefix, const char *id);
char *keys_events(const char *prefix, const char *id);
char *keys_cancel(const char *prefix, const char *id);
char *keys_dead(const char *prefix);
char *keys_control(const char *prefix);
/* day is "YYYY-MM-DD" */
char *keys_usage(const char *prefix, const char *day);
char *keys_processing(const char *prefix, const char *worker, const char *queue);
char *keys_workers(const char *prefix);
char *keys_heartbeat(const char *prefix, const char *worker);
char *keys_crashes(const char *prefix);
char *keys_requeued(const char *prefix);
char *keys_quarantine(const char *prefix, const char *queue);
/* token: a START token; the key marks its DROP as done (expires) */
char *keys_drop(const char *prefix, const char *token);
/* the bucket of the rate limit `pattern` (a model glob) at provider `provider` */
char *keys_ratelimit(const char *prefix, const char *provider, const char *pattern);
char *keys_batch(const char *prefix, const char *batch);
char *keys_batch_out(const char *prefix, const char *batch);
/* 1 when key is some batch's output list, P:batch:<batch>:out with <batch>
 * non-empty and without ':'; else 0. */
int keys_is_batch_out(const char *prefix, const char *key);
/* When key is one chatq keeps its state in (a queue, a processing list, a
 * job hash, the dead list, ... every key named above but a batch's output
 * list), the name of its kind ("queue", "dead", ...); else NULL. A key under
 * the prefix that is none of these (P:replies, say) is not chatq's. */
const char *keys_state_kind(const char *prefix, const char *key);

/* Writes the UTC day of unix milliseconds `ms` as "YYYY-MM-DD" into out[11]. */
void keys_day(long long ms, char out[11]);

#endif

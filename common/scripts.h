/* scripts.h — the Lua scripts chatq runs in Redis.
 *
 * Everything that must be atomic is one script: taking jobs from the queues
 * into a processing list, starting a job, storing its final result exactly
 * once, and putting a dead worker's jobs back on their queues. Their texts,
 * with the KEYS/ARGV they expect, are in scripts.c. */
#ifndef CHATQ_SCRIPTS_H
#define CHATQ_SCRIPTS_H

extern const char scripts_fetch[];
extern const char scripts_start[];
extern const char scripts_finish[];
extern const char scripts_requeue[];
extern const char scripts_recover[];
extern const char scripts_ratelimit[];
extern const char scripts_batch_push[];

#endif

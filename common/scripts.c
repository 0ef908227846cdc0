/* scripts.c — Lua scripts run by the worker and the supervisor; see scripts.h.
 *
 * They run with EVALSHA after a SCRIPT LOAD on every new connection. Each one
 * documents its KEYS and ARGV. Keys are always passed in KEYS, never built in
 * Lua, so the scripts stay correct whatever the prefix. */
#include "common/scripts.h"

/* FETCH: take up to ARGV[1] jobs, higher-priority queues first.
 * KEYS: queue1, processing1, queue2, processing2, ... (priority order)
 * Each job moves atomically from the right (consuming) end of its queue to the
 * left of this worker's processing list for that queue, so a job is always in
 * exactly one list. Returns a flat array: queue number (1-based), job, ... */
const char scripts_fetch[] =
    "local want = tonumber(ARGV[1])\n"
    "local out = {}\n"
    "local got = 0\n"
    "for i = 1, #KEYS, 2 do\n"
    "  while got < want do\n"
    "    local j = redis.call('LMOVE', KEYS[i], KEYS[i+1], 'RIGHT', 'LEFT')\n"
    "    if not j then break end\n"
    "    out[#out+1] = (i + 1) / 2\n"
    "    out[#out+1] = j\n"
    "    got = got + 1\n"
    "  end\n"
    "end\n"
    "return out\n";

/* START: a worker begins (or resumes) a job.
 * KEYS[1] job hash, KEYS[2] events list, KEYS[3] cancel key
 * ARGV: worker, queue, model, tenant, provider, now_ms
 * A job whose hash says "running" was cut short (its worker died or was
 * stopped): keep its attempts, started_at and events, so seq numbers go on.
 * Otherwise this is a fresh run: what an earlier job with the same id left is
 * dropped. Returns {cancel requested 0/1, next seq, attempts made so far,
 * resumed 0/1}. */
const char scripts_start[] =
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "local resumed = 0\n"
    "local attempts = 0\n"
    "if st == 'running' then\n"
    "  resumed = 1\n"
    "  attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') or 0\n"
    "else\n"
    "  redis.call('DEL', KEYS[1], KEYS[2])\n"
    "  redis.call('HSET', KEYS[1], 'started_at', ARGV[6], 'attempts', 0)\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'queue', ARGV[2],\n"
    "  'model', ARGV[3], 'tenant', ARGV[4], 'provider', ARGV[5])\n"
    "return {redis.call('EXISTS', KEYS[3]), redis.call('LLEN', KEYS[2]), attempts, resumed}\n";

/* FINISH: store a job's final result, exactly once.
 * KEYS[1] processing list ('' for none), KEYS[2] job hash, KEYS[3] events
 * list, KEYS[4] stream channel, KEYS[5] usage hash, KEYS[6] reply_to list
 * ('' = none), KEYS[7] dead list, KEYS[8] cancel key
 * ARGV[1] the raw job text, ARGV[2] result ttl (s), ARGV[3] final event JSON,
 * ARGV[4] output line, ARGV[5] dead entry ('' = none), ARGV[6] usage field
 * prefix "tenant|model|", ARGV[7] m = number of usage metrics, then m pairs
 * (metric, increment), then (field, value) pairs for the job hash.
 * The guard: the job must still be in this worker's processing list. If it is
 * not, another worker owns it now (it was recovered after this one was
 * presumed dead) or this result was stored already (a resend after a lost
 * reply): nothing is written and 0 is returned. */
const char scripts_finish[] =
    "if KEYS[1] ~= '' and redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end\n"
    "local ttl = tonumber(ARGV[2])\n"
    "local m = tonumber(ARGV[7])\n"
    "local i = 8\n"
    "for k = 1, m do\n"
    "  redis.call('HINCRBY', KEYS[5], ARGV[6] .. ARGV[i], ARGV[i+1])\n"
    "  i = i + 2\n"
    "end\n"
    "if KEYS[2] ~= '' then\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  if i <= #ARGV then redis.call('HSET', KEYS[2], unpack(ARGV, i)) end\n"
    "  redis.call('EXPIRE', KEYS[2], ttl)\n"
    "  redis.call('RPUSH', KEYS[3], ARGV[3])\n"
    "  redis.call('EXPIRE', KEYS[3], ttl)\n"
    "  redis.call('PUBLISH', KEYS[4], ARGV[3])\n"
    "end\n"
    "if KEYS[6] ~= '' then redis.call('LPUSH', KEYS[6], ARGV[4]) end\n"
    "if ARGV[5] ~= '' then redis.call('LPUSH', KEYS[7], ARGV[5]) end\n"
    "if KEYS[8] ~= '' then redis.call('DEL', KEYS[8]) end\n"
    "return 1\n";

/* REQUEUE: put jobs a worker holds back at the consuming end of their queues.
 * KEYS: processing1, queue1, processing2, queue2, ...
 * ARGV: the raw jobs to put back (each removed once from whichever processing
 * list holds it); with no ARGV, every job of every processing list.
 * The processing list holds the newest job on the left, so moving from the
 * left to the right end of the queue leaves the oldest job to be consumed
 * first. Returns the number of jobs moved. */
const char scripts_requeue[] =
    "local n = 0\n"
    "if #ARGV == 0 then\n"
    "  for i = 1, #KEYS, 2 do\n"
    "    while redis.call('LMOVE', KEYS[i], KEYS[i+1], 'LEFT', 'RIGHT') do n = n + 1 end\n"
    "  end\n"
    "  return n\n"
    "end\n"
    "for a = 1, #ARGV do\n"
    "  for i = 1, #KEYS, 2 do\n"
    "    if redis.call('LREM', KEYS[i], 1, ARGV[a]) == 1 then\n"
    "      redis.call('RPUSH', KEYS[i+1], ARGV[a])\n"
    "      n = n + 1\n"
    "      break\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return n\n";

/* RECOVER: the supervisor puts back the jobs of a worker that is gone and
 * forgets the worker. KEYS[1] workers hash, KEYS[2] heartbeat key, then pairs
 * (processing, queue). ARGV[1] the worker id. Only the caller that removes the
 * worker from the hash moves its jobs, so two supervisors noticing the same
 * death at once recover it once. Returns the number of jobs moved, or -1 when
 * the worker was not registered (already recovered). */
const char scripts_recover[] =
    "local known = redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "redis.call('DEL', KEYS[2])\n"
    "local n = 0\n"
    "for i = 3, #KEYS, 2 do\n"
    "  while redis.call('LMOVE', KEYS[i], KEYS[i+1], 'LEFT', 'RIGHT') do n = n + 1 end\n"
    "end\n"
    "if known == 0 and n == 0 then return -1 end\n"
    "return n\n";

/* scripts.c — Lua scripts run by the worker and the supervisor, and the
 * builders of their calls; see scripts.h.
 *
 * They run with EVALSHA after a SCRIPT LOAD on every new connection. The
 * KEYS and ARGV of each are described once, with its call struct in
 * scripts.h; the comments here say what each script does. Keys are passed
 * in KEYS, never built in Lua, so the scripts stay correct whatever the
 * prefix (RECOVER's poison pills are the one exception, said there). */
#include "common/scripts.h"

#include <stdlib.h>

/* FETCH: take up to `want` jobs, higher-priority queues first.
 * Each job moves atomically from the right (consuming) end of its queue to the
 * left of this worker's processing list for that queue, so a job is always in
 * exactly one list.
 * Suspects: a job that was in flight at two worker deaths already (crashes
 * count >= 2) runs alone, so that if it kills its worker again it takes no
 * innocent job with it (a job that only shared a worker with a poison pill
 * would otherwise die with it three times too). It is taken only by a worker
 * with nothing in flight, as the only job of its fetch; anyone else stops at
 * it and leaves it at the head of its queue. */
const char scripts_fetch[] =
    "local want, busy = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local crashes = KEYS[#KEYS]\n"
    "local check = redis.call('EXISTS', crashes) == 1\n"
    "local out = {0}\n"
    "local got = 0\n"
    "for i = 1, #KEYS - 1, 2 do\n"
    "  while got < want do\n"
    "    local j = redis.call('LMOVE', KEYS[i], KEYS[i+1], 'RIGHT', 'LEFT')\n"
    "    if not j then break end\n"
    "    if check and tonumber(redis.call('HGET', crashes, redis.sha1hex(j)) or '0') >= 2 then\n"
    "      if busy > 0 or got > 0 then\n"
    "        redis.call('LMOVE', KEYS[i+1], KEYS[i], 'LEFT', 'RIGHT')\n"
    "        out[1] = 2\n"
    "      else\n"
    "        out[1] = 1\n"
    "        out[2] = (i + 1) / 2\n"
    "        out[3] = j\n"
    "      end\n"
    "      return out\n"
    "    end\n"
    "    out[#out+1] = (i + 1) / 2\n"
    "    out[#out+1] = j\n"
    "    got = got + 1\n"
    "  end\n"
    "end\n"
    "return out\n";

/* START: a worker begins (or resumes) a job.
 * A job whose hash says "running" was cut short (its worker died or was
 * stopped): keep its attempts, started_at and events, so seq numbers go on.
 * Otherwise this is a fresh run: what an earlier job with the same id left is
 * dropped. The next seq follows the last stored event, not just the list's
 * length: events published while Redis was away are missing from the list
 * but may have numbers below stored ones. The hash's attempts counter is
 * advanced for the attempt about to start (unless the job is cancelled).
 * The answer is kept in the hash with the start
 * token, so a START resent after its reply was lost in a disconnect gets the
 * same answer instead of counting an attempt twice. */
const char scripts_start[] =
    "local st = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'started_at', 'start')\n"
    "local mine = st[4] and string.sub(st[4], 1, #ARGV[7] + 1) == ARGV[7] .. '|'\n"
    "if st[1] == 'running' and mine then\n"
    "  local s, a, r = string.match(string.sub(st[4], #ARGV[7] + 2), '^(%d+)|(%d+)|(%d+)$')\n"
    "  return {redis.call('EXISTS', KEYS[3]), tonumber(s), tonumber(a), tonumber(r), st[3]}\n"
    "end\n"
    "local resumed, attempts, seq, started = 0, 0, 0, ARGV[6]\n"
    "if st[1] == 'running' then\n"
    "  resumed = 1\n"
    "  attempts = tonumber(st[2] or '0') or 0\n"
    "  started = st[3] or started\n"
    "  seq = redis.call('LLEN', KEYS[2])\n"
    "  local ok, last = pcall(cjson.decode, redis.call('LINDEX', KEYS[2], -1) or '{}')\n"
    "  if ok and type(last) == 'table' and tonumber(last.seq) then\n"
    "    seq = math.max(seq, tonumber(last.seq) + 1)\n"
    "  end\n"
    "else\n"
    "  redis.call('DEL', KEYS[1], KEYS[2])\n"
    "  redis.call('HSET', KEYS[1], 'started_at', started)\n"
    "end\n"
    "local cancel = redis.call('EXISTS', KEYS[3])\n"
    "redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'queue', ARGV[2],\n"
    "  'model', ARGV[3], 'tenant', ARGV[4], 'provider', ARGV[5],\n"
    "  'attempts', attempts + 1 - cancel,\n"
    "  'start', ARGV[7] .. '|' .. seq .. '|' .. attempts .. '|' .. resumed)\n"
    "return {cancel, seq, attempts, resumed, started}\n";

/* FINISH: store a job's final result, exactly once: the job hash, the
 * final event (list and channel), the usage counters (prefix .. metric),
 * reply_to, the dead list; the cancel key and the job's crash count (see
 * RECOVER) are cleared.
 * LREM scans from the tail (count -1), where the oldest jobs, the ones
 * most likely to end first, are.
 * The guard: the job must still be in this worker's processing list. If it is
 * not, another worker owns it now (it was recovered after this one was
 * presumed dead) or this result was stored already (a resend after a lost
 * reply): nothing is written and 0 is returned. A reply_to key the producer
 * made something other than a list must not undo the rest (a script is not
 * rolled back half way): that LPUSH runs under pcall, and 2 is returned.
 * A processing key of '' skips the guard. */
const char scripts_finish[] =
    "if KEYS[1] ~= '' and redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end\n"
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
    "local rt = 1\n"
    "if KEYS[6] ~= '' and type(redis.pcall('LPUSH', KEYS[6], ARGV[4])) == 'table' then rt = 2 end\n"
    "if ARGV[5] ~= '' then redis.call('LPUSH', KEYS[7], ARGV[5]) end\n"
    "if KEYS[8] ~= '' then redis.call('DEL', KEYS[8]) end\n"
    "if redis.call('EXISTS', KEYS[9]) == 1 then redis.call('HDEL', KEYS[9], redis.sha1hex(ARGV[1])) end\n"
    "return rt\n";

/* REQUEUE: put jobs a worker holds back at the consuming end of their queues.
 * The processing list holds the newest job on the left, so moving from the
 * left to the right end of the queue leaves the oldest job to be consumed
 * first. */
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

/* RECOVER: put back the jobs of a worker that is gone, and forget it.
 * Atomic, so when two supervisors notice the same death at once, the second
 * finds nothing left to move. Each job put back is counted in the crashes
 * hash (by the SHA1 of its text; FINISH clears it). A job that was in flight
 * at the death of ARGV[5] workers is a poison pill: it is not requeued but
 * ends failed with code worker_crashed (dead list, job hash, final event,
 * reply_to, usage), so it cannot kill another worker. Job keys of a poison
 * pill are built here from the prefix: its id is known only by decoding it;
 * so is its usage field (usage.h's format, tenant|model|metric). */
const char scripts_recover[] =
    "if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return -2 end\n"
    "local known = redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "redis.call('DEL', KEYS[2])\n"
    "local P, now, limit = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local function str(v) if type(v) == 'string' then return v end return nil end\n"
    "local function poison(raw, count)\n"
    "  local ok, j = pcall(cjson.decode, raw)\n"
    "  if not ok or type(j) ~= 'table' then j = {} end\n"
    "  local body = type(j.body) == 'table' and j.body or {}\n"
    "  local id = str(j.id) or str(j.custom_id)\n"
    "  if id and not string.match(id, '^[A-Za-z0-9._:-]+$') then id = nil end\n"
    "  local msg = 'the job was in flight each time its worker died (' .. count ..\n"
    "    ' times): it is not run again'\n"
    "  local err = {code = 'worker_crashed', message = msg, status = 0, upstream = cjson.null}\n"
    "  local errtext = cjson.encode(err)\n"
    "  redis.call('LPUSH', KEYS[4], cjson.encode({job = raw, error = err, failed_at = now}))\n"
    "  if id then\n"
    "    local h, ev = P .. ':job:' .. id, P .. ':events:' .. id\n"
    "    local ttl = tonumber(j.result_ttl_s) or tonumber(ARGV[6])\n"
    "    redis.call('HSET', h, 'status', 'failed', 'error', errtext, 'finished_at', now)\n"
    "    redis.call('EXPIRE', h, ttl)\n"
    "    local seq = redis.call('LLEN', ev)\n"
    "    local ok, last = pcall(cjson.decode, redis.call('LINDEX', ev, -1) or '{}')\n"
    "    if ok and type(last) == 'table' and tonumber(last.seq) then\n"
    "      seq = math.max(seq, tonumber(last.seq) + 1)\n"
    "    end\n"
    "    local e = '{\"seq\":' .. seq ..\n"
    "      ',\"type\":\"error\",\"status\":\"failed\",\"error\":' .. errtext .. '}'\n"
    "    redis.call('RPUSH', ev, e)\n"
    "    redis.call('EXPIRE', ev, ttl)\n"
    "    redis.call('PUBLISH', P .. ':stream:' .. id, e)\n"
    "  end\n"
    "  local rt = str(j.reply_to)\n"
    "  if rt then\n"
    "    redis.pcall('LPUSH', rt, cjson.encode({id = id or cjson.null,\n"
    "      custom_id = str(j.custom_id) or id or cjson.null, response = cjson.null,\n"
    "      error = {code = 'worker_crashed', message = msg}}))\n"
    "  end\n"
    "  local f = (str(j.tenant) or '') .. '|' .. (str(body.model) or '') .. '|'\n"
    "  redis.call('HINCRBY', P .. ':usage:' .. ARGV[7], f .. 'requests', 1)\n"
    "  redis.call('HINCRBY', P .. ':usage:' .. ARGV[7], f .. 'failed', 1)\n"
    "end\n"
    "local n = 0\n"
    "for i = 5, #KEYS, 2 do\n"
    "  while true do\n"
    "    local raw = redis.call('LPOP', KEYS[i])\n"
    "    if not raw then break end\n"
    "    local sha = redis.sha1hex(raw)\n"
    "    local count = redis.call('HINCRBY', KEYS[3], sha, 1)\n"
    "    if count >= limit then\n"
    "      redis.call('HDEL', KEYS[3], sha)\n"
    "      poison(raw, count)\n"
    "    else\n"
    "      redis.call('RPUSH', KEYS[i+1], raw)\n"
    "      n = n + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if known == 0 and n == 0 then return -1 end\n"
    "return n\n";

/* DEREGISTER: forget a worker that drained (it holds no job any more). */
const char scripts_deregister[] =
    "redis.call('HDEL', KEYS[1], ARGV[1]) redis.call('DEL', KEYS[2])";

/* RATELIMIT: GCRA buckets shared by every worker (see worker/ratelimit.h).
 * The buckets are hashes with fields r and t: theoretical arrival times,
 * unix ms. Times come from Redis' own clock, so the hosts' clocks need not
 * agree.
 *   take:   Granted when no bucket's r (for a request limit) or t (for a
 *           token limit) lies in the future: each then advances by its cost
 *           and 0 is returned. Otherwise nothing changes and the reply is the
 *           number of ms to wait.
 *   adjust: t moves by token interval * delta (the estimate corrected
 *           with the real usage).
 *   push:   the times named move to now + delay if earlier (the upstream said it is out of
 *           capacity until then). */
const char scripts_ratelimit[] =
    "local clock = redis.call('TIME')\n"
    "local mode, now = ARGV[1], tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)\n"
    "local function get(k, f) return tonumber(redis.call('HGET', k, f) or '0') or 0 end\n"
    "local function put(k, r, t)\n"
    "  redis.call('HSET', k, 'r', string.format('%.3f', r), 't', string.format('%.3f', t))\n"
    "  redis.call('PEXPIRE', k, math.ceil(math.max(r, t, now) - now) + 120000)\n"
    "end\n"
    "if mode == 'take' then\n"
    "  local wait = 0\n"
    "  for i = 1, #KEYS do\n"
    "    local b = 2 + (i - 1) * 3\n"
    "    local riv, tiv = tonumber(ARGV[b]), tonumber(ARGV[b + 1])\n"
    "    local r, t = get(KEYS[i], 'r'), get(KEYS[i], 't')\n"
    "    if riv > 0 and r - now > wait then wait = r - now end\n"
    "    if tiv > 0 and t - now > wait then wait = t - now end\n"
    "  end\n"
    "  if wait > 0 then return math.ceil(wait) end\n"
    "  for i = 1, #KEYS do\n"
    "    local b = 2 + (i - 1) * 3\n"
    "    local riv, tiv, tok = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])\n"
    "    local r, t = math.max(get(KEYS[i], 'r'), now), math.max(get(KEYS[i], 't'), now)\n"
    "    put(KEYS[i], r + riv, t + tiv * tok)\n"
    "  end\n"
    "  return 0\n"
    "elseif mode == 'adjust' then\n"
    "  for i = 1, #KEYS do\n"
    "    local b = 2 + (i - 1) * 2\n"
    "    local t = get(KEYS[i], 't') + tonumber(ARGV[b]) * tonumber(ARGV[b + 1])\n"
    "    put(KEYS[i], get(KEYS[i], 'r'), t)\n"
    "  end\n"
    "elseif mode == 'push' then\n"
    "  local u, which = now + tonumber(ARGV[2]), ARGV[3]\n"
    "  for i = 1, #KEYS do\n"
    "    local r, t = get(KEYS[i], 'r'), get(KEYS[i], 't')\n"
    "    if string.find(which, 'r') and r < u then r = u end\n"
    "    if string.find(which, 't') and t < u then t = u end\n"
    "    put(KEYS[i], r, t)\n"
    "  end\n"
    "end\n"
    "return 0\n";

/* BATCH_PUSH: `chatq batch` queues a chunk of its jobs and records how far
 * the submission got, in one step (cli/batch_cmd.c). Sent with EVAL by the
 * CLI, which runs it a few times per batch.
 * KEYS[1] the queue, KEYS[2] the batch hash
 * ARGV[1] the new `submitted` count (lines queued from the file's start),
 * ARGV[2..] the jobs.
 * The LPUSH comes first: if it fails, the script stops before the count
 * moves, so the count never says a line was queued that was not.
 * Returns 1. */
const char scripts_batch_push[] =
    "redis.call('LPUSH', KEYS[1], unpack(ARGV, 2))\n"
    "redis.call('HSET', KEYS[2], 'submitted', ARGV[1])\n"
    "return 1\n";

/* ---- the builders of the calls -------------------------------------------- */

/* A string argument; NULL goes as "". */
static void sc_str(rargs *a, const char *s) { rargs_adds(a, s ? s : ""); }

/* A (field, value) pair of the job hash, when there is a value. */
static void sc_field(rargs *a, const char *k, const char *v) {
    if (!v) return;
    rargs_adds(a, k);
    rargs_adds(a, v);
}

static void sc_field_ll(rargs *a, const char *k, long long v) {
    if (!v) return;
    rargs_adds(a, k);
    rargs_addll(a, v);
}

void scripts_fetch_args(const scripts_fetch_call *c, rargs *out) {
    rargs_addll(out, 2 * c->nqueues + 1);
    for (int i = 0; i < c->nqueues; i++) {
        rargs_adds(out, c->queue_keys[i]);
        rargs_adds(out, c->processing_keys[i]);
    }
    rargs_adds(out, c->crashes_key);
    rargs_addll(out, c->want);
    rargs_addll(out, c->busy);
}

void scripts_start_args(const scripts_start_call *c, rargs *out) {
    rargs_adds(out, "3");
    rargs_adds(out, c->job_key);
    rargs_adds(out, c->events_key);
    rargs_adds(out, c->cancel_key);
    rargs_adds(out, c->worker_id);
    rargs_adds(out, c->queue);
    sc_str(out, c->model);
    sc_str(out, c->tenant);
    sc_str(out, c->provider);
    rargs_addll(out, c->now_ms);
    rargs_addf(out, "%s/%llu", c->worker_id, c->start_number);
}

void scripts_finish_args(const scripts_finish_call *c, rargs *out) {
    rargs_adds(out, "9");
    sc_str(out, c->processing_key);
    sc_str(out, c->job_key);
    sc_str(out, c->events_key);
    sc_str(out, c->stream_key);
    rargs_adds(out, c->usage_key);
    sc_str(out, c->reply_to);
    rargs_adds(out, c->dead_key);
    sc_str(out, c->cancel_key);
    rargs_adds(out, c->crashes_key);
    rargs_add(out, c->raw, c->raw_len);
    rargs_addll(out, c->ttl_s);
    rargs_add(out, c->event, c->event_len);
    sc_str(out, c->output_line);
    if (c->dead_entry)
        rargs_add(out, c->dead_entry, c->dead_entry_len);
    else
        rargs_adds(out, "");

    /* the usage counters: the field prefix, how many, then the pairs */
    char *prefix = usage_field_prefix(c->usage_tenant, c->usage_model);
    rargs_addf(out, "%s", prefix);
    free(prefix);
    int m = 0;
    for (int i = 0; i < USAGE_NMETRICS; i++) m += c->usage[i] != 0;
    rargs_addll(out, m);
    for (int i = 0; i < USAGE_NMETRICS; i++) {
        if (!c->usage[i]) continue;
        rargs_adds(out, usage_metric_name((usage_metric)i));
        rargs_addll(out, c->usage[i]);
    }

    const scripts_finish_result *r = &c->result;
    rargs_adds(out, "status");
    rargs_adds(out, job_status_name(r->status));
    rargs_adds(out, "attempts");
    rargs_addll(out, r->attempts);
    sc_field(out, "response", r->response);
    sc_field(out, "error", r->error);
    sc_field(out, "usage", r->usage);
    sc_field(out, "model", r->model);
    sc_field(out, "provider", r->provider);
    sc_field(out, "tenant", r->tenant);
    sc_field(out, "queue", r->queue);
    sc_field(out, "worker", r->worker);
    sc_field_ll(out, "started_at", r->started_at);
    sc_field_ll(out, "first_token_at", r->first_token_at);
    rargs_adds(out, "finished_at");
    rargs_addll(out, r->finished_at);
    sc_field(out, "metadata", r->metadata);
    sc_field(out, "custom_id", r->custom_id);
}

void scripts_requeue_args(const scripts_requeue_call *c, rargs *out) {
    rargs_addll(out, 2 * c->nqueues);
    for (int i = 0; i < c->nqueues; i++) {
        rargs_adds(out, c->processing_keys[i]);
        rargs_adds(out, c->queue_keys[i]);
    }
    for (int i = 0; c->jobs && i < c->njobs; i++) rargs_add(out, c->jobs[i], c->job_lens[i]);
}

void scripts_recover_args(const scripts_recover_call *c, rargs *out) {
    rargs_addll(out, 4 + 2 * c->nqueues);
    rargs_adds(out, c->workers_key);
    rargs_adds(out, c->heartbeat_key);
    rargs_adds(out, c->crashes_key);
    rargs_adds(out, c->dead_key);
    for (int i = 0; i < c->nqueues; i++) {
        rargs_adds(out, c->processing_keys[i]);
        rargs_adds(out, c->queue_keys[i]);
    }
    rargs_adds(out, c->worker_id);
    rargs_adds(out, c->only_if_expired ? "1" : "0");
    rargs_adds(out, c->prefix);
    rargs_addll(out, c->now_ms);
    rargs_addll(out, c->poison_limit);
    rargs_addll(out, c->result_ttl_s);
    rargs_adds(out, c->day);
}

void scripts_deregister_args(const scripts_deregister_call *c, rargs *out) {
    rargs_adds(out, "2");
    rargs_adds(out, c->workers_key);
    rargs_adds(out, c->heartbeat_key);
    rargs_adds(out, c->worker_id);
}

static const char *const sc_rl_modes[] = {
    [SCRIPTS_RL_TAKE] = "take", [SCRIPTS_RL_ADJUST] = "adjust", [SCRIPTS_RL_PUSH] = "push"};

void scripts_ratelimit_args(const scripts_ratelimit_call *c, rargs *out) {
    rargs_addll(out, c->nkeys);
    for (int i = 0; i < c->nkeys; i++) rargs_adds(out, c->keys[i]);
    rargs_adds(out, sc_rl_modes[c->mode]);
    switch (c->mode) {
    case SCRIPTS_RL_TAKE:
        for (int i = 0; i < c->nkeys; i++) {
            rargs_addf(out, "%.6f", c->req_iv[i]);
            rargs_addf(out, "%.9f", c->tok_iv[i]);
            rargs_addll(out, c->tokens);
        }
        break;
    case SCRIPTS_RL_ADJUST:
        for (int i = 0; i < c->nkeys; i++) {
            rargs_addf(out, "%.9f", c->tok_iv[i]);
            rargs_addll(out, c->tokens);
        }
        break;
    case SCRIPTS_RL_PUSH:
        rargs_addll(out, c->delay_ms);
        rargs_adds(out, c->which);
        break;
    }
}

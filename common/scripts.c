/* scripts.c — Lua scripts run by the worker and the supervisor, and the
 * builders of their calls; see scripts.h.
 *
 * They run with EVALSHA after a SCRIPT LOAD on every new connection. The
 * KEYS and ARGV of each are described once, with its call struct in
 * scripts.h; the comments here say what each script does. Keys are passed
 * in KEYS, never built in Lua, so the scripts stay correct whatever the
 * prefix (RECOVER's poison pills are the one exception, said there). */
#include "common/scripts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

/* FETCH: take up to `want` jobs, higher-priority queues first.
 * Each job moves atomically from the consuming (right) end of its queue to
 * the left of the worker's processing list for that queue. A job longer than
 * max_job_bytes never leaves Redis whole: its place in the processing list
 * takes a marker, "\0chatq-oversized\0<bytes>\0<first excerpt bytes>", which
 * the worker ends as invalid_job (the marker is what FINISH removes).
 * A queue of another type (anyone can write to Redis) is skipped (its
 * LMOVE fails before writing): the script must not fail, for Redis would
 * keep what earlier queues moved and the worker, answered with an error,
 * would never learn of those jobs. A processing list of another type holds
 * no job and is deleted, else the worker would never get a job again. */
const char scripts_fetch[] =
    "local want, max, ex = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local out, got = {}, 0\n"
    "for i = 1, #KEYS, 2 do\n"
    "  while got < want do\n"
    "    local ok, j = pcall(redis.call, 'LMOVE', KEYS[i], KEYS[i+1], 'RIGHT', 'LEFT')\n"
    "    if not ok and redis.call('TYPE', KEYS[i+1])['ok'] ~= 'list' then\n"
    "      redis.call('DEL', KEYS[i+1])\n"
    "      ok, j = pcall(redis.call, 'LMOVE', KEYS[i], KEYS[i+1], 'RIGHT', 'LEFT')\n"
    "    end\n"
    "    if not ok or not j then break end\n"
    "    if max > 0 and #j > max then\n"
    "      j = '\\0chatq-oversized\\0' .. #j .. '\\0' .. string.sub(j, 1, ex)\n"
    "      redis.call('LSET', KEYS[i+1], 0, j)\n"
    "    end\n"
    "    out[#out+1] = (i + 1) / 2\n"
    "    out[#out+1] = j\n"
    "    got = got + 1\n"
    "  end\n"
    "end\n"
    "return out\n";

/* START: workers begin (or resume) jobs; one call for many jobs.
 * For each job, in order:
 *   duplicate  the hash holds a final status (succeeded, failed,
 *              cancelled), or says running and this text is not the copy
 *              taken back from the worker that ran it: nothing is written
 *              (but a mark of this text in the requeued hash, when the id
 *              has its result: nothing will resume it);
 *   resumed    the hash says running and this very text (same SHA1) was
 *              taken back from that hash's worker (its worker died or was
 *              stopped; RECOVER/REQUEUE left the mark): attempts, charged
 *              attempts, started_at and events are kept, seq goes on after
 *              the last stored event;
 *   fresh      anything else: what an earlier job with this id left (events,
 *              an expired run) is dropped.
 * The answer is kept in the hash's "start" field with the token, so a START
 * resent after its reply was lost gets the same answer instead of counting
 * an attempt twice. A "start" with this token but no answer after it (anyone
 * can write to Redis) is not one: the job is judged as if it had none (a
 * nil in the reply would cut it short and fail the whole batch).
 * A job hash of another type (a producer's SET) is treated as absent. A
 * requeued key of another type is deleted before anything else: it holds
 * no mark START could use, and its HGET/HDEL would fail half way through
 * the batch (Redis keeps the writes before, every job gets the error).
 * The counts a resumed run takes from the hash and events (attempts,
 * charged, seq) are clamped to whole numbers in range (whole()): a "-3" or
 * "1e20" would give an answer a resent START could not read back, and the
 * resend would drop the job as a duplicate.
 * Numbers reach commands as strings: Redis formats a Lua number with
 * "%.17g", which costs more than the rest of a small command. */
const char scripts_start[] =
    "local RQ = KEYS[1]\n"
    "local function whole(v, hi)\n" /* a count read from a hash anyone can write */
    "  v = tonumber(v) or 0\n"
    "  if v ~= v or v < 0 then return 0 end\n"
    "  return math.floor(math.min(v, hi))\n"
    "end\n"
    "local rqt = redis.call('TYPE', RQ)['ok']\n"
    "if rqt ~= 'hash' and rqt ~= 'none' then redis.call('DEL', RQ) end\n"
    "local out = {}\n"
    "local n = (#KEYS - 1) / 3\n"
    "for k = 0, n - 1 do\n"
    "  local h, ev, ck = KEYS[2 + 3 * k], KEYS[3 + 3 * k], KEYS[4 + 3 * k]\n"
    "  local b = 8 * k\n"
    "  local sha, worker, tok = ARGV[b + 1], ARGV[b + 2], ARGV[b + 8]\n"
    "  local okh, st = pcall(redis.call, 'HMGET', h, 'status', 'attempts', 'started_at', 'start',\n"
    "    'sha', 'worker', 'charged')\n"
    "  if not okh then st = {} end\n"
    "  local r\n"
    "  if st[4] and string.sub(st[4], 1, #tok + 1) == tok .. '|' then\n"
    "    local kind, seq, a, c = string.match(string.sub(st[4], #tok + 2), '^(%d)|(%d+)|(%d+)|(%d+)$')\n"
    "    if kind then\n"
    "      r = {tonumber(kind), redis.call('EXISTS', ck), tonumber(seq), tonumber(a), tonumber(c), st[3] or ''}\n"
    "    end\n"
    "  end\n"
    "  if r then -- a resend: the first answer again\n"
    "  elseif st[1] == 'succeeded' or st[1] == 'failed' or st[1] == 'cancelled' then\n"
    "    redis.call('HDEL', RQ, sha)\n"
    "    r = {2, 0, 0, 0, 0, ''}\n"
    "  else\n"
    "    local kind, attempts, charged, seq, started = 0, 0, 0, 0, ARGV[b + 7]\n"
    "    if st[1] == 'running' then\n"
    "      if st[5] == sha and st[6] and redis.call('HGET', RQ, sha) == st[6] then\n"
    "        kind = 1\n"
    "      else\n"
    "        kind = 2\n"
    "      end\n"
    "    end\n"
    "    if kind == 2 then\n"
    "      r = {2, 0, 0, 0, 0, ''}\n"
    "    else\n"
    "      if kind == 1 then\n"
    "        redis.call('HDEL', RQ, sha)\n"
    "        attempts = whole(st[2], 1000000)\n"
    "        charged = whole(st[7], attempts)\n"
    "        started = st[3] or started\n"
    "        local okl, len = pcall(redis.call, 'LLEN', ev)\n"
    "        seq = okl and len or 0\n"
    "        local okx, lasttext = pcall(redis.call, 'LINDEX', ev, -1)\n"
    "        local ok, last = pcall(cjson.decode, okx and lasttext or '{}')\n"
    "        if ok and type(last) == 'table' and tonumber(last.seq) then\n"
    "          seq = math.max(seq, tonumber(last.seq) + 1)\n"
    "        end\n"
    "        seq = whole(seq, 1000000000000)\n"
    "      end\n"
    "      if kind == 0 then redis.call('DEL', h, ev) elseif not okh then redis.call('DEL', h) end\n"
    "      local cancel = redis.call('EXISTS', ck)\n"
    "      local answer, made, count\n"
    "      if kind == 0 then\n"
    "        answer, made, count = '|0|0|0|0', '0', cancel == 1 and '0' or '1'\n"
    "      else\n"
    "        answer = string.format('|%d|%d|%d|%d', kind, seq, attempts, charged)\n"
    "        made, count = string.format('%d', charged), string.format('%d', attempts + 1 - cancel)\n"
    "      end\n"
    "      redis.call('HSET', h, 'status', 'running', 'worker', worker, 'queue', ARGV[b + 3],\n"
    "        'model', ARGV[b + 4], 'tenant', ARGV[b + 5], 'provider', ARGV[b + 6],\n"
    "        'started_at', started, 'sha', sha, 'attempts', count, 'charged', made,\n"
    "        'start', tok .. answer)\n"
    "      r = {kind, cancel, seq, attempts, charged, started}\n"
    "    end\n"
    "  end\n"
    "  for i = 1, 6 do out[#out + 1] = r[i] end\n"
    "end\n"
    "return out\n";

/* FINISH: store jobs' final results, each exactly once; one call for many.
 * KEYS and ARGV as scripts.h says; the job hash's fields are named in FIELDS
 * below, in the order of the presence flags the worker sends.
 * Each job is atomic on its own, and nothing can fail after its first write:
 *   - a resend whose first run stored the result (its token is in the
 *     hash's "done" field) changes nothing;
 *   - the job must still be in this worker's processing list (LREM, the
 *     first write); if it is not, it was recovered and runs elsewhere. A
 *     processing list someone overwrote with another type counts as
 *     holding it: nothing can recover a job from there, so the run that
 *     holds it is its only owner;
 *   - the hash must hold this run's start token (or none: it was deleted,
 *     or something that is no START answer: anyone can write to Redis):
 *     else another run owns the id (a resumed run elsewhere): the entry is
 *     removed, nothing else;
 *   - every number was checked by the worker, and the ttl is clamped here
 *     too; usage increments are summed per field and added at the end with
 *     pcall (an overflowing counter stays as it is), reply_to is pushed with
 *     pcall (a key the producer made something else than a list);
 *   - the crashes and requeued hashes are cleaned only when they are
 *     hashes: anyone can write to Redis, and an HDEL of a string would fail
 *     after the results of the batch's earlier jobs were stored.
 * Cost. Redis' time per job goes mostly to arguments: each is parsed,
 * copied into a Lua string (hashed and interned) and turned back into a
 * Redis string when a command gets it. So the field names of the hash and
 * the usage metrics' are not sent as arguments of their own, and numbers
 * reach commands as strings (Redis formats a Lua number with "%.17g").
 * Returns per job 0 (skipped), 1 (stored) or 2 (stored, reply_to not a list). */
const char scripts_finish[] =
    "local FIELDS = {'status', 'attempts', 'response', 'error', 'usage', 'model', 'provider',\n"
    "  'tenant', 'queue', 'worker', 'started_at', 'first_token_at', 'finished_at', 'metadata',\n"
    "  'custom_id'}\n"
    "local crashes, requeued, dead = KEYS[1], KEYS[2], KEYS[3]\n"
    "local any_crash = redis.call('TYPE', crashes)['ok'] == 'hash'\n"
    "local any_rq = redis.call('TYPE', requeued)['ok'] == 'hash'\n"
    "local usage, order = {}, {}\n"
    "local out = {}\n"
    "local a, k = 2, 4\n"
    "local function clamp_ttl(v)\n"
    "  v = tonumber(v) or tonumber(ARGV[1]) or 86400\n"
    "  if v ~= v or v < 1 then v = 1 end\n"
    "  if v > 31536000 then v = 31536000 end\n"
    "  return string.format('%d', v)\n"
    "end\n"
    "while a <= #ARGV do\n"
    "  local proc, h, ev, ch, uk, rt, ck = KEYS[k], KEYS[k+1], KEYS[k+2], KEYS[k+3], KEYS[k+4], KEYS[k+5], KEYS[k+6]\n"
    "  k = k + 7\n"
    "  local raw, tok, sha, ttl, event, line, deadent, upfx = ARGV[a], ARGV[a+1], ARGV[a+2],\n"
    "    ARGV[a+3], ARGV[a+4], ARGV[a+5], ARGV[a+6], ARGV[a+7]\n"
    "  local incr, mask = ARGV[a+8], ARGV[a+9]\n"
    "  local vb = a + 10\n"
    "  local _, f = string.gsub(mask, '1', '1')\n"
    "  a = vb + f\n"
    "  local res, skip, mine = 0, false, true\n"
    "  if h ~= '' then\n"
    "    local okh, st = pcall(redis.call, 'HMGET', h, 'done', 'start')\n"
    "    if not okh then st = {false, false} end\n"
    "    if st[1] == tok then\n"
    "      skip = true\n"
    "    else\n"
    "      local owner = st[2]\n"
    "      mine = not owner or string.sub(owner, 1, #tok + 1) == tok .. '|' or\n"
    "        not string.match(owner, '^[^|]+/%d+|%d|%d+|%d+|%d+$')\n"
    "    end\n"
    "  end\n"
    "  local removed = 0\n"
    "  if not skip then\n"
    "    local okp, v = pcall(redis.call, 'LREM', proc, '-1', raw)\n"
    "    removed = okp and v or 1\n"
    "  end\n"
    "  if removed == 1 and mine then\n"
    "    ttl = clamp_ttl(ttl)\n"
    "    if incr ~= '' then\n"
    "      local key = uk .. '\\0' .. upfx\n"
    "      local g = usage[key]\n"
    "      if not g then g = {names = {}, n = {}}; usage[key] = g; order[#order + 1] = key end\n"
    "      for name, v in string.gmatch(incr, '(%S+) (%S+)') do\n"
    "        if not g.n[name] then g.n[name] = 0; g.names[#g.names + 1] = name end\n"
    "        g.n[name] = g.n[name] + tonumber(v)\n"
    "      end\n"
    "    end\n"
    "    if h ~= '' then\n"
    "      redis.call('DEL', h)\n"
    "      local args, v = {}, vb\n"
    "      for i = 1, #FIELDS do\n"
    "        if string.byte(mask, i) == 49 then\n"
    "          args[#args + 1] = FIELDS[i]; args[#args + 1] = ARGV[v]; v = v + 1\n"
    "        end\n"
    "      end\n"
    "      args[#args + 1] = 'done'; args[#args + 1] = tok\n"
    "      redis.call('HSET', h, unpack(args))\n"
    "      redis.call('EXPIRE', h, ttl)\n"
    "      if type(redis.pcall('RPUSH', ev, event)) == 'table' then\n"
    "        redis.call('DEL', ev)\n"
    "        redis.call('RPUSH', ev, event)\n"
    "      end\n"
    "      redis.call('EXPIRE', ev, ttl)\n"
    "      redis.call('PUBLISH', ch, event)\n"
    "    end\n"
    "    res = 1\n"
    "    if rt ~= '' and type(redis.pcall('LPUSH', rt, line)) == 'table' then res = 2 end\n"
    "    if deadent ~= '' and type(redis.pcall('LPUSH', dead, deadent)) == 'table' then\n"
    "      redis.call('DEL', dead)\n"
    "      redis.call('LPUSH', dead, deadent)\n"
    "    end\n"
    "    if ck ~= '' then redis.call('DEL', ck) end\n"
    "    if any_crash then redis.call('HDEL', crashes, sha) end\n"
    "    if any_rq then redis.call('HDEL', requeued, sha) end\n"
    "  end\n"
    "  out[#out + 1] = res\n"
    "end\n"
    "for _, key in ipairs(order) do\n"
    "  local z = string.find(key, '\\0', 1, true)\n"
    "  local uk, upfx, g = string.sub(key, 1, z - 1), string.sub(key, z + 1), usage[key]\n"
    "  for _, name in ipairs(g.names) do\n"
    "    redis.pcall('HINCRBY', uk, upfx .. name, string.format('%d', g.n[name]))\n"
    "  end\n"
    "end\n"
    "return out\n";

/* REQUEUE: put jobs a worker holds back at the consuming end of their queues
 * (the ones named, or every job of its processing lists).
 * The processing list holds the newest job on the left, so moving from its
 * left to the right end of the queue leaves the oldest job to be consumed
 * first. Each job put back is marked in the requeued hash (SHA1 of its text
 * -> this worker), which lets its next START resume the run instead of
 * taking it for a duplicate.
 * Anyone can write to Redis: a requeued key of another type (it holds no
 * mark of use) is deleted before the first move, and a pair whose
 * processing list or queue is of another type is left alone, so no move
 * is followed by a failing write. */
const char scripts_requeue[] =
    "local n = 0\n"
    "local function kind(k) return redis.call('TYPE', k)['ok'] end\n"
    "local function listy(k) local t = kind(k) return t == 'list' or t == 'none' end\n"
    "if kind(KEYS[1]) ~= 'hash' and kind(KEYS[1]) ~= 'none' then redis.call('DEL', KEYS[1]) end\n"
    "local function mark(j) redis.call('HSET', KEYS[1], redis.sha1hex(j), ARGV[1]) end\n"
    "local usable = {}\n"
    "for i = 2, #KEYS, 2 do usable[i] = kind(KEYS[i]) == 'list' and listy(KEYS[i+1]) end\n"
    "if #ARGV == 1 then\n"
    "  for i = 2, #KEYS, 2 do\n"
    "    while usable[i] do\n"
    "      local j = redis.call('LMOVE', KEYS[i], KEYS[i+1], 'LEFT', 'RIGHT')\n"
    "      if not j then break end\n"
    "      mark(j)\n"
    "      n = n + 1\n"
    "    end\n"
    "  end\n"
    "  return n\n"
    "end\n"
    "for a = 2, #ARGV do\n"
    "  for i = 2, #KEYS, 2 do\n"
    "    if usable[i] and redis.call('LREM', KEYS[i], 1, ARGV[a]) == 1 then\n"
    "      redis.call('RPUSH', KEYS[i+1], ARGV[a])\n"
    "      mark(ARGV[a])\n"
    "      n = n + 1\n"
    "      break\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return n\n";

/* RECOVER: put back the jobs of a worker that is gone, and forget it.
 * Atomic, so when two supervisors notice the same death at once, the second
 * finds nothing left to move. Only a fault counts against jobs: against the
 * culprit when it is known, else against every job in flight. A counted job
 * goes to the quarantine list (run apart, one at a time) when it is the
 * culprit or has been counted twice; after `poison limit` counts it is a poison
 * pill: it ends failed with code worker_crashed (dead list, and when the id
 * is this job's own run: job hash, final event, reply_to, usage; a job with
 * neither id nor custom_id has the id the worker gives it, "job-" and 24 hex
 * digits of its text's SHA1). Any other
 * job goes back to its list unharmed. Every job put back is marked in the
 * requeued hash (see START). Job keys of a poison pill are built here from
 * the prefix: its id is known only by decoding it.
 * Nothing can fail after the first write: numbers from the job are clamped,
 * a reply_to that is not a list and counters that would overflow are
 * skipped (pcall). Anyone can write to Redis, so chatq's own keys are
 * checked before the first write too: a crashes, requeued or dead key of
 * another type holds nothing of use and is deleted (so are a poison pill's
 * job hash and events list of another type); a crash count that is not a
 * number or below 1 starts again at 1; a processing list of another type
 * holds no job; jobs go back to their queue, or to the quarantine list when
 * the queue is of another type (and the other way round); when neither is
 * a list the jobs stay where they are and the worker stays in the workers
 * hash, so the sweep tries again. A workers key of another type is left
 * alone (HDEL with pcall). */
const char scripts_recover[] =
    "if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return {-2} end\n"
    "local function kind(k) return redis.call('TYPE', k)['ok'] end\n"
    "local function listy(k) local t = kind(k) return t == 'list' or t == 'none' end\n"
    "if kind(KEYS[3]) ~= 'hash' and kind(KEYS[3]) ~= 'none' then redis.call('DEL', KEYS[3]) end\n"
    "if kind(KEYS[5]) ~= 'hash' and kind(KEYS[5]) ~= 'none' then redis.call('DEL', KEYS[5]) end\n"
    "if not listy(KEYS[4]) then redis.call('DEL', KEYS[4]) end\n"
    "local plan, stuck = {}, false\n"
    "for i = 6, #KEYS, 3 do\n"
    "  local back, quar = KEYS[i + 1], KEYS[i + 2]\n"
    "  if not listy(back) then back = quar end\n"
    "  if not listy(quar) then quar = back end\n"
    "  if kind(KEYS[i]) == 'list' then\n"
    "    if listy(back) then plan[#plan + 1] = {KEYS[i], back, quar, KEYS[i + 1]} else stuck = true end\n"
    "  end\n"
    "end\n"
    "local known = 0\n"
    "if not stuck then\n"
    "  local okw, v = pcall(redis.call, 'HDEL', KEYS[1], ARGV[1])\n"
    "  if okw then known = v end\n"
    "end\n"
    "redis.call('DEL', KEYS[2])\n"
    "local P, now, limit = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local fault, culprit = ARGV[8] == '1', ARGV[9]\n"
    "local function str(v) if type(v) == 'string' then return v end return nil end\n"
    "local function ttl_of(v)\n"
    "  v = tonumber(v) or tonumber(ARGV[6]) or 86400\n"
    "  if v ~= v or v < 1 then v = 1 end\n"
    "  if v > 31536000 then v = 31536000 end\n"
    "  return math.floor(v)\n"
    "end\n"
    "local function poison(raw, sha, count)\n"
    "  local ok, j = pcall(cjson.decode, raw)\n"
    "  if not ok or type(j) ~= 'table' then j = {} end\n"
    "  local body = type(j.body) == 'table' and j.body or {}\n"
    "  local id = str(j.id) or str(j.custom_id)\n"
    "  if not j.id and not j.custom_id and ok and type(j) == 'table' then\n"
    "    id = 'job-' .. string.sub(sha, 1, 24)\n"
    "  end\n"
    "  if id and (#id > 128 or not string.match(id, '^[A-Za-z0-9._:-]+$')) then id = nil end\n"
    "  local msg = 'the job was running each time its worker died of a fault (' .. count ..\n"
    "    ' times): it is not run again'\n"
    "  local err = {code = 'worker_crashed', message = msg, status = 0, upstream = cjson.null}\n"
    "  local errtext = cjson.encode(err)\n"
    "  redis.call('LPUSH', KEYS[4], cjson.encode({job = raw, error = err, failed_at = now}))\n"
    "  if not id then return end\n"
    "  local h, ev = P .. ':job:' .. id, P .. ':events:' .. id\n"
    "  local okh, st = pcall(redis.call, 'HMGET', h, 'status', 'sha')\n"
    "  if not okh then redis.call('DEL', h); st = {} end\n"
    "  if not listy(ev) then redis.call('DEL', ev) end\n"
    "  if st[1] and not (st[1] == 'running' and st[2] == sha) then return end\n"
    "  local ttl = ttl_of(j.result_ttl_s)\n"
    "  redis.call('HSET', h, 'status', 'failed', 'error', errtext, 'finished_at', now)\n"
    "  redis.call('EXPIRE', h, ttl)\n"
    "  local seq = redis.call('LLEN', ev)\n"
    "  local okl, last = pcall(cjson.decode, redis.call('LINDEX', ev, -1) or '{}')\n"
    "  if okl and type(last) == 'table' and tonumber(last.seq) then\n"
    "    seq = math.max(seq, tonumber(last.seq) + 1)\n"
    "  end\n"
    "  local e = '{\"seq\":' .. string.format('%d', seq) ..\n"
    "    ',\"type\":\"error\",\"status\":\"failed\",\"error\":' .. errtext .. '}'\n"
    "  redis.call('RPUSH', ev, e)\n"
    "  redis.call('EXPIRE', ev, ttl)\n"
    "  redis.call('PUBLISH', P .. ':stream:' .. id, e)\n"
    "  local rt = str(j.reply_to)\n"
    "  if rt then\n"
    "    redis.pcall('LPUSH', rt, cjson.encode({id = id, custom_id = str(j.custom_id) or id,\n"
    "      response = cjson.null, error = {code = 'worker_crashed', message = msg}}))\n"
    "  end\n"
    "  local tenant, model = str(j.tenant) or '', str(body.model) or ''\n"
    "  if not string.find(tenant .. model, '|', 1, true) then\n"
    "    local f = tenant .. '|' .. model .. '|'\n"
    "    redis.pcall('HINCRBY', P .. ':usage:' .. ARGV[7], f .. 'requests', 1)\n"
    "    redis.pcall('HINCRBY', P .. ':usage:' .. ARGV[7], f .. 'failed', 1)\n"
    "  end\n"
    "end\n"
    "local n, nq, nd = 0, 0, 0\n"
    "for _, p in ipairs(plan) do\n"
    "  while true do\n"
    "    local raw = redis.call('LPOP', p[1])\n"
    "    if not raw then break end\n"
    "    local sha = redis.sha1hex(raw)\n"
    "    local to = p[2]\n"
    "    local gone = false\n"
    "    if fault and (culprit == '' or culprit == sha) then\n"
    "      local okc, count = pcall(redis.call, 'HINCRBY', KEYS[3], sha, 1)\n"
    "      if not okc or count < 1 then\n"
    "        count = 1\n"
    "        redis.call('HSET', KEYS[3], sha, '1')\n"
    "      end\n"
    "      if count >= limit then\n"
    "        redis.call('HDEL', KEYS[3], sha)\n"
    "        poison(raw, sha, count)\n"
    "        nd = nd + 1\n"
    "        gone = true\n"
    "      elseif culprit == sha or count >= 2 then\n"
    "        to = p[3]\n"
    "      end\n"
    "    end\n"
    "    if not gone then\n"
    "      redis.call('RPUSH', to, raw)\n"
    "      redis.call('HSET', KEYS[5], sha, ARGV[1])\n"
    "      if to == p[4] then n = n + 1 else nq = nq + 1 end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if stuck then return {n, nq, nd, 1} end\n"
    "if known == 0 and n + nq + nd == 0 then return {-1} end\n"
    "return {n, nq, nd}\n";

/* DROP: a worker lets go of a duplicate (START said another job with this id
 * is queued, running or stored): its entry leaves the processing list and
 * nothing else is written.
 * The marker key makes a resend after a lost reply harmless: without it, a second
 * LREM could take an identical text the same worker still runs. */
const char scripts_drop[] =
    "if redis.call('SET', KEYS[2], '1', 'NX', 'EX', 3600) then\n"
    "  return redis.call('LREM', KEYS[1], -1, ARGV[1])\n"
    "end\n"
    "return 0\n";

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
 *           capacity until then).
 * Anyone can write to Redis: a bucket of another type is read as empty and
 * replaced when written; a time that is not a number, below zero or further
 * ahead than any push can set (a week, rl_parse_duration) reads as 0. Else
 * a string failed every call, a "nan" stuck (its PEXPIRE failed after the
 * HSET) and a time centuries ahead asked for a wait nobody can serve: every
 * job under the limit ended rate_limited. */
const char scripts_ratelimit[] =
    "local clock = redis.call('TIME')\n"
    "local mode, now = ARGV[1], tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)\n"
    "local function get(k, f)\n"
    "  local ok, v = pcall(redis.call, 'HGET', k, f)\n"
    "  v = ok and tonumber(v or '0') or 0\n"
    "  if v ~= v or v < 0 or v > now + 8 * 86400000 then v = 0 end\n"
    "  return v\n"
    "end\n"
    "local function put(k, r, t)\n"
    "  local rs, ts = string.format('%.3f', r), string.format('%.3f', t)\n"
    "  if not pcall(redis.call, 'HSET', k, 'r', rs, 't', ts) then\n"
    "    redis.call('DEL', k)\n"
    "    redis.call('HSET', k, 'r', rs, 't', ts)\n"
    "  end\n"
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

void scripts_fetch_args(const scripts_fetch_call *c, rargs *out) {
    rargs_addll(out, 2 * c->nqueues);
    for (int i = 0; i < c->nqueues; i++) {
        rargs_adds(out, c->queue_keys[i]);
        rargs_adds(out, c->processing_keys[i]);
    }
    rargs_addll(out, c->want);
    rargs_addll(out, c->max_job_bytes);
    rargs_addll(out, c->excerpt_bytes);
}

#define SC_MARK "\0chatq-oversized\0"
#define SC_MARK_LEN (sizeof SC_MARK - 1)

int scripts_oversized_parse(const char *text, size_t len, long long *bytes,
                            const char **excerpt, size_t *excerpt_len) {
    if (len < SC_MARK_LEN + 2 || memcmp(text, SC_MARK, SC_MARK_LEN) != 0) return 0;
    const char *p = text + SC_MARK_LEN, *end = text + len;
    long long n = 0;
    int digits = 0;
    for (; p < end && *p >= '0' && *p <= '9' && digits < 18; p++, digits++) n = n * 10 + (*p - '0');
    if (!digits || p == end || *p != '\0') return 0;
    *bytes = n;
    *excerpt = p + 1;
    *excerpt_len = (size_t)(end - p - 1);
    return 1;
}

void scripts_batch_free(scripts_batch *b) {
    rargs_free(&b->keys);
    rargs_free(&b->args);
    b->n = 0;
}

/* A copy of s (NULL = "") that the batch owns. */
static void sc_copy(rargs *a, const char *s, size_t len) {
    rargs_addcopy(a, s ? s : "", s ? len : 0);
}

static void sc_copys(rargs *a, const char *s) { sc_copy(a, s, s ? strlen(s) : 0); }

/* Appends every argument of `from` to `out` (borrowed: `from` must live
 * as long as `out`). */
static void sc_append(rargs *out, const rargs *from) {
    for (int i = 0; i < from->argc; i++) rargs_add(out, from->argv[i], from->lens[i]);
}

void scripts_start_add(scripts_batch *b, const scripts_start_call *c) {
    sc_copys(&b->keys, c->job_key);
    sc_copys(&b->keys, c->events_key);
    sc_copys(&b->keys, c->cancel_key);
    sc_copys(&b->args, c->sha1);
    sc_copys(&b->args, c->worker_id);
    sc_copys(&b->args, c->queue);
    sc_copys(&b->args, c->model);
    sc_copys(&b->args, c->tenant);
    sc_copys(&b->args, c->provider);
    rargs_addll(&b->args, c->now_ms);
    sc_copys(&b->args, c->token);
    b->n++;
}

void scripts_start_args(const scripts_batch *b, const char *requeued_key, rargs *out) {
    rargs_addll(out, 1 + b->keys.argc);
    rargs_adds(out, requeued_key);
    sc_append(out, &b->keys);
    sc_append(out, &b->args);
}

/* A value of the job hash, when there is one: its flag in `mask` (the
 * fields in the order of the script's FIELDS) and the value. */
static void sc_field(rargs *a, char *mask, int i, const char *v) {
    if (!v) return;
    mask[i] = '1';
    sc_copys(a, v);
}

static void sc_field_ll(rargs *a, char *mask, int i, long long v) {
    if (!v) return;
    mask[i] = '1';
    rargs_addll(a, v);
}

/* The job hash's fields, in the order of FINISH's FIELDS. */
enum { SC_STATUS, SC_ATTEMPTS, SC_RESPONSE, SC_ERROR, SC_USAGE, SC_MODEL, SC_PROVIDER,
       SC_TENANT, SC_QUEUE, SC_WORKER, SC_STARTED_AT, SC_FIRST_TOKEN_AT, SC_FINISHED_AT,
       SC_METADATA, SC_CUSTOM_ID, SC_NFIELDS };

void scripts_finish_add(scripts_batch *b, const scripts_finish_call *c) {
    rargs *k = &b->keys, *a = &b->args;
    sc_copys(k, c->processing_key);
    sc_copys(k, c->job_key);
    sc_copys(k, c->events_key);
    sc_copys(k, c->stream_key);
    sc_copys(k, c->usage_key);
    sc_copys(k, c->reply_to);
    sc_copys(k, c->cancel_key);
    sc_copy(a, c->raw, c->raw_len);
    sc_copys(a, c->token);
    sc_copys(a, c->sha1);
    rargs_addll(a, c->ttl_s);
    sc_copy(a, c->event, c->event_len);
    sc_copys(a, c->output_line);
    sc_copy(a, c->dead_entry, c->dead_entry_len);

    /* the usage counters: the field prefix, then "metric n metric n ..." */
    rargs_take(a, usage_field_prefix(c->usage_tenant, c->usage_model));
    buf incr = {0};
    buf_puts(&incr, "");
    for (int i = 0; i < USAGE_NMETRICS; i++) {
        if (!c->usage[i]) continue;
        buf_printf(&incr, "%s%s %lld", incr.len ? " " : "", usage_metric_name((usage_metric)i),
                   c->usage[i]);
    }
    rargs_take(a, buf_steal(&incr));

    /* the job hash: which fields have a value (the flags are patched in
     * once known), then those values */
    const scripts_finish_result *r = &c->result;
    char mask[SC_NFIELDS + 1];
    memset(mask, '0', SC_NFIELDS);
    mask[SC_NFIELDS] = '\0';
    int mpos = a->argc;
    rargs_add(a, "", 0);
    sc_field(a, mask, SC_STATUS, job_status_name(r->status));
    mask[SC_ATTEMPTS] = '1';
    rargs_addll(a, r->attempts);
    sc_field(a, mask, SC_RESPONSE, r->response);
    sc_field(a, mask, SC_ERROR, r->error);
    sc_field(a, mask, SC_USAGE, r->usage);
    sc_field(a, mask, SC_MODEL, r->model);
    sc_field(a, mask, SC_PROVIDER, r->provider);
    sc_field(a, mask, SC_TENANT, r->tenant);
    sc_field(a, mask, SC_QUEUE, r->queue);
    sc_field(a, mask, SC_WORKER, r->worker);
    sc_field_ll(a, mask, SC_STARTED_AT, r->started_at);
    sc_field_ll(a, mask, SC_FIRST_TOKEN_AT, r->first_token_at);
    mask[SC_FINISHED_AT] = '1';
    rargs_addll(a, r->finished_at);
    sc_field(a, mask, SC_METADATA, r->metadata);
    sc_field(a, mask, SC_CUSTOM_ID, r->custom_id);
    rargs_setcopy(a, mpos, mask, SC_NFIELDS);
    b->n++;
}

void scripts_finish_args(const scripts_batch *b, const scripts_finish_shared *s, rargs *out) {
    rargs_addll(out, 3 + b->keys.argc);
    rargs_adds(out, s->crashes_key);
    rargs_adds(out, s->requeued_key);
    rargs_adds(out, s->dead_key);
    sc_append(out, &b->keys);
    rargs_addll(out, s->default_ttl_s);
    sc_append(out, &b->args);
}

void scripts_requeue_args(const scripts_requeue_call *c, rargs *out) {
    rargs_addll(out, 1 + 2 * c->nqueues);
    rargs_adds(out, c->requeued_key);
    for (int i = 0; i < c->nqueues; i++) {
        rargs_adds(out, c->processing_keys[i]);
        rargs_adds(out, c->queue_keys[i]);
    }
    rargs_adds(out, c->worker_id);
    for (int i = 0; c->jobs && i < c->njobs; i++) rargs_add(out, c->jobs[i], c->job_lens[i]);
}

void scripts_recover_args(const scripts_recover_call *c, rargs *out) {
    rargs_addll(out, 5 + 3 * c->nqueues);
    rargs_adds(out, c->workers_key);
    rargs_adds(out, c->heartbeat_key);
    rargs_adds(out, c->crashes_key);
    rargs_adds(out, c->dead_key);
    rargs_adds(out, c->requeued_key);
    for (int i = 0; i < c->nqueues; i++) {
        rargs_adds(out, c->processing_keys[i]);
        rargs_adds(out, c->queue_keys[i]);
        rargs_adds(out, c->quarantine_keys[i]);
    }
    rargs_adds(out, c->worker_id);
    rargs_adds(out, c->only_if_expired ? "1" : "0");
    rargs_adds(out, c->prefix);
    rargs_addll(out, c->now_ms);
    rargs_addll(out, c->poison_limit);
    rargs_addll(out, c->result_ttl_s);
    rargs_adds(out, c->day);
    rargs_adds(out, c->fault ? "1" : "0");
    rargs_adds(out, c->culprit_sha1 ? c->culprit_sha1 : "");
}

void scripts_drop_args(const scripts_drop_call *c, rargs *out) {
    rargs_adds(out, "2");
    rargs_adds(out, c->processing_key);
    rargs_adds(out, c->marker_key);
    rargs_add(out, c->raw, c->raw_len);
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

/* ---- the dead list (`chatq dead`, cli/dead_cmd.c) ------------------------- */

/* DEAD_RETRY: put dead jobs back on a queue; one call for many jobs.
 * For each job, in order, with every check before the first write:
 *   - the queue must be a list (or absent): else nothing is done;
 *   - the job hash, when the text has an id, must be absent or say
 *     "failed": any other status means the id lives again (pushed anew,
 *     retried already, running): the entry stays dead, and the status is
 *     the answer. A key that is not a hash counts as absent (START too
 *     throws it away);
 *   - the entry must still be in P:dead: LREM of its exact text is the
 *     first write, so of two concurrent retries of one entry one wins;
 * then what is left of the dead run goes (hash, events, a cancel request
 * the dead run left behind: the retry is a newer request) and the hash says
 * "queued" until START replaces it. That mark is what stops a second entry
 * with the same id, or a second CLI, from queueing the id twice: START
 * would drop the copy as a duplicate and the job would be lost. The text
 * goes onto the queue's consuming (right) end, so it is taken next; START
 * then finds no finished hash and runs it afresh: attempts start at 1.
 * Returns per job what scripts.h lists. */
const char scripts_dead_retry[] =
    "local dead, now, out = KEYS[1], ARGV[1], {}\n"
    "for i = 0, (#KEYS - 1) / 4 - 1 do\n"
    "  local q, h, ev, ck = KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i], KEYS[5 + 4 * i]\n"
    "  local entry, count, job, qname = ARGV[2 + 4 * i], ARGV[3 + 4 * i], ARGV[4 + 4 * i],\n"
    "    ARGV[5 + 4 * i]\n"
    "  local qt = redis.call('TYPE', q)['ok']\n"
    "  local st = false\n"
    "  if h ~= '' then\n"
    "    local ok, v = pcall(redis.call, 'HGET', h, 'status')\n"
    "    if ok then st = v end\n"
    "  end\n"
    "  local res\n"
    "  if qt ~= 'list' and qt ~= 'none' then\n"
    "    res = 'queue_not_list'\n"
    "  elseif st and st ~= 'failed' then\n"
    "    res = 'status:' .. st\n"
    "  elseif redis.call('LREM', dead, count, entry) == 0 then\n"
    "    res = 'gone'\n"
    "  else\n"
    "    if h ~= '' then\n"
    "      redis.call('DEL', h, ev, ck)\n"
    "      redis.call('HSET', h, 'status', 'queued', 'queue', qname, 'retried_at', now)\n"
    "    end\n"
    "    redis.call('RPUSH', q, job)\n"
    "    res = 'retried'\n"
    "  end\n"
    "  out[#out + 1] = res\n"
    "end\n"
    "return out\n";

/* DEAD_PURGE: remove entries from the dead list by their exact text, in one
 * step. A dead list that is not a list fails on the first LREM, before any
 * write. Returns how many were removed. */
const char scripts_dead_purge[] =
    "local n = 0\n"
    "for i = 1, #ARGV, 2 do\n"
    "  n = n + redis.call('LREM', KEYS[1], ARGV[i], ARGV[i + 1])\n"
    "end\n"
    "return n\n";

void scripts_dead_retry_add(scripts_batch *b, const scripts_dead_retry_call *c) {
    sc_copys(&b->keys, c->queue_key);
    sc_copys(&b->keys, c->job_key);
    sc_copys(&b->keys, c->events_key);
    sc_copys(&b->keys, c->cancel_key);
    sc_copy(&b->args, c->entry, c->entry_len);
    rargs_adds(&b->args, c->from_tail ? "-1" : "1");
    sc_copy(&b->args, c->job, c->job_len);
    sc_copys(&b->args, c->queue);
    b->n++;
}

void scripts_dead_retry_args(const scripts_batch *b, const char *dead_key, long long now_ms,
                             rargs *out) {
    rargs_addll(out, 1 + b->keys.argc);
    rargs_adds(out, dead_key);
    sc_append(out, &b->keys);
    rargs_addll(out, now_ms);
    sc_append(out, &b->args);
}

void scripts_dead_purge_add(scripts_batch *b, const char *entry, size_t len, int from_tail) {
    rargs_adds(&b->args, from_tail ? "-1" : "1");
    sc_copy(&b->args, entry, len);
    b->n++;
}

void scripts_dead_purge_args(const scripts_batch *b, const char *dead_key, rargs *out) {
    rargs_adds(out, "1");
    rargs_adds(out, dead_key);
    sc_append(out, &b->args);
}

'use strict';
/*
 * chatq.js — a small chatq client for Node.js programs (ioredis).
 *
 * chatq takes jobs from Redis lists and answers through Redis, so a client is
 * a handful of Redis commands (the keys and JSON shapes are chatq's contract;
 * P is the key prefix, "chatq" unless CHATQ_PREFIX says otherwise):
 *
 *   submit   LPUSH P:queue:<queue> <job JSON>
 *   stream   SUBSCRIBE P:stream:<id>, then LRANGE P:events:<id> 0 -1 for what
 *            was published before we listened; every event carries a `seq`
 *            (0, 1, 2...), so an event seen on both is used once
 *   result   the hash P:job:<id>, or the output line chatq LPUSHes to the
 *            job's `reply_to` list (BRPOP)
 *   cancel   SET P:cancel:<id> EX ttl, then PUBLISH P:control <id>
 *
 * Subscribing *before* reading the list makes the stream gap-free: an event
 * published after the SUBSCRIBE reaches us on the channel, one published
 * before it is already in the list (chatq appends before it publishes).
 * A `retry` event means the attempt we were showing failed and a new one
 * starts from the beginning: drop what was shown. Stream events are sent
 * best effort (lost while chatq cannot reach Redis; the result never is), so
 * events() also looks at the job hash once a second and ends with its status
 * if the final event never comes.
 *
 *   const { Chatq } = require('./chatq');
 *   const c = new Chatq();                       // CHATQ_REDIS_URL, CHATQ_PREFIX
 *   const id = await c.submit(c.makeJob({ prompt: 'Say hi', stream: true }));
 *   const answer = await c.followText(id, { onText: (s) => process.stdout.write(s) });
 *   console.log(answer.status, (await c.result(id)).usage);
 *   await c.close();
 */
const crypto = require('crypto');
const Redis = require('ioredis');

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const DEFAULT_MODEL = 'gpt-4o-mini';

/* A Redis connection for chatq's URL forms: redis://[user:pass@]host:port/db
 * or unix:///path/redis.sock. */
function connect(url) {
  if (url.startsWith('unix://')) return new Redis({ path: url.slice('unix://'.length) });
  return new Redis(url);
}

/* A JSON object from an environment variable, or {}. */
function envJson(name) {
  const raw = process.env[name];
  if (!raw) return {};
  const value = JSON.parse(raw);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${name} must hold a JSON object`);
  }
  return value;
}

/* The content delta of choice 0 in a chunk event ('' if none). */
function chunkText(event) {
  const choices = (event.data && event.data.choices) || [];
  for (const choice of choices) {
    if (choice && (choice.index === undefined || choice.index === 0)) {
      const content = choice.delta && choice.delta.content;
      return typeof content === 'string' ? content : '';
    }
  }
  return '';
}

/* The content of choice 0 of a finished job's response. */
function responseText(job) {
  const choices = (job.response && job.response.choices) || [];
  const choice = choices.find((c) => (c.index || 0) === 0);
  return (choice && choice.message && choice.message.content) || '';
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Chatq {
  /* url: the Redis URL (default $CHATQ_REDIS_URL, else redis://127.0.0.1:6379/0);
   * prefix: the key prefix (default $CHATQ_PREFIX, else "chatq"). */
  constructor({ url, prefix } = {}) {
    this.url = url || process.env.CHATQ_REDIS_URL || 'redis://127.0.0.1:6379/0';
    this.prefix = prefix || process.env.CHATQ_PREFIX || 'chatq';
    this.redis = connect(this.url);
  }

  key(...parts) {
    return [this.prefix, ...parts].join(':');
  }

  /* A key of this application's own, such as a reply_to list:
   * P-examples:<parts>. Outside chatq's namespace P:, since a job's reply_to
   * may not name a key under P: (chatq's state; only a `chatq batch` run's
   * P:batch:<batch>:out is allowed there), and still apart for each prefix. */
  appKey(...parts) {
    return [`${this.prefix}-examples`, ...parts].join(':');
  }

  /* An id of our own: without one we could not follow the job. */
  static newId(kind = 'js') {
    return `${kind}-${crypto.randomBytes(12).toString('hex')}`;
  }

  /* A job object. `prompt` is one user message (or give `messages`);
   * `extraBody` is laid over the request body (default $CHATQ_EXTRA_BODY);
   * `fields` are more job fields (metadata, timeout_ms, max_attempts...). */
  makeJob({ prompt, messages, model, stream = false, id, replyTo, tenant, extraBody, fields } = {}) {
    const body = {
      model: model || process.env.CHATQ_MODEL || DEFAULT_MODEL,
      messages: messages || [{ role: 'user', content: prompt || '' }],
      ...(extraBody === undefined ? envJson('CHATQ_EXTRA_BODY') : extraBody),
    };
    const job = { id: id || Chatq.newId(), stream: Boolean(stream), body };
    if (replyTo) job.reply_to = replyTo;
    if (tenant) job.tenant = tenant;
    return { ...job, ...(fields || {}) };
  }

  /* Pushes one job; returns its id. */
  async submit(job, queue = 'default') {
    await this.redis.lpush(this.key('queue', queue), JSON.stringify(job));
    return job.id;
  }

  /* Yields the job's stream events in seq order, each once, from the first
   * (whenever we start) to the final `done` or `error` event. If the job
   * ended but its final event was lost, a last event {type, status, seq:
   * null} built from the hash stands in for it. Throws after `timeout` ms. */
  async *events(jobId, { timeout, checkEvery = 1000 } = {}) {
    const deadline = timeout ? Date.now() + timeout : Infinity;
    const sub = this.redis.duplicate();
    const inbox = [];
    let wake = null;
    sub.on('message', (_channel, message) => {
      inbox.push(message);
      if (wake) wake();
    });
    sub.on('error', () => {}); // ioredis reconnects by itself
    const f = new Follower(this, jobId);
    try {
      // ioredis resolves once Redis confirmed: from here on we get every event.
      await sub.subscribe(this.key('stream', jobId));
      await f.replay();
      let nextCheck = Date.now() + checkEvery;
      for (;;) {
        while (f.pending.length) {
          const ev = f.pending.shift();
          yield ev;
          if (ev.type === 'done' || ev.type === 'error') return;
        }
        if (inbox.length) {
          await f.accept(inbox.shift(), false);
          continue;
        }
        const now = Date.now();
        if (now >= deadline) throw new Error(`no end of job ${jobId} within ${timeout} ms`);
        if (now >= nextCheck) {
          nextCheck = now + checkEvery;
          await f.checkHash();
          continue;
        }
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, Math.min(nextCheck, deadline) - now);
          wake = () => { clearTimeout(timer); resolve(); };
        });
        wake = null;
      }
    } finally {
      sub.disconnect();
    }
  }

  /* Follows a streamed job to its end, joining the content of choice 0.
   * onText(piece) as pieces arrive; onRetry(event) when an attempt failed
   * after some of it was shown: drop what you showed (the returned text
   * starts over by itself). Resolves to {status, text, error, retries,
   * finishReason, usage}. */
  async followText(jobId, { onText, onRetry, timeout } = {}) {
    const answer = { status: null, text: '', error: null, retries: 0, finishReason: null, usage: null };
    let minAttempt = 0; // chunks of earlier attempts are void
    for await (const ev of this.events(jobId, { timeout })) {
      if (ev.type === 'chunk' && (ev.attempt || 0) >= minAttempt) {
        const piece = chunkText(ev);
        if (piece) {
          answer.text += piece;
          if (onText) onText(piece);
        }
      } else if (ev.type === 'retry') {
        minAttempt = (ev.attempt || 0) + 1;
        answer.text = '';
        answer.retries += 1;
        if (onRetry) onRetry(ev);
      } else if (ev.type === 'done' || ev.type === 'error') {
        answer.status = ev.status || (ev.type === 'done' ? 'succeeded' : 'failed');
        answer.error = ev.error || null;
        answer.finishReason = ev.finish_reason || null;
        answer.usage = ev.usage || null;
      }
    }
    return answer;
  }

  /* The job hash with its JSON fields parsed ({} if there is none). */
  async job(jobId) {
    const h = await this.redis.hgetall(this.key('job', jobId));
    for (const f of ['response', 'usage', 'error', 'metadata']) if (f in h) h[f] = JSON.parse(h[f]);
    for (const f of ['attempts', 'started_at', 'first_token_at', 'finished_at']) if (f in h) h[f] = Number(h[f]);
    return h;
  }

  /* Polls the job hash until the job ended; resolves to job(). Fine for a
   * few jobs; for many, prefer reply_to and waitReply(). */
  async result(jobId, { timeout, poll = 100 } = {}) {
    const deadline = timeout ? Date.now() + timeout : Infinity;
    for (;;) {
      if (TERMINAL.has(await this.redis.hget(this.key('job', jobId), 'status'))) return this.job(jobId);
      if (Date.now() >= deadline) throw new Error(`job ${jobId} has not ended within ${timeout} ms`);
      await sleep(poll);
    }
  }

  /* Waits for one output line on a reply_to list (BRPOP, on a connection of
   * its own since it blocks); resolves to it parsed, or null after
   * `timeoutS` seconds (0: forever). */
  async waitReply(replyKey, timeoutS = 0) {
    const conn = this.redis.duplicate();
    try {
      const got = await conn.brpop(replyKey, timeoutS);
      return got ? JSON.parse(got[1]) : null;
    } finally {
      conn.disconnect();
    }
  }

  /* Cancels a queued or running job; it ends `cancelled`. */
  async cancel(jobId, ttl = 86400) {
    await this.redis
      .pipeline()
      .set(this.key('cancel', jobId), '1', 'EX', ttl)
      .publish(this.key('control'), jobId)
      .exec();
  }

  async close() {
    await this.redis.quit();
  }
}

/* The state of one events() call: the seq expected next and the events
 * ready to hand out. */
class Follower {
  constructor(client, jobId) {
    this.c = client;
    this.jobId = jobId;
    this.nextSeq = 0;
    this.pending = [];
  }

  /* Takes one event text, from the list or from the channel. */
  async accept(raw, fromList) {
    let ev;
    try {
      ev = JSON.parse(raw);
    } catch (e) {
      return; // not an event: a stray publisher must not stop us
    }
    if (!ev || !Number.isInteger(ev.seq)) return;
    if (ev.seq > this.nextSeq && !fromList) {
      // A hole: the missing events are in the list by now (chatq appends
      // before it publishes); what is still missing was lost, and skipped.
      await this.replay();
    }
    if (ev.seq >= this.nextSeq) {
      this.pending.push(ev);
      this.nextSeq = ev.seq + 1;
    }
  }

  async replay() {
    const list = await this.c.redis.lrange(this.c.key('events', this.jobId), 0, -1);
    for (const raw of list) await this.accept(raw, true);
  }

  /* When the hash says the job ended and no final event came even in the
   * list, a stand-in final event is queued. */
  async checkHash() {
    const status = await this.c.redis.hget(this.c.key('job', this.jobId), 'status');
    if (!TERMINAL.has(status)) return;
    await this.replay();
    if (this.pending.some((e) => e.type === 'done' || e.type === 'error')) return;
    this.pending.push({ type: status === 'succeeded' ? 'done' : 'error', status, seq: null });
  }
}

module.exports = { Chatq, chunkText, responseText, TERMINAL };

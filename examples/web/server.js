#!/usr/bin/env node
'use strict';
/*
 * server.js — a bridge between a browser and chatq: it pushes a job for a
 * prompt and serves the job's stream events as Server-Sent Events (SSE), so
 * a page can show the answer as the model writes it. Node's http module and
 * ioredis; no framework.
 *
 *   GET  /                        the page (public/index.html, public/app.js)
 *   POST /api/jobs                {"prompt": "..."} -> 201 {"id": "web-..."}
 *   GET  /api/jobs/<id>/events    the job's events as SSE, `id:` = seq
 *   POST /api/jobs/<id>/cancel    cancels the job -> 202 {"id": ...}
 *   GET  /api/jobs/<id>           {"id", "status", "error"} from the job hash
 *
 * Resuming. Each SSE message carries the event's seq as its `id:`. A browser
 * whose EventSource reconnects sends the last one back in the Last-Event-ID
 * header; a page that was reloaded passes it as ?lastEventId=N. Either way
 * the bridge subscribes to P:stream:<id> first, then reads P:events:<id>
 * (what was published before it listened), and sends only the events with a
 * seq above N, each once: nothing is lost between the two reads, nothing is
 * sent twice. If the client already has the final event, the answer is 204,
 * which tells an EventSource to stop reconnecting.
 *
 * All SSE connections share one subscriber connection to Redis (one
 * SUBSCRIBE per job followed, whatever the number of browser tabs).
 *
 * Environment: PORT (default 8080; 0 picks a free one), HOST (default
 * 127.0.0.1), CHATQ_REDIS_URL, CHATQ_PREFIX, CHATQ_QUEUE (default
 * "default"), CHATQ_MODEL (default gpt-4o-mini), CHATQ_EXTRA_BODY (a JSON
 * object laid over every request body). The bridge has no authentication:
 * keep it on loopback, or behind your application's own.
 */
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const Redis = require('ioredis');

const PREFIX = process.env.CHATQ_PREFIX || 'chatq';
const QUEUE = process.env.CHATQ_QUEUE || 'default';
const MODEL = process.env.CHATQ_MODEL || 'gpt-4o-mini';
const EXTRA_BODY = process.env.CHATQ_EXTRA_BODY ? JSON.parse(process.env.CHATQ_EXTRA_BODY) : {};
const REDIS_URL = process.env.CHATQ_REDIS_URL || 'redis://127.0.0.1:6379/0';
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const MAX_BODY = 64 * 1024;
const KEEPALIVE_MS = 15000;   // an SSE comment, so proxies keep the connection
const HASH_CHECK_MS = 1000;   // how often a stream looks for a lost final event
const PUBLIC = path.join(__dirname, 'public');
const STATIC = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
};

const key = (...parts) => [PREFIX, ...parts].join(':');

function connect(url) {
  if (url.startsWith('unix://')) return new Redis({ path: url.slice('unix://'.length) });
  return new Redis(url);
}

const redis = connect(REDIS_URL);
redis.on('error', (e) => console.error(`bridge: redis: ${e.message}`));

/* One subscriber connection for every SSE client: channel -> listeners.
 * add() resolves once Redis confirmed the subscription, so that the caller
 * may then read the events list knowing no later event can slip by. */
class Hub {
  constructor(client) {
    this.sub = client.duplicate();
    this.sub.on('error', (e) => console.error(`bridge: subscriber: ${e.message}`));
    this.channels = new Map(); // channel -> { fns: Set, ready: Promise }
    this.sub.on('message', (channel, message) => {
      const entry = this.channels.get(channel);
      if (entry) for (const fn of entry.fns) fn(message);
    });
  }

  async add(channel, fn) {
    let entry = this.channels.get(channel);
    if (!entry) {
      const ready = this.sub.subscribe(channel).catch((e) => {
        // Forget the channel, so that the next client tries again.
        if (this.channels.get(channel) === entry) this.channels.delete(channel);
        throw e;
      });
      entry = { fns: new Set(), ready };
      this.channels.set(channel, entry);
    }
    entry.fns.add(fn);
    await entry.ready;
  }

  remove(channel, fn) {
    const entry = this.channels.get(channel);
    if (!entry) return;
    entry.fns.delete(fn);
    if (entry.fns.size === 0) {
      this.channels.delete(channel);
      this.sub.unsubscribe(channel).catch(() => {});
    }
  }
}

const hub = new Hub(redis);

function sendJson(res, status, obj) {
  const data = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
  res.end(data);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const parts = [];
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new Error('request body too large'));
        req.destroy();
      } else {
        parts.push(chunk);
      }
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

/* POST /api/jobs: one streamed job for the prompt. */
async function createJob(req, res) {
  let prompt;
  try {
    prompt = JSON.parse(await readBody(req)).prompt;
  } catch (e) {
    return sendJson(res, 400, { error: 'expected a JSON body {"prompt": "..."}' });
  }
  if (typeof prompt !== 'string' || !prompt.trim()) {
    return sendJson(res, 400, { error: 'prompt must be a non-empty string' });
  }
  const id = `web-${crypto.randomBytes(12).toString('hex')}`;
  const job = {
    id,
    stream: true,
    body: { model: MODEL, messages: [{ role: 'user', content: prompt }], ...EXTRA_BODY },
  };
  await redis.lpush(key('queue', QUEUE), JSON.stringify(job));
  return sendJson(res, 201, { id });
}

/* The seq the client already has: Last-Event-ID (an EventSource
 * reconnecting) wins over ?lastEventId= (a page resuming after a reload);
 * -1 when neither, or not a number. */
function lastSeq(req, url) {
  const raw = req.headers['last-event-id'] || url.searchParams.get('lastEventId');
  return raw !== undefined && raw !== null && /^\d+$/.test(raw) ? Number(raw) : -1;
}

/* GET /api/jobs/<id>/events: subscribe, replay the list, then go live. */
async function streamEvents(req, res, id, url) {
  const channel = key('stream', id);
  let nextSeq = lastSeq(req, url) + 1;
  let ended = false;
  let keepalive = null;
  let hashCheck = null;
  // Events are handled one at a time, in order. Messages from the channel
  // wait behind the gate until the list has been replayed.
  let openGate;
  let chain = new Promise((resolve) => { openGate = resolve; });

  const finish = () => {
    if (ended) return;
    ended = true;
    clearInterval(keepalive);
    clearInterval(hashCheck);
    hub.remove(channel, onMessage);
    openGate();
    if (res.headersSent && !res.writableEnded) res.end();
  };

  const send = (ev) => {
    const idLine = Number.isInteger(ev.seq) ? `id: ${ev.seq}\n` : '';
    res.write(`${idLine}data: ${JSON.stringify(ev)}\n\n`);
    if (ev.type === 'done' || ev.type === 'error') finish();
  };

  const parse = (raw) => {
    try {
      const ev = JSON.parse(raw);
      return ev && Number.isInteger(ev.seq) ? ev : null;
    } catch (e) {
      return null; // not an event: a stray publisher must not stop us
    }
  };

  const replay = async () => {
    for (const raw of await redis.lrange(key('events', id), 0, -1)) accept(raw, true);
  };

  // One event's text. From the channel, a seq above the one expected means
  // we missed some: they are in the list by now (chatq appends an event
  // before it publishes it), so read the list first.
  function accept(raw, fromList) {
    const ev = ended ? null : parse(raw);
    if (!ev) return null;
    if (ev.seq > nextSeq && !fromList) return replay().then(() => accept(raw, true));
    if (ev.seq >= nextSeq) {
      nextSeq = ev.seq + 1;
      send(ev);
    }
    return null;
  }

  function onMessage(raw) {
    chain = chain.then(() => accept(raw, false)).catch(fail);
  }

  function fail(e) {
    console.error(`bridge: events of ${id}: ${e.message}`);
    finish();
  }

  req.on('close', finish);
  // Subscribe first (resolved once Redis confirmed), then read the list:
  // an event is in the list, or on the channel from now on, or both.
  await hub.add(channel, onMessage);
  const list = await redis.lrange(key('events', id), 0, -1);
  if (ended) return; // the client went away meanwhile
  const final = list.map(parse).find((ev) => ev && (ev.type === 'done' || ev.type === 'error'));
  if (final && final.seq < nextSeq) {
    // The client has seen the end: 204 stops an EventSource for good.
    finish();
    res.writeHead(204);
    res.end();
    return;
  }
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no', // nginx: do not buffer the stream
  });
  res.write('retry: 1000\n\n');
  for (const raw of list) accept(raw, true);
  openGate();
  if (ended) return; // the list held the final event

  keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS);
  // Stream events are best effort: if the job ended and no final event
  // came, a stand-in built from the hash ends the stream (without an id).
  hashCheck = setInterval(() => {
    chain = chain.then(async () => {
      if (ended) return;
      const [status, error] = await redis.hmget(key('job', id), 'status', 'error');
      if (!TERMINAL.has(status)) return;
      await replay();
      if (!ended) {
        send({ type: status === 'succeeded' ? 'done' : 'error', status,
          error: error ? JSON.parse(error) : undefined, seq: null });
      }
    }).catch(fail);
  }, HASH_CHECK_MS);
}

async function cancelJob(res, id) {
  await redis.pipeline().set(key('cancel', id), '1', 'EX', 86400).publish(key('control'), id).exec();
  return sendJson(res, 202, { id });
}

async function jobStatus(res, id) {
  const [status, error] = await redis.hmget(key('job', id), 'status', 'error');
  if (!status) return sendJson(res, 404, { id, error: 'no such job (yet)' });
  return sendJson(res, 200, { id, status, error: error ? JSON.parse(error) : null });
}

function serveStatic(res, [file, type]) {
  fs.readFile(path.join(PUBLIC, file), (err, data) => {
    if (err) return sendJson(res, 500, { error: 'cannot read ' + file });
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': data.length, 'Cache-Control': 'no-cache' });
    return res.end(data);
  });
}

async function route(req, res) {
  const url = new URL(req.url, 'http://bridge');
  const p = url.pathname;
  if (req.method === 'GET' && STATIC[p]) return serveStatic(res, STATIC[p]);
  if (req.method === 'POST' && p === '/api/jobs') return createJob(req, res);
  const m = /^\/api\/jobs\/([^/]+)(\/events|\/cancel)?$/.exec(p);
  if (m) {
    const id = decodeURIComponent(m[1]);
    if (!ID_RE.test(id)) return sendJson(res, 400, { error: 'bad job id' });
    if (req.method === 'GET' && m[2] === '/events') return streamEvents(req, res, id, url);
    if (req.method === 'POST' && m[2] === '/cancel') return cancelJob(res, id);
    if (req.method === 'GET' && !m[2]) return jobStatus(res, id);
  }
  return sendJson(res, 404, { error: 'not found' });
}

const server = http.createServer((req, res) => {
  route(req, res).catch((e) => {
    console.error(`bridge: ${req.method} ${req.url}: ${e.message}`);
    if (!res.headersSent) sendJson(res, 500, { error: e.message });
    else res.end();
  });
});

server.listen(Number(process.env.PORT || 8080), process.env.HOST || '127.0.0.1', () => {
  const { address, port } = server.address();
  console.log(`bridge: listening on http://${address}:${port}/ (Redis ${REDIS_URL.replace(/\/\/[^@]*@/, '//***@')}, prefix ${PREFIX})`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections?.(); // SSE connections would hold close() open
    redis.disconnect();
    hub.sub.disconnect();
  });
}

#!/usr/bin/env node
'use strict';
/*
 * ask.js — submit one prompt to chatq and print the answer as it streams.
 *
 *   node ask.js [-m MODEL] [--queue Q] [--tenant T] [--id ID] [--no-stream] PROMPT
 *
 * Prints the job id on stderr, then the answer on stdout piece by piece
 * (with --no-stream: whole, from the job hash, once the job ended). If an
 * attempt fails after part of the answer was shown, the partial line is
 * ended, a note goes to stderr and the answer starts over. Exit status: 0
 * succeeded, 1 failed or cancelled, 2 on a Redis error or timeout.
 * Environment: CHATQ_REDIS_URL, CHATQ_PREFIX, CHATQ_MODEL, CHATQ_EXTRA_BODY.
 */
const { parseArgs } = require('util');
const { Chatq, responseText } = require('./chatq');

async function main() {
  const { values: o, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      model: { type: 'string', short: 'm' },
      queue: { type: 'string', default: 'default' },
      tenant: { type: 'string' },
      id: { type: 'string' },
      'no-stream': { type: 'boolean', default: false },
      timeout: { type: 'string', default: '600' },
    },
  });
  if (positionals.length !== 1) throw new Error('usage: node ask.js [options] PROMPT');
  const timeout = Number(o.timeout) * 1000;
  const c = new Chatq();
  try {
    const stream = !o['no-stream'];
    const job = c.makeJob({ prompt: positionals[0], model: o.model, stream, id: o.id, tenant: o.tenant });
    const id = await c.submit(job, o.queue);
    process.stderr.write(`${id}\n`);
    if (!stream) {
      const h = await c.result(id, { timeout });
      if (h.status === 'succeeded') {
        process.stdout.write(`${responseText(h)}\n`);
        return 0;
      }
      process.stderr.write(`job ${id} ${h.status}: ${JSON.stringify(h.error)}\n`);
      return 1;
    }
    let shown = false;
    const answer = await c.followText(id, {
      timeout,
      onText: (piece) => { process.stdout.write(piece); shown = true; },
      onRetry: (ev) => {
        if (shown) process.stdout.write('\n');
        shown = false;
        process.stderr.write(`[attempt ${ev.attempt} failed (${(ev.error || {}).code}); starting over]\n`);
      },
    });
    if (shown) process.stdout.write('\n');
    if (answer.status === 'succeeded') return 0;
    const err = answer.error || {};
    process.stderr.write(`job ${id} ${answer.status}: ${err.message || err.code || ''}\n`);
    return 1;
  } finally {
    await c.close();
  }
}

main().then((rc) => { process.exitCode = rc; }, (e) => {
  process.stderr.write(`ask.js: ${e.message}\n`);
  process.exitCode = 2;
});

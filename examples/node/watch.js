#!/usr/bin/env node
'use strict';
/*
 * watch.js — follow a chatq job that is already queued, running or done.
 *
 *   node watch.js JOB_ID
 *
 * Prints the job's answer from its first chunk whenever you start: what was
 * published before is read from P:events:<id> (after subscribing, so nothing
 * falls in between), the rest comes live. Exit status: 0 succeeded, 1 failed
 * or cancelled, 2 on a Redis error or timeout.
 */
const { parseArgs } = require('util');
const { Chatq } = require('./chatq');

async function main() {
  const { values: o, positionals } = parseArgs({
    allowPositionals: true,
    options: { timeout: { type: 'string', default: '600' } },
  });
  if (positionals.length !== 1) throw new Error('usage: node watch.js JOB_ID');
  const id = positionals[0];
  const c = new Chatq();
  try {
    let shown = false;
    const answer = await c.followText(id, {
      timeout: Number(o.timeout) * 1000,
      onText: (piece) => { process.stdout.write(piece); shown = true; },
      onRetry: (ev) => {
        if (shown) process.stdout.write('\n');
        shown = false;
        process.stderr.write(`[attempt ${ev.attempt} failed (${(ev.error || {}).code}); starting over]\n`);
      },
    });
    if (shown) process.stdout.write('\n');
    const err = answer.error;
    process.stderr.write(`job ${id} ${answer.status}${err ? `: ${err.code}: ${err.message}` : ''}\n`);
    return answer.status === 'succeeded' ? 0 : 1;
  } finally {
    await c.close();
  }
}

main().then((rc) => { process.exitCode = rc; }, (e) => {
  process.stderr.write(`watch.js: ${e.message}\n`);
  process.exitCode = 2;
});

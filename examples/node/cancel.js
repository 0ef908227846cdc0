#!/usr/bin/env node
'use strict';
/*
 * cancel.js — cancel a queued or running chatq job.
 *
 *   node cancel.js JOB_ID [--ttl SECONDS]
 *
 * Sets P:cancel:<id> (expiring after --ttl, default one day) and publishes
 * the id on P:control: a running job is aborted at once, a queued one is
 * dropped when a worker reaches it; it ends `cancelled`.
 */
const { parseArgs } = require('util');
const { Chatq } = require('./chatq');

async function main() {
  const { values: o, positionals } = parseArgs({
    allowPositionals: true,
    options: { ttl: { type: 'string', default: '86400' } },
  });
  if (positionals.length !== 1) throw new Error('usage: node cancel.js JOB_ID [--ttl SECONDS]');
  const c = new Chatq();
  try {
    await c.cancel(positionals[0], Number(o.ttl));
    process.stdout.write(`cancel requested for ${positionals[0]}\n`);
    return 0;
  } finally {
    await c.close();
  }
}

main().then((rc) => { process.exitCode = rc; }, (e) => {
  process.stderr.write(`cancel.js: ${e.message}\n`);
  process.exitCode = 2;
});

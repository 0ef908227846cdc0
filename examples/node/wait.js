#!/usr/bin/env node
'use strict';
/*
 * wait.js — submit one prompt without streaming and wait for its result.
 *
 *   node wait.js [-m MODEL] [--poll] PROMPT
 *
 * The job names a reply_to list (P-examples:reply:<id>, a key of our own:
 * reply_to may not name one of chatq's, under P:); when it ends, chatq
 * pushes its output line there (OpenAI Batch output format) and BRPOP wakes
 * us. With --poll the job hash P:job:<id> is read every 100 ms instead.
 * Prints the answer; exit status 0 succeeded, 1 failed or cancelled, 2 on a
 * Redis error or timeout.
 */
const { parseArgs } = require('util');
const { Chatq, responseText } = require('./chatq');

async function main() {
  const { values: o, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      model: { type: 'string', short: 'm' },
      queue: { type: 'string', default: 'default' },
      poll: { type: 'boolean', default: false },
      timeout: { type: 'string', default: '600' },
    },
  });
  if (positionals.length !== 1) throw new Error('usage: node wait.js [options] PROMPT');
  const c = new Chatq();
  try {
    const id = Chatq.newId();
    const replyTo = o.poll ? undefined : c.appKey('reply', id);
    await c.submit(c.makeJob({ prompt: positionals[0], model: o.model, id, replyTo }), o.queue);
    process.stderr.write(`${id}\n`);
    if (o.poll) {
      const h = await c.result(id, { timeout: Number(o.timeout) * 1000 });
      if (h.status === 'succeeded') {
        process.stdout.write(`${responseText(h)}\n`);
        return 0;
      }
      process.stderr.write(`job ${id} ${h.status}: ${JSON.stringify(h.error)}\n`);
      return 1;
    }
    const line = await c.waitReply(replyTo, Number(o.timeout));
    if (!line) throw new Error(`no answer within ${o.timeout} s`);
    // A final HTTP answer fills `response`; a failure without one sets `error`.
    const resp = line.response || {};
    if (line.error === null && resp.status_code === 200) {
      process.stdout.write(`${resp.body.choices[0].message.content || ''}\n`);
      return 0;
    }
    process.stderr.write(`job ${id} failed: ${JSON.stringify(line.error || resp.body)}\n`);
    return 1;
  } finally {
    await c.close();
  }
}

main().then((rc) => { process.exitCode = rc; }, (e) => {
  process.stderr.write(`wait.js: ${e.message}\n`);
  process.exitCode = 2;
});

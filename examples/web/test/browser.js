#!/usr/bin/env node
'use strict';
/*
 * test/browser.js — drives the page in headless Chromium (playwright-core
 * with Debian's /usr/bin/chromium; no browser download) the way a person
 * would, and prints what it saw as one JSON object on stdout. The checks on
 * it, and on the job hashes in Redis, are made by the caller
 * (tests/e2e/test_examples_web.py); this script only fails (exit 1) when a
 * step does not happen within its timeout.
 *
 *   BRIDGE_URL=http://127.0.0.1:PORT/ node test/browser.js
 *
 * The bridge must answer slowly enough to reload mid-stream (the e2e test
 * sets the stand-in upstream's paced streaming, `chunk_delay_ms`). Steps:
 *   1. type a prompt, send; wait until the page shows WAIT_FOR (a token)
 *      while its status is still "streaming";
 *   2. reload the page; note what it shows at once (the saved text), then
 *      wait for the end and note the final text and status;
 *   3. send another prompt; once a token shows, press Cancel; wait for the
 *      status "cancelled".
 * Environment: BRIDGE_URL, PROMPT, WAIT_FOR (default "w03"), CHROMIUM
 * (default /usr/bin/chromium), STEP_TIMEOUT_MS (default 15000),
 * SCREENSHOT (a PNG path: the page after step 2), TRACE=1 (step times on
 * stderr).
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const BASE = process.env.BRIDGE_URL;
const PROMPT = process.env.PROMPT || 'Tell me a story';
const WAIT_FOR = process.env.WAIT_FOR || 'w03';
const TIMEOUT = Number(process.env.STEP_TIMEOUT_MS || 15000);
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/* What the page shows: status, answer text and job id. */
async function look(page) {
  return page.evaluate(() => ({
    status: document.getElementById('status').dataset.status,
    text: document.getElementById('answer').textContent,
    job: document.getElementById('job').textContent.replace(/^job /, ''),
  }));
}

async function waitPage(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: TIMEOUT, polling: 10 });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}; the page shows ${JSON.stringify(await look(page))}`);
  }
}

const streamingWith = ([token]) =>
  document.getElementById('status').dataset.status === 'streaming' &&
  document.getElementById('answer').textContent.includes(token);

const ended = () => ['succeeded', 'failed', 'cancelled']
  .includes(document.getElementById('status').dataset.status);

const T0 = Date.now();
const mark = (w) => process.env.TRACE && process.stderr.write(`${Date.now() - T0} ms: ${w}\n`);
async function main() {
  if (!BASE) throw new Error('BRIDGE_URL is not set');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chatq-chromium-'));
  // A fresh profile each run: launchPersistentContext is how playwright
  // takes a --user-data-dir.
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS,
  });
  const report = {};
  try {
    mark('launched');
    const page = ctx.pages()[0] || await ctx.newPage();
    page.setDefaultTimeout(TIMEOUT);
    await page.goto(BASE);

    // 1. A prompt typed and sent; tokens show while it streams.
    await page.fill('#prompt', PROMPT);
    await page.click('#send');
    await waitPage(page, `"${WAIT_FOR}" while streaming`, streamingWith, [WAIT_FOR]);
    mark('streaming');
    report.before_reload = await look(page);

    // 2. A reload mid-stream: the saved text shows at once, the rest follows.
    await page.reload();
    report.after_reload = await look(page);
    await waitPage(page, 'the end of the first job', ended);
    mark('ended');
    report.final = await look(page);
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });

    // 3. Cancel.
    await page.fill('#prompt', 'a second question, cancelled');
    await page.click('#send');
    await waitPage(page, 'a token of the second job', streamingWith, ['w01']);
    report.cancel_before = await look(page);
    await page.click('#cancel');
    await waitPage(page, 'the end of the second job', ended);
    mark('cancelled');
    report.cancel_final = await look(page);
  } finally {
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  mark('closed');
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((e) => {
  process.stderr.write(`browser.js: ${e.stack || e.message}\n`);
  process.exitCode = 1;
});

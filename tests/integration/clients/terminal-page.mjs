#!/usr/bin/env node
// Opens a sandbox's web terminal ({sandbox_url}/terminal/?token=KEY) in Debian's Chromium as a person
// following a shared link does, types `echo $((6*7))` and waits for 42 on the screen (xterm's rows, read
// from the DOM); then makes the window smaller and checks that the terminal's size followed (the page sent
// a resize, and `stty size` in the shell agrees with xterm). Checks that everything the page loaded came
// from the sandbox URL itself (no CDN), with the cookie alone, and that the key is not in the page's URL.
// Prints one JSON object (the key never appears in it); exits 0 when every check held, 1 otherwise.
//
//   terminal-page.mjs SANDBOX_URL --token KEY [--timeout-ms MS] [--chromium PATH]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { finish, usage } from './common.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    token: { type: 'string' },
    'timeout-ms': { type: 'string', default: '30000' },
    chromium: { type: 'string', default: process.env.MODBOX_CHROMIUM || '/usr/bin/chromium' },
  },
});
if (positionals.length !== 1 || !values.token) usage('usage: terminal-page.mjs SANDBOX_URL --token KEY [--timeout-ms MS]');

const key = values.token;
const redact = (text) => String(text).split(key).join('<key>');
const timeout = Number(values['timeout-ms']);
const start = new URL('/terminal/', positionals[0]);
start.searchParams.set('token', key);
const origin = start.origin;

const result = { ok: false, failures: [], final_url: null, requests: [], foreign_requests: [], websocket: null,
                 sent_resizes: [], screen_after_echo: null, size_after_resize: null, console: [] };
const fail = (message) => result.failures.push(redact(message));
const screen = (page) => page.evaluate(() =>
  [...document.querySelectorAll('.xterm-rows > div')].map((row) => row.textContent.replace(/\u00a0/g, ' ').trimEnd()));

const userDataDir = mkdtempSync(join(tmpdir(), 'modbox-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: values.chromium,
    headless: true,
    timeout,
    viewport: { width: 1000, height: 700 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-proxy-server'],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  page.on('request', (request) => {
    const url = new URL(request.url());
    const entry = { url: redact(url.origin + url.pathname), origin_ok: url.origin === origin || url.protocol === 'data:' };
    result.requests.push(entry.url);
    if (!entry.origin_ok) result.foreign_requests.push(entry.url);
  });
  page.on('console', (message) => result.console.push(redact(`${message.type()}: ${message.text()}`)));
  page.on('pageerror', (error) => result.console.push(redact(`pageerror: ${error}`)));
  const socketReady = new Promise((resolve) => {
    page.on('websocket', (socket) => {
      const url = new URL(socket.url());
      result.websocket = { url: redact(url.toString()), received_text: [], closed: false };
      socket.on('framesent', (frame) => {
        if (typeof frame.payload !== 'string') return;
        const message = JSON.parse(frame.payload);
        if (message.type === 'resize') result.sent_resizes.push(message);
      });
      socket.on('framereceived', (frame) => {
        if (typeof frame.payload !== 'string') return;
        result.websocket.received_text.push(frame.payload.slice(0, 200));
        if (JSON.parse(frame.payload).type === 'ready') resolve();
      });
      socket.on('close', () => { result.websocket.closed = true; });
    });
  });

  const landed = await page.goto(start.toString(), { waitUntil: 'load' });
  result.final_url = redact(page.url());
  if (new URL(page.url()).searchParams.has('token')) fail('the page URL still carries the token');
  if (landed?.status() !== 200) fail(`the page answered ${landed?.status()}`);
  await page.waitForSelector('.xterm-rows');
  await socketReady;

  // The shell is started: type into the terminal as a person does, and wait for the answer on screen.
  await page.locator('.xterm').click();
  await page.keyboard.type('echo $((6*7))');
  await page.keyboard.press('Enter');
  try {
    await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')]
      .some((row) => row.textContent.replace(/\u00a0/g, ' ').trim() === '42'), null, { timeout });
  } catch (error) {
    fail(`42 did not appear on the terminal: ${error.message}`);
  }
  result.screen_after_echo = (await screen(page)).filter((row) => row !== '');

  // A smaller window: the page refits xterm and tells the shell's terminal its new size.
  const resizesBefore = result.sent_resizes.length;
  await page.setViewportSize({ width: 640, height: 420 });
  const deadline = Date.now() + timeout;
  while (result.sent_resizes.length === resizesBefore && Date.now() < deadline) await page.waitForTimeout(50);
  const size = await page.evaluate(() => ({ rows: document.querySelectorAll('.xterm-rows > div').length }));
  if (result.sent_resizes.length === resizesBefore) {
    fail('the page sent no resize when the window shrank');
  } else {
    const sent = result.sent_resizes[result.sent_resizes.length - 1];
    if (sent.rows !== size.rows) fail(`the page sent ${sent.rows} rows but shows ${size.rows}`);
    await page.keyboard.type('echo size=$(stty size)');
    await page.keyboard.press('Enter');
    const wanted = `size=${sent.rows} ${sent.cols}`;
    try {
      await page.waitForFunction((wanted) => [...document.querySelectorAll('.xterm-rows > div')]
        .some((row) => row.textContent.replace(/\u00a0/g, ' ').trim() === wanted), wanted, { timeout });
      result.size_after_resize = wanted;
    } catch (error) {
      fail(`the shell's terminal did not take the new size (${wanted}): ${(await screen(page)).filter(Boolean).slice(-5).join(' | ')}`);
    }
  }
  if (result.foreign_requests.length > 0) fail(`the page loaded from elsewhere: ${result.foreign_requests.join(', ')}`);
  for (const path of ['/terminal/', '/terminal/xterm.js', '/terminal/xterm.css', '/terminal/addon-fit.js', '/terminal/terminal.js'])
    if (!result.requests.includes(origin + path)) fail(`${path} was not loaded`);
  if (!result.websocket) fail('the page opened no WebSocket');
  else if (!new URL(result.websocket.url).pathname.endsWith('/terminal/ws')) fail(`the WebSocket went to ${result.websocket.url}`);
} catch (error) {
  fail(`${error.name}: ${error.message}`);
} finally {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
result.ok = result.failures.length === 0;
finish(result);

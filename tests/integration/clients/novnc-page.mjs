#!/usr/bin/env node
// Opens the desktop sandbox's URL in the host's Debian Chromium (headless, through playwright-core) as a
// person does: URL/?token=KEY once, then the redirects (the front's, / → /vnc/ → noVNC's page). Waits until
// noVNC says it is connected and its canvas shows the desktop: a share of at least --min-share of the
// canvas's pixels within a small distance of --colour (what the sandbox's browser was made to show).
// Saves a screenshot of the page to --screenshot. Prints one JSON object (the key never appears in it);
// exits 0 when every check held, 1 otherwise, 2 on bad usage.
//
//   novnc-page.mjs URL --colour RRGGBB --screenshot PATH [--min-share 0.5] [--timeout-ms MS] [--chromium PATH]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { finish, usage } from './common.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    colour: { type: 'string' },
    screenshot: { type: 'string' },
    'min-share': { type: 'string', default: '0.5' },
    'timeout-ms': { type: 'string', default: '60000' },
    chromium: { type: 'string', default: process.env.MODBOX_CHROMIUM || '/usr/bin/chromium' },
  },
});
if (positionals.length !== 1 || !/^[0-9a-fA-F]{6}$/.test(values.colour ?? '') || !values.screenshot)
  usage('usage: novnc-page.mjs URL --colour RRGGBB --screenshot PATH [--min-share S] [--timeout-ms MS] [--chromium PATH]');

const start = new URL(positionals[0]);
const key = start.searchParams.get('token');
const redact = (text) => (key ? String(text).split(key).join('<key>') : String(text));
const timeout = Number(values['timeout-ms']);
const minShare = Number(values['min-share']);
const colour = [0, 2, 4].map((at) => parseInt(values.colour.slice(at, at + 2), 16));

const result = { ok: false, failures: [], url: redact(start), redirects: [], final_url: null, title: null,
                 connected: false, canvas: null, share: null, websockets: [], console: [] };
const fail = (message) => result.failures.push(redact(message));

const userDataDir = mkdtempSync(join(tmpdir(), 'modbox-chromium-'));
let context;
let page;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: values.chromium,
    headless: true,
    timeout,
    viewport: { width: 1280, height: 720 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-proxy-server'],
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  page.on('websocket', (socket) => {
    const record = { url: redact(socket.url()), closed: false };
    result.websockets.push(record);
    socket.on('close', () => { record.closed = true; });
  });
  page.on('console', (message) => result.console.push(redact(`${message.type()}: ${message.text()}`)));
  page.on('pageerror', (error) => result.console.push(redact(`pageerror: ${error}`)));

  const landed = await page.goto(start.toString(), { waitUntil: 'load' });
  for (let request = landed?.request().redirectedFrom(); request; request = request.redirectedFrom()) {
    const answer = await request.response();
    result.redirects.unshift({ url: redact(request.url()), status: answer?.status(),
                               location: redact(await answer?.headerValue('location')) });
  }
  result.final_url = redact(page.url());
  result.title = await page.title();
  if (landed?.status() !== 200) fail(`the page answered ${landed?.status()}`);
  const finalUrl = new URL(page.url());
  if (finalUrl.pathname !== '/vnc/vnc.html') fail(`the redirects ended at ${finalUrl.pathname}, not /vnc/vnc.html`);
  if (finalUrl.searchParams.has('token')) fail('the page URL still carries the token');

  // noVNC connects on its own (autoconnect) and marks the document once the VNC session is up.
  try {
    await page.waitForFunction(() => document.documentElement.classList.contains('noVNC_connected'), null,
                               { timeout, polling: 100 });
    result.connected = true;
  } catch {
    fail(`noVNC did not connect; its status: ${await page.textContent('#noVNC_status').catch(() => null)}`);
  }
  // The desktop arrives in framebuffer updates after the connection: poll the canvas's pixels until enough of
  // them are the colour, or the deadline passes.
  if (result.connected) {
    const measure = () => page.evaluate(([r, g, b]) => {
      const canvas = document.querySelector('#noVNC_container canvas') ?? document.querySelector('canvas');
      if (!canvas || canvas.width === 0 || canvas.height === 0) return null;
      const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
      let matching = 0;
      let total = 0;
      for (let at = 0; at < data.length; at += 4 * 7) {  // every 7th pixel: plenty, and quick
        total += 1;
        if (Math.abs(data[at] - r) <= 24 && Math.abs(data[at + 1] - g) <= 24 && Math.abs(data[at + 2] - b) <= 24)
          matching += 1;
      }
      return { width: canvas.width, height: canvas.height, share: matching / total };
    }, colour);
    const deadline = Date.now() + timeout;
    for (;;) {
      const measured = await measure();
      if (measured) {
        result.canvas = { width: measured.width, height: measured.height };
        result.share = measured.share;
        if (measured.share >= minShare) break;
      }
      if (Date.now() >= deadline) {
        fail(`the canvas (${JSON.stringify(result.canvas)}) shows the colour on a share of ${result.share}, ` +
             `not ${minShare}`);
        break;
      }
      await page.waitForTimeout(200);
    }
    if (result.canvas && (result.canvas.width !== 1920 || result.canvas.height !== 1080))
      fail(`the desktop is ${result.canvas.width}x${result.canvas.height}, not 1920x1080`);
  }
  if (!result.websockets.some((socket) => new URL(socket.url).pathname === '/vnc/websockify'))
    fail(`noVNC opened no WebSocket to /vnc/websockify: ${JSON.stringify(result.websockets)}`);
} catch (error) {
  fail(`${error.name}: ${error.message}`);
} finally {
  await page?.screenshot({ path: values.screenshot }).catch((error) => fail(`no screenshot: ${error.message}`));
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
result.ok = result.failures.length === 0;
finish(result);

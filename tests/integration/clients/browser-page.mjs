#!/usr/bin/env node
// Opens the webapp's page (GET /) through the sandbox URL in Debian's Chromium the way a person follows a
// shared link: URL?token=KEY, once. Checks that the front redirected to the same URL without the token and
// set an HttpOnly, SameSite=Lax cookie; that /app.js and /style.css loaded (200) with that cookie alone
// (no token, no Authorization header); that the page's script fetched /echo and echoed "hello" over a
// WebSocket to /ws (its #status says "ok"); and that neither the key nor the cookie reached the app.
// Prints one JSON object (the key never appears in it); exits 0 when every check held, 1 otherwise.
//
//   browser-page.mjs URL --token KEY [--timeout-ms MS] [--chromium PATH]

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
if (positionals.length !== 1 || !values.token) usage('usage: browser-page.mjs URL --token KEY [--timeout-ms MS] [--chromium PATH]');

const key = values.token;
const redact = (text) => String(text).split(key).join('<key>');
const timeout = Number(values['timeout-ms']);
const start = new URL(positionals[0]);
start.searchParams.set('token', key);
const origin = start.origin;

const result = { ok: false, failures: [], url: redact(start), final_url: null, redirect: null, cookies: [],
                 resources: {}, websockets: [], status_text: null, page_results: null, console: [] };
const fail = (message) => result.failures.push(redact(message));

// The checks Chromium's own flags make possible here: no sandbox (root, containers), no GPU, no QUIC, no
// proxy for the loopback URL, and nothing that phones home (this machine's network is closed).
const userDataDir = mkdtempSync(join(tmpdir(), 'modbox-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: values.chromium,
    headless: true,
    timeout,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-proxy-server'],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  const resourceChecks = [];
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (url.origin !== origin || !['/app.js', '/style.css'].includes(url.pathname)) return;
    resourceChecks.push((async () => {
      const headers = await response.request().allHeaders();
      result.resources[url.pathname] = {
        status: response.status(),
        token_in_url: url.searchParams.has('token'),
        authorization_sent: 'authorization' in headers,
        cookie_sent: 'cookie' in headers,
      };
    })());
  });
  page.on('websocket', (socket) => {
    const record = { url: redact(socket.url()), received: [], closed: false };
    result.websockets.push(record);
    socket.on('framereceived', (frame) => record.received.push(String(frame.payload).slice(0, 200)));
    socket.on('close', () => { record.closed = true; });
  });
  page.on('console', (message) => result.console.push(redact(`${message.type()}: ${message.text()}`)));
  page.on('pageerror', (error) => result.console.push(redact(`pageerror: ${error}`)));

  const landed = await page.goto(start.toString(), { waitUntil: 'load' });
  result.final_url = redact(page.url());
  const first = landed?.request().redirectedFrom();
  if (!first) {
    fail(`the token URL was not redirected (answered ${landed?.status()})`);
  } else {
    const answer = await first.response();
    const setCookie = (await answer.headersArray()).filter((h) => h.name.toLowerCase() === 'set-cookie').map((h) => h.value);
    result.redirect = { status: answer.status(), location: redact(await answer.headerValue('location')),
                        set_cookie_attributes: setCookie.map((value) => value.split(';').slice(1).map((a) => a.trim())) };
  }
  const finalUrl = new URL(page.url());
  if (finalUrl.searchParams.has('token')) fail('the page URL still carries the token');
  if (landed?.status() !== 200) fail(`the page answered ${landed?.status()}`);

  await page.waitForFunction(() => /^(ok|error)/.test(document.getElementById('status')?.textContent ?? ''), null,
                             { timeout });
  result.status_text = await page.textContent('#status');
  const pageResults = (await page.textContent('#results')) || 'null';
  result.page_results = JSON.parse(redact(pageResults));
  await Promise.all(resourceChecks);
  if (result.status_text !== 'ok') fail(`the page says: ${result.status_text}`);

  for (const path of ['/app.js', '/style.css']) {
    const resource = result.resources[path];
    if (!resource) fail(`${path} was not requested`);
    else if (resource.status !== 200) fail(`${path} answered ${resource.status}`);
    else if (resource.token_in_url || resource.authorization_sent || !resource.cookie_sent)
      fail(`${path} was not loaded with the cookie alone: ${JSON.stringify(resource)}`);
  }
  const cookies = await context.cookies(origin);
  result.cookies = cookies.map(({ name, domain, path, httpOnly, sameSite, secure }) => ({ name, domain, path, httpOnly, sameSite, secure }));
  if (!cookies.some((cookie) => cookie.httpOnly && cookie.sameSite === 'Lax'))
    fail('no HttpOnly, SameSite=Lax cookie was set for the origin');
  if (!result.websockets.some((socket) => socket.received.includes('hello'))) fail('no WebSocket frame "hello" came back');

  // What the app saw of the page's own request: no key, no Authorization, none of the front's cookies.
  const seen = JSON.stringify(JSON.parse(pageResults)?.echo?.headers ?? {});
  if (!result.page_results?.echo) fail('the page has no /echo result');
  if (seen.includes(key)) fail('the key reached the app');
  if ('authorization' in (result.page_results?.echo?.headers ?? {})) fail('an Authorization header reached the app');
  for (const cookie of cookies)
    if (seen.includes(`${cookie.name}=`) || seen.includes(cookie.value)) fail(`the cookie ${cookie.name} reached the app`);
} catch (error) {
  fail(`${error.name}: ${error.message}`);
} finally {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
result.ok = result.failures.length === 0;
finish(result);

#!/usr/bin/env node
// Drives the desktop sandbox's own Chromium over the DevTools Protocol through the sandbox URL, as users do:
// playwright-core's connectOverCDP(URL + "/cdp", {headers}) takes the browser's existing context and page
// (the desktop's window), opens PAGE there (a URL as the sandbox's browser sees it), brings it to the front,
// and reads its title and viewport; with --screenshot it saves a screenshot of it and checks that the file is
// a PNG of the viewport's size. Disconnecting leaves the browser and the page as they are.
// Prints one JSON object; exits 0 when every check held, 1 otherwise, 2 on bad usage.
//
//   desktop-cdp.mjs SANDBOX_URL --header "Authorization: Bearer KEY" --goto PAGE [--screenshot PATH]
//                   [--timeout-ms MS]

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { finish, parseHeaders, usage } from './common.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    header: { type: 'string', multiple: true },
    goto: { type: 'string' },
    screenshot: { type: 'string' },
    'timeout-ms': { type: 'string', default: '60000' },
  },
});
if (positionals.length !== 1 || !values.goto)
  usage('usage: desktop-cdp.mjs SANDBOX_URL --header H --goto PAGE [--screenshot PATH] [--timeout-ms MS]');

const timeout = Number(values['timeout-ms']);
const result = { ok: false, failures: [], browser_version: null, contexts: null, pages: null, url: null, title: null,
                 viewport: null, png: null };
const fail = (message) => result.failures.push(message);

/** Width and height from a PNG's IHDR chunk, or null when the bytes are no PNG. */
function pngSize(bytes) {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (bytes.length < 33 || !bytes.subarray(0, 8).equals(signature) || bytes.toString('latin1', 12, 16) !== 'IHDR')
    return null;
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20), bytes: bytes.length };
}

let browser;
try {
  browser = await chromium.connectOverCDP(`${positionals[0].replace(/\/$/, '')}/cdp`,
                                          { headers: parseHeaders(values.header), timeout });
  result.browser_version = browser.version();
  const contexts = browser.contexts();
  result.contexts = contexts.length;
  if (contexts.length === 0) throw new Error('the browser has no context');
  const pages = contexts[0].pages();
  result.pages = pages.length;
  if (pages.length === 0) throw new Error('the browser\'s context has no page');
  const page = pages[0];
  page.setDefaultTimeout(timeout);
  const response = await page.goto(values.goto, { waitUntil: 'load' });
  if (response?.status() !== 200) fail(`${values.goto} answered ${response?.status()}`);
  await page.bringToFront();
  result.url = page.url();
  result.title = await page.title();
  result.viewport = await page.evaluate(() => ({ width: window.innerWidth, height: window.innerHeight,
                                                 device_pixel_ratio: window.devicePixelRatio }));
  if (values.screenshot) {
    await page.screenshot({ path: values.screenshot });
    result.png = pngSize(readFileSync(values.screenshot));
    const expected = {
      width: Math.round(result.viewport.width * result.viewport.device_pixel_ratio),
      height: Math.round(result.viewport.height * result.viewport.device_pixel_ratio),
    };
    if (!result.png) fail('the screenshot is no PNG');
    else if (result.png.width !== expected.width || result.png.height !== expected.height)
      fail(`the screenshot is ${result.png.width}x${result.png.height}, the page ${expected.width}x${expected.height}`);
  }
} catch (error) {
  fail(`${error.name}: ${error.message}`);
} finally {
  // Connected over CDP, close() disconnects: the sandbox's browser and its page stay.
  await browser?.close().catch(() => {});
}
result.ok = result.failures.length === 0;
finish(result);

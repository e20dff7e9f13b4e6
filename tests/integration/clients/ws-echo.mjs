#!/usr/bin/env node
// Checks a WebSocket echo endpoint (the webapp's /ws) end to end: N text messages, a text message sent in
// two fragments, binary messages whose lengths take the 7-, 16- and 64-bit forms, a ping, and a clean close.
// Prints one JSON object; exits 0 only when everything came back intact, 1 otherwise (with the handshake's
// HTTP status in `status` when the server refused the upgrade), 2 on bad usage.
//
//   ws-echo.mjs URL [--header "Authorization: Bearer KEY"]... [--messages N] [--timeout-ms MS]

import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { finish, parseHeaders, usage, webSocketUrl } from './common.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    header: { type: 'string', multiple: true },
    messages: { type: 'string', default: '3' },
    'timeout-ms': { type: 'string', default: '20000' },
  },
});
if (positionals.length !== 1) usage('usage: ws-echo.mjs URL [--header "Name: value"]... [--messages N] [--timeout-ms MS]');

const url = webSocketUrl(positionals[0]);
const started = Date.now();
const result = { ok: false, url, status: null, text_echoed: 0, fragmented_echoed: false, binary_echoed: [],
                 pong: false, close_code: null, elapsed_ms: null, error: null };
const done = (error) => {
  result.error = error ? String(error.message ?? error) : null;
  result.ok = !error;
  result.elapsed_ms = Date.now() - started;
  finish(result);
};
setTimeout(() => done(new Error(`not done within ${values['timeout-ms']} ms`)), Number(values['timeout-ms']));

const socket = new WebSocket(url, { headers: parseHeaders(values.header), perMessageDeflate: false,
                                    handshakeTimeout: Number(values['timeout-ms']) });
const received = [];
let waiting = null;
socket.on('message', (data, isBinary) => {
  received.push({ data, isBinary });
  if (waiting) waiting();
});
const nextMessage = async () => {
  while (received.length === 0) {
    await new Promise((resolve) => { waiting = resolve; });
    waiting = null;
  }
  return received.shift();
};
socket.on('upgrade', (response) => { result.status = response.statusCode; });
socket.on('unexpected-response', (request, response) => {
  result.status = response.statusCode;
  let body = '';
  response.on('data', (chunk) => { body += chunk; });
  response.on('end', () => { result.body = body.slice(0, 2000); done(new Error(`upgrade refused: HTTP ${response.statusCode}`)); });
});
socket.on('error', (error) => done(error));
socket.on('close', (code) => { result.close_code = code; });

socket.on('open', async () => {
  try {
    for (let index = 1; index <= Number(values.messages); index++) {
      const text = `message ${index} ✓`;
      socket.send(text);
      const echo = await nextMessage();
      if (echo.isBinary || echo.data.toString() !== text) throw new Error(`text message ${index} came back as ${echo.data}`);
      result.text_echoed = index;
    }
    socket.send('frag-', { fin: false });
    socket.send('mented', { fin: true });
    const joined = await nextMessage();
    if (joined.data.toString() !== 'frag-mented') throw new Error(`the fragmented message came back as ${joined.data}`);
    result.fragmented_echoed = true;
    for (const size of [100, 1000, 70000]) {
      const payload = randomBytes(size);
      socket.send(payload);
      const echo = await nextMessage();
      if (!echo.isBinary || !payload.equals(echo.data)) throw new Error(`the ${size}-byte binary message came back altered`);
      result.binary_echoed.push(size);
    }
    const pong = new Promise((resolve) => socket.once('pong', (data) => resolve(data.toString())));
    socket.ping('are you there');
    if ((await pong) !== 'are you there') throw new Error('the pong did not carry the ping payload');
    result.pong = true;
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.close(1000, 'done');
    result.close_code = await closed;
    if (result.close_code !== 1000) throw new Error(`closed with code ${result.close_code}, not 1000`);
    done(null);
  } catch (error) {
    done(error);
  }
});

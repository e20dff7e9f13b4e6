#!/usr/bin/env node
// A scripted client of a sandbox's terminal WebSocket ({sandbox_url}/terminal/ws, common/terminal_protocol.h):
// runs the steps given in order, printing one JSON line per event as it happens (so that a test reading
// them in the background sees each at once), then one JSON result line. Exits 0 when every step held, 1
// otherwise (with the HTTP status in `status` when the upgrade was refused), 2 on bad usage.
//
//   terminal-ws.mjs URL [--header "Name: value"]... [--query NAME=VALUE]... [--steps JSON] [--timeout-ms MS]
//
// URL is the sandbox URL (or a ws: URL of /terminal/ws). Steps, a JSON array:
//   {"send": "text"}             the text's UTF-8 bytes as one binary message (input)
//   {"send_json": {...}}          a text message (a control message)
//   {"send_size": N}              a binary message of N bytes
//   {"expect_output": "regex"}    waits until the output so far (stdout on pipes) matches
//   {"expect_stderr": "regex"}    likewise for stderr (pipes only)
//   {"expect_event": "type"}      waits for the next text event of that type (ready, error, exit)
//   {"expect_close": CODE}        waits for the server to close, with that code
//   {"close": CODE}               closes with that code and waits for the close to complete
//   {"hold": true}                waits for the server to close, whatever the code
// Each waiting step may carry "timeout_ms" (default: what is left of --timeout-ms).
//
// Event lines: {"event":"open"|"refused"|"message"|"close"|"error", "t_ms": Unix ms, ...}; the result line:
// {"result": true, "ok", "status", "events", "stdout", "stderr", "close_code", "failures"}.

import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { finish, parseHeaders, usage, webSocketUrl } from './common.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    header: { type: 'string', multiple: true },
    query: { type: 'string', multiple: true },
    steps: { type: 'string', default: '[]' },
    'timeout-ms': { type: 'string', default: '30000' },
  },
});
if (positionals.length !== 1) usage('usage: terminal-ws.mjs URL [--header H]... [--query K=V]... [--steps JSON]');

const url = new URL(webSocketUrl(positionals[0]));
if (!url.pathname.endsWith('/terminal/ws')) url.pathname = '/terminal/ws';
for (const pair of values.query ?? []) {
  const equals = pair.indexOf('=');
  url.searchParams.append(pair.slice(0, equals), pair.slice(equals + 1));
}
const steps = JSON.parse(values.steps);
const deadline = Date.now() + Number(values['timeout-ms']);
const result = { result: true, ok: false, status: null, events: [], stdout: '', stderr: '', close_code: null,
                 close_reason: null, failures: [] };
const report = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, t_ms: Date.now(), ...fields }) + '\n');

let tty = url.searchParams.get('tty') !== '0' && url.searchParams.get('tty') !== 'false';
let closed = null;
let changed = () => {};
const waitFor = (condition, timeoutMs, what) => new Promise((resolve, reject) => {
  const until = Math.min(deadline, Date.now() + (timeoutMs ?? Infinity));
  const check = () => {
    const value = condition();
    if (value) { clearTimeout(timer); changed = () => {}; resolve(value); }
  };
  const timer = setTimeout(() => { changed = () => {}; reject(new Error(`timed out waiting for ${what}`)); },
                           Math.max(0, until - Date.now()));
  changed = check;
  check();
});

const socket = new WebSocket(url, { headers: parseHeaders(values.header), perMessageDeflate: false,
                                    maxPayload: 64 << 20 });
const decoder = { stdout: new TextDecoder(), stderr: new TextDecoder() };
let eventsTaken = 0;
const opened = new Promise((resolve, reject) => {
  socket.once('open', () => { report('open'); resolve(); });
  socket.once('unexpected-response', (request, response) => {
    result.status = response.statusCode;
    let body = '';
    response.on('data', (chunk) => { body += chunk; });
    response.on('end', () => {
      report('refused', { status: response.statusCode, body: body.slice(0, 500) });
      reject(new Error(`the upgrade was answered ${response.statusCode}: ${body.slice(0, 200)}`));
    });
  });
  socket.once('error', (error) => reject(error));
});
socket.on('message', (data, isBinary) => {
  if (!isBinary) {
    const event = JSON.parse(data.toString());
    result.events.push(event);
    report('message', { message: event });
  } else if (tty) {
    result.stdout += decoder.stdout.decode(data, { stream: true });
  } else if (data.length > 0) {
    const stream = data[0] === 2 ? 'stderr' : 'stdout';
    result[stream] += decoder[stream].decode(data.subarray(1), { stream: true });
  }
  changed();
});
socket.on('error', (error) => report('error', { message: String(error.message ?? error) }));
socket.on('close', (code, reason) => {
  closed = { code, reason: reason.toString() };
  result.close_code = code;
  result.close_reason = closed.reason;
  report('close', closed);
  changed();
});

try {
  await opened;
  result.status = 101;
  for (const step of steps) {
    const timeout = step.timeout_ms;
    if ('send' in step) socket.send(Buffer.from(step.send, 'utf8'), { binary: true });
    else if ('send_json' in step) socket.send(JSON.stringify(step.send_json));
    else if ('send_size' in step) socket.send(Buffer.alloc(step.send_size, 'a'), { binary: true });
    else if ('expect_output' in step)
      await waitFor(() => new RegExp(step.expect_output).test(result.stdout), timeout, `output /${step.expect_output}/`);
    else if ('expect_stderr' in step)
      await waitFor(() => new RegExp(step.expect_stderr).test(result.stderr), timeout, `stderr /${step.expect_stderr}/`);
    else if ('expect_event' in step) {
      const event = await waitFor(() => {
        while (eventsTaken < result.events.length) {
          const next = result.events[eventsTaken++];
          if (next.type === step.expect_event) return next;
        }
        return closed ? { closed: true } : null;
      }, timeout, `a "${step.expect_event}" event`);
      if (event.closed) throw new Error(`closed (${closed.code}) before a "${step.expect_event}" event`);
    } else if ('expect_close' in step) {
      await waitFor(() => closed, timeout, 'the close');
      if (closed.code !== step.expect_close) throw new Error(`closed with ${closed.code}, not ${step.expect_close}`);
    } else if ('close' in step) {
      socket.close(step.close);
      await waitFor(() => closed, timeout, 'the close to complete');
    } else if ('hold' in step) {
      await waitFor(() => closed, timeout, 'the server to close');
    } else {
      usage(`unknown step ${JSON.stringify(step)}`);
    }
  }
} catch (error) {
  result.failures.push(String(error.message ?? error));
}
result.ok = result.failures.length === 0;
if (!closed && socket.readyState === WebSocket.OPEN) socket.terminate();
finish(result);

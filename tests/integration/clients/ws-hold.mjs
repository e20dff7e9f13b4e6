#!/usr/bin/env node
// Opens a WebSocket to an echo endpoint and holds it, to watch what ends it (a destroyed sandbox).
// Prints one JSON line per event, with the time in Unix milliseconds:
//   {"event":"open","t_ms":...}          once the socket is open and one echo came back through it
//   {"event":"error","message":...}      a transport error (often right before "close")
//   {"event":"close","code":...,"reason":...}   then exits 0
//   {"event":"refused","status":...}     the upgrade was answered with another status; exits 1
//   {"event":"timeout"}                  nothing ended it within --max-ms; exits 1
//
//   ws-hold.mjs URL [--header "Name: value"]... [--max-ms MS]

import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { parseHeaders, usage, webSocketUrl } from './common.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { header: { type: 'string', multiple: true }, 'max-ms': { type: 'string', default: '60000' } },
});
if (positionals.length !== 1) usage('usage: ws-hold.mjs URL [--header "Name: value"]... [--max-ms MS]');

const report = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, t_ms: Date.now(), ...fields }) + '\n');
const exit = (code) => process.stdout.write('', () => process.exit(code));

setTimeout(() => { report('timeout'); exit(1); }, Number(values['max-ms']));
const socket = new WebSocket(webSocketUrl(positionals[0]), { headers: parseHeaders(values.header), perMessageDeflate: false });
socket.on('open', () => socket.send('hold'));
socket.once('message', () => report('open'));
socket.on('unexpected-response', (request, response) => { report('refused', { status: response.statusCode }); exit(1); });
socket.on('error', (error) => report('error', { message: String(error.message ?? error) }));
socket.on('close', (code, reason) => { report('close', { code, reason: reason.toString() }); exit(0); });

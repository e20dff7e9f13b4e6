#!/usr/bin/env node
// Drives the desktop sandbox's browser MCP server ({sandbox_url}/mcp/cdp/, @playwright/mcp) with
// @modelcontextprotocol/sdk's own Client, over Streamable HTTP or the legacy HTTP+SSE transport (its stream at
// URL + "sse"): lists the tools, navigates the sandbox's browser to PAGE (a URL as that browser sees it) with
// browser_navigate, and reads the page back with browser_snapshot, which must contain --expect-text.
// Prints one JSON object; exits 0 when every check held, 1 otherwise, 2 on bad usage.
//
//   mcp-browser.mjs URL --transport streamable|sse [--header "Authorization: Bearer KEY"]... --goto PAGE
//                   --expect-text TEXT [--timeout-ms MS]

import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { finish, parseHeaders, usage } from './common.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    transport: { type: 'string' },
    header: { type: 'string', multiple: true },
    goto: { type: 'string' },
    'expect-text': { type: 'string' },
    'timeout-ms': { type: 'string', default: '90000' },
  },
});
if (positionals.length !== 1 || !['streamable', 'sse'].includes(values.transport) || !values.goto ||
    !values['expect-text'])
  usage('usage: mcp-browser.mjs URL --transport streamable|sse [--header H]... --goto PAGE --expect-text TEXT');

const endpoint = new URL(positionals[0]);
const started = Date.now();
const result = { ok: false, transport: values.transport, server: null, tools: [], navigated: null, snapshot: null,
                 snapshot_has_text: false, elapsed_ms: null, error: null };
const done = (error) => {
  result.error = error ? String(error.message ?? error) : null;
  result.ok = !error;
  result.elapsed_ms = Date.now() - started;
  finish(result);
};
setTimeout(() => done(new Error(`not done within ${values['timeout-ms']} ms`)), Number(values['timeout-ms']));

const textOf = (toolResult) => toolResult.content.filter((part) => part.type === 'text').map((part) => part.text).join('');

async function session() {
  const options = { requestInit: { headers: parseHeaders(values.header) } };
  const transport = values.transport === 'streamable'
    ? new StreamableHTTPClientTransport(endpoint, options)
    : new SSEClientTransport(new URL('sse', endpoint), options);
  const client = new Client({ name: 'modbox-integration-test', version: '1.0.0' });
  await client.connect(transport);
  result.server = client.getServerVersion();
  const { tools } = await client.listTools();
  result.tools = tools.map((tool) => tool.name).sort();
  for (const name of ['browser_navigate', 'browser_snapshot', 'browser_take_screenshot'])
    if (!result.tools.includes(name)) throw new Error(`no tool ${name} among ${result.tools.join(', ')}`);

  const navigated = await client.callTool({ name: 'browser_navigate', arguments: { url: values.goto } });
  result.navigated = textOf(navigated).slice(0, 2000);
  if (navigated.isError) throw new Error(`browser_navigate failed: ${result.navigated}`);
  const snapshot = await client.callTool({ name: 'browser_snapshot', arguments: {} });
  result.snapshot = textOf(snapshot).slice(0, 4000);
  if (snapshot.isError) throw new Error(`browser_snapshot failed: ${result.snapshot}`);
  result.snapshot_has_text = textOf(snapshot).includes(values['expect-text']);
  if (!result.snapshot_has_text) throw new Error(`the snapshot does not contain ${JSON.stringify(values['expect-text'])}`);
  if (values.transport === 'streamable') await transport.terminateSession().catch(() => {});
  await client.close();
}

session().then(() => done(null), done);

#!/usr/bin/env node
// Drives the sandbox URL's MCP server (/mcp/terminal/) with @modelcontextprotocol/sdk's own Client, over
// Streamable HTTP or the legacy HTTP+SSE transport: lists the tools, runs `uname -a`, writes a file and reads
// it back, lists its directory, and checks that a bad argument is a tool error and an unknown tool a
// JSON-RPC error. With --expect-refused it only connects, expecting the server to refuse (401 without
// credentials). Prints one JSON object; exits 0 when every check held, 1 otherwise, 2 on bad usage.
//
//   mcp-client.mjs URL --transport streamable|sse [--header "Authorization: Bearer KEY"]... [--dir DIR]
//                  [--expect-refused] [--timeout-ms MS]
//
// URL is the MCP endpoint (http://127.0.0.1:PORT/mcp/terminal/); the SSE transport's stream is URL + "sse".

import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { finish, parseHeaders, usage } from './common.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    transport: { type: 'string' },
    header: { type: 'string', multiple: true },
    dir: { type: 'string', default: '/tmp' },
    'expect-refused': { type: 'boolean', default: false },
    'timeout-ms': { type: 'string', default: '60000' },
  },
});
if (positionals.length !== 1 || !['streamable', 'sse'].includes(values.transport))
  usage('usage: mcp-client.mjs URL --transport streamable|sse [--header "Name: value"]... [--dir DIR] ' +
        '[--expect-refused] [--timeout-ms MS]');

const endpoint = new URL(positionals[0]);
const headers = parseHeaders(values.header);
const started = Date.now();
const result = {
  ok: false, transport: values.transport, client_latest_version: LATEST_PROTOCOL_VERSION, protocol_version: null,
  server: null, session_id: null, tools: [], uname: null, uname_exit_code: null, read_back_equal: false,
  listed: [], bad_argument_is_error: false, bad_argument_text: null, unknown_tool_code: null,
  refused_status: null, session_deleted: null, elapsed_ms: null, error: null,
};
const done = (error) => {
  result.error = error ? String(error.message ?? error) : null;
  result.ok = !error;
  result.elapsed_ms = Date.now() - started;
  finish(result);
};
setTimeout(() => done(new Error(`not done within ${values['timeout-ms']} ms`)), Number(values['timeout-ms']));

const check = (condition, message) => {
  if (!condition) throw new Error(message);
};
const textOf = (toolResult) => toolResult.content.filter((part) => part.type === 'text').map((part) => part.text).join('');

function makeTransport() {
  // The credential goes in every request's headers: requestInit for POSTs and, through the SDK's
  // own fetch wrapper, for the GET that opens each stream.
  const options = { requestInit: { headers } };
  const transport = values.transport === 'streamable'
    ? new StreamableHTTPClientTransport(endpoint, options)
    : new SSEClientTransport(new URL('sse', endpoint), options);
  const setVersion = transport.setProtocolVersion.bind(transport);
  transport.setProtocolVersion = (version) => {
    result.protocol_version = version;
    setVersion(version);
  };
  return transport;
}

async function refused() {
  const client = new Client({ name: 'modbox-integration-test', version: '1.0.0' });
  try {
    await client.connect(makeTransport());
  } catch (error) {
    result.refused_status = error.code ?? null;
    check(error.code === 401, `the connection failed, but not with 401: ${error.message}`);
    return;
  } finally {
    await client.close().catch(() => {});
  }
  throw new Error('the server let a client without credentials in');
}

async function session() {
  const client = new Client({ name: 'modbox-integration-test', version: '1.0.0' });
  const transport = makeTransport();
  await client.connect(transport);
  result.server = client.getServerVersion();
  result.session_id = transport.sessionId ?? null;

  const { tools } = await client.listTools();
  result.tools = tools.map((tool) => tool.name);
  for (const tool of tools) check(tool.inputSchema?.type === 'object', `${tool.name} has no object inputSchema`);

  const uname = await client.callTool({ name: 'run_command', arguments: { command: 'uname -a' } });
  result.uname = textOf(uname);
  result.uname_exit_code = uname.structuredContent?.exitCode ?? null;
  check(!uname.isError && result.uname.includes('Linux'), `uname -a did not answer Linux: ${result.uname}`);

  const path = `${values.dir}/mcp-${values.transport}/note's ✓.txt`;
  const content = `written over ${values.transport}: it's "quoted", $HOME stays, ✓\nsecond line\n`;
  const wrote = await client.callTool({ name: 'write_file', arguments: { path, content } });
  check(!wrote.isError, `write_file failed: ${textOf(wrote)}`);
  const read = await client.callTool({ name: 'read_file', arguments: { path } });
  check(!read.isError, `read_file failed: ${textOf(read)}`);
  result.read_back_equal = textOf(read) === content;
  check(result.read_back_equal, `read_file answered ${JSON.stringify(textOf(read))}`);

  const listed = await client.callTool({ name: 'list_directory', arguments: { path: `${values.dir}/mcp-${values.transport}` } });
  check(!listed.isError, `list_directory failed: ${textOf(listed)}`);
  result.listed = (listed.structuredContent?.entries ?? []).map((entry) => entry.name);

  const bad = await client.callTool({ name: 'run_command', arguments: { command: 42 } });
  result.bad_argument_is_error = bad.isError === true;
  result.bad_argument_text = textOf(bad);
  check(result.bad_argument_is_error, 'a bad argument was not a tool error');

  try {
    await client.callTool({ name: 'no_such_tool', arguments: {} });
  } catch (error) {
    result.unknown_tool_code = error.code ?? null;
  }
  check(result.unknown_tool_code === -32602, `an unknown tool gave ${result.unknown_tool_code}, not -32602`);

  if (values.transport === 'streamable') {
    await transport.terminateSession();
    result.session_deleted = transport.sessionId === undefined;
  }
  await client.close();
}

(values['expect-refused'] ? refused() : session()).then(() => done(null), done);

// Drives a modbox sandbox's envd through the official `e2b` SDK, as E2B users do:
//   node e2b-envd.mjs SANDBOX_URL SANDBOX_ID ACCESS_TOKEN DOMAIN
// SANDBOX_URL is modboxd's E2B listener (E2B_SANDBOX_URL), DOMAIN what getHost() builds host names
// with ("localhost:PORT"). Prints one JSON line per check ({"check", "ok", "detail"|"error"}) and
// exits 1 when any failed. Every wait has a deadline.

import http from 'node:http'
import { Sandbox, CommandExitError, AuthenticationError } from 'e2b'

const [sandboxUrl, sandboxId, token, domain] = process.argv.slice(2)
const options = { sandboxId, envdAccessToken: token, envdVersion: '0.5.2', sandboxUrl, sandboxDomain: domain,
  apiKey: 'unused', requestTimeoutMs: 30_000 }
// The Sandbox constructor is what Sandbox.create and Sandbox.connect end with; calling it directly
// needs no control plane.
const sbx = new Sandbox(options)
const unique = `${process.pid}-${Date.now()}`
let failed = false

async function check (name, body) {
  try {
    const detail = await body()
    console.log(JSON.stringify({ check: name, ok: true, detail: detail ?? null }))
  } catch (error) {
    failed = true
    console.log(JSON.stringify({ check: name, ok: false, error: String(error?.stack ?? error) }))
  }
}
function expect (condition, what) {
  if (!condition) throw new Error(what)
}
async function rejects (promise, test, what) {
  try {
    await promise
  } catch (error) {
    expect(test(error), `${what}: got ${error?.name}: ${error?.message}`)
    return error
  }
  throw new Error(`${what}: it succeeded`)
}
function until (predicate, ms, what) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms
    const timer = setInterval(() => {
      if (predicate()) { clearInterval(timer); resolve() } else if (Date.now() > deadline) {
        clearInterval(timer); reject(new Error(`timed out waiting for ${what}`))
      }
    }, 20)
  })
}
/// A raw HTTP request to the listener: { status, headers, body (Buffer) }.
function request (method, path, headers, body, host) {
  const target = new URL(sandboxUrl)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: target.hostname, port: target.port, method, path,
      headers: { ...headers, ...(host ? { Host: host } : {}) }, timeout: 20_000 }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    if (body) req.write(body)
    req.end()
  })
}
const envdHeaders = { 'E2b-Sandbox-Id': sandboxId, 'E2b-Sandbox-Port': '49983', 'X-Access-Token': token }
/// Splits a Connect stream body into envelopes.
function envelopes (body) {
  const out = []
  for (let at = 0; at + 5 <= body.length;) {
    const length = body.readUInt32BE(at + 1)
    out.push({ flags: body[at], json: JSON.parse(body.subarray(at + 5, at + 5 + length).toString() || '{}') })
    at += 5 + length
  }
  return out
}

await check('commands.run in the foreground', async () => {
  const result = await sbx.commands.run('echo hi; echo oops >&2')
  expect(result.exitCode === 0 && result.stdout === 'hi\n' && result.stderr === 'oops\n', JSON.stringify(result))
})
await check('a failing command throws CommandExitError with its code', async () => {
  const error = await rejects(sbx.commands.run('echo partial; exit 3'), (e) => e instanceof CommandExitError, 'exit 3')
  expect(error.exitCode === 3 && error.stdout === 'partial\n', JSON.stringify(error))
})
await check('envs and cwd', async () => {
  const result = await sbx.commands.run('echo "$GREETING"; pwd', { envs: { GREETING: 'hello there' }, cwd: '/tmp' })
  expect(result.stdout === 'hello there\n/tmp\n', JSON.stringify(result.stdout))
})
await check('onStdout and onStderr callbacks see output as it comes', async () => {
  const out = []; const err = []
  await sbx.commands.run('for i in 1 2 3; do echo $i; echo e$i >&2; done',
    { onStdout: (d) => out.push(d), onStderr: (d) => err.push(d) })
  expect(out.join('') === '1\n2\n3\n' && err.join('') === 'e1\ne2\ne3\n', JSON.stringify({ out, err }))
})
await check('stdin: sendStdin then closeStdin', async () => {
  const handle = await sbx.commands.run('cat', { background: true, stdin: true })
  await sbx.commands.sendStdin(handle.pid, 'through stdin\n')
  await sbx.commands.closeStdin(handle.pid)
  const result = await handle.wait()
  expect(result.stdout === 'through stdin\n', JSON.stringify(result))
})
await check('background command: list, kill, wait throws', async () => {
  const handle = await sbx.commands.run(`sleep 600 # ${unique}`, { background: true })
  const listed = await sbx.commands.list()
  const mine = listed.find((p) => p.pid === handle.pid)
  expect(mine && mine.cmd === '/bin/bash' && mine.args.join(' ').includes(unique), JSON.stringify(listed))
  expect(await handle.kill() === true, 'kill answered false')
  const error = await rejects(handle.wait(), (e) => e instanceof CommandExitError, 'wait after kill')
  expect(error.exitCode === -1 && /signal: killed/.test(error.error ?? error.message), JSON.stringify(error))
  expect(await sbx.commands.kill(999999) === false, 'killing an unknown pid answered true')
})

const dir = `/tmp/e2b-${unique}`
await check('files: write, read, exists, getInfo, list', async () => {
  const info = await sbx.files.write(`${dir}/a.txt`, 'hello file')
  expect(info.path === `${dir}/a.txt` && info.name === 'a.txt' && info.type === 'file', JSON.stringify(info))
  expect(await sbx.files.read(`${dir}/a.txt`) === 'hello file', 'read back')
  expect(await sbx.files.exists(`${dir}/a.txt`) === true, 'exists')
  expect(await sbx.files.exists(`${dir}/missing`) === false, 'exists of a missing file')
  const stat = await sbx.files.getInfo(`${dir}/a.txt`)
  expect(stat.type === 'file' && stat.size === 10 && stat.permissions.startsWith('-rw'), JSON.stringify(stat))
  const entries = await sbx.files.list(dir)
  expect(entries.length === 1 && entries[0].name === 'a.txt' && entries[0].path === `${dir}/a.txt`, JSON.stringify(entries))
  const bytes = await sbx.files.read(`${dir}/a.txt`, { format: 'bytes' })
  expect(bytes.length === 10, 'bytes')
  await rejects(sbx.files.read(`${dir}/missing`), (e) => e.name === 'FileNotFoundError', 'read of a missing file')
})
await check('files: makeDir, rename, remove', async () => {
  expect(await sbx.files.makeDir(`${dir}/sub/deeper`) === true, 'makeDir')
  expect(await sbx.files.makeDir(`${dir}/sub/deeper`) === false, 'makeDir of an existing directory')
  const moved = await sbx.files.rename(`${dir}/a.txt`, `${dir}/sub/b.txt`)
  expect(moved.path === `${dir}/sub/b.txt` && moved.type === 'file', JSON.stringify(moved))
  const listed = await sbx.files.list(dir, { depth: 3 })
  const names = listed.map((e) => `${e.type}:${e.path.slice(dir.length)}`).sort()
  expect(JSON.stringify(names) === JSON.stringify(['dir:/sub', 'dir:/sub/deeper', 'file:/sub/b.txt']), JSON.stringify(names))
  await sbx.files.remove(`${dir}/sub`)
  expect(await sbx.files.exists(`${dir}/sub`) === false, 'removed')
})
await check('files.watchDir receives an event', async () => {
  await sbx.files.makeDir(`${dir}/watched`)
  const events = []
  const handle = await sbx.files.watchDir(`${dir}/watched`, (event) => events.push(event))
  await sbx.files.write(`${dir}/watched/new.txt`, 'x')
  await until(() => events.some((e) => e.name === 'new.txt' && e.type === 'create'), 10_000, 'a create event')
  await handle.stop()
  return events.map((e) => `${e.type}:${e.name}`)
})
await check('pty: create, input, resize, kill', async () => {
  let output = ''
  const terminal = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => { output += new TextDecoder().decode(d) } })
  await sbx.pty.sendInput(terminal.pid, new TextEncoder().encode('echo $((6*7))\n'))
  await until(() => output.includes('42'), 10_000, 'the shell to answer')
  await sbx.pty.resize(terminal.pid, { cols: 100, rows: 30 })
  await sbx.pty.sendInput(terminal.pid, new TextEncoder().encode('stty size\n'))
  await until(() => output.includes('30 100'), 10_000, 'the new size')
  expect(await sbx.pty.kill(terminal.pid) === true, 'kill')
  await rejects(terminal.wait(), (e) => e instanceof CommandExitError, 'wait after kill')
})

// A web server in the sandbox, reached through the listener by E2b-Sandbox-Port and by Host.
await check('a port inside the sandbox, by E2b-Sandbox-Port and by getHost()', async () => {
  await sbx.files.write(`${dir}/www/marker-${unique}.txt`, 'served')
  await sbx.commands.run(`cd ${dir}/www && exec python3 -m http.server 8000 --bind 127.0.0.1`,
    { background: true, timeoutMs: 0 })
  const headers = { ...envdHeaders, 'E2b-Sandbox-Port': '8000' }
  let answer
  for (const deadline = Date.now() + 20_000; Date.now() < deadline;) {
    answer = await request('GET', `/marker-${unique}.txt`, headers)
    if (answer.status === 200) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  expect(answer.status === 200 && answer.body.toString() === 'served', `${answer.status} ${answer.body}`)
  const host = sbx.getHost(8000)
  expect(host === `8000-${sandboxId}.${domain}`, host)
  const byHost = await request('GET', `/marker-${unique}.txt`, { 'X-Access-Token': token }, null, host)
  expect(byHost.status === 200 && byHost.body.toString() === 'served', `${byHost.status} ${byHost.body}`)
  const noToken = await request('GET', `/marker-${unique}.txt`, {}, null, host)
  expect(noToken.status === 401, `without a token: ${noToken.status}`)
})

await check('a malformed envelope gets a Connect error', async () => {
  const headers = { ...envdHeaders, 'Content-Type': 'application/connect+json', 'Connect-Protocol-Version': '1' }
  const cut = Buffer.from([0, 0, 0, 0, 50, 0x7b])  // announces 50 bytes, sends 1
  const answer = await request('POST', '/process.Process/Start', headers, cut)
  const got = envelopes(answer.body)
  expect(answer.status === 200 && got.length === 1 && got[0].flags === 2 &&
    got[0].json.error?.code === 'invalid_argument', `${answer.status} ${answer.body}`)
  const huge = Buffer.alloc(5); huge.writeUInt32BE(4 * 1024 * 1024 + 1, 1)
  const refused = envelopes((await request('POST', '/process.Process/Start', headers, huge)).body)
  expect(refused[0]?.json.error?.code === 'resource_exhausted', JSON.stringify(refused))
  const unary = await request('POST', '/filesystem.Filesystem/Stat',
    { ...envdHeaders, 'Content-Type': 'application/json' }, '{"path":')
  expect(unary.status === 400 && JSON.parse(unary.body).code === 'invalid_argument', `${unary.status} ${unary.body}`)
})
await check('an unknown sandbox id: not running, and 502 with a message', async () => {
  const ghost = new Sandbox({ ...options, sandboxId: `nosuch${unique}` })
  expect(await ghost.isRunning() === false, 'isRunning of an unknown sandbox')
  const answer = await request('GET', '/health', { ...envdHeaders, 'E2b-Sandbox-Id': `nosuch${unique}` })
  expect(answer.status === 502 && JSON.parse(answer.body).message, `${answer.status} ${answer.body}`)
  await rejects(ghost.commands.run('true'), (e) => e.name !== 'AuthenticationError', 'a command in it')
})
await check('a wrong access token is unauthenticated', async () => {
  const intruder = new Sandbox({ ...options, envdAccessToken: 'wrong-token' })
  await rejects(intruder.commands.run('true'), (e) => e instanceof AuthenticationError, 'run with a wrong token')
  await rejects(intruder.files.list('/'), (e) => e instanceof AuthenticationError, 'list with a wrong token')
})
await check('health', async () => {
  expect(await sbx.isRunning() === true, 'isRunning')
})

process.exit(failed ? 1 : 0)

#!/usr/bin/env node
// Drives modbox's E2B control plane with E2B's own JS SDK (`e2b`), configured only by the environment
// `modbox agent env --e2b` prints (E2B_API_URL, E2B_SANDBOX_URL, E2B_DOMAIN, E2B_API_KEY): two sandboxes
// created with metadata and envs, getInfo, Sandbox.list with metadata filters (a value with a space, '&'
// and '=') paged one by one, setTimeout, connect (which only extends the TTL), pause (refused), a create
// with an unknown template (refused), and kill (twice: true, then false). Prints one JSON object; exits 0
// when every check held, 1 otherwise, 2 on bad usage.
//
//   e2b-control.mjs --tag VALUE [--template NAME] [--timeout-ms MS]

import { parseArgs } from 'node:util';
import { Sandbox } from 'e2b';
import { finish, usage } from './common.mjs';

const { values } = parseArgs({
  options: {
    tag: { type: 'string' },
    template: { type: 'string', default: 'base' },
    'timeout-ms': { type: 'string', default: '240000' },
  },
});
if (!values.tag) usage('usage: e2b-control.mjs --tag VALUE [--template NAME] [--timeout-ms MS]');
for (const name of ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_API_KEY'])
  if (!process.env[name]) usage(`${name} is not set: eval "$(modbox agent env --e2b)"`);

const started = Date.now();
const note = 'a b & c=d%20';
const result = {
  ok: false, sandbox_ids: [], envd_version: null, info: null, listed_ids: [], listed_pages: 0, mismatch_count: null,
  end_after_timeout_s: null, end_after_connect_s: null, connected_id: null, pause_error: null,
  unknown_template_error: null, kill_first: null, kill_second: null, info_after_kill_error: null,
  elapsed_ms: null, error: null,
};
const done = (error) => {
  result.error = error ? `${error.name}: ${error.message ?? error}` : null;
  result.ok = !error;
  result.elapsed_ms = Date.now() - started;
  finish(result);
};
setTimeout(() => done(new Error(`not done within ${values['timeout-ms']} ms`)), Number(values['timeout-ms']));
const check = (condition, message) => {
  if (!condition) throw new Error(message);
};
const secondsLeft = (info) => Math.round((info.endAt.getTime() - Date.now()) / 1000);

const created = [];
try {
  const metadata = { suite: values.tag, note };
  const settled = await Promise.allSettled([
    Sandbox.create(values.template, { metadata, envs: { E2B_TEST_VAR: 'hello' }, timeoutMs: 600_000 }),
    Sandbox.create(values.template, { metadata: { suite: values.tag }, timeoutMs: 600_000 }),
  ]);
  for (const outcome of settled) if (outcome.status === 'fulfilled') created.push(outcome.value);
  const failed = settled.find((outcome) => outcome.status === 'rejected');
  if (failed) throw failed.reason;
  const [first, second] = created;
  result.sandbox_ids = created.map((sandbox) => sandbox.sandboxId);

  const info = await first.getInfo();
  result.info = { sandboxId: info.sandboxId, templateId: info.templateId, state: info.state, metadata: info.metadata,
                  envdVersion: info.envdVersion, seconds_left: secondsLeft(info) };
  check(info.sandboxId === first.sandboxId, 'getInfo answered another sandbox');
  check(info.state === 'running', `state is ${info.state}`);
  check(info.metadata.note === note && info.metadata.suite === values.tag, 'metadata did not come back as given');

  // Every sandbox of this run, one per page: X-Next-Token carries the listing on.
  const pager = Sandbox.list({ query: { metadata: { suite: values.tag }, state: ['running'] }, limit: 1 });
  while (pager.hasNext) {
    const items = await pager.nextItems();
    result.listed_pages += 1;
    result.listed_ids.push(...items.map((item) => item.sandboxId));
    check(result.listed_pages <= 5, 'the listing does not end');
  }
  // Both pairs must match: only the first sandbox has the note, and a near miss matches nothing.
  const exact = await Sandbox.list({ query: { metadata } }).nextItems();
  check(exact.length === 1 && exact[0].sandboxId === first.sandboxId,
        `the metadata filter with a space, '&' and '=' kept ${JSON.stringify(exact.map((item) => item.sandboxId))}`);
  result.mismatch_count = (await Sandbox.list({ query: { metadata: { suite: values.tag, note: 'a b' } } }).nextItems())
    .length;

  await first.setTimeout(120_000);
  result.end_after_timeout_s = secondsLeft(await first.getInfo());
  const connected = await Sandbox.connect(first.sandboxId, { timeoutMs: 30_000 });
  result.connected_id = connected.sandboxId;
  result.end_after_connect_s = secondsLeft(await connected.getInfo());

  try {
    await first.pause();
    result.pause_error = 'pause succeeded';
  } catch (error) {
    result.pause_error = `${error.name}: ${error.message}`;
  }
  try {
    const sandbox = await Sandbox.create(`no-such-template-${values.tag}`);
    created.push(sandbox);
    result.unknown_template_error = 'create succeeded';
  } catch (error) {
    result.unknown_template_error = `${error.name}: ${error.message}`;
  }

  result.kill_first = await Sandbox.kill(first.sandboxId);
  result.kill_second = await Sandbox.kill(first.sandboxId);
  try {
    await Sandbox.getInfo(first.sandboxId);
    result.info_after_kill_error = 'getInfo succeeded';
  } catch (error) {
    result.info_after_kill_error = `${error.name}: ${error.message}`;
  }
  await second.kill();
  done(null);
} catch (error) {
  for (const sandbox of created) await sandbox.kill().catch(() => {});
  done(error);
}

// Shared by the client scripts: command-line headers, URLs, and the one JSON answer each prints.

/** `["Name: value", ...]` → `{Name: "value", ...}`; a malformed header ends the script with a usage error. */
export function parseHeaders(list = []) {
  const headers = {};
  for (const line of list) {
    const colon = line.indexOf(':');
    if (colon <= 0) usage(`a header is "Name: value", not ${JSON.stringify(line)}`);
    headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/** http://host/path → ws://host/path (https → wss); ws: and wss: URLs unchanged. */
export function webSocketUrl(text) {
  const url = new URL(text);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  return url.toString();
}

/** Prints the result as one JSON object and exits 0 when it is ok, 1 otherwise. */
export function finish(result) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(result.ok ? 0 : 1));
}

export function usage(message) {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

#!/usr/bin/env python3
"""A web app for testing what the sandbox URL proxies, run inside a sandbox (or on the host).

    python3 webapp.py [--port 8080] [--bind 0.0.0.0] [--log FILE]
    python3 webapp.py --wait-for PORT [--timeout S]   prints "up" once a webapp answers on 127.0.0.1:PORT

Standard library only (sandbox-lite has python3 and nothing else). Threaded, HTTP/1.1 keep-alive, a
correct Content-Length or chunked framing on every answer. Every request is appended to --log as one line
"METHOD TARGET" before it is answered, so a test can tell that a request never reached the app.

Routes:
  GET  /                  a page that loads /app.js and /style.css and whose script opens a WebSocket to /ws
  ANY  /echo              JSON: method, path, query, args, headers (lower-case name -> values), body_length,
                          body_sha256, server_port
  GET  /chunked           a chunked answer: ?parts=N (5) lines "part I", ?delay_ms=D (0) between them
  GET  /sse               text/event-stream: ?count=N (5) events ?interval_ms=M (200) apart, each with its send
                          time (Unix ms); chunked, so the connection stays usable
  GET  /bytes?n=N         N bytes, streamed with a Content-Length; /bytes/sha256?n=N answers their sha256
  POST /upload            reads the body (Content-Length or chunked), answers {length, sha256}
  GET  /ws                WebSocket echo (RFC 6455): text and binary, fragmented messages, ping -> pong, close
"""

import argparse
import base64
import hashlib
import http.server
import json
import random
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_WEBSOCKET_MESSAGE = 64 << 20
BYTES_BLOCK = random.Random(20240501).randbytes(1 << 20)
WRITE_SIZE = 64 << 10

PAGE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>modbox proxy test page</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<h1>modbox proxy test page</h1>
<div id="status">loading</div>
<pre id="results"></pre>
<script src="/app.js"></script>
</body>
</html>
"""

STYLE = """:root { --webapp-style: loaded; }
body { font-family: sans-serif; margin: 2em; }
#status { font-weight: bold; }
"""

# Fetches /echo (same-origin: the cookie alone authenticates it), checks that the stylesheet applied,
# and echoes "hello" through a WebSocket on /ws; the outcome goes into #status ("ok" or "error: why")
# and the details into #results as JSON.
SCRIPT = """(async () => {
  const status = document.getElementById('status');
  const results = {};
  const show = (text) => {
    document.getElementById('results').textContent = JSON.stringify(results, null, 2);
    status.textContent = text;
  };
  try {
    const echo = await fetch('/echo?from=page', { credentials: 'same-origin' });
    results.echo_status = echo.status;
    results.echo = await echo.json();
    results.style_applied =
        getComputedStyle(document.documentElement).getPropertyValue('--webapp-style').trim() === 'loaded';
    const url = (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/ws';
    results.websocket_url = url;
    results.websocket_echo = await new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      const timer = setTimeout(() => reject(new Error('no WebSocket echo within 10 s')), 10000);
      socket.onopen = () => socket.send('hello');
      socket.onmessage = (event) => {
        clearTimeout(timer);
        socket.close(1000, 'done');
        resolve(String(event.data));
      };
      socket.onclose = (event) => {
        clearTimeout(timer);
        reject(new Error('WebSocket closed before the echo: code ' + event.code));
      };
    });
    const failures = [];
    if (results.echo_status !== 200) failures.push('/echo answered ' + results.echo_status);
    if (!results.style_applied) failures.push('/style.css did not apply');
    if (results.websocket_echo !== 'hello') failures.push('the WebSocket echoed ' + results.websocket_echo);
    show(failures.length === 0 ? 'ok' : 'error: ' + failures.join('; '));
  } catch (error) {
    results.exception = String(error);
    show('error: ' + error);
  }
})();
"""


class RequestLog:
    """One line per request, appended and flushed before the request is answered."""

    def __init__(self, path):
        self._file = open(path, "a", encoding="utf-8") if path else None
        self._lock = threading.Lock()

    def write(self, method, target):
        if self._file is None:
            return
        with self._lock:
            self._file.write(f"{method} {target}\n")
            self._file.flush()


class BadRequest(Exception):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "webapp/1"

    # ---- framing -------------------------------------------------------------------------------

    def parse_request(self):
        if not super().parse_request():
            return False
        self.server.request_log.write(self.command, self.path)
        return True

    def read_line(self, limit=8192):
        line = self.rfile.readline(limit + 1)
        if len(line) > limit or not line.endswith(b"\n"):
            raise BadRequest("line too long or connection closed")
        return line

    def body_chunks(self):
        """Yields the request body as it arrives, whether it has a Content-Length or is chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size_text = self.read_line().split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError as error:
                    raise BadRequest(f"bad chunk size {size_text!r}") from error
                if size == 0:
                    while self.read_line() not in (b"\r\n", b"\n"):
                        pass  # trailers
                    return
                while size > 0:
                    data = self.rfile.read(min(size, WRITE_SIZE))
                    if not data:
                        raise BadRequest("connection closed inside a chunk")
                    size -= len(data)
                    yield data
                self.read_line()
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, WRITE_SIZE))
            if not data:
                raise BadRequest("connection closed inside the body")
            left -= len(data)
            yield data

    def read_body_digest(self):
        digest = hashlib.sha256()
        length = 0
        for data in self.body_chunks():
            digest.update(data)
            length += len(data)
        return length, digest.hexdigest()

    def send_body(self, status, body, content_type="application/json", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, value):
        self.send_body(status, json.dumps(value, indent=1) + "\n")

    def start_chunked(self, content_type, headers=()):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def write_chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ---- dispatch ------------------------------------------------------------------------------

    def dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        route = {
            "/": self.page,
            "/app.js": self.script,
            "/style.css": self.style,
            "/echo": self.echo,
            "/chunked": self.chunked,
            "/sse": self.server_sent_events,
            "/bytes": self.bytes,
            "/bytes/sha256": self.bytes_sha256,
            "/upload": self.upload,
            "/ws": self.websocket,
        }.get(url.path)
        args = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        try:
            if route is None:
                self.read_body_digest()
                self.send_json(404, {"detail": f"no route {url.path}"})
            else:
                route(url, args)
        except BadRequest as error:
            self.send_json(400, {"detail": str(error)})
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = dispatch

    def log_message(self, format, *args):
        sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))

    # ---- routes --------------------------------------------------------------------------------

    def page(self, url, args):
        self.read_body_digest()
        self.send_body(200, PAGE, "text/html; charset=utf-8")

    def script(self, url, args):
        self.read_body_digest()
        self.send_body(200, SCRIPT, "text/javascript; charset=utf-8")

    def style(self, url, args):
        self.read_body_digest()
        self.send_body(200, STYLE, "text/css; charset=utf-8")

    def echo(self, url, args):
        length, digest = self.read_body_digest()
        headers = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        self.send_json(200, {
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "args": args,
            "headers": headers,
            "body_length": length,
            "body_sha256": digest,
            "server_port": self.server.server_address[1],
            "client_address": self.client_address[0],
        })

    def upload(self, url, args):
        if self.command != "POST":
            self.read_body_digest()
            self.send_json(405, {"detail": "POST a body to /upload"})
            return
        length, digest = self.read_body_digest()
        self.send_json(200, {"length": length, "sha256": digest})

    def chunked(self, url, args):
        self.read_body_digest()
        parts = int(args.get("parts", ["5"])[0])
        delay = int(args.get("delay_ms", ["0"])[0]) / 1000
        self.start_chunked("text/plain; charset=utf-8")
        for index in range(parts):
            if index and delay:
                time.sleep(delay)
            self.write_chunk(f"part {index}\n")
        self.end_chunked()

    def server_sent_events(self, url, args):
        self.read_body_digest()
        count = int(args.get("count", ["5"])[0])
        interval = int(args.get("interval_ms", ["200"])[0]) / 1000
        self.start_chunked("text/event-stream", [("Cache-Control", "no-cache")])
        start = time.monotonic()
        for index in range(count):
            wait = start + index * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            event = {"seq": index, "sent_ms": int(time.time() * 1000)}
            self.write_chunk(f"id: {index}\ndata: {json.dumps(event)}\n\n")
        self.end_chunked()

    def bytes(self, url, args):
        self.read_body_digest()
        size = int(args.get("n", ["0"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command == "HEAD":
            return
        for data in byte_stream(size):
            self.wfile.write(data)

    def bytes_sha256(self, url, args):
        self.read_body_digest()
        size = int(args.get("n", ["0"])[0])
        digest = hashlib.sha256()
        for data in byte_stream(size):
            digest.update(data)
        self.send_json(200, {"n": size, "sha256": digest.hexdigest()})

    # ---- WebSocket -----------------------------------------------------------------------------

    def websocket(self, url, args):
        self.read_body_digest()
        key = self.headers.get("Sec-WebSocket-Key", "")
        connection = [token.strip().lower() for token in self.headers.get("Connection", "").split(",")]
        if self.headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in connection or not key:
            self.send_json(426, {"detail": "/ws takes a WebSocket upgrade"})
            return
        if self.headers.get("Sec-WebSocket-Version") != "13":
            self.send_json(426, {"detail": "WebSocket version 13 only"})
            return
        accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        protocols = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        if protocols:
            self.send_header("Sec-WebSocket-Protocol", protocols[0])
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        WebSocketEcho(self.rfile, self.wfile).run()


class WebSocketEcho:
    """The server side of one WebSocket connection: echoes every message back in one frame."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    def read_exactly(self, size):
        data = self.reader.read(size)
        if len(data) != size:
            raise ConnectionResetError("the client went away")
        return data

    def read_frame(self):
        first, second = self.read_exactly(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        masked, length = bool(second & 0x80), second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.read_exactly(8))
        if first & 0x70:
            raise ProtocolError(1002, "reserved bits set")
        if not masked:
            raise ProtocolError(1002, "client frames must be masked")
        if opcode >= 0x8 and (not fin or length > 125):
            raise ProtocolError(1002, "bad control frame")
        if length > MAX_WEBSOCKET_MESSAGE:
            raise ProtocolError(1009, "message too big")
        mask = self.read_exactly(4)
        return fin, opcode, unmask(self.read_exactly(length), mask)

    def send_frame(self, opcode, payload):
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([127]) + struct.pack("!Q", len(payload))
        self.writer.write(header + payload)
        self.writer.flush()

    def close(self, code, reason=""):
        self.send_frame(0x8, struct.pack("!H", code) + reason.encode()[:120])

    def run(self):
        message_opcode, parts, size = None, [], 0
        try:
            while True:
                fin, opcode, payload = self.read_frame()
                if opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
                    self.close(code)
                    return
                if opcode == 0x9:
                    self.send_frame(0xA, payload)
                    continue
                if opcode == 0xA:
                    continue
                if opcode in (0x1, 0x2):
                    if message_opcode is not None:
                        raise ProtocolError(1002, "a new message inside a fragmented one")
                    message_opcode = opcode
                elif opcode != 0x0 or message_opcode is None:
                    raise ProtocolError(1002, f"unexpected opcode {opcode}")
                parts.append(payload)
                size += len(payload)
                if size > MAX_WEBSOCKET_MESSAGE:
                    raise ProtocolError(1009, "message too big")
                if fin:
                    message = b"".join(parts)
                    if message_opcode == 0x1:
                        try:
                            message.decode("utf-8")
                        except UnicodeDecodeError as error:
                            raise ProtocolError(1007, "text message is not UTF-8") from error
                    self.send_frame(message_opcode, message)
                    message_opcode, parts, size = None, [], 0
        except ProtocolError as error:
            self.close(error.code, error.reason)
        except (ConnectionResetError, BrokenPipeError, ValueError):
            pass


class ProtocolError(Exception):
    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def unmask(payload, mask):
    """XORs the payload with the 4-byte mask, as one big integer: fast enough for megabytes."""
    key = (mask * (len(payload) // 4 + 1))[:len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
    return value.to_bytes(len(payload), "big")


def byte_stream(size):
    """The bytes of /bytes?n=SIZE: a fixed pseudo-random 1 MiB block, repeated and cut at SIZE."""
    view = memoryview(BYTES_BLOCK)
    while size > 0:
        for offset in range(0, len(view), WRITE_SIZE):
            if size <= 0:
                return
            data = view[offset:offset + min(WRITE_SIZE, size)]
            size -= len(data)
            yield data


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def wait_for(port, timeout):
    """Polls GET /echo?from=sandbox on 127.0.0.1:PORT until it answers (exit 0) or TIMEOUT seconds pass."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            opener.open(f"http://127.0.0.1:{port}/echo?from=sandbox", timeout=2).read()
            print("up")
            return 0
        except OSError as error:
            if time.monotonic() > deadline:
                print(f"down after {timeout} s: {error}")
                return 1
            time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--log", help="append one line per request to this file")
    parser.add_argument("--wait-for", type=int, metavar="PORT", help="wait until a webapp answers on PORT, then exit")
    parser.add_argument("--timeout", type=float, default=15, help="seconds --wait-for waits")
    options = parser.parse_args()
    if options.wait_for:
        sys.exit(wait_for(options.wait_for, options.timeout))
    server = Server((options.bind, options.port), Handler)
    server.request_log = RequestLog(options.log)
    print(f"webapp listening on {options.bind}:{server.server_address[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

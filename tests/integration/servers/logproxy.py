#!/usr/bin/env python3
"""A proxy that only logs, for testing which requests a sandbox's tools send through a proxy.

    python3 logproxy.py --port 3128 --log FILE

Standard library only. One port speaks all three: SOCKS5 (the first byte is 5), HTTP CONNECT, and plain
HTTP, where an absolute URI (GET http://host/path) is a forward-proxy request and an origin-form one
(GET /path) is a request made to this server directly, as to any web server. Every request is appended to
--log as one line before it is answered, and nothing is forwarded: each gets an error (502 Bad Gateway,
SOCKS "connection refused", or 404 for a direct request), so no test reaches the internet. Lines:

    HTTP GET http://deb.debian.org/debian/dists/bookworm/InRelease
    CONNECT pypi.org:443
    SOCKS5 registry.npmjs.org:443
    DIRECT GET /repo.git/info/refs?service=git-upload-pack host=direct.test:3128

"ready" is printed on stdout once it listens.
"""

import argparse
import ipaddress
import socket
import socketserver
import sys
import threading

log_lock = threading.Lock()
log_path = None


def log(line):
    with log_lock, open(log_path, "a", encoding="utf-8") as out:
        out.write(line + "\n")


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(30)
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if not first:
                return
            if first[0] == 5:
                self.socks5(sock)
            else:
                self.http(sock)
        except (OSError, EOFError, ValueError):
            pass

    def socks5(self, sock):
        _, count = read_exact(sock, 2)
        read_exact(sock, count)  # the client's methods: "no authentication" is always chosen
        sock.sendall(b"\x05\x00")
        _, command, _, kind = read_exact(sock, 4)
        if kind == 1:
            host = str(ipaddress.IPv4Address(read_exact(sock, 4)))
        elif kind == 3:
            host = read_exact(sock, read_exact(sock, 1)[0]).decode("idna")
        elif kind == 4:
            host = str(ipaddress.IPv6Address(read_exact(sock, 16)))
        else:
            raise ValueError("bad address type")
        port = int.from_bytes(read_exact(sock, 2), "big")
        log(f"SOCKS5 {host}:{port}" + ("" if command == 1 else f" command={command}"))
        # 5: connection refused, which clients report as a proxy error.
        sock.sendall(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")

    def http(self, sock):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
            if len(data) > 1 << 20:
                return
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        host = ""
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "host":
                host = value.strip()
        if method == "CONNECT":
            log(f"CONNECT {target}")
            status = "502 Bad Gateway"
        elif "://" in target:
            log(f"HTTP {method} {target}")
            status = "502 Bad Gateway"
        else:
            log(f"DIRECT {method} {target} host={host}")
            status = "404 Not Found"
        body = b"not forwarded by logproxy\n"
        sock.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    global log_path
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    log_path = args.log
    open(log_path, "a").close()
    with Server((args.bind, args.port), Handler) as server:
        print("ready", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())

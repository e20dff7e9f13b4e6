#!/usr/bin/env python3
"""CDP round trips over one WebSocket: `Runtime.evaluate` of `1+1`, ROUNDS times, printing each round
trip in microseconds, one per line. The same script runs on the host (through the sandbox URL) and inside
the desktop sandbox (straight to Chromium), so both sides pay the same client.

    cdp-roundtrip.py WS_URL ROUNDS [AUTHORIZATION]

The standard library only (the sandbox's Python has no WebSocket package): a minimal RFC 6455 client,
text frames only, enough for CDP.
"""
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.parse


def connect(url, authorization):
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port or 80))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if authorization:
        head += f"Authorization: {authorization}\r\n"
    sock.sendall((head + "\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            sys.exit(f"{url}: the connection closed during the handshake: {answer[:200]!r}")
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 101"):
        status = answer.split(b"\r\n")[0]
        sys.exit(f"{url}: no WebSocket: {status!r}")
    return sock, answer.split(b"\r\n\r\n", 1)[1]


def send_text(sock, text):
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


class Reader:
    def __init__(self, sock, pending):
        self.sock, self.buffer = sock, pending

    def take(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                sys.exit("the WebSocket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def message(self):
        first, second = self.take(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.take(8))[0]
        return first & 0x0F, self.take(n)


def main():
    url, rounds = sys.argv[1], int(sys.argv[2])
    sock, pending = connect(url, sys.argv[3] if len(sys.argv) > 3 else "")
    reader = Reader(sock, pending)
    for i in range(1, rounds + 1):
        start = time.perf_counter_ns()
        send_text(sock, json.dumps({"id": i, "method": "Runtime.evaluate", "params": {"expression": "1+1"}}))
        while True:
            opcode, data = reader.message()
            if opcode == 1 and json.loads(data).get("id") == i:
                break
        print((time.perf_counter_ns() - start) // 1000)
        if json.loads(data)["result"]["result"]["value"] != 2:
            sys.exit(f"unexpected answer: {data[:200]!r}")


main()

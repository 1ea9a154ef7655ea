#!/usr/bin/env python3
"""Deletes the JetStream streams test runs leave behind (named T<hex>_EVENTS), speaking the
NATS text protocol directly so CI needs no NATS client installed."""
import json
import re
import socket
import sys

HOST, PORT = "127.0.0.1", 4222
TEST_STREAM = re.compile(r"^T[0-9A-F]{32}_EVENTS$")


def request(sock, reader, subject, payload=b""):
    sock.sendall(b"PUB %s _INBOX.cleanup %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
    while True:
        line = reader.readline()
        if not line:
            raise SystemExit("NATS closed the connection")
        if line.startswith(b"PING"):
            sock.sendall(b"PONG\r\n")
        elif line.startswith(b"MSG"):
            size = int(line.split()[-1])
            body = reader.read(size + 2)[:size]
            return json.loads(body)


def main():
    sock = socket.create_connection((HOST, PORT), timeout=10)
    reader = sock.makefile("rb")
    reader.readline()  # INFO
    sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.cleanup 1\r\n')
    names, offset = [], 0
    while True:
        page = request(sock, reader, "$JS.API.STREAM.NAMES", json.dumps({"offset": offset}).encode())
        batch = page.get("streams") or []
        names += batch
        offset += len(batch)
        if not batch or offset >= page.get("total", 0):
            break
    stale = [n for n in names if TEST_STREAM.match(n)]
    for name in stale:
        request(sock, reader, f"$JS.API.STREAM.DELETE.{name}")
    print(f"deleted {len(stale)} test streams")


if __name__ == "__main__":
    sys.exit(main())

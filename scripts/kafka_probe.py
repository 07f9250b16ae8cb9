#!/usr/bin/env python3
"""Does a Kafka broker answer a metadata request? Exit 0 if so, 1 if not.

Used by scripts/services.sh before the project's virtualenv exists, so it speaks the wire protocol with
the standard library only: ApiVersions v0 (every broker answers it) to learn which Metadata versions the
broker serves, then Metadata v4..v8 (the non-flexible encodings; Kafka 4 removed v0..v3, KIP-896).

    python3 scripts/kafka_probe.py 127.0.0.1:9092 [--timeout 2]
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys

API_METADATA = 3
API_VERSIONS = 18
CLIENT_ID = b"sentinai-probe"


def _request(sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation, len(CLIENT_ID)) + CLIENT_ID
    message = header + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    size = struct.unpack(">i", _read(sock, 4))[0]
    reply = _read(sock, size)
    if struct.unpack(">i", reply[:4])[0] != correlation:
        raise ValueError("correlation id mismatch")
    return reply[4:]


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


def _string(buf: bytes, at: int) -> tuple[str | None, int]:
    length = struct.unpack_from(">h", buf, at)[0]
    at += 2
    if length < 0:
        return None, at
    return buf[at : at + length].decode(), at + length


def probe(host: str, port: int, timeout: float) -> str:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        reply = _request(sock, API_VERSIONS, 0, 1, b"")
        error, count = struct.unpack_from(">hi", reply, 0)
        if error:
            raise ValueError(f"ApiVersions error {error}")
        versions = {}
        for i in range(count):
            key, low, high = struct.unpack_from(">hhh", reply, 6 + 6 * i)
            versions[key] = (low, high)
        low, high = versions.get(API_METADATA, (0, -1))
        version = max(low, 4)
        if version > min(high, 8):
            raise ValueError(f"broker serves Metadata v{low}..v{high} only")
        body = struct.pack(">ib", -1, 0) + (b"\x00\x00" if version >= 8 else b"")
        reply = _request(sock, API_METADATA, version, 2, body)
        at = 4  # throttle_time_ms
        brokers = struct.unpack_from(">i", reply, at)[0]
        at += 4
        for _ in range(brokers):
            at += 4  # node_id
            _, at = _string(reply, at)
            at += 4  # port
            _, at = _string(reply, at)  # rack
        cluster_id, at = _string(reply, at)
        controller = struct.unpack_from(">i", reply, at)[0]
        if brokers < 1 or controller < 0:
            raise ValueError("metadata has no broker or no active controller yet")
        return f"cluster {cluster_id}, {brokers} broker(s), controller {controller}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="host:port of one broker")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    try:
        print(probe(host or "127.0.0.1", int(port), args.timeout))
    except (OSError, ValueError, struct.error) as exc:
        print(f"no metadata from {args.address}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The fpgagen stream protocol, version 1 (TCP; the README's "Host runtime" section documents it).

Every message: a 4-byte big-endian length N, N bytes of UTF-8 JSON, then ``jpeg_bytes`` bytes of JPEG when the
JSON has that key and it is not 0. The server speaks first (a hello), then sends one message per frame. A viewer
sends nothing, except one ``{"token": "..."}`` message first when the server asks for a shared token.
"""

from __future__ import annotations

import json
import socket
import struct

PROTOCOL, VERSION = "fpgagen-stream", 1
HEADER = struct.Struct(">I")
MAX_JSON = 1 << 20  # a reader refuses larger messages: a hostile or broken peer cannot make it allocate more
MAX_JPEG = 32 << 20


class ProtocolError(Exception):
    """The peer broke protocol v1 (or closed the connection mid-message)."""


def encode(meta: dict, jpeg: bytes | None = None) -> bytes:
    """One message as bytes; ``jpeg_bytes`` is set from ``jpeg`` when the message carries a frame."""
    if jpeg is not None or "jpeg_bytes" in meta:
        meta = {**meta, "jpeg_bytes": len(jpeg) if jpeg else 0}
    body = json.dumps(meta, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body + (jpeg or b"")


def hello(**extra) -> dict:
    return {"protocol": PROTOCOL, "version": VERSION, **extra}


def recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ProtocolError(f"connection closed after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_message(sock: socket.socket, max_json: int = MAX_JSON, max_jpeg: int = MAX_JPEG) -> tuple[dict, bytes]:
    """Read one message -> (meta, jpeg bytes or b"")."""
    (n,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    if n == 0 or n > max_json:
        raise ProtocolError(f"a message length of {n} bytes (the JSON limit is {max_json})")
    try:
        meta = json.loads(recv_exact(sock, n).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"the message is not UTF-8 JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ProtocolError("the message is not a JSON object")
    size = meta.get("jpeg_bytes", 0) or 0
    if not isinstance(size, int) or size < 0 or size > max_jpeg:
        raise ProtocolError(f"jpeg_bytes = {size!r}")
    return meta, recv_exact(sock, size) if size else b""


def check_hello(meta: dict) -> None:
    if meta.get("protocol") != PROTOCOL or meta.get("version") != VERSION:
        raise ProtocolError(f"not an {PROTOCOL} v{VERSION} server (hello: {json.dumps(meta)[:200]})")

"""The server name a TLS client asks for, read out of its ClientHello.

The proxy reads the first TLS record of a tunnel before relaying anything, so that a
client cannot CONNECT to an allowed host and then ask the far end for another
(the SNI decides which site a shared front end serves).
"""

from __future__ import annotations

import struct

HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
MAX_RECORD = 16384 + 2048


class NotAClientHello(ValueError):
    """The bytes are TLS but not a ClientHello the proxy can read."""


def record_length(header: bytes) -> int:
    """Length of the record whose 5-byte header this is (after checking it is a
    handshake record)."""
    if len(header) < 5 or header[0] != HANDSHAKE:
        raise NotAClientHello("not a TLS handshake record")
    length = int(struct.unpack("!H", header[3:5])[0])
    if length > MAX_RECORD:
        raise NotAClientHello("TLS record too long")
    return length


def server_name(body: bytes) -> str | None:
    """The SNI host name in a ClientHello handshake message (the record's body), or
    None when the client sent none."""
    try:
        return _server_name(body)
    except (IndexError, struct.error, UnicodeDecodeError):
        raise NotAClientHello("malformed ClientHello") from None


def _server_name(body: bytes) -> str | None:
    if body[0] != CLIENT_HELLO:
        raise NotAClientHello("the first handshake message is not a ClientHello")
    length = int.from_bytes(body[1:4], "big")
    hello = body[4 : 4 + length]
    if len(hello) < length:
        raise NotAClientHello("the ClientHello spans several records")
    pos = 2 + 32  # client_version, random
    pos += 1 + hello[pos]  # session_id
    pos += 2 + int(struct.unpack("!H", hello[pos : pos + 2])[0])  # cipher_suites
    pos += 1 + hello[pos]  # compression_methods
    if pos >= len(hello):
        return None  # no extensions
    end = pos + 2 + int(struct.unpack("!H", hello[pos : pos + 2])[0])
    pos += 2
    while pos + 4 <= end:
        kind, size = struct.unpack("!HH", hello[pos : pos + 4])
        data = hello[pos + 4 : pos + 4 + size]
        pos += 4 + size
        if kind != 0:  # server_name
            continue
        # server_name_list: length, then (type, length, name) entries
        inner = 2
        while inner + 3 <= len(data):
            name_type = data[inner]
            name_len = int(struct.unpack("!H", data[inner + 1 : inner + 3])[0])
            name = data[inner + 3 : inner + 3 + name_len]
            inner += 3 + name_len
            if name_type == 0:
                return name.decode("ascii").lower().rstrip(".")
        raise NotAClientHello("a server_name extension without a host name")
    return None

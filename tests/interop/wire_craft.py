"""Hand-built Kafka wire bytes for the malformed-input suite (test_malformed.py).

Everything here is written from the Kafka protocol specification (request and response
headers, Produce v7, record batch v2), so each case can break exactly one field. The
CRC-32C comes from kafka-python's implementation; compression from the codec packages the
suite already pins (python-snappy, lz4, zstandard) and the standard library (gzip).
"""

from __future__ import annotations

import gzip
import socket
import ssl
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Optional

from kafka.record.util import calc_crc32c

CODEC = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


# --------------------------------------------------------------------------
# Primitives
# --------------------------------------------------------------------------


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n: int) -> bytes:
    """Zig-zag signed varint (record fields)."""
    return uvarint((n << 1) ^ (n >> 63) if n < 0 else n << 1)


def string(s: Optional[str]) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def header_v1(api_key: int, version: int, corr: int, client_id: Optional[str] = "veil-malformed") -> bytes:
    return struct.pack(">hhi", api_key, version, corr) + string(client_id)


def header_v2(api_key: int, version: int, corr: int, tags: bytes = b"\x00") -> bytes:
    """Header v2: v1's fields, then tagged fields (`tags` raw: count, then tag/size/data)."""
    return header_v1(api_key, version, corr) + tags


# --------------------------------------------------------------------------
# Records and batches (record batch v2, magic 2)
# --------------------------------------------------------------------------


def record(offset_delta: int, key: Optional[bytes], value: Optional[bytes],
           headers: tuple = ()) -> bytes:
    body = bytearray(b"\x00")  # attributes
    body += varint(0) + varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(len(headers))
    for hk, hv in headers:
        body += varint(len(hk)) + hk + (varint(-1) if hv is None else varint(len(hv)) + hv)
    return varint(len(body)) + bytes(body)


def records_of(values: list[bytes]) -> bytes:
    return b"".join(record(i, None, v) for i, v in enumerate(values))


def compress(codec: str, data: bytes) -> bytes:
    if codec == "none":
        return data
    if codec == "gzip":
        return gzip.compress(data)
    if codec == "snappy":
        import snappy

        return snappy.compress(data)
    if codec == "lz4":
        import lz4.frame

        return lz4.frame.compress(data)
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(codec)


def batch(records: bytes, count: int, *, attributes: int = 0, magic: int = 2, crc: Optional[int] = None,
          last_offset_delta: Optional[int] = None, length_delta: int = 0, length: Optional[int] = None) -> bytes:
    """A record batch around already-encoded (and, per `attributes`, compressed) records.
    `crc`, `length`/`length_delta` and `last_offset_delta` override the computed fields."""
    lod = count - 1 if last_offset_delta is None else last_offset_delta
    now = int(time.time() * 1000)
    after_crc = (struct.pack(">hiqqqhii", attributes, lod, now, now, -1, -1, -1, count) + records)
    computed = calc_crc32c(after_crc)
    body = struct.pack(">ib", -1, magic) + struct.pack(">I", computed if crc is None else crc) + after_crc
    size = len(body) + length_delta if length is None else length
    return struct.pack(">qi", 0, size) + body


def valid_batch(values: list[bytes], codec: str = "none") -> bytes:
    return batch(compress(codec, records_of(values)), len(values), attributes=CODEC[codec])


def produce_v7(corr: int, topic: str, partition: int, records: Optional[bytes], *,
               records_length: Optional[int] = None) -> bytes:
    """A Produce v7 request frame (acks=-1) with one topic and partition."""
    if records is None:
        rec = struct.pack(">i", -1)
    else:
        rec = struct.pack(">i", len(records) if records_length is None else records_length) + records
    body = (header_v1(0, 7, corr) + string(None) + struct.pack(">hi", -1, 10000)
            + struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1) + struct.pack(">i", partition) + rec)
    return frame(body)


@dataclass
class ProducePartitionResult:
    topic: str
    partition: int
    error_code: int
    base_offset: int


def parse_produce_v7_response(payload: bytes) -> tuple[int, list[ProducePartitionResult]]:
    corr, ntopics = struct.unpack_from(">ii", payload, 0)
    pos, out = 8, []
    for _ in range(ntopics):
        (tlen,) = struct.unpack_from(">h", payload, pos)
        name = payload[pos + 2:pos + 2 + tlen].decode()
        pos += 2 + tlen
        (nparts,) = struct.unpack_from(">i", payload, pos)
        pos += 4
        for _ in range(nparts):
            index, err, base, _append, _start = struct.unpack_from(">ihqqq", payload, pos)
            pos += 4 + 2 + 8 + 8 + 8
            out.append(ProducePartitionResult(name, index, err, base))
    return corr, out


def tls_client_hello() -> bytes:
    """The first flight of a real TLS client (Python's ssl module), as it would hit a plaintext port."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[:1] == b"\x16", "not a TLS handshake record"
    return hello


def _zeros_through(compressor, uncompressed_bytes: int) -> bytes:
    """Feeds `uncompressed_bytes` zero bytes to a streaming compressor in 1 MiB chunks (never
    holding them whole) and returns the compressed stream."""
    chunk = bytes(1 << 20)
    out = bytearray()
    left = uncompressed_bytes
    while left > 0:
        n = min(left, len(chunk))
        out += compressor.compress(chunk[:n])
        left -= n
    out += compressor.flush()
    return bytes(out)


def gzip_bomb(uncompressed_bytes: int) -> bytes:
    """A gzip stream of `uncompressed_bytes` zero bytes."""
    return _zeros_through(zlib.compressobj(9, zlib.DEFLATED, 31), uncompressed_bytes)


def zstd_bomb(uncompressed_bytes: int) -> bytes:
    """A zstd frame of `uncompressed_bytes` zero bytes (its header states the size)."""
    import zstandard

    return _zeros_through(zstandard.ZstdCompressor(level=3).compressobj(size=uncompressed_bytes), uncompressed_bytes)


# --------------------------------------------------------------------------
# One raw exchange
# --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the peer did after the crafted bytes: `closed` (EOF or reset, nothing received),
    `response` (one whole frame, in `payload`), or `open` (neither within the timeout)."""

    kind: str
    payload: bytes = b""
    received: bytes = b""

    def __str__(self):
        extra = f", {len(self.payload)}-byte response" if self.kind == "response" else ""
        return f"{self.kind}{extra}"


def exchange(port: int, data: bytes, *, timeout: float = 10.0, hang_up: bool = False) -> Outcome:
    """Sends `data` on a fresh connection and reports what came back. With `hang_up`, this
    side closes right after sending (a client that disappears mid-frame)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return Outcome("closed")
        if hang_up:
            return Outcome("closed")
        got = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                return Outcome("closed", received=bytes(got)) if not got else Outcome("garbage", received=bytes(got))
            if not chunk:
                if not got:
                    return Outcome("closed")
                break
            got += chunk
            if len(got) >= 4:
                (size,) = struct.unpack_from(">i", got, 0)
                if 0 <= size <= len(got) - 4:
                    return Outcome("response", bytes(got[4:4 + size]), bytes(got))
        return Outcome("open" if not got else "garbage", received=bytes(got))

#!/usr/bin/env python3
"""Writes the seed corpus for Fuzz/WireFuzz.swift into Fuzz/corpus/wire/.

Seeds come from the real-client fixtures (Tests/VeilWireTests/Fixtures) and from
hand-made frames for versions the clients did not use. Each seed starts with the mode
byte WireFuzz.swift expects:
  0  request frames        1  [api selector][version] response frames
  2  [flags] record set    3  [api selector][version][0 request / 1 response] body
"""
import hashlib
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "VeilWireTests", "Fixtures")
OUT = os.path.join(ROOT, "Fuzz", "corpus", "wire")
MAX_SEED = 4096

# Selector order of `modelledApis` in WireFuzz.swift.
SELECTOR = {0: 0, 1: 1, 3: 2, 10: 3, 18: 4, 17: 5, 36: 6, 60: 7}
FLEXIBLE_FROM = {0: 9, 1: 12, 3: 9, 10: 3, 18: 3, 17: None, 36: 2, 60: 0}

_TABLE = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _TABLE.append(c)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def flexible(api, version):
    start = FLEXIBLE_FROM.get(api, 0)
    return start is not None and version >= start


def uvarint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint(n):
    return uvarint((n << 1) ^ (n >> 63) if n < 0 else n << 1)


def frame(body):
    return struct.pack(">i", len(body)) + body


def request_header(api, version, corr=1, client=b"fuzz"):
    h = struct.pack(">hhi", api, version, corr)
    if api == 7 and version == 0:
        return h
    h += struct.pack(">h", len(client)) + client
    if flexible(api, version):
        h += b"\x00"
    return h


def record_batch(records, attributes=0, base_offset=0):
    body = b""
    for i, (key, value, headers) in enumerate(records):
        r = b"\x00" + varint(i) + varint(i)
        for field in (key, value):
            r += varint(-1) if field is None else varint(len(field)) + field
        r += varint(len(headers))
        for hk, hv in headers:
            r += varint(len(hk)) + hk + (varint(-1) if hv is None else varint(len(hv)) + hv)
        body += varint(len(r)) + r
    covered = struct.pack(">hiqqqhii", attributes, max(len(records) - 1, 0), 1700000000000, 1700000000000 + len(records),
                          -1, -1, -1, len(records)) + body
    return struct.pack(">qii", base_offset, 9 + len(covered), 0) + b"\x02" + struct.pack(">I", crc32c(covered)) + covered


def legacy_message(magic, offset, key, value):
    body = bytes([magic, 0]) + (struct.pack(">q", 1600000000000) if magic == 1 else b"")
    for field in (key, value):
        body += struct.pack(">i", -1) if field is None else struct.pack(">i", len(field)) + field
    return struct.pack(">qi", offset, 4 + len(body)) + struct.pack(">I", 0) + body


def header_length(frame_bytes, direction, api, version):
    """Length of the request/response header at the start of a captured frame."""
    if direction == "response":
        if api != 18 and flexible(api, version):
            return 4 + 1 + _tags_length(frame_bytes, 4)
        return 4
    n = 8
    if not (api == 7 and version == 0):
        (length,) = struct.unpack_from(">h", frame_bytes, 8)
        n = 10 + max(length, 0)
        if flexible(api, version):
            n += 1 + _tags_length(frame_bytes, n)
    return n


def _tags_length(data, at):
    # Only empty tag sections occur in the fixtures' headers.
    assert data[at] == 0, "non-empty tagged header"
    return 0


def batches_in(data):
    """Every CRC-valid magic-2 batch inside `data`."""
    found, i = [], 0
    while i + 61 <= len(data):
        size = struct.unpack_from(">i", data, i + 8)[0]
        if data[i + 16] == 2 and 49 <= size and i + 12 + size <= len(data):
            stored = struct.unpack_from(">I", data, i + 17)[0]
            if stored == crc32c(data[i + 21:i + 12 + size]):
                found.append(data[i:i + 12 + size])
                i += 12 + size
                continue
        i += 1
    return found


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))
    seeds = {}

    def add(label, data):
        if len(data) > MAX_SEED:
            return
        seeds[f"{label}-{hashlib.sha1(data).hexdigest()[:10]}"] = data

    manifest = json.load(open(os.path.join(FIXTURES, "manifest.json")))
    for f in manifest["fixtures"]:
        data = open(os.path.join(FIXTURES, f["file"]), "rb").read()
        api, version, direction = f["api_key"], f["api_version"], f["direction"]
        stem = os.path.basename(f["file"])[: -len(".bin")]
        if direction == "request":
            add(f"req-{stem}", b"\x00" + frame(data))
        elif api in SELECTOR:
            add(f"resp-{stem}", b"\x01" + bytes([SELECTOR[api], version]) + frame(data))
        if api in SELECTOR:
            body = data[header_length(data, direction, api, version):]
            add(f"body-{stem}", b"\x03" + bytes([SELECTOR[api], version, 0 if direction == "request" else 1]) + body)
        if f.get("record_set"):
            for b in batches_in(data):
                add(f"batch-{stem}", b"\x02\x01" + b)

    # Hand-made: versions and shapes the clients did not produce.
    recs = [(b"k", b"v", [(b"h", None)]), (None, b"", []), (b"k2", None, [(b"e", b"")])]
    v2 = record_batch(recs, base_offset=0)
    control = record_batch([(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x05", [])], attributes=0x30, base_offset=3)
    add("records-legacy", b"\x02\x01" + legacy_message(0, 0, None, b"v0") + legacy_message(1, 1, b"k", None) + v2)
    add("records-truncated", b"\x02\x01" + v2 + v2[:40])
    add("records-control", b"\x02\x01" + control)
    add("records-nocrc", b"\x02\x00" + record_batch(recs, attributes=0x58))
    add("records-empty-batch", b"\x02\x01" + record_batch([]))
    tid = bytes(range(16))
    produce_v13 = (uvarint(0) + struct.pack(">hi", -1, 5000) + uvarint(2) + tid + uvarint(2) + struct.pack(">i", 0)
                   + uvarint(len(v2) + 1) + v2 + b"\x00\x00\x00")
    add("req-produce-v13", b"\x00" + frame(request_header(0, 13) + produce_v13))
    produce_v3 = struct.pack(">hhi", -1, 1, 5000) + struct.pack(">i", 1) + struct.pack(">h", 1) + b"t" + struct.pack(">ii", 1, 0) + struct.pack(">i", len(v2)) + v2
    add("req-produce-v3", b"\x00" + frame(request_header(0, 3) + produce_v3))
    fetch_v17 = (struct.pack(">iiib", 500, 1, 0x7FFFFFFF, 0) + struct.pack(">ii", 0, -1) + uvarint(2) + tid + uvarint(2)
                 + struct.pack(">iiqiqi", 0, -1, 0, -1, -1, 1 << 20) + b"\x01\x00" + uvarint(16) + bytes(16) + b"\x00"
                 + uvarint(1) + uvarint(1) + b"\x01\x00\x04\x04cid")
    add("req-fetch-v17", b"\x00" + frame(request_header(1, 17) + fetch_v17))
    node_endpoints = uvarint(2) + struct.pack(">i", 1) + uvarint(2) + b"h" + struct.pack(">i", 9092) + b"\x00\x00"
    fetch_resp_v16 = (struct.pack(">ihi", 0, 0, 0) + uvarint(2) + tid + uvarint(2) + struct.pack(">ihqqq", 0, 0, 4, 4, 0)
                      + b"\x00" + struct.pack(">i", -1) + uvarint(len(v2) + 1) + v2 + b"\x00\x00"
                      + uvarint(1) + uvarint(0) + uvarint(len(node_endpoints)) + node_endpoints)
    add("resp-fetch-v16", b"\x01" + bytes([1, 16]) + frame(struct.pack(">i", 1) + b"\x00" + fetch_resp_v16))
    add("resp-fetch-v4", b"\x01" + bytes([1, 4]) + frame(struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", 1)
                                                       + struct.pack(">h", 1) + b"t" + struct.pack(">iihqq", 1, 0, 0, 5, 5)
                                                       + struct.pack(">i", 1) + struct.pack(">qq", 7, 2) + struct.pack(">i", len(v2)) + v2))
    add("req-controlledshutdown-v0", b"\x00" + frame(request_header(7, 0) + struct.pack(">i", 1)))
    add("req-sasl", b"\x00" + frame(request_header(17, 1) + b"\x00\x05PLAIN")
        + frame(request_header(36, 2) + uvarint(9) + b"\x00user\x00pw" + b"\x00")
        + frame(request_header(36, 0, corr=3) + struct.pack(">i", 4) + b"\x00u\x00p"))
    add("resp-sasl-auth-v1", b"\x01" + bytes([6, 1]) + frame(struct.pack(">ih", 1, 0) + struct.pack(">h", -1) + struct.pack(">i", 0) + struct.pack(">q", 3600000)))
    add("resp-sasl-handshake", b"\x01" + bytes([5, 1]) + frame(struct.pack(">ih", 1, 0) + struct.pack(">i", 1) + b"\x00\x05PLAIN"))
    add("req-describecluster-v2", b"\x00" + frame(request_header(60, 2) + b"\x01\x01\x01\x00"))
    add("resp-describecluster-v1", b"\x01" + bytes([7, 1]) + frame(struct.pack(">i", 1) + b"\x00" + struct.pack(">ih", 0, 0) + b"\x00\x02\x04cid"
                                                                + struct.pack(">i", 1) + b"\x02" + struct.pack(">i", 1) + b"\x02h" + struct.pack(">i", 9092) + b"\x00\x00"
                                                                + struct.pack(">i", -2147483648) + b"\x00"))
    add("req-findcoordinator-v4", b"\x00" + frame(request_header(10, 4) + b"\x00\x03\x02g\x02h\x00"))
    add("resp-findcoordinator-v6", b"\x01" + bytes([3, 6]) + frame(struct.pack(">i", 1) + b"\x00" + struct.pack(">i", 0) + b"\x02\x02g" + struct.pack(">i", 1)
                                                                + b"\x02h" + struct.pack(">ih", 9092, 0) + b"\x00\x00\x00"))
    add("req-metadata-v13", b"\x00" + frame(request_header(3, 13) + b"\x02" + tid + b"\x00\x00\x01\x00\x01\x05\x01\xff"))
    metadata_v13 = (struct.pack(">i", 0) + b"\x02" + struct.pack(">i", 1) + b"\x02h" + struct.pack(">i", 9092) + b"\x00\x00" + b"\x04cid"
                    + struct.pack(">i", 1) + b"\x02" + struct.pack(">h", 0) + b"\x02t" + tid + b"\x00" + b"\x02"
                    + struct.pack(">hiii", 0, 0, 1, 5) + b"\x02" + struct.pack(">i", 1) + b"\x02" + struct.pack(">i", 1) + b"\x01\x00"
                    + struct.pack(">i", -2147483648) + b"\x00" + struct.pack(">h", 0) + b"\x00")
    add("resp-metadata-v13", b"\x01" + bytes([2, 13]) + frame(struct.pack(">i", 1) + b"\x00" + metadata_v13))
    add("resp-apiversions-35", b"\x01" + bytes([4, 3]) + frame(struct.pack(">ih", 1, 35) + struct.pack(">i", 1) + struct.pack(">hhh", 18, 0, 2)))
    add("frames-tls", b"\x00" + bytes.fromhex("160301020001000 1fc0303".replace(" ", "")))
    add("frames-negative", b"\x00" + struct.pack(">i", -1))

    for name, data in sorted(seeds.items()):
        open(os.path.join(OUT, name), "wb").write(data)
    total = sum(len(d) for d in seeds.values())
    print(f"{len(seeds)} seeds, {total} bytes, in {os.path.relpath(OUT, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()

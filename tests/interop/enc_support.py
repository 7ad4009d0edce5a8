"""Support for the record-encryption interop suite (test_encryption.py).

- `EncEnv`: one Tansu broker and Veil sidecars (owner producer; finance and sales
  consumers), each with its own local keyring written per docs/FORMAT.md.
- `produce(...)`: per-client producers that report each record's outcome, errors included.
- `ConsumerSession`: per-client consumers on assign() that can be polled repeatedly.
- `raw_fetch(...)`: a minimal Fetch v4 client straight to the broker, returning the raw
  response bytes and the stored batches parsed (with kafka-python's record decoder).
- `parse_envelope(...)`: the envelope layout of docs/FORMAT.md, section 1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from clients import ConfluentClient, ConsumeOpts, Rec
from conftest import (Proc, _log_tail, api_versions_ok, free_port, free_port_block, tansu_binary,
                      veil_binary, wait_for_api_versions, wait_for_port)

MAGIC = bytes.fromhex("c156454c")
END_KEY = b"end"  # tombstones with this key end every partition: visible to every consumer

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

# Kafka error codes used here.
NOT_ENOUGH_REPLICAS = 19
TOPIC_AUTHORIZATION_FAILED = 29
INVALID_RECORD = 87


# --------------------------------------------------------------------------
# Keyrings, made with `veil keys` (docs/CONFIGURATION.md); material read back per docs/FORMAT.md
# --------------------------------------------------------------------------


def veil_keys(*args: str) -> str:
    binary = veil_binary()
    if binary is None:
        raise RuntimeError("veil binary not found (set VEIL_BIN, or build .build/release/veil)")
    r = subprocess.run([str(binary), "keys", *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"veil keys {' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout


def keyring_material(path: Path, key_id: str) -> bytes:
    """A key's 32 bytes from a keyring file (format per docs/FORMAT.md section 2)."""
    doc = json.loads(path.read_text())
    assert doc["format"] == "veil-keyring" and doc["version"] == 1, f"{path}: not a version-1 veil keyring"
    (entry,) = [k for k in doc["keys"] if k["id"] == key_id]
    material = base64.b64decode(entry["material"])
    assert len(material) == 32
    return material


# --------------------------------------------------------------------------
# Envelopes
# --------------------------------------------------------------------------


@dataclass
class Envelope:
    version: int
    flags: int
    kms: str
    key_id: str
    wrapped: bytes
    nonce: bytes
    ciphertext: bytes
    tag: bytes
    header_len: int

    @property
    def key_section(self) -> tuple:
        return (self.kms, self.key_id, self.wrapped)


def parse_envelope(v: bytes) -> Envelope:
    """Parses an envelope per docs/FORMAT.md; raises ValueError if the bytes are not one."""
    if v is None or len(v) < 4 or v[:4] != MAGIC:
        raise ValueError("no envelope magic")
    pos = 4
    version, flags, k = v[pos], v[pos + 1], v[pos + 2]
    pos += 3
    kms = v[pos:pos + k].decode()
    pos += k
    (i,) = struct.unpack_from(">H", v, pos)
    pos += 2
    key_id = v[pos:pos + i].decode()
    pos += i
    (w,) = struct.unpack_from(">H", v, pos)
    pos += 2
    wrapped = v[pos:pos + w]
    pos += w
    nonce = v[pos:pos + 12]
    pos += 12
    if len(v) < pos + 16:
        raise ValueError("envelope shorter than its header and tag")
    return Envelope(version, flags, kms, key_id, wrapped, nonce, v[pos:len(v) - 16], v[len(v) - 16:], pos)


def seal_envelope(kek: bytes, kms: str, key_id: str, topic: Optional[str], plaintext: bytes, *,
                  dek: Optional[bytes] = None, counter: int = 0) -> bytes:
    """An envelope made independently of Veil (Python's `cryptography`), per docs/FORMAT.md:
    a fresh DEK (or `dek`) wrapped under `kek` by the local-keyring scheme, whole-value AAD."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    dek = dek or os.urandom(32)
    k, i = kms.encode(), key_id.encode()
    wrap_nonce = os.urandom(12)
    wrap_aad = b"\x01" + bytes([len(k)]) + k + struct.pack(">H", len(i)) + i
    wrapped = b"\x01" + wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, dek, wrap_aad)
    nonce = os.urandom(4) + struct.pack(">Q", counter)
    header = (MAGIC + b"\x01" + (b"\x01" if topic is not None else b"\x00") + bytes([len(k)]) + k
              + struct.pack(">H", len(i)) + i + struct.pack(">H", len(wrapped)) + wrapped + nonce)
    aad = header + struct.pack(">H", 0)
    if topic is not None:
        aad += struct.pack(">H", len(topic.encode())) + topic.encode()
    return header + AESGCM(dek).encrypt(nonce, plaintext, aad)


def envelope_overhead(env: Envelope) -> int:
    return 39 + len(env.kms.encode()) + len(env.key_id.encode()) + len(env.wrapped)


# --------------------------------------------------------------------------
# Raw Fetch, straight to the broker
# --------------------------------------------------------------------------


@dataclass
class RawBatch:
    base_offset: int
    attributes: int
    codec: int
    transactional: bool
    control: bool
    producer_id: int
    producer_epoch: int
    base_sequence: int
    count: int
    last_offset_delta: int


@dataclass
class RawRecord:
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: list
    timestamp: int
    batch: RawBatch


@dataclass
class RawLog:
    high_watermark: int
    responses: list = field(default_factory=list)  # raw Fetch response bodies
    batches: list = field(default_factory=list)  # RawBatch, in order
    records: list = field(default_factory=list)  # RawRecord of data batches, in order

    @property
    def raw_bytes(self) -> bytes:
        return b"".join(self.responses)

    def by_offset(self) -> dict:
        return {r.offset: r for r in self.records}


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _fetch_v4(s: socket.socket, corr: int, topic: str, partition: int, offset: int, isolation: int,
              max_bytes: int) -> tuple[bytes, int, int, Optional[bytes]]:
    body = (struct.pack(">hhi", 1, 4, corr) + _string("veil-enc-rawfetch")
            + struct.pack(">iiiib", -1, 100, 1, max_bytes, isolation)
            + struct.pack(">i", 1) + _string(topic)
            + struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, max_bytes))
    s.sendall(struct.pack(">i", len(body)) + body)
    (size,) = struct.unpack(">i", _recv_exact(s, 4))
    data = _recv_exact(s, size)
    pos = 0
    (rcorr, _throttle, ntopics) = struct.unpack_from(">iii", data, pos)
    pos += 12
    if rcorr != corr or ntopics != 1:
        raise RuntimeError(f"unexpected fetch response (correlation {rcorr}, {ntopics} topics)")
    (tlen,) = struct.unpack_from(">h", data, pos)
    pos += 2 + tlen
    (nparts,) = struct.unpack_from(">i", data, pos)
    pos += 4
    if nparts != 1:
        raise RuntimeError(f"unexpected fetch response ({nparts} partitions)")
    (_p, err, hwm, _lso, naborted) = struct.unpack_from(">ihqqi", data, pos)
    pos += 4 + 2 + 8 + 8 + 4
    pos += max(naborted, 0) * 16
    (rlen,) = struct.unpack_from(">i", data, pos)
    pos += 4
    records = None if rlen < 0 else data[pos:pos + rlen]
    return data, err, hwm, records


def raw_fetch(port: int, topic: str, partition: int, isolation: int = 0, max_bytes: int = 4 << 20,
              timeout_s: float = 20.0) -> RawLog:
    """Reads a partition from offset 0 to its high watermark straight from the broker."""
    from kafka.record import MemoryRecords

    log = RawLog(high_watermark=-1)
    deadline = time.monotonic() + timeout_s
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        offset, corr = 0, 1
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw fetch of {topic}/{partition} did not reach the high watermark")
            data, err, hwm, records = _fetch_v4(s, corr, topic, partition, offset, isolation, max_bytes)
            corr += 1
            if err != 0:
                raise RuntimeError(f"raw fetch of {topic}/{partition} at {offset}: error code {err}")
            log.responses.append(data)
            log.high_watermark = hwm
            if offset >= hwm:
                return log
            advanced = False
            mr = MemoryRecords(records or b"")
            while mr.has_next():
                b = mr.next_batch()
                if b is None:
                    break
                next_offset = b.base_offset + b.last_offset_delta + 1
                if next_offset <= offset:
                    continue  # the broker may return a batch that starts before the asked offset
                info = RawBatch(b.base_offset, b.attributes, b.attributes & 7, bool(b.is_transactional),
                                bool(b.is_control_batch), b.producer_id, b.producer_epoch, b.base_sequence,
                                b.records_count, b.last_offset_delta)
                log.batches.append(info)
                if not info.control:
                    for r in b:
                        if r.offset >= offset:
                            log.records.append(RawRecord(r.offset, r.key, r.value, list(r.headers), r.timestamp,
                                                         info))
                offset = next_offset
                advanced = True
            if not advanced:
                time.sleep(0.1)


def api_versions(port: int) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 over a raw socket: {api_key: (min, max)}."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        body = struct.pack(">hhi", 18, 0, 77) + _string("veil-enc-apiversions")
        s.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        data = _recv_exact(s, size)
    corr, err, n = struct.unpack_from(">ihi", data, 0)
    if corr != 77 or err != 0:
        raise RuntimeError(f"ApiVersions answered correlation {corr}, error {err}")
    out = {}
    for i in range(n):
        k, lo, hi = struct.unpack_from(">hhh", data, 10 + 6 * i)
        out[k] = (lo, hi)
    return out


# --------------------------------------------------------------------------
# Processes: broker and sidecars
# --------------------------------------------------------------------------


@dataclass
class Sidecar:
    name: str
    port: int
    proc: Proc
    config_path: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        try:
            return self.proc.log_path.read_text(errors="replace")
        except OSError:
            return ""


class EncEnv:
    """A broker, keyrings and sidecars for one test module; every process is stopped by pid."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.procs: list[Proc] = []
        self.stopped: list[Proc] = []  # stopped on purpose by a test
        self.sidecars: dict[str, Sidecar] = {}
        self.keyrings: dict[str, Path] = {}

    # ---- broker
    def start_broker(self):
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        proc = Proc("tansu", [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
                    self.dir / "tansu.log")
        self.procs.append(proc)
        wait_for_api_versions(proc, port, 20)
        self.broker_port = port
        self.broker_proc = proc

    @property
    def broker(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    # ---- keyrings
    def create_keyring(self, name: str, identity: str, key_id: str) -> Path:
        path = self.dir / f"{name}.keyring"
        veil_keys("create", "--keyring", str(path), "--key", key_id, "--identity", identity)
        self.keyrings[name] = path
        return path

    def grant_keyring(self, source: str, name: str, identity: str, key_id: str) -> Path:
        path = self.dir / f"{name}.keyring"
        veil_keys("grant", "--from", str(self.keyrings[source]), "--to", str(path), "--key", key_id,
                  "--identity", identity)
        self.keyrings[name] = path
        return path

    # ---- sidecars
    def start_sidecar(self, name: str, config: dict) -> Sidecar:
        binary = veil_binary()
        if binary is None:
            raise RuntimeError("veil binary not found (set VEIL_BIN, or build .build/release/veil)")
        port = free_port()
        count = 8
        first = free_port_block(count, avoid={port, self.broker_port})
        full = {"identity": name, "listen": f"127.0.0.1:{port}", "upstream": {"bootstrap": [self.broker]},
                "broker_ports": {"first": first, "count": count}} | config
        cfg = self.dir / f"veil-{name}.yaml"
        cfg.write_text(json.dumps(full, indent=2))  # JSON is YAML
        proc = Proc(f"veil-{name}", [str(binary), "run", "--config", str(cfg)], self.dir / f"veil-{name}.log")
        self.procs.append(proc)
        sc = Sidecar(name, port, proc, cfg)
        self.sidecars[name] = sc
        wait_for_port(proc, port, 30)
        return sc

    def stop(self):
        for p in reversed(self.procs):
            p.stop()

    def stop_sidecar(self, sc: Sidecar):
        """Stops a sidecar on purpose (SIGTERM, then SIGKILL after 5 s), so it is not reported as dead."""
        sc.proc.stop()
        self.procs.remove(sc.proc)
        self.stopped.append(sc.proc)

    def dead(self) -> list[Proc]:
        """Processes that exited although nothing stopped them (sidecars and the broker never exit)."""
        return [p for p in self.procs if not p.alive()]

    def tails(self) -> str:
        out = []
        for sc in self.sidecars.values():
            out.append(f"---- config {sc.config_path}:\n{sc.config_path.read_text()}")
        for p in self.procs:
            out.append(f"---- {p.name} (pid {p.pid}, {'alive' if p.alive() else f'exit {p.popen.returncode}'}) "
                       f"{p.log_path}:\n{_log_tail(p.log_path, 30)}")
        return "\n".join(out)

    def create_topic(self, topic: str, partitions: int):
        code = ConfluentClient(self.broker).create_topic(topic, partitions)
        if code != 0:
            raise RuntimeError(f"CreateTopics {topic}: error code {code}")


# --------------------------------------------------------------------------
# Producing, with per-record outcomes
# --------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    partition: int = -1
    offset: int = -1
    errno: Optional[int] = None  # Kafka error code, as the client reports it
    error: str = ""


def _errno(e) -> Optional[int]:
    return getattr(e, "errno", None)


def produce(client: str, bootstrap: str, topic: str, records: list, *, codec: str = "none",
            idempotent: bool = False, flush_every: Optional[int] = None, extra: Optional[dict] = None,
            timestamps: Optional[list] = None, timeout_s: float = 60.0) -> list[Outcome]:
    """Produces `records` (Rec with partition set) in order, with CreateTime `timestamps` (ms) if given;
    returns one Outcome per record."""
    extra = extra or {}
    ts = timestamps or [None] * len(records)
    if client == "confluent":
        from confluent_kafka import Producer

        conf = {"bootstrap.servers": bootstrap, "client.id": "veil-enc-confluent", "compression.type": codec,
                "linger.ms": 5, "acks": "all", "enable.idempotence": idempotent,
                "message.max.bytes": 8 << 20} | extra
        p = Producer(conf)
        out: list = [None] * len(records)

        def cb(i):
            def done(err, msg):
                out[i] = (Outcome(False, errno=err.code(), error=str(err)) if err is not None
                          else Outcome(True, msg.partition(), msg.offset()))
            return done

        for i, r in enumerate(records):
            p.produce(topic, key=r.key, value=r.value, headers=list(r.headers) or None, partition=r.partition,
                      on_delivery=cb(i), **({"timestamp": ts[i]} if ts[i] is not None else {}))
            p.poll(0)
            if flush_every and (i + 1) % flush_every == 0:
                p.flush(timeout_s)
        left = p.flush(timeout_s)
        if left:
            raise TimeoutError(f"{left} messages neither delivered nor failed in {timeout_s} s")
        return out

    if client == "kafka-python":
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        conf = {"bootstrap_servers": bootstrap, "client_id": "veil-enc-kafka-python",
                "compression_type": None if codec == "none" else codec, "linger_ms": 5, "acks": "all",
                "enable_idempotence": idempotent, "max_request_size": 8 << 20, "request_timeout_ms": 30000} | extra
        p = KafkaProducer(**conf)
        try:
            futs = []
            for i, r in enumerate(records):
                futs.append(p.send(topic, key=r.key, value=r.value, headers=list(r.headers), partition=r.partition,
                                   timestamp_ms=ts[i]))
                if flush_every and (i + 1) % flush_every == 0:
                    p.flush(timeout_s)
            p.flush(timeout_s)
            out = []
            for f in futs:
                try:
                    md = f.get(timeout_s)
                    out.append(Outcome(True, md.partition, md.offset))
                except KafkaError as e:
                    out.append(Outcome(False, errno=_errno(e), error=repr(e)))
            return out
        finally:
            p.close(10)

    if client == "aiokafka":
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        async def go():
            conf = {"bootstrap_servers": bootstrap, "client_id": "veil-enc-aiokafka",
                    "compression_type": None if codec == "none" else codec, "linger_ms": 5, "acks": "all",
                    "enable_idempotence": idempotent, "max_request_size": 8 << 20,
                    "request_timeout_ms": 30000} | extra
            p = AIOKafkaProducer(**conf)
            await p.start()
            try:
                futs = []
                for i, r in enumerate(records):
                    futs.append(await p.send(topic, key=r.key, value=r.value, headers=list(r.headers),
                                             partition=r.partition, timestamp_ms=ts[i]))
                    if flush_every and (i + 1) % flush_every == 0:
                        await p.flush()
                await p.flush()
                out = []
                for f in futs:
                    try:
                        md = await asyncio.wait_for(f, timeout_s)
                        out.append(Outcome(True, md.partition, md.offset))
                    except (KafkaError, asyncio.TimeoutError) as e:
                        out.append(Outcome(False, errno=_errno(e), error=repr(e)))
                return out
            finally:
                await p.stop()

        return asyncio.run(asyncio.wait_for(go(), timeout_s + 60))

    raise ValueError(client)


def client_error_code(client: str, code: int):
    """How `client` reports Kafka error `code`: the errno its own error mapping gives it
    (aiokafka maps codes it does not know, such as 87, to UnknownError with errno -1)."""
    if client == "confluent":
        return code
    if client == "kafka-python":
        from kafka.errors import for_code
    else:
        from aiokafka.errors import for_code
    return for_code(code).errno


# --------------------------------------------------------------------------
# Consuming with assign(), polled repeatedly
# --------------------------------------------------------------------------


class ConsumeError(Exception):
    def __init__(self, errno, text):
        super().__init__(f"consume error {errno}: {text}")
        self.errno = errno
        self.text = text


class ConsumerSession:
    """A consumer assigned to `partitions` from the beginning; records accumulate in `.records`."""

    def __init__(self, client: str, bootstrap: str, topic: str, partitions: list, *,
                 isolation: str = "read_uncommitted", max_fetch_bytes: Optional[int] = None):
        self.client, self.topic, self.partitions = client, topic, partitions
        self.records: list[Rec] = []
        self.timestamps: dict = {}  # (partition, offset) -> timestamp (ms) as the client reports it
        if client == "confluent":
            from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

            conf = ConfluentClient(bootstrap)._consumer_conf(ConsumeOpts(isolation=isolation,
                                                                         max_fetch_bytes=max_fetch_bytes))
            conf["client.id"] = "veil-enc-confluent"
            if max_fetch_bytes:  # librdkafka requires fetch.max.bytes >= message.max.bytes
                conf["message.max.bytes"] = min(max_fetch_bytes, 1000000)
            self.c = Consumer(conf)
            self.c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        elif client == "kafka-python":
            from kafka import KafkaConsumer, TopicPartition

            conf = {"bootstrap_servers": bootstrap, "client_id": "veil-enc-kafka-python", "group_id": None,
                    "enable_auto_commit": False, "auto_offset_reset": "earliest", "isolation_level": isolation,
                    "request_timeout_ms": 30000}
            if max_fetch_bytes:
                conf |= {"fetch_max_bytes": max_fetch_bytes, "max_partition_fetch_bytes": max_fetch_bytes}
            self.c = KafkaConsumer(**conf)
            tps = [TopicPartition(topic, p) for p in partitions]
            self.c.assign(tps)
            self.c.seek_to_beginning(*tps)
        elif client == "aiokafka":
            from aiokafka import AIOKafkaConsumer, TopicPartition

            self.loop = asyncio.new_event_loop()
            conf = {"bootstrap_servers": bootstrap, "client_id": "veil-enc-aiokafka", "group_id": None,
                    "enable_auto_commit": False, "auto_offset_reset": "earliest", "isolation_level": isolation,
                    "request_timeout_ms": 30000}
            if max_fetch_bytes:
                conf |= {"fetch_max_bytes": max_fetch_bytes, "max_partition_fetch_bytes": max_fetch_bytes}

            async def start():
                c = AIOKafkaConsumer(**conf)
                await c.start()
                tps = [TopicPartition(topic, p) for p in partitions]
                c.assign(tps)
                await c.seek_to_beginning(*tps)
                return c

            self.c = self.loop.run_until_complete(asyncio.wait_for(start(), 60))
        else:
            raise ValueError(client)

    def _poll_once(self) -> list[Rec]:
        if self.client == "confluent":
            out = []
            for m in self.c.consume(num_messages=1000, timeout=0.2):
                if m.error():
                    self.records.extend(out)  # what arrived before the error still counts
                    raise ConsumeError(m.error().code(), str(m.error()))
                self.timestamps[(m.partition(), m.offset())] = m.timestamp()[1]
                out.append(Rec(m.key(), m.value(), tuple(m.headers() or ()), m.partition(), m.offset()))
            return out
        if self.client == "kafka-python":
            from kafka.errors import KafkaError

            try:
                batches = self.c.poll(timeout_ms=200)
            except KafkaError as e:
                raise ConsumeError(_errno(e), repr(e)) from e
            return self._recs(batches)
        from aiokafka.errors import KafkaError

        try:
            batches = self.loop.run_until_complete(asyncio.wait_for(self.c.getmany(timeout_ms=200), 30))
        except KafkaError as e:
            raise ConsumeError(_errno(e), repr(e)) from e
        return self._recs(batches)

    def _recs(self, batches) -> list[Rec]:
        out = []
        for msgs in batches.values():
            for m in msgs:
                self.timestamps[(m.partition, m.offset)] = m.timestamp
                out.append(Rec(m.key, m.value, tuple((k, v) for k, v in m.headers), m.partition, m.offset))
        return out

    def poll_until(self, done: Callable[[list], bool], timeout_s: float) -> list[Rec]:
        deadline = time.monotonic() + timeout_s
        while not done(self.records) and time.monotonic() < deadline:
            self.records.extend(self._poll_once())
        return self.records

    def poll_for(self, seconds: float) -> list[Rec]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.records.extend(self._poll_once())
        return self.records

    def close(self):
        try:
            if self.client == "aiokafka":
                self.loop.run_until_complete(asyncio.wait_for(self.c.stop(), 30))
            else:
                self.c.close()
        finally:
            if self.client == "aiokafka":
                self.loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def ends_seen(partitions) -> Callable[[list], bool]:
    """Done when the END_KEY tombstone of every partition has arrived (looks at new records only)."""
    want, seen, cursor = set(partitions), set(), [0]

    def done(recs: list) -> bool:
        for r in recs[cursor[0]:]:
            if r.key == END_KEY and r.value is None:
                seen.add(r.partition)
        cursor[0] = len(recs)
        return want <= seen

    return done


def consume_to_end(client: str, bootstrap: str, topic: str, partitions: list, *, timeout_s: float = 30.0,
                   with_timestamps: bool = False, **kw):
    """Consumes from the beginning until every partition's END_KEY tombstone arrived (or times out).
    Returns the records, or (records, {(partition, offset): timestamp}) with `with_timestamps`."""
    with ConsumerSession(client, bootstrap, topic, partitions, **kw) as s:
        recs = s.poll_until(ends_seen(partitions), timeout_s)
        return (recs, dict(s.timestamps)) if with_timestamps else recs

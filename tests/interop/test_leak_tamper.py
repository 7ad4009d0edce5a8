"""Leak and tamper checks (issue 10, "Leak and tamper checks") on what the broker stores.

Tansu keeps its log as objects in an S3 bucket (moto_server, started here). Records go in
through an encrypting sidecar (`writer`) and are read through a decrypting one (`reader`,
on_denied: redact, so a record it cannot open comes back as the placeholder).

- every known plaintext is searched for in every stored object: 0 hits (and a record
  written in plaintext to a topic without a policy is found, so the scan can fail);
- one bit is flipped in each stored batch object (in turn in the envelope header, the wrapped
  key, the nonce and the ciphertext, with the batch CRC recomputed as an attacker would):
  every flipped record is refused (placeholder), none is returned as plaintext or garbage;
- an envelope copied into another topic under the same key does not open there, and an
  encrypted JSON field moved to another field of its record does not open there.
"""

from __future__ import annotations

import json
import struct
import time
import uuid

import pytest

from enc_support import EncEnv, MAGIC, parse_envelope, raw_fetch
from fault_support import FIELDS_PREFIX, MotoS3, S3Tansu, start_sidecar_pair
from kafka.record.util import calc_crc32c

PREFIX = "leak-"
PLACEHOLDER = '{"refused":true}'
N = 600


class LeakEnv(EncEnv):
    def setup(self):
        self.s3 = MotoS3(self.dir)
        self.tansu = S3Tansu(self.dir, self.s3)
        self.broker_port, self.broker_proc = self.tansu.port, self.tansu.proc
        self.writer, self.reader = start_sidecar_pair(self, PREFIX, on_denied="redact", placeholder=PLACEHOLDER)

    def teardown(self):
        self.stop()
        self.tansu.stop()
        self.s3.stop()

    def batch_objects(self, topic: str) -> list[str]:
        return sorted(k for k in self.s3.objects(f"clusters/tansu_cluster/topics/{topic}/") if k.endswith(".batch"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = LeakEnv(tmp_path_factory.mktemp("leak"))
    try:
        e.setup()
        yield e
    finally:
        e.teardown()


def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int = 1):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                  "compression.type": "none"})
    errors = []
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=i % partitions, on_delivery=lambda err, msg: err and errors.append(err))
        p.poll(0)
    assert p.flush(60) == 0 and not errors, f"produce to {topic} failed: {errors[:3]}"


def consume_all(bootstrap: str, topic: str, n: int, partitions: int = 1, timeout: float = 60) -> list[tuple[int, int, bytes]]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"leak-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out, errors = [], []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if m.error():
                    errors.append(str(m.error()))
                else:
                    out.append((m.partition(), m.offset(), m.value()))
    finally:
        c.close()
    assert not errors, f"consumer errors on {topic}: {errors[:3]}"
    return out


def secrets(topic: str, n: int) -> list[bytes]:
    return [json.dumps({"ssn": f"SECRET-{uuid.uuid4().hex}", "i": i, "topic": topic}).encode() for i in range(n)]


def test_no_plaintext_in_stored_objects(env):
    topic = f"{PREFIX}scan-{uuid.uuid4().hex[:6]}"
    control = f"plain-scan-{uuid.uuid4().hex[:6]}"  # no policy on the writer: stored as sent
    env.create_topic(topic, 3)
    env.create_topic(control, 1)
    values = secrets(topic, N)
    produce(env.writer.bootstrap, topic, values, 3)
    produce(env.writer.bootstrap, control, values[:5], 1)
    got = consume_all(env.reader.bootstrap, topic, N, 3)
    assert sorted(v for _, _, v in got) == sorted(values), "the reader did not return every plaintext"
    time.sleep(1)
    blobs = {k: env.s3.get(k) for k in env.s3.objects()}
    needles = [json.loads(v)["ssn"].encode() for v in values]
    found = [(n, k) for k, b in blobs.items() if f"/topics/{topic}/" in k for n in needles if n in b]
    anywhere = [(n, k) for k, b in blobs.items() if f"/topics/{control}/" not in k for n in needles if n in b]
    control_found = sum(1 for k, b in blobs.items() if f"/topics/{control}/" in k for n in needles[:5] if n in b)
    print(f"leak scan: {len(blobs)} objects, {len(needles)} plaintexts searched, "
          f"{len(anywhere)} found outside the control topic; {control_found} of 5 found in the control topic")
    assert control_found == 5, "the scan did not find plaintext that is stored in clear: it cannot see records"
    assert not found and not anywhere, f"plaintext found in stored objects: {anywhere[:5]}"


def flip_in_batch(blob: bytes, region: str) -> bytes:
    """One bit flipped in the first envelope of a stored record batch (base offset int64, length
    int32, epoch, magic, crc, ...), then the batch CRC-32C recomputed."""
    assert blob[16] == 2, "stored object is not a v2 record batch"
    (length,) = struct.unpack_from(">i", blob, 8)
    at = blob.index(MAGIC)
    env = parse_envelope(blob[at:12 + length])
    pos = {"header": at + 6,  # the flags byte
           "wrapped-key": at + env.header_len - 12 - 4,
           "nonce": at + env.header_len - 1,
           "ciphertext": at + env.header_len + 3}[region]
    out = bytearray(blob)
    out[pos] ^= 0x10
    struct.pack_into(">I", out, 17, calc_crc32c(bytes(out[21:12 + length])))
    return bytes(out)


def test_bit_flips_in_storage_are_detected(env):
    topic = f"{PREFIX}flip-{uuid.uuid4().hex[:6]}"
    env.create_topic(topic, 1)
    values = secrets(topic, 40)
    # One record per request, so each stored object holds one record.
    for v in values:
        produce(env.writer.bootstrap, topic, [v])
    keys = env.batch_objects(topic)
    assert len(keys) >= 20, f"only {len(keys)} batch objects stored for {topic}"
    regions = ["header", "wrapped-key", "nonce", "ciphertext"]
    flipped = {}
    for i, k in enumerate(keys):
        blob = env.s3.get(k)
        env.s3.put(k, flip_in_batch(blob, regions[i % 4]))
        flipped[int(k.rsplit("/", 1)[1].split(".")[0])] = regions[i % 4]
    got = consume_all(env.reader.bootstrap, topic, 40)
    by_offset = {off: v for _, off, v in got}
    undetected = {off: r for off, r in flipped.items() if by_offset.get(off) != PLACEHOLDER.encode()}
    leaked = [off for off, v in by_offset.items() if v in values]
    print(f"tamper: {len(flipped)} bit flips in stored batches ({', '.join(regions)}), "
          f"{len(flipped) - len(undetected)} detected, {len(leaked)} returned as plaintext")
    assert len(got) == 40, f"read {len(got)} of 40 records"
    assert not undetected, f"flips not detected (offset: region): {undetected}; values {[by_offset.get(o) for o in undetected][:3]}"
    assert not leaked


def test_envelope_replayed_into_another_topic_does_not_open(env):
    src = f"{PREFIX}replay-src-{uuid.uuid4().hex[:6]}"
    dst = f"{PREFIX}replay-dst-{uuid.uuid4().hex[:6]}"
    env.create_topic(src, 1)
    env.create_topic(dst, 1)
    values = secrets(src, 10)
    produce(env.writer.bootstrap, src, values)
    stored = [r.value for r in raw_fetch(env.broker_port, src, 0).records]
    assert len(stored) == 10 and all(parse_envelope(v).flags == 1 for v in stored), "source envelopes are not topic-bound"
    produce(env.broker, dst, stored)  # straight to the broker, as someone with produce access could
    got = consume_all(env.reader.bootstrap, dst, 10)
    assert [v for _, _, v in got] == [PLACEHOLDER.encode()] * 10, \
        f"replayed envelopes opened in another topic: {[v for _, _, v in got if v != PLACEHOLDER.encode()][:2]}"
    assert sorted(v for _, _, v in consume_all(env.reader.bootstrap, src, 10)) == sorted(values)


def produce_raw(bootstrap: str, topic: str, records: list):
    """(value, headers) pairs, straight as given (no sidecar)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.type": "none"})
    for value, headers in records:
        p.produce(topic, value=value, headers=headers, partition=0)
    assert p.flush(60) == 0


def test_encrypted_field_moved_to_another_field_does_not_open(env):
    src = f"{FIELDS_PREFIX}move-src-{uuid.uuid4().hex[:6]}"
    env.create_topic(src, 1)
    docs = [{"ssn": f"SSN-{uuid.uuid4().hex}", "name": f"NAME-{uuid.uuid4().hex}", "i": i} for i in range(10)]
    produce(env.writer.bootstrap, src, [json.dumps(d).encode() for d in docs])
    stored = raw_fetch(env.broker_port, src, 0).records
    assert len(stored) == 10
    swapped = []
    for r in stored:
        doc = json.loads(r.value)
        assert doc["ssn"].startswith("veil:1:") and doc["name"].startswith("veil:1:"), f"fields not encrypted: {doc}"
        doc["ssn"], doc["name"] = doc["name"], doc["ssn"]
        swapped.append((json.dumps(doc).encode(), r.headers))
    produce_raw(env.broker, src, swapped)  # the same topic, the fields swapped
    got = [json.loads(v) for _, _, v in consume_all(env.reader.bootstrap, src, 20)]
    assert got[:10] == docs, "the untouched records did not decrypt"
    secrets_ = {d["ssn"] for d in docs} | {d["name"] for d in docs}
    leaked = [g for g in got[10:] if {g.get("ssn"), g.get("name")} & secrets_]
    opened = [g for g in got[10:] if g.get("ssn") != "[redacted]" or g.get("name") != "[redacted]"]
    print(f"field move: 10 records with ssn and name swapped, {10 - len(opened)} refused both fields, {len(leaked)} leaked")
    assert not leaked and not opened, f"moved fields opened: {(leaked or opened)[:2]}"

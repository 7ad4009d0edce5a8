"""Pass-through interop: real clients against Tansu, directly and through Veil.

Every test runs differentially (see conftest.Differential): the `direct` route
checks the scenario's expectations against the broker itself; the `veil` route
runs the same scenario through Veil and requires the same observations (records,
offsets, error codes) as the direct run, and that clients only ever learn and
connect to Veil's addresses.

Broker limitations seen directly against Tansu are recorded in KNOWN_LIMITATIONS
with the observed symptom; those direct runs xfail with the observation printed.
"""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from clients import CLIENTS, ConsumeOpts, ProduceOpts, Rec, Txn

CLIENT_NAMES = list(CLIENTS)
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

# Direct-route failures of this Tansu build, by (scenario, client).
KNOWN_LIMITATIONS = {
    ("transactions", "confluent"):
        "Tansu's Fetch responses list no aborted transactions, so read_committed consumers get aborted records",
    ("transactions", "kafka-python"):
        "Tansu's Fetch responses list no aborted transactions, so read_committed consumers get aborted records",
    ("transactions", "aiokafka"):
        "Tansu answers aiokafka's InitProducerId v0 with error code -1 (UnknownError)",
    ("idempotent", "aiokafka"):
        "Tansu answers aiokafka's InitProducerId v0 with error code -1 (UnknownError)",
}

# Client capabilities that shape the records a scenario can send.
NULL_HEADER_VALUES = {"confluent": True, "kafka-python": False, "aiokafka": True}


@pytest.fixture(params=CLIENT_NAMES)
def client_name(request) -> str:
    return request.param


def client_for(name: str, target):
    return CLIENTS[name](target.bootstrap)


def ensure_topic(client, topic: str, partitions: int):
    code = client.create_topic(topic, partitions)
    if code != 0:
        raise RuntimeError(f"CreateTopics for {topic} returned error code {code}")


def hx(b):
    return None if b is None else b.hex()


def rec_obs(r: Rec) -> list:
    """A consumed record as a JSON value: [partition, offset, key, value, headers]."""
    return [r.partition, r.offset, hx(r.key), hx(r.value), [[k, hx(v)] for k, v in r.headers]]


def sent_obs(r: Rec) -> list:
    return [r.partition, hx(r.key), hx(r.value), [[k, hx(v)] for k, v in r.headers]]


def by_position(consumed: list) -> list:
    return sorted(consumed, key=lambda x: (x[0], x[1]))


def check_roundtrip(obs: dict, sent: list) -> list[str]:
    """Consumed records equal what was sent (per partition, in order) at the produced offsets."""
    if "error" in obs:
        return [obs["error"]]
    problems = []
    produced = obs["produced"]
    want_offsets = []
    counters: dict = {}
    for r in sent:
        want_offsets.append([r.partition, counters.get(r.partition, 0)])
        counters[r.partition] = counters.get(r.partition, 0) + 1
    if produced != want_offsets:
        problems.append(f"produce acknowledged offsets {produced}, expected {want_offsets} on fresh partitions")
    got = by_position(obs["consumed"])
    want = sorted(([p, o] + sent_obs(r)[1:] for r, (p, o) in zip(sent, want_offsets)), key=lambda x: (x[0], x[1]))
    if got != want:
        problems.append(f"consumed {len(got)} records differing from the {len(want)} sent: "
                        f"first difference {_first_diff(got, want)}")
    return problems


def _first_diff(got, want):
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"#{i}: got {json.dumps(a)[:300]} want {json.dumps(b)[:300]}"
    return f"lengths {len(got)} vs {len(want)}"


def sample_records(client_name: str, codec: str, partitions: int = 3) -> list[Rec]:
    recs = []
    for p in range(partitions):
        recs += [
            Rec(f"key-{p}-0".encode(),
                json.dumps({"department": ["finance", "sales", "ops"][p], "codec": codec,
                            "data": "caf\u00e9 \u20ac"}, ensure_ascii=False).encode(),
                (("h-text", b"hello"), ("h-bin", bytes([0, 1, 254, 255])), ("empty", b"")), p),
            Rec(f"key-{p}-1".encode(), None, (), p),  # tombstone
            Rec(None, b"keyless value in partition %d" % p, (("trace", b"t-%d" % p),), p),
            Rec(f"key-{p}-3".encode(), b"compressible " * 400, (("size", b"5200"),), p),
        ]
        if NULL_HEADER_VALUES[client_name]:
            recs.append(Rec(f"key-{p}-4".encode(), b"null header value", (("null-h", None),), p))
    return recs


# --------------------------------------------------------------------------
# Admin and metadata
# --------------------------------------------------------------------------


def test_admin_create_topic_and_metadata(differential, client_name):
    """CreateTopics via admin, metadata naming only the route's addresses, and an error code passed through."""

    def scenario(target):
        c = client_for(client_name, target)
        topic = target.name("admin")
        created = c.create_topic(topic, 3)
        recreated = c.create_topic(topic, 3)
        brokers, topics = c.describe(topic)
        target.probe()
        return {"create": created, "recreate": recreated, "partitions": topics.get(topic),
                "_addresses": brokers}

    def expect(obs):
        if "error" in obs:
            return [obs["error"]]
        problems = []
        if obs["create"] != 0:
            problems.append(f"CreateTopics returned error code {obs['create']}")
        if obs["recreate"] != 36:
            problems.append(f"re-creating returned {obs['recreate']}, expected 36 (TOPIC_ALREADY_EXISTS)")
        if obs["partitions"] != 3:
            problems.append(f"metadata shows {obs['partitions']} partitions, expected 3")
        return problems

    differential.run(scenario, expect)


# --------------------------------------------------------------------------
# Produce and consume with every codec
# --------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume(differential, client_name, codec):
    """Keys, headers (binary, empty, null where supported), tombstones, keyless records, each codec."""
    sent = sample_records(client_name, codec)

    def scenario(target):
        c = client_for(client_name, target)
        topic = target.name(f"pc-{codec}")
        ensure_topic(c, topic, 3)
        produced = c.produce(topic, sent, ProduceOpts(codec=codec), probe=target.probe)
        consumed = c.consume(topic, [0, 1, 2], ConsumeOpts(timeout_s=30), expected_count=len(sent),
                             probe=target.probe)
        return {"produced": [list(x) for x in produced], "consumed": by_position([rec_obs(r) for r in consumed])}

    differential.run(scenario, lambda obs: check_roundtrip(obs, sent))


# --------------------------------------------------------------------------
# Idempotence and transactions
# --------------------------------------------------------------------------


def test_idempotent_producer(differential, client_name):
    sent = [Rec(f"idem-{i}".encode(), f"value {i}".encode(), (("n", str(i).encode()),), i % 3) for i in range(30)]

    def scenario(target):
        c = client_for(client_name, target)
        topic = target.name("idem")
        ensure_topic(c, topic, 3)
        produced = c.produce(topic, sent, ProduceOpts(codec="lz4", idempotent=True), probe=target.probe)
        consumed = c.consume(topic, [0, 1, 2], ConsumeOpts(timeout_s=30), expected_count=len(sent),
                             probe=target.probe)
        return {"produced": [list(x) for x in produced], "consumed": by_position([rec_obs(r) for r in consumed])}

    differential.run(scenario, lambda obs: check_roundtrip(obs, sent),
                     known_limitation=KNOWN_LIMITATIONS.get(("idempotent", client_name)))


def test_transactions_read_committed(differential, client_name):
    """One transaction committed, one aborted, one committed with an end marker; read both isolation levels."""
    txns = [
        Txn(True, [Rec(b"c1", b"committed-1", (), 0), Rec(b"c2", b"committed-2", (), 0)]),
        Txn(False, [Rec(b"a1", b"aborted-1", (), 0), Rec(b"a2", b"aborted-2", (), 0)]),
        Txn(True, [Rec(b"c3", b"committed-3", (), 0), Rec(b"end", b"end", (), 0)]),
    ]
    committed = [r.value.decode() for t in txns if t.commit for r in t.records]
    everything = [r.value.decode() for t in txns for r in t.records]

    def scenario(target):
        c = client_for(client_name, target)
        topic = target.name("txn")
        ensure_topic(c, topic, 1)
        c.transactions(topic, txns, txn_id=target.name("txid"))
        target.probe()
        out = {}
        for iso in ("read_committed", "read_uncommitted"):
            got = c.consume(topic, [0], ConsumeOpts(isolation=iso, timeout_s=20), sentinel_key=b"end",
                            probe=target.probe)
            out[iso] = [[r.offset, r.value.decode()] for r in got]
        return out

    def expect(obs):
        if "error" in obs:
            return [obs["error"]]
        problems = []
        seen_c = [v for _, v in obs["read_committed"]]
        seen_u = [v for _, v in obs["read_uncommitted"]]
        if seen_c != committed:
            problems.append(f"read_committed saw {seen_c}, expected only {committed}")
        if seen_u != everything:
            problems.append(f"read_uncommitted saw {seen_u}, expected {everything}")
        return problems

    differential.run(scenario, expect, known_limitation=KNOWN_LIMITATIONS.get(("transactions", client_name)))


# --------------------------------------------------------------------------
# Consumer group with subscribe()
# --------------------------------------------------------------------------


def test_consumer_group_subscribe(differential, client_name):
    """JoinGroup/SyncGroup/OffsetCommit through subscribe(); Tansu's first assignment takes ~23 s."""
    sent = [Rec(f"g-{i}".encode(), f"group value {i}".encode(), (), i % 2) for i in range(6)]

    def scenario(target):
        c = client_for(client_name, target)
        topic = target.name("grp")
        ensure_topic(c, topic, 2)
        produced = c.produce(topic, sent, ProduceOpts())
        got, committed = c.subscribe_consume(topic, ConsumeOpts(group=target.name("group"), timeout_s=90),
                                             expected_count=len(sent))
        return {"produced": [list(x) for x in produced], "consumed": by_position([rec_obs(r) for r in got]),
                "committed": {str(p): o for p, o in sorted(committed.items())}}

    def expect(obs):
        problems = check_roundtrip(obs, sent)
        if "error" not in obs and obs["committed"] != {"0": 3, "1": 3}:
            problems.append(f"committed offsets {obs['committed']}, expected {{'0': 3, '1': 3}}")
        return problems

    differential.run(scenario, expect)


# --------------------------------------------------------------------------
# A 5 MiB record
# --------------------------------------------------------------------------


def test_large_record(differential, client_name):
    value = random.Random(5).randbytes(5 * 1024 * 1024)  # incompressible, deterministic
    digest = hashlib.sha256(value).hexdigest()

    def scenario(target):
        c = client_for(client_name, target)
        topic = target.name("big")
        ensure_topic(c, topic, 1)
        produced = c.produce(topic, [Rec(b"big", value, (("sha256", digest.encode()),), 0)],
                             ProduceOpts(max_request_bytes=8 * 1024 * 1024), probe=target.probe)
        got = c.consume(topic, [0], ConsumeOpts(max_fetch_bytes=16 * 1024 * 1024, timeout_s=30),
                        expected_count=1, probe=target.probe)
        return {"produced": [list(x) for x in produced],
                "consumed": [[r.partition, r.offset, hx(r.key), len(r.value or b""),
                              hashlib.sha256(r.value or b"").hexdigest(), [[k, hx(v)] for k, v in r.headers]]
                             for r in got]}

    def expect(obs):
        if "error" in obs:
            return [obs["error"]]
        want = [[0, 0, hx(b"big"), len(value), digest, [["sha256", hx(digest.encode())]]]]
        problems = []
        if obs["produced"] != [[0, 0]]:
            problems.append(f"produce acknowledged {obs['produced']}, expected [[0, 0]]")
        if obs["consumed"] != want:
            problems.append(f"consumed {json.dumps(obs['consumed'])[:300]}, expected one 5 MiB record "
                            f"with sha256 {digest}")
        return problems

    differential.run(scenario, expect)

"""Field-level encryption through real clients and real sidecars (issue 6).

One topic carries records with data for three audiences: finance (IBAN, cards, an `ssn`
header, the record key), sales (e-mail) and an unprivileged analytics identity (the rest).
An owner sidecar encrypts on produce; each consumer reads through its own sidecar. For every
client (confluent-kafka, kafka-python, aiokafka) and every denied-field rule, each audience must
receive exactly its fields, byte for byte, and a direct read from the broker must show none of
the protected plaintext.

Differential baseline: the same records produced and consumed straight against Tansu are what
an identity holding every grant receives through Veil.

A compaction-style test checks deterministic record keys: equal plaintext keys give equal
stored keys, in the partition the client's own partitioner chose (the same as without Veil).

The stored bytes are also opened here independently of Veil, with Python's `cryptography`,
following docs/FORMAT.md sections 4 and 5.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from clients import CLIENTS, ConsumeOpts, ProduceOpts, Rec
from conftest import _require_veil_binary

CLIENT_NAMES = list(CLIENTS)
RULES = ["remove", "null", "redact", "ciphertext", "error"]
MARKER = "veil-record"
PLACEHOLDER = b'"[redacted]"'


# --------------------------------------------------------------------------
# The records: literal pieces and protected pieces (audience, prefix, value, suffix)
# --------------------------------------------------------------------------


@dataclass
class P:
    """A protected member: `prefix + value + suffix` in the plain document; the whole piece
    disappears when removed. Veil removes a member with the comma before it, or, for the first
    member, with the comma after it; the pieces are cut the same way."""

    audience: str
    prefix: str
    value: str
    suffix: str = ""
    location: str = ""


def doc(pieces: list) -> str:
    return "".join(p if isinstance(p, str) else p.prefix + p.value + p.suffix for p in pieces)


RECORDS = [
    {
        "key": b"cust-17",
        "pieces": [
            '{"id": 17, "department": "finance",\n "customer": {"name": "Ada"',
            P("sales", ', "email": ', '"ada@example.com"', location='$["customer"]["email"]'),
            '},\n "payment": {',
            P("finance", '"iban": ', '"DE44500105175407324931"', ", ", location='$["payment"]["iban"]'),
            '"amount": 12.50},\n "items": [{"sku": "A1"',
            P("finance", ', "card": ', '{"last4": "4242", "exp": [12, 2030]}', location='$["items"][0]["card"]'),
            '}, {"sku": "B2"',
            P("finance", ', "card": ', '"5555000011112222"', location='$["items"][1]["card"]'),
            "}]",
            P("finance", ',\n "notes": ', '"q3 forecast: 1.2M"', location='$["notes"]'),
            ', "order_total": 1e2}',
        ],
        "headers": [("ssn", b"123-45-6789"), ("trace", b"t-17")],
    },
    {
        "key": b"cust-18",
        "pieces": [
            '{"id": 18, "department": "sales", "customer": {"name": "Bob"}, "payment": {"amount": 3}',
            P("sales", ', "notes": ', '{"call": "back", "priority": 2}', location='$["notes"]'),
            ', "order_total": 3}',
        ],
        "headers": [("trace", b"t-18")],
    },
    {
        "key": b"cust-19",
        "pieces": [
            '{"id": 19, "department": "ops", "customer": {',
            P("sales", '"email": ', '"eve@example.com"', location='$["customer"]["email"]'),
            '}, "payment": {',
            P("finance", '"iban": ', '"FR7630006000011234567890189"', location='$["payment"]["iban"]'),
            '}, "items": [], "order_total": -0.5}',
        ],
        "headers": [("ssn", b"987-65-4321"), ("trace", b"t-19")],
    },
]

SECRETS = [b"ada@example.com", b"DE44500105175407324931", b"4242", b"5555000011112222", b"q3 forecast",
           b"call", b"eve@example.com", b"FR7630006000011234567890189", b"123-45-6789", b"987-65-4321",
           b"cust-17", b"cust-18", b"cust-19"]

GRANTS = {"finance": ["finance/pii"], "sales": ["sales/pii"], "analytics": [], "both": ["finance/pii", "sales/pii"]}
SEES = {"finance": {"finance"}, "sales": {"sales"}, "analytics": set(), "both": {"finance", "sales"}}

OWNER_POLICY = {
    "fields": [
        {"path": "payment.iban", "key": "finance/pii"},
        {"path": "items[*].card", "key": "finance/pii"},
        {"path": "customer.email", "key": "sales/pii"},
        {"path": "notes", "key_from": {"json": "department"},
         "keys": {"finance": "finance/pii", "sales": "sales/pii"}},
        {"path": "shipping.address", "key": "sales/pii"},  # never present: counted, not refused
    ],
    "on_unmatched": "plaintext",  # department "ops" has no notes key: such notes stay plaintext
    "headers": [{"name": "ssn", "key": "finance/pii"}],
    "record_key": "finance/pii",
}


def expected_view(record: dict, reader: str, rule: str, stored_tokens: list[bytes]) -> bytes:
    """The value `reader` must receive, byte for byte."""
    out = []
    protected = 0
    for piece in record["pieces"]:
        if isinstance(piece, str):
            out.append(piece)
            continue
        token = stored_tokens[protected].decode()
        protected += 1
        if piece.audience in SEES[reader]:
            out.append(piece.prefix + piece.value + piece.suffix)
        elif rule == "remove":
            pass
        elif rule == "null":
            out.append(piece.prefix + "null" + piece.suffix)
        elif rule == "redact":
            out.append(piece.prefix + PLACEHOLDER.decode() + piece.suffix)
        else:  # ciphertext
            out.append(piece.prefix + token + piece.suffix)
    return "".join(out).encode()


def expected_headers(record: dict, reader: str, rule: str, stored: Rec) -> list:
    stored_headers = dict(stored.headers)
    out = []
    left_encrypted = False
    for name, value in record["headers"]:
        if name != "ssn" or "finance" in SEES[reader]:
            out.append((name, value))
        elif rule == "remove":
            pass
        elif rule == "null":
            out.append((name, None))
        elif rule == "redact":
            out.append((name, PLACEHOLDER))
        else:
            out.append((name, stored_headers[name]))
            left_encrypted = True
    if rule == "ciphertext":
        left_encrypted = left_encrypted or any(
            isinstance(p, P) and p.audience not in SEES[reader] for p in record["pieces"])
    if left_encrypted:
        out.append((MARKER, stored_headers[MARKER]))
    return out


# --------------------------------------------------------------------------
# Keyrings and sidecar configurations
# --------------------------------------------------------------------------


@pytest.fixture
def keyrings(tmp_path) -> dict:
    """finance and sales keyrings, each with key `pii`, made with `veil keys create`."""
    binary = _require_veil_binary()
    out = {}
    for name in ("finance", "sales"):
        path = tmp_path / f"{name}.keyring"
        subprocess.run([str(binary), "keys", "create", "--keyring", str(path), "--key", "pii",
                        "--identity", name], check=True, capture_output=True, timeout=30)
        out[name] = path
    return out


def kms_section(keyrings: dict, names) -> dict:
    return {n: {"type": "local", "keyring": str(keyrings[n])} for n in names}


def owner_config(keyrings: dict, topic: str) -> dict:
    return {
        "identity": "owner",
        "kms": kms_section(keyrings, ["finance", "sales"]),
        "grants": {"encrypt": ["finance/pii", "sales/pii"]},
        "topics": [{"match": topic, "encrypt": OWNER_POLICY}],
    }


def consumer_config(keyrings: dict, topic: str, reader: str, rule: str) -> dict:
    held = [g.split("/")[0] for g in GRANTS[reader]]
    return {
        "identity": reader,
        "kms": kms_section(keyrings, held or ["finance"]),
        "grants": {"decrypt": GRANTS[reader]},
        "topics": [{"match": topic, "on_denied_field": rule, "field_placeholder": PLACEHOLDER.decode()}],
    }


# --------------------------------------------------------------------------
# Independent decryption (docs/FORMAT.md, sections 2, 4 and 5)
# --------------------------------------------------------------------------


def kek(keyring: Path, key_id: str = "pii") -> bytes:
    doc_ = json.loads(keyring.read_text())
    return base64.b64decode(next(k for k in doc_["keys"] if k["id"] == key_id)["material"])


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def open_field(token: bytes, record_id: bytes, location: str, topic: str, keks: dict) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    assert token.startswith(b'"veil:1:') and token.endswith(b'"')
    text = token[8:-1]
    env = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    assert env[:5] == bytes.fromhex("c156454c01")
    flags, k = env[5], env[6]
    kms = env[7:7 + k]
    i = int.from_bytes(env[7 + k:9 + k], "big")
    key_id = env[9 + k:9 + k + i]
    w = int.from_bytes(env[9 + k + i:11 + k + i], "big")
    wrapped = env[11 + k + i:11 + k + i + w]
    h = 23 + k + i + w
    nonce = env[h - 12:h]
    wrap_aad = b"\x01" + bytes([len(kms)]) + kms + u16(len(key_id)) + key_id
    dek = AESGCM(keks[kms.decode()]).decrypt(wrapped[1:13], wrapped[13:], wrap_aad)
    path = record_id + location.encode()
    aad = env[:h] + u16(len(path)) + path + (u16(len(topic)) + topic.encode() if flags & 1 else b"")
    return AESGCM(dek).decrypt(nonce, env[h:], aad)


def open_record_key(stored: bytes, topic: str, keks: dict) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    assert stored[:5] == bytes.fromhex("c1564b5901")
    flags, k = stored[5], stored[6]
    kms = stored[7:7 + k]
    i = int.from_bytes(stored[7 + k:9 + k], "big")
    key_id = stored[9 + k:9 + k + i]
    h = 9 + k + i
    info = bytes([len(kms)]) + kms + u16(len(key_id)) + key_id + b"veil record key AES-256-SIV v1"
    siv_key = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"veil derived key v1", info=info).derive(
        keks[kms.decode()])
    aad = stored[:h] + u16(3) + b"key" + (u16(len(topic)) + topic.encode() if flags & 1 else b"")
    return AESSIV(siv_key).decrypt(stored[h:], [aad])


def tokens_in(value: bytes) -> list[bytes]:
    """The encrypted-field strings of a stored value, in document order."""
    out, i = [], 0
    while True:
        i = value.find(b'"veil:1:', i)
        if i < 0:
            return out
        j = value.index(b'"', i + 1)
        out.append(value[i:j + 1])
        i = j + 1


# --------------------------------------------------------------------------
# Helpers around the client adapters
# --------------------------------------------------------------------------


def recs() -> list[Rec]:
    return [Rec(r["key"], doc(r["pieces"]).encode(), tuple(r["headers"]), 0) for r in RECORDS]


def create(client_name: str, bootstrap: str, topic: str, partitions: int):
    code = CLIENTS[client_name](bootstrap).create_topic(topic, partitions)
    assert code == 0, f"CreateTopics {topic}: error code {code}"


def consume(client_name: str, bootstrap: str, topic: str, count: int, partitions=(0,), timeout_s: float = 30.0):
    return CLIENTS[client_name](bootstrap).consume(topic, list(partitions), ConsumeOpts(timeout_s=timeout_s),
                                                   expected_count=count)


def norm_headers(headers) -> list:
    return [(k, None if v is None else bytes(v)) for k, v in headers]


def started(veil_factory, broker, config: dict):
    return veil_factory(broker, config)


# --------------------------------------------------------------------------
# Three audiences, every rule, every client
# --------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("client_name", CLIENT_NAMES)
def test_three_audiences(tansu, veil_factory, keyrings, client_name, rule):
    topic = f"customers-{client_name}-{rule}"
    sent = recs()

    # Baseline: straight against the broker, no Veil.
    direct_topic = topic + "-direct"
    create(client_name, tansu.address, direct_topic, 1)
    CLIENTS[client_name](tansu.address).produce(direct_topic, sent, ProduceOpts())
    baseline = consume(client_name, tansu.address, direct_topic, len(sent))
    assert [(r.key, r.value, norm_headers(r.headers)) for r in baseline] == \
        [(r.key, r.value, list(r.headers)) for r in sent], "direct route does not round-trip"

    owner = started(veil_factory, tansu, owner_config(keyrings, topic))
    create(client_name, owner.address, topic, 1)
    CLIENTS[client_name](owner.address).produce(topic, sent, ProduceOpts())

    # What the broker holds: valid JSON, no protected plaintext anywhere.
    stored = consume(client_name, tansu.address, topic, len(sent))
    assert len(stored) == len(sent)
    keks = {"finance": kek(keyrings["finance"]), "sales": kek(keyrings["sales"])}
    stored_tokens = []
    for record, s in zip(RECORDS, stored):
        blob = (s.key or b"") + s.value + b"".join(k.encode() + (v or b"") for k, v in s.headers)
        for secret in SECRETS:
            assert secret not in blob, f"{secret!r} readable on the broker"
        json.loads(s.value)
        tokens = tokens_in(s.value)
        stored_tokens.append(tokens)
        assert len(tokens) == sum(isinstance(p, P) for p in record["pieces"])
        # Independently of Veil: the tokens, header and key open with the documented format.
        headers = dict(s.headers)
        record_id = headers[MARKER][1:17]
        protected = [p for p in record["pieces"] if isinstance(p, P)]
        for piece, token in zip(protected, tokens):
            assert open_field(token, record_id, piece.location, topic, keks) == piece.value.encode()
        assert open_record_key(s.key, topic, keks) == record["key"]
        if "ssn" in headers:
            assert headers["ssn"].startswith(bytes.fromhex("c156454c"))

    # Each audience through its own sidecar.
    for reader in ("finance", "sales", "analytics", "both"):
        sidecar = started(veil_factory, tansu, consumer_config(keyrings, topic, reader, rule))
        denied_somewhere = reader != "both"
        if rule == "error" and denied_somewhere:
            try:
                got = consume(client_name, sidecar.address, topic, len(sent), timeout_s=10)
            except Exception as e:  # the client surfaced the partition error
                print(f"{client_name} {reader}: {e}")
                assert "uthoriz" in str(e) or "AUTHORIZATION" in str(e), f"{reader}: unexpected error {e!r}"
                got = []
            assert got == [], f"{reader} received records under on_denied_field: error"
            continue
        got = consume(client_name, sidecar.address, topic, len(sent))
        assert len(got) == len(sent), f"{reader}: got {len(got)} records"
        for record, s, g, tokens in zip(RECORDS, stored, got, stored_tokens):
            want = expected_view(record, reader, rule, tokens)
            assert g.value == want, f"{reader}/{rule}:\n got  {g.value!r}\n want {want!r}"
            assert norm_headers(g.headers) == expected_headers(record, reader, rule, s), f"{reader}/{rule} headers"
            assert g.key == (record["key"] if "finance" in SEES[reader] else s.key), f"{reader} key"
        if reader == "both":
            # Differential: holding every grant, the application sees what it sees without Veil.
            assert [(r.key, r.value, norm_headers(r.headers)) for r in got] == \
                [(r.key, r.value, norm_headers(r.headers)) for r in baseline]


# --------------------------------------------------------------------------
# Non-JSON values are refused with a reason
# --------------------------------------------------------------------------


@pytest.mark.parametrize("client_name", CLIENT_NAMES)
def test_non_json_is_refused(tansu, veil_factory, keyrings, client_name):
    topic = f"strict-{client_name}"
    owner = started(veil_factory, tansu, owner_config(keyrings, topic))
    create(client_name, owner.address, topic, 1)
    with pytest.raises(Exception) as failure:
        CLIENTS[client_name](owner.address).produce(topic, [Rec(b"k", b"not json", (), 0)], ProduceOpts())
    text = str(failure.value)
    print(f"{client_name} reports: {text}")
    # The refusal is INVALID_RECORD with a message naming the topic and the reason (never the
    # value). kafka-python shows that message; librdkafka shows the code only; aiokafka 0.14
    # does not know code 87 and reports UnknownError.
    if client_name == "kafka-python":
        assert "InvalidRecordError" in text and topic in text and "not valid JSON" in text, text
        assert "not json" not in text, "the message must not quote the value"
    elif client_name == "confluent":
        assert "INVALID_RECORD" in text, text
    else:
        assert "UnknownError" in text, text
    assert consume(client_name, tansu.address, topic, 1, timeout_s=4) == []


# --------------------------------------------------------------------------
# Deterministic record keys: compaction and partitioning
# --------------------------------------------------------------------------


KEYED = [(b"cust-1", b'{"v": 1}'), (b"cust-2", b'{"v": 2}'), (b"cust-1", b'{"v": 3}'), (b"cust-3", b'{"v": 4}'),
         (b"cust-2", b'{"v": 5}'), (b"cust-4", b'{"v": 6}'), (b"cust-1", b'{"v": 7}')]


def produce_with_partitioner(client_name: str, bootstrap: str, topic: str, records) -> list[int]:
    """Produces without naming partitions, so the client's own partitioner hashes each key."""
    if client_name == "confluent":
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
        out: list = [None] * len(records)
        for i, (k, v) in enumerate(records):
            p.produce(topic, key=k, value=v, on_delivery=lambda err, msg, i=i: out.__setitem__(i, (err, msg.partition())))
        assert p.flush(60) == 0
        assert all(e is None for e, _ in out), out
        return [part for _, part in out]
    if client_name == "kafka-python":
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        try:
            futs = [p.send(topic, key=k, value=v) for k, v in records]
            p.flush(60)
            return [f.get(60).partition for f in futs]
        finally:
            p.close(10)

    async def go():
        from aiokafka import AIOKafkaProducer

        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await p.start()
        try:
            futs = [await p.send(topic, key=k, value=v) for k, v in records]
            return [(await f).partition for f in futs]
        finally:
            await p.stop()

    return asyncio.run(asyncio.wait_for(go(), 120))


@pytest.mark.parametrize("client_name", CLIENT_NAMES)
def test_equal_keys_stay_equal_and_in_one_partition(tansu, veil_factory, keyrings, client_name):
    topic = f"keyed-{client_name}"
    config = owner_config(keyrings, topic)
    config["topics"][0]["encrypt"] = {"key_from": {"fixed": "finance/pii"}, "record_key": "finance/pii"}

    direct_topic = topic + "-direct"
    create(client_name, tansu.address, direct_topic, 3)
    direct_partitions = produce_with_partitioner(client_name, tansu.address, direct_topic, KEYED)

    owner = started(veil_factory, tansu, config)
    create(client_name, owner.address, topic, 3)
    veil_partitions = produce_with_partitioner(client_name, owner.address, topic, KEYED)
    # The partitioner hashed the plaintext key, in the client, before Veil saw the record.
    assert veil_partitions == direct_partitions

    stored = consume(client_name, tansu.address, topic, len(KEYED), partitions=(0, 1, 2))
    assert len(stored) == len(KEYED)
    keks = {"finance": kek(keyrings["finance"])}
    by_plain: dict = {}
    for s in stored:
        assert b"cust-" not in s.key, "record key readable on the broker"
        plain = open_record_key(s.key, topic, keks)
        by_plain.setdefault(plain, set()).add((s.key, s.partition))
    # One stored key and one partition per plaintext key; distinct keys stay distinct.
    assert all(len(v) == 1 for v in by_plain.values()), by_plain
    assert len({next(iter(v))[0] for v in by_plain.values()}) == len(by_plain)
    want = {k: direct_partitions[i] for i, (k, _) in enumerate(KEYED)}
    assert {k: next(iter(v))[1] for k, v in by_plain.items()} == want

    # Compaction keeps the last record per key: keyed by the stored keys, the survivors are the
    # records that survive per plaintext key, and hold the last value written for each.
    def survivors(records, key_of):
        latest = {}
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            latest[key_of(r)] = (r.partition, r.offset)
        return latest

    stored_survivors = survivors(stored, lambda r: r.key)
    finance = started(veil_factory, tansu, consumer_config(keyrings, topic, "finance", "remove"))
    got = consume(client_name, finance.address, topic, len(KEYED), partitions=(0, 1, 2))
    plain_survivors = survivors(got, lambda r: r.key)
    assert sorted(stored_survivors.values()) == sorted(plain_survivors.values())
    values = {(r.partition, r.offset): r.value for r in got}
    assert {k: values[pos] for k, pos in plain_survivors.items()} == dict(KEYED)

    # A consumer holding the grant sees plaintext keys and values.
    assert sorted((r.key, r.value) for r in got) == sorted(KEYED)

"""Malformed input against running Veils (issue 10, "Malformed input against a running Veil").

One Tansu broker and two Veils in front of it: `pass` (no topic policies: Produce and Fetch
are forwarded without being decoded) and `enc` (every `mal-` topic encrypted with a fixed
key from a local keyring; the same identity may decrypt). Each crafted case goes on its own
raw connection to each Veil and has an expected outcome there:

- `closed`: Veil closes that connection without answering, and logs why;
- `error`: Veil answers with the protocol's error (a Produce partition error code, or the
  ApiVersions UNSUPPORTED_VERSION answer), and logs why;
- `broker`: Veil does not decode this part (pass-through Produce records), so the broker
  judges it: the outcome through Veil must be the broker's own outcome for the same bytes
  sent straight to it (error codes included), and Veil must stay up.

Throughout, one healthy confluent-kafka producer (acks=all, idempotent) and one consumer per
Veil keep going; the last test stops them and checks that every acknowledged record arrived
once, in order, with no delivery failures, and that Veil never restarted.
"""

from __future__ import annotations

import re
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

import pytest

from conftest import api_versions_ok
from enc_support import EncEnv, parse_envelope, raw_fetch
from streams import HealthyStream
from wire_craft import (CODEC, Outcome, batch, compress, exchange, frame, gzip_bomb, header_v1, header_v2,
                        parse_produce_v7_response, produce_v7, record, records_of, string, tls_client_hello,
                        uvarint, valid_batch, varint, zstd_bomb)

MAX_FRAME = 4 << 20  # both Veils; so the decompression limit is 4 x 16 MiB = 64 MiB
BOMB_BYTES = 80 << 20  # over that limit

CORRUPT_MESSAGE = 2
UNSUPPORTED_VERSION = 35

RUN = uuid.uuid4().hex[:8]
JUNK_TOPIC = f"mal-junk-{RUN}"
MODES = ["pass", "enc"]


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------


class MalEnv(EncEnv):
    def setup(self):
        self.start_broker()
        keyring = self.create_keyring("mal", "malformed", "k")
        self.veils = {
            "pass": self.start_sidecar("pass", {"max_frame_bytes": MAX_FRAME}),
            "enc": self.start_sidecar("enc", {
                "max_frame_bytes": MAX_FRAME,
                "kms": {"mal": {"type": "local", "keyring": str(keyring)}},
                "grants": {"encrypt": ["mal/k"], "decrypt": ["mal/k"]},
                "topics": [{"match": {"prefix": "mal-"}, "encrypt": {"key_from": {"fixed": "mal/k"}},
                            "require_encrypted": True, "on_denied": "error"}],
            }),
        }
        self.create_topic(JUNK_TOPIC, 1)
        self.streams: dict[str, HealthyStream] = {}
        for mode, sc in self.veils.items():
            topic = f"mal-healthy-{mode}-{RUN}"
            self.create_topic(topic, HealthyStream.PARTITIONS)
            self.streams[mode] = HealthyStream(sc.bootstrap, topic)
        for s in self.streams.values():
            s.start()
        self.cases_run = {m: 0 for m in MODES}

    def log_size(self, mode: str) -> int:
        return self.veils[mode].proc.log_path.stat().st_size

    def log_since(self, mode: str, offset: int) -> str:
        with open(self.veils[mode].proc.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = MalEnv(tmp_path_factory.mktemp("malformed"))
    try:
        e.setup()
        yield e
    finally:
        for s in getattr(e, "streams", {}).values():
            s.stop.set()
            s.consume_done.set()
        e.stop()


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------


@dataclass
class Expect:
    kind: str  # closed | error | broker
    log: Optional[str] = None  # regex that must appear in Veil's log for this case
    code: Optional[int] = None  # error: the Produce partition error code (or ApiVersions error)


@dataclass
class Case:
    name: str
    build: Callable[[str], bytes]  # topic -> bytes to send
    expect: dict  # mode -> Expect
    hang_up: bool = False  # the client disconnects right after sending
    produce: bool = False  # the response is a Produce v7 response
    api_versions: bool = False  # the response is an ApiVersions v0 answer


def both(e: Expect) -> dict:
    return {m: e for m in MODES}


def closed(log: str) -> dict:
    return both(Expect("closed", log))


def records_case(name: str, records: Callable[[], bytes], enc_log: str, *, code: int = CORRUPT_MESSAGE,
                 records_length: Optional[int] = None) -> Case:
    """A Produce v7 request whose records are malformed: the encrypting Veil decodes them and
    refuses the partition with `code`; the pass-through Veil leaves the verdict to the broker."""
    return Case(name, lambda topic: produce_v7(7, topic, 0, records(), records_length=records_length),
                {"pass": Expect("broker"), "enc": Expect("error", enc_log, code)}, produce=True)


def refused(detail: str) -> str:
    return r"produce to mal-junk-\S+ refused: .*" + detail


def corrupt_payload(codec: str) -> bytes:
    """The codec's own framing start (so it is recognisably that codec) followed by junk."""
    good = compress(codec, records_of([b"x" * 200] * 5))
    return good[: max(8, len(good) // 3)] + b"\xde\xad\xbe\xef" * 8


def bad_varint_record() -> bytes:
    # A record whose length varint never ends: ten continuation bytes.
    return b"\xff" * 10 + b"\x01" + b"\x00" * 20


def record_with(key_len_varint: bytes = None, header_count_varint: bytes = None, header_key_len: bytes = None) -> bytes:
    body = b"\x00" + varint(0) + varint(0)
    body += key_len_varint if key_len_varint is not None else varint(-1)
    body += varint(5) + b"hello"
    if header_count_varint is not None:
        body += header_count_varint
    elif header_key_len is not None:
        body += varint(1) + header_key_len + b"k" + varint(1) + b"v"
    else:
        body += varint(0)
    return varint(len(body)) + body + b"\x00" * 8


def api_versions_v3(tags: bytes) -> bytes:
    body = header_v2(18, 3, 11, tags) + b"\x06veil\x06" + b"1.0\x00"  # compact strings + tags
    return frame(body)


TLS_HELLO = tls_client_hello()

CASES: list[Case] = [
    # ---- sizes and framing (FrameParser, on every connection)
    Case("negative-size", lambda t: struct.pack(">i", -1) + b"\x00" * 16, closed(r"negative frame size -1\b")),
    Case("min-int-size", lambda t: struct.pack(">i", -(1 << 31)), closed(r"negative frame size -2147483648")),
    Case("huge-size", lambda t: struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 64,
         closed(r"frame size 2147483647 exceeds the limit of 4194304 bytes")),
    Case("one-over-limit", lambda t: struct.pack(">i", MAX_FRAME + 1) + b"\x00" * 64,
         closed(rf"frame size {MAX_FRAME + 1} exceeds the limit")),
    Case("tls-client-hello", lambda t: TLS_HELLO, closed(r"looks like a TLS ClientHello")),
    Case("empty-frame", lambda t: frame(b""), closed(r"malformed request header: truncated request api key")),
    Case("truncated-header", lambda t: frame(struct.pack(">hh", 3, 1) + b"\x00"),
         closed(r"malformed request header: truncated correlation id")),
    Case("client-id-overruns", lambda t: frame(struct.pack(">hhih", 3, 1, 5, 300) + b"abc"),
         closed(r"malformed request header: truncated client id")),
    Case("partial-frame-hang-up", lambda t: struct.pack(">i", 100) + b"\x00\x03\x00\x01" + b"\x00" * 10,
         closed(r"truncated frame at end of stream"), hang_up=True),
    Case("partial-size-hang-up", lambda t: b"\x00\x00", closed(r"truncated frame at end of stream: needed 4 bytes, 2 available"),
         hang_up=True),
    # ---- API keys and versions
    Case("unknown-api-key", lambda t: frame(header_v1(999, 0, 3)), closed(r"unknown API key 999")),
    Case("negative-api-key", lambda t: frame(header_v1(-2, 0, 3)), closed(r"unknown API key -2")),
    Case("metadata-v99", lambda t: frame(header_v1(3, 99, 3) + struct.pack(">i", -1)),
         closed(r"unsupported version 99 of Metadata")),
    Case("produce-v99", lambda t: frame(header_v1(0, 99, 3) + b"\x00" * 16), closed(r"unsupported version 99 of Produce")),
    Case("fetch-negative-version", lambda t: frame(header_v1(1, -1, 3) + b"\x00" * 16),
         closed(r"unsupported version -1 of Fetch")),
    Case("api-versions-v99", lambda t: frame(header_v2(18, 99, 3)),
         both(Expect("error", r"ApiVersions v99.*UNSUPPORTED_VERSION", UNSUPPORTED_VERSION)), api_versions=True),
    # ---- tagged fields and varints in the (flexible) header
    Case("tagged-field-absurd-length", lambda t: api_versions_v3(uvarint(1) + uvarint(0) + uvarint(0x7FFFFFF0) + b"x"),
         closed(r"malformed request header: .*tagged field")),
    Case("tagged-field-count-absurd", lambda t: api_versions_v3(uvarint(0x7FFFFFFF)),
         closed(r"malformed request header: .*tagged field")),
    Case("tagged-field-varint-overflow", lambda t: api_versions_v3(b"\xff" * 10 + b"\x01"),
         closed(r"malformed request header: varint for .* is longer than its type allows")),
    # ---- record batches (Produce v7)
    records_case("bad-crc", lambda: batch(records_of([b"a", b"b"]), 2, crc=0xDEADBEEF),
                 refused(r"CRC-32C mismatch: stored 0xdeadbeef")),
    records_case("batch-length-too-small", lambda: batch(records_of([b"a"]), 1, length=5),
                 refused(r"invalid length 5 for record batch length")),
    records_case("batch-length-past-end", lambda: batch(records_of([b"a"]), 1, length_delta=1000),
                 refused(r"truncated record batch")),
    records_case("legacy-magic-1", lambda: batch(records_of([b"a"]), 1, magic=1), refused(r"legacy message set"),
                 code=UNSUPPORTED_VERSION),
    records_case("unknown-magic-7", lambda: batch(records_of([b"a"]), 1, magic=7), refused(r"unknown magic 7")),
    records_case("negative-record-count", lambda: batch(records_of([b"a"]), -5),
                 refused(r"invalid length -5 for record count")),
    records_case("record-count-too-large", lambda: batch(records_of([b"a"]), 100000),
                 refused(r"invalid length 100000 for record count")),
    records_case("record-count-one-short", lambda: batch(records_of([b"a", b"b"]), 1),
                 refused(r"unexpected trailing bytes after records of batch")),
    records_case("record-length-varint-overflow", lambda: batch(bad_varint_record(), 1),
                 refused(r"varint for .* is longer than its type allows")),
    records_case("record-length-absurd", lambda: batch(varint(0x3FFFFFFF) + b"\x00" * 20, 1),
                 refused(r"record length 1073741823 exceeds the 20 bytes left")),
    records_case("key-length-absurd", lambda: batch(record_with(key_len_varint=varint(1 << 30)), 1),
                 refused(r"(truncated|invalid length).*key")),
    records_case("key-length-negative", lambda: batch(record_with(key_len_varint=varint(-7)), 1),
                 refused(r"invalid length -7 for record key")),
    records_case("header-count-absurd", lambda: batch(record_with(header_count_varint=varint(1 << 30)), 1),
                 refused(r"(invalid length|truncated).*header")),
    records_case("header-key-negative", lambda: batch(record_with(header_key_len=varint(-3)), 1),
                 refused(r"invalid length -3 for .*header")),
    records_case("unknown-codec-6", lambda: batch(records_of([b"a"]), 1, attributes=6),
                 refused(r"unknown compression codec 6")),
    *[records_case(f"corrupt-{codec}", lambda codec=codec: batch(corrupt_payload(codec), 5, attributes=CODEC[codec]),
                   refused(r"compressed records: ")) for codec in ("gzip", "snappy", "lz4", "zstd")],
    records_case("gzip-bomb", lambda: batch(gzip_bomb(BOMB_BYTES), 1, attributes=CODEC["gzip"]),
                 refused(r"compressed records: .*(limit|exceed)")),
    records_case("zstd-bomb", lambda: batch(zstd_bomb(BOMB_BYTES), 1, attributes=CODEC["zstd"]),
                 refused(r"compressed records: .*(limit|exceed)")),
    # ---- the Produce request around the records
    Case("produce-records-length-absurd",
         lambda t: produce_v7(7, t, 0, valid_batch([b"a"]), records_length=0x7FFFFFF0),
         {"pass": Expect("broker"), "enc": Expect("closed", r"malformed Produce v7 request .*truncated")}),
    Case("produce-topic-count-absurd",
         lambda t: frame(header_v1(0, 7, 7) + string(None) + struct.pack(">hi", -1, 1000) + struct.pack(">i", 0x7FFFFFFF)),
         {"pass": Expect("broker"), "enc": Expect("closed", r"malformed Produce v7 request")}),
    Case("fetch-truncated-body", lambda t: frame(header_v1(1, 4, 7) + struct.pack(">ii", -1, 100)),
         {"pass": Expect("broker"), "enc": Expect("closed", r"malformed Fetch v4 request")}),
]


def case_ids():
    return [f"{m}-{c.name}" for m in MODES for c in CASES]


def broker_verdict(env: MalEnv, case: Case, data: bytes) -> Outcome:
    return exchange(env.broker_port, data, hang_up=case.hang_up)


def describe_produce(o: Outcome):
    if o.kind != "response":
        return o.kind
    _corr, parts = parse_produce_v7_response(o.payload)
    return ("response", [(p.partition, p.error_code) for p in parts])


@pytest.mark.parametrize("mode,case", [(m, c) for m in MODES for c in CASES], ids=case_ids())
def test_malformed_case(env, mode, case):
    veil = env.veils[mode]
    expect: Expect = case.expect[mode]
    topic = JUNK_TOPIC if mode == "pass" else f"mal-junk-{case.name}-{RUN}"
    data = case.build(topic)
    before = env.log_size(mode)
    outcome = exchange(veil.port, data, hang_up=case.hang_up)
    env.cases_run[mode] += 1

    if expect.kind == "closed":
        assert outcome.kind == "closed", f"{case.name}: expected Veil to close the connection, got {outcome}"
    elif expect.kind == "error":
        assert outcome.kind == "response", f"{case.name}: expected an error response, got {outcome}"
        if case.produce:
            corr, parts = parse_produce_v7_response(outcome.payload)
            assert corr == 7 and [(p.topic, p.partition) for p in parts] == [(topic, 0)], parts
            assert parts[0].error_code == expect.code, \
                f"{case.name}: partition error {parts[0].error_code}, expected {expect.code}"
        elif case.api_versions:
            corr, err = struct.unpack_from(">ih", outcome.payload, 0)
            assert corr == 3 and err == expect.code, f"{case.name}: ApiVersions answered {corr}/{err}"
    else:  # broker: the same verdict as the broker's for the same bytes
        direct = broker_verdict(env, case, data)
        if case.produce or "produce" in case.name:
            assert describe_produce(outcome) == describe_produce(direct), \
                f"{case.name}: through Veil {describe_produce(outcome)}, straight to the broker {describe_produce(direct)}"
        else:
            assert outcome.kind == direct.kind, f"{case.name}: through Veil {outcome}, straight to the broker {direct}"

    if expect.log:
        deadline = time.monotonic() + 5
        text = ""
        while time.monotonic() < deadline:
            text = env.log_since(mode, before)
            if re.search(expect.log, text):
                break
            time.sleep(0.1)
        assert re.search(expect.log, text), f"{case.name}: no log line matching {expect.log!r}; Veil logged:\n{text[-2000:]}"
    # The Veil survived, and still answers a fresh, well-formed client.
    assert veil.proc.alive(), f"veil-{mode} exited with {veil.proc.popen.returncode}\n{veil.proc.tail()}"
    assert api_versions_ok(veil.port), f"veil-{mode} no longer answers ApiVersions after {case.name}"


def test_enough_cases():
    assert len(CASES) >= 30, f"only {len(CASES)} malformed cases"


def test_healthy_clients_lost_nothing(env):
    """Runs last in this module: the healthy streams through both Veils lost nothing."""
    assert all(n == len(CASES) for n in env.cases_run.values()), \
        f"not every case ran before this check: {env.cases_run} of {len(CASES)}"
    problems = []
    for mode, s in env.streams.items():
        s.finish()
        problems += [f"{mode}: {p}" for p in s.problems(min_acked=100)]
        print(f"healthy stream via {mode}: {s.summary()}")
    # Through the encrypting Veil the broker holds envelopes only.
    stored = raw_fetch(env.broker_port, env.streams["enc"].topic, 0)
    for r in stored.records:
        parse_envelope(r.value)  # raises unless an envelope
    if not stored.records:
        problems.append("enc: nothing stored in partition 0 of the healthy topic")
    for mode, sc in env.veils.items():
        if not sc.proc.alive():
            problems.append(f"veil-{mode} exited")
    assert not problems, "\n".join(problems) + "\n" + env.tails()

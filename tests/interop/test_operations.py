"""Operating Veil (issue 9): the admin endpoint, graceful shutdown, reload, logs.

Every test runs real processes: a Tansu broker, `veil run` sidecars with their admin
endpoint on a free loopback port, and real Kafka clients. Nothing is mocked.

- /metrics counters move by exactly the records sent (owner encrypts, finance decrypts its
  own department and is denied the other one);
- /readyz goes false when the upstream broker stops, and `veil health` follows /healthz;
- SIGTERM during a produce loop loses no acknowledged record and exits within the deadline;
  a request in flight at SIGTERM is answered; one still in flight at the deadline is cut off;
- SIGHUP with a new grant makes a consumer that was denied see plaintext on the same
  connection; a bad configuration on SIGHUP is rejected and the old one kept;
- JSON logs: every line is one JSON object; each connection is logged once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from clients import Rec
from conftest import free_port, veil_binary
from admin_support import http_get, metric, metric_sum, scrape
from enc_support import END_KEY, EncEnv, _fetch_v4, parse_envelope, produce, raw_fetch

DEPTS = ("finance", "sales")
PLACEHOLDER = "<redacted>"


# --------------------------------------------------------------------------
# Admin endpoint helpers
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Environment: a broker, department keyrings, sidecars with admin endpoints
# --------------------------------------------------------------------------


class OpsEnv(EncEnv):
    def setup(self):
        self.start_broker()
        self.create_department_keyrings()
        self.admin_ports: dict[str, int] = {}

    def sidecar(self, name: str, config: dict):
        port = free_port()
        self.admin_ports[name] = port
        return self.start_sidecar(name, config | {"admin": {"listen": f"127.0.0.1:{port}"}})

    def owner_config(self) -> dict:
        return {
            "kms": {"finance": {"type": "local", "keyring": str(self.keyrings["owner-finance"])},
                    "sales": {"type": "local", "keyring": str(self.keyrings["owner-sales"])}},
            "grants": {"encrypt": ["finance/department-key", "sales/department-key"]},
            "topics": [{"match": {"prefix": "ops-"},
                        "encrypt": {"key_from": {"json": "department"},
                                    "keys": {"finance": "finance/department-key", "sales": "sales/department-key"},
                                    "on_unmatched": "reject"},
                        "on_denied": "drop"}],
        }

    def consumer_config(self, dept: str, *, decrypt=None, on_denied="drop") -> dict:
        return {
            "kms": {dept: {"type": "local", "keyring": str(self.keyrings[dept])}},
            "grants": {"decrypt": [f"{dept}/department-key"] if decrypt is None else decrypt},
            "topics": [{"match": {"prefix": "ops-"}, "require_encrypted": True, "on_denied": on_denied,
                        "redact_placeholder": PLACEHOLDER}],
        }


@pytest.fixture
def env(request, tmp_path):
    e = OpsEnv(tmp_path)
    try:
        e.setup()
        yield e
    finally:
        e.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(e.tails())


def dept_records(run: str, n: int, partitions: int = 1) -> list[Rec]:
    return [Rec(b"k", json.dumps({"department": DEPTS[i % 2], "data": f"{run}-{i}"}).encode(), (), i % partitions)
            for i in range(n)]


def consume(bootstrap: str, topic: str, partitions: list[int], want: int, timeout_s: float = 30.0) -> list:
    """kafka-python consumer from the beginning until `want` records or the END_KEY of every partition."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=30000)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        got, ends = [], set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(got) < want and ends != set(partitions):
            for tp, msgs in c.poll(timeout_ms=500).items():
                for m in msgs:
                    if m.key == END_KEY and m.value is None:
                        ends.add(tp.partition)
                    else:
                        got.append(m)
        return got
    finally:
        c.close()


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


def test_metrics_count_exactly_the_records_sent(env):
    """The owner's encrypted counters, and finance's decrypted and denied counters, move by
    exactly the records sent, per topic and key."""
    owner = env.sidecar("owner", env.owner_config())
    finance = env.sidecar("finance", env.consumer_config("finance"))
    run = uuid.uuid4().hex[:8]
    topic = f"ops-metrics-{run}"
    env.create_topic(topic, 1)
    before_owner = scrape(env.admin_ports["owner"])
    n = 200
    records = dept_records(run, n) + [Rec(END_KEY, None, (), 0)]
    out = produce("confluent", owner.bootstrap, topic, records)
    assert all(o.ok for o in out), [o for o in out if not o.ok][:3]

    after_owner = scrape(env.admin_ports["owner"])
    for dept in DEPTS:
        key = f"{dept}/department-key"
        labels = {"identity": "owner", "topic": topic, "key": key}
        assert metric(after_owner, "veil_records_encrypted_total", **labels) == n // 2, \
            f"owner encrypted {key}: {metric(after_owner, 'veil_records_encrypted_total', **labels)}, sent {n // 2}"
    assert metric(before_owner, "veil_records_encrypted_total", identity="owner", topic=topic,
                  key="finance/department-key") == 0
    # One data key per department key: two generate calls, every one successful and timed.
    assert metric_sum(after_owner, "veil_kms_calls_total", operation="generate_data_key", outcome="ok") == 2
    assert metric_sum(after_owner, "veil_kms_calls_total", outcome="unavailable") == 0
    assert metric_sum(after_owner, "veil_kms_call_duration_seconds_count", operation="generate_data_key") == 2
    assert metric(after_owner, "veil_requests_total", api="Produce") >= 1
    assert metric(after_owner, "veil_request_bytes_total", api="Produce") > n * 30
    assert metric(after_owner, "veil_connections_total") >= 1
    assert metric(after_owner, "veil_info", identity="owner", identity_source="config_file") == 1

    got = consume(finance.bootstrap, topic, [0], n)
    assert len(got) == n // 2 and all(json.loads(m.value)["department"] == "finance" for m in got)
    after_finance = scrape(env.admin_ports["finance"])
    assert metric(after_finance, "veil_records_decrypted_total", identity="finance", topic=topic,
                  key="finance/department-key") == n // 2
    # The sales key's KMS is not configured at finance, so its label is "other" (no unbounded labels).
    assert metric(after_finance, "veil_records_denied_total", identity="finance", topic=topic, key="other") == n // 2
    assert metric_sum(after_finance, "veil_records_decrypted_total") == n // 2
    # One unwrap for the one finance data key; every later record hit the cache.
    assert metric_sum(after_finance, "veil_kms_calls_total", operation="unwrap", outcome="ok") == 1
    assert metric(after_finance, "veil_dek_cache_misses_total", cache="decrypt") == 1
    assert metric(after_finance, "veil_dek_cache_hits_total", cache="decrypt") == n // 2
    assert metric(after_finance, "veil_response_bytes_total", api="Fetch") > 0


# --------------------------------------------------------------------------
# Health and readiness
# --------------------------------------------------------------------------


def veil_health(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(veil_binary()), "health", *args], capture_output=True, text=True, timeout=30)


def test_readiness_follows_the_upstream_and_health_command(env):
    owner = env.sidecar("owner", env.owner_config())
    port = env.admin_ports["owner"]
    assert http_get(port, "/healthz") == (200, "ok\n")
    status, body = http_get(port, "/readyz")
    assert status == 200, body
    r = veil_health("--config", str(owner.config_path))
    assert r.returncode == 0, r.stderr
    r = veil_health("--admin", f"127.0.0.1:{port}", "--ready")
    assert r.returncode == 0, r.stderr

    env.broker_proc.stop()
    status, body = http_get(port, "/readyz")
    assert status == 503 and "upstream unreachable" in body, (status, body)
    r = veil_health("--admin", f"127.0.0.1:{port}", "--ready")
    assert r.returncode == 1 and "503" in r.stderr, (r.returncode, r.stdout, r.stderr)
    # Alive all the same: /healthz is about the process, not its dependencies.
    assert http_get(port, "/healthz")[0] == 200
    assert veil_health("--admin", f"127.0.0.1:{port}").returncode == 0

    env.stop_sidecar(owner)
    r = veil_health("--admin", f"127.0.0.1:{port}", "--timeout", "2")
    assert r.returncode == 1, (r.stdout, r.stderr)


# --------------------------------------------------------------------------
# SIGTERM
# --------------------------------------------------------------------------


def test_sigterm_during_produce_loses_no_acknowledged_record(env):
    """A producer keeps sending through the owner while it gets SIGTERM: every record the
    producer saw acknowledged is in the broker's log, encrypted, and Veil exits 0 in time."""
    from confluent_kafka import Producer

    deadline_s = 10
    owner = env.sidecar("owner", env.owner_config() | {"shutdown": {"deadline_seconds": deadline_s}})
    run = uuid.uuid4().hex[:8]
    topic = f"ops-sigterm-{run}"
    env.create_topic(topic, 1)
    acked: dict[int, str] = {}  # offset -> data
    failed = []
    stop = threading.Event()

    def loop():
        p = Producer({"bootstrap.servers": owner.bootstrap, "acks": "all", "linger.ms": 2,
                      "message.timeout.ms": 8000, "reconnect.backoff.max.ms": 500})

        def done(err, msg):
            if err is None:
                acked[msg.offset()] = json.loads(msg.value())["data"]
            else:
                failed.append(str(err))

        i = 0
        while not stop.is_set():
            body = json.dumps({"department": DEPTS[i % 2], "data": f"{run}-{i}"}).encode()
            try:
                p.produce(topic, value=body, partition=0, on_delivery=done)
            except BufferError:
                pass
            p.poll(0.001)
            i += 1
            if i % 50 == 0:
                time.sleep(0.01)
        p.flush(15)

    t = threading.Thread(target=loop)
    t.start()
    try:
        until = time.monotonic() + 30
        while len(acked) < 300 and time.monotonic() < until:
            time.sleep(0.05)
        assert len(acked) >= 300, f"only {len(acked)} acknowledged before SIGTERM; failures: {failed[:3]}"
        sent_at = time.monotonic()
        os.killpg(owner.proc.pid, signal.SIGTERM)
        owner.proc.popen.wait(deadline_s + 10)
        took = time.monotonic() - sent_at
    finally:
        stop.set()
        t.join(60)
    env.stop_sidecar(owner)
    assert owner.proc.popen.returncode == 0, owner.log_text()[-3000:]
    assert took < deadline_s + 5, f"veil took {took:.1f}s to stop, deadline {deadline_s}s"
    log = owner.log_text()
    assert "shutting down: no new connections" in log and "stopped" in log
    acked_now = dict(acked)
    stored = raw_fetch(env.broker_port, topic, 0, timeout_s=30)
    by_offset = {r.offset: r for r in stored.records}
    missing = sorted(o for o in acked_now if o not in by_offset)
    assert not missing, f"{len(missing)} acknowledged records missing from the broker, first offsets {missing[:5]}"
    for offset in acked_now:
        env_ = parse_envelope(by_offset[offset].value)  # stored encrypted, never plaintext
        assert env_.kms in DEPTS
    print(f"{len(acked_now)} acknowledged, {len(by_offset)} stored, {len(failed)} failed after the stop; "
          f"stopped in {took:.2f}s")


class LongPoll:
    """A Fetch (v4) of an empty partition with a long max_wait, sent from a thread: the broker
    holds it until max_wait, so it is in flight at Veil for that long."""

    def __init__(self, port: int, topic: str, max_wait_ms: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.result = None
        self.error = None
        self.finished_at = None

        def run():
            try:
                self.result = _fetch_v4(self.sock, 7, topic, 0, 0, 0, 1 << 20, max_wait_ms=max_wait_ms)
            except Exception as e:  # the connection closed without an answer
                self.error = e
            self.finished_at = time.monotonic()

        self.thread = threading.Thread(target=run)
        self.started_at = time.monotonic()
        self.thread.start()

    def join(self, timeout: float):
        self.thread.join(timeout)
        self.sock.close()


def sigterm_during_long_poll(env, deadline_s: int, max_wait_ms: int, check_broker_waits: bool = False):
    """An owner sidecar with `deadline_s`, an empty topic, a long poll in flight through the
    sidecar, then SIGTERM. Returns (sidecar, poll, when SIGTERM was sent)."""
    owner = env.sidecar("owner", env.owner_config() | {"shutdown": {"deadline_seconds": deadline_s}})
    topic = f"ops-stop-{uuid.uuid4().hex[:8]}"
    env.create_topic(topic, 1)
    if check_broker_waits:
        direct = LongPoll(env.broker_port, topic, max_wait_ms)
        direct.join(30)
        assert direct.result and direct.finished_at - direct.started_at > max_wait_ms / 1000 - 0.5, \
            "precondition: the broker must hold an empty Fetch for max_wait"
    poll = LongPoll(owner.port, topic, max_wait_ms)
    time.sleep(0.5)
    os.killpg(owner.proc.pid, signal.SIGTERM)
    return owner, poll, time.monotonic()


def test_sigterm_lets_an_in_flight_request_finish(env):
    """A long-poll Fetch is in flight when SIGTERM arrives: Veil answers it before closing."""
    owner, poll, signalled = sigterm_during_long_poll(env, 15, 2500, check_broker_waits=True)
    poll.join(30)
    owner.proc.popen.wait(20)
    exited = time.monotonic()
    env.stop_sidecar(owner)
    assert poll.error is None and poll.result is not None, f"the in-flight Fetch got no answer: {poll.error!r}"
    assert poll.result[1] == 0, f"error code {poll.result[1]}"
    assert poll.finished_at - signalled > 1.0, "answered too early for the broker to have held it"
    assert owner.proc.popen.returncode == 0
    assert exited >= poll.finished_at - 0.05, "Veil exited before the answer was delivered"
    log = owner.log_text()
    assert "draining 1 connection(s)" in log and "shutdown deadline reached" not in log, log[-2000:]


def test_sigterm_closes_busy_connections_at_the_deadline(env):
    """A request still in flight at the deadline is cut off, and Veil exits on time."""
    owner, poll, signalled = sigterm_during_long_poll(env, 1, 8000)
    owner.proc.popen.wait(20)
    took = time.monotonic() - signalled
    poll.join(30)
    env.stop_sidecar(owner)
    assert owner.proc.popen.returncode == 0
    assert 0.8 < took < 4.0, f"Veil stopped {took:.1f}s after SIGTERM with a 1 s deadline"
    assert poll.result is None and poll.error is not None, "the 8 s long poll cannot have been answered"
    log = owner.log_text()
    assert "closed 1 connection(s) with requests in flight" in log, log[-2000:]
    assert "closing connection: shutdown deadline reached with requests in flight" in log


# --------------------------------------------------------------------------
# SIGHUP
# --------------------------------------------------------------------------


def test_sighup_new_grant_applies_to_open_connection(env):
    """Finance's consumer starts without a decrypt grant (records redacted); a reload that
    adds the grant makes the same consumer, on the same connection, read plaintext."""
    from kafka import KafkaConsumer, TopicPartition

    owner = env.sidecar("owner", env.owner_config())
    finance = env.sidecar("finance", env.consumer_config("finance", decrypt=[], on_denied="redact"))
    port = env.admin_ports["finance"]
    run = uuid.uuid4().hex[:8]
    topic = f"ops-sighup-{run}"
    env.create_topic(topic, 1)
    n = 10
    records = [Rec(b"k", json.dumps({"department": "finance", "data": f"{run}-{i}"}).encode(), (), 0) for i in range(n)]
    assert all(o.ok for o in produce("confluent", owner.bootstrap, topic, records))

    c = KafkaConsumer(bootstrap_servers=finance.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=30000)
    tp = TopicPartition(topic, 0)
    try:
        c.assign([tp])
        c.seek_to_beginning(tp)

        def read_all() -> list:
            got = []
            until = time.monotonic() + 20
            while len(got) < n and time.monotonic() < until:
                for msgs in c.poll(timeout_ms=300).values():
                    got.extend(msgs)
            return got

        first = read_all()
        assert [m.value for m in first] == [PLACEHOLDER.encode()] * n, [m.value for m in first][:3]
        connections_before = metric(scrape(port), "veil_connections_total")

        cfg = json.loads(finance.config_path.read_text())
        cfg["grants"]["decrypt"] = ["finance/department-key"]
        finance.config_path.write_text(json.dumps(cfg, indent=2))
        os.killpg(finance.proc.pid, signal.SIGHUP)
        until = time.monotonic() + 10
        while "reloaded" not in finance.log_text() and time.monotonic() < until:
            time.sleep(0.05)
        assert "reloaded" in finance.log_text(), finance.log_text()[-2000:]

        c.seek_to_beginning(tp)
        second = read_all()
        assert [json.loads(m.value)["data"] for m in second] == [f"{run}-{i}" for i in range(n)]
        after = scrape(port)
        assert metric(after, "veil_connections_total") == connections_before, "the consumer reconnected"
        assert metric(after, "veil_config_reloads_total", outcome="applied") == 1
    finally:
        c.close()


def test_sighup_bad_config_keeps_the_running_one(env):
    owner = env.sidecar("owner", env.owner_config())
    finance = env.sidecar("finance", env.consumer_config("finance"))
    port = env.admin_ports["finance"]
    good = finance.config_path.read_text()
    no_identity = json.loads(good)
    del no_identity["identity"]
    no_keyring = json.loads(good)
    no_keyring["kms"]["finance"]["keyring"] = "/nonexistent/keyring"
    broken = [
        good.replace('"grants"', '"grantz"'),  # unknown key
        json.dumps(no_identity),  # required key missing
        "identity: [unclosed\n",  # not YAML
        json.dumps(no_keyring),  # keyring cannot be read
    ]
    for i, text in enumerate(broken, 1):
        finance.config_path.write_text(text)
        os.killpg(finance.proc.pid, signal.SIGHUP)
        until = time.monotonic() + 10
        while finance.log_text().count("reload rejected") < i and time.monotonic() < until:
            time.sleep(0.05)
        assert finance.log_text().count("reload rejected") == i, finance.log_text()[-2000:]
    assert finance.proc.alive()
    samples = scrape(port)
    assert metric(samples, "veil_config_reloads_total", outcome="rejected") == len(broken)
    assert metric(samples, "veil_config_reloads_total", outcome="applied") == 0
    # The old configuration still decrypts.
    run = uuid.uuid4().hex[:8]
    topic = f"ops-badhup-{run}"
    env.create_topic(topic, 1)
    records = [Rec(b"k", json.dumps({"department": "finance", "data": f"{run}-{i}"}).encode(), (), 0) for i in range(5)]
    assert all(o.ok for o in produce("confluent", owner.bootstrap, topic, records))
    got = consume(finance.bootstrap, topic, [0], 5)
    assert [json.loads(m.value)["data"] for m in got] == [f"{run}-{i}" for i in range(5)]


# --------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------


def test_json_logs_one_line_per_connection_without_payloads(env):
    owner = env.sidecar("owner", env.owner_config() | {"logging": {"format": "json", "level": "info"}})
    run = uuid.uuid4().hex[:8]
    topic = f"ops-logs-{run}"
    env.create_topic(topic, 1)
    secret = f"payload-marker-{run}"
    records = [Rec(b"k", json.dumps({"department": "finance", "data": secret}).encode(), (), 0)]
    assert all(o.ok for o in produce("confluent", owner.bootstrap, topic, records))
    time.sleep(0.5)  # the producer's connections close after flush
    env.stop_sidecar(owner)
    lines = [l for l in owner.log_text().splitlines() if l.strip()]
    events = [json.loads(l) for l in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in events)
    closed = [e for e in events if e["message"] in ("connection closed",) or e["message"].startswith("closing connection")]
    assert closed, "no connection summary line"
    # One summary per connection: the peers are distinct.
    peers = [e["peer"] for e in closed]
    assert len(peers) == len(set(peers)), peers
    assert all("requests" in e and "duration_ms" in e for e in closed)
    assert secret not in owner.log_text()
    keyring_text = env.keyrings["owner-finance"].read_text()
    material = json.loads(keyring_text)["keys"][0]["material"]
    assert material not in owner.log_text()

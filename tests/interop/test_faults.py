"""Faults (issue 10, "Faults"): the broker restarting mid produce and consume, upstream
connections reset, clients vanishing with requests in flight, and a slow consumer.

The broker is Tansu with its log in S3 (`--storage-engine s3://tansu/`) on a moto_server the
test starts, so what it acknowledged survives a restart. Records go in through an encrypting
sidecar (`writer`) and come out through a decrypting one (`reader`), with an idempotent
acks=all confluent-kafka producer and an assign()ed consumer (streams.HealthyStream); every
acknowledged record must come out exactly once, in order per partition.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import uuid

import pytest

from enc_support import EncEnv, parse_envelope, raw_fetch
from fault_support import MotoS3, S3Tansu, TcpRelay, open_fds, rss_kb, socket_snapshot, start_sidecar_pair
from streams import HealthyStream
from wire_craft import frame, header_v1, produce_v7, string, valid_batch

PREFIX = "fault-"


class FaultEnv(EncEnv):
    """moto S3, Tansu on it (reached through a resettable relay), and the sidecar pair."""

    def setup(self):
        self.s3 = MotoS3(self.dir)
        self.relay_port = None
        # Tansu advertises the relay's port, so every connection Veil makes goes through it.
        relay_listen = socket.socket()
        relay_listen.bind(("127.0.0.1", 0))
        port = relay_listen.getsockname()[1]
        relay_listen.close()
        self.tansu = S3Tansu(self.dir, self.s3, advertised_port=port)
        self.relay = TcpRelay(self.tansu.port, port)
        self.broker_port = self.relay.port  # sidecars' upstream
        self.broker_proc = self.tansu.proc
        self.writer, self.reader = start_sidecar_pair(self, PREFIX)

    def teardown(self):
        self.stop()
        self.relay.close()
        self.tansu.stop()
        self.s3.stop()

    def topic(self, name: str, partitions: int = 3) -> str:
        t = f"{PREFIX}{name}-{uuid.uuid4().hex[:6]}"
        self.create_topic(t, partitions)
        return t

    def stream(self, name: str, **kw) -> HealthyStream:
        s = HealthyStream(self.writer.bootstrap, self.topic(name, kw.get("partitions", 3)),
                          consume_bootstrap=self.reader.bootstrap, **kw)
        s.start()
        return s

    def sockets(self) -> str:
        """Queues on every hop: clients and relay (this process), both sidecars, Tansu, and
        Tansu's S3 (moto)."""
        return socket_snapshot({"pytest (clients, relay)": os.getpid(), "writer": self.writer.proc.pid,
                                "reader": self.reader.proc.pid, "tansu": self.tansu.proc.pid, "moto": self.s3.proc.pid})

    def sidecars_alive(self) -> list[str]:
        return [f"{sc.name} exited" for sc in (self.writer, self.reader) if not sc.proc.alive()]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = FaultEnv(tmp_path_factory.mktemp("faults"))
    try:
        e.setup()
        yield e
    finally:
        e.teardown()


def wait_acked(s: HealthyStream, n: int, timeout: float = 60, env: FaultEnv | None = None):
    """Waits for `n` acknowledgements. With `env`, a stall can be placed: the timeout message
    shows, per 5 s, the records acked and the bytes the relay moved to and from the broker,
    and every hop's socket queues as they were after 15 s without an acknowledgement."""
    deadline = time.monotonic() + timeout
    trace, last = [], 0.0
    progress, progress_at, sockets = len(s.acked), time.monotonic(), ""
    while len(s.acked) < n and time.monotonic() < deadline:
        now = time.monotonic()
        if env and now - last >= 5:
            last = now
            trace.append((len(s.acked), env.relay.to_upstream, env.relay.from_upstream))
        if len(s.acked) != progress:
            progress, progress_at = len(s.acked), now
        elif env and not sockets and now - progress_at > 15:
            sockets = env.sockets()
        time.sleep(0.1)
    assert len(s.acked) >= n, (f"only {len(s.acked)} of {n} records acknowledged within {timeout} s: {s.failed[:3]}; "
                               f"(acked, bytes to broker, bytes from broker) every 5 s: {trace}; "
                               f"sockets after 15 s without an acknowledgement:\n{sockets}")


def assert_stored_sealed(env: FaultEnv, s: HealthyStream):
    for p in range(s.partitions):
        for r in raw_fetch(env.tansu.port, s.topic, p).records:
            parse_envelope(r.value)  # raises unless an envelope


@pytest.mark.parametrize("route", ["direct", "veil"])
@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_broker_restart_mid_produce_and_consume(env, hard, route):
    """The broker stops (SIGTERM, or SIGKILL) twice while records flow and comes back on S3:
    the clients recover through both sidecars, acknowledged records are all there once.
    The `direct` route runs the same clients straight at the broker, so a loss there is the
    broker's own."""
    name = f"restart-{'kill' if hard else 'term'}-{route}"
    if route == "veil":
        s = env.stream(name)
    else:
        s = HealthyStream(f"127.0.0.1:{env.relay.port}", env.topic(name))
        s.start()
    try:
        for round_ in range(2):
            wait_acked(s, 300 * (round_ + 1))
            env.tansu.restart(hard=hard, down_s=2.0)
            env.broker_proc = env.tansu.proc
        # Recovery: 300 more records acknowledged after the last restart.
        before = len(s.acked)
        wait_acked(s, before + 300, timeout=90)
    finally:
        s.finish()
    # Tansu's S3 engine can lose acknowledged records across a restart (it reuses offsets, or
    # acknowledges a retried batch as a duplicate without holding it); the direct route shows
    # it without Veil. The duplicate case is nisshi-io/nisshi#742 (Tansu's successor): an
    # idempotent produce commits the producer's sequence before the batch object is written. Those are reported, not failed on; every other loss, every record stored
    # twice and any disorder fails the test on both routes.
    problems = s.problems(min_acked=900, broker_losses_ok=True) + env.sidecars_alive()
    print(f"restart ({'SIGKILL' if hard else 'SIGTERM'}) x2, {route}: {s.summary()}")
    assert not problems, "\n".join(problems) + "\n" + env.tails()
    if route == "direct":
        return
    assert_stored_sealed(env, s)
    text = env.writer.log_text()
    assert "closed its connection" in text or "upstream" in text, "the writer sidecar logged nothing about the broker going away"


def test_upstream_connection_reset(env):
    """Every connection between the sidecars and the broker is reset (TCP RST) three times while
    records flow: clients recover, nothing is lost or duplicated, both sidecars log it."""
    s = env.stream("reset")
    resets = 0
    try:
        for i in range(3):
            wait_acked(s, 200 * (i + 1), env=env)
            resets += env.relay.reset_all()
            time.sleep(0.5)
        wait_acked(s, len(s.acked) + 200, timeout=90, env=env)
    finally:
        s.finish()
    problems = s.problems(min_acked=800) + env.sidecars_alive()
    print(f"upstream reset: {resets} connections reset; {s.summary()}")
    assert resets >= 6, f"only {resets} upstream connections were reset"
    assert not problems, "\n".join(problems) + "\n" + env.tails()
    for sc in (env.writer, env.reader):
        assert "closing connection" in sc.log_text(), f"{sc.name} logged no closed connection after upstream resets"


def test_client_disconnects_with_requests_in_flight(env):
    """200 clients each pipeline Produce requests and a long-polling Fetch, then vanish
    without reading: the sidecar logs it, frees each connection (open file descriptors return
    to where they were) and the healthy stream beside them loses nothing."""
    s = env.stream("inflight")
    topic = env.topic("inflight-junk", 1)
    empty = env.topic("inflight-empty", 1)  # a Fetch at offset 0 here long-polls for 5 s
    pid = env.writer.proc.pid
    time.sleep(2)
    fds_before = open_fds(pid)
    try:
        for n in range(200):
            with socket.create_connection(("127.0.0.1", env.writer.port), timeout=5) as c:
                data = b"".join(produce_v7(100 + i, topic, 0, valid_batch([b'{"n": %d}' % n] * 10)) for i in range(5))
                fetch = (header_v1(1, 4, 200) + struct.pack(">iiiib", -1, 5000, 1, 1 << 20, 0)
                         + struct.pack(">i", 1) + string(empty) + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20))
                c.sendall(data + frame(fetch))
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_acked(s, len(s.acked) + 100)
    finally:
        s.finish()
    deadline = time.monotonic() + 15
    while open_fds(pid) > fds_before + 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    fds_after = open_fds(pid)
    problems = s.problems(min_acked=100) + env.sidecars_alive()
    assert not problems, "\n".join(problems) + "\n" + env.tails()
    assert fds_after <= fds_before + 4, f"writer sidecar holds {fds_after} descriptors after 200 vanished clients (was {fds_before})"
    assert "disconnected with" in env.writer.log_text(), "no log line for clients that left with requests in flight"


def test_slow_consumer_keeps_rss_bounded(env):
    """A consumer that pipelines Fetch requests through the reader sidecar but reads its socket
    slowly, while a fast producer writes 96 MB: the reader sidecar's RSS stays bounded, because
    it stops reading from the broker while the client's socket is full."""
    from confluent_kafka import Producer

    topic = env.topic("slow", 1)
    reader_pid = env.reader.proc.pid
    rss_start = rss_kb(reader_pid)
    value = b'{"pad": "' + b"y" * 100_000 + b'"}'
    p = Producer({"bootstrap.servers": env.writer.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 20, "message.max.bytes": 2 << 20})
    peak = rss_start
    with socket.create_connection(("127.0.0.1", env.reader.port), timeout=10) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # 60 pipelined Fetch v4 requests for 4 MiB each from offset 0: up to 240 MiB of answers.
        for i in range(60):
            body = (header_v1(1, 4, 1000 + i) + struct.pack(">iiiib", -1, 500, 1, 4 << 20, 0)
                    + struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 4 << 20))
            slow.sendall(frame(body))
        for n in range(960):
            p.produce(topic, value=value, partition=0)
            p.poll(0)
            if n % 50 == 0:
                peak = max(peak, rss_kb(reader_pid))
                slow.recv(1024)  # a trickle
        assert p.flush(120) == 0, "the fast producer could not deliver"
        for _ in range(50):
            peak = max(peak, rss_kb(reader_pid))
            slow.recv(1024)
            time.sleep(0.1)
    growth_mb = (peak - rss_start) / 1024
    print(f"slow consumer: reader sidecar RSS {rss_start // 1024} MB -> peak {peak // 1024} MB while 96 MB were produced")
    assert env.reader.proc.alive()
    # One 4 MiB Fetch response decoded, decrypted and re-encoded is ~3 copies; allow for
    # allocator slack, far below the 240 MiB the pipelined requests could pull.
    assert growth_mb < 64, f"reader sidecar RSS grew {growth_mb:.0f} MB behind a slow consumer"

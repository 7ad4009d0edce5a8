"""A healthy producer and consumer that keep going while a test attacks or breaks things
(test_malformed.py, test_faults.py, scripts/soak).

`HealthyStream` produces JSON records {"seq": n, ...} with confluent-kafka (acks=all,
idempotent) to `partitions` partitions (seq % partitions) and consumes them with an assign()ed
consumer, possibly through a different bootstrap (an encrypting sidecar in, a decrypting one
out). `problems()` lists every acknowledged record not consumed, every duplicate, every
partition out of order and every delivery failure.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Optional


class HealthyStream:
    """An idempotent acks=all producer and an assign()ed consumer on one topic, in threads."""

    PARTITIONS = 3

    def __init__(self, bootstrap: str, topic: str, *, consume_bootstrap: Optional[str] = None, partitions: int = PARTITIONS,
                 limit: Optional[int] = None, pace_s: float = 0.01, value_bytes: int = 0, producer_extra: Optional[dict] = None):
        from confluent_kafka import Producer

        self.topic, self.partitions, self.limit, self.pace_s = topic, partitions, limit, pace_s
        self.consume_bootstrap = consume_bootstrap or bootstrap
        self.padding = "x" * value_bytes
        self.stop = threading.Event()
        self.acked: dict[int, tuple[int, int]] = {}  # seq -> (partition, offset)
        self.failed: list[str] = []
        self.consumed: list[tuple[int, int, int]] = []  # (partition, offset, seq)
        self.consume_errors: list[str] = []
        self.sent = 0
        conf = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                "client.id": "veil-healthy-stream"} | (producer_extra or {})
        self.producer = Producer(conf)
        self.threads = [threading.Thread(target=self._produce, daemon=True),
                        threading.Thread(target=self._consume, daemon=True)]
        self.consume_done = threading.Event()
        self.produce_done = threading.Event()

    def start(self):
        for t in self.threads:
            t.start()

    def _produce(self):
        from confluent_kafka import KafkaException

        seq = 0
        try:
            while not self.stop.is_set() and (self.limit is None or seq < self.limit):
                def done(err, msg, seq=seq):
                    if err is not None:
                        self.failed.append(f"seq {seq}: {err}")
                    else:
                        self.acked[seq] = (msg.partition(), msg.offset())
                value = json.dumps({"seq": seq, "text": f"healthy record {seq}", "pad": self.padding}).encode()
                try:
                    self.producer.produce(self.topic, value=value, partition=seq % self.partitions, on_delivery=done)
                except BufferError:
                    self.producer.poll(0.1)
                    continue
                except KafkaException as e:
                    self.failed.append(f"seq {seq}: produce() raised {e}")
                    break
                self.sent += 1
                seq += 1
                self.producer.poll(self.pace_s)
            left = self.producer.flush(120)
            if left:
                self.failed.append(f"{left} records neither delivered nor failed within 120 s")
        finally:
            self.produce_done.set()

    def _consume(self):
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.consume_bootstrap, "group.id": f"veil-healthy-{uuid.uuid4().hex[:6]}",
                      "enable.auto.commit": False, "client.id": "veil-healthy-stream",
                      "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)])
        try:
            while not self.consume_done.is_set():
                for m in c.consume(num_messages=1000, timeout=0.2):
                    if m.error():
                        self.consume_errors.append(str(m.error()))
                        continue
                    seq = json.loads(m.value())["seq"]
                    self.consumed.append((m.partition(), m.offset(), seq))
        finally:
            c.close()

    def finish(self, timeout: float = 120.0):
        """Stops producing; waits until every acknowledged record was consumed (or timeout)."""
        self.stop.set()
        self.produce_done.wait(150)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(self.acked) <= {s for _, _, s in self.consumed}:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # anything duplicated would arrive right behind
        self.consume_done.set()
        self.threads[1].join(30)

    def losses(self) -> dict[str, list[int]]:
        """Acknowledged records never consumed, by where they went: `no_offset` (acknowledged
        without an offset: the broker called a retried batch a duplicate), `overwritten` (the
        consumer read a different record at the acknowledged offset: the broker reused it), and
        `unexplained` (nothing was read at that offset: lost between broker and consumer)."""
        consumed_seqs = {q for _, _, q in self.consumed}
        at = {(p, off) for p, off, _ in self.consumed}
        out = {"no_offset": [], "overwritten": [], "unexplained": []}
        for q in sorted(set(self.acked) - consumed_seqs):
            p, off = self.acked[q]
            if off is None or off < 0:
                out["no_offset"].append(q)
            elif (p, off) in at:
                out["overwritten"].append(q)
            else:
                out["unexplained"].append(q)
        return out

    def duplicates(self) -> int:
        """Records stored more than once: one seq at two different offsets."""
        where: dict[int, set] = {}
        for p, off, q in self.consumed:
            where.setdefault(q, set()).add((p, off))
        return sum(len(v) - 1 for v in where.values())

    def rereads(self) -> int:
        """Records read more than once at the same offset (the consumer went back)."""
        return len(self.consumed) - len({(p, off) for p, off, _ in self.consumed})

    def problems(self, min_acked: int = 1, broker_losses_ok: bool = False) -> list[str]:
        """Everything wrong with the stream. `broker_losses_ok`: losses the broker itself caused
        (see `losses`), and re-reads after its high watermark went back, are left to the caller."""
        losses = self.losses()
        first_read: dict[tuple, int] = {}
        for p, off, q in self.consumed:
            first_read.setdefault((p, off), q)
        by_part: dict[int, list] = {}
        for (p, off), q in sorted(first_read.items()):
            by_part.setdefault(p, []).append(q)
        disorder = [p for p, seqs in by_part.items() if seqs != sorted(seqs)]
        wrong_partition = [q for p, _, q in self.consumed if p != q % self.partitions]
        out = []
        if self.failed:
            out.append(f"{len(self.failed)} delivery failures, first: {self.failed[:3]}")
        if len(self.acked) < min_acked:
            out.append(f"only {len(self.acked)} records acknowledged (expected at least {min_acked})")
        for kind, seqs in losses.items():
            if seqs and (kind == "unexplained" or not broker_losses_ok):
                out.append(f"{len(seqs)} acknowledged records never consumed ({kind}), first {seqs[:10]}")
        if self.duplicates():
            out.append(f"{self.duplicates()} records stored twice (same seq at two offsets)")
        if self.rereads() and not broker_losses_ok:
            out.append(f"{self.rereads()} records read twice at the same offset")
        if disorder:
            out.append(f"partitions {disorder} out of order")
        if wrong_partition:
            out.append(f"{len(wrong_partition)} records in the wrong partition")
        if self.consume_errors:
            out.append(f"consumer errors {self.consume_errors[:3]}")
        return out

    def summary(self) -> str:
        consumed = {q for _, _, q in self.consumed}
        losses = {k: len(v) for k, v in self.losses().items()}
        return (f"sent {self.sent}, acked {len(self.acked)}, consumed {len(self.consumed)} "
                f"({len(consumed)} distinct), lost {sum(losses.values())} {losses}, "
                f"stored twice {self.duplicates()}, re-read {self.rereads()}, delivery failures {len(self.failed)}")

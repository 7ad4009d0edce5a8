"""One small adapter per Kafka client library, all with the same interface.

Each adapter talks to one bootstrap address and returns plain Python values
(records as `Rec` tuples, broker addresses as (host, port) pairs), so a
scenario can run unchanged against any client and any route.

Every blocking call is bounded by a timeout; nothing here retries silently.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional



class Rec(NamedTuple):
    """A record as a client sees it: partition and offset are filled in on consume."""

    key: Optional[bytes]
    value: Optional[bytes]
    headers: tuple = ()
    partition: int = -1
    offset: int = -1


@dataclass
class ProduceOpts:
    codec: str = "none"
    idempotent: bool = False
    max_request_bytes: Optional[int] = None  # raise for large records
    linger_ms: int = 5


@dataclass
class ConsumeOpts:
    isolation: str = "read_uncommitted"
    max_fetch_bytes: Optional[int] = None  # raise for large records
    timeout_s: float = 30.0
    group: Optional[str] = None


@dataclass
class Txn:
    commit: bool
    records: list  # list[Rec] with partition set


def _stop_when(expected_count: Optional[int], sentinel_key: Optional[bytes]) -> Callable[[list], bool]:
    def done(got: list) -> bool:
        if sentinel_key is not None and any(r.key == sentinel_key for r in got):
            return True
        return expected_count is not None and len(got) >= expected_count

    return done


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------
# confluent-kafka (librdkafka)
# --------------------------------------------------------------------------


class ConfluentClient:
    name = "confluent"

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    def _base(self) -> dict:
        return {"bootstrap.servers": self.bootstrap, "client.id": "veil-interop-confluent",
                "socket.timeout.ms": 20000}

    def create_topic(self, topic: str, partitions: int) -> int:
        """Creates a topic; returns the broker's error code for it (0 on success)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self._base())
        try:
            for f in admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=20).values():
                f.result(30)
        except KafkaException as e:
            return e.args[0].code()
        return 0

    def describe(self, topic: Optional[str] = None):
        """Returns (broker addresses, {topic: partition count}) as this client sees them."""
        from confluent_kafka.admin import AdminClient

        md = AdminClient(self._base()).list_topics(topic=topic, timeout=20)
        brokers = sorted((b.host, b.port) for b in md.brokers.values())
        topics = {t: len(tm.partitions) for t, tm in md.topics.items() if tm.error is None}
        return brokers, topics

    def _producer_conf(self, opts: ProduceOpts) -> dict:
        conf = self._base() | {"compression.type": opts.codec, "linger.ms": opts.linger_ms, "acks": "all",
                               "enable.idempotence": opts.idempotent}
        if opts.max_request_bytes:
            conf["message.max.bytes"] = opts.max_request_bytes
        return conf

    def produce(self, topic: str, records: list, opts: ProduceOpts, probe: Callable = lambda: None):
        """Produces `records` (Rec with partition >= 0) in order; returns [(partition, offset)]."""
        from confluent_kafka import Producer

        p = Producer(self._producer_conf(opts))
        results: list = [None] * len(records)

        def cb(i):
            return lambda err, msg: results.__setitem__(i, (err, msg.partition(), msg.offset()))

        for i, r in enumerate(records):
            p.produce(topic, key=r.key, value=r.value, headers=list(r.headers) or None,
                      partition=r.partition, on_delivery=cb(i))
            p.poll(0)
        left = p.flush(60)
        probe()
        if left:
            raise TimeoutError(f"{left} messages not delivered in 60 s")
        errs = [str(x[0]) for x in results if x[0] is not None]
        if errs:
            raise RuntimeError("delivery failed: " + "; ".join(errs))
        return [(x[1], x[2]) for x in results]

    def transactions(self, topic: str, txns: list, txn_id: str):
        from confluent_kafka import Producer

        p = Producer(self._base() | {"transactional.id": txn_id, "linger.ms": 5})
        p.init_transactions(30)
        for t in txns:
            p.begin_transaction()
            for r in t.records:
                p.produce(topic, key=r.key, value=r.value, headers=list(r.headers) or None, partition=r.partition)
            p.flush(30)
            if t.commit:
                p.commit_transaction(30)
            else:
                p.abort_transaction(30)

    def _consumer_conf(self, opts: ConsumeOpts) -> dict:
        conf = self._base() | {"group.id": opts.group or _unique("interop-assign"), "enable.auto.commit": False,
                               "auto.offset.reset": "earliest", "isolation.level": opts.isolation,
                               "enable.partition.eof": False}
        if opts.max_fetch_bytes:
            conf |= {"fetch.max.bytes": opts.max_fetch_bytes, "max.partition.fetch.bytes": opts.max_fetch_bytes,
                     "receive.message.max.bytes": opts.max_fetch_bytes + 1_000_000}
        return conf

    def _drain(self, c, done, timeout_s, probe):
        got: list = []
        deadline = time.monotonic() + timeout_s
        while not done(got) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise RuntimeError(f"consume error: {m.error()}")
            got.append(Rec(m.key(), m.value(), tuple(m.headers() or ()), m.partition(), m.offset()))
        probe()
        return got

    def consume(self, topic: str, partitions: list, opts: ConsumeOpts, expected_count=None, sentinel_key=None,
                probe: Callable = lambda: None):
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        c = Consumer(self._consumer_conf(opts))
        try:
            c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            return self._drain(c, _stop_when(expected_count, sentinel_key), opts.timeout_s, probe)
        finally:
            c.close()

    def subscribe_consume(self, topic: str, opts: ConsumeOpts, expected_count: int):
        """Joins `opts.group`, consumes, commits; returns (records, {partition: committed offset})."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer(self._consumer_conf(opts))
        try:
            c.subscribe([topic])
            got = self._drain(c, _stop_when(expected_count, None), opts.timeout_s, lambda: None)
            c.commit(asynchronous=False)
            parts = sorted({r.partition for r in got})
            committed = c.committed([TopicPartition(topic, p) for p in parts], timeout=20)
            return got, {tp.partition: tp.offset for tp in committed}
        finally:
            c.close()


# --------------------------------------------------------------------------
# kafka-python
# --------------------------------------------------------------------------


class KafkaPythonClient:
    name = "kafka-python"

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    def _base(self) -> dict:
        return {"bootstrap_servers": self.bootstrap, "client_id": "veil-interop-kafka-python",
                "request_timeout_ms": 30000}

    def create_topic(self, topic: str, partitions: int) -> int:
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import BrokerResponseError

        admin = KafkaAdminClient(**self._base())
        try:
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                timeout_ms=30000)
        except BrokerResponseError as e:
            return e.errno
        finally:
            admin.close()
        return 0

    def describe(self, topic: Optional[str] = None):
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(**self._base())
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        brokers = sorted((b["host"], b["port"]) for b in cluster["brokers"])
        c = KafkaConsumer(**self._base())
        try:
            names = [topic] if topic else sorted(c.topics())
            topics = {t: len(c.partitions_for_topic(t) or ()) for t in names}
            topics = {t: n for t, n in topics.items() if n}
        finally:
            c.close()
        return brokers, topics

    def _producer(self, opts: ProduceOpts, **extra):
        from kafka import KafkaProducer

        conf = self._base() | {"compression_type": None if opts.codec == "none" else opts.codec,
                               "linger_ms": opts.linger_ms, "acks": "all",
                               "enable_idempotence": opts.idempotent} | extra
        if opts.max_request_bytes:
            conf |= {"max_request_size": opts.max_request_bytes}
        return KafkaProducer(**conf)

    def produce(self, topic: str, records: list, opts: ProduceOpts, probe: Callable = lambda: None):
        p = self._producer(opts)
        try:
            futs = [p.send(topic, key=r.key, value=r.value, headers=list(r.headers), partition=r.partition)
                    for r in records]
            p.flush(60)
            probe()
            out = []
            for f in futs:
                md = f.get(60)
                out.append((md.partition, md.offset))
            return out
        finally:
            p.close(10)

    def transactions(self, topic: str, txns: list, txn_id: str):
        p = self._producer(ProduceOpts(idempotent=True), transactional_id=txn_id)
        try:
            p.init_transactions()
            for t in txns:
                p.begin_transaction()
                futs = [p.send(topic, key=r.key, value=r.value, headers=list(r.headers), partition=r.partition)
                        for r in t.records]
                p.flush(30)
                for f in futs:
                    f.get(30)
                if t.commit:
                    p.commit_transaction()
                else:
                    p.abort_transaction()
        finally:
            p.close(10)

    def _consumer(self, opts: ConsumeOpts):
        from kafka import KafkaConsumer

        conf = self._base() | {"group_id": opts.group, "enable_auto_commit": False,
                               "auto_offset_reset": "earliest", "isolation_level": opts.isolation}
        if opts.max_fetch_bytes:
            conf |= {"fetch_max_bytes": opts.max_fetch_bytes, "max_partition_fetch_bytes": opts.max_fetch_bytes,
                     "receive_message_max_bytes": opts.max_fetch_bytes + 1_000_000}
        return KafkaConsumer(**conf)

    def _drain(self, c, done, timeout_s, probe):
        got: list = []
        deadline = time.monotonic() + timeout_s
        while not done(got) and time.monotonic() < deadline:
            for msgs in c.poll(timeout_ms=500).values():
                for m in msgs:
                    got.append(Rec(m.key, m.value, tuple((k, v) for k, v in m.headers), m.partition, m.offset))
        probe()
        return got

    def consume(self, topic: str, partitions: list, opts: ConsumeOpts, expected_count=None, sentinel_key=None,
                probe: Callable = lambda: None):
        from kafka import TopicPartition

        c = self._consumer(opts)
        try:
            tps = [TopicPartition(topic, p) for p in partitions]
            c.assign(tps)
            c.seek_to_beginning(*tps)
            return self._drain(c, _stop_when(expected_count, sentinel_key), opts.timeout_s, probe)
        finally:
            c.close()

    def subscribe_consume(self, topic: str, opts: ConsumeOpts, expected_count: int):
        from kafka import TopicPartition

        c = self._consumer(opts)
        try:
            c.subscribe([topic])
            got = self._drain(c, _stop_when(expected_count, None), opts.timeout_s, lambda: None)
            c.commit()
            parts = sorted({r.partition for r in got})
            committed = {p: c.committed(TopicPartition(topic, p)) for p in parts}
            return got, committed
        finally:
            c.close()


# --------------------------------------------------------------------------
# aiokafka
# --------------------------------------------------------------------------


def _run(coro, timeout_s: float = 120.0):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


class AioKafkaClient:
    name = "aiokafka"

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    def _base(self) -> dict:
        return {"bootstrap_servers": self.bootstrap, "client_id": "veil-interop-aiokafka",
                "request_timeout_ms": 30000}

    def create_topic(self, topic: str, partitions: int) -> int:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        async def go():
            admin = AIOKafkaAdminClient(**self._base())
            try:
                await admin.start()
                resp = await admin.create_topics(
                    [NewTopic(topic, num_partitions=partitions, replication_factor=1)], timeout_ms=30000)
            finally:
                await admin.close()
            return max((t[1] for t in resp.topic_errors), key=abs, default=0)

        return _run(go())

    def describe(self, topic: Optional[str] = None):
        from aiokafka.admin import AIOKafkaAdminClient

        async def go():
            admin = AIOKafkaAdminClient(**self._base())
            try:
                await admin.start()
                cluster = await admin.describe_cluster()
                described = await admin.describe_topics([topic] if topic else await admin.list_topics())
            finally:
                await admin.close()
            brokers = sorted((b["host"], b["port"]) for b in cluster["brokers"])
            topics = {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}
            return brokers, topics

        return _run(go())

    def _producer(self, opts: ProduceOpts, **extra):
        from aiokafka import AIOKafkaProducer

        conf = self._base() | {"compression_type": None if opts.codec == "none" else opts.codec,
                               "linger_ms": opts.linger_ms, "acks": "all",
                               "enable_idempotence": opts.idempotent} | extra
        if opts.max_request_bytes:
            conf["max_request_size"] = opts.max_request_bytes
        return AIOKafkaProducer(**conf)

    def produce(self, topic: str, records: list, opts: ProduceOpts, probe: Callable = lambda: None):
        async def go():
            p = self._producer(opts)
            try:
                await p.start()
                futs = [await p.send(topic, key=r.key, value=r.value, headers=list(r.headers),
                                     partition=r.partition) for r in records]
                await p.flush()
                probe()
                out = []
                for f in futs:
                    md = await asyncio.wait_for(f, 60)
                    out.append((md.partition, md.offset))
                return out
            finally:
                await p.stop()

        return _run(go())

    def transactions(self, topic: str, txns: list, txn_id: str):
        async def go():
            p = self._producer(ProduceOpts(idempotent=True), transactional_id=txn_id)
            try:
                await p.start()
                for t in txns:
                    await p.begin_transaction()
                    futs = [await p.send(topic, key=r.key, value=r.value, headers=list(r.headers),
                                         partition=r.partition) for r in t.records]
                    for f in futs:
                        await asyncio.wait_for(f, 30)
                    if t.commit:
                        await p.commit_transaction()
                    else:
                        await p.abort_transaction()
            finally:
                await p.stop()

        _run(go())

    def _consumer(self, opts: ConsumeOpts):
        from aiokafka import AIOKafkaConsumer

        conf = self._base() | {"group_id": opts.group, "enable_auto_commit": False,
                               "auto_offset_reset": "earliest", "isolation_level": opts.isolation}
        if opts.max_fetch_bytes:
            conf |= {"fetch_max_bytes": opts.max_fetch_bytes, "max_partition_fetch_bytes": opts.max_fetch_bytes}
        return AIOKafkaConsumer(**conf)

    async def _drain(self, c, done, timeout_s, probe):
        got: list = []
        deadline = time.monotonic() + timeout_s
        while not done(got) and time.monotonic() < deadline:
            for msgs in (await c.getmany(timeout_ms=500)).values():
                for m in msgs:
                    got.append(Rec(m.key, m.value, tuple((k, v) for k, v in m.headers), m.partition, m.offset))
        probe()
        return got

    def consume(self, topic: str, partitions: list, opts: ConsumeOpts, expected_count=None, sentinel_key=None,
                probe: Callable = lambda: None):
        from aiokafka import TopicPartition

        async def go():
            c = self._consumer(opts)
            try:
                await c.start()
                tps = [TopicPartition(topic, p) for p in partitions]
                c.assign(tps)
                await c.seek_to_beginning(*tps)
                return await self._drain(c, _stop_when(expected_count, sentinel_key), opts.timeout_s, probe)
            finally:
                await c.stop()

        return _run(go(), opts.timeout_s + 60)

    def subscribe_consume(self, topic: str, opts: ConsumeOpts, expected_count: int):
        from aiokafka import TopicPartition

        async def go():
            c = self._consumer(opts)
            try:
                await c.start()
                c.subscribe([topic])
                got = await self._drain(c, _stop_when(expected_count, None), opts.timeout_s, lambda: None)
                await c.commit()
                parts = sorted({r.partition for r in got})
                committed = {p: await c.committed(TopicPartition(topic, p)) for p in parts}
                return got, committed
            finally:
                await c.stop()

        return _run(go(), opts.timeout_s + 60)


CLIENTS = {c.name: c for c in (ConfluentClient, KafkaPythonClient, AioKafkaClient)}

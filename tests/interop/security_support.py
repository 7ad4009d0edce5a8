"""Real parts for testing Veil's upstream TLS and SASL and its gateway mode.

The Tansu build used here does neither TLS nor SASL, so the tests put real parts in front
of it:
- Debian's stunnel4 terminates TLS in front of Tansu, with certificates the test generates
  (Python `cryptography`);
- `SaslFront`, a small asyncio Kafka front, stands in for a broker's SASL layer: it answers
  SaslHandshake/SaslAuthenticate itself, with the SCRAM server logic of the reference
  implementation `scramp` (not Veil's code), and after a successful authentication pipes
  bytes to Tansu. It counts every authentication attempt, so tests can show that a wrong
  password causes no retry storm.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime
import ipaddress
import json
import shutil
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from conftest import Broker, Proc, api_versions_ok, free_port, tansu_binary, wait_for_port

# The independent AWS_MSK_IAM payload builder (tests/sasl), used here to check Veil's logins.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sasl"))
import msk_iam_reference  # noqa: E402

# ---------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------


@dataclass
class CA:
    cert_path: Path
    cert: object
    key: object


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str, org: str = "Veil Tests"):
    from cryptography.x509.oid import NameOID
    from cryptography import x509

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def make_ca(directory: Path, name: str) -> CA:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = _write(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))
    return CA(path, cert, key)


def make_cert(directory: Path, ca: CA, cn: str, dns: tuple = (), ips: tuple = (), client: bool = False,
              expired: bool = False, org: str = "Veil Tests") -> tuple[Path, Path]:
    """Issues a leaf certificate; returns (certificate PEM path, private key PEM path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)) if expired else \
        (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7))
    builder = (x509.CertificateBuilder().subject_name(_name(cn, org)).issuer_name(ca.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
                              critical=False))
    names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    stem = cn.replace(" ", "_")
    cert_path = _write(directory / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM))
    key_path = _write(directory / f"{stem}.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    return cert_path, key_path


# ---------------------------------------------------------------------------------------
# Tansu behind a front
# ---------------------------------------------------------------------------------------


def start_tansu(tmp_path: Path, advertised: str, name: str = "tansu") -> tuple[Proc, int]:
    """Starts Tansu on a free port, advertising `advertised` (HOST:PORT of the front)."""
    port = free_port()
    proc = Proc(name, [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                       "--advertised-listener-url", f"tcp://{advertised}"], tmp_path / f"{name}.log")
    wait_for_port(proc, port, 20)
    deadline = time.monotonic() + 20
    while True:
        try:
            if api_versions_ok(port):
                return proc, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.stop()
            raise TimeoutError(f"tansu on {port} does not answer ApiVersions\n{proc.tail()}")
        time.sleep(0.1)


def stunnel_binary() -> str:
    for name in ("stunnel4", "stunnel"):
        if shutil.which(name):
            return shutil.which(name)
    raise RuntimeError("stunnel4 is not installed (scripts/bootstrap installs it)")


def start_stunnel(tmp_path: Path, accept_port: int, connect_port: int, cert: Path, key: Path,
                  client_ca: Optional[Path] = None, name: str = "stunnel") -> Proc:
    """TLS terminator in front of a plaintext port; with `client_ca`, client certificates are required."""
    lines = ["foreground = yes", "pid =", "debug = info", f"output = {tmp_path / (name + '.out')}",
             f"[{name}]", f"accept = 127.0.0.1:{accept_port}", f"connect = 127.0.0.1:{connect_port}",
             f"cert = {cert}", f"key = {key}"]
    if client_ca:
        lines += [f"CAfile = {client_ca}", "verifyChain = yes", "requireCert = yes"]
    conf = tmp_path / f"{name}.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = Proc(name, [stunnel_binary(), str(conf)], tmp_path / f"{name}.log")
    wait_for_port(proc, accept_port, 10)
    return proc


def stunnel_log(tmp_path: Path, name: str = "stunnel") -> str:
    p = tmp_path / f"{name}.out"
    return p.read_text(errors="replace") if p.exists() else ""


# ---------------------------------------------------------------------------------------
# SASL front (stand-in for a broker's SASL layer; SCRAM by scramp)
# ---------------------------------------------------------------------------------------

SASL_HANDSHAKE, SASL_AUTHENTICATE, API_VERSIONS = 17, 36, 18


def _uvarint(b: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def _put_uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        if v < 0x80:
            out.append(v)
            return bytes(out)
        out.append((v & 0x7F) | 0x80)
        v >>= 7


@dataclass
class FrontStats:
    handshakes: int = 0
    attempts: int = 0          # SaslAuthenticate exchanges started
    successes: int = 0
    failures: int = 0
    mechanisms: list = field(default_factory=list)
    users: list = field(default_factory=list)
    unauthenticated_requests: int = 0
    errors: list = field(default_factory=list)


class SaslFront:
    """Kafka SASL in front of a plaintext broker. Users: {name: password}. With `iam_keys`
    ({access key id: secret key}) it also accepts AWS_MSK_IAM, checking each login's SigV4
    signature by recomputing it with the independent reference builder in tests/sasl."""

    def __init__(self, users: dict, upstream_port: int, port: Optional[int] = None, iam_keys: Optional[dict] = None):
        from scramp import ScramMechanism

        self.mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] + (["AWS_MSK_IAM"] if iam_keys else [])
        self.iam_keys = iam_keys or {}
        self.users = users
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.stats = FrontStats()
        self._auth = {}
        for m in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            mech = ScramMechanism(m)
            self._auth[m] = (mech, {u: mech.make_auth_info(p, iteration_count=4096) for u, p in users.items()})
        self.forwarded = bytearray()  # every byte piped to the broker after authentication
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "SaslFront":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("SASL front did not start")
        return self

    def stop(self):
        async def cancel_connections():
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        try:
            asyncio.run_coroutine_threadsafe(cancel_connections(), self._loop).result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def _run(self):
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        up_reader = up_writer = None
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            mechanism = None
            scram = None
            while True:
                frame = await self._read_frame(reader)
                if frame is None:
                    return
                api_key, version, corr = struct.unpack(">hhi", frame[:8])
                if api_key == API_VERSIONS:
                    up_writer.write(struct.pack(">i", len(frame)) + frame)
                    await up_writer.drain()
                    resp = await self._read_frame(up_reader)
                    writer.write(struct.pack(">i", len(resp)) + resp)
                    await writer.drain()
                    continue
                body, flexible = self._body(frame, api_key, version)
                if api_key == SASL_HANDSHAKE:
                    (n,) = struct.unpack(">h", body[:2])
                    mechanism = body[2:2 + n].decode()
                    self.stats.handshakes += 1
                    self.stats.mechanisms.append(mechanism)
                    ok = mechanism in self.mechanisms
                    out = struct.pack(">h", 0 if ok else 33) + struct.pack(">i", len(self.mechanisms))
                    for m in self.mechanisms:
                        out += struct.pack(">h", len(m)) + m.encode()
                    self._respond(writer, corr, out, flexible=False)
                    await writer.drain()
                    if not ok:
                        return
                    continue
                if api_key != SASL_AUTHENTICATE:
                    self.stats.unauthenticated_requests += 1
                    return  # as a SASL broker does: close on anything else before authentication
                if flexible:
                    n, i = _uvarint(body, 0)
                    auth = body[i:i + n - 1]
                else:
                    (n,) = struct.unpack(">i", body[:4])
                    auth = body[4:4 + n]
                error, reply, done = 0, b"", False
                try:
                    if mechanism == "AWS_MSK_IAM":
                        self.stats.attempts += 1
                        self._check_msk_iam(auth)
                        done = True
                    elif mechanism == "PLAIN":
                        self.stats.attempts += 1
                        _, user, password = auth.split(b"\0", 2)
                        self.stats.users.append(user.decode())
                        if self.users.get(user.decode()) != password.decode():
                            raise ValueError("bad password")
                        done = True
                    elif scram is None:
                        self.stats.attempts += 1
                        mech, infos = self._auth[mechanism]

                        def lookup(user, infos=infos):
                            self.stats.users.append(user)
                            return infos[user]

                        scram = mech.make_server(lookup)
                        scram.set_client_first(auth.decode())
                        reply = scram.get_server_first().encode()
                    else:
                        scram.set_client_final(auth.decode())
                        reply = scram.get_server_final().encode()
                        done = True
                except Exception as e:
                    self.stats.errors.append(f"{type(e).__name__}: {e}")
                    error = 58  # SASL_AUTHENTICATION_FAILED
                out = struct.pack(">h", error)
                message = b"Authentication failed: invalid credentials" if error else None
                if flexible:
                    out += _put_uvarint(len(message) + 1) + message if message else b"\x00"
                    out += _put_uvarint(len(reply) + 1) + reply
                else:
                    out += struct.pack(">h", len(message)) + message if message else struct.pack(">h", -1)
                    out += struct.pack(">i", len(reply)) + reply
                if version >= 1:
                    out += struct.pack(">q", 0)
                if flexible:
                    out += b"\x00"
                self._respond(writer, corr, out, flexible=flexible)
                await writer.drain()
                if error:
                    self.stats.failures += 1
                    return
                if done:
                    self.stats.successes += 1
                    await self._pipe(reader, writer, up_reader, up_writer)
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()

    def _check_msk_iam(self, auth: bytes):
        """Raises unless `auth` is an AWS_MSK_IAM payload signed with a known key, fresh, for
        kafka-cluster:Connect."""
        payload = json.loads(auth)
        key_id, scope = payload["x-amz-credential"].split("/", 1)
        self.stats.users.append(key_id)
        if key_id not in self.iam_keys:
            raise ValueError(f"unknown access key {key_id}")
        region = scope.split("/")[1]
        epoch = calendar.timegm(time.strptime(payload["x-amz-date"], "%Y%m%dT%H%M%SZ"))
        if abs(time.time() - epoch) > 300:
            raise ValueError("signature date too far from now")
        expected = msk_iam_reference.build(key_id, self.iam_keys[key_id], payload.get("x-amz-security-token"), region,
                                           payload["host"], epoch, payload["user-agent"])
        if json.loads(expected["payload"]) != payload:
            raise ValueError("signature does not match")

    @staticmethod
    def _body(frame: bytes, api_key: int, version: int) -> tuple[bytes, bool]:
        flexible = api_key == SASL_AUTHENTICATE and version >= 2
        (n,) = struct.unpack(">h", frame[8:10])
        i = 10 + max(n, 0)
        if flexible:
            tags, i = _uvarint(frame, i)
            for _ in range(tags):
                _, i = _uvarint(frame, i)
                size, i = _uvarint(frame, i)
                i += size
        return frame[i:], flexible

    @staticmethod
    def _respond(writer, corr: int, body: bytes, flexible: bool):
        header = struct.pack(">i", corr) + (b"\x00" if flexible else b"")
        payload = header + body
        writer.write(struct.pack(">i", len(payload)) + payload)

    @staticmethod
    async def _read_frame(reader) -> Optional[bytes]:
        try:
            head = await reader.readexactly(4)
        except asyncio.IncompleteReadError:
            return None
        (n,) = struct.unpack(">i", head)
        return await reader.readexactly(n)

    async def _pipe(self, reader, writer, up_reader, up_writer):
        async def copy(src, dst, record=None):
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    if record is not None:
                        record += data
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer, self.forwarded), copy(up_reader, writer))


# ---------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------


def produce_consume(bootstrap: str, topic: str, values: list[bytes], extra: Optional[dict] = None,
                    timeout: float = 30) -> list[bytes]:
    """Creates `topic`, produces `values` with confluent-kafka (librdkafka) and reads them back."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    base = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 15000} | (extra or {})
    admin = AdminClient(base)  # must outlive the futures it returns
    for f in admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=20).values():
        f.result(30)
    p = Producer(base | {"acks": "all", "message.timeout.ms": int(timeout * 1000)})
    errors = []
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda err, msg: errors.append(err) if err else None)
    if p.flush(timeout):
        raise TimeoutError("records not delivered")
    if errors:
        raise RuntimeError(f"delivery failed: {errors}")
    return consume(bootstrap, topic, len(values), extra, timeout)


def consume(bootstrap: str, topic: str, count: Optional[int], extra: Optional[dict] = None, timeout: float = 30,
            partitions: int = 1) -> list[bytes]:
    """Reads `count` records, or with `count=None` everything up to the end of each partition."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "socket.timeout.ms": 15000, "enable.partition.eof": True}
                 | (extra or {}))
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: list[bytes] = []
        at_end: set = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if count is not None and len(out) >= count:
                break
            if count is None and len(at_end) == partitions:
                break
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                    continue
                if m.error().fatal() or m.error().code() == KafkaError._AUTHENTICATION:
                    raise RuntimeError(str(m.error()))
                continue
            at_end.discard(m.partition())
            out.append(m.value())
        else:
            if count is None:
                raise TimeoutError(f"did not reach the end of {topic} within {timeout} s")
        return out
    finally:
        c.close()

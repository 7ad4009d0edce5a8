"""Upstream TLS: Veil in front of stunnel4 (terminating TLS with certificates made here)
in front of Tansu. Tansu advertises the stunnel address, so every broker connection Veil
opens, bootstrap and per-broker, goes through TLS.

- the right CA: a real client (librdkafka) produces and consumes through Veil;
- a wrong CA, a certificate for another host, an expired certificate: refused, and Veil's
  log names the broker and the reason;
- stunnel requiring client certificates: Veil's certificate is accepted; without one the
  connection is refused, and the log says a client certificate is required.
"""

from __future__ import annotations

import time
import uuid

import pytest

from conftest import Broker, free_port
from security_support import make_ca, make_cert, produce_consume, start_stunnel, start_tansu


@pytest.fixture
def tls_broker(tmp_path):
    """Tansu behind stunnel on localhost; yields a function that starts the stunnel with given options."""
    procs = []
    tls_port = free_port()
    tansu, tansu_port = start_tansu(tmp_path, f"localhost:{tls_port}")
    procs.append(tansu)
    ca = make_ca(tmp_path, "broker-ca")
    server_cert, server_key = make_cert(tmp_path, ca, "localhost", dns=("localhost",), ips=("127.0.0.1",))

    def start(cert=server_cert, key=server_key, client_ca=None) -> Broker:
        proc = start_stunnel(tmp_path, tls_port, tansu_port, cert, key, client_ca=client_ca)
        procs.append(proc)
        return Broker("localhost", tls_port, proc)

    start.ca = ca
    try:
        yield start
    finally:
        for p in reversed(procs):
            p.stop()


def _topic() -> str:
    return f"tls-{uuid.uuid4().hex[:8]}"


def _wait_for_log(veil, needle: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = veil.proc.log_path.read_text(errors="replace")
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"veil log lacks {needle!r}:\n{veil.proc.tail()}")


def _refused(veil) -> None:
    """A client through Veil gets nowhere: no metadata within a few seconds."""
    from confluent_kafka.admin import AdminClient

    with pytest.raises(Exception):
        AdminClient({"bootstrap.servers": veil.address, "socket.timeout.ms": 3000}).list_topics(timeout=4)


def test_right_ca_produces_and_consumes(tls_broker, veil_factory):
    broker = tls_broker()
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address], "tls": {"ca_file": str(tls_broker.ca.cert_path)}}})
    values = [f"tls record {i}".encode() for i in range(20)]
    assert produce_consume(veil.address, _topic(), values) == values
    log = veil.proc.log_path.read_text()
    assert "upstream TLS: CA" in log and "hostname verified" in log


def test_wrong_ca_is_refused_naming_broker_and_reason(tls_broker, veil_factory, tmp_path):
    broker = tls_broker()
    other = make_ca(tmp_path, "other-ca")
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address], "tls": {"ca_file": str(other.cert_path)}}})
    _refused(veil)
    log = _wait_for_log(veil, "TLS to broker localhost:")
    assert "unknown CA" in log, log


def test_certificate_for_another_host_is_refused(tls_broker, veil_factory, tmp_path):
    cert, key = make_cert(tmp_path, tls_broker.ca, "elsewhere.example", dns=("elsewhere.example",))
    broker = tls_broker(cert=cert, key=key)
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address], "tls": {"ca_file": str(tls_broker.ca.cert_path)}}})
    _refused(veil)
    log = _wait_for_log(veil, "TLS to broker localhost:")
    assert "wrong host" in log and "elsewhere.example" in log, log


def test_expired_certificate_is_refused(tls_broker, veil_factory, tmp_path):
    cert, key = make_cert(tmp_path, tls_broker.ca, "localhost", dns=("localhost",), expired=True)
    broker = tls_broker(cert=cert, key=key)
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address], "tls": {"ca_file": str(tls_broker.ca.cert_path)}}})
    _refused(veil)
    log = _wait_for_log(veil, "TLS to broker localhost:")
    assert "expired" in log, log


def test_mtls_client_certificate_accepted(tls_broker, veil_factory, tmp_path):
    clients_ca = make_ca(tmp_path, "clients-ca")
    broker = tls_broker(client_ca=clients_ca.cert_path)
    cert, key = make_cert(tmp_path, clients_ca, "veil-sidecar", client=True)
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address], "tls": {
        "ca_file": str(tls_broker.ca.cert_path), "cert_file": str(cert), "key_file": str(key)}}})
    values = [b"mtls one", b"mtls two"]
    assert produce_consume(veil.address, _topic(), values) == values


def test_mtls_without_client_certificate_refused(tls_broker, veil_factory, tmp_path):
    clients_ca = make_ca(tmp_path, "clients-ca")
    broker = tls_broker(client_ca=clients_ca.cert_path)
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address], "tls": {"ca_file": str(tls_broker.ca.cert_path)}}})
    _refused(veil)
    log = _wait_for_log(veil, "requires a client certificate")
    assert "localhost:" in log

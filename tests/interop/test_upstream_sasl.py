"""Upstream SASL: Veil authenticates every upstream connection with its own credentials.

The broker side is `SaslFront` (security_support.py), a stand-in for a broker's SASL layer in
front of Tansu, whose SCRAM logic is the reference implementation `scramp`, not Veil's. Tansu
advertises the front's address, so per-broker connections authenticate too.
"""

from __future__ import annotations

import time
import uuid

import pytest

from conftest import Broker, free_port
from security_support import SaslFront, produce_consume, start_tansu

PASSWORD = "correct horse, battery=staple"


@pytest.fixture
def sasl_broker(tmp_path):
    front_port = free_port()
    tansu, tansu_port = start_tansu(tmp_path, f"127.0.0.1:{front_port}")
    front = SaslFront({"veil": PASSWORD}, upstream_port=tansu_port, port=front_port).start()
    try:
        yield Broker("127.0.0.1", front_port, tansu), front
    finally:
        front.stop()
        tansu.stop()


IAM_KEY_ID = "AKIAVEILPROFILETEST1"
IAM_SECRET = "veil/profile+secret=key-for-msk-iam"
IAM_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE/session+token="


@pytest.fixture
def iam_broker(tmp_path):
    """A SASL front that accepts AWS_MSK_IAM logins signed with IAM_KEY_ID's secret."""
    front_port = free_port()
    tansu, tansu_port = start_tansu(tmp_path, f"127.0.0.1:{front_port}")
    front = SaslFront({}, upstream_port=tansu_port, port=front_port, iam_keys={IAM_KEY_ID: IAM_SECRET}).start()
    try:
        yield Broker("127.0.0.1", front_port, tansu), front
    finally:
        front.stop()
        tansu.stop()


def _aws_profile_only(monkeypatch, tmp_path, secret: str):
    """AWS credentials only in a shared credentials file: no AWS variables, no ECS endpoint."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {IAM_KEY_ID}\naws_secret_access_key = {secret}\n"
                           f"aws_session_token = {IAM_TOKEN}\n")
    credentials.chmod(0o600)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))


def test_msk_iam_signs_with_the_aws_credential_chain(iam_broker, veil_factory, monkeypatch, tmp_path):
    """AWS_MSK_IAM takes its credentials from the same chain as the AWS KMS backend (here a
    shared profile; the chain also serves the ECS task role), not only from AWS variables. The
    front recomputes each login's signature with the independent builder in tests/sasl."""
    broker, front = iam_broker
    _aws_profile_only(monkeypatch, tmp_path, IAM_SECRET)
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address],
                                              "sasl": {"mechanism": "AWS_MSK_IAM", "region": "eu-west-1"}}})
    values = [f"iam record {i}".encode() for i in range(10)]
    assert produce_consume(veil.address, f"iam-{uuid.uuid4().hex[:8]}", values) == values
    assert front.stats.errors == []
    assert front.stats.successes >= 2 and front.stats.failures == 0 and front.stats.unauthenticated_requests == 0
    assert set(front.stats.mechanisms) == {"AWS_MSK_IAM"} and set(front.stats.users) == {IAM_KEY_ID}
    log = veil.proc.log_path.read_text()
    assert IAM_SECRET not in log and IAM_TOKEN not in log


def test_msk_iam_with_a_wrong_secret_is_refused(iam_broker, veil_factory, monkeypatch, tmp_path):
    from confluent_kafka.admin import AdminClient

    broker, front = iam_broker
    _aws_profile_only(monkeypatch, tmp_path, "not-the-secret")
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address],
                                              "sasl": {"mechanism": "AWS_MSK_IAM", "region": "eu-west-1"}}})
    admin = AdminClient({"bootstrap.servers": veil.address, "socket.timeout.ms": 2000})
    with pytest.raises(Exception):
        admin.list_topics(timeout=5)
    del admin
    assert front.stats.failures >= 1 and front.stats.successes == 0
    assert all(e == "ValueError: signature does not match" for e in front.stats.errors), front.stats.errors


def _sasl(mechanism: str, env: str = "VEIL_TEST_SASL_PASSWORD") -> dict:
    return {"mechanism": mechanism, "username": "veil", "password_env": env}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_good_password_produces_and_consumes(sasl_broker, veil_factory, monkeypatch, mechanism):
    broker, front = sasl_broker
    monkeypatch.setenv("VEIL_TEST_SASL_PASSWORD", PASSWORD)
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address], "sasl": _sasl(mechanism)}})
    values = [f"{mechanism} record {i}".encode() for i in range(10)]
    assert produce_consume(veil.address, f"sasl-{uuid.uuid4().hex[:8]}", values) == values
    assert front.stats.errors == []
    assert front.stats.successes >= 2  # the bootstrap connection and at least one broker connection
    assert front.stats.failures == 0 and front.stats.unauthenticated_requests == 0
    assert set(front.stats.mechanisms) == {mechanism} and set(front.stats.users) == {"veil"}
    log = veil.proc.log_path.read_text()
    assert f"upstream SASL: {mechanism} as user veil, password from environment variable VEIL_TEST_SASL_PASSWORD" in log
    assert PASSWORD not in log


def test_password_from_file(sasl_broker, veil_factory, tmp_path):
    broker, front = sasl_broker
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address], "sasl": {
        "mechanism": "SCRAM-SHA-512", "username": "veil", "password_file": str(secret)}}})
    assert produce_consume(veil.address, f"sasl-{uuid.uuid4().hex[:8]}", [b"x"]) == [b"x"]


def test_bad_password_is_refused_without_a_retry_storm(sasl_broker, veil_factory, monkeypatch):
    from confluent_kafka.admin import AdminClient

    broker, front = sasl_broker
    monkeypatch.setenv("VEIL_TEST_SASL_PASSWORD", "not the password")
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address], "sasl": _sasl("SCRAM-SHA-256")}})
    # librdkafka reconnects with backoff (reconnect.backoff.ms 100 ms, here kept low to push
    # hard): over 8 s it opens many connections to Veil.
    admin = AdminClient({"bootstrap.servers": veil.address, "socket.timeout.ms": 2000,
                         "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 200})
    start = time.monotonic()
    with pytest.raises(Exception):
        admin.list_topics(timeout=8)
    elapsed = time.monotonic() - start
    del admin
    # Veil holds off for 2 s, then 4 s after consecutive failures: about 3 attempts in 8 s.
    assert 1 <= front.stats.attempts <= 4, (front.stats, elapsed)
    assert front.stats.successes == 0 and front.stats.unauthenticated_requests == 0
    log = veil.proc.log_path.read_text()
    assert "SASL SCRAM-SHA-256 authentication to broker 127.0.0.1:" in log and "refused the credentials" in log, log
    assert "not contacting the broker" in log
    assert "not the password" not in log


def test_client_sasl_to_a_sidecar_is_answered_by_veil(sasl_broker, veil_factory, monkeypatch):
    """Clients don't authenticate to a sidecar; one configured for SASL gets a clear refusal."""
    from confluent_kafka.admin import AdminClient

    broker, front = sasl_broker
    monkeypatch.setenv("VEIL_TEST_SASL_PASSWORD", PASSWORD)
    veil = veil_factory(broker, {"upstream": {"bootstrap": [broker.address], "sasl": _sasl("PLAIN")}})
    admin = AdminClient({"bootstrap.servers": veil.address, "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanism": "PLAIN", "sasl.username": "app", "sasl.password": "app-secret",
                         "socket.timeout.ms": 2000})
    with pytest.raises(Exception):
        admin.list_topics(timeout=4)
    log = veil.proc.log_path.read_text()
    assert "clients connect to the sidecar without SASL" in log
    assert "app" not in front.stats.users and "app-secret" not in log

"""Gateway mode: one Veil for several applications, each identified from its own connection.

Three identities share one Veil in front of Tansu: `owner` may encrypt under both
departments' keys, `finance` and `sales` may each decrypt their own. Applications
authenticate to Veil with SASL (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN; librdkafka clients)
against a users file written by `veil users add`, or with a client certificate whose subject
maps to an identity. The topic policy is the three-department one from config/*.yaml.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from conftest import Broker, _require_veil_binary, free_port
from security_support import SaslFront, consume, make_ca, make_cert, start_tansu

USERS = {"owner-app": ("owner", "owner pass"), "finance-app": ("finance", "finance pass"),
         "sales-app": ("sales", "sales pass")}


def _records(topic_tag: str) -> list[bytes]:
    return [json.dumps({"department": d, "data": f"{d} secret {i} {topic_tag}"}).encode()
            for i in range(3) for d in ("finance", "sales")]


@pytest.fixture
def gateway(tmp_path, tansu, veil_factory):
    """Starts a gateway Veil; `gateway(listener_tls=False)` -> (veil, certs)."""
    veil_bin = str(_require_veil_binary())
    for dept in ("finance", "sales"):
        subprocess.run([veil_bin, "keys", "create", "--keyring", str(tmp_path / f"{dept}.keyring"), "--key", "department-key"],
                       check=True, capture_output=True)
    users = tmp_path / "users.yaml"
    for user, (identity, password) in USERS.items():
        subprocess.run([veil_bin, "users", "add", "--file", str(users), "--user", user, "--identity", identity],
                       input=password + "\n", text=True, check=True, capture_output=True)
    assert not any(p for _, p in USERS.values() if p in users.read_text())

    def start(listener_tls: bool = False, broker=None, upstream: dict = None):
        certs = {}
        identities = {
            "owner": {"grants": {"encrypt": ["finance/department-key", "sales/department-key"]}},
            "finance": {"grants": {"decrypt": ["finance/department-key"]}},
            "sales": {"grants": {"decrypt": ["sales/department-key"]}},
        }
        config = {
            "identity": "gateway",
            "kms": {d: {"type": "local", "keyring": str(tmp_path / f"{d}.keyring")} for d in ("finance", "sales")},
            "gateway": {"users_file": str(users), "identities": identities},
            "topics": [{
                "match": {"prefix": "department-events"},
                "encrypt": {"key_from": {"json": "department"},
                            "keys": {"finance": "finance/department-key", "sales": "sales/department-key"},
                            "on_unmatched": "reject"},
                "on_denied": "drop",
                "require_encrypted": True,
            }],
        }
        if upstream:
            config["upstream"] = upstream
        if listener_tls:
            server_ca = make_ca(tmp_path, "veil-listener-ca")
            clients_ca = make_ca(tmp_path, "apps-ca")
            cert, key = make_cert(tmp_path, server_ca, "veil-gateway", dns=("localhost",), ips=("127.0.0.1",))
            config["listener"] = {"tls": {"cert_file": str(cert), "key_file": str(key), "client_ca_file": str(clients_ca.cert_path)}}
            identities["finance"]["tls_subject"] = "CN=finance-app,O=Apps"
            identities["sales"]["tls_subject"] = "CN=sales-app,O=Apps"
            certs["server_ca"] = server_ca.cert_path
            for app in ("finance-app", "sales-app"):
                certs[app] = make_cert(tmp_path, clients_ca, app, client=True, org="Apps")
            certs["stranger"] = make_cert(tmp_path, clients_ca, "stranger", client=True, org="Apps")
        return veil_factory(broker or tansu, config), certs

    return start


def _sasl(user: str, mechanism: str, password: str = None, tls_ca=None) -> dict:
    conf = {"security.protocol": "SASL_SSL" if tls_ca else "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
            "sasl.username": user, "sasl.password": password or USERS[user][1]}
    if tls_ca:
        conf["ssl.ca.location"] = str(tls_ca)
    return conf


def _produce(bootstrap: str, topic: str, values: list[bytes], extra: dict):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap} | extra)  # must outlive its futures
    for f in admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=20).values():
        f.result(30)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 30000} | extra)
    errors = []
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(30) == 0 and not errors, errors


def _by_department(values: list[bytes]) -> dict:
    out = {"finance": [], "sales": [], "other": []}
    for v in values:
        try:
            out[json.loads(v)["department"]].append(v)
        except (ValueError, KeyError):
            out["other"].append(v)
    return out


def test_two_identities_see_their_own_plaintext(gateway, tansu):
    veil, _ = gateway()
    topic = f"department-events-{uuid.uuid4().hex[:8]}"
    records = _records(topic)
    _produce(veil.address, topic, records, _sasl("owner-app", "SCRAM-SHA-512"))

    finance = consume(veil.address, topic, None, _sasl("finance-app", "SCRAM-SHA-256"))
    sales = consume(veil.address, topic, None, _sasl("sales-app", "PLAIN"))
    expected = _by_department(records)
    assert finance == expected["finance"]
    assert sales == expected["sales"]

    direct = consume(tansu.address, topic, len(records))
    assert len(direct) == len(records)
    assert not any(b"secret" in v for v in direct), "the broker holds plaintext"

    log = veil.proc.log_path.read_text()
    assert "gateway mode: identity from each client connection: SASL" in log
    for user, identity in (("owner-app", "owner"), ("finance-app", "finance"), ("sales-app", "sales")):
        assert f"as user '{user}' as identity {identity}" in log
    assert not any(p in log for _, p in USERS.values())


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_wrong_password_is_refused_by_veil(gateway, mechanism):
    from confluent_kafka.admin import AdminClient

    from confluent_kafka import KafkaError

    veil, _ = gateway()
    errors = []
    admin = AdminClient({"bootstrap.servers": veil.address, "socket.timeout.ms": 3000, "error_cb": errors.append}
                        | _sasl("finance-app", mechanism, password="guess"))
    with pytest.raises(Exception):
        admin.list_topics(timeout=5)
    admin.poll(1)  # serves error_cb
    assert any(e.code() == KafkaError._AUTHENTICATION and "invalid credentials" in e.str() for e in errors), errors
    log = veil.proc.log_path.read_text()
    assert "client authentication refused" in log and "finance-app" in log
    assert "guess" not in log
    assert "as identity finance" not in log


def test_unauthenticated_requests_are_refused(gateway):
    from confluent_kafka.admin import AdminClient

    veil, _ = gateway()
    with pytest.raises(Exception):
        AdminClient({"bootstrap.servers": veil.address, "socket.timeout.ms": 3000}).list_topics(timeout=4)
    assert "request before authenticating to the gateway" in veil.proc.log_path.read_text()


def test_client_certificate_subject_maps_to_grants(gateway, tansu):
    veil, certs = gateway(listener_tls=True)
    topic = f"department-events-{uuid.uuid4().hex[:8]}"
    records = _records(topic)
    _produce(veil.address, topic, records, _sasl("owner-app", "SCRAM-SHA-512", tls_ca=certs["server_ca"]))

    def tls(app: str) -> dict:
        cert, key = certs[app]
        return {"security.protocol": "SSL", "ssl.ca.location": str(certs["server_ca"]),
                "ssl.certificate.location": str(cert), "ssl.key.location": str(key)}

    expected = _by_department(records)
    assert consume(veil.address, topic, None, tls("finance-app")) == expected["finance"]
    assert consume(veil.address, topic, None, tls("sales-app")) == expected["sales"]
    log = veil.proc.log_path.read_text()
    assert "client certificate CN=finance-app,O=Apps as identity finance" in log or \
        "client certificate O=Apps,CN=finance-app as identity finance" in log, log
    # A valid certificate whose subject maps to no identity gets no access without SASL.
    from confluent_kafka.admin import AdminClient

    with pytest.raises(Exception):
        AdminClient({"bootstrap.servers": veil.address, "socket.timeout.ms": 3000} | tls("stranger")).list_topics(timeout=4)


def test_client_credentials_never_reach_the_broker(gateway, tmp_path, monkeypatch):
    """Upstream is a SASL broker stand-in (scramp) that records everything it is sent: it sees
    only Veil's own credentials, never an application's user name or password."""
    from confluent_kafka.admin import AdminClient

    front_port = free_port()
    tansu, tansu_port = start_tansu(tmp_path, f"127.0.0.1:{front_port}", name="tansu-behind-front")
    front = SaslFront({"veil-gateway": "gateway pass"}, upstream_port=tansu_port, port=front_port).start()
    try:
        monkeypatch.setenv("VEIL_GATEWAY_PASSWORD", "gateway pass")
        broker = Broker("127.0.0.1", front_port, tansu)
        veil, _ = gateway(broker=broker, upstream={"bootstrap": [broker.address], "sasl": {
            "mechanism": "SCRAM-SHA-512", "username": "veil-gateway", "password_env": "VEIL_GATEWAY_PASSWORD"}})
        topic = f"department-events-{uuid.uuid4().hex[:8]}"
        records = _records(topic)
        _produce(veil.address, topic, records, _sasl("owner-app", "PLAIN"))
        assert consume(veil.address, topic, None, _sasl("finance-app", "SCRAM-SHA-256")) == _by_department(records)["finance"]
        with pytest.raises(Exception):
            AdminClient({"bootstrap.servers": veil.address, "socket.timeout.ms": 3000}
                        | _sasl("sales-app", "PLAIN", password="wrong guess")).list_topics(timeout=4)
    finally:
        front.stop()
        tansu.stop()
    assert set(front.stats.users) == {"veil-gateway"} and front.stats.failures == 0
    seen = bytes(front.forwarded)
    assert seen, "nothing was forwarded"
    for secret in [p.encode() for _, p in USERS.values()] + [b"wrong guess", b"finance-app", b"owner-app", b"sales-app"]:
        assert secret not in seen, secret

"""Governance, end to end (issue 11, "What must show it").

A catalog describing the seed's three departments (owner encrypts per record under the
finance or sales key; finance-consumer and sales-consumer each read their own department)
plus an `auditor` whose finance decrypt grant expires mid-run, goes through
`veil policy check`, `veil policy render --keyring-dir` and `veil policy sign`; real veil
processes run the rendered, signed configurations (`--governance-key`, `--audit-log`) in front
of a Tansu broker, and confluent-kafka produces and consumes through them.

Later in the module the sales key is rotated (old records stay readable, new ones use
version 2) and the finance key is destroyed (crypto-shredding). Also here: a tampered or
unsigned configuration is refused; the audit trail has no
plaintext or key material and its counts match the sidecar's; `veil policy iam` output is
checked by parliament (AWS IAM policy linter from PyPI); the `--html` matrix is rendered by
headless Chromium and screenshotted.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from admin_support import metric, metric_sum, scrape
from clients import ConfluentClient, Rec
from conftest import Proc, free_port, free_port_block, veil_binary, wait_for_port
from enc_support import END_KEY, EncEnv, consume_to_end, keyring_material, parse_envelope, produce, raw_fetch

MARKER = "plaintext-marker-7f3a"  # in every record value; must never appear in an audit trail
EXPIRY_DELAY_S = 40  # the auditor's grant lapses this long after the catalog is written


def veil(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    binary = veil_binary()
    assert binary is not None, "veil binary not found (set VEIL_BIN or build .build/release/veil)"
    r = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"veil {' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def utc(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Governed:
    """Broker, domain keyrings, catalog, rendered+signed configs and the running sidecars."""

    APPS = ("owner", "finance-consumer", "sales-consumer", "auditor")

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.env = EncEnv(workdir)
        self.ports: dict[str, tuple[int, int]] = {}
        self.procs: dict[str, Proc] = {}
        self.admin_ports: dict[str, int] = {}

    def setup(self):
        self.env.start_broker()
        for dept in ("finance", "sales"):
            self.env.create_keyring(dept, dept, "department-key")
        taken = {self.env.broker_port}
        for app in self.APPS:
            port = free_port()
            first = free_port_block(8, avoid=taken | {port})
            taken |= {port} | set(range(first, first + 8))
            self.ports[app] = (port, first)
        self.expiry = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=EXPIRY_DELAY_S)
        self.catalog = self.dir / "catalog.yaml"
        self.catalog.write_text(self.catalog_text())
        veil("policy", "keygen", "--private-key", str(self.dir / "gov.key"), "--public-key", str(self.dir / "gov.pub"))
        (self.dir / "rendered").mkdir()
        (self.dir / "keyrings").mkdir()
        for app in self.APPS:
            cfg = self.config(app)
            veil("policy", "render", str(self.catalog), "--app", app, "--out", str(cfg),
                 "--keyring-dir", str(self.dir / "keyrings"))
            veil("policy", "sign", str(cfg), "--key", str(self.dir / "gov.key"))

    def catalog_text(self) -> str:
        def app(name):
            port, first = self.ports[name]
            return (f"  {name}:\n    sidecar:\n      listen: 127.0.0.1:{port}\n"
                    f"      upstream: {{ bootstrap: [{self.env.broker}] }}\n"
                    f"      broker_ports: {{ first: {first}, count: 8 }}\n")
        return (
            "domains:\n"
            f"  finance: {{ kms: {{ type: local, keyring: {self.env.keyrings['finance']} }}, keys: [department-key] }}\n"
            f"  sales: {{ kms: {{ type: local, keyring: {self.env.keyrings['sales']} }}, keys: [department-key] }}\n"
            "data_classes:\n"
            "  finance-records: { domain: finance, key: department-key }\n"
            "  sales-records: { domain: sales, key: department-key }\n"
            "applications:\n" + "".join(app(a) for a in self.APPS) +
            "grants:\n"
            "  - { application: owner, key: finance/department-key, purpose: encrypt, approved_by: finance owner }\n"
            "  - { application: owner, key: sales/department-key, purpose: encrypt, approved_by: sales owner }\n"
            "  - { application: finance-consumer, key: finance/department-key, purpose: decrypt, approved_by: finance owner }\n"
            "  - { application: sales-consumer, key: sales/department-key, purpose: decrypt, approved_by: sales owner }\n"
            f"  - {{ application: auditor, key: finance/department-key, purpose: decrypt, expires: \"{utc(self.expiry)}\", approved_by: audit committee }}\n"
            "topics:\n"
            "  - match: { prefix: gov- }\n"
            "    encrypt:\n"
            "      key_from: { json: department }\n"
            "      classes: { finance: finance-records, sales: sales-records }\n"
            "      on_unmatched: reject\n"
            "    on_denied: drop\n"
            "    require_encrypted: true\n")

    def config(self, app: str) -> Path:
        return self.dir / "rendered" / f"{app}.yaml"

    def audit(self, app: str) -> Path:
        return self.dir / f"audit-{app}.jsonl"

    def start(self, app: str) -> Proc:
        binary = veil_binary()
        self.admin_ports[app] = free_port()
        proc = Proc(f"veil-{app}", [str(binary), "run", "--config", str(self.config(app)),
                                    "--governance-key", str(self.dir / "gov.pub"), "--audit-log", str(self.audit(app)),
                                    "--admin", f"127.0.0.1:{self.admin_ports[app]}"],
                    self.dir / f"veil-{app}.log")
        self.env.procs.append(proc)
        self.procs[app] = proc
        wait_for_port(proc, self.ports[app][0], 30)
        return proc

    def bootstrap(self, app: str) -> str:
        return f"127.0.0.1:{self.ports[app][0]}"

    def stop(self):
        self.env.stop()


@pytest.fixture(scope="module")
def gov(tmp_path_factory):
    g = Governed(tmp_path_factory.mktemp("governance"))
    try:
        g.setup()
        for app in Governed.APPS:
            g.start(app)
        yield g
    finally:
        g.stop()


def records(topic_tag: str, n: int) -> list[Rec]:
    out = []
    for i in range(n):
        dept = "finance" if i % 2 == 0 else "sales"
        value = json.dumps({"department": dept, "n": i, "note": f"{MARKER}-{topic_tag}-{i}"}).encode()
        out.append(Rec(f"k{i}".encode(), value, partition=0))
    return out + [Rec(END_KEY, None, partition=0)]


def produce_through_owner(gov: Governed, topic: str, recs: list[Rec]):
    assert ConfluentClient(gov.env.broker).create_topic(topic, 1) == 0
    outcomes = produce("confluent", gov.bootstrap("owner"), topic, recs)
    assert all(o.ok for o in outcomes), outcomes


def departments(recs: list[Rec]) -> list[str]:
    return [json.loads(r.value)["department"] for r in recs if r.value is not None]


def test_check_accepts_the_catalog_and_render_keeps_keys_apart(gov):
    r = veil("policy", "check", str(gov.catalog))
    assert "is valid" in r.stdout
    assert "expiring-grant" in r.stderr  # the auditor's grant lapses within 7 days
    # Each application's keyrings hold exactly its grants.
    held = {p.name: json.loads(p.read_text())["keys"] for p in (gov.dir / "keyrings").iterdir()}
    assert sorted(held) == ["auditor.finance.keyring", "finance-consumer.finance.keyring",
                            "owner.finance.keyring", "owner.sales.keyring", "sales-consumer.sales.keyring"]
    assert all([k["id"] for k in keys] == ["department-key"] for keys in held.values())
    for name, keys in held.items():
        dept = name.split(".")[1]
        assert base64.b64decode(keys[0]["material"]) == keyring_material(gov.env.keyrings[dept], "department-key")


def test_each_consumer_sees_exactly_what_the_catalog_grants_and_expiry_stops_decryption(gov):
    produce_through_owner(gov, "gov-before", records("before", 10))
    finance = consume_to_end("confluent", gov.bootstrap("finance-consumer"), "gov-before", [0])
    sales = consume_to_end("confluent", gov.bootstrap("sales-consumer"), "gov-before", [0])
    auditor = consume_to_end("confluent", gov.bootstrap("auditor"), "gov-before", [0])
    assert departments(finance) == ["finance"] * 5
    assert departments(sales) == ["sales"] * 5
    assert datetime.now(timezone.utc) < gov.expiry, "setup took longer than the grant's lifetime"
    assert departments(auditor) == ["finance"] * 5
    assert all(MARKER in r.value.decode() for r in finance + sales + auditor if r.value is not None)

    # The grant lapses while the sidecar runs; nothing restarts it.
    pid = gov.procs["auditor"].pid
    time.sleep(max(0.0, (gov.expiry - datetime.now(timezone.utc)).total_seconds()) + 1.5)
    produce_through_owner(gov, "gov-after", records("after", 10))
    for topic in ("gov-before", "gov-after"):
        assert departments(consume_to_end("confluent", gov.bootstrap("auditor"), topic, [0])) == []
        assert departments(consume_to_end("confluent", gov.bootstrap("finance-consumer"), topic, [0])) == ["finance"] * 5
    assert gov.procs["auditor"].alive() and gov.procs["auditor"].pid == pid

    lines = [json.loads(l) for l in gov.audit("auditor").read_text().splitlines()]
    expired = [l for l in lines if l["event"] == "denied" and "expired" in l["reason"]]
    assert expired, lines
    assert {l["topic"] for l in expired} == {"gov-before", "gov-after"}
    assert all(l["reason"] == f"grant for finance/department-key expired at {utc(gov.expiry)}" for l in expired)
    assert all(l["time"] >= utc(gov.expiry) for l in expired)
    firsts = [l for l in lines if l["event"] == "first_decrypt"]
    assert [(l["topic"], l["key"]) for l in firsts] == [("gov-before", "finance/department-key")]


def test_audit_trail_records_first_decrypts_and_denials_without_secrets(gov):
    produce_through_owner(gov, "gov-audit", records("audit", 6))
    got = consume_to_end("confluent", gov.bootstrap("finance-consumer"), "gov-audit", [0])
    assert departments(got) == ["finance"] * 3
    consume_to_end("confluent", gov.bootstrap("finance-consumer"), "gov-audit", [0])  # again: no new first decrypt
    text = gov.audit("finance-consumer").read_text()
    lines = [json.loads(l) for l in text.splitlines()]
    for l in lines:
        assert set(l) >= {"time", "event", "identity", "topic", "partition", "first_offset", "last_offset", "records", "key"}
        assert l["identity"] == "finance-consumer"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", l["time"])
    firsts = [(l["topic"], l["key"]) for l in lines if l["event"] == "first_decrypt"]
    assert firsts.count(("gov-audit", "finance/department-key")) == 1
    denied = [l for l in lines if l["event"] == "denied" and l["topic"] == "gov-audit"]
    # Sales records sit at offsets 1, 3, 5; each is its own run between finance records.
    assert sorted((l["first_offset"], l["last_offset"]) for l in denied) == [(1, 1), (1, 1), (3, 3), (3, 3), (5, 5), (5, 5)]
    assert all(l["reason"] == "no grant for sales/department-key" for l in denied)

    # Never plaintext, never key material (raw, base64 or hex), never ciphertext.
    assert MARKER not in text
    for dept in ("finance", "sales"):
        kek = keyring_material(gov.env.keyrings[dept], "department-key")
        for form in (base64.b64encode(kek).decode(), kek.hex(), base64.urlsafe_b64encode(kek).decode().rstrip("=")):
            assert form not in text
        assert kek.decode("latin-1") not in text

    summary = veil("audit", str(gov.audit("finance-consumer"))).stdout
    assert "finance-consumer read gov-audit under finance/department-key" in summary
    assert re.search(r"finance-consumer gov-audit: 6 records, partitions 0, .*: no grant for sales/department-key", summary), summary


def test_audit_counts_match_the_sidecar_metrics(gov):
    # Runs last in the module: stops the sales consumer to read its shutdown counts.
    samples = scrape(gov.admin_ports["sales-consumer"])
    lines = [json.loads(l) for l in gov.audit("sales-consumer").read_text().splitlines()]
    proc = gov.procs["sales-consumer"]
    gov.env.stop_sidecar(type("S", (), {"proc": proc})())
    log = proc.log_path.read_text()
    counts = dict(re.findall(r"(\w+)=(\d+)", log.split("records: ")[-1].split(";")[0]))
    denied_in_trail = sum(l["records"] for l in lines if l["event"] == "denied")
    assert denied_in_trail > 0
    assert int(counts["audit_denied_records"]) == denied_in_trail == int(counts["denied"])
    assert int(counts["audit_first_decrypts"]) == sum(1 for l in lines if l["event"] == "first_decrypt")
    # The metrics carry the same counts as the trail and the shutdown line.
    assert metric(samples, "veil_audit_denied_records_total") == denied_in_trail
    assert metric(samples, "veil_audit_denial_events_total") == sum(1 for l in lines if l["event"] == "denied")
    assert metric(samples, "veil_audit_first_decrypts_total") == int(counts["audit_first_decrypts"])
    assert metric_sum(samples, "veil_records_denied_total") == int(counts["denied"])


def test_rotation_new_records_use_the_new_version_and_old_ones_stay_readable(gov):
    # Runs after the counts test stopped the sales consumer; it restarts it with the rotated key.
    produce_through_owner(gov, "gov-rot-old", records("rot-old", 6))
    out = veil("keys", "rotate", "--keyring", str(gov.env.keyrings["sales"]), "--key", "department-key").stdout
    assert "new data keys are wrapped under version 2" in out
    # Governance renders and signs again (the applications' keyrings get version 2 too); the
    # sidecars load keyrings at start-up, so the owner restarts.
    for app in ("owner", "sales-consumer"):
        veil("policy", "render", str(gov.catalog), "--app", app, "--out", str(gov.config(app)),
             "--keyring-dir", str(gov.dir / "keyrings"))
        veil("policy", "sign", str(gov.config(app)), "--key", str(gov.dir / "gov.key"))
    held = json.loads((gov.dir / "keyrings" / "sales-consumer.sales.keyring").read_text())["keys"]
    assert sorted(k.get("version", 1) for k in held) == [1, 2]
    gov.env.stop_sidecar(type("S", (), {"proc": gov.procs["owner"]})())
    gov.start("owner")
    gov.start("sales-consumer")
    produce_through_owner(gov, "gov-rot-new", records("rot-new", 6))

    def wrapped_prefixes(topic):
        log = raw_fetch(gov.env.broker_port, topic, 0)
        envs = [parse_envelope(r.value) for r in log.records if r.value is not None]
        return {(e.kms, e.wrapped[:5] if e.wrapped[0] == 2 else e.wrapped[:1]) for e in envs}

    # Stored envelopes: before the rotation everything under version 1 (format 1); after it
    # sales data keys are wrapped under version 2, finance (not rotated) still version 1.
    assert wrapped_prefixes("gov-rot-old") == {("finance", b"\x01"), ("sales", b"\x01")}
    assert wrapped_prefixes("gov-rot-new") == {("finance", b"\x01"), ("sales", b"\x02\x00\x00\x00\x02")}
    for topic in ("gov-rot-old", "gov-rot-new"):
        got = consume_to_end("confluent", gov.bootstrap("sales-consumer"), topic, [0])
        assert departments(got) == ["sales"] * 3
        assert all(MARKER in r.value.decode() for r in got if r.value is not None)
        assert departments(consume_to_end("confluent", gov.bootstrap("finance-consumer"), topic, [0])) == ["finance"] * 3


def test_destroying_a_key_shreds_its_records_for_every_identity(gov):
    produce_through_owner(gov, "gov-shred", records("shred", 10))
    assert departments(consume_to_end("confluent", gov.bootstrap("finance-consumer"), "gov-shred", [0])) == ["finance"] * 5
    kek = keyring_material(gov.env.keyrings["finance"], "department-key")
    holders = [gov.env.keyrings["finance"]] + sorted((gov.dir / "keyrings").glob("*.finance.keyring"))
    out = veil("keys", "destroy", *[a for p in holders for a in ("--keyring", str(p))], "--key", "department-key",
               "--confirm", "department-key").stdout
    assert f"destroyed in {len(holders)} of {len(holders)} keyrings" in out
    for path in gov.dir.rglob("*.keyring"):
        assert base64.b64encode(kek).decode() not in path.read_text(), path
    # A reload (SIGHUP) reaches the running finance consumer without a restart: it loads its
    # keyring again, with fresh data-key caches, so keys it had unwrapped are gone too.
    proc = gov.procs["finance-consumer"]
    os.kill(proc.pid, signal.SIGHUP)
    until = time.monotonic() + 15
    while "reloaded" not in proc.log_path.read_text() and time.monotonic() < until:
        time.sleep(0.1)
    assert "reloaded" in proc.log_path.read_text(), f"no reload after SIGHUP:\n{proc.tail()}"
    assert proc.alive()
    for topic in ("gov-shred", "gov-before"):
        assert departments(consume_to_end("confluent", gov.bootstrap("finance-consumer"), topic, [0])) == []
    # Another department's key is untouched.
    assert departments(consume_to_end("confluent", gov.bootstrap("sales-consumer"), "gov-shred", [0])) == ["sales"] * 5
    lines = [json.loads(l) for l in gov.audit("finance-consumer").read_text().splitlines()]
    shredded = [l for l in lines if l["event"] == "denied" and l["topic"] == "gov-shred" and l["key"] == "finance/department-key"]
    assert sorted(l["first_offset"] for l in shredded) == [0, 2, 4, 6, 8]
    assert all(l["reason"].startswith("KMS refused the data key:") and "holds no grant for key 'department-key'" in l["reason"]
               for l in shredded), shredded


@pytest.mark.parametrize("damage", ["altered", "unsigned", "foreign"])
def test_a_sidecar_refuses_a_tampered_or_unsigned_config(gov, damage, tmp_path):
    cfg = tmp_path / "finance.yaml"
    shutil.copy(gov.config("finance-consumer"), cfg)
    shutil.copy(str(gov.config("finance-consumer")) + ".sig", str(cfg) + ".sig")
    # A fresh listen port, so a wrongly accepted config would start rather than collide.
    port = free_port()
    text = cfg.read_text()
    text = re.sub(r"listen: \"?127\.0\.0\.1:\d+\"?", f"listen: 127.0.0.1:{port}", text)
    if damage == "altered":
        # The attack the signature exists for: grant the sales key too.
        text = text.replace("decrypt: [finance/department-key]", "decrypt: [finance/department-key, finance/other]")
        cfg.write_text(text)
        want = "the file was changed after it was signed"
    elif damage == "unsigned":
        cfg.write_text(text)
        veil("policy", "sign", str(cfg), "--key", str(gov.dir / "gov.key"))
        os.unlink(str(cfg) + ".sig")
        want = "is not signed"
    else:
        cfg.write_text(text)
        veil("policy", "keygen", "--private-key", str(tmp_path / "rogue.key"), "--public-key", str(tmp_path / "rogue.pub"))
        veil("policy", "sign", str(cfg), "--key", str(tmp_path / "rogue.key"))
        want = "not by the trusted governance key"
    r = veil("policy", "verify", str(cfg), "--key", str(gov.dir / "gov.pub"), check=False)
    assert r.returncode == 2 and want in r.stderr, r
    binary = veil_binary()
    run = subprocess.run([str(binary), "run", "--config", str(cfg), "--governance-key", str(gov.dir / "gov.pub")],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2, run
    assert "refused, a configuration signed by the governance key is required" in run.stdout + run.stderr
    assert want in run.stdout + run.stderr


def test_signatures_verify_independently(gov):
    """The .sig file is plain Ed25519 over the file's bytes: the `cryptography` package agrees."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    cfg = gov.config("owner")
    tag, algo, signer, value = Path(str(cfg) + ".sig").read_text().split()
    assert (tag, algo) == ("veil-signature", "ed25519")
    pub = (gov.dir / "gov.pub").read_text().split()
    assert pub[:2] == ["veil-governance-key", "ed25519-public"] and pub[2] == signer
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(signer))
    key.verify(base64.b64decode(value), cfg.read_bytes())
    with pytest.raises(InvalidSignature):
        key.verify(base64.b64decode(value), cfg.read_bytes() + b" ")
    r = veil("policy", "verify", str(cfg), "--key", str(gov.dir / "gov.pub"))
    assert "signature valid" in r.stdout


AWS_CATALOG = """
domains:
  finance:
    kms: { type: aws-kms, account: "111122223333", region: us-east-1 }
    keys: [{ name: pii, arn: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab" }]
  sales:
    kms: { type: aws-kms, account: "444455556666", region: eu-west-1 }
    keys: [{ name: orders, arn: "arn:aws:kms:eu-west-1:444455556666:key/abcd1234-12ab-34cd-56ef-1234567890ab" }]
data_classes:
  finance-pii: { domain: finance, key: pii }
  sales-orders: { domain: sales, key: orders }
applications:
  billing: { aws_principal: "arn:aws:iam::111122223333:role/billing", sidecar: { upstream: 127.0.0.1:19092 } }
  shop: { aws_principal: "arn:aws:iam::444455556666:role/shop", sidecar: { upstream: 127.0.0.1:19092 } }
grants:
  - { application: billing, key: finance/pii, purpose: encrypt, approved_by: cfo }
  - { application: billing, key: finance/pii, purpose: decrypt, approved_by: cfo }
  - { application: shop, key: finance/pii, purpose: decrypt, expires: "2099-01-01T00:00:00Z", approved_by: cfo }
  - { application: shop, key: sales/orders, purpose: encrypt, approved_by: sales }
  - { application: billing, key: sales/orders, purpose: decrypt, approved_by: sales }
topics:
  - { match: payments, encrypt: { fixed_class: finance-pii } }
  - { match: orders, encrypt: { fixed_class: sales-orders } }
"""


def test_iam_output_passes_parliament(tmp_path):
    from parliament import analyze_policy_string

    catalog = tmp_path / "aws.yaml"
    catalog.write_text(AWS_CATALOG)
    out = tmp_path / "iam"
    files = veil("policy", "iam", str(catalog), "--out-dir", str(out)).stdout.split()
    assert sorted(Path(f).relative_to(out).as_posix() for f in files) == [
        "iam/billing.json", "iam/shop.json", "kms/finance.pii.json", "kms/sales.orders.json"]
    for f in files:
        text = Path(f).read_text()
        policy = analyze_policy_string(text, include_community_auditors=False)
        findings = [(x.issue, x.detail) for x in policy.findings]
        if "/kms/" in f:
            # A key policy's Resource is "*" by definition (it means "this key"); parliament
            # flags that for identity policies only, so nothing else may be reported.
            findings = [x for x in findings if x[0] != "RESOURCE_STAR"]
        assert findings == [], f"{f}: {findings}\n{text}"
    shop = json.loads((out / "iam" / "shop.json").read_text())
    decrypt = [s for s in shop["Statement"] if s["Action"] == ["kms:Decrypt"]]
    assert decrypt[0]["Condition"] == {"DateLessThan": {"aws:CurrentTime": "2099-01-01T00:00:00Z"}}
    combined = json.loads(veil("policy", "iam", str(catalog)).stdout)
    assert sorted(combined["identity_policies"]) == ["billing", "shop"]


def png_pixels_vary(png: bytes) -> bool:
    """Decodes just enough PNG (IHDR + IDAT, zlib) to tell a blank screenshot from a page."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width = struct.unpack(">I", data[:4])[0]
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    assert width > 0 and len(raw) > width
    return len(set(raw)) > 8


def test_matrix_page_renders_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is required (scripts/bootstrap installs it)"
    catalog = tmp_path / "aws.yaml"
    soon = utc(datetime.now(timezone.utc) + timedelta(days=2))
    catalog.write_text(AWS_CATALOG.replace("2099-01-01T00:00:00Z", soon))
    page = tmp_path / "matrix.html"
    veil("policy", "matrix", str(catalog), "--html", str(page))
    table = veil("policy", "matrix", str(catalog), "--format", "table").stdout
    assert re.search(r"^shop\s+\|\s+D! until " + re.escape(soon), table, re.M), table

    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "matrix.png"
    r = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1280,900", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists(), r.stderr
    assert png_pixels_vary(shot.read_bytes())
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "<table id=\"matrix\">" in dom
    for name in ("billing", "shop", "finance-pii", "sales-orders", "AWS KMS account 111122223333 us-east-1"):
        assert name in dom
    assert dom.count('class="grant decrypt expiring"') == 1
    assert f"decrypt until {soon}" in dom
    assert re.search(r'<tr class="expiring"><td>shop</td><td>finance-pii</td><td>decrypt</td>', dom)

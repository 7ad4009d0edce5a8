"""End-to-end tests of the `veil keys`, `veil check` and `veil run` command lines.

They run the built binary ($VEIL_BIN, default .build/debug/veil) in temporary directories.
Every process is started in its own session and its process group is killed when the call
returns, so a hanging veil cannot outlive its test. After each test, no key material from any
keyring the test made may appear in anything veil printed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"


def _veil_bin() -> Path:
    configured = os.environ.get("VEIL_BIN")
    return Path(configured).resolve() if configured else REPO / ".build" / "debug" / "veil"


VEIL = _veil_bin()


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


_outputs: list[str] = []


def veil(*args: str, cwd: Path, timeout: float = 30) -> Result:
    if not VEIL.is_file():
        pytest.fail(f"veil binary not found at {VEIL}; build it with `swift build --product veil` or set VEIL_BIN")
    proc = subprocess.Popen(
        [str(VEIL), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = "", ""
        pytest.fail(f"veil {' '.join(args)} did not exit within {timeout} s")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    _outputs.append(out + err)
    return Result(proc.returncode, out, err)


def keyring_materials(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        try:
            document = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError, OSError):
            continue
        if isinstance(document, dict) and document.get("format") == "veil-keyring":
            found += [key["material"] for key in document.get("keys", [])]
    return found


@pytest.fixture(autouse=True)
def no_material_in_output(tmp_path: Path):
    _outputs.clear()
    yield
    materials = keyring_materials(tmp_path)
    for material in materials:
        raw = base64.b64decode(material)
        for output in _outputs:
            assert material not in output, "key material (base64) appeared in veil's output"
            assert raw.hex() not in output.lower(), "key material (hex) appeared in veil's output"


def read_keyring(path: Path) -> dict:
    return json.loads(path.read_text())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listed_keys(result: Result) -> list[str]:
    return [line.strip() for line in result.out.splitlines() if line.startswith("  ")]


# --------------------------------------------------------------------------
# veil keys
# --------------------------------------------------------------------------


def test_create_makes_private_keyring_named_after_file(tmp_path: Path):
    r = veil("keys", "create", "--keyring", "finance.keyring", "--key", "department-key", cwd=tmp_path)
    assert r.code == 0, r.err
    keyring = tmp_path / "finance.keyring"
    assert mode(keyring) == 0o600
    document = read_keyring(keyring)
    assert document["identity"] == "finance"
    assert [k["id"] for k in document["keys"]] == ["department-key"]
    assert len(base64.b64decode(document["keys"][0]["material"])) == 32

    r = veil("keys", "list", "--keyring", "finance.keyring", cwd=tmp_path)
    assert r.code == 0, r.err
    assert "identity: finance" in r.out
    assert listed_keys(r) == ["department-key"]


def test_create_second_key_with_explicit_identity(tmp_path: Path):
    args = ["--keyring", "k.json", "--identity", "owner-service"]
    assert veil("keys", "create", *args, "--key", "zeta", cwd=tmp_path).code == 0
    assert veil("keys", "create", *args, "--key", "alpha", cwd=tmp_path).code == 0
    r = veil("keys", "list", "--keyring", "k.json", cwd=tmp_path)
    assert "identity: owner-service" in r.out
    assert listed_keys(r) == ["alpha", "zeta"]
    materials = keyring_materials(tmp_path)
    assert len(set(materials)) == 2, "each key must get fresh material"


def test_create_refuses_duplicate_key_id(tmp_path: Path):
    assert veil("keys", "create", "--keyring", "a.keyring", "--key", "k1", cwd=tmp_path).code == 0
    before = (tmp_path / "a.keyring").read_bytes()
    r = veil("keys", "create", "--keyring", "a.keyring", "--key", "k1", cwd=tmp_path)
    assert r.code != 0
    assert "a.keyring" in r.err and "'k1'" in r.err and "already has" in r.err
    assert "choose another --key" in r.err
    assert (tmp_path / "a.keyring").read_bytes() == before


def test_create_refuses_other_identity_for_existing_keyring(tmp_path: Path):
    assert veil("keys", "create", "--keyring", "a.keyring", "--key", "k1", cwd=tmp_path).code == 0
    r = veil("keys", "create", "--keyring", "a.keyring", "--key", "k2", "--identity", "sales", cwd=tmp_path)
    assert r.code != 0
    assert "belongs to identity 'a'" in r.err
    assert [k["id"] for k in read_keyring(tmp_path / "a.keyring")["keys"]] == ["k1"]


def test_create_in_missing_directory_says_mkdir(tmp_path: Path):
    r = veil("keys", "create", "--keyring", "nowhere/a.keyring", "--key", "k1", cwd=tmp_path)
    assert r.code != 0
    assert "mkdir -p nowhere" in r.err
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("key_id", ["has space", ""])
def test_create_refuses_bad_key_id_and_leaves_no_file(tmp_path: Path, key_id: str):
    r = veil("keys", "create", "--keyring", "a.keyring", "--key", key_id, cwd=tmp_path)
    assert r.code != 0
    assert "invalid key id" in r.err
    assert not (tmp_path / "a.keyring").exists()


def test_grant_creates_destination_with_same_key(tmp_path: Path):
    assert veil("keys", "create", "--keyring", "finance.keyring", "--key", "department-key", cwd=tmp_path).code == 0
    assert veil("keys", "create", "--keyring", "finance.keyring", "--key", "other", cwd=tmp_path).code == 0
    (tmp_path / "consumers").mkdir()
    r = veil("keys", "grant", "--from", "finance.keyring", "--to", "consumers/finance-consumer.keyring",
             "--key", "department-key", cwd=tmp_path)
    assert r.code == 0, r.err
    destination = tmp_path / "consumers" / "finance-consumer.keyring"
    assert mode(destination) == 0o600
    source_doc, dest_doc = read_keyring(tmp_path / "finance.keyring"), read_keyring(destination)
    assert dest_doc["identity"] == "finance-consumer"
    assert [k["id"] for k in dest_doc["keys"]] == ["department-key"], "only the named key is granted"
    source_key = next(k for k in source_doc["keys"] if k["id"] == "department-key")
    assert dest_doc["keys"][0]["material"] == source_key["material"]

    r = veil("keys", "list", "--keyring", str(destination), cwd=tmp_path)
    assert "identity: finance-consumer" in r.out and listed_keys(r) == ["department-key"]


def test_grant_uses_identity_flag_and_is_idempotent(tmp_path: Path):
    assert veil("keys", "create", "--keyring", "src.keyring", "--key", "k", cwd=tmp_path).code == 0
    grant = ["keys", "grant", "--from", "src.keyring", "--to", "dst.keyring", "--key", "k"]
    assert veil(*grant, "--identity", "analytics", cwd=tmp_path).code == 0
    assert read_keyring(tmp_path / "dst.keyring")["identity"] == "analytics"
    before = (tmp_path / "dst.keyring").read_bytes()
    r = veil(*grant, cwd=tmp_path)
    assert r.code == 0, r.err
    assert "already holds" in r.out
    assert (tmp_path / "dst.keyring").read_bytes() == before


def test_grant_refuses_different_key_with_same_id(tmp_path: Path):
    assert veil("keys", "create", "--keyring", "a.keyring", "--key", "k", cwd=tmp_path).code == 0
    assert veil("keys", "create", "--keyring", "b.keyring", "--key", "k", cwd=tmp_path).code == 0
    before = (tmp_path / "b.keyring").read_bytes()
    r = veil("keys", "grant", "--from", "a.keyring", "--to", "b.keyring", "--key", "k", cwd=tmp_path)
    assert r.code != 0
    assert "b.keyring" in r.err and "different key" in r.err
    assert (tmp_path / "b.keyring").read_bytes() == before


def test_grant_of_missing_key_creates_nothing(tmp_path: Path):
    assert veil("keys", "create", "--keyring", "a.keyring", "--key", "k", cwd=tmp_path).code == 0
    r = veil("keys", "grant", "--from", "a.keyring", "--to", "b.keyring", "--key", "nope", cwd=tmp_path)
    assert r.code != 0
    assert "a.keyring has no key 'nope'" in r.err and "holds: k" in r.err
    assert not (tmp_path / "b.keyring").exists()


def test_grant_to_same_keyring_is_refused(tmp_path: Path):
    assert veil("keys", "create", "--keyring", "a.keyring", "--key", "k", cwd=tmp_path).code == 0
    r = veil("keys", "grant", "--from", "a.keyring", "--to", "./a.keyring", "--key", "k", cwd=tmp_path)
    assert r.code != 0
    assert "same keyring" in r.err


def test_list_of_missing_keyring_names_file_and_fix(tmp_path: Path):
    r = veil("keys", "list", "--keyring", "missing.keyring", cwd=tmp_path)
    assert r.code != 0
    assert "missing.keyring does not exist" in r.err
    assert "veil keys create --keyring missing.keyring" in r.err


def test_list_of_malformed_keyring(tmp_path: Path):
    path = tmp_path / "bad.keyring"
    path.write_text("{ not json")
    path.chmod(0o600)
    r = veil("keys", "list", "--keyring", "bad.keyring", cwd=tmp_path)
    assert r.code != 0
    assert "bad.keyring is malformed" in r.err


@pytest.mark.parametrize("command", [
    ["keys", "list", "--keyring", "open.keyring"],
    ["keys", "create", "--keyring", "open.keyring", "--key", "k2"],
    ["keys", "grant", "--from", "open.keyring", "--to", "other.keyring", "--key", "k"],
    ["keys", "grant", "--from", "private.keyring", "--to", "open.keyring", "--key", "p"],
])
def test_keyring_readable_by_others_is_refused(tmp_path: Path, command: list[str]):
    assert veil("keys", "create", "--keyring", "open.keyring", "--key", "k", cwd=tmp_path).code == 0
    assert veil("keys", "create", "--keyring", "private.keyring", "--key", "p", cwd=tmp_path).code == 0
    (tmp_path / "open.keyring").chmod(0o644)
    before = (tmp_path / "open.keyring").read_bytes()
    r = veil(*command, cwd=tmp_path)
    assert r.code != 0
    assert "chmod 600 open.keyring" in r.err
    assert (tmp_path / "open.keyring").read_bytes() == before
    assert mode(tmp_path / "open.keyring") == 0o644
    assert not (tmp_path / "other.keyring").exists()


# --------------------------------------------------------------------------
# veil check
# --------------------------------------------------------------------------


def demo_keyrings(root: Path) -> None:
    """The three-department layout of config/*.yaml: keys/finance.keyring and keys/sales.keyring."""
    (root / "keys").mkdir()
    for department in ("finance", "sales"):
        r = veil("keys", "create", "--keyring", f"keys/{department}.keyring", "--key", "department-key", cwd=root)
        assert r.code == 0, r.err


def demo_config(root: Path, name: str, replace: dict[str, str] | None = None) -> Path:
    text = (CONFIG_DIR / name).read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} not in config/{name}; update the test"
        text = text.replace(old, new)
    path = root / name
    path.write_text(text)
    return path


def check(root: Path, config: Path | str) -> Result:
    return veil("check", "--config", str(config), cwd=root)


def test_check_demo_owner_config(tmp_path: Path):
    demo_keyrings(tmp_path)
    r = check(tmp_path, demo_config(tmp_path, "owner.yaml"))
    assert r.code == 0, r.err
    assert r.err == ""
    for fact in [
        "identity: owner",
        "listen: 127.0.0.1:9092",
        "upstream: 127.0.0.1:19092 (no TLS)",
        "broker ports: 9093-9156 (64)",
        "finance: local keyring keys/finance.keyring (identity 'finance', 1 key)",
        "sales: local keyring keys/sales.keyring (identity 'sales', 1 key)",
        "encrypt: finance/department-key, sales/department-key",
        "decrypt: none",
        "[0] department-events: encrypt whole value with key from JSON field 'department'",
        "finance -> finance/department-key",
        "unmatched: reject",
        "is valid (0 warnings)",
    ]:
        assert fact in r.out, f"{fact!r} missing from:\n{r.out}"


@pytest.mark.parametrize("name,identity", [("finance.yaml", "finance-consumer"), ("sales.yaml", "sales-consumer")])
def test_check_demo_consumer_configs(tmp_path: Path, name: str, identity: str):
    demo_keyrings(tmp_path)
    r = check(tmp_path, demo_config(tmp_path, name))
    assert r.code == 0, r.err
    assert f"identity: {identity}" in r.out
    assert "no encryption on produce; on denied: drop; plaintext records refused" in r.out


def test_check_passthrough_config(tmp_path: Path):
    r = check(tmp_path, demo_config(tmp_path, "passthrough.yaml"))
    assert r.code == 0, r.err
    assert "broker ports: 19100-19163 (64)" in r.out
    assert "kms: none" in r.out and "topics: none" in r.out


def test_check_with_granted_keyring_at_absolute_path(tmp_path: Path):
    """The grant flow end to end: the finance consumer gets its own keyring with the granted key."""
    demo_keyrings(tmp_path)
    own = tmp_path / "private" / "finance-consumer.keyring"
    own.parent.mkdir()
    r = veil("keys", "grant", "--from", "keys/finance.keyring", "--to", str(own), "--key", "department-key",
             cwd=tmp_path)
    assert r.code == 0, r.err
    config = demo_config(tmp_path, "finance.yaml", {"keyring: keys/finance.keyring": f"keyring: {own}"})
    r = check(tmp_path.parent, config)
    assert r.code == 0, r.err
    assert f"finance: local keyring {own} (identity 'finance-consumer', 1 key)" in r.out


def test_check_missing_keyring(tmp_path: Path):
    r = check(tmp_path, demo_config(tmp_path, "finance.yaml"))
    assert r.code == 2
    assert f"error: kms.finance.keyring: keyring keys/finance.keyring (resolved against the working directory " \
           f"{tmp_path}) does not exist" in r.err
    assert "veil keys create --keyring keys/finance.keyring" in r.err
    assert "is invalid: 1 error" in r.err


def test_check_keyring_readable_by_others(tmp_path: Path):
    demo_keyrings(tmp_path)
    (tmp_path / "keys" / "sales.keyring").chmod(0o640)
    r = check(tmp_path, demo_config(tmp_path, "owner.yaml"))
    assert r.code == 2
    assert "kms.sales.keyring" in r.err and "chmod 600 keys/sales.keyring" in r.err


def test_check_decrypt_grant_missing_from_keyring(tmp_path: Path):
    (tmp_path / "keys").mkdir()
    assert veil("keys", "create", "--keyring", "keys/finance.keyring", "--key", "old-key", cwd=tmp_path).code == 0
    r = check(tmp_path, demo_config(tmp_path, "finance.yaml"))
    assert r.code == 2
    assert re.search(r"error: grants\.decrypt: key finance/department-key .*keys/finance\.keyring.* has no key "
                     r"'department-key'; it holds only old-key", r.err), r.err
    assert "veil keys grant --from OWNER_KEYRING --to keys/finance.keyring --key department-key" in r.err


def test_check_encrypt_grant_missing_from_keyring(tmp_path: Path):
    demo_keyrings(tmp_path)
    (tmp_path / "keys" / "sales.keyring").unlink()
    assert veil("keys", "create", "--keyring", "keys/sales.keyring", "--key", "other", cwd=tmp_path).code == 0
    r = check(tmp_path, demo_config(tmp_path, "owner.yaml"))
    assert r.code == 2
    assert "error: grants.encrypt: key sales/department-key" in r.err
    assert "finance/department-key" not in r.err


def test_check_reports_grant_expiries(tmp_path: Path):
    """A lapsed grant and one lapsing within a week are warnings naming the key and the time;
    one lapsing later is only shown in the summary."""
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    stamp = lambda delta: (now + delta).strftime("%Y-%m-%dT%H:%M:%SZ")
    past, soon, later = stamp(-datetime.timedelta(hours=1)), stamp(datetime.timedelta(days=2, hours=3, minutes=30)), \
        stamp(datetime.timedelta(days=30))
    demo_keyrings(tmp_path)
    for when, expect in ((past, f"warning: grants.decrypt: the grant for finance/department-key expired at {past}; "
                                "it allows no decryption until it is renewed"),
                         (soon, f"warning: grants.decrypt: the grant for finance/department-key expires at {soon}, "
                                "in 2 d 3 h"),
                         (later, None)):
        config = demo_config(tmp_path, "finance.yaml", {
            "decrypt: [finance/department-key]": f"decrypt: [{{ key: finance/department-key, expires: {when} }}]"})
        r = check(tmp_path, config)
        assert r.code == 0, r.err
        assert f"decrypt: finance/department-key (until {when})" in r.out
        if expect is None:
            assert "grant for" not in r.err and "is valid (0 warnings)" in r.out, r.err
        else:
            assert expect in r.err and "is valid (1 warning)" in r.out, r.err


def test_check_warns_about_topic_key_not_granted_for_encryption(tmp_path: Path):
    demo_keyrings(tmp_path)
    config = demo_config(tmp_path, "owner.yaml", {
        "encrypt: [finance/department-key, sales/department-key]": "encrypt: [finance/department-key]"})
    r = check(tmp_path, config)
    assert r.code == 0, r.err
    assert "warning: topics[0].encrypt.keys.sales: key sales/department-key is not in grants.encrypt" in r.err
    assert "keys.finance" not in r.err
    assert "is valid (1 warning)" in r.out


def test_check_ungranted_topic_key_missing_from_keyring_is_only_a_warning(tmp_path: Path):
    demo_keyrings(tmp_path)
    (tmp_path / "keys" / "sales.keyring").unlink()
    assert veil("keys", "create", "--keyring", "keys/sales.keyring", "--key", "other", cwd=tmp_path).code == 0
    config = demo_config(tmp_path, "owner.yaml", {
        "encrypt: [finance/department-key, sales/department-key]": "encrypt: [finance/department-key]"})
    r = check(tmp_path, config)
    assert r.code == 0, r.err
    assert "warning: topics[0].encrypt.keys.sales" in r.err and "has no key 'department-key'" in r.err


def test_check_bad_yaml(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("identity: owner\nupstream: [127.0.0.1:9093\nlisten: 127.0.0.1:9092\n")
    r = check(tmp_path, path)
    assert r.code == 2
    assert "invalid YAML" in r.err and str(path) in r.err


@pytest.mark.parametrize("old,new,expected", [
    ("on_unmatched: reject", "on_unmatched: maybe",
     "topics[0].encrypt.on_unmatched: expected one of reject, plaintext, got 'maybe'"),
    ("grants:\n  encrypt:", "grants:\n  encrpyt:", "grants.encrpyt: unknown key 'encrpyt'"),
    ("finance: finance/department-key", "finance: hr/department-key",
     "topics[0].encrypt.keys.finance: key hr/department-key names KMS 'hr', which is not configured"),
    ("listen: 127.0.0.1:9092", "listen: 127.0.0.1", "listen: expected HOST:PORT"),
    ("bootstrap: [127.0.0.1:19092]", "bootstrap: [127.0.0.1:9100]", "broker_ports: range 9093...9156 includes"),
])
def test_check_invalid_values_name_the_key_path(tmp_path: Path, old: str, new: str, expected: str):
    demo_keyrings(tmp_path)
    r = check(tmp_path, demo_config(tmp_path, "owner.yaml", {old: new}))
    assert r.code == 2
    assert expected in r.err, r.err
    assert r.out == "", "an unparsable configuration gets no summary"


def test_check_missing_config_file(tmp_path: Path):
    r = check(tmp_path, "absent.yaml")
    assert r.code == 2
    assert "absent.yaml" in r.err and "no such file" in r.err



@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_config_that_is_not_a_regular_file_is_refused_not_waited_on(tmp_path: Path, kind: str):
    """A FIFO where the configuration should be used to block open() until a writer came:
    `veil check` and `veil run` hung. Both must refuse it at once, saying what is there."""
    path = tmp_path / "veil.yaml"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    what = "a FIFO" if kind == "fifo" else "a directory"
    r = veil("check", "--config", str(path), cwd=tmp_path, timeout=10)
    assert r.code == 2 and f"it is {what}, not a regular file" in r.err, r.err
    r = veil("run", "--config", str(path), cwd=tmp_path, timeout=10)
    assert r.code != 0 and f"it is {what}, not a regular file" in r.err, r.err


# --------------------------------------------------------------------------
# veil run
# --------------------------------------------------------------------------


def test_run_refuses_invalid_config(tmp_path: Path):
    config = demo_config(tmp_path, "owner.yaml", {"on_unmatched: reject": "on_unmatched: maybe"})
    r = veil("run", "--config", str(config), cwd=tmp_path, timeout=20)
    assert r.code != 0
    assert "invalid configuration" in r.err
    assert "topics[0].encrypt.on_unmatched" in r.err


def test_run_refuses_missing_config_file(tmp_path: Path):
    r = veil("run", "--config", "absent.yaml", cwd=tmp_path, timeout=20)
    assert r.code != 0
    assert "absent.yaml" in r.err and "cannot read" in r.err

"""`veil check` on broken configurations: each error names the file, the line, the key
path, what is wrong and (where there is one) the fix, as `error: FILE:LINE: KEY: PROBLEM`.

A table of broken files, each with the exact message expected; the binary is $VEIL_BIN
(default .build/debug/veil), run in a temporary directory.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VEIL = Path(os.environ.get("VEIL_BIN", REPO / ".build" / "debug" / "veil"))

BASE = [
    "identity: app",
    "listen: 127.0.0.1:7000",
    "upstream: { bootstrap: [broker:9092] }",
    "kms: { finance: { type: local, keyring: f.keyring } }",
]

LEVELS = "trace, debug, info, notice, warning, error, critical"
TOP = ("identity, listen, upstream, broker_ports, advertised_host, max_frame_bytes, kms, grants, dek, topics, "
       "listener, gateway, admin, logging, shutdown")

# (replace {line number: text} in BASE, lines appended, expected "LINE: message")
CASES = [
    ({}, ["admin: { port: 9 }"], "5: admin.port: unknown key 'port' (expected one of listen, enabled)"),
    ({}, ["admin: { listen: 9644 }"], "5: admin.listen: expected HOST:PORT, got '9644'"),
    ({}, ["logging: { level: loud }"], f"5: logging.level: expected one of {LEVELS}, got 'loud'"),
    ({}, ["logging: { format: xml }"], "5: logging.format: expected one of text, json, got 'xml'"),
    ({}, ["shutdown: { deadline_seconds: 99999 }"],
     "5: shutdown.deadline_seconds: must be between 0 and 3600, got 99999"),
    ({}, ["grants: { encrpyt: [finance/k] }"],
     "5: grants.encrpyt: unknown key 'encrpyt' (did you mean 'encrypt'? expected one of encrypt, decrypt)"),
    ({}, ["identiy: app2"], f"5: identiy: unknown key 'identiy' (did you mean 'identity'? expected one of {TOP})"),
    ({}, ["listen_on: 1.2.3.4:5"], f"5: listen_on: unknown key 'listen_on' (expected one of {TOP})"),
    ({}, ["advertised_host: ${VEIL_CHECK_TEST_UNSET}"],
     "5: advertised_host: environment variable VEIL_CHECK_TEST_UNSET is not set: set it (in ECS, the task "
     "definition's environment or secrets) or replace ${VEIL_CHECK_TEST_UNSET}"),
    ({}, ['advertised_host: "${9LIVES}"'],
     "5: advertised_host: '${9LIVES}' is not an environment variable name (letters, digits and _, not starting "
     "with a digit)"),
    ({}, ["topics:", "  - match: t", "    on_denied: hide"],
     "7: topics[0].on_denied: expected one of drop, redact, ciphertext, error, got 'hide'"),
    ({}, ["topics:", "  - match: { suffix: x }"],
     "6: topics[0].match.suffix: unknown key 'suffix' (expected one of exact, prefix, regex)"),
    ({}, ["topics:", "  - match: t", "    ondenied: drop"],
     "7: topics[0].ondenied: unknown key 'ondenied' (did you mean 'on_denied'? expected one of match, encrypt, "
     "on_denied, redact_placeholder, require_encrypted, on_denied_field, field_placeholder)"),
    ({}, ["topics:", "  - match: t", "    encrypt: { key_from: { json: d }, keys: { a: hr/k } }"],
     "7: topics[0].encrypt.keys.a: key hr/k names KMS 'hr', which is not configured under kms (configured: finance)"),
    ({}, ["max_frame_bytes: 10"], "5: max_frame_bytes: must be between 1024 and 2147483647, got 10"),
    ({}, ["max_frame_bytes: lots"], "5: max_frame_bytes: expected an integer, got 'lots'"),
    ({}, ["broker_ports: { first: 6990, count: 20 }"], "5: broker_ports: range 6990...7009 includes the listen port 7000"),
    ({2: "listen: 127.0.0.1"}, [], "2: listen: expected HOST:PORT, got '127.0.0.1'"),
    ({1: 'identity: ""'}, [], "1: identity: must not be empty"),
    ({3: "upstream: { bootstrap: [broker:9092], tls: maybe }"}, [],
     "3: upstream.tls: expected true or false, got 'maybe'"),
    ({3: "upstream: { bootstrap: [broker:9092], tsl: true }"}, [],
     "3: upstream.tsl: unknown key 'tsl' (did you mean 'tls'? expected one of bootstrap, tls, sasl)"),
    ({4: "kms: { finance: { type: vault } }"}, [],
     "4: kms.finance.type: unknown KMS type 'vault' (supported: local, aws-kms)"),
    ({4: "kms: { finance: { type: local } }"}, [], "4: kms.finance.keyring: required"),
    ({}, ["dek: { max_encryptions: lots }"], "5: dek.max_encryptions: expected an integer, got 'lots'"),
]


@pytest.mark.parametrize("replace,extra,expected", CASES, ids=[c[2].split(":")[1].strip() + f"-{i}"
                                                               for i, c in enumerate(CASES)])
def test_check_names_file_line_key_and_problem(tmp_path, replace, extra, expected):
    if not VEIL.is_file():
        pytest.fail(f"{VEIL} not built; set VEIL_BIN", pytrace=False)
    lines = [replace.get(i + 1, line) for i, line in enumerate(BASE)] + extra
    path = tmp_path / "sidecar.yaml"
    path.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "VEIL_CHECK_TEST_UNSET"}
    r = subprocess.run([str(VEIL), "check", "--config", "sidecar.yaml"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=30, env=env)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.splitlines() == [f"error: sidecar.yaml:{expected}", "sidecar.yaml is invalid"], r.stderr
    assert r.stdout == "", "an unparsable configuration gets no summary"


def test_table_has_at_least_twenty_cases():
    assert len(CASES) >= 20

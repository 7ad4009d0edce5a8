"""Self-checks of the differential harness: it must be able to fail.

These use stand-ins for the veil binary (tests/interop/stand_ins/), never Veil:
- plain_relay_as_veil.py forwards bytes without rewriting addresses, so the
  veil route must report the leaked broker address and the direct connection;
- tansu_proxy_as_veil.py rewrites Metadata, so scenarios built on Metadata pass
  the route checks and the comparison logic itself can be exercised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clients import ConfluentClient, ConsumeOpts, ProduceOpts, Rec
from conftest import Differential

STAND_INS = Path(__file__).resolve().parent / "stand_ins"


def _metadata_scenario(target):
    c = ConfluentClient(target.bootstrap)
    topic = target.name("harness")
    assert c.create_topic(topic, 1) == 0
    c.produce(topic, [Rec(b"k", b"v", (), 0)], ProduceOpts(), probe=target.probe)
    got = c.consume(topic, [0], ConsumeOpts(timeout_s=15), expected_count=1, probe=target.probe)
    brokers, _ = c.describe(topic)
    return {"values": [r.value.hex() for r in got], "_addresses": brokers}


def test_veil_route_fails_when_addresses_leak(request, tansu, veil_factory, monkeypatch):
    monkeypatch.setenv("VEIL_BIN", str(STAND_INS / "plain_relay_as_veil.py"))
    d = Differential(request, "veil", tansu, veil_factory)
    with pytest.raises(pytest.fail.Exception) as e:
        d.run(_metadata_scenario, lambda obs: [])
    msg = str(e.value)
    assert "leaks the real broker address" in msg, msg
    assert "connected straight to the broker" in msg, msg


def test_veil_route_fails_when_results_differ(request, tansu, veil_factory, monkeypatch):
    monkeypatch.setenv("VEIL_BIN", str(STAND_INS / "tansu_proxy_as_veil.py"))
    d = Differential(request, "veil", tansu, veil_factory)

    def scenario(target):
        obs = _metadata_scenario(target)
        obs["route_dependent"] = target.route  # an observation that differs across routes
        return obs

    with pytest.raises(pytest.fail.Exception) as e:
        d.run(scenario, lambda obs: [])
    assert "veil differs from direct" in str(e.value) and "route_dependent" in str(e.value), str(e.value)


def test_direct_known_limitation_xfails_and_stale_one_fails(request, tansu, veil_factory):
    d = Differential(request, "direct", tansu, veil_factory)
    with pytest.raises(pytest.xfail.Exception):
        d.run(lambda t: {"x": 1}, lambda obs: ["broken"], known_limitation="demo limitation")
    with pytest.raises(pytest.fail.Exception) as e:
        d.run(lambda t: {"x": 1}, lambda obs: [], known_limitation="demo limitation")
    assert "no longer shows" in str(e.value)
    with pytest.raises(pytest.fail.Exception):
        d.run(lambda t: {"x": 1}, lambda obs: ["broken"])


def test_missing_veil_binary_fails_unless_allowed(request, tansu, veil_factory, monkeypatch, tmp_path):
    monkeypatch.setenv("VEIL_BIN", str(tmp_path / "no-such-veil"))
    monkeypatch.delenv("VEIL_INTEROP_ALLOW_MISSING", raising=False)
    d = Differential(request, "veil", tansu, veil_factory)
    with pytest.raises(pytest.fail.Exception):
        d.run(lambda t: {}, lambda obs: [])
    monkeypatch.setenv("VEIL_INTEROP_ALLOW_MISSING", "1")
    with pytest.raises(pytest.skip.Exception):
        d.run(lambda t: {}, lambda obs: [])

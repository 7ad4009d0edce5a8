"""KMS outage with the local keyring file unreadable (issue 10, "Faults").

One Tansu broker (in memory) and the sidecar pair of the fault tests: `writer` seals every
`ko-*` record with writer/k from its local keyring, `reader` opens them with the grant in its
own keyring and refuses plaintext on those topics. While an idempotent acks=all producer and a
consumer run through them, both keyring files are made unreadable, then:

1. SIGHUP: the reload is refused with a log line naming the keyring, and the running
   configuration (the keys already loaded) stays in force, so the stream keeps flowing, new
   clients are served, and a topic without a policy is unaffected;
2. restart: each sidecar refuses to start (exit 2, a `critical` line naming the keyring), so
   nothing can reach the broker through it, let alone plaintext: the producer's records wait;
3. the files are restored: both start, a SIGHUP is applied, and every acknowledged record
   arrives once, in order, and is stored sealed.

"Unreadable" is done four ways: the file moved away, replaced by garbage, by a directory, and
by a FIFO (whose open() blocks until a writer appears), plus chmod 000 when not root (root
reads a mode-000 file, so there that case cannot make the file unreadable and is skipped).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import time
import uuid

import pytest

from conftest import Proc, wait_for_port
from enc_support import EncEnv, keyring_material, parse_envelope, produce, raw_fetch
from clients import Rec
from fault_support import start_sidecar_pair
from streams import HealthyStream

PREFIX = "ko-"
MODES = ["moved-away", "garbage", "directory", "fifo", "chmod-000"]
REJECTED = "reload rejected, the running configuration stays in force"
# What librdkafka reports while the sidecar it talks to is down: expected, and only then.
DOWN_ERRORS = ("Connection refused", "brokers are down", "Disconnected", "_TRANSPORT")


class OutageEnv(EncEnv):
    def setup(self):
        self.start_broker()
        self.writer, self.reader = start_sidecar_pair(self, PREFIX)
        self.kek = keyring_material(self.keyrings["writer"], "k")
        assert self.kek == keyring_material(self.keyrings["reader"], "k")
        self.restarts = 0

    def topic(self, name: str, partitions: int = 3) -> str:
        t = f"{name}-{uuid.uuid4().hex[:6]}"
        self.create_topic(t, partitions)
        return t

    def start_again(self, sc) -> Proc:
        """Starts the sidecar's binary with its configuration file again (same ports)."""
        self.restarts += 1
        name = f"veil-{sc.name}-{self.restarts}"
        proc = Proc(name, sc.proc.argv, self.dir / f"{name}.log")
        self.procs.append(proc)
        return proc


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = OutageEnv(tmp_path_factory.mktemp("kms-outage"))
    try:
        e.setup()
        yield e
    finally:
        e.stop()


def break_keyring(path, mode: str, saved):
    """Makes `path` unreadable to Veil in one of MODES; the real file is kept at `saved`."""
    os.rename(path, saved)
    if mode == "moved-away":
        return
    if mode == "garbage":
        path.write_bytes(b"\x00not a keyring\xff" * 10)
        os.chmod(path, 0o600)
    elif mode == "directory":
        path.mkdir(mode=0o700)
    elif mode == "fifo":
        os.mkfifo(path, 0o600)
    elif mode == "chmod-000":
        shutil.copy2(saved, path)
        os.chmod(path, 0o000)


def restore_keyring(path, saved):
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    elif os.path.lexists(path):
        os.unlink(path)
    os.rename(saved, path)


def wait_for_log(proc: Proc, text: str, count: int, timeout: float = 15) -> str:
    """Waits until `text` occurs `count` times in the log; returns the log."""
    deadline = time.monotonic() + timeout
    while True:
        log = proc.log_path.read_text(errors="replace")
        if log.count(text) >= count or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def wait_progress(s: HealthyStream, more: int, timeout: float = 60):
    """Waits for `more` new acknowledgements, then for every record acknowledged by then to be
    consumed (the stream keeps going meanwhile)."""
    want = len(s.acked) + more
    deadline = time.monotonic() + timeout
    while len(s.acked) < want and time.monotonic() < deadline:
        time.sleep(0.1)
    target = set(s.acked.copy())  # copy(): the producer thread adds to it
    while time.monotonic() < deadline:
        if len(target) >= want and target <= {q for _, _, q in s.consumed}:
            return
        time.sleep(0.1)
    raise AssertionError(f"stream stalled: acked {len(s.acked)} (wanted {want}), consumed {len(s.consumed)} "
                         f"({len(target - {q for _, _, q in s.consumed})} of the first {len(target)} acked not yet); "
                         f"failed {s.failed[:3]}, consumer errors {s.consume_errors[:3]}")


def assert_no_key_material(env: OutageEnv, log: str, who: str):
    for form in (env.kek.hex(), base64.b64encode(env.kek).decode(), base64.urlsafe_b64encode(env.kek).decode().rstrip("=")):
        assert form not in log, f"{who}'s log holds the key material"


@pytest.mark.parametrize("mode", MODES)
def test_keyring_unreadable_fails_closed_and_recovers(env, mode):
    if mode == "chmod-000" and os.geteuid() == 0:
        pytest.skip("running as root: a mode-000 file stays readable, so chmod cannot make the keyring unreadable")
    rings = {"writer": env.keyrings["writer"], "reader": env.keyrings["reader"]}
    saved = {n: p.with_name(p.name + ".saved") for n, p in rings.items()}
    s = HealthyStream(env.writer.bootstrap, env.topic(f"{PREFIX}{mode}"), consume_bootstrap=env.reader.bootstrap)
    s.start()
    broken = False
    try:
        wait_progress(s, 100)
        for n in rings:
            break_keyring(rings[n], mode, saved[n])
        broken = True

        # 1. SIGHUP: refused, the loaded keys stay in force.
        for sc in (env.writer, env.reader):
            before = sc.log_text().count(REJECTED)
            os.killpg(sc.proc.pid, signal.SIGHUP)
            log = wait_for_log(sc.proc, REJECTED, before + 1)
            assert log.count(REJECTED) == before + 1, f"{sc.name}: no '{REJECTED}' line within 15 s of SIGHUP\n{env.tails()}"
            line = [ln for ln in log.splitlines() if REJECTED in ln][-1]
            assert f"keyring {rings[sc.name]}" in line, f"{sc.name}'s rejection does not name the keyring: {line}"
            assert sc.proc.alive(), f"{sc.name} exited after SIGHUP with an unreadable keyring"
        wait_progress(s, 100)
        # A new client on the encrypted topic, and a topic without a policy, are served.
        other = env.topic("other")
        extra_topic = env.topic(f"{PREFIX}{mode}-new", 1)
        outs = produce("confluent", env.writer.bootstrap, other, [Rec(b"k", b"plain", partition=0)], timeout_s=30)
        outs += produce("confluent", env.writer.bootstrap, extra_topic, [Rec(b"k", b"secret-new-client", partition=0)],
                        timeout_s=30)
        assert all(o.ok for o in outs), f"clients refused during the outage: {outs}"
        assert raw_fetch(env.broker_port, other, 0).records[0].value == b"plain"
        parse_envelope(raw_fetch(env.broker_port, extra_topic, 0).records[0].value)

        # 2. Restart: each sidecar refuses to start without its keyring.
        for sc in (env.writer, env.reader):
            env.stop_sidecar(sc)
        acked_down = len(s.acked)
        for sc in (env.writer, env.reader):
            p = env.start_again(sc)
            try:
                p.popen.wait(20)
            except Exception:
                pass
            log = p.log_path.read_text(errors="replace")
            assert not p.alive(), f"{sc.name} did not exit within 20 s with an unreadable keyring\n{log[-2000:]}"
            assert p.popen.returncode == 2, f"{sc.name} exit code {p.popen.returncode}\n{log[-2000:]}"
            assert "invalid configuration" in log and f"keyring {rings[sc.name]}" in log, \
                f"{sc.name}'s start-up failure does not name the keyring:\n{log[-2000:]}"
            assert_no_key_material(env, log, sc.name)
            env.procs.remove(p)
        time.sleep(2)
        assert len(s.acked) == acked_down, "records were acknowledged while no sidecar could run"

        # 3. Restore: both start and reload again, and the stream catches up.
        for n in rings:
            restore_keyring(rings[n], saved[n])
        broken = False
        for sc in (env.writer, env.reader):
            sc.proc = env.start_again(sc)
            wait_for_port(sc.proc, sc.port, 30)
        for sc in (env.writer, env.reader):
            os.killpg(sc.proc.pid, signal.SIGHUP)
            log = wait_for_log(sc.proc, "reloaded ", 1)
            assert "reloaded " in log, f"{sc.name}: SIGHUP after the keyring came back was not applied\n{log[-2000:]}"
        wait_progress(s, 200, timeout=90)
    finally:
        if broken:
            for n in rings:
                restore_keyring(rings[n], saved[n])
        s.finish()
    transient = [e for e in s.consume_errors if any(d in e for d in DOWN_ERRORS)]
    s.consume_errors = [e for e in s.consume_errors if e not in transient]
    problems = s.problems(min_acked=400)
    print(f"keyring {mode}: {s.summary()}; consumer connection errors while the reader was down: {len(transient)}")
    assert not problems, "\n".join(problems) + "\n" + env.tails()
    stored = 0
    for p in range(s.partitions):
        for r in raw_fetch(env.broker_port, s.topic, p).records:
            parse_envelope(r.value)  # raises unless sealed
            assert b"healthy record" not in r.value
            stored += 1
    assert stored >= len(s.acked)
    for sc in (env.writer, env.reader):
        assert_no_key_material(env, sc.log_text(), sc.name)


# --------------------------------------------------------------------------
# AWS KMS (moto_server) down at the same time as the keyrings
# --------------------------------------------------------------------------

AWS_PREFIX = "kaws-"
AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "veil-test", "AWS_SECRET_ACCESS_KEY": "veil-test-secret"}


def test_aws_kms_and_keyring_down_together(env):
    """moto_server's KMS (reached through a TcpRelay, so closing the relay is the outage and
    moto keeps its keys) goes down while the keyrings are unreadable: SIGHUP is refused and the
    running sidecars keep their cached data keys; with the keyrings back but KMS still down, the
    restarted writer cannot get a data key and acknowledges nothing for 8 s (fail closed); when
    KMS is back every acknowledged record arrives once, sealed. (The restarted reader is not
    made to unwrap during the outage here: nothing new is written then.)"""
    import boto3

    from fault_support import MotoS3, TcpRelay

    moto = MotoS3(env.dir, bucket="veil-kms-outage")  # moto_server serves KMS as well as S3
    relay = TcpRelay(moto.port)
    saved_env = {k: os.environ.get(k) for k in AWS_CREDENTIALS}
    os.environ.update(AWS_CREDENTIALS)
    sidecars, stream, relay2 = [], None, None
    rings = {"writer": env.keyrings["writer"], "reader": env.keyrings["reader"]}
    saved = {n: p.with_name(p.name + ".aws-saved") for n, p in rings.items()}
    broken = False
    try:
        kms = boto3.client("kms", endpoint_url=moto.endpoint, region_name="us-east-1", **{k.lower(): v for k, v in AWS_CREDENTIALS.items()})
        arn = kms.create_key(Description="veil kms outage")["KeyMetadata"]["Arn"]
        aws = {"type": "aws-kms", "region": "us-east-1", "endpoint": f"http://127.0.0.1:{relay.port}"}
        ref = f"aws/{arn}"
        w_cfg = {"kms": {"writer": {"type": "local", "keyring": str(rings["writer"])}, "aws": aws},
                 "grants": {"encrypt": ["writer/k", ref]},
                 "topics": [{"match": {"prefix": AWS_PREFIX}, "encrypt": {"key_from": {"fixed": ref}}}]}
        r_cfg = {"kms": {"writer": {"type": "local", "keyring": str(rings["reader"])}, "aws": aws},
                 "grants": {"decrypt": ["writer/k", ref]},
                 "topics": [{"match": {"prefix": AWS_PREFIX}, "require_encrypted": True, "on_denied": "error"}]}
        w = env.start_sidecar("aws-writer", w_cfg)
        r = env.start_sidecar("aws-reader", r_cfg)
        sidecars = [w, r]
        stream = HealthyStream(w.bootstrap, env.topic(f"{AWS_PREFIX}both"), consume_bootstrap=r.bootstrap)
        stream.start()
        wait_progress(stream, 100)

        relay.close()  # KMS outage
        for n in rings:
            break_keyring(rings[n], "moved-away", saved[n])
        broken = True
        for sc in sidecars:
            before = sc.log_text().count(REJECTED)
            os.killpg(sc.proc.pid, signal.SIGHUP)
            assert wait_for_log(sc.proc, REJECTED, before + 1).count(REJECTED) == before + 1, f"{sc.name}: SIGHUP not refused"
        wait_progress(stream, 100)  # cached data keys: no KMS call needed

        # Keyrings back, KMS still down: both restart, but the new processes hold no data key.
        for n in rings:
            restore_keyring(rings[n], saved[n])
        broken = False
        for sc in sidecars:
            env.stop_sidecar(sc)
        acked_down = len(stream.acked)
        for sc in sidecars:
            sc.proc = env.start_again(sc)
            wait_for_port(sc.proc, sc.port, 30)
        time.sleep(8)
        assert len(stream.acked) == acked_down, "records were acknowledged while the writer could get no data key"
        errors_down = len(stream.consume_errors)

        relay2 = TcpRelay(moto.port, port=relay.port)  # KMS back on the same address
        wait_progress(stream, 200, timeout=120)
    finally:
        if broken:
            for n in rings:
                restore_keyring(rings[n], saved[n])
        if stream:
            stream.finish()
        for sc in sidecars:
            if sc.proc in env.procs:
                env.stop_sidecar(sc)
        for rl in (relay, relay2):
            if rl:
                rl.close()
        moto.stop()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    problems = stream.problems(min_acked=400)
    print(f"aws kms + keyring down: {stream.summary()}; consumer errors before KMS returned: {errors_down}")
    assert not problems, "\n".join(problems) + "\n" + env.tails()
    for p in range(stream.partitions):
        for rec in raw_fetch(env.broker_port, stream.topic, p).records:
            parse_envelope(rec.value)
            assert b"healthy record" not in rec.value

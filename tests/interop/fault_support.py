"""Processes for the fault and soak tests: a moto_server S3 endpoint, a Tansu broker that
stores its log in that S3 bucket (so data survives a broker restart), and a TCP relay that can
reset every connection through it.

Every process is started on free loopback ports in its own process group and stopped by pid.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

from conftest import Proc, free_port, tansu_binary, wait_for_api_versions, wait_for_port

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "veil-test", "AWS_SECRET_ACCESS_KEY": "veil-test-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}


class MotoS3:
    """moto_server (a real S3 API implementation) with one bucket."""

    def __init__(self, workdir: Path, bucket: str = "tansu"):
        self.bucket = bucket
        self.port = free_port()
        self.proc = Proc("moto", ["moto_server", "-H", "127.0.0.1", "-p", str(self.port)], workdir / "moto.log")
        wait_for_port(self.proc, self.port, 30)
        self.client().create_bucket(Bucket=bucket)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")

    def objects(self, prefix: str = "") -> list[str]:
        keys, token = [], None
        s3 = self.client()
        while True:
            kw = {"Bucket": self.bucket, "Prefix": prefix} | ({"ContinuationToken": token} if token else {})
            page = s3.list_objects_v2(**kw)
            keys += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return keys
            token = page["NextContinuationToken"]

    def get(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def put(self, key: str, data: bytes):
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def stop(self):
        self.proc.stop()


class S3Tansu:
    """A Tansu broker with `--storage-engine s3://BUCKET/` on a MotoS3; restartable on the same port.
    `advertised_port` lets clients reach it through a relay."""

    def __init__(self, workdir: Path, s3: MotoS3, advertised_port: Optional[int] = None):
        self.dir, self.s3 = workdir, s3
        self.port = free_port()
        self.advertised_port = advertised_port or self.port
        self.starts = 0
        self.proc: Optional[Proc] = None
        self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self):
        env = dict(os.environ, AWS_ENDPOINT=self.s3.endpoint, AWS_ALLOW_HTTP="true", **S3_CREDENTIALS)
        self.starts += 1
        argv = [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine", f"s3://{self.s3.bucket}/"]
        self.proc = Proc(f"tansu-s3-{self.starts}", argv, self.dir / f"tansu-s3-{self.starts}.log", env=env)
        wait_for_api_versions(self.proc, self.port, 30)

    def kill(self, hard: bool = False):
        """Stops the broker: SIGTERM (then SIGKILL after 5 s), or SIGKILL at once with `hard`."""
        import signal

        if hard and self.proc.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.popen.wait(10)
        self.proc.stop()

    def restart(self, hard: bool = False, down_s: float = 1.0):
        self.kill(hard)
        time.sleep(down_s)
        self.start()

    def stop(self):
        if self.proc:
            self.proc.stop()


class TcpRelay:
    """Copies bytes between clients and one upstream address; `reset_all()` aborts every
    connection with a TCP RST (SO_LINGER 0), as a network fault or a broker crash would.
    A relay rather than a real network fault: this machine gives tests no packet filter."""

    def __init__(self, upstream_port: int, port: Optional[int] = None):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port or 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.resets = 0
        self.aborted: set[socket.socket] = set()  # sockets reset_all() is aborting
        self.closed = False
        self.to_upstream = 0  # bytes relayed, for diagnosing stalls
        self.from_upstream = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.closed:
                client.close()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, "to_upstream"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "from_upstream"), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counter: str):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                setattr(self, counter, getattr(self, counter) + len(data))
        except OSError:
            pass
        if src in self.aborted or dst in self.aborted:
            return  # reset_all: the RST is sent when its close() takes effect, not a FIN from here
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def reset_all(self) -> int:
        import struct

        with self.lock:
            pairs, self.pairs = self.pairs, []
            self.aborted.update(s for pair in pairs for s in pair)
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    # close() alone does not wake a pump thread blocked in recv() on this socket,
                    # and the kernel keeps the socket open (no RST) until that recv() returns: a
                    # side with nothing more to send, such as Veil waiting for an answer, was left
                    # on a silent connection until the client's 60 s timeout. SHUT_RD wakes the
                    # reader without sending anything; the last close then sends the RST.
                    s.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
                s.close()
        self.resets += len(pairs)
        return len(pairs)

    def close(self):
        self.closed = True
        # As in reset_all: close() alone leaves the accept() in the accept thread blocked and the
        # port still accepting (one more connection would be relayed); shutdown wakes it.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.reset_all()


def socket_snapshot(pids: dict[str, int]) -> str:
    """Every TCP socket of the named processes, from `ss -tnpi`: Recv-Q is bytes its process
    has not read, Send-Q bytes its peer has not acknowledged, lastsnd/lastrcv (ms ago) when
    data last moved. Taken during a stall, it shows which hop holds the requests."""
    owner = {pid: name for name, pid in pids.items()}
    rows: list[str] = []
    current = None
    for line in subprocess.run(["ss", "-tnpiH"], capture_output=True, text=True).stdout.splitlines():
        if not line[:1].isspace():
            pid = re.search(r"pid=(\d+)", line)
            current = owner.get(int(pid.group(1))) if pid else None
            if current:
                state, recv_q, send_q, local, peer = line.split()[:5]
                rows.append(f"{current}: {local} -> {peer} {state} recv_q={recv_q} send_q={send_q}")
        elif current:
            info = re.findall(r"\b(bytes_received|bytes_acked|lastsnd|lastrcv):(\d+)", line)
            rows[-1] += "".join(f" {k}={v}" for k, v in info)
    return "\n".join(rows)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


FIELDS_PREFIX = "fieldenc-"  # topics whose JSON fields `ssn` and `name` are encrypted one by one


def writer_config(keyring: Path, prefix: str) -> dict:
    """An encrypting sidecar: every topic starting with `prefix` is sealed with writer/k as a
    whole value; on FIELDS_PREFIX topics the fields `ssn` and `name` are."""
    return {"kms": {"writer": {"type": "local", "keyring": str(keyring)}},
            "grants": {"encrypt": ["writer/k"]},
            "topics": [{"match": {"prefix": prefix}, "encrypt": {"key_from": {"fixed": "writer/k"}}},
                       {"match": {"prefix": FIELDS_PREFIX},
                        "encrypt": {"key_from": {"fixed": "writer/k"}, "fields": ["ssn", "name"]}}]}


def reader_config(keyring: Path, prefix: str, on_denied: str = "error", placeholder: str = "") -> dict:
    """A decrypting sidecar for the same topics; plaintext on them is refused (`on_denied`)."""
    rule = {"match": {"prefix": prefix}, "require_encrypted": True, "on_denied": on_denied}
    if placeholder:
        rule["redact_placeholder"] = placeholder
    fields_rule = {"match": {"prefix": FIELDS_PREFIX}, "require_encrypted": True, "on_denied": on_denied,
                   "on_denied_field": "redact"}
    return {"kms": {"writer": {"type": "local", "keyring": str(keyring)}},
            "grants": {"decrypt": ["writer/k"]}, "topics": [rule, fields_rule]}


def start_sidecar_pair(env, prefix: str, **reader_options):
    """Keyrings (writer's key granted to the reader) and the two sidecars, in an EncEnv."""
    env.create_keyring("writer", "writer", "k")
    env.grant_keyring("writer", "reader", "reader", "k")
    w = env.start_sidecar("writer", writer_config(env.keyrings["writer"], prefix))
    r = env.start_sidecar("reader", reader_config(env.keyrings["reader"], prefix, **reader_options))
    return w, r

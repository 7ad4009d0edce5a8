"""deploy/Dockerfile ships every shared library the release binary links.

`ldd` lists what the binary needs at run time. Each library is either part of the Swift
toolchain (then the Dockerfile's build stage must link the Swift runtime statically, as the
runtime stage has no toolchain) or a file of a Debian package (found with `dpkg -S`), which
the runtime stage's `apt-get install` must name.

The binary is $VEIL_BIN, else .build/release/veil (build it with
`swift build -c release --product veil`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"


def veil_binary() -> Path:
    path = Path(os.environ.get("VEIL_BIN", REPO / ".build" / "release" / "veil"))
    if not path.is_file():
        pytest.fail(f"{path} does not exist: build it with `swift build -c release --product veil` or set VEIL_BIN",
                    pytrace=False)
    return path


def stages(text: str) -> dict[str, str]:
    """The Dockerfile's stages by name (`FROM ... AS name`), each with its instructions, line continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    out: dict[str, str] = {}
    name = None
    for line in joined.splitlines():
        m = re.match(r"\s*FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m:
            name = m.group(1) or f"stage{len(out)}"
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    return out


def apt_installed(stage: str) -> set[str]:
    """Package names given to `apt-get install` in a stage."""
    packages = set()
    for m in re.finditer(r"apt-get\s+install\s+([^&;|]+)", stage):
        packages |= {w for w in m.group(1).split() if not w.startswith("-")}
    return packages


def linked_libraries(binary: Path) -> list[tuple[str, str]]:
    """(soname, resolved path) for each library ldd lists; the vDSO has no file and is left out."""
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    libs = []
    for line in r.stdout.splitlines():
        line = line.strip()
        m = re.match(r"(\S+)\s+=>\s+(\S+)\s+\(", line)
        if m:
            assert m.group(2) != "not", f"ldd cannot resolve {line}"
            libs.append((m.group(1), m.group(2)))
        elif line.startswith("/"):
            libs.append((Path(line.split()[0]).name, line.split()[0]))  # the dynamic loader
        else:
            assert line.startswith("linux-vdso") or line.startswith("statically linked"), f"unexpected ldd line: {line}"
    return libs


def debian_package(path: str) -> str | None:
    """The Debian package owning `path` (tried as given and resolved, as /lib is a link to /usr/lib)."""
    for candidate in dict.fromkeys([path, os.path.realpath(path)]):
        r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].strip()
    return None


def swift_toolchain_dir() -> Path:
    swiftc = shutil.which("swiftc")
    assert swiftc, "swiftc not on PATH"
    return Path(os.path.realpath(swiftc)).parents[1]  # .../usr


def test_runtime_stage_installs_every_linked_library():
    text = DOCKERFILE.read_text()
    st = stages(text)
    assert {"build", "runtime"} <= st.keys(), f"stages found: {list(st)}"
    runtime = apt_installed(st["runtime"])
    static_stdlib = "--static-swift-stdlib" in st["build"]
    toolchain = swift_toolchain_dir()
    missing, from_toolchain, checked = [], [], {}
    for soname, path in linked_libraries(veil_binary()):
        if Path(os.path.realpath(path)).is_relative_to(toolchain):
            from_toolchain.append(soname)
            continue
        package = debian_package(path)
        assert package, f"{soname} ({path}) belongs to no Debian package; the runtime image could not install it"
        checked[soname] = package
        if package not in runtime:
            missing.append(f"{soname} from {package}")
    assert not missing, f"deploy/Dockerfile's runtime stage does not install: {', '.join(missing)}"
    if from_toolchain:
        assert static_stdlib, (f"the binary links Swift runtime libraries ({', '.join(from_toolchain)}), which the runtime "
                               "image lacks: the build stage must use --static-swift-stdlib")
    print(f"linked from Debian packages: {checked}; Swift runtime (static in the image): {from_toolchain}")


def test_dockerfile_runs_as_non_root_with_health_check():
    st = stages(DOCKERFILE.read_text())
    runtime = st["runtime"]
    users = re.findall(r"^\s*USER\s+(\S+)", runtime, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"runtime USER: {users}"
    assert re.search(r'HEALTHCHECK .*CMD \["/usr/local/bin/veil", "health"\]', runtime), "HEALTHCHECK must run `veil health`"
    assert re.search(r"swift build -c release --product veil", st["build"])
    entry = REPO / "deploy" / "veil-entrypoint.sh"
    assert os.access(entry, os.X_OK), f"{entry} must be executable"
    assert "exec /usr/local/bin/veil run" in entry.read_text(), "the entrypoint must exec veil so it gets SIGTERM"


def test_entrypoint_writes_config_from_environment(tmp_path):
    """The entrypoint, run with a stand-in `veil` (the real one would start serving), writes
    VEIL_CONFIG to a private file and passes it to `veil run --config`."""
    stand_in = tmp_path / "bin" / "veil"
    stand_in.parent.mkdir()
    script = (REPO / "deploy" / "veil-entrypoint.sh").read_text().replace("/usr/local/bin/veil", str(stand_in))
    (tmp_path / "entry.sh").write_text(script)
    # Stand-in for the binary: prints its arguments and the config file it was given.
    stand_in.write_text('#!/bin/sh\necho "args: $*"\ncat "$3"\nstat -c %a "$3"\n')
    stand_in.chmod(0o755)
    (tmp_path / "tmp").mkdir()
    r = subprocess.run(["sh", str(tmp_path / "entry.sh"), "--log-level", "debug"], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path / "tmp"), "VEIL_CONFIG": "identity: x\n"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"args: run --config {tmp_path}/tmp/veil/veil.yaml --log-level debug"
    assert lines[1] == "identity: x" and lines[-1] == "600"

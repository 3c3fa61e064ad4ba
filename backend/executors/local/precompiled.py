"""Precompiled state for compiles: C++ headers, and a class-data-sharing archive of javac.

Both are built for exactly the flags the runtimes compile with, checked at start, and
rebuilt (when this process may write the directory) or ignored when they do not fit.

**Headers.**

GCC looks for ``<dir>/<header>.gch`` in every include directory before the header
itself, so putting one directory first on the include path (``-I``) makes
``#include <bits/stdc++.h>`` load the precompiled form unchanged. GCC itself refuses a
.gch built for other flags or by another compiler; on top of that the directory is
named after the compiler's identity and the flags, carries a manifest of every header
it was built from, and is checked at start with a real compile (``-H`` prints ``!`` for
a precompiled header that was used). A set that fails any check is rebuilt or ignored.

**javac.** A dynamic CDS archive (``-XX:ArchiveClassesAtExit``) of the classes javac loads
while compiling a small program, named after the JDK's identity and javac's JVM flags. It
is used only if a check compile loads javac's main class from it (``-Xlog:class+load``).

The directory defaults to /usr/local/lib/piston-pch: under /usr, which every sandbox
binds read-only, so submissions see the same path without an extra mount.

    python -m backend.executors.local.precompiled build [--root DIR]   (scripts/setup.sh, the Dockerfile)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from backend.runtimes import CXX_FLAGS, JAVAC_JVM_FLAGS, SPECS

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/usr/local/lib/piston-pch"
# Headers whose precompiled form pays for itself (measured by bench/bench_local.py): the
# competitive-programming catch-all, and iostream, the usual first include otherwise.
HEADERS = ("bits/stdc++.h", "iostream")
FORMAT = "1"
BUILD_TIMEOUT_S = 300
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def _run(argv: Sequence[str], stdin: str = "", timeout: float = BUILD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
                          env=_ENV, cwd="/")


def compiler_identity(cxx: str) -> str:
    """What makes a .gch valid besides the flags: the exact compiler build, down to cc1plus's bytes."""
    verbose = _run([cxx, "-v"]).stderr
    cc1plus = _run([cxx, "-print-prog-name=cc1plus"]).stdout.strip()
    parts = [verbose]
    for path in (cxx, cc1plus):
        real = os.path.realpath(path)
        st = os.stat(real)
        parts.append(f"{real} {st.st_size} {st.st_mtime_ns}")
    return "\n".join(parts)


def set_dir(root: str, cxx: str, flags: Sequence[str]) -> Path:
    digest = hashlib.sha256("\0".join([FORMAT, compiler_identity(cxx), *flags]).encode()).hexdigest()[:24]
    return Path(root) / digest


def _dependencies(cxx: str, flags: Sequence[str], header: str) -> list[str]:
    """Every file ``#include <header>`` reads, the header itself first."""
    result = _run([cxx, *flags, "-x", "c++", "-M", "-"], stdin=f"#include <{header}>\n")
    if result.returncode != 0:
        raise OSError(f"cannot list the dependencies of <{header}>: {result.stderr.strip()[:300]}")
    deps = result.stdout.replace("\\\n", " ").split(":", 1)[1].split()
    main = next((d for d in deps if d.endswith(f"/{header}")), None)
    if main is None:
        raise OSError(f"<{header}> not found by {cxx}")
    return [main, *(d for d in deps if d != main)]


def _stamp(path: str) -> list[object]:
    st = os.stat(path)
    return [path, st.st_size, st.st_mtime_ns]


def _used(cxx: str, flags: Sequence[str], directory: Path, header: str) -> bool:
    """Whether GCC really uses ``directory``'s .gch for ``header`` with these flags."""
    result = _run([cxx, *flags, "-I", str(directory), "-Winvalid-pch", "-H", "-fsyntax-only", "-x", "c++", "-"],
                  stdin=f"#include <{header}>\nint main() {{}}\n", timeout=60)
    return result.returncode == 0 and f"! {directory}/{header}.gch" in result.stderr.splitlines()


def valid(directory: Path, cxx: str, flags: Sequence[str]) -> bool:
    """The set is complete, built from the headers as they are now, and accepted by GCC."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        if manifest.get("flags") != list(flags) or sorted(manifest.get("headers", {})) != sorted(HEADERS):
            return False
        for header, stamps in manifest["headers"].items():
            # GCC accepts any .gch built with the same flags under the header's name; the first
            # stamp is the file that was precompiled, so a set built from the wrong file fails here.
            if not str(stamps[0][0]).endswith(f"/{header}"):
                return False
            if any(_stamp(str(entry[0])) != entry for entry in stamps):
                return False
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    return all(_used(cxx, flags, directory, header) for header in HEADERS)


def build(root: str, cxx: str, flags: Sequence[str]) -> Path:
    """Build the set into a temporary directory and move it into place whole."""
    target = set_dir(root, cxx, flags)
    Path(root).mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        headers: dict[str, list[list[object]]] = {}
        for header in HEADERS:
            deps = _dependencies(cxx, flags, header)
            out = tmp / f"{header}.gch"
            out.parent.mkdir(parents=True, exist_ok=True)
            result = _run([cxx, *flags, "-x", "c++-header", deps[0], "-o", str(out)])
            if result.returncode != 0:
                raise OSError(f"precompiling <{header}> failed: {result.stderr.strip()[:500]}")
            headers[header] = [_stamp(d) for d in deps]
        (tmp / "manifest.json").write_text(json.dumps({"flags": list(flags), "headers": headers}))
        for path in [tmp, *tmp.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o444)
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not valid(target, cxx, flags):
        raise OSError(f"the precompiled headers in {target} are not accepted by {cxx}")
    return target


def _ensure(root: str, what: str, target: Callable[[], Path], is_valid: Callable[[Path], bool],
            make: Callable[[], Path], *, may_build: bool) -> Path | None:
    """``target()`` if it checks out, else (when allowed) built under a lock, else None."""
    try:
        path = target()
        if is_valid(path):
            return path
        if not may_build:
            log.info("no usable %s at %s", what, path)
            return None
        Path(root).mkdir(parents=True, exist_ok=True)
        # Several workers (or services) starting at once build it once.
        with open(Path(root) / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if is_valid(path):
                return path
            log.info("building %s at %s", what, path)
            return make()
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("compiling without %s: %s", what, exc)
        return None


def prepare(root: str, cxx: str, flags: Sequence[str], *, may_build: bool) -> Path | None:
    """The directory to put first on the include path, or None to compile without."""
    return _ensure(root, "precompiled headers", lambda: set_dir(root, cxx, flags),
                   lambda path: valid(path, cxx, flags), lambda: build(root, cxx, flags), may_build=may_build)


# ---------------------------------------------------------------- javac class-data sharing

# Loads the parts of javac an ordinary submission needs: generics, lambdas, collections, records.
JAVAC_TRAINING = """import java.util.*;
import java.util.stream.*;
public class Main {
    record Pair(int a, long b) {}
    interface Op { long apply(long x); }
    public static void main(String[] args) throws Exception {
        Scanner in = new Scanner(System.in);
        List<Pair> pairs = new ArrayList<>();
        Map<Integer, List<Long>> groups = new TreeMap<>();
        Op twice = x -> x * 2;
        for (int i = 0; i < 10; i++) { pairs.add(new Pair(i, twice.apply(i))); }
        groups.computeIfAbsent(1, k -> new ArrayList<>()).add(3L);
        String s = pairs.stream().map(p -> String.valueOf(p.b())).collect(Collectors.joining(","));
        StringBuilder sb = new StringBuilder(s);
        try { System.out.println(sb.reverse() + " " + groups + String.format("%.3f", Math.sqrt(2))); }
        catch (RuntimeException e) { throw new IllegalStateException(e); }
    }
}
"""
JAVAC_MAIN_CLASS = "com.sun.tools.javac.main.Main"


def jdk_identity(javac: str) -> str:
    real = os.path.realpath(javac)
    home = Path(real).parent.parent
    parts = [_run([javac, "-J-Xinternalversion"], timeout=60).stdout.strip()]
    for path in (real, str(home / "lib" / "server" / "libjvm.so"), str(home / "lib" / "modules")):
        with contextlib.suppress(OSError):
            st = os.stat(path)
            parts.append(f"{path} {st.st_size} {st.st_mtime_ns}")
    return "\n".join(parts)


def javac_archive_path(root: str, javac: str, jvm_flags: Sequence[str]) -> Path:
    digest = hashlib.sha256("\0".join([FORMAT, jdk_identity(javac), *jvm_flags]).encode()).hexdigest()[:24]
    return Path(root) / f"javac-{digest}.jsa"


def _javac(javac: str, jvm_flags: Sequence[str], extra: Sequence[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="javac-cds-") as work:
        (Path(work) / "Main.java").write_text(JAVAC_TRAINING)
        return subprocess.run([javac, *[f"-J{f}" for f in (*jvm_flags, *extra)], "-encoding", "UTF-8", "-d", ".",
                               "Main.java"], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
                              env=_ENV, cwd=work)


def javac_archive_valid(archive: Path, javac: str, jvm_flags: Sequence[str]) -> bool:
    if not archive.is_file():
        return False
    result = _javac(javac, jvm_flags, [f"-XX:SharedArchiveFile={archive}", "-Xlog:class+load=info:stdout"])
    return result.returncode == 0 and not result.stderr and any(
        f" {JAVAC_MAIN_CLASS} source: shared objects file" in line for line in result.stdout.splitlines())


def build_javac_archive(root: str, javac: str, jvm_flags: Sequence[str]) -> Path:
    target = javac_archive_path(root, javac, jvm_flags)
    Path(root).mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    tmp = Path(root) / f".javac-{os.getpid()}.jsa"  # the JVM creates the file itself
    try:
        result = _javac(javac, jvm_flags, [f"-XX:ArchiveClassesAtExit={tmp}"])
        if result.returncode != 0 or not tmp.exists():
            raise OSError(f"dumping javac's class-data archive failed: {(result.stderr or result.stdout)[:500]}")
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if not javac_archive_valid(target, javac, jvm_flags):
        raise OSError(f"{javac} does not load its classes from {target}")
    return target


def prepare_javac_archive(root: str, javac: str, jvm_flags: Sequence[str], *, may_build: bool) -> Path | None:
    """The archive javac's JVM should map, or None to compile without."""
    return _ensure(root, "a javac class-data archive", lambda: javac_archive_path(root, javac, jvm_flags),
                   lambda path: javac_archive_valid(path, javac, jvm_flags),
                   lambda: build_javac_archive(root, javac, jvm_flags), may_build=may_build)


def default_binary(language: str, role: str) -> str | None:
    return next((c for c in SPECS[language].binaries[role] if os.access(c, os.X_OK)), None)


def default_cxx() -> str | None:
    return default_binary("c++", "cxx")


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the local sandbox's precompiled headers and javac archive.")
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--root", default=os.environ.get("SANDBOX_PCH_DIR") or DEFAULT_ROOT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with contextlib.suppress(FileExistsError):
        Path(args.root).mkdir(parents=True)
    failed = False
    if (cxx := default_cxx()) is not None:
        directory = prepare(args.root, cxx, CXX_FLAGS, may_build=True)
        print(f"c++ precompiled headers: {directory}")
        failed |= directory is None
    if (javac := default_binary("java", "javac")) is not None:
        archive = prepare_javac_archive(args.root, javac, JAVAC_JVM_FLAGS, may_build=True)
        print(f"javac class-data archive: {archive}")
        failed |= archive is None
    if failed:
        raise SystemExit("building precompiled state failed")


if __name__ == "__main__":
    main()

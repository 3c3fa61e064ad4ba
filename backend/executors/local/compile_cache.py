"""The compile cache: a successful compile's box, reused by the next identical submission.

An entry is keyed by everything that decides what a compile produces: the runtime, its
exact version and binaries (path, size, mtime), the compile command, the compile limits,
and every file's name, flag and SHA-256. Only successful compiles are stored. Entries live
in the service's state directory (root only, mode 0700), which no sandbox binds: a
submission can neither see nor change them, and a hit copies the artifact into the slot's
box, so a run that rewrites its own ``a.out`` changes only its copy. The total size is
bounded; the least recently used entries go first. Identical submissions arriving together
compile once: the second waits for the first's entry (a lock file per key).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from backend.models import Limits, SourceFile, StageResult
from backend.runtimes import Runtime

log = logging.getLogger(__name__)
FORMAT = "1"


def _binary_identity(path: str) -> list[object]:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return [real]
    return [real, st.st_size, st.st_mtime_ns]


def cache_key(runtime: Runtime, argv: Sequence[str], renames: Sequence[tuple[str, str]],
              files: Sequence[SourceFile], limits: Limits) -> str:
    material = {
        "format": FORMAT,
        "runtime": [runtime.language, runtime.version],
        "binaries": {role: _binary_identity(path) for role, path in sorted(runtime.binaries.items())},
        "argv": list(argv),
        "renames": [list(r) for r in renames],
        "limits": dataclasses.asdict(limits),
        "files": [[f.name, f.is_source, hashlib.sha256(f.content).hexdigest()] for f in files],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _tree_size(root: Path) -> int:
    return sum(entry.stat(follow_symlinks=False).st_size for entry in _walk(root))


def _walk(root: Path) -> Iterator[os.DirEntry[str]]:
    for entry in os.scandir(root):
        yield entry
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))


def copy_tree(source: Path, target: Path, owner: int | None) -> None:
    """Copy regular files, directories and symlinks (never followed) with their modes.

    Anything else a compile may have left (a FIFO would block the reader) is skipped.
    """
    target.mkdir(exist_ok=True)
    for entry in os.scandir(source):
        dest = target / entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            copy_tree(Path(entry.path), dest, owner)
            os.chmod(dest, stat.S_IMODE(st.st_mode) | 0o700)
        elif stat.S_ISLNK(st.st_mode):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
            os.symlink(os.readlink(entry.path), dest)
        elif stat.S_ISREG(st.st_mode):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)  # a fresh inode: never write through a link left in the box
            shutil.copyfile(entry.path, dest, follow_symlinks=False)
            os.chmod(dest, stat.S_IMODE(st.st_mode) & 0o755)
        else:
            continue
        if owner is not None:
            os.lchown(dest, owner, owner)


class CompileCache:
    """Entries are directories ``<root>/<key>/`` holding ``box/`` and ``meta.json``."""

    def __init__(self, root: str, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        (self.root / "locks").mkdir(exist_ok=True)

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """Hold the key: a second identical compile waits here, then finds the entry.

        flock excludes every other open of the file, in this process's threads as in other processes.
        """
        lock = self.root / "locks" / key
        with open(lock, "w") as fd:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if not (self.root / key).exists():
                    # A failed compile leaves no entry; its lock would stay forever. A waiter that
                    # opened the old file may compile once more alongside a newcomer: only work lost.
                    with contextlib.suppress(OSError):
                        os.unlink(lock)

    def get(self, key: str, box: Path, owner: int | None) -> StageResult | None:
        entry = self.root / key
        try:
            meta = json.loads((entry / "meta.json").read_text())
            copy_tree(entry / "box", box, owner)
            os.utime(entry / "meta.json")  # least recently used goes first
        except (OSError, ValueError):
            return None  # absent, or evicted while being read: compile
        stage = StageResult.from_json(meta["stage"])
        stage.cached = True
        return stage

    def put(self, key: str, box: Path, stage: StageResult) -> None:
        if not stage.ok or self.max_bytes <= 0:
            return
        try:
            size = _tree_size(box)
            if size > self.max_bytes // 4:
                return  # one huge artifact would flush everything else
            tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=self.root))
            try:
                copy_tree(box, tmp / "box", None)
                body = {**stage.to_json(), "memory_exceeded": stage.memory_exceeded}
                body.pop("cached", None)
                (tmp / "meta.json").write_text(json.dumps({"stage": body, "size": size, "created": time.time()}))
                os.rename(tmp, self.root / key)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
                return
        except OSError:
            log.exception("storing a compile in the cache failed")
            return
        self._evict()

    def _evict(self) -> None:
        """Drop the least recently used entries until the total fits (other processes' included)."""
        entries: list[tuple[float, int, Path]] = []
        for path in self.root.iterdir():
            if path.name == "locks" or path.name.startswith("."):
                continue
            try:
                meta = path / "meta.json"
                entries.append((meta.stat().st_mtime, int(json.loads(meta.read_text())["size"]), path))
            except (OSError, ValueError, KeyError):
                shutil.rmtree(path, ignore_errors=True)
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            trash = self.root / f".old-{path.name}"
            with contextlib.suppress(OSError):
                os.rename(path, trash)
                shutil.rmtree(trash, ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.unlink(self.root / "locks" / path.name)
            total -= size

    def stats(self) -> dict[str, int]:
        entries = [p for p in self.root.iterdir() if p.name != "locks" and not p.name.startswith(".")]
        return {"entries": len(entries), "max_bytes": self.max_bytes}

"""The session harness: runs INSIDE a dynamic session (a Jupyter kernel), standard library only.

Dynamic sessions take Python source and give back the kernel's stdout: no stdin, no exit
codes. So the backend sends this file's source with a request; ``entry`` writes the
submission into a fresh private directory, compiles it once, runs it for each run spec as
a subprocess with stdin, rlimits and a wall timeout (through the reaper, which measures
the program's own rusage), derives each stage's status exactly as the local executor does, kills
everything the submission left and removes its files, then prints one result line:
``__PISTON__<nonce> <json>``, or ``__PISTON__<nonce> @<file>`` when the JSON is too long
for the session's inline output (the file is in the data dir; the backend downloads and
deletes it). Protocol: see ``harness.py``. Run as a script (``python harness_session.py
< request.json``) it does the same outside a session, which is how it is unit-tested.

Isolation, the strongest per-run separation the kernel allows (``info.isolation``, found once):

- ``uid``: the kernel is root (the emulator's ``host`` profile). Programs run as a fresh
  unprivileged uid per execution: they cannot signal the kernel or change its files, and
  RLIMIT_NPROC counts only their own processes.
- ``userns``: the kernel is unprivileged (a real PythonLTS session runs as ``ubuntu``) but may
  create user namespaces. Each stage runs in namespaces of its own (see ``reaper_session.py``):
  a read-only file system with a private /tmp, its own pid namespace (nothing outside, the
  kernel included, can be seen, signalled or traced) and no network.
- ``none``: programs run as the kernel's own user, with the kernel's file system. They can
  change what the next submission sees and signal the kernel; the cleanup after each
  execution (leftover processes killed, files in /tmp and the data dir removed, the writable
  sys.path dirs and the home dir restored to what they were before the first submission)
  is as strong as it can be, but the backend must not give this session to another submission.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import zlib

PROTOCOL = 1
MARK = "__PISTON__"
KERNEL_PYTHON = "@kernel-python"  # a probe candidate: this interpreter
# Cases run at once inside one session when each worker is separated from the others.
PARALLEL_RUNS = max(1, min(4, os.cpu_count() or 1))
ISOLATIONS = ("uid", "userns", "none")  # strongest first
# Tests (script mode) set this to try a weaker path than the kernel allows.
ISOLATION_CAP_ENV = "PISTON_HARNESS_ISOLATION"
USERNS_NPROC_KERNEL = (5, 14)  # from this kernel on, RLIMIT_NPROC counts per user namespace
NS_PROCESSES = 2  # the reaper and the namespace's init, in the program's user namespace
PR_SET_CHILD_SUBREAPER = 36
UID_RANGE = (30000, 60000)  # inside the 0..65535 a user namespace maps at least
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # world-writable: where a submission can leave files
IO_PREFIXES = ("piston-in-", "piston-out-")  # request/result files in the data dir
BOX_PREFIX = "piston-box-"

# Sources of the run rules, the reaper and the output comparison (match): set by the backend in this
# namespace, else read from the repository (script mode).
RULES_SOURCE: str = globals().get("RULES_SOURCE") or ""
REAPER_SOURCE: str = globals().get("REAPER_SOURCE") or ""
COMPARE_SOURCE: str = globals().get("COMPARE_SOURCE") or ""


def _sibling(relative: str) -> str:
    """A file next to this one, when run as a script (the backend sends the sources instead)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), relative)) as f:
        return f.read()


def _load_rules() -> types.ModuleType:
    """backend/runrules.py: the rlimits, the capped read, the meta line, the status and the probe."""
    module = types.ModuleType("piston_runrules")
    exec(compile(RULES_SOURCE or _sibling("../../runrules.py"), "runrules.py", "exec"), module.__dict__)
    return module


rules = _load_rules()


# ---------------------------------------------------------------- kernel-wide state

STATE_DEFAULTS = {
    "baseline": None,  # the kernel's own descendants, seen before any submission ran
    "uids": [],  # uids handed to submissions so far
    "subreaper": False,
    "can_drop": None,
    "isolation": None,  # one of ISOLATIONS, found at the first request
    "isolation_detail": None,  # why a stronger one was not possible
    "guard": None,  # "none": what the writable sys.path dirs and the home dir were at first
    "unguarded": False,  # "none": a submission ran with "last_use", before any snapshot
}


def _state() -> types.SimpleNamespace:
    """State kept across executions in this kernel (a module in sys.modules survives our namespace).

    Shared by every harness version a long-lived kernel has run: what an older one did not keep
    is added here.
    """
    module = sys.modules.get("__piston_session_state__")
    if module is None:
        module = types.ModuleType("__piston_session_state__")
        sys.modules[module.__name__] = module
    for name, value in STATE_DEFAULTS.items():
        if not hasattr(module, name):
            setattr(module, name, list(value) if isinstance(value, list) else value)
    return module  # type: ignore[return-value]


def _set_subreaper() -> bool:
    # Orphans (setsid + double fork daemons) reparent to us instead of init, so they stay findable.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, uid, state) for every process we can see (uid: the owner of /proc/<pid>)."""
    table: dict[int, tuple[int, int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
            uid = os.stat(f"/proc/{name}").st_uid
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(name)] = (int(fields[1]), uid, fields[0])
    return table


def _descendants(table: dict[int, tuple[int, int, str]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def kill_leftovers(uids: list[int], *, only_uids: bool = False) -> int:
    """SIGKILL every process a submission may have left; reap those that became our children.

    ``only_uids``: spare descendants of other uids (root-owned reapers of cases running in
    parallel); a submission cannot leave processes under another uid than its own.
    """
    state = _state()
    me = os.getpid()
    killed: set[int] = set()
    for _ in range(100):
        table = _processes()
        ours = _descendants(table, me) - state.baseline
        # Zombies that became our children (orphans of a submission): reap, never signal.
        _reap({pid for pid in ours if table[pid][2] == "Z" and table[pid][0] == me})
        victims = {pid for pid in ours if table[pid][2] != "Z" and (not only_uids or table[pid][1] in uids)}
        if not state.subreaper:
            # Without a subreaper, setsid daemons escape the tree; their uid still gives them away.
            victims |= {pid for pid, (_, uid, st) in table.items() if uid in uids and st != "Z" and pid != me}
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed |= victims
        _reap(killed)
        if not victims:
            break
        time.sleep(0.005)
    return len(killed)


def _reap(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _can_drop() -> bool:
    """Whether this kernel can run a program as another uid (it is root, and setresuid works)."""
    state = _state()
    if os.geteuid() != 0:
        return False
    if state.can_drop is None:
        uid = UID_RANGE[0]
        probe = subprocess.run(
            [sys.executable, "-S", "-c", f"import os; os.setgroups([]); os.setresgid(*[{uid}]*3); os.setresuid(*[{uid}]*3)"],
            capture_output=True, timeout=30, check=False,
        )
        state.can_drop = probe.returncode == 0
    return state.can_drop


def _pick_uid() -> int | None:
    if isolation() != "uid":
        return None
    busy = {uid for _, uid, _ in _processes().values()}
    for _ in range(100):
        uid = UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0])
        if uid not in busy:
            return uid
    return None


def isolation() -> str:
    """The strongest separation this kernel allows (one of ISOLATIONS), found once."""
    state = _state()
    if state.isolation is None:
        cap = os.environ.get(ISOLATION_CAP_ENV, "uid")
        allowed = ISOLATIONS[ISOLATIONS.index(cap):] if cap in ISOLATIONS else ISOLATIONS
        if "uid" in allowed and _can_drop():
            state.isolation = "uid"
        elif "userns" in allowed and _userns_works():
            state.isolation = "userns"
        else:
            state.isolation = "none"
    return state.isolation


USERNS_CHECK = "import os; open('written', 'w').write('x'); print('ok', os.getpid(), os.path.exists('/proc/self/stat'))"


def _userns_works() -> bool:
    """Run one real stage in namespaces: the kernel may forbid them (sysctl, AppArmor, seccomp)."""
    box = Workdir(None, namespaces=True)
    try:
        limits = {"timeout_ms": 10_000, "cpu_time_ms": 10_000, "memory_bytes": -1, "output_max_size": 1024,
                  "max_processes": 8, "max_open_files": 64, "max_file_size": 1024}
        stage = run_stage(box, [sys.executable, "-S", "-c", USERNS_CHECK], "", limits)
        if stage["status"] is None and stage["stdout"] == "ok 2 True\n":
            return True
        if stage["status"] is None and stage["stdout"] == "ok 2 False\n":
            # Where the kernel's own /proc has masked paths (as in Docker and bwrap), no new /proc can
            # be mounted: programs get an empty one, never the kernel's (which would reach its processes).
            _state().isolation_detail = "no /proc in the namespaces: the kernel's /proc has masked paths"
            return True
        _state().isolation_detail = f"namespaces refused: {stage['status']} {stage['output'][-300:]!r}"
    except OSError as exc:
        _state().isolation_detail = f"namespaces refused: {exc}"
    finally:
        box.remove()
    return False


def data_dir(request: dict) -> str:
    given = request.get("data_dir") or os.environ.get("SESSION_DATA_DIR")
    if given:
        return given
    return "/mnt/data" if os.path.isdir("/mnt/data") else os.getcwd()


# ---------------------------------------------------------------- one stage

def _own_threads() -> int:
    """Threads running as our uid now: RLIMIT_NPROC counts them against a program that shares it."""
    return sum(len(os.listdir(f"/proc/{p}/task")) for p, (_, u, _) in _processes().items()
               if u == os.getuid() and os.path.isdir(f"/proc/{p}/task"))


def _nproc_others(box: Workdir) -> int | None:
    """What else counts against the program's RLIMIT_NPROC (see runrules.rlimits)."""
    if box.uid is not None:
        return 0  # a uid of its own: the reaper runs as root, only the program counts
    if os.geteuid() == 0:
        return None  # root: NPROC does not bind
    release = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    if box.namespaces and release >= USERNS_NPROC_KERNEL:
        return NS_PROCESSES
    # The count is per uid and we share the kernel's: allow what already runs plus the limit.
    return _own_threads()


def kernel_endpoints() -> list[str]:
    """The kernel's own unix sockets (ZMQ's ipc transport, as in the emulator) and connection file
    (the key that signs its messages): what a program sharing the kernel's uid could use to make the
    kernel run code. Sockets bound in our network namespace and owned by us, from /proc/net/unix."""
    found: list[str] = []
    with contextlib.suppress(OSError), open("/proc/net/unix") as f:
        for line in f.read().splitlines()[1:]:
            parts = line.split()
            path = parts[7] if len(parts) >= 8 else ""
            with contextlib.suppress(OSError):
                if path.startswith("/") and os.lstat(path).st_uid == os.geteuid() and stat.S_ISSOCK(
                        os.lstat(path).st_mode) and path not in found:
                    found.append(path)
    connect = sys.modules.get("ipykernel.connect")  # a Jupyter kernel has it loaded; never imported here
    if connect is not None:
        with contextlib.suppress(Exception):
            found.append(os.path.realpath(connect.get_connection_file()))
    for d in {os.path.dirname(p) for p in found}:
        with contextlib.suppress(OSError):
            found += [os.path.join(d, n) for n in os.listdir(d)
                      if n.startswith("kernel") and n.endswith(".json") and os.path.join(d, n) not in found]
    return found


def _covered_runtime(covered: list[str]) -> list[str]:
    """The kernel's interpreter dirs that lie in a dir the namespaces cover (a venv below /tmp)."""
    found: list[str] = []
    real = [os.path.realpath(c).rstrip("/") + "/" for c in covered]
    for path in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))):
        path = os.path.realpath(path)
        if any(path.startswith(c) for c in real) and path not in found and os.path.isdir(path):
            found.append(path)
    return found


def run_stage(box: Workdir, argv: list[str], stdin: str, limits: dict) -> dict:
    """Run one command in the box; return Piston's stage fields (+ memory_exceeded)."""
    box.reset_tmp()
    box.seq += 1
    stdin_path = os.path.join(box.io, f"stdin-{box.seq}")
    with open(stdin_path, "wb") as f:
        f.write(stdin.encode("utf-8", "surrogatepass"))
    args = ["-m", "", "-i", stdin_path, "-d", box.box, "-c", str(limits["cpu_time_ms"]),
            "-t", str(limits["timeout_ms"])]
    if box.uid is not None:
        args += ["-u", str(box.uid), "-g", str(box.uid)]
    if box.namespaces:
        args += ["-n", "-w", box.box, "-w", box.tmp]
        covered = [*SCRATCH_DIRS, *([box.data] if box.data else [])]
        for path in covered:
            args += ["-h", path]
        for path in _covered_runtime(covered):
            args += ["-k", path]
        for path in box.masked:
            args += ["-x", path]
    for spec in rules.rlimit_specs(rules.rlimits(limits, memory=True, nproc_others=_nproc_others(box))):
        args += ["-r", spec]
    for key, value in box.env().items():
        args += ["-e", f"{key}={value}"]
    outcome = _collect(args, argv, limits, box.uids)
    if not box.namespaces:  # a namespace takes everything in it down with its init
        box.killed += kill_leftovers(box.uids, only_uids=bool(box.uids))
    return derive_status(outcome, limits)


def _collect(args: list[str], argv: list[str], limits: dict, uids: list[int]) -> dict:
    meta_r, meta_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    args[1] = str(meta_w)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", (RULES_SOURCE or _sibling("../../runrules.py")) + "\n"
             + (REAPER_SOURCE or _sibling("reaper_session.py")), *args, "--", *argv],
            stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, pass_fds=(meta_w,), close_fds=True,
            env={"PATH": rules.SANDBOX_PATH, "LANG": "C.UTF-8"}, cwd="/",
        )
    finally:
        for fd in (meta_w, out_w, err_w):
            os.close(fd)

    def kill() -> None:
        # This stage's reaper and all below it; cases running in parallel keep theirs.
        tree = _descendants(_processes(), proc.pid)
        for pid in (proc.pid, *tree):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        kill_leftovers(uids, only_uids=True)

    try:
        outcome = rules.collect(out_r, err_r, meta_r, output_max_size=limits["output_max_size"],
                                timeout_ms=limits["timeout_ms"], started=started, kill=kill, start_mark=True,
                                until_meta=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    finally:
        for fd in (meta_r, out_r, err_r):
            os.close(fd)
    return outcome


def derive_status(o: dict, limits: dict) -> dict:
    """Piston's stage fields from an outcome: the rules of backend/runrules.py, as locally.

    The local executor learns of memory-limit kills from its cgroup's OOM events; here the
    only sign is a SIGKILL that neither the reaper nor the harness sent, which in a session
    can only come from the container's OOM killer. (Under RLIMIT_DATA an allocation simply
    fails, and the status comes from the runtime's message, as it does locally without cgroups.)
    """
    ws = o.get("wait_status")
    oom = (ws is not None and os.WIFSIGNALED(ws) and os.WTERMSIG(ws) == signal.SIGKILL
           and not o.get("killed_by") and not o["timed_out"] and not o["overflow"])
    return rules.stage_fields(o, limits["cpu_time_ms"], peak_memory=None, oom_killed=oom)


# ---------------------------------------------------------------- the box

def _box_parent(uid: int | None) -> str:
    """The kernel's temp dir, unless an unprivileged uid could not reach a box there."""
    candidates = [tempfile.gettempdir(), *SCRATCH_DIRS]
    if uid is None:
        return candidates[0]
    for candidate in candidates:
        path, ok = os.path.realpath(candidate), True
        while ok and path != "/":
            ok = os.path.isdir(path) and bool(os.stat(path).st_mode & 0o001)  # others may traverse
            path = os.path.dirname(path)
        if ok:
            return candidate
    return candidates[0]


class Workdir:
    """A fresh private directory: ``box`` (the cwd, the program's files), ``tmp`` and ``io`` (stdin).

    ``uid``: the program's own uid ("uid" isolation); ``namespaces``: each stage runs in
    namespaces of its own ("userns"), where ``data`` (the data dir) is hidden.
    """

    def __init__(self, uid: int | None, *, namespaces: bool = False, data: str | None = None) -> None:
        self.uid = uid
        self.uids = [uid] if uid is not None else []
        self.namespaces = namespaces
        self.data = data
        self.masked = kernel_endpoints() if namespaces else []
        self.root = os.path.realpath(tempfile.mkdtemp(prefix=BOX_PREFIX, dir=_box_parent(uid)))
        os.chmod(self.root, 0o711)
        self.box = os.path.join(self.root, "box")
        self.tmp = os.path.join(self.root, "tmp")
        self.io = os.path.join(self.root, "io")
        self.seq = 0
        self.killed = 0  # processes killed after the stages
        # box and tmp belong to the program's uid alone (mode 0700), io (stdin files) to us.
        for path in (self.box, self.io):
            os.mkdir(path, 0o700)
        self._own(self.box)

    def _own(self, path: str) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)

    def env(self) -> dict[str, str]:
        return {"PATH": rules.SANDBOX_PATH, "LANG": "C.UTF-8", "HOME": self.tmp, "TMPDIR": self.tmp,
                "GOCACHE": os.path.join(self.tmp, ".gocache")}

    def reset_tmp(self) -> None:
        # Each stage gets an empty /tmp of its own, as each local sandbox gets a fresh tmpfs.
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.mkdir(self.tmp, 0o700)
        self._own(self.tmp)

    def write(self, name: str, content: bytes) -> None:
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid file name {name!r}")
        path = self.box
        for part in parts[:-1]:
            path = os.path.join(path, part)
            if not os.path.isdir(path):
                os.mkdir(path, 0o755)
                self._own(path)
        path = os.path.join(path, parts[-1])
        with open(path, "wb") as f:
            f.write(content)
        self._own(path)

    def rename(self, old: str, new: str) -> None:
        os.replace(os.path.join(self.box, old), os.path.join(self.box, new))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def clone(self, uid: int | None) -> Workdir:
        """A copy of the compiled box for a parallel worker, under its own uid or namespaces."""
        twin = Workdir(uid, namespaces=self.namespaces, data=self.data)
        shutil.copytree(self.box, twin.box, symlinks=True, dirs_exist_ok=True)
        if uid is not None:
            for root, dirs, files in os.walk(twin.box):
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), uid, uid)
        return twin


# ---------------------------------------------------------------- cleanup of files

def _entries(dirs: list[str]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for d in dirs:
        with contextlib.suppress(OSError):
            seen[d] = set(os.listdir(d))
    return seen


def remove_leftovers(before: dict[str, set[str]], uids: list[int]) -> int:
    """Remove what the submission created in the scratch dirs and the data dir.

    With a uid of its own, exactly the entries that uid owns (safe even where other
    sessions share /tmp, as in the emulator). Without one, new entries of our own uid since
    the snapshot, sparing other harness boxes.
    """
    doomed: list[str] = []
    for d, names in before.items():
        if uids:
            doomed += rules.owned_by(d, uids)
            continue
        with contextlib.suppress(OSError):
            for name in set(os.listdir(d)) - names:
                path = os.path.join(d, name)
                with contextlib.suppress(OSError):
                    if not name.startswith(BOX_PREFIX) and os.lstat(path).st_uid == os.geteuid():
                        doomed.append(path)
    for path in doomed:
        if os.path.lexists(path):
            _remove(path)
    return len(doomed)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


# ---------------------------------------------------------------- the kernel's own dirs ("none")

def guarded_dirs(data: str) -> list[str]:
    """Dirs where a file changes what a later Python program or the kernel does, and that we may write.

    Every dir on the kernel's sys.path and its site dirs (``.pth`` files, ``sitecustomize``,
    ``usercustomize``, any module a later program imports), the user site, or where it would be
    created, and the home dir. Not the scratch dirs and the data dir (and what is in it), whose
    new entries go after each execution anyway.
    """
    import site

    user_site = site.getusersitepackages()
    ancestor = user_site
    while not os.path.isdir(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)  # a user site a program could create
    candidates = [p for p in sys.path if p] + list(site.getsitepackages()) + [user_site, ancestor,
                                                                                os.path.expanduser("~")]
    data = os.path.realpath(data)
    scratch = [os.path.realpath(p) for p in (*SCRATCH_DIRS, tempfile.gettempdir())]
    found: list[str] = []
    for path in candidates:
        path = os.path.realpath(path)
        skipped = path in scratch or path == data or path.startswith(data.rstrip("/") + "/")
        if path not in found and not skipped and os.path.isdir(path) and os.access(path, os.W_OK):
            found.append(path)
    return found


class Guard:
    """The guarded dirs as they were before the first submission, and the way back to that.

    Every entry of each dir, and below it for the dirs on sys.path (up to WALK_MAX entries),
    with copies of the small files at the top of each dir (``.pth`` files, ``sitecustomize.py``,
    the home dir's dot files). After each execution: what is new goes, what changed is put back
    from its copy, a changed ``.pyc`` is removed (Python writes it again from its source), and
    any other change is counted as ``tainted``: it stays, and the session must not be reused.
    """

    WALK_MAX = 50_000
    COPY_MAX = 256 * 1024
    COPIES_MAX = 16 * 2**20

    def __init__(self, data: str, roots: list[tuple[str, bool]] | None = None) -> None:
        """``roots``: (dir, walk below it) pairs; by default the guarded dirs, all but the home dir walked."""
        home = os.path.realpath(os.path.expanduser("~"))
        self.roots = roots if roots is not None else [(path, path != home) for path in guarded_dirs(data)]
        self.seen = self._scan()
        self.tainted: set[str] = set()
        self.copies: dict[str, tuple[int, bytes]] = {}
        room = self.COPIES_MAX
        for root, _ in self.roots:
            with contextlib.suppress(OSError), os.scandir(root) as it:
                for entry in it:
                    with contextlib.suppress(OSError):
                        st = entry.stat(follow_symlinks=False)
                        if entry.is_file(follow_symlinks=False) and st.st_size <= min(self.COPY_MAX, room):
                            with open(entry.path, "rb") as f:
                                self.copies[entry.path] = (st.st_mode & 0o7777, f.read())
                            room -= st.st_size

    def _scan(self) -> dict[str, tuple[int, ...]]:
        seen: dict[str, tuple[int, ...]] = {}
        for root, deep in self.roots:
            stack, budget = [root], self.WALK_MAX
            while stack:
                with contextlib.suppress(OSError), os.scandir(stack.pop()) as it:
                    for entry in it:
                        with contextlib.suppress(OSError):
                            st = entry.stat(follow_symlinks=False)
                            is_dir = entry.is_dir(follow_symlinks=False)
                            # A dir's own times change whenever the kernel writes in it: its entries say more.
                            seen[entry.path] = (st.st_mode, st.st_ino) if is_dir else (
                                st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns)
                            budget -= 1
                            if is_dir and deep and budget > 0:
                                stack.append(entry.path)
        return seen

    def restore(self) -> tuple[int, int]:
        """Undo what changed since the first snapshot: (entries removed or put back, changes left so far)."""
        now = self._scan()
        fixed = 0
        for path in sorted(set(now) - set(self.seen), key=len):
            if os.path.lexists(path):
                _remove(path)
                fixed += 1
        for path, signature in list(self.seen.items()):
            if now.get(path) == signature:
                continue
            if path in self.copies and self._put_back(path):
                fixed += 1
                continue
            if path.endswith(".pyc"):
                with contextlib.suppress(OSError):
                    os.unlink(path)
                fixed += 1
                del self.seen[path]
                continue
            self.tainted.add(path)
            if path in now:
                self.seen[path] = now[path]
            else:
                del self.seen[path]
        return fixed, len(self.tainted)

    def _put_back(self, path: str) -> bool:
        mode, content = self.copies[path]
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)
            with open(path, "xb") as f:
                f.write(content)
            os.chmod(path, mode)
            st = os.lstat(path)
        except OSError:
            return False
        self.seen[path] = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns)
        return True


# ---------------------------------------------------------------- requests

def handle(request: dict, data: str) -> dict:
    state = _state()
    if not state.subreaper:
        state.subreaper = _set_subreaper()
    if state.baseline is None:
        state.baseline = _descendants(_processes(), os.getpid())
    mode = isolation()
    if "probe" in request:
        return {"v": PROTOCOL, "probe": probe(request["probe"]), "info": info(data)}
    if mode == "none" and state.guard is None:
        if request.get("last_use"):
            # No later submission runs here (the backend's word): the snapshot would cost a walk of
            # the kernel's site-packages for nothing.
            state.unguarded = True
        else:
            state.guard = Guard(data)  # before any submission ran
    started = time.monotonic()
    uid = _pick_uid()
    if uid is not None:
        state.uids.append(uid)
    elif mode == "uid":
        raise RuntimeError("no free uid for the program")  # never run it as the root kernel instead
    # Leftovers of an execution the service interrupted (its harness never got to clean up).
    kill_leftovers(state.uids)
    # Where a program can leave files: a fresh uid, in world-writable dirs; the kernel's own uid,
    # anywhere the kernel may write; in namespaces, nowhere that outlives the stage.
    scan = {"uid": [*SCRATCH_DIRS, data, *guarded_dirs(data)], "none": [*SCRATCH_DIRS, data]}.get(mode, [])
    before = _entries(scan)
    box = Workdir(uid, namespaces=mode == "userns", data=data)
    twins: list[Workdir] = []
    result: dict = {"v": PROTOCOL, "compile": None, "runs": [], "isolation": mode,
                    "isolation_detail": state.isolation_detail}
    restored = tainted = 0
    try:
        for f in request.get("files", []):
            box.write(f["name"], base64.b64decode(f["content"]))
        for old, new in request.get("renames", []):
            box.rename(old, new)
        comp = request.get("compile")
        if comp:
            result["compile"] = run_stage(box, comp["argv"], "", comp["limits"])
        compiled = result["compile"] is None or (result["compile"]["status"] is None
                                                 and result["compile"]["code"] == 0)
        check = _matcher(request.get("match"))
        runs = request.get("runs", [])
        stop = check is not None and bool(request["match"].get("stop_on_first_failure"))
        if compiled and not stop and len(runs) > 1 and mode != "none":
            twins = _twins(box, min(PARALLEL_RUNS, len(runs)) - 1)
            result["runs"] = _run_parallel([box, *twins], runs, check)
        else:
            for run in runs:
                stage = result["compile"] if not compiled else run_stage(box, [*run["argv"]], run.get("stdin", ""),
                                                                         run["limits"])
                if check is not None:
                    # Matched here, so that a failing case can stop the rest without another round trip.
                    stage = {**stage, "matched": compiled and check(stage, run.get("expected", ""))}
                result["runs"].append(stage)
                if stop and not stage["matched"]:
                    break
    finally:
        for twin in twins:
            box.killed += kill_leftovers(twin.uids) + twin.killed
            twin.remove()
        box.killed += kill_leftovers(box.uids)
        box.remove()
        removed = remove_leftovers(before, [uid for b in (box, *twins) for uid in b.uids])
        if state.guard is not None:
            restored, tainted = state.guard.restore()
        # A snapshot taken after an unguarded submission may hold what it left.
        tainted += int(state.unguarded and mode == "none")
    result["cleanup"] = {"killed": box.killed, "removed": removed, "restored": restored, "tainted": tainted}
    result["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    return result


def _twins(box: Workdir, count: int) -> list[Workdir]:
    """Copies of the compiled box, one per parallel worker: each under a fresh uid (the cleanup after
    a stage kills every process of the stage's uid) or in namespaces of its own."""
    state, twins = _state(), []
    for _ in range(count):
        uid = _pick_uid()
        if uid is None and not box.namespaces:
            break
        if uid is not None:
            state.uids.append(uid)
        twins.append(box.clone(uid))
    return twins


def _run_parallel(boxes: list[Workdir], runs: list[dict], check) -> list[dict]:  # check: a _matcher() or None
    """Run the cases on several boxes at once (a judge's cases are independent); results in order."""
    results: list = [None] * len(runs)
    pending = iter(range(len(runs)))
    lock = threading.Lock()

    def work(box: Workdir) -> None:
        while True:
            with lock:
                index = next(pending, None)
            if index is None:
                return
            run = runs[index]
            stage = run_stage(box, [*run["argv"]], run.get("stdin", ""), run["limits"])
            if check is not None:
                stage = {**stage, "matched": check(stage, run.get("expected", ""))}
            results[index] = stage

    threads = [threading.Thread(target=work, args=(b,)) for b in boxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _matcher(spec: dict | None):  # -> Callable[[dict, str], bool] | None
    """The output match (backend/compare.py, sent along as COMPARE_SOURCE)."""
    if not spec:
        return None
    namespace: dict = {"__name__": "piston_compare"}
    exec(compile(COMPARE_SOURCE or _sibling("../../compare.py"), "compare.py", "exec"), namespace)
    outputs_match = namespace["outputs_match"]

    def check(stage: dict, expected: str) -> bool:
        ok = stage["status"] is None and stage["code"] == 0
        return ok and outputs_match(stage["stdout"], expected, spec.get("mode", "lines"),
                                    abs_tol=spec.get("abs_tol", 1e-6), rel_tol=spec.get("rel_tol", 1e-6))

    return check


def probe(languages: list[dict]) -> list[dict]:
    """For each language: the first existing candidate per role, and its version command's output."""

    def one(spec: dict) -> dict:
        binaries = {role: [sys.executable if c == KERNEL_PYTHON else c for c in candidates]
                    for role, candidates in spec["binaries"].items()}
        return {"language": spec["language"], **rules.probe_toolchain(binaries, spec["version_cmd"])}

    results: list[dict] = [{} for _ in languages]

    def work(index: int) -> None:
        results[index] = one(languages[index])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(languages))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def info(data: str) -> dict:
    return {"python": sys.version.split()[0], "executable": sys.executable, "euid": os.geteuid(),
            "can_drop": _state().can_drop, "subreaper": _state().subreaper, "data_dir": data,
            "isolation": isolation(), "isolation_detail": _state().isolation_detail}


def entry(raw: str) -> None:
    """Handle one request (JSON text) and print the result line."""
    request = json.loads(raw)
    nonce = str(request.get("nonce") or secrets.token_hex(8))
    data = data_dir(request)
    try:
        for name in os.listdir(data):
            # Result files the backend could not delete, request files of interrupted runs.
            if name.startswith(IO_PREFIXES) and name != request.get("input_file"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(data, name))
        if request.get("input_file"):
            path = os.path.join(data, os.path.basename(request["input_file"]))
            with open(path, "rb") as f:
                request.update(json.loads(f.read()))
            os.unlink(path)
        result = handle(request, data)
    except Exception as exc:  # report, never raise: a traceback in the kernel is not a protocol
        result = {"v": PROTOCOL, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
    # Inline: ASCII, so the session's character cap and bytes agree. File: UTF-8, compact.
    text = json.dumps(result, separators=(",", ":"))
    inline_max = int(request.get("inline_max", 3000))
    if len(text) > inline_max:
        # Results are repetitive JSON (a judge's cases): compressed, most still fit inline and
        # save the two round trips of the files API.
        packed = "z:" + base64.b64encode(zlib.compress(text.encode(), 6)).decode()
        if len(packed) <= inline_max:
            text = packed
    if len(text) > inline_max:
        name = f"piston-out-{nonce}.json"
        path = os.path.join(data, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(result, separators=(",", ":"), ensure_ascii=False))
        os.chmod(path, 0o644)
        text = "@" + name
    sys.stdout.write(f"\n{MARK}{nonce} {text}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    entry(sys.stdin.read())

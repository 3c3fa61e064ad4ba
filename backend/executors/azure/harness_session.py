"""The session harness: runs INSIDE a dynamic session (a Jupyter kernel), standard library only.

Dynamic sessions take Python source and give back the kernel's stdout: no stdin, no exit
codes. So the backend sends this file's source with a request; ``entry`` writes the
submission into a fresh private directory, compiles it once, runs it for each run spec as
a subprocess with stdin, rlimits and a wall timeout (through the reaper, which measures
the program's own rusage), judges each stage exactly as the local executor does, kills
everything the submission left and removes its files, then prints one result line:
``__PISTON__<nonce> <json>``, or ``__PISTON__<nonce> @<file>`` when the JSON is too long
for the session's inline output (the file is in the data dir; the backend downloads and
deletes it). Protocol: see ``harness.py``. Run as a script (``python harness_session.py
< request.json``) it does the same outside a session, which is how it is unit-tested.

When the kernel runs as root (the emulator's does; whether the managed image's does is not
documented), programs run as a fresh unprivileged uid per execution: they cannot signal
the kernel or change system files, and RLIMIT_NPROC counts only their own processes.
Otherwise they run as the kernel's user, and cleanup is all that separates submissions.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import math
import os
import re
import secrets
import selectors
import shutil
import signal
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
READ_CHUNK = 65536
BACKSTOP_SECONDS = 1.0  # as the local sandbox: the reaper enforces limits, this catches a stuck reaper
# Cases run at once inside one session when the kernel can give each worker its own uid.
PARALLEL_RUNS = max(1, min(4, os.cpu_count() or 1))
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
PR_SET_CHILD_SUBREAPER = 36
UID_RANGE = (30000, 60000)  # inside the 0..65535 a user namespace maps at least
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # world-writable: where a submission can leave files
IO_PREFIXES = ("piston-in-", "piston-out-")  # request/result files in the data dir
BOX_PREFIX = "piston-box-"

# Sources of the reaper and of the judge's comparison: set by the backend in this namespace,
# else read from the repository (script mode).
REAPER_SOURCE: str = globals().get("REAPER_SOURCE") or ""
COMPARE_SOURCE: str = globals().get("COMPARE_SOURCE") or ""


# ---------------------------------------------------------------- kernel-wide state

def _state() -> types.SimpleNamespace:
    """State kept across executions in this kernel (a module in sys.modules survives our namespace)."""
    module = sys.modules.get("__piston_session_state__")
    if module is None:
        module = types.ModuleType("__piston_session_state__")
        module.baseline = None  # the kernel's own descendants, seen before any submission ran
        module.uids = []  # uids handed to submissions so far
        module.subreaper = False
        module.can_drop = None
        sys.modules[module.__name__] = module
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


def _pick_uid() -> int | None:
    state = _state()
    if os.geteuid() != 0:
        return None
    if state.can_drop is None:
        uid = UID_RANGE[0]
        probe = subprocess.run(
            [sys.executable, "-S", "-c", f"import os; os.setgroups([]); os.setresgid(*[{uid}]*3); os.setresuid(*[{uid}]*3)"],
            capture_output=True, timeout=30, check=False,
        )
        state.can_drop = probe.returncode == 0
    if not state.can_drop:
        return None
    busy = {uid for _, uid, _ in _processes().values()}
    for _ in range(100):
        uid = UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0])
        if uid not in busy:
            return uid
    return None


def data_dir(request: dict) -> str:
    given = request.get("data_dir") or os.environ.get("SESSION_DATA_DIR")
    if given:
        return given
    return "/mnt/data" if os.path.isdir("/mnt/data") else os.getcwd()


# ---------------------------------------------------------------- one stage

def _rlimits(limits: dict, uid: int | None) -> list[str]:
    # A backstop: the reaper kills at the exact CPU limit; RLIMIT_CPU counts whole seconds.
    cpu = math.ceil(limits["cpu_time_ms"] / 1000) + 1
    out = [f"CPU={cpu}:{cpu + 1}", f"FSIZE={limits['max_file_size']}:{limits['max_file_size']}",
           f"NOFILE={limits['max_open_files']}:{limits['max_open_files']}", "CORE=0:0", "STACK=-1:-1"]
    if limits["memory_bytes"] > 0:
        # DATA, not AS: address-space limits break the JVM and V8, which reserve far more than they use.
        out.append(f"DATA={limits['memory_bytes']}:{limits['memory_bytes']}")
    if uid is not None:
        out.append(f"NPROC={limits['max_processes']}:{limits['max_processes']}")
    elif os.geteuid() != 0:
        # The count is per uid and we share the kernel's: allow what already runs plus the limit.
        mine = sum(len(os.listdir(f"/proc/{p}/task")) for p, (_, u, _) in _processes().items()
                   if u == os.getuid() and os.path.isdir(f"/proc/{p}/task"))
        out.append(f"NPROC={mine + limits['max_processes']}:{mine + limits['max_processes']}")
    return out


def run_stage(box: Box, argv: list[str], stdin: str, limits: dict) -> dict:
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
    for spec in _rlimits(limits, box.uid):
        args += ["-r", spec]
    for key, value in box.env().items():
        args += ["-e", f"{key}={value}"]
    outcome = _collect(args, argv, limits, box.uids)
    box.killed += kill_leftovers(box.uids, only_uids=bool(box.uids))
    return judge(outcome, limits)


def _collect(args: list[str], argv: list[str], limits: dict, uids: list[int]) -> dict:
    meta_r, meta_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    args[1] = str(meta_w)
    outcome: dict = {"timed_out": False, "overflow": None, "wait_status": None}
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", REAPER_SOURCE or _sibling("reaper_session.py"), *args, "--", *argv],
            stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, pass_fds=(meta_w,), close_fds=True,
            env={"PATH": SANDBOX_PATH, "LANG": "C.UTF-8"}, cwd="/",
        )
    finally:
        for fd in (meta_w, out_w, err_w):
            os.close(fd)
    out, err, combined, meta = bytearray(), bytearray(), bytearray(), bytearray()
    buffers = {out_r: out, err_r: err, meta_r: meta}
    cap = limits["output_max_size"]
    sel = selectors.DefaultSelector()
    for fd in buffers:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    # Until the reaper says it forks, allow for its own start-up; then the program's wall limit.
    deadline = started + limits["timeout_ms"] / 1000 + 10
    try:
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcome["timed_out"] = True
                break
            for key, _ in sel.select(remaining):
                try:
                    chunk = os.read(key.fd, READ_CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = buffers[key.fd]
                if key.fd == meta_r:
                    if not buf and chunk.startswith(b"S\n"):
                        # The reaper enforces the limits exactly; this deadline only catches a stuck one.
                        started = time.monotonic()
                        deadline = started + limits["timeout_ms"] / 1000 + BACKSTOP_SECONDS
                        chunk = chunk[2:]
                    buf += chunk
                    continue
                room = cap - len(buf)
                if len(chunk) > room:
                    chunk = chunk[:max(room, 0)]
                    outcome["overflow"] = "stdout" if key.fd == out_r else "stderr"
                combined += chunk
                buf += chunk
            if outcome["overflow"]:
                break
    finally:
        sel.close()
    if outcome["timed_out"] or outcome["overflow"]:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # this stage's reaper; cases running in parallel keep theirs
        kill_leftovers(uids, only_uids=bool(uids))
        meta += _drain(meta_r)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    for fd in (meta_r, out_r, err_r):
        os.close(fd)
    parts = bytes(meta).split()
    if len(parts) == 6:
        status, utime, stime, maxrss, wall, killed = (int(p) for p in parts)
        outcome.update(wait_status=status, cpu_us=utime + stime, maxrss_kb=maxrss, wall_us=wall,
                       killed_by={1: "cpu", 2: "wall"}.get(killed))
    else:
        outcome.update(cpu_us=None, maxrss_kb=None, wall_us=int((time.monotonic() - started) * 1_000_000))
        if not outcome["timed_out"] and not outcome["overflow"]:
            outcome["error"] = err.decode("utf-8", "replace").strip()[-500:] or "reaper exited without a result"
    outcome.update(stdout=bytes(out), stderr=bytes(err), output=bytes(combined))
    return outcome


def _drain(fd: int) -> bytes:
    data = bytearray()
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, READ_CHUNK):
            data += chunk
    return bytes(data)


def _sibling(relative: str) -> str:
    """A file next to this one, when run as a script (the backend sends the sources instead)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), relative)) as f:
        return f.read()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def judge(o: dict, limits: dict) -> dict:
    """Piston's stage fields from an outcome: the rules of backend/executors/local/results.py.

    The local executor learns of memory-limit kills from its cgroup's OOM events; here the
    only sign is a SIGKILL that neither the reaper nor the harness sent, which in a session
    can only come from the container's OOM killer. (Under RLIMIT_DATA an allocation simply
    fails, and the judge reads the runtime's message, as it does locally without cgroups.)
    """
    cpu_ms = o["cpu_us"] // 1000 if o.get("cpu_us") is not None else None
    ws = o.get("wait_status")
    oom = (ws is not None and os.WIFSIGNALED(ws) and os.WTERMSIG(ws) == signal.SIGKILL
           and not o.get("killed_by") and not o["timed_out"] and not o["overflow"])
    stage = {
        "stdout": o["stdout"].decode("utf-8", "replace"), "stderr": o["stderr"].decode("utf-8", "replace"),
        "output": o["output"].decode("utf-8", "replace"), "code": None, "signal": None, "message": None,
        "status": None, "memory": o["maxrss_kb"] * 1024 if o.get("maxrss_kb") is not None else None,
        "cpu_time": cpu_ms, "wall_time": o["wall_us"] // 1000 if o.get("wall_us") is not None else None,
        "memory_exceeded": oom,
    }
    over_cpu = cpu_ms is not None and cpu_ms > limits["cpu_time_ms"]
    if o["overflow"]:
        _killed(stage, "OL" if o["overflow"] == "stdout" else "EL", f"{o['overflow']} length exceeded")
    elif o.get("killed_by") == "cpu":
        _killed(stage, "TO", "Time limit exceeded")
    elif o.get("killed_by") == "wall" or o["timed_out"]:
        _killed(stage, "TO", "Time limit exceeded" if over_cpu else "Time limit exceeded (wall clock)")
    elif ws is None:
        stage.update(status="XX", message=o.get("error") or "sandbox failure")
    elif os.WIFSIGNALED(ws):
        number = os.WTERMSIG(ws)
        if number == signal.SIGXCPU or (number == signal.SIGKILL and over_cpu and not oom):
            _killed(stage, "TO", "Time limit exceeded")
        else:
            stage.update(signal=_signal_name(number), status="SG", message=f"Caught fatal signal {number}")
    else:
        code = os.WEXITSTATUS(ws)
        if over_cpu:
            _killed(stage, "TO", "Time limit exceeded")
        else:
            stage["code"] = code
            if code != 0:
                stage.update(status="RE", message=f"Exited with error status {code}")
    return stage


def _killed(stage: dict, status: str, message: str) -> None:
    # Piston forces SIGKILL on TO/OL/EL so that clients written before `status` keep working.
    stage.update(status=status, message=message, signal="SIGKILL", code=None)


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


class Box:
    """A fresh private directory: ``box`` (the cwd, the program's files), ``tmp`` and ``io`` (stdin)."""

    def __init__(self, uid: int | None) -> None:
        self.uid = uid
        self.uids = [uid] if uid is not None else []
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
        return {"PATH": SANDBOX_PATH, "LANG": "C.UTF-8", "HOME": self.tmp, "TMPDIR": self.tmp,
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

    def clone(self, uid: int) -> Box:
        """A copy of the compiled box for a parallel worker, under its own uid."""
        twin = Box(uid)
        shutil.copytree(self.box, twin.box, symlinks=True, dirs_exist_ok=True)
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


def _owned_by(path: str, uids: list[int], depth: int = 0) -> list[str]:
    """Entries owned by ``uids`` in ``path`` and in the world-writable directories below it.

    An unprivileged uid can only create entries in world-writable directories (or in its
    own, which are found as a whole), so only those are searched: cheap even in a busy /tmp.
    """
    found = []
    with contextlib.suppress(OSError), os.scandir(path) as it:
        for entry in it:
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if st.st_uid in uids:
                    found.append(entry.path)
                elif entry.is_dir(follow_symlinks=False) and st.st_mode & 0o002 and depth < 3:
                    found += _owned_by(entry.path, uids, depth + 1)
    return found


def remove_leftovers(before: dict[str, set[str]], uids: list[int]) -> int:
    """Remove what the submission created in the scratch dirs and the data dir.

    With a uid of its own, exactly the entries that uid owns (safe even where other
    sessions share /tmp, as in the emulator). Without one, new entries of our own uid since
    the snapshot, sparing other harness boxes.
    """
    doomed: list[str] = []
    for d, names in before.items():
        if uids:
            doomed += _owned_by(d, uids)
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


# ---------------------------------------------------------------- requests

def handle(request: dict, data: str) -> dict:
    state = _state()
    if not state.subreaper:
        state.subreaper = _set_subreaper()
    if state.baseline is None:
        state.baseline = _descendants(_processes(), os.getpid())
    if "probe" in request:
        return {"v": PROTOCOL, "probe": probe(request["probe"]), "info": info(data)}
    started = time.monotonic()
    uid = _pick_uid()
    if uid is not None:
        state.uids.append(uid)
    # Leftovers of an execution the service interrupted (its harness never got to clean up).
    kill_leftovers(state.uids)
    scan = [*SCRATCH_DIRS, data]
    before = _entries(scan)
    box = Box(uid)
    twins: list[Box] = []
    result: dict = {"v": PROTOCOL, "compile": None, "runs": []}
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
        check = _matcher(request.get("judge"))
        runs = request.get("runs", [])
        stop = check is not None and bool(request["judge"].get("stop_on_first_failure"))
        if compiled and not stop and len(runs) > 1 and uid is not None:
            twins = _twins(box, min(PARALLEL_RUNS, len(runs)) - 1)
            result["runs"] = _run_parallel([box, *twins], runs, check)
        else:
            for run in runs:
                stage = result["compile"] if not compiled else run_stage(box, [*run["argv"]], run.get("stdin", ""),
                                                                         run["limits"])
                if check is not None:
                    # Judged here, so that a failing case can stop the rest without another round trip.
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
    result["cleanup"] = {"killed": box.killed, "removed": removed}
    result["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    return result


def _twins(box: Box, count: int) -> list[Box]:
    """Copies of the compiled box under fresh uids: each parallel worker needs its own uid, because
    the cleanup after a stage kills every process of the stage's uid."""
    state, twins = _state(), []
    for _ in range(count):
        uid = _pick_uid()
        if uid is None:
            break
        state.uids.append(uid)
        twins.append(box.clone(uid))
    return twins


def _run_parallel(boxes: list[Box], runs: list[dict], check) -> list[dict]:  # check: a _matcher() or None
    """Run the cases on several boxes at once (a judge's cases are independent); results in order."""
    results: list = [None] * len(runs)
    pending = iter(range(len(runs)))
    lock = threading.Lock()

    def work(box: Box) -> None:
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
    """The judge's comparison (backend/compare.py, sent along as COMPARE_SOURCE)."""
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
        found = {}
        for role, candidates in spec["binaries"].items():
            candidates = [sys.executable if c == KERNEL_PYTHON else c for c in candidates]
            path = next((c for c in candidates if os.access(c, os.X_OK)), None)
            if path is None:
                return {"language": spec["language"], "binaries": None}
            found[role] = path
        argv = [re.sub(r"^\{(\w+)\}$", lambda m: found[m.group(1)], part) for part in spec["version_cmd"]]
        try:
            r = subprocess.run(argv, capture_output=True, timeout=20, check=False,
                               env={"PATH": SANDBOX_PATH, "HOME": "/tmp", "LANG": "C.UTF-8"})
            text, code = (r.stdout + r.stderr).decode("utf-8", "replace")[:2000], r.returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            text, code = str(exc), -1
        return {"language": spec["language"], "binaries": found, "returncode": code, "output": text}

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
            "can_drop": _state().can_drop, "subreaper": _state().subreaper, "data_dir": data}


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

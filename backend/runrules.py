"""The rules of one run, for both executors. Standard library only: the session harness embeds this file.

The local executor imports it; the session harness receives its source (as ``compare.py``
travels) and so does the session's reaper, which prepends it to its own source. What lives
here is what must be the same wherever a submission runs:

- the rlimits a stage gets (``rlimits``), written ``NAME=SOFT:HARD`` (``rlimit_specs``);
- the meta line a reaper writes after the program ends (``meta_line``, ``parse_meta``), the
  same six fields as ``piston-launch inner`` writes in C (launcher.c, ``dprintf(meta, ...)``);
- the capped read of a stage's stdout, stderr and meta pipes (``collect``);
- the status decision, isolate's rules plus OL/EL (``decide``);
- the toolchain probe: which candidate binary exists, and what its version command says (``probe_toolchain``).

Only ``os`` and ``time`` are imported at the top: the reaper measures the program's memory,
and every module it imports is memory the forked program starts with.
"""

from __future__ import annotations

import os
import time

READ_CHUNK = 65536
# The reaper enforces the limits exactly; the reader's own deadline only catches a stuck one.
BACKSTOP_SECONDS = 1.0
# A reaper that announces its fork (``start_mark``) gets this long to start before the wall clock runs.
START_GRACE_SECONDS = 10.0
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
PROBE_ENV = {"PATH": SANDBOX_PATH, "HOME": "/tmp", "LANG": "C.UTF-8"}
PROBE_TIMEOUT_SECONDS = 20
PROBE_OUTPUT_MAX = 2000
# "As high as allowed": RLIM_INFINITY, or the current hard limit where raising it is not permitted.
INFINITY = "inf"
START_MARK = b"S\n"  # a reaper's first meta line, written right before it forks the program
KILLED_BY = {0: None, 1: "cpu", 2: "wall"}  # the meta line's last field: who ended the program


# ---------------------------------------------------------------- rlimits

def rlimits(limits, *, memory: bool, nproc_others: int | None) -> dict[str, tuple[int | str, int | str]]:
    """The rlimits of one stage. ``limits``: a mapping with ``backend.models.Limits``' fields.

    ``memory``: limit the data segment (where no cgroup limits memory). ``nproc_others``: what
    else counts against the program's RLIMIT_NPROC (a per-user count: the sandbox's own processes
    under the same uid); None sets no NPROC limit (a cgroup counts the processes instead, or the
    program runs as root, which NPROC does not bind).
    """
    import math

    # A backstop: the reaper kills at the exact CPU limit; RLIMIT_CPU counts whole seconds.
    cpu = math.ceil(limits["cpu_time_ms"] / 1000) + 1
    out: dict[str, tuple[int | str, int | str]] = {
        "CPU": (cpu, cpu + 1),
        "FSIZE": (limits["max_file_size"], limits["max_file_size"]),
        "NOFILE": (limits["max_open_files"], limits["max_open_files"]),
        "CORE": (0, 0),
        "STACK": (INFINITY, INFINITY),
    }
    if memory and limits["memory_bytes"] > 0:
        # DATA, not AS: address-space limits break the JVM and V8, which reserve far more than they use.
        out["DATA"] = (limits["memory_bytes"], limits["memory_bytes"])
    if nproc_others is not None:
        count = limits["max_processes"] + nproc_others
        out["NPROC"] = (count, count)
    return out


def rlimit_specs(limits: dict[str, tuple[int | str, int | str]]) -> list[str]:
    return [f"{name}={soft}:{hard}" for name, (soft, hard) in limits.items()]


def parse_rlimit(spec: str) -> tuple[str, int | None, int | None]:
    """``NAME=SOFT:HARD`` -> (NAME, soft, hard); None stands for ``inf``."""
    name, _, bounds = spec.partition("=")
    soft, _, hard = bounds.partition(":")
    return name, None if soft == INFINITY else int(soft), None if hard == INFINITY else int(hard)


# ---------------------------------------------------------------- the meta line

def meta_line(wait_status: int, utime_us: int, stime_us: int, maxrss_kb: int, wall_us: int, killed: int) -> bytes:
    """``status utime_us stime_us maxrss_kb wall_us killed``; killed: 0, 1 (CPU limit) or 2 (wall clock)."""
    return f"{wait_status} {utime_us} {stime_us} {maxrss_kb} {wall_us} {killed}\n".encode()


def parse_meta(data: bytes) -> dict | None:
    """The meta line's fields as outcome fields; None when the reaper never wrote a whole line."""
    parts = data.split()
    if len(parts) != 6:
        return None
    try:
        status, utime, stime, maxrss, wall, killed = (int(p) for p in parts)
    except ValueError:
        return None
    return {"wait_status": status, "cpu_us": utime + stime, "maxrss_kb": maxrss, "wall_us": wall,
            "killed_by": KILLED_BY.get(killed)}


# ---------------------------------------------------------------- the capped read

def collect(out_fd: int, err_fd: int, meta_fd: int, *, output_max_size: int, timeout_ms: int, started: float,
            kill, start_mark: bool = False, until_meta: bool = False, on_output=None) -> dict:
    """Read a stage's pipes until they close, the output cap is hit or the backstop deadline passes.

    ``kill()`` is called on a cap or deadline; it must end the stage's processes. ``start_mark``:
    the meta stream begins with ``START_MARK`` and the wall clock starts there (until then the
    reaper gets ``START_GRACE_SECONDS`` to start). ``until_meta``: stop at the meta line (the
    program has exited) and take what its pipes hold, rather than wait for every process that
    inherited them (where no namespace ends those with the program). Returns the outcome's
    fields (the local executor's ``Outcome``); the caller closes the fds. ``on_output(stream,
    chunk)`` sees each kept chunk of stdout/stderr as it arrives (interactive runs).
    """
    import selectors

    outcome: dict = {"timed_out": False, "overflow": None, "wait_status": None, "cpu_us": None,
                     "maxrss_kb": None, "wall_us": None, "killed_by": None, "sandbox_error": None}
    out, err, combined, meta = bytearray(), bytearray(), bytearray(), bytearray()
    buffers = {out_fd: out, err_fd: err, meta_fd: meta}

    def take(fd: int, chunk: bytes) -> None:
        nonlocal started, deadline
        buf = buffers[fd]
        if fd == meta_fd:
            if start_mark and not buf and chunk.startswith(START_MARK):
                started = time.monotonic()
                deadline = started + timeout_ms / 1000 + BACKSTOP_SECONDS
                chunk = chunk[len(START_MARK):]
            buf += chunk
            return
        room = output_max_size - len(buf)
        if len(chunk) > room:
            chunk = chunk[:max(room, 0)]
            outcome["overflow"] = "stdout" if fd == out_fd else "stderr"
        combined.extend(chunk)
        buf += chunk
        if on_output is not None and chunk:
            on_output("stdout" if fd == out_fd else "stderr", chunk)

    # kill() may close the fds it owns; the meta written in the kill's last instant is read from a copy.
    meta_copy = os.dup(meta_fd)
    deadline = started + timeout_ms / 1000 + (START_GRACE_SECONDS if start_mark else BACKSTOP_SECONDS)
    sel = selectors.DefaultSelector()
    try:
        for fd in buffers:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
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
                take(key.fd, chunk)
            if outcome["overflow"]:
                break
            if until_meta and meta.endswith(b"\n") and parse_meta(bytes(meta)) is not None:
                for key in list(sel.get_map().values()):
                    if key.fd != meta_fd and not outcome["overflow"]:
                        take(key.fd, _drain(key.fd))
                break
        if outcome["timed_out"] or outcome["overflow"]:
            kill()
            # The program may have finished in the same instant; its meta is still worth reading.
            meta += _drain(meta_copy)
    finally:
        sel.close()
        os.close(meta_copy)
    outcome.update(stdout=bytes(out), stderr=bytes(err), output=bytes(combined))
    outcome.update(parse_meta(bytes(meta)) or {})
    if outcome["wall_us"] is None:  # killed before the reaper could report: the reader's clock
        outcome["wall_us"] = int((time.monotonic() - started) * 1_000_000)
    if outcome["wait_status"] is None and not outcome["timed_out"] and not outcome["overflow"]:
        outcome["sandbox_error"] = err.decode("utf-8", "replace").strip()[-500:] or "sandbox exited without a result"
    return outcome


def _drain(fd: int) -> bytes:
    data = bytearray()
    try:
        os.set_blocking(fd, False)
        while chunk := os.read(fd, READ_CHUNK):
            data += chunk
    except OSError:
        pass
    return bytes(data)


# ---------------------------------------------------------------- the status

def signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def decide(o: dict, cpu_limit_ms: int, *, oom_killed: bool) -> dict:
    """Piston's ``status``, ``message``, ``code`` and ``signal`` of a stage from its outcome fields.

    Piston forces SIGKILL (and no code) on TO/OL/EL, so that clients written before ``status``
    keep working. ``oom_killed``: the memory limit killed the program (a cgroup saw it, or a
    SIGKILL nobody in the sandbox sent).
    """
    import signal

    cpu_ms = o["cpu_us"] // 1000 if o.get("cpu_us") is not None else None
    over_cpu = cpu_ms is not None and cpu_ms > cpu_limit_ms
    ws = o.get("wait_status")
    killed = {"code": None, "signal": "SIGKILL"}
    if o.get("overflow"):
        return {"status": "OL" if o["overflow"] == "stdout" else "EL",
                "message": f"{o['overflow']} length exceeded", **killed}
    if o.get("killed_by") == "cpu":
        return {"status": "TO", "message": "Time limit exceeded", **killed}
    if o.get("killed_by") == "wall" or o.get("timed_out"):
        return {"status": "TO", "message": "Time limit exceeded" if over_cpu else "Time limit exceeded (wall clock)",
                **killed}
    if ws is None:
        return {"status": "XX", "message": o.get("sandbox_error") or "sandbox failure", "code": None, "signal": None}
    if os.WIFSIGNALED(ws):
        number = os.WTERMSIG(ws)
        if number == signal.SIGXCPU or (number == signal.SIGKILL and over_cpu and not oom_killed):
            return {"status": "TO", "message": "Time limit exceeded", **killed}
        return {"status": "SG", "message": f"Caught fatal signal {number}", "code": None,
                "signal": signal_name(number)}
    if over_cpu:
        return {"status": "TO", "message": "Time limit exceeded", **killed}
    code = os.WEXITSTATUS(ws)
    if code != 0:
        return {"status": "RE", "message": f"Exited with error status {code}", "code": code, "signal": None}
    return {"status": None, "message": None, "code": 0, "signal": None}


def stage_fields(o: dict, cpu_limit_ms: int, *, peak_memory: int | None, oom_killed: bool) -> dict:
    """Piston's stage fields (+ ``memory_exceeded``) from an outcome; text decoded as Piston does."""
    return {
        "stdout": o["stdout"].decode("utf-8", "replace"), "stderr": o["stderr"].decode("utf-8", "replace"),
        "output": o["output"].decode("utf-8", "replace"),
        **decide(o, cpu_limit_ms, oom_killed=oom_killed),
        "memory": peak_memory if peak_memory is not None else (
            o["maxrss_kb"] * 1024 if o.get("maxrss_kb") is not None else None),
        "cpu_time": o["cpu_us"] // 1000 if o.get("cpu_us") is not None else None,
        "wall_time": o["wall_us"] // 1000 if o.get("wall_us") is not None else None,
        "memory_exceeded": oom_killed,
    }


# ---------------------------------------------------------------- leftovers in shared dirs

def owned_by(path: str, uids: list[int], depth: int = 0) -> list[str]:
    """Entries owned by ``uids`` in ``path`` and in the world-writable directories below it.

    An unprivileged uid can only create entries in world-writable directories (or in its
    own, which are found as a whole), so only those are searched: cheap even in a busy /tmp.
    """
    found: list[str] = []
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except OSError:
        return found
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if st.st_uid in uids:
                found.append(entry.path)
            elif entry.is_dir(follow_symlinks=False) and st.st_mode & 0o002 and depth < 3:
                found += owned_by(entry.path, uids, depth + 1)
        except OSError:
            continue
    return found


# ---------------------------------------------------------------- the toolchain probe

def probe_toolchain(binaries: dict[str, list[str]], version_cmd: list[str]) -> dict:
    """The first existing candidate per role and its version command's exit code and output.

    ``binaries`` is None in the answer when a role has no candidate; ``{role}`` parts of
    ``version_cmd`` are filled from the binaries found.
    """
    import re
    import subprocess

    found: dict[str, str] = {}
    for role, candidates in binaries.items():
        path = next((c for c in candidates if os.access(c, os.X_OK)), None)
        if path is None:
            return {"binaries": None}
        found[role] = path
    argv = [re.sub(r"^\{(\w+)\}$", lambda m: found[m.group(1)], part) for part in version_cmd]
    try:
        r = subprocess.run(argv, capture_output=True, timeout=PROBE_TIMEOUT_SECONDS, check=False, env=PROBE_ENV)
        text, code = (r.stdout + r.stderr).decode("utf-8", "replace")[:PROBE_OUTPUT_MAX], r.returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        text, code = str(exc), -1
    return {"binaries": found, "returncode": code, "output": text}

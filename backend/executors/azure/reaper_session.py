"""The reaper: one per stage, started by the session harness as ``python -S -c <this file> ARGS``.

It forks the program, waits for it with wait4 and writes the program's own rusage to
the meta fd, like ``piston-launch inner`` does for the local sandbox. Measuring here
and not in the Jupyter kernel matters: a child's ru_maxrss starts from its parent's
RSS (exec keeps the high-water mark), and the kernel weighs ~100 MB where this
process, with -S and only builtin modules imported before the fork, weighs ~5 MB.

ARGS: ``-m META_FD -i STDIN_PATH -d CWD -c CPU_MS -t WALL_MS [-u UID -g GID] [-r NAME=SOFT:HARD]...
[-e K=V]... -- ARGV...`` (no json: importing it would add a megabyte to every measurement).
Meta lines: ``S`` right before the fork (the harness starts its backstop clock there), then
``status utime_us stime_us maxrss_kb wall_us killed`` with killed 0, 1 (CPU limit) or 2
(wall clock), the same line as ``piston-launch inner`` writes.
"""

import os
import sys
import time


def _parse(args):
    opts = {"r": [], "e": []}
    i = 0
    while i < len(args) and args[i] != "--":
        flag, value = args[i][1:], args[i + 1]
        if flag in ("r", "e"):
            opts[flag].append(value)
        else:
            opts[flag] = value
        i += 2
    return opts, args[i + 1:]


def _child(opts, argv, meta, go):
    # Between fork and exec: only builtin modules (posix, _signal), nothing allocated that the
    # program's ru_maxrss would inherit. Errors end as exit 127 with a message on the program's
    # stderr, as the local launcher's die() does.
    try:
        import _signal

        os.close(meta)
        os.setsid()
        # Python ignores these two at start-up and exec keeps SIG_IGN: restore what a program expects.
        for number in (_signal.SIGPIPE, _signal.SIGXFSZ):
            _signal.signal(number, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
        fd = os.open(opts["i"], os.O_RDONLY)  # opened before dropping privileges: the file stays private
        os.dup2(fd, 0)
        os.close(fd)
        os.chdir(opts["d"])
        env = dict(item.split("=", 1) for item in opts["e"])
        # The parent sets our rlimits (prlimit) meanwhile: importing `resource` here would weigh ~2 MB.
        if os.read(go, 1) != b"1":
            os._exit(127)
        os.close(go)
        if "u" in opts:
            # After the rlimits (raising a hard limit needs root) and last before exec.
            os.setgroups([])
            gid, uid = int(opts["g"]), int(opts["u"])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        os.execve(argv[0], argv, env)
    except OSError as exc:
        os.write(2, f"piston-reaper: {argv[0] if argv else '?'}: {exc.strerror}\n".encode())
    except BaseException as exc:
        os.write(2, f"piston-reaper: {exc}\n".encode())
    os._exit(127)


def _limit(pid, specs):
    import resource

    for spec in specs:
        name, _, bounds = spec.partition("=")
        soft, _, hard = bounds.partition(":")
        number, soft, hard = getattr(resource, "RLIMIT_" + name), int(soft), int(hard)
        if os.geteuid() != 0:
            # Unprivileged: a hard limit can only be lowered.
            current = resource.prlimit(pid, number)[1]
            if current != resource.RLIM_INFINITY:
                hard = current if hard < 0 else min(hard, current)
                soft = hard if soft < 0 else min(soft, hard)
        resource.prlimit(pid, number, (soft, hard))


def _cpu_ms(pid, hz):
    """CPU time of the program and of the children it reaped, from /proc (clock ticks)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return sum(int(x) for x in fields[11:15]) * 1000 // hz


def main():
    import _signal

    opts, argv = _parse(sys.argv[1:])
    meta = int(opts["m"])
    cpu_ms, wall_ms = int(opts.get("c", 0)), int(opts.get("t", 0))
    go_r, go_w = os.pipe()
    # SIGCHLD stays pending (blocked) so the wait below wakes the moment the program exits.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, [_signal.SIGCHLD])
    os.write(meta, b"S\n")
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        _child(opts, argv, meta, go_r)
    os.close(go_r)
    try:
        _limit(pid, opts["r"])
        os.write(go_w, b"1")
    except (OSError, ValueError, AttributeError) as exc:
        os.write(2, f"piston-reaper: setting limits: {exc}\n".encode())
    os.close(go_w)
    # Exact limits, as the local launcher: CPU and wall clock checked every 10 ms
    # (RLIMIT_CPU, in whole seconds, is only the backstop).
    hz = os.sysconf("SC_CLK_TCK")
    killed = 0
    while True:
        try:
            done, status, usage = os.wait4(pid, os.WNOHANG)
        except InterruptedError:
            continue
        if done == pid:
            break
        if not killed:
            if wall_ms > 0 and (time.monotonic() - start) * 1000 >= wall_ms:
                killed = 2
            elif cpu_ms > 0 and _cpu_ms(pid, hz) >= cpu_ms:
                killed = 1
            if killed:
                os.kill(pid, 9)
        _signal.sigtimedwait([_signal.SIGCHLD], 0.01)
    wall = int((time.monotonic() - start) * 1_000_000)
    utime, stime = int(usage.ru_utime * 1_000_000), int(usage.ru_stime * 1_000_000)
    line = f"{status} {utime} {stime} {usage.ru_maxrss} {wall} {killed}\n"
    os.write(meta, line.encode())


main()

"""The reaper: one per stage, started by the session harness as ``python -S -c <this file> ARGS``.

It forks the program, waits for it with wait4 and writes the program's own rusage to
the meta fd, like ``piston-launch inner`` does for the local sandbox. Measuring here
and not in the Jupyter kernel matters: a child's ru_maxrss starts from its parent's
RSS (exec keeps the high-water mark), and the kernel weighs ~100 MB where this
process, with -S and only builtin modules imported before the fork, weighs ~5 MB.

ARGS: ``-m META_FD -i STDIN_PATH -d CWD [-u UID -g GID] [-r NAME=SOFT:HARD]... [-e K=V]... -- ARGV...``
(no json: importing it would add a megabyte to every measurement). Meta lines:
``S`` right before the fork (the harness starts its wall clock there), then
``status utime_us stime_us maxrss_kb wall_us``.
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


def _child(opts, argv, meta):
    # Everything here runs between fork and exec; errors end as exit 127 with a message
    # on the program's stderr, as the local launcher's die() does.
    try:
        import resource
        import signal

        os.close(meta)
        os.setsid()
        # Python ignores these two at start-up and exec keeps SIG_IGN: restore what a program expects.
        for number in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        fd = os.open(opts["i"], os.O_RDONLY)  # opened before dropping privileges: the file stays private
        os.dup2(fd, 0)
        os.close(fd)
        os.chdir(opts["d"])
        env = dict(item.split("=", 1) for item in opts["e"])
        limits = []
        for spec in opts["r"]:
            name, _, bounds = spec.partition("=")
            soft, _, hard = bounds.partition(":")
            limits.append((getattr(resource, "RLIMIT_" + name), int(soft), int(hard)))
        for number, soft, hard in limits:
            current_hard = resource.getrlimit(number)[1]
            if os.geteuid() != 0 and current_hard != resource.RLIM_INFINITY:
                # Unprivileged: a hard limit can only be lowered.
                hard = current_hard if hard < 0 else min(hard, current_hard)
                soft = hard if soft < 0 else min(soft, hard)
            resource.setrlimit(number, (soft, hard))
        if "u" in opts:
            # After setrlimit (raising a hard limit needs root) and last before exec.
            os.setgroups([])
            gid, uid = int(opts["g"]), int(opts["u"])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        os.execve(argv[0], argv, env)
    except OSError as exc:
        os.write(2, ("piston-reaper: %s: %s\n" % (argv[0] if argv else "?", exc.strerror)).encode())
    except BaseException as exc:  # noqa: BLE001 - nothing may escape a forked child
        os.write(2, ("piston-reaper: %s\n" % (exc,)).encode())
    os._exit(127)


def main():
    opts, argv = _parse(sys.argv[1:])
    meta = int(opts["m"])
    os.write(meta, b"S\n")
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(opts, argv, meta)
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    wall = int((time.monotonic() - start) * 1_000_000)
    line = "%d %d %d %d %d\n" % (
        status, int(usage.ru_utime * 1_000_000), int(usage.ru_stime * 1_000_000), usage.ru_maxrss, wall,
    )
    os.write(meta, line.encode())


main()

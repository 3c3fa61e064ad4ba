"""The reaper: one per stage, started by the session harness as ``python -S -c <runrules.py + this file> ARGS``.

It forks the program, waits for it with wait4 and writes the program's own rusage to
the meta fd, like ``piston-launch inner`` does for the local sandbox. Measuring here
and not in the Jupyter kernel matters: a child's ru_maxrss starts from its parent's
RSS (exec keeps the high-water mark), and the kernel weighs ~100 MB where this
process, with -S and only builtin modules imported before the fork, weighs ~8 MB.
``backend/runrules.py`` comes first in the source: the meta line and the rlimit specs.

ARGS: ``-m META_FD -i STDIN_PATH -d CWD -c CPU_MS -t WALL_MS [-u UID -g GID] [-r NAME=SOFT:HARD]...
[-e K=V]... [-n -w DIR... -h DIR... -k DIR... -x PATH...] -- ARGV...`` (no json: importing it would add a megabyte
to every measurement). Meta lines: ``S`` right before the fork (the harness starts its
backstop clock there), then the meta line of ``runrules.meta_line``.

``-n``: the program runs in namespaces of its own, for a kernel that cannot give it a uid
of its own (the unprivileged session). The reaper enters a new user namespace (mapping only
the kernel's own uid, so the program stays that uid but holds no capability outside), mount,
pid, network, IPC and UTS namespaces; makes the whole file system read-only except the dirs
given with ``-w`` (the box); puts an empty tmpfs on each ``-h`` dir (/tmp, /dev/shm, the data
dir), shows again, read-only, each ``-k`` dir that one of them covers (the interpreter), and
puts /dev/null over each ``-x`` path: the kernel's own unix sockets and connection file, which a
read-only mount does not close (connect() to a socket needs no writable file system).
Its child is pid 1 of the new pid namespace (``_init``): it mounts a /proc of that namespace
and forks the program. The program cannot see, signal or trace any process
outside (the kernel included), reach the network, or leave a file anywhere that outlives
the stage; when it exits, init exits and the kernel kills whatever it left in the namespace.
"""

import os
import sys
import time

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
# statvfs f_flag bit -> mount flag: a remount in a user namespace must keep the locked ones.
ST_TO_MS = ((1, MS_RDONLY), (2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC), (1024, MS_NOATIME),
            (2048, MS_NODIRATIME), (4096, MS_RELATIME))
SYS_MOUNT_SETATTR, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, 0x8000, 1
PR_SET_NO_NEW_PRIVS = 38
SCRATCH_TMPFS = b"mode=1777,size=67108864"  # 64 MiB of the session's memory per dir, as SANDBOX_TMP_BYTES


def _parse(args):
    opts = {"r": [], "e": [], "w": [], "h": [], "k": [], "x": []}
    i = 0
    while i < len(args) and args[i] != "--":
        flag = args[i][1:]
        if flag == "n":
            opts["n"] = True
            i += 1
            continue
        value = args[i + 1]
        if flag in ("r", "e", "w", "h", "k", "x"):
            opts[flag].append(value)
        else:
            opts[flag] = value
        i += 2
    return opts, args[i + 1:]


def _prepare(opts):
    """Between fork and exec: the program's stdin, signals, session and working directory."""
    import _signal

    os.setsid()
    # Python ignores these two at start-up and exec keeps SIG_IGN: restore what a program expects.
    for number in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(number, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    if "stdin_fd" in opts:
        os.dup2(opts["stdin_fd"], 0)
        os.close(opts["stdin_fd"])
    else:
        fd = os.open(opts["i"], os.O_RDONLY)  # opened before dropping privileges: the file stays private
        os.dup2(fd, 0)
        os.close(fd)
    os.chdir(opts["d"])
    return dict(item.split("=", 1) for item in opts["e"])


def _child(opts, argv, meta, go):
    # Between fork and exec: only builtin modules (posix, _signal), nothing allocated that the
    # program's ru_maxrss would inherit. Errors end as exit 127 with a message on the program's
    # stderr, as the local launcher's die() does.
    try:
        os.close(meta)
        env = _prepare(opts)
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


# ---------------------------------------------------------------- namespaces (-n)

def _libc():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def call(name, *args):
        if getattr(libc, name)(*args) != 0:
            number = ctypes.get_errno()
            raise OSError(number, f"{name}{args[:2]!r}: {os.strerror(number)}")

    return ctypes, libc, call


def _remount(call, path, readonly):
    # Fallback for kernels before mount_setattr (5.12): a remount keeps the flags the mount has.
    flags = os.statvfs(path).f_flag
    ms = sum(m for st, m in ST_TO_MS if flags & st and m != MS_RDONLY)
    call("mount", None, path.encode(), None, MS_REMOUNT | MS_BIND | ms | (MS_RDONLY if readonly else 0), None)


def _set_readonly(ctypes, libc, call, path, readonly, recursive):
    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

    attr = MountAttr(MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else MOUNT_ATTR_RDONLY, 0, 0)
    if libc.syscall(SYS_MOUNT_SETATTR, -100, path.encode(), AT_RECURSIVE if recursive else 0,
                    ctypes.byref(attr), ctypes.sizeof(attr)) == 0:
        return
    if not recursive:
        _remount(call, path, readonly)
        return
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted(set(points), key=len):
        point = point.replace("\\040", " ")
        try:
            _remount(call, point, True)
        except OSError:
            if not os.path.isdir(point) or not os.statvfs(point).f_flag & 1:
                raise


def _isolate(opts):
    """Enter the namespaces and build the program's view of the file system (see the docstring)."""
    ctypes, libc, call = _libc()
    uid, gid = os.getuid(), os.getgid()
    opts["stdin_fd"] = os.open(opts["i"], os.O_RDONLY)  # before /tmp is covered
    call("unshare", CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
    # Inside, the kernel's own ids (a root kernel's as 1000: never root, so exec drops every capability).
    inner_uid, inner_gid = uid or 1000, gid or 1000
    for name, text in (("setgroups", "deny"), ("uid_map", f"{inner_uid} {uid} 1"),
                       ("gid_map", f"{inner_gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    call("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)  # nothing we mount reaches the kernel's view
    # Handles on the dirs to keep writable, before /tmp is covered (opened in this namespace: a bind
    # mount's source must be).
    keep = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY), True) for path in opts["w"]]
    keep += [(path, os.open(path, os.O_PATH | os.O_DIRECTORY), False) for path in opts["k"]]
    _set_readonly(ctypes, libc, call, "/", True, True)
    for path in sorted(opts["h"], key=len):
        if os.path.isdir(path):
            call("mount", b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, SCRATCH_TMPFS)
    for path, fd, writable in keep:
        os.makedirs(path, exist_ok=True)
        call("mount", f"/proc/self/fd/{fd}".encode(), path.encode(), None, MS_BIND | MS_REC, None)
        if writable:
            _set_readonly(ctypes, libc, call, path, False, False)
        os.close(fd)
    for path in opts["x"]:
        if os.path.lexists(path):
            call("mount", b"/dev/null", path.encode(), None, MS_BIND, None)
    return libc


def _init(opts, argv, meta, go, libc):
    """Pid 1 of the program's namespace: mount its /proc, fork the program, report its wait status.

    Pid 1 ignores every signal sent from inside its namespace, so the program cannot kill it;
    when it exits, the kernel kills everything left in the namespace.
    """
    try:
        os.close(meta)
        if os.read(go, 1) != b"1":
            os._exit(127)
        os.close(go)
        status_w = int(opts["status_fd"])
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError("cannot enter a mount namespace of its own")
        # A /proc of the pid namespace; else an empty one: the outer /proc would let the program
        # trace the kernel.
        if (libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0
                and libc.mount(b"tmpfs", b"/proc", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, None) != 0):
            raise OSError("cannot cover /proc")
        pid = os.fork()
        if pid == 0:
            os.close(status_w)
            env = _prepare(opts)
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError("no_new_privs")
            os.execve(argv[0], argv, env)
        os.close(opts["stdin_fd"])
        while True:
            done, status = os.waitpid(-1, 0)
            if done == pid:
                os.write(status_w, f"{status}\n".encode())
                os._exit(0)
    except OSError as exc:
        os.write(2, f"piston-reaper: {argv[0] if argv else '?'}: {exc.strerror or exc}\n".encode())
    except BaseException as exc:
        os.write(2, f"piston-reaper: {exc}\n".encode())
    os._exit(127)


def _program_pid(init):
    """The program's pid as this (outer) /proc names it: the child of the namespace's init."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    if int(f.read().rsplit(b")", 1)[1].split()[1]) == init:
                        return int(name)
            except (OSError, IndexError, ValueError):
                continue
    return None


# ---------------------------------------------------------------- limits and the wait

def _limit(pid, specs):
    import resource

    for spec in specs:
        name, soft, hard = parse_rlimit(spec)  # noqa: F821 (runrules.py, prepended)
        number = getattr(resource, "RLIMIT_" + name)
        soft = resource.RLIM_INFINITY if soft is None else soft
        hard = resource.RLIM_INFINITY if hard is None else hard
        if os.geteuid() != 0:
            # Unprivileged: a hard limit can only be lowered ("inf" is as high as it is now).
            current = resource.prlimit(pid, number)[1]
            if current != resource.RLIM_INFINITY:
                hard = current if hard == resource.RLIM_INFINITY else min(hard, current)
                soft = hard if soft == resource.RLIM_INFINITY else min(soft, hard)
        resource.prlimit(pid, number, (soft, hard))


def _cpu_ms(pid, hz):
    """CPU time of the program and of the children it reaped, from /proc (clock ticks)."""
    if pid is None:
        return 0
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
    libc = None
    status_r = -1
    if opts.get("n"):
        try:
            libc = _isolate(opts)
        except (OSError, ValueError, AttributeError) as exc:
            os.write(2, f"piston-reaper: isolation: {exc}\n".encode())
            sys.exit(1)
        status_r, status_w = os.pipe()
        opts["status_fd"] = status_w
    go_r, go_w = os.pipe()
    # SIGCHLD stays pending (blocked) so the wait below wakes the moment the program exits.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, [_signal.SIGCHLD])
    os.write(meta, START_MARK)  # noqa: F821 (runrules.py, prepended)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        if libc is not None:
            os.close(status_r)
            _init(opts, argv, meta, go_r, libc)
        _child(opts, argv, meta, go_r)
    os.close(go_r)
    if libc is not None:
        os.close(opts["status_fd"])
        os.close(opts["stdin_fd"])
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
    program = None if libc is not None else pid
    while True:
        try:
            done, status, usage = os.wait4(pid, os.WNOHANG)
        except InterruptedError:
            continue
        if done == pid:
            break
        if program is None:
            program = _program_pid(pid)
        if not killed:
            used = _cpu_ms(program, hz) + (_cpu_ms(pid, hz) if program != pid else 0)
            if wall_ms > 0 and (time.monotonic() - start) * 1000 >= wall_ms:
                killed = 2
            elif cpu_ms > 0 and used >= cpu_ms:
                killed = 1
            if killed:
                os.kill(pid, 9)  # in namespaces: their init, and with it everything inside
        _signal.sigtimedwait([_signal.SIGCHLD], 0.01)
    wall = int((time.monotonic() - start) * 1_000_000)
    if status_r >= 0:
        # The program's own wait status, as its init saw it (none if init was killed).
        reported = os.read(status_r, 64).split()
        if reported:
            status = int(reported[0])
    utime, stime = int(usage.ru_utime * 1_000_000), int(usage.ru_stime * 1_000_000)
    os.write(meta, meta_line(status, utime, stime, usage.ru_maxrss, wall, killed))  # noqa: F821


main()

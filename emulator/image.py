"""The ``pythonlts`` profile: each kernel sees a PythonLTS-like image, not this machine.

What a managed PythonLTS session is, as far as public sources go (labels as in emulator/README.md):

- [MS-SAMPLE] The built-in code interpreter runs Microsoft's BYOC base image "with slight modifications"
  (container-apps-dynamic-sessions-samples, code-interpreter/bring-your-own-code-interpreter/FAQs.md).
  That image: Ubuntu 24.04, a Jupyter venv at ``/home/ubuntu/snenv`` owned by the unprivileged ``ubuntu``
  user (samples/python/Dockerfile: ``USER ubuntu``, ``/home/ubuntu/snenv/bin/pip3 install``), data in
  ``/mnt/data`` (codeInterpreterConf.yaml ``dataDirectoryPath``), ``build-essential`` pre-installed (README).
- [DOC] Egress is disabled by default (session-pool.md ``EgressDisabled``); files live in ``/mnt/data``.
- [DOC] Sessions are isolated from each other; each is its own sandbox (a Hyper-V isolated container).
- Nothing public shows a JDK, node, ruby, php or go in PythonLTS (Node.js is its own NodeLTS pool type).
  gcc is in the BYOC base image but unverified for PythonLTS, so it is only there with ``--image-toolchains gcc``.

How the view is made (all with tools installed here: bubblewrap, setpriv, util-linux ``mount``):
bwrap, started by the (root) emulator without a user namespace, gives each kernel new mount, pid, network,
IPC and UTS namespaces over a read-only ``/usr`` and ``/etc``; a read-only overlay with whiteouts then
removes the hidden toolchains from ``/usr`` (they do not exist in the view, not merely fail to run), and
``setpriv`` drops to the session's uid with no capabilities and no_new_privs before ipykernel starts.
The kernel's ZMQ channels are unix sockets (jupyter's ``ipc`` transport) in a directory bound into the
sandbox, since TCP cannot cross the network namespace.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import struct
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HOME = "/home/ubuntu"  # [MS-SAMPLE] the BYOC image's user and home
VENV = f"{HOME}/snenv"  # [MS-SAMPLE] its Jupyter venv
DATA = "/mnt/data"  # [DOC] + [MS-SAMPLE] codeInterpreterConf.yaml dataDirectoryPath
RUN_DIR = "/run/jupyter"  # Guess: where the kernel's connection file and sockets live (not user-visible data)
USER_NAME = "ubuntu"
SHM_BYTES = 64 * 1024 * 1024  # Guess: Docker's default /dev/shm size
HOSTNAME = "sandbox"  # Guess: the real hostname is the pod name; nothing depends on it

# The toolchains a PythonLTS image does not show: names in /usr/bin (regex) and directories under /usr.
# Each is removed from the view unless its key is in --image-toolchains.
HIDDEN: dict[str, tuple[str, tuple[str, ...]]] = {
    "java": (
        r"(java|javac|javadoc|javap|jar|jarsigner|jshell|jlink|jdeps|jcmd|jconsole|jdb|jfr|jhsdb|jimage|jinfo|jmap|"
        r"jmod|jpackage|jps|jrunscript|jstack|jstat|jstatd|jwebserver|keytool|rmiregistry|serialver)",
        ("lib/jvm",),
    ),
    "node": (r"(node|nodejs|npm|npx|corepack|yarn|yarnpkg)", ("lib/node_modules", "include/node", "share/nodejs")),
    "ruby": (r"(ruby|irb|erb|gem|rake|rdoc|ri|bundle|bundler|racc)[\d.]*", ("lib/ruby",)),
    "php": (r"php[\w.-]*|phar[\w.]*|phpize[\w.]*", ("lib/php", "share/php")),
    "go": (r"go|gofmt|go[\d.]+", ("lib/go", "share/go")),
    "gcc": (
        r"(x86_64-linux-gnu-|aarch64-linux-gnu-)?(gcc|g\+\+|cpp|gcov|gcov-dump|gcov-tool|lto-dump)"
        r"(-ar|-nm|-ranlib)?(-\d+)?|cc|c\+\+|c89|c99|c89-gcc|c99-gcc",
        ("lib/gcc", "libexec/gcc"),
    ),
}
# Guess: go lives under /usr/local here; the image's /usr/local is empty (an Ubuntu base image's is).


# -- nested user namespaces ------------------------------------------------------------------------
# Guess: nothing public says whether a PythonLTS kernel may create user namespaces. Docker's and
# containerd's default seccomp profiles refuse them to a process without CAP_SYS_ADMIN, so that is the
# default (--kernel-userns deny); "allow" gives what this machine's kernel permits, so the harness's
# user-namespace path can be tested too. The filter is the Docker profile's rule for this: clone and
# unshare with CLONE_NEWUSER fail with EPERM, clone3 (whose flags a filter cannot read) with ENOSYS,
# so libc falls back to clone. x32 syscalls are refused outright.
_AUDIT_ARCH_X86_64 = 0xC000003E
_NR = {"clone": 56, "unshare": 272, "clone3": 435}
_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_EPERM, _ENOSYS = 1, 38


def userns_filter() -> bytes:
    """A classic-BPF seccomp program (bwrap --seccomp) denying new user namespaces, for x86-64."""
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    # (label, code, k, jump-if-true label, jump-if-false label); jumps (forward only) become offsets.
    program: list[tuple[str, int, int, str, str]] = [
        ("", ld, 4, "", ""),  # seccomp_data.arch
        ("", jeq, _AUDIT_ARCH_X86_64, "", "allow"),
        ("", ld, 0, "", ""),  # seccomp_data.nr
        ("", jge, _X32_BIT, "eperm", ""),
        ("", jeq, _NR["clone3"], "enosys", ""),
        ("", jeq, _NR["clone"], "flags", ""),
        ("", jeq, _NR["unshare"], "flags", "allow"),
        ("flags", ld, 16, "", ""),  # seccomp_data.args[0], low 32 bits
        ("", jset, _CLONE_NEWUSER, "eperm", "allow"),
        ("allow", ret, _RET_ALLOW, "", ""),
        ("eperm", ret, _RET_ERRNO | _EPERM, "", ""),
        ("enosys", ret, _RET_ERRNO | _ENOSYS, "", ""),
    ]
    at = {label: index for index, (label, *_rest) in enumerate(program) if label}
    out = bytearray()
    for index, (_label, code, k, true_to, false_to) in enumerate(program):
        jt = at[true_to] - index - 1 if true_to else 0
        jf = at[false_to] - index - 1 if false_to else 0
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)


@dataclass(frozen=True)
class Box:
    """One session's container filesystem on the host: data (/mnt/data), home, tmp, and the kernel's run dir.

    It outlives kernel restarts, like a container whose Jupyter kernel is restarted, and is removed with the
    session. ``uid`` owns it and runs the kernel (0 with --kernel-user root).
    """

    root: Path
    uid: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def run(self) -> Path:
        return self.root / "run"


@dataclass(frozen=True)
class Interpreter:
    """The project's interpreter: its base install, and the site-packages that hold ipykernel."""

    base_prefix: str
    executable: str  # the base interpreter binary
    version: str  # "3.11"
    site_packages: tuple[str, ...]  # of the (venv) interpreter the emulator was given
    base_site_packages: str  # where a --system-site-packages venv looks

    @classmethod
    def inspect(cls, python: str) -> Interpreter:
        code = (
            "import json, os, site, sys, sysconfig\n"
            "base = sysconfig.get_paths(vars={'base': sys.base_prefix, 'platbase': sys.base_prefix})['purelib']\n"
            "exe = os.path.realpath(getattr(sys, '_base_executable', sys.executable))\n"
            "print(json.dumps([sys.base_prefix, exe, '%d.%d' % sys.version_info[:2], site.getsitepackages(), base]))"
        )
        out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60)
        base_prefix, exe, version, sites, base_site = json.loads(out.stdout)
        return cls(base_prefix, exe, version, tuple(sites), base_site)


def whiteout_names(usr: Path, hidden: Iterable[str]) -> tuple[list[str], list[str]]:
    """(files under usr/bin, directories under usr) of the hidden toolchains that exist on this machine."""
    patterns = [re.compile(f"^(?:{HIDDEN[key][0]})$") for key in hidden]
    bin_dir = usr / "bin"
    names = sorted(n for n in os.listdir(bin_dir) if any(p.match(n) for p in patterns)) if bin_dir.is_dir() else []
    dirs = sorted({d for key in hidden for d in HIDDEN[key][1] if (usr / d).exists()})
    return names, dirs


def make_whiteouts(dest: Path, bin_names: list[str], dirs: list[str]) -> None:
    """An overlay layer whose whiteouts (0:0 character devices) delete those paths from /usr.

    ``/usr/local`` becomes an opaque, empty directory: this machine keeps extra toolchains there, an
    Ubuntu base image has nothing in it.
    """
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    for rel in [f"bin/{n}" for n in bin_names] + dirs:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (dest / "local").mkdir(mode=0o755, exist_ok=True)
    os.setxattr(dest / "local", "trusted.overlay.opaque", b"y")


class Image:
    """Prepared once per emulator (whiteout layer, venv template); builds each kernel's sandbox."""

    def __init__(
        self, root: Path, python: str, *, toolchains: tuple[str, ...], kernel_user: str, userns: str = "deny"
    ) -> None:
        if os.geteuid() != 0:
            raise RuntimeError(
                "--profile pythonlts needs root (bwrap namespaces, overlay mounts, setpriv); use --profile host"
            )
        for tool in ("/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/bin/mount"):
            if not os.access(tool, os.X_OK):
                raise RuntimeError(f"--profile pythonlts needs {tool}")
        self.root = root
        self.kernel_user = kernel_user
        self.userns = userns
        self.hidden = tuple(k for k in HIDDEN if k not in toolchains)
        self.python = Interpreter.inspect(python)
        self.whiteouts = root / "whiteouts"
        names, dirs = whiteout_names(Path("/usr"), self.hidden)
        make_whiteouts(self.whiteouts, names, dirs)
        self.venv_template = root / "venv-template"
        self._make_venv_template()
        self._lock = threading.Lock()

    def _make_venv_template(self) -> None:
        # --system-site-packages over the base interpreter, whose site-packages the sandbox replaces with the
        # project's (read-only): ipykernel and the scientific stack are importable, the venv itself is empty
        # and writable by the session user, as /home/ubuntu/snenv is in the BYOC image.
        subprocess.run(
            [self.python.executable, "-I", "-m", "venv", "--without-pip", "--system-site-packages", str(self.venv_template)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        for script in (self.venv_template / "bin").glob("activate*"):
            script.write_text(script.read_text().replace(str(self.venv_template), VENV))

    # -- per session ------------------------------------------------------------------------------
    def prepare_box(self, box: Box) -> None:
        """A pristine container filesystem: empty /mnt/data and /tmp, a fresh home with the template venv."""
        for directory in (box.data, box.home, box.tmp, box.run):
            directory.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.venv_template, box.home / "snenv", symlinks=True)
        for path in (box.root, box.data, box.home, box.run):
            os.chown(path, box.uid, box.uid)
        for dirpath, dirnames, filenames in os.walk(box.home):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), box.uid, box.uid)
        os.chmod(box.tmp, 0o1777)
        os.chmod(box.run, 0o700)
        (box.run / "passwd").write_text(self._passwd(box.uid))
        (box.run / "group").write_text(self._group(box.uid))
        for name in ("passwd", "group"):
            os.chmod(box.run / name, 0o644)

    def _passwd(self, uid: int) -> str:
        lines = ["root:x:0:0:root:/root:/bin/bash", "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"]
        if uid != 0:
            lines.insert(1, f"{USER_NAME}:x:{uid}:{uid}:Ubuntu:{HOME}:/bin/bash")
        return "\n".join(lines) + "\n"

    def _group(self, uid: int) -> str:
        lines = ["root:x:0:", "nogroup:x:65534:"]
        if uid != 0:
            lines.insert(1, f"{USER_NAME}:x:{uid}:")
        return "\n".join(lines) + "\n"

    def env(self, box: Box) -> dict[str, str]:
        """The kernel's environment: the image's, not the emulator's (nothing of this host leaks in)."""
        return {
            "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": HOME,
            "USER": USER_NAME if box.uid else "root",
            "LOGNAME": USER_NAME if box.uid else "root",
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "VIRTUAL_ENV": VENV,
            "IPYTHONDIR": f"{HOME}/.ipython",
            "MPLBACKEND": "Agg",
            "PYTHONUNBUFFERED": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "SESSION_DATA_DIR": DATA,
        }

    def seccomp_program(self, box: Box) -> bytes | None:
        """The filter for --kernel-userns deny; a root kernel keeps CAP_SYS_ADMIN, which Docker's profile exempts."""
        return userns_filter() if self.userns == "deny" and box.uid != 0 else None

    def argv(self, box: Box, kernel_argv: list[str], seccomp_fd: int | None = None) -> list[str]:
        """bwrap + setup script + setpriv + ``kernel_argv`` (run inside the sandbox as the box's uid)."""
        py = self.python
        args = [
            "/usr/bin/bwrap",
            "--die-with-parent",  # the emulator dies (even by SIGKILL): the sandbox goes with it
            "--new-session",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", HOSTNAME,
            "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--ro-bind", "/etc", "/etc",
            "--ro-bind", str(box.run / "passwd"), "/etc/passwd",
            "--ro-bind", str(box.run / "group"), "/etc/group",
            "--proc", "/proc", "--dev", "/dev", "--dir", "/sys",
            "--perms", "1777", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm",
            "--perms", "0755", "--dir", "/mnt", "--perms", "0755", "--dir", "/home", "--perms", "0755", "--dir", "/run",
            "--perms", "0755", "--dir", "/var", "--perms", "1777", "--dir", "/var/tmp",
        ]
        # The base interpreter at its own path (its libpython is found by an absolute rpath), and the
        # project's site-packages where a --system-site-packages venv looks for them.
        args += [*_parents(py.base_prefix), "--ro-bind", py.base_prefix, py.base_prefix]
        if py.site_packages and os.path.realpath(py.site_packages[0]) != os.path.realpath(py.base_site_packages):
            args += ["--ro-bind", py.site_packages[0], py.base_site_packages]
        args += [
            "--bind", str(box.data), DATA,
            "--bind", str(box.home), HOME,
            "--bind", str(box.tmp), "/tmp",
            "--bind", str(box.run), RUN_DIR,
            "--ro-bind", str(self.whiteouts), "/.image-layer",
            "--chdir", DATA,
            "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
        ]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        if box.uid == 0:
            args += ["--cap-add", "ALL"]  # test-only root kernel: root with capabilities, as in a root container
        drop = (
            f"exec /usr/bin/setpriv --reuid={box.uid} --regid={box.uid} --clear-groups "
            "--inh-caps=-all --bounding-set=-all --no-new-privs -- "
        )
        if box.uid == 0:
            drop = "exec "  # Guess: a root custom container keeps its capabilities
        # A sysfs of the sandbox's own network namespace (a bound host /sys would list the host's devices).
        setup = (
            "mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys && "
            "mount -t overlay -o ro,lowerdir=/.image-layer:/usr overlay /usr && umount /.image-layer && "
            f"rmdir /.image-layer 2>/dev/null; {drop}{shlex.join(kernel_argv)}"
        )
        return [*args, "/usr/bin/sh", "-c", setup]


def _parents(path: str) -> list[str]:
    """bwrap --dir for each parent of ``path``, traversable but not listable (0711) by the session user."""
    out: list[str] = []
    parts = Path(path).parts[1:-1]
    current = ""
    for part in parts:
        current += "/" + part
        out += ["--perms", "0711", "--dir", current]
    return out

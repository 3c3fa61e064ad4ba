"""Through the API on the emulator's pythonlts pool: a hostile submission leaves the next ones unchanged.

Three session kernels, each with the harness path it allows: the PythonLTS-like default
(unprivileged, user namespaces refused as by Docker's seccomp profile: isolation ``none``), the
same with user namespaces allowed (``userns``) and a root kernel (``uid``). On each, one
submission plants ``sitecustomize.py``, ``usercustomize.py`` and a ``.pth`` file in every
writable dir on its ``sys.path``, in the kernel's venv, user site and home dir, leaves files in
/tmp, /dev/shm and /mnt/data and starts a ``setsid`` daemon; the submissions after it see
exactly what the one before it saw, the kernel's venv interpreter included.
"""

from __future__ import annotations

import json
import os
import secrets
import signal

import pytest

from tests.conftest import Client
from tests.session_kernel import HOSTILE
from tests.unit.test_azure_harness import alive_with

# Where a submission in a PythonLTS session would plant things: found the way hostile code would.
TARGETS = """
import glob, os, sys
def targets():
    venvs = sorted(glob.glob("/home/*/*/lib/python3*/site-packages"))
    versions = sorted({os.path.basename(os.path.dirname(v)) for v in venvs})
    homes = sorted(set(glob.glob("/home/*")) | {"/root"})
    user_sites = [f"{h}/.local/lib/{v}/site-packages" for h in homes for v in versions]
    dirs = sorted({p for p in sys.path[1:] if p and os.path.isdir(p)} | set(venvs) | set(homes) | set(user_sites))
    return dirs, sorted(glob.glob("/home/*/*/bin/python"))
NAMES = ("sitecustomize.py", "usercustomize.py", "zz-planted.pth")
"""

PLANT = HOSTILE + TARGETS + """
import json
leak, marker = sys.argv[1], sys.argv[2]
dirs, _ = targets()
planted = plant(dirs) + leave(os.path.join(d, leak) for d in ("/tmp", "/dev/shm", "/mnt/data", *dirs))
daemon(marker)
print(json.dumps(planted))
"""

OBSERVE = TARGETS + """
import json, subprocess
leak = sys.argv[1]
dirs, pythons = targets()
probe = "import os, sys; print(os.environ.get('PLANTED'), sorted(m for m in sys.modules if 'customize' in m))"
print(json.dumps({
    "planted": os.environ.get("PLANTED"),
    "exists": sorted(os.path.join(d, n) for d in ("/tmp", "/dev/shm", "/mnt/data", *dirs) for n in (*NAMES, leak)
                     if os.path.lexists(os.path.join(d, n))),
    "venvs": [subprocess.run([p, "-c", probe], capture_output=True, text=True).stdout for p in pythons],
}))
"""


# The harness's path on each kind of session kernel (tests/conftest.py KERNEL_VARIANTS).
ISOLATION = {"unprivileged": "none", "userns": "userns", "root": "uid"}


@pytest.fixture
def pool(request: pytest.FixtureRequest, pool_kernel_client: Client) -> tuple[Client, str]:
    """(client, the isolation its sessions' harness takes)."""
    return pool_kernel_client, ISOLATION[request.node.callspec.params["pool_kernel_client"]]


def _run(client: Client, source: str, *args: str) -> dict:
    result = client.execute("python", source, name="main.py", args=list(args))
    assert result["run"]["code"] == 0, result
    return result


def test_a_hostile_submission_leaves_the_next_ones_on_the_pool_unchanged(pool: tuple[Client, str]) -> None:
    client, isolation = pool
    leak = f"leak-{secrets.token_hex(4)}"
    marker = f"{1000 + secrets.randbelow(9000)}.{secrets.randbelow(10**6)}"
    try:
        before = json.loads(_run(client, OBSERVE, leak)["run"]["stdout"])
        assert before["planted"] is None and not [p for p in before["exists"] if leak in p or p.endswith(".pth")]
        planted = json.loads(_run(client, PLANT, leak, marker)["run"]["stdout"])
        if isolation == "none":
            # The kernel's own user: the venv, its user site and home dir are writable, and put back.
            assert [p for p in planted if "/snenv/" in p and p.endswith(".pth")], planted
        else:
            assert not [p for p in planted if p.startswith("/home/")], planted
        for _ in range(2):
            after = json.loads(_run(client, OBSERVE, leak)["run"]["stdout"])
            assert after == before
        assert not alive_with(f"sleep {marker}"), "the setsid daemon outlived its submission"
    finally:
        for pid in alive_with(f"sleep {marker}"):
            os.kill(pid, signal.SIGKILL)

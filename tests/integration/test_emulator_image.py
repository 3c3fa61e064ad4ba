"""What code in a session sees: the ``pythonlts`` image view (default), its options, and ``--profile host``.

Each claim here is one the emulator README says the profile rests on; each test runs real code in a
real kernel and looks from inside (and, for processes, from the host).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from emulator.testing import EmulatorProcess
from tests.integration.emulator_helpers import Client, host_pids, ident, msi_token, wait_until

HIDDEN = ("java", "javac", "node", "npm", "ruby", "php", "go", "gcc", "g++", "cc")


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(ready_sessions=2, max_sessions=20) as process:
        yield process


@pytest.fixture(scope="module")
def dp(emu: EmulatorProcess) -> Client:
    return Client(emu, msi_token(emu).json()["access_token"])


def value(dp: Client, sid: str, code: str) -> Any:
    body = dp.run(sid, code)
    assert body["status"] == "Succeeded", body["result"]["stderr"]
    return body["result"]["executionResult"]


def json_value(dp: Client, sid: str, code: str) -> Any:
    """The last expression of ``code`` sent back through json (keeps bools and None exact)."""
    return json.loads(value(dp, sid, "import json\n" + code.rstrip() + "\n"))


PROBE = r"""
import os, pwd, shutil, site, sys
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
venv_site = site.getsitepackages()[0]
json.dumps({
    "uid": os.getuid(), "user": pwd.getpwuid(os.getuid()).pw_name, "home": os.environ["HOME"],
    "cwd": os.getcwd(), "prefix": sys.prefix, "venv_site": venv_site,
    "venv_site_writable": os.access(venv_site, os.W_OK), "venv_owner": os.stat(sys.prefix).st_uid,
    "cap_eff": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
    "ipykernel": __import__("ipykernel").__name__,
    "env": sorted(os.environ),
})
"""


def test_kernel_is_the_unprivileged_ubuntu_user_with_a_writable_venv(dp: Client) -> None:
    seen = json_value(dp, ident(), PROBE)
    assert seen["uid"] != 0 and seen["user"] == "ubuntu" and seen["home"] == "/home/ubuntu"
    assert seen["cwd"] == "/mnt/data"
    assert seen["prefix"] == "/home/ubuntu/snenv" and seen["venv_site"].startswith("/home/ubuntu/snenv/")
    assert seen["venv_site_writable"] and seen["venv_owner"] == seen["uid"]
    assert seen["cap_eff"] == "0000000000000000" and seen["no_new_privs"] == "1"
    assert seen["ipykernel"] == "ipykernel"
    # The emulator's own environment (its identity secret, this machine's variables) stays outside.
    assert not [k for k in seen["env"] if k.startswith(("IDENTITY_", "MSI_", "AZURE_", "SANDBOX_"))]


def test_image_has_python_bash_and_perl_but_no_other_toolchain(dp: Client) -> None:
    code = (
        "import os, shutil, subprocess\n"
        f"hidden = {{t: [shutil.which(t), os.path.lexists('/usr/bin/' + t)] for t in {HIDDEN!r}}}\n"
        "run = lambda argv: subprocess.run(argv, capture_output=True, text=True).stdout.strip()\n"
        "json.dumps({'hidden': hidden, 'jvm': os.path.exists('/usr/lib/jvm'), 'local': os.listdir('/usr/local'),\n"
        "  'bash': run(['/bin/bash', '-c', 'echo $((6*7))']), 'perl': run(['perl', '-e', 'print 6*7']),\n"
        "  'python3': run(['python3', '-c', 'print(6*7)'])})"
    )
    seen = json_value(dp, ident(), code)
    assert seen["hidden"] == {t: [None, False] for t in HIDDEN}
    assert seen["jvm"] is False and seen["local"] == []
    assert seen["bash"] == seen["perl"] == seen["python3"] == "42"


def test_no_network_not_even_to_the_emulator(emu: EmulatorProcess, dp: Client) -> None:
    port = int(emu.base_url.rsplit(":", 1)[1])
    code = (
        "import os, socket\n"
        "def attempt(host, port):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=3).close()\n"
        "        return 'connected'\n"
        "    except OSError as exc:\n"
        "        return type(exc).__name__\n"
        f"json.dumps([attempt('127.0.0.1', {port}), attempt('1.1.1.1', 53), sorted(os.listdir('/sys/class/net'))])"
    )
    emulator, outside, interfaces = json_value(dp, ident(), code)
    assert emulator != "connected" and outside != "connected"
    assert interfaces == ["lo"]


def test_host_files_are_out_of_sight(dp: Client) -> None:
    code = "import os\njson.dumps([os.path.exists(p) for p in ('/work', '/root/.cache', '/old_root', '/farm')])"
    assert json_value(dp, ident(), code) == [False, False, False, False]


def test_sessions_do_not_see_each_others_files_or_processes(dp: Client) -> None:
    a, b = ident(), ident()
    marker = f"0.{uuid.uuid4().int % 10**12:012d}"
    value(
        dp,
        a,
        "import os, subprocess\n"
        f"subprocess.Popen(['sleep', '300', '{marker}'], start_new_session=True)\n"
        "for p in ('/tmp/a', '/home/ubuntu/a', '/mnt/data/a', '/dev/shm/a'):\n"
        "    open(p, 'w').write('a')\n",
    )
    assert len(host_pids(marker)) == 1
    seen = json_value(
        dp,
        b,
        "import os\n"
        "cmds = [open(f'/proc/{p}/cmdline', 'rb').read() for p in os.listdir('/proc') if p.isdigit()]\n"
        f"json.dumps([any(b'{marker}' in c for c in cmds), os.listdir('/tmp'), os.listdir('/mnt/data'),\n"
        "  os.listdir('/dev/shm'), sorted(os.listdir('/home/ubuntu'))])",
    )
    assert seen == [False, [], [], [], [".ipython", "snenv"]]


PLANT = r"""
import os, site, subprocess, sys
dirs = [p for p in sys.path if p and os.path.isdir(p) and os.access(p, os.W_OK)]
dirs += [site.getusersitepackages(), os.path.expanduser("~")]
for d in dirs:
    os.makedirs(d, exist_ok=True)
    for name in ("sitecustomize.py", "usercustomize.py"):
        open(os.path.join(d, name), "w").write("import os; os.environ['PLANTED'] = '1'\n")
    open(os.path.join(d, "planted.pth"), "w").write("import os; os.environ['PLANTED_PTH'] = '1'\n")
for p in ("/tmp/planted", "/mnt/data/planted", "/home/ubuntu/.bashrc"):
    open(p, "a").write("planted\n")
subprocess.Popen(["setsid", "sleep", "300", MARKER])
dirs
"""

CHECK = r"""
import os, subprocess, sys
out = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('PLANTED'), os.environ.get('PLANTED_PTH'))"],
                     capture_output=True, text=True).stdout.split()
cmds = [open(f"/proc/{p}/cmdline", "rb").read() for p in os.listdir("/proc") if p.isdigit()]
json.dumps({"env": out, "tmp": os.listdir("/tmp"), "data": os.listdir("/mnt/data"),
            "bashrc": os.path.exists("/home/ubuntu/.bashrc"), "daemon": any(MARKER.encode() in c for c in cmds),
            "venv": sorted(os.listdir(__import__("site").getsitepackages()[0]))})
"""


def test_a_fresh_identifier_starts_from_the_pristine_image(dp: Client) -> None:
    """In Azure each session is its own container: a new identifier must not inherit anything."""
    marker = f"0.{uuid.uuid4().int % 10**12:012d}"
    planted = ident()
    planted_in = value(dp, planted, f"MARKER = {marker!r}\n" + PLANT)
    assert any(d.startswith("/home/ubuntu/snenv") for d in planted_in)  # the venv itself was writable
    # The planting session itself is affected (a new interpreter picks the files up) ...
    assert json_value(dp, planted, f"MARKER = {marker!r}\n" + CHECK)["env"] == ["1", "1"]
    # ... a new identifier is not, and neither is the planter's identifier once its session is deleted.
    fresh = {"env": ["None", "None"], "tmp": [], "data": [], "bashrc": False, "daemon": False, "venv": []}
    assert json_value(dp, ident(), f"MARKER = {marker!r}\n" + CHECK) == fresh
    assert dp.call("DELETE", "/session", identifier=planted).status_code == 204
    assert wait_until(lambda: not host_pids(marker), 10)
    assert json_value(dp, planted, f"MARKER = {marker!r}\n" + CHECK) == fresh


def test_a_restarted_kernel_keeps_its_container(dp: Client) -> None:
    """Guess (emulator README): Jupyter restarts a dead kernel inside the same container."""
    sid = ident()
    value(dp, sid, "open('/mnt/data/kept', 'w').write('d'); open('/tmp/kept', 'w').write('t'); x = 1")
    died = dp.run(sid, "import os; os._exit(1)")
    assert died["status"] == "Failed"
    seen = json_value(dp, sid, "import os\njson.dumps([os.listdir('/mnt/data'), os.listdir('/tmp'), 'x' in globals()])")
    assert seen == [["kept"], ["kept"], False]


def test_uploads_land_in_mnt_data_and_belong_to_the_session_user(dp: Client) -> None:
    sid = ident()
    up = dp.call("POST", "/files", identifier=sid, files={"file": ("in.txt", b"uploaded")}, params={"path": "sub"})
    assert up.status_code == 200, up.text
    code = (
        "import os\n"
        "text = open('/mnt/data/sub/in.txt').read()\n"
        "open('/mnt/data/sub/in.txt', 'a').write('+kernel')\n"
        "open('/mnt/data/sub/made.txt', 'w').write('by kernel')\n"
        "mine = lambda p: os.stat(p).st_uid == os.getuid()\n"
        "json.dumps([text, mine('/mnt/data/sub'), mine('/mnt/data/sub/in.txt')])"
    )
    assert json_value(dp, sid, code) == ["uploaded", True, True]
    made = dp.call("GET", "/files/made.txt/content", identifier=sid, params={"path": "sub"})
    assert made.status_code == 200 and made.content == b"by kernel"
    changed = dp.call("GET", "/files/in.txt/content", identifier=sid, params={"path": "sub"})
    assert changed.content == b"uploaded+kernel"


def test_user_namespaces_are_refused_by_default(dp: Client) -> None:
    code = (
        "import subprocess\n"
        "r = subprocess.run(['unshare', '--user', 'true'], capture_output=True, text=True)\n"
        "json.dumps([r.returncode, r.stderr])"
    )
    returncode, stderr = json_value(dp, ident(), code)
    assert returncode != 0 and "Operation not permitted" in stderr


def test_root_kernel_gcc_and_user_namespaces_on_request() -> None:
    """--kernel-user root (test-only), --image-toolchains gcc, --kernel-userns allow."""
    with EmulatorProcess(ready_sessions=1, kernel_user="root", image_toolchains=["gcc"], kernel_userns="allow") as emu:
        dp = Client(emu, msi_token(emu).json()["access_token"])
        code = (
            "import os, subprocess\n"
            "open('/tmp/h.c', 'w').write('#include <stdio.h>\\nint main(void){puts(\"compiled\");return 0;}')\n"
            "cc = subprocess.run(['gcc', '-o', '/tmp/h', '/tmp/h.c'], capture_output=True, text=True)\n"
            "ns = subprocess.run(['unshare', '--user', 'true'], capture_output=True, text=True)\n"
            "json.dumps([os.getuid(), os.getcwd(), cc.returncode, subprocess.run(['/tmp/h'], capture_output=True,\n"
            "  text=True).stdout, ns.returncode, [t for t in ('java', 'node') if __import__('shutil').which(t)]])"
        )
        assert json_value(dp, ident(), code) == [0, "/mnt/data", 0, "compiled\n", 0, []]


def test_host_profile_is_this_machine() -> None:
    with EmulatorProcess(ready_sessions=1, profile="host") as emu:
        dp = Client(emu, msi_token(emu).json()["access_token"])
        code = (
            "import os, shutil\n"
            "json.dumps([os.getcwd() == os.environ['SESSION_DATA_DIR'], os.getcwd(), bool(shutil.which('perl'))])"
        )
        same_dir, cwd, perl = json_value(dp, ident(), code)
        assert same_dir and cwd != "/mnt/data" and perl

"""Hostile submissions: each is contained, and the service stays healthy afterwards."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from backend.testing import REPO, ServerProcess
from tests.conftest import SECRET, Client
from tests.integration.programs import MEMORY_HOG

UID_BASE = 60000


def sandbox_processes(uids: set[int]) -> list[str]:
    """Processes of the given sandbox uids still alive."""
    out = subprocess.run(["ps", "-eo", "uid=,pid=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if int(line.split()[0]) in uids]


@pytest.fixture(scope="module")
def slot_uids(local_client: Client) -> set[int]:
    """The uids of this server's slots (other services on the machine have their own)."""
    return {UID_BASE + index for index in local_client.get("/health").json()["sandbox"]["slots"]}


@pytest.fixture(autouse=True)
def service_stays_healthy(local_client: Client, local_server: ServerProcess, slot_uids: set[int]) -> Iterator[None]:
    yield
    assert local_server.proc is not None and local_server.proc.poll() is None, "the service died"
    assert local_client.get("/health").status_code == 200
    assert local_client.execute("python", "print(6*7)")["run"]["stdout"] == "42\n"
    # Slots are recycled in the background; give the kill a moment, then nothing may remain.
    deadline = time.monotonic() + 5
    waiting = ("piston-launch", "bwrap", ".launch inner")  # idle sandboxes spawned for the next job
    while (left := [p for p in sandbox_processes(slot_uids) if not any(k in p for k in waiting)]) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"submission processes survived: {left}"


@pytest.fixture(scope="module")
def runtimes(local_client: Client) -> set[str]:
    return {rt["language"] for rt in local_client.get("/api/v2/runtimes").json()}


def test_fork_bomb(local_client: Client) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    run = local_client.execute("python", code, run_timeout=2000)["run"]
    assert run["status"] in ("TO", "SG", "RE")


def test_bash_fork_bomb(local_client: Client) -> None:
    run = local_client.execute("bash", ":(){ :|:& };:", run_timeout=2000)["run"]
    assert run["status"] is not None or run["code"] != 0 or run["wall_time"] < 2500


@pytest.mark.parametrize("language", list(MEMORY_HOG))
def test_memory_hog_is_stopped_at_the_limit(local_client: Client, runtimes: set[str], language: str) -> None:
    if language not in runtimes:
        pytest.skip(f"{language} not installed")
    name, code = MEMORY_HOG[language]
    limit = 256 * 1024 * 1024
    run = local_client.execute(language, code, name=name, run_memory_limit=limit, run_timeout=3000)["run"]
    assert run["status"] in ("SG", "RE", "TO"), run
    assert run["code"] != 0
    assert run["memory"] is not None and run["memory"] <= limit * 1.05


def test_infinite_loop(local_client: Client) -> None:
    # A CPU limit well under the wall limit: on a loaded machine the loop gets a fraction of a core.
    run = local_client.execute("c", "int main(void){for(;;);}", run_cpu_time=300)["run"]
    assert (run["status"], run["message"]) == ("TO", "Time limit exceeded")


def test_sleep_past_timeout(local_client: Client) -> None:
    started = time.monotonic()
    run = local_client.execute("bash", "sleep 30", run_timeout=1000)["run"]
    assert (run["status"], run["message"]) == ("TO", "Time limit exceeded (wall clock)")
    assert time.monotonic() - started < 30  # killed, not slept out (speed is bench/'s)


def test_100mb_of_output(local_client: Client) -> None:
    run = local_client.execute("c", '#include <stdio.h>\nint main(void){for(int i=0;i<1600000;i++)'
                         'fputs("0123456789012345678901234567890123456789012345678901234567890123\\n",stdout);}')["run"]
    assert run["status"] == "OL" and len(run["stdout"]) == 1048576


def test_writing_a_1gb_file(local_client: Client) -> None:
    py = local_client.execute("python", "f = open('big', 'wb')\nfor _ in range(1024):\n    f.write(b'x' * 1048576)\n")["run"]
    assert py["status"] == "RE" and "File too large" in py["stderr"]
    c = local_client.execute("c", '#include <stdio.h>\nint main(void){FILE*f=fopen("big","wb");static char b[1<<20];'
                       "for(int i=0;i<1024;i++)fwrite(b,1,sizeof b,f);fclose(f);return 0;}")["run"]
    assert (c["status"], c["signal"]) == ("SG", "SIGXFSZ")


def test_many_files_cannot_fill_the_disk(local_client: Client) -> None:
    # Each file is under RLIMIT_FSIZE; together they exceed the slot's box (SANDBOX_BOX_BYTES, 256 MiB).
    code = ("import os\nfor i in range(60):\n    with open(f'f{i}', 'wb') as f:\n        f.write(os.urandom(9_000_000))\n"
            "print('wrote all')")
    run = local_client.execute("python", code, run_timeout=3000)["run"]
    assert run["status"] == "RE" and "No space left on device" in run["stderr"], run
    assert "wrote all" not in run["stdout"]


def test_reading_the_service_environment_and_files(local_client: Client, local_server: ServerProcess) -> None:
    code = f"""
import os, glob
found = []
found.append(str(dict(os.environ)))
for path in glob.glob('/proc/*/environ') + ['/proc/1/environ', '/proc/{local_server.proc.pid}/environ']:
    try:
        found.append(open(path, 'rb').read().decode(errors='replace'))
    except OSError as e:
        pass
for path in ['{REPO}/.env', '{REPO}/app.py', '/etc/shadow', '/root', '/tmp/piston-state']:
    try:
        found.append(open(path).read() if os.path.isfile(path) else str(os.listdir(path)))
    except OSError as e:
        print('denied', path, type(e).__name__)
print(sorted(os.listdir('/')))
print('SECRET' if '{SECRET[:6]}' + '{SECRET[6:]}' in ''.join(found) else 'clean')
"""
    run = local_client.execute("python", code)["run"]
    assert SECRET not in run["output"]
    assert run["stdout"].rstrip().endswith("clean")
    assert f"denied {REPO}/app.py" in run["stdout"]
    assert "denied /etc/shadow" in run["stdout"]


def test_network_is_unreachable(local_client: Client, local_server: ServerProcess) -> None:
    code = f"""
import socket
for host, port in [('127.0.0.1', {local_server.port}), ('10.0.0.1', 80), ('1.1.1.1', 53), ('localhost', {local_server.port})]:
    try:
        socket.create_connection((host, port), timeout=2).close()
        print('CONNECTED', host)
    except OSError as e:
        print('blocked', host, type(e).__name__)
"""
    run = local_client.execute("python", code)["run"]
    assert "CONNECTED" not in run["stdout"] and run["stdout"].count("blocked") == 4, run


def test_setsid_daemon_does_not_outlive_its_run(local_client: Client) -> None:
    code = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            time.sleep(0.1)
    os._exit(0)
print('parent done')
"""
    run = local_client.execute("python", code)["run"]
    assert run["stdout"] == "parent done\n"
    # The autouse fixture asserts that no process of the sandbox uids survives.


def test_concurrent_submission_files_are_invisible(local_client: Client) -> None:
    victim = "import time\nopen('secret.txt', 'w').write('victim-data-91')\nprint('written', flush=True)\ntime.sleep(2)"
    results: dict[str, dict] = {}
    thread = threading.Thread(target=lambda: results.update(victim=local_client.execute("python", victim)))
    thread.start()
    time.sleep(0.8)
    spy = """
import os, glob
hits = []
for pattern in ['/tmp/piston-boxes/*/box/secret.txt', '/box/../*/box/secret.txt', '/proc/*/cwd/secret.txt',
                '/proc/*/root/box/secret.txt', '/tmp/*']:
    for path in glob.glob(pattern):
        try:
            hits.append(open(path).read())
        except OSError:
            pass
print('LEAK' if any('victim-data-91' in h for h in hits) else 'clean', len(hits))
"""
    spy_run = local_client.execute("python", spy)["run"]
    thread.join()
    assert results["victim"]["run"]["stdout"] == "written\n"
    assert spy_run["stdout"].startswith("clean"), spy_run


def test_signalling_the_server(local_client: Client, local_server: ServerProcess) -> None:
    assert local_server.proc is not None
    code = f"""
import os, signal
for pid in [{local_server.proc.pid}, 1, -1]:
    try:
        os.kill(pid, signal.SIGKILL)
        print('sent', pid)
    except OSError as e:
        print('refused', pid, type(e).__name__)
"""
    run = local_client.execute("python", code)["run"]
    assert f"sent {local_server.proc.pid}" not in run["stdout"]
    # Inside the pid namespace, 1 and -1 only reach the sandbox's own processes.


# The one thing every sandbox shares is the read-only /dev template; a run can change nothing in it.
DEV_LISTING = "import os; print(sorted(os.listdir('/dev')), os.listdir('/dev/shm'))"


def test_dev_template_cannot_carry_anything_to_the_next_run(local_client: Client) -> None:
    assert local_client.get("/health").json()["sandbox"]["dev"] == "template"  # root, as here
    before = local_client.execute("python", DEV_LISTING)["run"]["stdout"]
    hostile = """
import os
for action in [lambda: open('/dev/planted', 'w'), lambda: os.mkdir('/dev/dir'), lambda: os.chmod('/dev', 0o777),
               lambda: os.chmod('/dev/null', 0o600), lambda: os.unlink('/dev/zero'), lambda: os.symlink('/x', '/dev/l'),
               lambda: os.rename('/dev/full', '/dev/full2')]:
    try:
        action()
        print('CHANGED')
    except OSError:
        pass
open('/dev/shm/left-behind', 'w').write('x')  # shm is the run's own tmpfs: writable, and gone after
print('done', os.listdir('/dev/shm'))
"""
    run = local_client.execute("python", hostile)["run"]
    assert run["stdout"] == "done ['left-behind']\n", run
    assert local_client.execute("python", DEV_LISTING)["run"]["stdout"] == before
    assert "[]" in before and "'null'" in before and "'urandom'" in before


def test_devices_and_shared_memory_work(local_client: Client) -> None:
    code = """
import multiprocessing, os
lock = multiprocessing.Lock()  # a POSIX semaphore in /dev/shm
with lock:
    pass
with open('/dev/null', 'w') as f:
    f.write('x')
print(len(os.urandom(8)), open('/dev/zero', 'rb').read(2))
"""
    run = local_client.execute("python", code)["run"]
    assert run["stdout"] == "8 b'\\x00\\x00'\n", run

"""Sandbox modes other than the default, and back-pressure: each through a real gunicorn process."""

from __future__ import annotations

import subprocess
import threading
import time

import requests

from backend.testing import ServerProcess

HELLO = {"language": "python", "version": "*", "files": [{"content": "import os\nprint(os.getuid())"}]}


def _post(url: str, body: dict = HELLO) -> requests.Response:
    return requests.post(url + "/api/v2/execute", json=body, timeout=60)


def test_no_isolation_is_refused_unless_allowed() -> None:
    with ServerProcess({"SANDBOX_MODE": "none", "MAX_CONCURRENT_JOBS": "1"}) as server:
        health = requests.get(server.url + "/health", timeout=10).json()
        assert health["sandbox"]["mode"] == "unavailable" and "ALLOW_UNSAFE_SANDBOX" in health["sandbox"]["refused"]
        assert requests.get(server.url + "/ready", timeout=10).status_code == 503
        refused = _post(server.url)
        assert refused.status_code == 503 and "local sandbox unavailable" in refused.json()["message"]


def test_uid_mode_without_namespaces_still_separates_and_kills() -> None:
    # What an unprivileged container offers: per-slot uids and rlimits, no namespaces.
    with ServerProcess({"SANDBOX_MODE": "uid", "MAX_CONCURRENT_JOBS": "1"}) as server:
        assert requests.get(server.url + "/health", timeout=10).json()["sandbox"]["mode"].startswith("uid")
        run = _post(server.url).json()["run"]
        assert run["code"] == 0 and int(run["stdout"]) >= 60000  # not root, not the service's uid
        daemon = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
                  "    os._exit(0)\nprint(os.getuid())")
        uid = _post(server.url, {**HELLO, "files": [{"content": daemon}]}).json()["run"]["stdout"].strip()
        time.sleep(0.5)
        # Only the slot's next sandbox, waiting for its job, may run under that uid now.
        left = subprocess.run(["pgrep", "-a", "-u", uid], capture_output=True, text=True).stdout.splitlines()
        # (A killed daemon may linger as a zombie until init reaps it: dead, holding nothing.)
        assert all("piston-launch" in line or "<defunct>" in line for line in left), left


def test_uid_mode_files_are_private_to_their_run() -> None:
    # Without namespaces /tmp is shared by the slots: two submissions at the same moment must not read
    # each other's files (the next one never sees them: they are removed after the run).
    writer = "import os\nopen('/tmp/piston-mine', 'w').write('secret')\nprint(oct(os.stat('/tmp/piston-mine').st_mode & 0o777))"
    with ServerProcess({"SANDBOX_MODE": "uid", "MAX_CONCURRENT_JOBS": "1"}) as server:
        run = _post(server.url, {**HELLO, "files": [{"content": writer}]}).json()["run"]
        assert (run["code"], run["stdout"]) == (0, "0o600\n"), run


def test_full_queue_answers_503_at_once() -> None:
    env = {"MAX_CONCURRENT_JOBS": "1", "MAX_QUEUED_JOBS": "0", "QUEUE_TIMEOUT_MS": "500"}
    with ServerProcess(env) as server:
        slow = {**HELLO, "files": [{"content": "import time\ntime.sleep(1.5)"}]}
        thread = threading.Thread(target=_post, args=(server.url, slow))
        thread.start()
        time.sleep(0.5)
        busy = _post(server.url)
        thread.join()
        # "queue is full", not "timed out waiting": refused at once, without waiting QUEUE_TIMEOUT_MS.
        assert busy.status_code == 503 and "queue is full" in busy.json()["message"]
        assert _post(server.url).status_code == 200  # capacity is back


def test_waiting_longer_than_the_queue_timeout_answers_503() -> None:
    env = {"MAX_CONCURRENT_JOBS": "1", "MAX_QUEUED_JOBS": "4", "QUEUE_TIMEOUT_MS": "300"}
    with ServerProcess(env) as server:
        slow = {**HELLO, "files": [{"content": "import time\ntime.sleep(1.5)"}]}
        thread = threading.Thread(target=_post, args=(server.url, slow))
        thread.start()
        time.sleep(0.5)
        waited = _post(server.url)
        thread.join()
        assert waited.status_code == 503 and "timed out waiting for a free sandbox" in waited.json()["message"]

"""No submission can starve the host of memory: a default per-run cap, and a budget over all slots.

Hogs map 3 GiB with MAP_POPULATE and touch every page, asking for no limit. Each run must
end as a memory kill (SG, SIGKILL; MLE in the judge) while the service stays healthy.
The test's own footprint stays at the caps: at most 4 GiB at once, for under a second.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from backend.executors.local.cgroups import V1_ROOT, V2_ROOT, detect_version
from backend.testing import ServerProcess

MiB = 2**20
DEFAULT_CAP = 1024 * MiB  # RUN_MEMORY_LIMIT's default
BUDGET = 1024 * MiB
HOG_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    size_t mib = strtoull(argv[1], 0, 10);
    char *p = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 2; }
    memset(p, 1, mib << 20);   /* whatever MAP_POPULATE left out */
    usleep(strtoul(argv[2], 0, 10) * 1000);
    printf("held %zu MiB\n", mib);
    return 0;
}
"""


def _server(env: dict[str, str]) -> Iterator[ServerProcess]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("RUN_MEMORY_LIMIT", "COMPILE_MEMORY_LIMIT", "SANDBOX_MEMORY_BUDGET_BYTES"):
            patch.delenv(name, raising=False)  # these servers run on the defaults unless told
        # Generous time limits: on a loaded machine the kernel's reclaim before a kill can take seconds.
        server = ServerProcess({"MAX_CONCURRENT_JOBS": "4", "RUN_TIMEOUT": "20000", "RUN_CPU_TIME": "20000", **env})
    with server:
        yield server


@pytest.fixture(scope="module")
def default_server() -> Iterator[ServerProcess]:
    yield from _server({})


@pytest.fixture(scope="module")
def budget_server() -> Iterator[ServerProcess]:
    # Its own parent cgroup: the 1 GiB budget must not bind other test servers of this worktree.
    name = os.environ.get("SANDBOX_CGROUP_NAME", "piston") + "-budget"
    yield from _server({"RUN_MEMORY_LIMIT": "-1", "SANDBOX_MEMORY_BUDGET_BYTES": str(BUDGET), "SANDBOX_CGROUP_NAME": name})


def _requires_cgroups(server: ServerProcess) -> dict[str, Any]:
    sandbox = requests.get(server.url + "/health", timeout=10).json()["sandbox"]
    if not sandbox["cgroups"]:
        pytest.skip("no writable cgroups here: memory is capped by RLIMIT_DATA only and there is no budget")
    return sandbox


def _hogs(server: ServerProcess, mib: int, hold_ms: int, limits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def one(fields: dict[str, Any]) -> dict[str, Any]:
        body = {"language": "c", "version": "*", "files": [{"name": "hog.c", "content": HOG_C}],
                "args": [str(mib), str(hold_ms)], **fields}
        response = requests.post(server.url + "/api/v2/execute", json=body, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()["run"]

    with ThreadPoolExecutor(len(limits)) as pool:
        return list(pool.map(one, limits))


def _assert_memory_kill(run: dict[str, Any], cap: int) -> None:
    assert (run["status"], run["signal"], run["code"]) == ("SG", "SIGKILL", None), run
    assert run["message"] == "Caught fatal signal 9" and "held" not in run["stdout"]
    assert run["memory"] <= cap, run["memory"]


def _assert_healthy(server: ServerProcess) -> None:
    assert server.proc is not None and server.proc.poll() is None, "the service was killed"
    health = requests.get(server.url + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["inflight"] == 0


def test_four_concurrent_3gib_hogs_asking_no_limit_get_the_default_cap(default_server: ServerProcess) -> None:
    _requires_cgroups(default_server)
    runs = _hogs(default_server, 3072, 500, [{}, {"run_memory_limit": -1}, {}, {"run_memory_limit": -1}])
    for run in runs:
        _assert_memory_kill(run, DEFAULT_CAP)
        assert run["memory"] > DEFAULT_CAP // 2  # it did reach the cap, it did not fail early
    _assert_healthy(default_server)


def test_a_default_capped_hog_is_mle_in_the_judge(default_server: ServerProcess) -> None:
    _requires_cgroups(default_server)
    body = {"language": "c", "version": "*", "files": [{"name": "hog.c", "content": HOG_C}], "args": ["3072", "0"],
            "testcases": [{"stdin": "", "expected_output": "held 3072 MiB"}]}
    response = requests.post(default_server.url + "/api/v2/judge", json=body, timeout=120)
    assert response.status_code == 200 and response.json()["verdict"] == "MLE", response.text


def test_a_hog_within_the_cap_runs(default_server: ServerProcess) -> None:
    run = _hogs(default_server, 64, 0, [{}])[0]
    assert (run["status"], run["code"], run["stdout"]) == (None, 0, "held 64 MiB\n")


def test_the_budget_is_the_limit_of_the_slots_parent_cgroup(budget_server: ServerProcess) -> None:
    sandbox = _requires_cgroups(budget_server)
    assert sandbox["memory_budget"] == BUDGET
    name = os.environ.get("SANDBOX_CGROUP_NAME", "piston") + "-budget"
    if detect_version() == 2:
        limit = (V2_ROOT / name / "memory.max").read_text()
    else:
        limit = (V1_ROOT / "memory" / name / "memory.limit_in_bytes").read_text()
    assert int(limit) == BUDGET
    assert not Path(f"/proc/{budget_server.proc.pid}/cgroup").read_text().count(name)  # the service is outside it


def test_over_budget_runs_end_as_memory_kills(budget_server: ServerProcess) -> None:
    _requires_cgroups(budget_server)
    # No per-run cap here (RUN_MEMORY_LIMIT=-1): only the budget stops each 3 GiB hog.
    for run in _hogs(budget_server, 3072, 500, [{}, {}, {}, {}]):
        _assert_memory_kill(run, BUDGET)
    _assert_healthy(budget_server)


def test_the_sum_of_concurrent_runs_stays_under_the_budget(budget_server: ServerProcess) -> None:
    _requires_cgroups(budget_server)
    # Each 400 MiB hog fits on its own; four holding at once (1600 MiB) do not fit in 1 GiB.
    runs = _hogs(budget_server, 400, 2000, [{}, {}, {}, {}])
    killed = [run for run in runs if run["status"] == "SG"]
    assert killed, runs
    for run in killed:
        _assert_memory_kill(run, BUDGET)
    for run in runs:
        if run not in killed:
            assert (run["status"], run["stdout"]) == (None, "held 400 MiB\n"), run
    assert sum(run["memory"] for run in runs if run not in killed) <= BUDGET
    _assert_healthy(budget_server)

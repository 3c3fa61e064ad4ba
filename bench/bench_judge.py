"""Benchmark: 50 test cases through one /api/v2/judge against 50 separate /api/v2/execute calls.

    .venv/bin/python bench/bench_judge.py [--cases 50] [--latency-ms 100] [--repeat 3]

Runs side by side, on the local sandbox and on the session pool (the emulator with
--latency-ms of added latency per call), and prints medians and the ratio.
Goal (issue 7): /judge at least 10x faster than separate /execute calls on the pool path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.testing import ServerProcess
from emulator.testing import EmulatorProcess

CODE = "#include <stdio.h>\nint main(void){long n;scanf(\"%ld\",&n);printf(\"%ld\\n\",n*n);return 0;}\n"


def judge_once(url: str, cases: int) -> float:
    body = {"language": "c", "version": "*", "files": [{"name": "main.c", "content": CODE}],
            "testcases": [{"stdin": str(i), "expected_output": str(i * i)} for i in range(cases)]}
    start = time.perf_counter()
    r = requests.post(url + "/api/v2/judge", json=body, timeout=600)
    elapsed = time.perf_counter() - start
    assert r.status_code == 200 and r.json()["verdict"] == "AC", r.text[:500]
    return elapsed


def execute_each(url: str, cases: int) -> float:
    http = requests.Session()
    start = time.perf_counter()
    for i in range(cases):
        r = http.post(url + "/api/v2/execute", timeout=600, json={
            "language": "c", "version": "*", "files": [{"name": "main.c", "content": CODE}], "stdin": str(i)})
        assert r.status_code == 200 and r.json()["run"]["stdout"] == f"{i * i}\n", r.text[:500]
    return time.perf_counter() - start


def measure(label: str, url: str, cases: int, repeat: int) -> None:
    judge_once(url, 2)  # warm up: sessions, compilers' page cache
    judged = [judge_once(url, cases) for _ in range(repeat)]
    separate = [execute_each(url, cases) for _ in range(repeat)]
    j, s = statistics.median(judged), statistics.median(separate)
    print(f"{label:28} judge {j * 1000:8.0f} ms   {cases} x execute {s * 1000:8.0f} ms   ratio {s / j:5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.cases} cases of a C program (compile + run); medians of {args.repeat}")
    with ServerProcess({"LOG_LEVEL": "WARNING"}) as local:
        measure("local sandbox", local.url, args.cases, args.repeat)
    # The pythonlts image shows gcc only behind a flag (unverified in PythonLTS); this judges C.
    with EmulatorProcess(latency_ms=args.latency_ms, ready_sessions=2, image_toolchains=["gcc"]) as emu:
        env = {"USE_LOCAL_EXECUTOR": "false", "POOL_MANAGEMENT_ENDPOINT": emu.pool_endpoint, "LOG_LEVEL": "WARNING",
               **emu.identity_env()}
        with ServerProcess(env) as pool:
            measure(f"session pool (+{args.latency_ms} ms/call)", pool.url, args.cases, args.repeat)
    print("goal: ratio >= 10x on the session pool")


if __name__ == "__main__":
    main()

"""Benchmark: /api/v2/execute on the local sandbox against bare spawns, side by side.

    .venv/bin/python bench/bench_local.py [--runs 60] [--clients 8] [--seconds 5]

Prints medians of: a Python hello through the API vs. the interpreter spawned bare;
a C hello through the API (compile + run) vs. gcc + the binary spawned bare; the ratios;
and the throughput of Python hello executions per second with concurrent clients.
Goals (issue 3): Python ratio <= 1.5x; >= 100 Python hellos/s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.testing import ServerProcess

PY_HELLO = "print('hello')\n"
C_HELLO = '#include <stdio.h>\nint main(void){puts("hello");return 0;}\n'


def timed(fn, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def api_call(http: requests.Session, url: str, language: str, code: str) -> None:
    r = http.post(url + "/api/v2/execute", json={"language": language, "version": "*", "files": [{"content": code}]},
                  timeout=60)
    body = r.json()
    assert r.status_code == 200 and body["run"]["stdout"] == "hello\n", body


def throughput(url: str, clients: int, seconds: float) -> tuple[float, int]:
    done, errors = [0], [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def worker() -> None:
        http = requests.Session()
        while time.monotonic() < stop:
            try:
                api_call(http, url, "python", PY_HELLO)
                with lock:
                    done[0] += 1
            except Exception:
                with lock:
                    errors[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.monotonic() - start), errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    (work / "hello.py").write_text(PY_HELLO)
    (work / "hello.c").write_text(C_HELLO)
    python = "/usr/bin/python3"  # the interpreter the sandbox runs

    def bare_python() -> None:
        subprocess.run([python, "-E", "-s", str(work / "hello.py")], capture_output=True, check=True)

    def bare_c() -> None:
        subprocess.run(["gcc", "-std=gnu17", "-O2", "-pipe", "-o", str(work / "a.out"), str(work / "hello.c"), "-lm"],
                       capture_output=True, check=True)
        subprocess.run([str(work / "a.out")], capture_output=True, check=True)

    with ServerProcess({"MAX_CONCURRENT_JOBS": str(max(4, args.clients)), "LOG_LEVEL": "WARNING"}) as server:
        http = requests.Session()
        for _ in range(5):
            api_call(http, server.url, "python", PY_HELLO)
            api_call(http, server.url, "c", C_HELLO)
            bare_python()
        # Interleave the two sides so that machine noise hits both alike.
        api_py, bare_py, api_c, bare_c_s = [], [], [], []
        for _ in range(args.runs):
            api_py += timed(lambda: api_call(http, server.url, "python", PY_HELLO), 1)
            bare_py += timed(bare_python, 1)
        for _ in range(max(10, args.runs // 3)):
            api_c += timed(lambda: api_call(http, server.url, "c", C_HELLO), 1)
            bare_c_s += timed(bare_c, 1)
        rate, errors = throughput(server.url, args.clients, args.seconds)

    med = statistics.median
    print(f"machine: {os.cpu_count()} cores; runs: {args.runs} (python), {len(api_c)} (c)")
    print(f"{'case':34} {'median ms':>10} {'p90 ms':>8}")
    for label, samples in [("python hello via API", api_py), ("python hello bare spawn", bare_py),
                           ("c hello via API (compile+run)", api_c), ("c hello bare (gcc + run)", bare_c_s)]:
        print(f"{label:34} {med(samples):10.1f} {statistics.quantiles(samples, n=10)[-1]:8.1f}")
    print(f"ratio python API / bare: {med(api_py) / med(bare_py):.2f}x   (goal <= 1.5x)")
    print(f"ratio c API / bare:      {med(api_c) / med(bare_c_s):.2f}x")
    print(f"throughput: {rate:.1f} python hello executions/s with {args.clients} clients, {errors} errors "
          f"(goal >= 100/s on 2 cores)")


if __name__ == "__main__":
    main()

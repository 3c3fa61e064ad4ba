"""Benchmark: the local sandbox through the API against bare spawns, side by side in one run.

    .venv/bin/python bench/bench_local.py [--runs 7] [--clients 8] [--seconds 4] [--windows 3] [--only-throughput]

Prints every row of issue 12's table, interleaving the two sides so that the shared
machine's noise hits both alike, plus the compile-cache hit path:

- C++ ``#include <bits/stdc++.h>`` /execute (compile + run) / bare ``g++`` of the same file
  without precompiled headers (goal <= 0.25). Every iteration compiles a new file, so the
  compile cache cannot answer.
- the same C++ submission judged twice (10 cases): second /judge / first (goal <= 0.3).
- Python hello throughput with N clients / bare spawns of the interpreter with N threads
  (goal >= 0.7).
- Java hello /execute / bare javac + java (goal <= 1.1); new source each time, as above.
- the compile-cache hit: /execute of a C++ program compiled before / the first compile.
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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.runtimes import CXX_FLAGS, JAVAC_JVM_FLAGS
from backend.testing import ServerProcess

PY_HELLO = "print('hello')\n"
CPP = """#include <bits/stdc++.h>
using namespace std;
int main() {
    ios::sync_with_stdio(false);
    long long n; vector<long long> v;
    while (cin >> n) v.push_back(n);
    sort(v.begin(), v.end());
    map<long long, int> seen; for (auto x : v) seen[x]++;
    cout << accumulate(v.begin(), v.end(), 0LL) << " " << seen.size() << "\\n";
}
"""
JAVA = "public class Main { public static void main(String[] a) { System.out.println(\"hello\"); } }\n"
PYTHON = "/usr/bin/python3"  # the interpreter the sandbox runs


def unique(code: str, comment: str = "//") -> str:
    """A source no earlier iteration compiled (the compile cache must not answer)."""
    return f"{comment} {uuid.uuid4()}\n{code}"


def post(http: requests.Session, url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = http.post(url + path, json=body, timeout=120)
    assert r.status_code == 200, r.text[:500]
    return r.json()


def execute(http: requests.Session, url: str, language: str, code: str, stdin: str = "") -> dict[str, Any]:
    return post(http, url, "/api/v2/execute",
                {"language": language, "version": "*", "files": [{"content": code}], "stdin": stdin})


def ms(fn: Callable[[], object]) -> float:
    return timed(fn)[0]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def rate(make_worker: Callable[[], Callable[[], object]], clients: int, seconds: float) -> tuple[float, int]:
    """Calls per second from ``clients`` threads for ``seconds``, each calling its own ``make_worker()``."""
    done, errors = [0], [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop() -> None:
        worker = make_worker()
        while time.monotonic() < stop:
            try:
                worker()
                ok = True
            except Exception:
                ok = False
            with lock:
                done[0] += ok
                errors[0] += not ok

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.monotonic() - start), errors[0]


def row(label: str, api: list[float], bare: list[float], goal: str, unit: str = "ms") -> None:
    a, b = statistics.median(api), statistics.median(bare)
    print(f"| {label} | {a:.0f} / {b:.0f} {unit} = **{a / b:.2f}** | {goal} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one throughput window")
    parser.add_argument("--windows", type=int, default=3, help="API throughput windows, each between bare ones")
    parser.add_argument("--only-throughput", action="store_true", help="just the Python throughput row")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    (work / "hello.py").write_text(PY_HELLO)
    numbers = " ".join(str((i * 7919) % 1000) for i in range(2000))

    def bare_cxx(code: str, include: tuple[str, ...] = ()) -> None:
        (work / "main.cpp").write_text(code)
        subprocess.run(["g++", *CXX_FLAGS, "-pipe", *include, "-o", str(work / "a.out"), str(work / "main.cpp")],
                       capture_output=True, check=True)

    def bare_java(code: str) -> None:
        (work / "Main.java").write_text(code)
        subprocess.run(["javac", *[f"-J{f}" for f in JAVAC_JVM_FLAGS], "-encoding", "UTF-8", "-d", str(work),
                        str(work / "Main.java")], capture_output=True, check=True)
        subprocess.run(["java", "-XX:+UseSerialGC", "-Xss64m", "-cp", str(work), "Main"], capture_output=True,
                       check=True)

    def bare_python() -> None:
        subprocess.run([PYTHON, "-E", "-s", str(work / "hello.py")], capture_output=True, check=True)

    env = {"MAX_CONCURRENT_JOBS": str(max(4, args.clients)), "LOG_LEVEL": "WARNING"}
    with ServerProcess(env) as server:
        url, http = server.url, requests.Session()
        sandbox = http.get(url + "/health", timeout=10).json()["sandbox"]
        for _ in range(3):  # warm both sides: page cache, JIT of the server, slots
            execute(http, url, "python", PY_HELLO)
            execute(http, url, "c++", unique(CPP), numbers)
            bare_python()

        api_cxx: list[float] = []
        bare_cxx_ms: list[float] = []
        bare_pch_ms: list[float] = []
        pch_include = ("-I", sandbox["precompiled_headers"]) if sandbox.get("precompiled_headers") else ()
        first_judge: list[float] = []
        second_judge: list[float] = []
        api_java: list[float] = []
        bare_java_ms: list[float] = []
        miss: list[float] = []
        hit: list[float] = []
        if not args.only_throughput:
            for _ in range(args.runs):
                code = unique(CPP)
                took, body = timed(lambda code=code: execute(http, url, "c++", code, numbers))
                assert body["run"]["stdout"].strip() and "cached" not in body["compile"], body
                api_cxx.append(took)
                bare_cxx_ms.append(ms(lambda code=code: bare_cxx(code)))
                bare_pch_ms.append(ms(lambda code=code: bare_cxx(code, pch_include)))

            cases = [{"stdin": numbers[: 200 * (i + 1)], "expected_output": ""} for i in range(10)]
            for _ in range(args.runs):
                judge = {"language": "c++", "version": "*", "files": [{"content": unique(CPP)}], "testcases": cases}
                first_judge.append(ms(lambda judge=judge: post(http, url, "/api/v2/judge", judge)))
                second_judge.append(ms(lambda judge=judge: post(http, url, "/api/v2/judge", judge)))

            for _ in range(args.runs):
                code = unique(JAVA)
                api_java.append(ms(lambda code=code: execute(http, url, "java", code)))
                bare_java_ms.append(ms(lambda code=code: bare_java(code)))

            for _ in range(args.runs):
                code = unique(CPP)
                miss.append(ms(lambda code=code: execute(http, url, "c++", code, numbers)))
                took, body = timed(lambda code=code: execute(http, url, "c++", code, numbers))
                assert body["compile"].get("cached") is True, body["compile"]
                hit.append(took)

        def api_python() -> Callable[[], object]:
            own = requests.Session()  # one keep-alive connection per client, as real clients do
            return lambda: execute(own, url, "python", PY_HELLO)

        # Alternating windows, each API window between two bare ones: the shared machine's load drifts.
        bare_rates, api_rates, errors = [rate(lambda: bare_python, args.clients, args.seconds)[0]], [], 0
        for _ in range(args.windows):
            api_rate, failed = rate(api_python, args.clients, args.seconds)
            api_rates.append(api_rate)
            errors += failed
            bare_rates.append(rate(lambda: bare_python, args.clients, args.seconds)[0])
        ratios = [a / ((b0 + b1) / 2) for a, b0, b1 in zip(api_rates, bare_rates, bare_rates[1:], strict=False)]
        api_rate, bare_rate = statistics.median(api_rates), statistics.median(bare_rates)

    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; runs: {args.runs} each (medians); "
          f"sandbox {sandbox['mode']}; precompiled headers {sandbox.get('precompiled_headers')}; "
          f"javac archive {sandbox.get('javac_archive')}")
    print("| measure | result | goal |\n|---|---|---|")
    throughput_row = (f"| Python hello throughput, {args.clients} clients / bare spawns, {args.clients} threads | "
                      f"{api_rate:.0f} / {bare_rate:.0f} per s = **{statistics.median(ratios):.2f}** (windows: "
                      f"{', '.join(f'{r:.2f}' for r in ratios)}; {errors} errors) | >= 0.7 |")
    if args.only_throughput:
        print(throughput_row)
        return
    row("C++ bits/stdc++ `/execute` (compile + run) / bare `g++` without precompiled headers", api_cxx,
        bare_cxx_ms, "<= 0.25")
    row("the same, against bare `g++` with the same precompiled headers (the sandbox's own cost)", api_cxx,
        bare_pch_ms, "")
    row("same C++ judged twice (10 cases): second `/judge` / first", second_judge, first_judge, "<= 0.3")
    print(throughput_row)
    row("Java hello `/execute` / bare `javac` + `java`", api_java, bare_java_ms, "<= 1.1")
    row("compile-cache hit: C++ `/execute` compiled before / first compile", hit, miss, "")


if __name__ == "__main__":
    main()

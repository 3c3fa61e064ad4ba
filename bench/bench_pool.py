"""Benchmark of the session-pool path against the emulator, side by side in one run.

    .venv/bin/python bench/bench_pool.py [--runs 30] [--inflight 200] [--latency-ms 500] [--sessions 24]
                                         [--skip-inflight]

Prints medians of:
- gateway overhead: a Python hello through the backend minus the same harness execution
  sent straight to the emulator (same session, same code);
- SESSION_STRATEGY reuse, auto (what it resolves to on this pool is printed) and fresh: the
  cost of auto where the session cannot separate runs is the cost of fresh;
- both pool kinds side by side: a Python hello and a 20-case C++ judge through the backend on a
  PythonLTS pool and on a custom-container pool, each with its gateway overhead (the same work
  sent straight to the emulator: the harness execution, or the session's own Piston route);
- --inflight executions at once against an emulator adding --latency-ms per call:
  errors, wall time, throughput, and the backend worker's memory (RSS, peak).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.executors.azure import harness
from backend.models import Limits, Program, RunSpec, SourceFile
from backend.runtimes import Runtime
from backend.testing import ServerProcess
from emulator.testing import EmulatorProcess

HELLO = "print('hello')\n"
BODY = {"language": "python", "version": "*", "files": [{"content": HELLO}]}
CPP_SQUARE = '#include <iostream>\nint main(){long long n; std::cin >> n; std::cout << n * n << "\\n";}'
JUDGE_BODY = {"language": "c++", "version": "*", "files": [{"content": CPP_SQUARE}],
              "testcases": [{"stdin": str(i), "expected_output": str(i * i)} for i in range(20)]}
REPO = Path(__file__).resolve().parent.parent
LIMITS = Limits(3000, 3000, -1, 1 << 20, 64, 2048, 10_000_000)


def backend_env(emu: EmulatorProcess, **extra: str) -> dict[str, str]:
    return {"USE_LOCAL_EXECUTOR": "false", "POOL_MANAGEMENT_ENDPOINT": emu.pool_endpoint, "LOG_LEVEL": "WARNING",
            **emu.identity_env(), **extra}


def via_backend(http: requests.Session, url: str) -> float:
    start = time.perf_counter()
    r = http.post(url + "/api/v2/execute", json=BODY, timeout=300)
    elapsed = time.perf_counter() - start
    assert r.status_code == 200 and r.json()["run"]["stdout"] == "hello\n", r.text[:300]
    return elapsed * 1000


def direct(http: requests.Session, emu: EmulatorProcess, token: str, identifier: str, python: str) -> float:
    """The same work without the backend: build the harness execution and post it ourselves."""
    runtime = Runtime("python", "3", ("py",), None, False, {"python": python})
    program = Program("python", "3", (SourceFile("file0.code", HELLO.encode()),), LIMITS)
    request = harness.build_request(program, runtime, [RunSpec("\n", (), LIMITS)])
    nonce = request["nonce"]
    code = harness.render_code(harness.encode(request))
    start = time.perf_counter()
    r = http.post(f"{emu.pool_endpoint}/executions", params={"api-version": "2025-10-02-preview",
                  "identifier": identifier}, headers={"Authorization": f"Bearer {token}"}, timeout=300,
                  json={"codeInputType": "Inline", "executionType": "Synchronous", "code": code, "timeoutInSeconds": 60})
    elapsed = time.perf_counter() - start
    reply = harness.parse_reply(r.json()["result"]["stdout"], nonce)
    assert reply.result is not None and reply.result["runs"][0]["stdout"] == "hello\n"
    return elapsed * 1000


def judge_via(http: requests.Session, url: str, *, params: dict[str, str] | None = None,
              headers: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    r = http.post(url, json=JUDGE_BODY, params=params, headers=headers, timeout=300)
    elapsed = time.perf_counter() - start
    assert r.status_code == 200 and r.json()["verdict"] == "AC" and r.json()["passed"] == 20, r.text[:300]
    return elapsed * 1000


def cc_direct_hello(http: requests.Session, emu: EmulatorProcess, token: str, identifier: str) -> float:
    start = time.perf_counter()
    r = http.post(f"{emu.pool_endpoint}/api/v2/execute", params={"identifier": identifier}, json=BODY,
                  headers={"Authorization": f"Bearer {token}"}, timeout=300)
    elapsed = time.perf_counter() - start
    assert r.status_code == 200 and r.json()["run"]["stdout"] == "hello\n", r.text[:300]
    return elapsed * 1000


def strategies(emu: EmulatorProcess, runs: int) -> None:
    """Warm reuse against what auto resolves to and against a fresh session per run."""
    med = statistics.median
    http = requests.Session()
    rows = []
    for strategy in ("reuse", "auto", "fresh"):
        with ServerProcess(backend_env(emu, SESSION_STRATEGY=strategy)) as server:
            resolved = requests.get(server.url + "/health", timeout=10).json()["sessions"]["strategy"]
            via_backend(http, server.url)
            times = []
            for _ in range(runs):
                times.append(via_backend(http, server.url))
                if resolved == "fresh":
                    time.sleep(1.5)  # let the replacement kernel start, as a pool's ready sessions would be
            rows.append((strategy, resolved, med(times)))
    reuse_ms = rows[0][2]
    print(f"{'SESSION_STRATEGY (resolves to)':44} {'median ms':>10}")
    for strategy, resolved, ms in rows:
        print(f"{f'python hello, {strategy} ({resolved})':44} {ms:10.1f}   ({ms / reuse_ms:.1f}x reuse)")


def pool_kinds(runs: int, python: str) -> None:
    """Python hello and a 20-case C++ judge on both pool kinds, each with its gateway overhead."""
    med = statistics.median
    http = requests.Session()
    rows: list[tuple[str, float, float]] = []
    # The PythonLTS side: the pythonlts image plus gcc (unverified there, so behind a flag) for the C++ judge,
    # and warm reuse, so that both kinds do the same work per request (an unprivileged kernel's auto is fresh).
    with EmulatorProcess(max_sessions=12, ready_sessions=2, image_toolchains=["gcc"]) as emu, \
            ServerProcess(backend_env(emu, SESSION_STRATEGY="reuse")) as server:
        token = emu.token()
        for _ in range(2):
            via_backend(http, server.url), direct(http, emu, token, "bench-kinds", python)
            judge_via(http, server.url + "/api/v2/judge")
        api = [via_backend(http, server.url) for _ in range(runs)]
        bare = [direct(http, emu, token, "bench-kinds", python) for _ in range(runs)]
        judged = [judge_via(http, server.url + "/api/v2/judge") for _ in range(max(3, runs // 3))]
        rows.append(("PythonLTS", med(api), med(bare)))
        lts_judge = med(judged)
    with EmulatorProcess(pool_type="CustomContainer", session_app_dir=str(REPO), max_sessions=12, ready_sessions=2,
                         kernel_start_timeout=90) as emu, \
            ServerProcess(backend_env(emu, SESSION_POOL_TYPE="CustomContainer")) as server:
        token = emu.token()
        auth = {"Authorization": f"Bearer {token}"}
        for _ in range(2):
            via_backend(http, server.url), cc_direct_hello(http, emu, token, "bench-kinds")
            judge_via(http, server.url + "/api/v2/judge")
            judge_via(http, emu.pool_endpoint + "/api/v2/judge", params={"identifier": "bench-kinds"}, headers=auth)
        api, bare = [], []
        for _ in range(runs):
            api.append(via_backend(http, server.url))
            bare.append(cc_direct_hello(http, emu, token, "bench-kinds"))
        judged, judged_bare = [], []
        for _ in range(max(3, runs // 3)):
            judged.append(judge_via(http, server.url + "/api/v2/judge"))
            judged_bare.append(judge_via(http, emu.pool_endpoint + "/api/v2/judge", params={"identifier": "bench-kinds"},
                                         headers=auth))
        rows.append(("CustomContainer", med(api), med(bare)))
        cc_judge, cc_judge_bare = med(judged), med(judged_bare)
    print(f"{'pool kind':16} {'hello ms':>9} {'direct ms':>10} {'overhead':>9} {'20-case C++ judge ms':>21}")
    print(f"{'PythonLTS':16} {rows[0][1]:9.1f} {rows[0][2]:10.1f} {rows[0][1] - rows[0][2]:9.1f} {lts_judge:21.1f}")
    print(f"{'CustomContainer':16} {rows[1][1]:9.1f} {rows[1][2]:10.1f} {rows[1][1] - rows[1][2]:9.1f} "
          f"{cc_judge:21.1f}   (direct {cc_judge_bare:.1f}, overhead {cc_judge - cc_judge_bare:.1f})")
    print(f"custom container / PythonLTS: hello {rows[1][1] / rows[0][1]:.2f}x, judge {cc_judge / lts_judge:.2f}x")


def worker_memory(server: ServerProcess) -> tuple[float, float]:
    assert server.proc is not None
    pid = int(subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()[0])
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def inflight(url: str, count: int) -> tuple[float, int, list[float]]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def one() -> None:
        http = requests.Session()
        barrier.wait()
        try:
            ms = via_backend(http, url)
            with lock:
                latencies.append(ms)
        except Exception:
            with lock:
                errors[0] += 1

    threads = [threading.Thread(target=one) for _ in range(count)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, errors[0], latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--inflight", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=24, help="the backend's concurrent sessions")
    parser.add_argument("--skip-inflight", action="store_true", help="leave out the --inflight load run")
    args = parser.parse_args()
    med = statistics.median
    python = sys.executable if not Path("/usr/bin/python3").exists() else "/usr/bin/python3"
    pool_kinds(args.runs, python)
    with EmulatorProcess(max_sessions=args.sessions + 16, ready_sessions=4) as emu:
        token = emu.token()
        strategies(emu, args.runs)
        with ServerProcess(backend_env(emu, SESSION_STRATEGY="reuse")) as reuse, \
                ServerProcess(backend_env(emu, SESSION_STRATEGY="fresh")) as fresh:
            http = requests.Session()
            for _ in range(3):
                via_backend(http, reuse.url), direct(http, emu, token, "bench-direct", python)
            api, bare = [], []
            for _ in range(args.runs):  # interleaved, so that noise hits both alike
                api.append(via_backend(http, reuse.url))
                bare.append(direct(http, emu, token, "bench-direct", python))
            # Not interleaved with the above: every fresh run makes the emulator start a replacement
            # kernel (a second of CPU), which would slow whatever request comes next.
            warm_again = [via_backend(http, reuse.url) for _ in range(args.runs)]
            fresh_ms = []
            for _ in range(args.runs):
                fresh_ms.append(via_backend(http, fresh.url))
                time.sleep(1.5)  # let the replacement kernel start, as a pool's ready sessions would be
            api += warm_again
            print(f"{'case':44} {'median ms':>10}")
            print(f"{'python hello via backend (warm reuse)':44} {med(api):10.1f}")
            print(f"{'same harness execution sent directly':44} {med(bare):10.1f}")
            print(f"{'gateway overhead (backend - direct)':44} {med(api) - med(bare):10.1f}")
            print(f"{'python hello via backend (fresh identifier)':44} {med(fresh_ms):10.1f}"
                  f"   ({med(fresh_ms) / med(api):.1f}x the warm reuse)")
        if args.skip_inflight:
            return
        env = backend_env(emu, MAX_CONCURRENT_JOBS=str(args.sessions), MAX_QUEUED_JOBS=str(args.inflight + 50),
                          QUEUE_TIMEOUT_MS="300000", WEB_THREADS=str(args.inflight + 16))
        with ServerProcess(env) as server:
            inflight(server.url, args.sessions)  # allocate the sessions before measuring
            rss_before, _ = worker_memory(server)
            emu.configure(latency_ms=args.latency_ms)
            wall, errors, lat = inflight(server.url, args.inflight)
            rss_after, peak = worker_memory(server)
            emu.configure(latency_ms=0)
        print(f"{args.inflight} executions in flight, +{args.latency_ms} ms per call, {args.sessions} sessions: "
              f"{errors} errors, wall {wall:.1f} s, {len(lat) / wall:.1f} executions/s, "
              f"latency median {med(lat):.0f} ms, max {max(lat):.0f} ms")
        print(f"backend worker memory: RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after, peak {peak:.0f} MB")


if __name__ == "__main__":
    main()

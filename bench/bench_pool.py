"""Benchmark of the session-pool path against the emulator, side by side in one run.

    .venv/bin/python bench/bench_pool.py [--runs 30] [--inflight 200] [--latency-ms 500] [--sessions 24]

Prints medians of:
- gateway overhead: a Python hello through the backend minus the same harness execution
  sent straight to the emulator (same session, same code);
- warm reuse (SESSION_STRATEGY=reuse) against a fresh identifier per run (fresh);
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
    args = parser.parse_args()
    med = statistics.median
    with EmulatorProcess(max_sessions=args.sessions + 16, ready_sessions=4) as emu:
        token = emu.token()
        python = sys.executable if not Path("/usr/bin/python3").exists() else "/usr/bin/python3"
        with ServerProcess(backend_env(emu)) as reuse, ServerProcess(backend_env(emu, SESSION_STRATEGY="fresh")) as fresh:
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
        env = backend_env(emu, MAX_CONCURRENT_JOBS=str(args.sessions), MAX_QUEUED_JOBS=str(args.inflight + 50),
                          QUEUE_TIMEOUT="300000", WEB_THREADS=str(args.inflight + 16))
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

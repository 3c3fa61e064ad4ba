"""Session start cost of the emulator's profiles, side by side in one run.

    .venv/bin/python bench/bench_emulator_profiles.py [--runs 8]

For --profile pythonlts (the PythonLTS image sandbox) and --profile host, prints medians of:
- cold: the first execution ("1") on a new identifier with no ready pool (a box is made and a kernel
  started while the client waits);
- ready: the same with a ready pool of 2, with time between calls for the pool to refill (what a client
  normally sees: readySessionInstances hide the start);
- warm: a second execution on the same identifier.
and the ratio pythonlts / host of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from emulator.testing import EmulatorProcess

API = "2025-10-02-preview"


def first_and_second(emu: EmulatorProcess, token: str) -> tuple[float, float]:
    identifier = f"bench-{uuid.uuid4().hex[:12]}"
    url = emu.pool_endpoint + "/executions"
    params = {"api-version": API, "identifier": identifier}
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    for _ in range(2):
        started = time.perf_counter()
        response = requests.post(url, params=params, json={"code": "1"}, headers=headers, timeout=120)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.json()["status"] == "Succeeded", response.text
    requests.delete(emu.pool_endpoint + "/session", params=params, headers=headers, timeout=30)
    return times[0], times[1]


def measure(profile: str, runs: int) -> dict[str, float]:
    out: dict[str, list[float]] = {"cold": [], "ready": [], "warm": []}
    with EmulatorProcess(profile=profile, ready_sessions=0, max_sessions=runs + 4) as emu:
        token = emu.token()
        for _ in range(runs):
            cold, warm = first_and_second(emu, token)
            out["cold"].append(cold)
            out["warm"].append(warm)
    with EmulatorProcess(profile=profile, ready_sessions=2, max_sessions=runs + 4) as emu:
        token = emu.token()
        for _ in range(runs):
            deadline = time.monotonic() + 30
            while emu.state()["kernels"]["ready"] < 2 and time.monotonic() < deadline:
                time.sleep(0.1)  # let the pool refill, as it would between real requests
            out["ready"].append(first_and_second(emu, token)[0])
    return {key: statistics.median(values) * 1000 for key, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    results = {profile: measure(profile, args.runs) for profile in ("pythonlts", "host")}
    print(f"session start, median of {args.runs} (ms)")
    print(f"{'':10}{'pythonlts':>12}{'host':>12}{'ratio':>8}")
    for key in ("cold", "ready", "warm"):
        lts, host = results["pythonlts"][key], results["host"][key]
        print(f"{key:10}{lts:12.0f}{host:12.0f}{lts / host:8.2f}")


if __name__ == "__main__":
    main()

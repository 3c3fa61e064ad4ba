"""Benchmark: an interactive dialogue over /api/v2/connect against one /api/v2/execute per line.

    .venv/bin/python bench/bench_connect.py [--lines 20] [--repeat 5]

A Python program answers each line it reads. Over /connect one sandboxed run answers
all lines as they are sent (one round trip per line); over /execute every line is a
whole run. Prints medians side by side and the ratio, plus the per-line round trip.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import requests
import simple_websocket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.testing import ServerProcess

ECHO = "while True:\n    line = input()\n    print('echo:' + line, flush=True)\n    if line == 'bye':\n        break\n"


def dialogue(url: str, lines: int) -> tuple[float, list[float]]:
    start = time.perf_counter()
    ws = simple_websocket.Client.connect(url.replace("http://", "ws://") + "/api/v2/connect")
    ws.send(json.dumps({"type": "init", "language": "python", "version": "*", "files": [{"content": ECHO}]}))
    while json.loads(ws.receive(timeout=30))["type"] != "stage":
        pass
    round_trips = []
    for i in range(lines):
        word = "bye" if i == lines - 1 else f"line{i}"
        sent = time.perf_counter()
        ws.send(json.dumps({"type": "data", "stream": "stdin", "data": word + "\n"}))
        message = json.loads(ws.receive(timeout=30))
        assert message["data"] == f"echo:{word}\n", message
        round_trips.append(time.perf_counter() - sent)
    try:
        while ws.receive(timeout=30) is not None:
            pass
    except simple_websocket.ConnectionClosed:
        assert ws.close_reason == 4999, ws.close_reason
    return time.perf_counter() - start, round_trips


def execute_each(url: str, lines: int) -> float:
    http = requests.Session()
    start = time.perf_counter()
    for i in range(lines):
        r = http.post(url + "/api/v2/execute", timeout=60, json={
            "language": "python", "version": "*", "files": [{"content": ECHO}], "stdin": "bye"})
        assert r.status_code == 200 and r.json()["run"]["stdout"] == "echo:bye\n", (i, r.text[:300])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with ServerProcess({"MAX_CONCURRENT_JOBS": "2"}) as server:
        dialogue(server.url, 2)  # warm up
        connect, trips = [], []
        separate = []
        for _ in range(args.repeat):
            total, round_trips = dialogue(server.url, args.lines)
            connect.append(total)
            trips += round_trips
            separate.append(execute_each(server.url, args.lines))
    c, s = statistics.median(connect), statistics.median(separate)
    print(f"{args.lines} lines, median of {args.repeat}:")
    print(f"  /connect, one run:        {c * 1000:8.1f} ms  (per-line round trip median "
          f"{statistics.median(trips) * 1000:.2f} ms)")
    print(f"  /execute, a run per line: {s * 1000:8.1f} ms")
    print(f"  ratio: {s / c:.1f}x")


if __name__ == "__main__":
    main()

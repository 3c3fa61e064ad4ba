"""Benchmark: what each isolation path of the session harness costs per execution, side by side.

    sudo .venv/bin/python bench/bench_isolation.py [--runs 40]

One stand-in kernel per path (``tests/session_kernel.py``: one interpreter executing the
backend's cells in turn, as a Jupyter kernel does): ``uid`` (a root kernel), ``userns`` and
``none`` (an unprivileged kernel with a venv of its own). Each runs a Python hello and a
3-case judge-style request, interleaved round by round; prints the medians of the harness's
own ``elapsed_ms`` and of the whole cell, and each path's ratio to ``uid``. Needs root and setpriv.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.session_kernel import SYSTEM_PYTHON, UNPRIVILEGED_UID, Kernel, data_dir_of, make_user_home

LIMITS = {"timeout_ms": 5000, "cpu_time_ms": 5000, "memory_bytes": -1, "output_max_size": 65536,
          "max_processes": 64, "max_open_files": 256, "max_file_size": 10_000_000}


def request(python: str, cases: int) -> dict:
    source = base64.b64encode(b"print(input()[::-1])\n").decode()
    return {"files": [{"name": "main.py", "content": source}],
            "runs": [{"argv": [python, "main.py"], "stdin": f"case {i}", "limits": LIMITS} for i in range(cases)]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        sys.exit("needs root and setpriv (it plays an unprivileged kernel with setpriv)")
    home = make_user_home()
    venv_python = str(home / ".venv" / "bin" / "python")
    kernels = {
        "uid": (Kernel(sys.executable, data_dir_of(0, home), env={"HOME": str(Path.home())}), SYSTEM_PYTHON),
        "userns": (Kernel(venv_python, data_dir_of(UNPRIVILEGED_UID, home), user=UNPRIVILEGED_UID,
                          env={"HOME": str(home)}), venv_python),
        "none": (Kernel(venv_python, data_dir_of(UNPRIVILEGED_UID, home), user=UNPRIVILEGED_UID,
                        env={"HOME": str(home), "PISTON_HARNESS_ISOLATION": "none"}), venv_python),
    }
    try:
        samples: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
        for mode, (kernel, python) in kernels.items():
            got = kernel.call(request(python, 1))["isolation"]  # warm-up, and the path it really took
            if got != mode:
                sys.exit(f"{mode}: the harness took {got!r} here")
        for _ in range(args.runs):
            for cases in (1, 3):
                for mode, (kernel, python) in kernels.items():
                    start = time.perf_counter()
                    result = kernel.call(request(python, cases))
                    cell_ms = (time.perf_counter() - start) * 1000
                    inner, outer = samples.setdefault((mode, cases), ([], []))
                    inner.append(result["elapsed_ms"])
                    outer.append(cell_ms)
        print(f"median per execution over {args.runs} rounds (harness elapsed_ms / whole cell ms):")
        for cases in (1, 3):
            base = statistics.median(samples[("uid", cases)][1])
            for mode in kernels:
                inner, outer = samples[(mode, cases)]
                print(f"  {cases} case(s) {mode:7s} {statistics.median(inner):7.1f} / {statistics.median(outer):7.1f}"
                      f"   x{statistics.median(outer) / base:.2f} of uid")
    finally:
        for kernel, _ in kernels.values():
            kernel.close()
        shutil.rmtree(home.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

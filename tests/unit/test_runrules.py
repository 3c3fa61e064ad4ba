"""backend/runrules.py: the run rules both executors share (the local sandbox imports them, sessions get the source)."""

from __future__ import annotations

import os
import time

import pytest

from backend import runrules

LIMITS = {"timeout_ms": 3000, "cpu_time_ms": 1500, "memory_bytes": 256 * 2**20, "output_max_size": 100,
          "max_processes": 8, "max_open_files": 64, "max_file_size": 4096}


def test_rlimits_one_rule_for_every_sandbox() -> None:
    # Local slot with cgroups: memory and processes are the cgroup's; no DATA, no NPROC.
    assert runrules.rlimits(LIMITS, memory=False, nproc_others=None) == {
        "CPU": (3, 4), "FSIZE": (4096, 4096), "NOFILE": (64, 64), "CORE": (0, 0), "STACK": ("inf", "inf")}
    # Local slot uid without cgroups (bwrap's 16 of headroom), a session's fresh uid (0), its
    # namespaces (the reaper and init, 2): NPROC is the limit plus what else counts against it.
    for others in (16, 0, 2):
        rl = runrules.rlimits(LIMITS, memory=True, nproc_others=others)
        assert rl["NPROC"] == (8 + others, 8 + others) and rl["DATA"] == (256 * 2**20, 256 * 2**20)
    assert "DATA" not in runrules.rlimits({**LIMITS, "memory_bytes": -1}, memory=True, nproc_others=None)


def test_rlimit_specs_round_trip_with_infinity() -> None:
    specs = runrules.rlimit_specs(runrules.rlimits(LIMITS, memory=True, nproc_others=0))
    assert "STACK=inf:inf" in specs and "CPU=3:4" in specs
    assert [runrules.parse_rlimit(s) for s in ("STACK=inf:inf", "NPROC=8:8")] == [("STACK", None, None),
                                                                                ("NPROC", 8, 8)]


def test_meta_line_round_trip() -> None:
    line = runrules.meta_line(3 << 8, 1500, 500, 2048, 9000, 1)
    assert line == b"768 1500 500 2048 9000 1\n"
    assert runrules.parse_meta(line) == {"wait_status": 768, "cpu_us": 2000, "maxrss_kb": 2048, "wall_us": 9000,
                                         "killed_by": "cpu"}
    assert runrules.parse_meta(line[:-6]) is None  # a reaper killed half-way
    assert runrules.parse_meta(b"a b c d e f") is None


def _pipes() -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    return os.pipe(), os.pipe(), os.pipe()


def test_collect_caps_output_and_kills_once() -> None:
    (out_r, out_w), (err_r, err_w), (meta_r, meta_w) = _pipes()
    kills = []

    def kill() -> None:
        kills.append(1)
        os.write(meta_w, runrules.meta_line(9, 10, 0, 100, 20, 0))
        for fd in (out_w, err_w, meta_w):
            os.close(fd)

    os.write(err_w, b"e")
    os.write(out_w, b"x" * 150)
    try:
        outcome = runrules.collect(out_r, err_r, meta_r, output_max_size=100, timeout_ms=5000,
                                   started=time.monotonic(), kill=kill)
    finally:
        for fd in (out_r, err_r, meta_r):
            os.close(fd)
    assert kills == [1] and outcome["overflow"] == "stdout" and outcome["stdout"] == b"x" * 100
    # The meta written while it was killed is still read.
    assert outcome["wait_status"] == 9 and outcome["cpu_us"] == 10 and outcome["sandbox_error"] is None


def test_collect_until_meta_does_not_wait_for_inherited_pipes() -> None:
    (out_r, out_w), (err_r, err_w), (meta_r, meta_w) = _pipes()
    os.write(meta_w, runrules.START_MARK)
    os.write(out_w, b"done\n")
    os.write(meta_w, runrules.meta_line(0, 1, 1, 100, 50, 0))
    # out_w and err_w stay open, as when the program left a child holding them.
    try:
        outcome = runrules.collect(out_r, err_r, meta_r, output_max_size=100, timeout_ms=60_000,
                                   started=time.monotonic(), kill=lambda: pytest.fail("not killed"),
                                   start_mark=True, until_meta=True)
    finally:
        for fd in (out_r, out_w, err_r, err_w, meta_r, meta_w):
            os.close(fd)
    assert (outcome["stdout"], outcome["wait_status"], outcome["timed_out"]) == (b"done\n", 0, False)


def test_collect_backstop_deadline_and_missing_meta() -> None:
    (out_r, out_w), (err_r, err_w), (meta_r, meta_w) = _pipes()
    kills = []
    try:
        outcome = runrules.collect(out_r, err_r, meta_r, output_max_size=100, timeout_ms=0,
                                   started=time.monotonic() - runrules.BACKSTOP_SECONDS, kill=lambda: kills.append(1))
    finally:
        for fd in (out_r, out_w, err_r, err_w, meta_r, meta_w):
            os.close(fd)
    assert outcome["timed_out"] and kills == [1] and outcome["wait_status"] is None and outcome["wall_us"] > 0
    # Pipes closed without a meta line: a sandbox failure, with the launcher's last words.
    (out_r, out_w), (err_r, err_w), (meta_r, meta_w) = _pipes()
    os.write(err_w, b"launcher: no such file\n")
    for fd in (out_w, err_w, meta_w):
        os.close(fd)
    try:
        outcome = runrules.collect(out_r, err_r, meta_r, output_max_size=100, timeout_ms=5000,
                                   started=time.monotonic(), kill=lambda: kills.append(2))
    finally:
        for fd in (out_r, err_r, meta_r):
            os.close(fd)
    assert outcome["sandbox_error"] == "launcher: no such file" and kills == [1]
    assert runrules.decide(outcome, 1000, oom_killed=False)["status"] == "XX"


def test_probe_toolchain() -> None:
    found = runrules.probe_toolchain({"sh": ["/nonexistent/sh", "/bin/sh"]}, ["{sh}", "-c", "echo v1.2.3; exit 3"])
    assert found == {"binaries": {"sh": "/bin/sh"}, "returncode": 3, "output": "v1.2.3\n"}
    assert runrules.probe_toolchain({"x": ["/nonexistent"]}, ["{x}"]) == {"binaries": None}

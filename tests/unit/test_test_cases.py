"""The test_cases/ corpus, checked offline: format, size, and the Python solutions run directly.

No backend is needed. Python AC solutions must reproduce every expected output, and the
Python WA/RE solutions must fail the way their verdict says, so the corpus itself is verified.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend.compare import outputs_match

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT / "test_cases"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


import test_session_pool as tsp  # noqa: E402 - the repo root is on sys.path under pytest

PROBLEM_DIRS = sorted(p for p in CORPUS.iterdir() if p.is_dir())
PROBLEMS = tsp.load_corpus(CORPUS)


def _solutions(language: str, verdicts: set[str]) -> list:
    return [
        pytest.param(problem, solution, id=f"{problem.name}/{solution.file}")
        for problem in PROBLEMS
        for solution in problem.solutions
        if solution.language == language and solution.expected_verdict in verdicts
    ]


def _run(path: Path, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, path.name], cwd=path.parent, input=stdin, capture_output=True, text=True,
                          timeout=60)


# ---------------------------------------------------------------- format

@pytest.mark.parametrize("folder", PROBLEM_DIRS, ids=[p.name for p in PROBLEM_DIRS])
def test_every_folder_is_a_valid_problem(folder: Path) -> None:
    assert (folder / "problem.json").is_file(), "every folder under test_cases/ is a problem"
    problem = tsp.load_problem(folder)
    assert problem.statement
    assert problem.tests, "at least one input/output pair"
    for solution in problem.solutions:
        assert (folder / solution.file).is_file()
        assert solution.expected_verdict in tsp.VERDICTS
        assert solution.language and solution.version
    inputs = {p.stem for p in (folder / "tests").glob("*.in")}
    outputs = {p.stem for p in (folder / "tests").glob("*.out")}
    assert inputs == outputs, "every .in has a .out and the other way round"
    meta = json.loads((folder / "problem.json").read_text())
    assert set(meta) <= {"title", "statement", "limits", "generator", "solutions"}, "no unknown keys"
    if "generator" in meta:
        assert (folder / meta["generator"]).is_file()
    if any(s.expected_verdict == "MLE" for s in problem.solutions):
        assert problem.limits.get("run_memory_limit", -1) > 0, "MLE solutions need an explicit memory limit"
    for limit in ("run_timeout", "run_cpu_time"):
        assert problem.limits.get(limit, 3000) <= 3000, "above the backend's default maximum the request is a 400"


def test_corpus_size() -> None:
    assert len(PROBLEMS) >= 12
    assert sum(len(p.tests) for p in PROBLEMS) >= 40


def test_every_verdict_is_covered() -> None:
    verdicts = {s.expected_verdict for p in PROBLEMS for s in p.solutions}
    assert {"AC", "WA", "TLE", "MLE", "RE", "CE", "OLE"} <= verdicts
    compile_errors = {s.language for p in PROBLEMS for s in p.solutions if s.expected_verdict == "CE"}
    assert compile_errors & {"c", "c++", "java"}
    languages = {s.language for p in PROBLEMS for s in p.solutions}
    assert {"python", "c", "c++", "java", "javascript"} <= languages


def test_hello_n_matches_the_plan() -> None:
    """Test 2.3 of the plan: input 5 gives five lines of Hello."""
    problem = next(p for p in PROBLEMS if p.name == "hello_n")
    stdin, expected = problem.tests[0].read()
    assert stdin.strip() == "5"
    assert expected == "Hello\n" * 5


def test_a_big_input_problem_exists() -> None:
    sizes = [t.input_path.stat().st_size for p in PROBLEMS for t in p.tests]
    assert max(sizes) >= 1_000_000


def test_a_big_output_problem_fits_the_cap() -> None:
    """>= 1 MB (decimal) of stdout, yet under the backend's 1 MiB (1,048,576 bytes) output cap."""
    sizes = [t.output_path.stat().st_size for p in PROBLEMS for t in p.tests]
    assert any(1_000_000 <= size <= 1_040_000 for size in sizes)


def _generator(problem) -> str | None:
    return json.loads((problem.path / "problem.json").read_text()).get("generator")


@pytest.mark.parametrize("problem", [p for p in PROBLEMS if _generator(p)], ids=lambda p: p.name)
def test_generators_are_deterministic(problem, tmp_path: Path) -> None:
    """Regenerate into an emptied copy (run from another directory); what it writes must match byte for byte."""
    copy = tmp_path / problem.name
    shutil.copytree(problem.path, copy)
    for test in (copy / "tests").iterdir():
        test.unlink()
    subprocess.run([PYTHON, str(copy / _generator(problem))], cwd=tmp_path, check=True, timeout=120)
    generated = sorted((copy / "tests").iterdir())
    assert generated, "the generator wrote nothing"
    for path in generated:
        assert path.read_bytes() == (problem.path / "tests" / path.name).read_bytes(), path.name


# ---------------------------------------------------------------- solutions, run directly

@pytest.mark.parametrize(("problem", "solution"), _solutions("python", {"AC"}))
def test_python_reference_solutions_produce_the_expected_outputs(problem, solution) -> None:
    for test in problem.tests:
        stdin, expected = test.read()
        result = _run(problem.path / solution.file, stdin)
        assert result.returncode == 0, f"test {test.name}: {result.stderr[-500:]}"
        assert outputs_match(result.stdout, expected), f"test {test.name}: wrong output"


@pytest.mark.parametrize(("problem", "solution"), _solutions("python", {"WA", "RE"}))
def test_python_broken_solutions_fail_as_labelled(problem, solution) -> None:
    """The first test that is not AC gives exactly the expected verdict (run locally: exit status, output)."""
    for test in problem.tests:
        stdin, expected = test.read()
        result = _run(problem.path / solution.file, stdin)
        if result.returncode != 0:
            verdict = "RE"
        elif not outputs_match(result.stdout, expected):
            verdict = "WA"
        else:
            continue
        assert verdict == solution.expected_verdict, f"test {test.name}"
        return
    pytest.fail("passed every test")

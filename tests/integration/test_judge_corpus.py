"""The test_cases/ corpus judged through /api/v2/judge: every solution gets its expected verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Client

CORPUS = Path(__file__).resolve().parents[2] / "test_cases"


def _solutions() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for problem in sorted(p for p in CORPUS.iterdir() if (p / "problem.json").exists()):
        meta = json.loads((problem / "problem.json").read_text())
        found += [(problem.name, solution) for solution in meta["solutions"]]
    return found


@pytest.fixture(scope="module")
def languages(client: Client) -> set[str]:
    names: set[str] = set()
    for rt in client.get("/api/v2/runtimes").json():
        names.update([rt["language"], *rt["aliases"]])
    return names


@pytest.mark.parametrize(("problem", "solution"), _solutions(), ids=lambda v: v if isinstance(v, str) else v["file"])
def test_solution_gets_its_expected_verdict(client: Client, languages: set[str], problem: str,
                                            solution: dict[str, Any]) -> None:
    if solution["language"] not in languages:
        pytest.skip(f"{solution['language']} is not in this executor's /api/v2/runtimes "
                    "(a PythonLTS pool offers Python, Bash and Perl)")
    folder = CORPUS / problem
    meta = json.loads((folder / "problem.json").read_text())
    cases = [{"id": path.stem, "stdin": path.read_text(), "expected_output": path.with_suffix(".out").read_text()}
             for path in sorted((folder / "tests").glob("*.in"))]
    body = {"language": solution["language"], "version": solution.get("version", "*"),
            "files": [{"name": solution["file"], "content": (folder / solution["file"]).read_text()}],
            "testcases": cases, "stop_on_first_failure": True, **meta.get("limits", {})}
    response = client.post("/api/v2/judge", body)
    assert response.status_code == 200, response.text[:500]
    verdicts = [(c["id"], c["verdict"]) for c in response.json()["testcases"]]
    assert response.json()["verdict"] == solution["expected_verdict"], verdicts

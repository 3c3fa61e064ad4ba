"""/api/v2/judge on the local executor: every verdict, every comparison mode, validation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Client


def judge(client: Client, language: str, code: str, cases: list[dict[str, Any]], expect: int = 200,
          **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v2/judge", {"language": language, "version": "*",
                                             "files": [{"content": code}], "testcases": cases, **fields})
    assert response.status_code == expect, response.text[:1000]
    return response.json()


SQUARE = "n = int(input())\nprint(n * n)\n"


def offered(client: Client, language: str) -> None:
    """Skip where the executor lacks the language (a PythonLTS session pool has no C compiler)."""
    if language not in {rt["language"] for rt in client.get("/api/v2/runtimes").json()}:
        pytest.skip(f"{language} is not offered by this executor (a PythonLTS session pool has no C compiler)")


def test_accepted_and_wrong_answer_with_summary(client: Client) -> None:
    body = judge(client, "python", SQUARE, [
        {"id": "a", "stdin": "3", "expected_output": "9\n"},
        {"id": "b", "stdin": "4", "expected_output": "15"},
        {"stdin": "5", "expected_output": "25   \n\n"},
    ])
    assert [c["verdict"] for c in body["testcases"]] == ["AC", "WA", "AC"]
    assert [c["id"] for c in body["testcases"]] == ["a", "b", "2"]
    assert (body["verdict"], body["passed"], body["total"], body["compile"]) == ("WA", 2, 3, None)
    assert body["testcases"][1]["stdout"] == "16\n"


@pytest.mark.parametrize(("language", "code", "fields", "verdict"), [
    ("python", "while True: pass", {"run_cpu_time": 1000}, "TLE"),
    ("python", "import time\ntime.sleep(5)", {"run_timeout": 800}, "TLE"),
    ("python", "x = bytearray(512 * 1024 * 1024)\nprint(len(x))", {"run_memory_limit": 64 * 1024 * 1024}, "MLE"),
    # Grows in 1 MiB chunks like real programs: without a cgroup (the session pool) the
    # allocation that fails comes when the peak is at the limit, which tells MLE apart.
    ("c", "#include <stdlib.h>\n#include <stdio.h>\nint main(void){for(int k=0;k<512;k++){volatile char*p=malloc(1<<20);"
          "for(int i=0;i<(1<<20);i+=4096)p[i]=1;}puts(\"1\");}", {"run_memory_limit": 64 * 1024 * 1024}, "MLE"),
    ("python", "raise SystemExit(4)", {}, "RE"),
    ("c", "int main(void){int*p=0;return *p;}", {}, "RE"),
    ("python", "print('x' * 5000)", {"output_max_size": 1000}, "OLE"),
    ("c", "int main(void){ return undefined; }", {}, "CE"),
])
def test_each_verdict(client: Client, language: str, code: str, fields: dict[str, Any], verdict: str) -> None:
    offered(client, language)
    body = judge(client, language, code, [{"stdin": "", "expected_output": "1"}] * 2, **fields)
    assert [c["verdict"] for c in body["testcases"]] == [verdict, verdict]
    assert body["verdict"] == verdict
    if verdict == "CE":
        assert body["compile"]["code"] != 0 and "undefined" in body["compile"]["stderr"]


@pytest.mark.parametrize(("mode", "printed", "expected", "verdict"), [
    ("exact", "1 2\n", "1 2\n", "AC"), ("exact", "1 2\n", "1 2", "WA"),
    ("lines", "1 2  \n\n", "1 2", "AC"), ("lines", "1  2", "1 2", "WA"),
    ("tokens", "1\n2", "1 2", "AC"), ("tokens", "1 2 3", "1 2", "WA"),
    ("float", "0.3333334", "0.333333", "AC"), ("float", "0.34", "0.333333", "WA"),
])
def test_comparison_modes(client: Client, mode: str, printed: str, expected: str, verdict: str) -> None:
    code = f"import sys\nsys.stdout.write({printed!r})"
    body = judge(client, "python", code, [{"stdin": "", "expected_output": expected}], compare=mode)
    assert body["testcases"][0]["verdict"] == verdict


def test_float_tolerance_fields(client: Client) -> None:
    cases = [{"stdin": "", "expected_output": "1.00"}]
    assert judge(client, "python", "print(1.01)", cases, compare="float",
                 float_abs_tolerance=0.02)["verdict"] == "AC"
    assert judge(client, "python", "print(1.01)", cases, compare="float")["verdict"] == "WA"


def test_compile_once_many_cases_and_stop_on_first_failure(client: Client) -> None:
    code = "#include <stdio.h>\nint main(void){long n;scanf(\"%ld\",&n);printf(\"%ld\\n\",n*n);}"
    cases = [{"stdin": str(i), "expected_output": str(i * i)} for i in range(30)]
    offered(client, "c")
    body = judge(client, "c", code, cases)
    assert body["verdict"] == "AC" and body["passed"] == 30 and body["compile"]["code"] == 0
    cases[3]["expected_output"] = "wrong"
    body = judge(client, "c", code, cases, stop_on_first_failure=True)
    verdicts = [c["verdict"] for c in body["testcases"]]
    assert verdicts[:4] == ["AC", "AC", "AC", "WA"] and set(verdicts[4:]) == {"SKIPPED"}
    assert body["verdict"] == "WA" and body["passed"] == 3


def test_display_is_bounded(client: Client) -> None:
    body = judge(client, "python", "print('y' * 100000)", [{"stdin": "", "expected_output": "y" * 100000}])
    case = body["testcases"][0]
    assert case["verdict"] == "AC" and len(case["stdout"]) == 1024 and case["stdout_truncated"] is True


@pytest.mark.parametrize(("fields", "message"), [
    ({"testcases": []}, "testcases is required as a non-empty array"),
    ({"testcases": "x"}, "testcases is required as a non-empty array"),
    ({"testcases": [{"stdin": "1"}]}, "testcases[0].expected_output is required as a string"),
    ({"testcases": [{"stdin": 1, "expected_output": ""}]}, "testcases[0].stdin must be a string"),
    ({"testcases": [{"expected_output": ""}] * 201}, "testcases cannot contain more than 200 cases"),
    ({"compare": "fuzzy"}, "compare must be one of exact, lines, tokens, float"),
    ({"stop_on_first_failure": "yes"}, "If specified, stop_on_first_failure must be a boolean"),
    ({"output_max_size": 10**9}, "output_max_size cannot exceed the configured limit of 1048576"),
    ({"float_abs_tolerance": -1}, "If specified, float_abs_tolerance must be a non-negative number"),
    ({"language": "cobol"}, "cobol-* runtime is unknown"),
])
def test_validation(client: Client, fields: dict[str, Any], message: str) -> None:
    body = {"language": "python", "version": "*", "files": [{"content": "print(1)"}],
            "testcases": [{"stdin": "", "expected_output": "1"}], **fields}
    response = client.post("/api/v2/judge", body)
    assert (response.status_code, response.json()) == (400, {"message": message})

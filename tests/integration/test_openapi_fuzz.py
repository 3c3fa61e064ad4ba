"""schemathesis against the real gunicorn: no 5xx, and every response conforms to /api/v2/openapi.json."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from backend.openapi import document
from backend.testing import ServerProcess

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance")


def test_schemathesis_finds_nothing(local_server: ServerProcess, tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    result = subprocess.run(
        [cli, "run", local_server.url + "/api/v2/openapi.json", "--checks", ",".join(CHECKS),
         "--max-examples", "40", "--seed", "20261201", "--workers", "1",  # one worker: CPython 3.11's ast is not
         "--generation-database", "none", "--report-dir", str(tmp_path), "--no-color"],  # thread-safe in hypothesis
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    operations = sum(len(item) for item in document()["paths"].values())
    assert f"Tested: {operations}" in result.stdout and " passed" in result.stdout

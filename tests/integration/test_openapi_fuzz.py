"""schemathesis against the real gunicorn: no 5xx, and every response conforms to /api/v2/openapi.json."""

from __future__ import annotations

import re
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
        cwd=tmp_path,  # its caches (.hypothesis, .schemathesis) must not replay earlier runs' finds
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    # Every documented operation was exercised (schemathesis leaves out the document's own route).
    operations = sum(len(item) for item in document()["paths"].values())
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested is not None and int(tested.group(1)) >= operations - 1, result.stdout[-3000:]

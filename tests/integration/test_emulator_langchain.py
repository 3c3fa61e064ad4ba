"""A third-party client, unchanged, against the emulator: langchain-azure-dynamic-sessions' SessionsPythonREPLTool.

The tool gets its tokens the way it does in Azure: its default provider asks DefaultAzureCredential, which
finds IDENTITY_ENDPOINT/IDENTITY_HEADER and calls the emulator's managed-identity endpoint. It speaks the
legacy generation (2024-02-02-preview /code/execute and /files/upload) and deletes sessions with
2025-10-02-preview, so both generations are exercised as that client uses them.
"""

from __future__ import annotations

import importlib
import json
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from emulator.testing import EmulatorProcess
from tests.integration.emulator_helpers import wait_until

pytestmark = pytest.mark.usefixtures("spec_checked")


@pytest.fixture(scope="module")
def sessions_module() -> ModuleType:
    with warnings.catch_warnings():
        # 1.0.4 warns on import that it is deprecated in favour of langchain-azure-compute; it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("langchain_azure_dynamic_sessions.tools.sessions")


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(ready_sessions=2, max_sessions=10) as process:
        yield process


@pytest.fixture(scope="module")
def tool_env(emu: EmulatorProcess) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
            patch.delenv(name, raising=False)
        for name, value in emu.identity_env().items():
            patch.setenv(name, value)
        yield


@pytest.fixture
def tool(sessions_module: ModuleType, emu: EmulatorProcess, tool_env: None) -> Any:
    # Unchanged: only the endpoint is given; the token provider is the tool's own default.
    return sessions_module.SessionsPythonREPLTool(pool_management_endpoint=emu.pool_endpoint)


def test_execute_keeps_state_and_gives_stdout_and_result(tool: Any, emu: EmulatorProcess) -> None:
    first = tool.execute("x = 41\nprint('hello from the pool')")
    assert first["status"] == "Success" and first["stdout"] == "hello from the pool\n"
    second = json.loads(tool.invoke("x + 1"))  # the LLM-facing path: a JSON string
    assert second == {"result": 42, "stdout": "", "stderr": ""}
    failed = tool.execute("raise ValueError('nope')")
    assert failed["status"] == "Failure" and "ValueError: nope" in failed["stderr"]
    # The token came from the managed-identity endpoint, for the data-plane audience.
    assert emu.state()["tokens_by_resource"].get("https://dynamicsessions.io", 0) >= 1


def test_upload_then_absolute_mnt_data_paths_in_the_kernel(tool: Any, sessions_module: ModuleType) -> None:
    from io import BytesIO

    meta = tool.upload_file(data=BytesIO(b"a,b\n1,2\n3,4\n"), remote_file_path="numbers.csv")
    assert meta.filename == "numbers.csv" and meta.size_in_bytes == 12 and meta.full_path == "/mnt/data/numbers.csv"
    code = (
        "import csv, os\n"
        "rows = list(csv.reader(open('/mnt/data/numbers.csv')))\n"
        "open('/mnt/data/total.txt', 'w').write(str(sum(int(r[0]) + int(r[1]) for r in rows[1:])))\n"
        "(os.getcwd(), rows[0])"
    )
    assert tool.execute(code)["result"] == ["/mnt/data", ["a", "b"]]
    downloaded = tool.download_file(remote_file_path="total.txt")  # a file the kernel wrote
    assert downloaded.read() == b"10"
    listed = {f.filename: f.size_in_bytes for f in tool.list_files()}
    assert listed == {"numbers.csv": 12, "total.txt": 2}


def test_delete_session_gives_a_fresh_one(tool: Any, emu: EmulatorProcess) -> None:
    tool.execute("kept = 'state'")
    old = tool.session_id
    tool.delete_session()  # 2025-10-02-preview DELETE /session, in a background thread
    assert tool.session_id != old
    assert wait_until(lambda: old not in {s["identifier"] for s in emu.state()["sessions"]}, 10)
    assert "NameError" in tool.execute("kept")["stderr"]

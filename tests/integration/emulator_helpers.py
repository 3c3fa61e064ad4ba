"""Helpers shared by the emulator's integration tests: a plain data-plane client and process checks."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import requests

from emulator.testing import EmulatorProcess

NEW = "2025-10-02-preview"
LEGACY = "2024-02-02-preview"
DATA_PLANE = "https://dynamicsessions.io"


def msi_token(emu: EmulatorProcess, resource: str = DATA_PLANE, **params: str) -> requests.Response:
    return requests.get(
        emu.env["IDENTITY_ENDPOINT"],
        params={"api-version": "2019-08-01", "resource": resource, **params},
        headers={"X-IDENTITY-HEADER": emu.env["IDENTITY_HEADER"]},
        timeout=10,
    )


def ident() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


class Client:
    """Plain HTTP client of the data plane (what the backend does with requests)."""

    def __init__(self, emu: EmulatorProcess, token: str) -> None:
        self.endpoint = emu.pool_endpoint
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, *, api: str | None = NEW, identifier: str | None = None, **kw: Any):
        params = dict(kw.pop("params", {}))
        if api is not None:
            params["api-version"] = api
        if identifier is not None:
            params["identifier"] = identifier
        headers = {**self.headers, **kw.pop("headers", {})}
        return requests.request(method, self.endpoint + path, params=params, headers=headers, timeout=30, **kw)

    def execute(self, identifier: str, code: str, **fields: Any) -> requests.Response:
        return self.call("POST", "/executions", identifier=identifier, json={"code": code, **fields})

    def run(self, identifier: str, code: str, **fields: Any) -> dict[str, Any]:
        response = self.execute(identifier, code, **fields)
        assert response.status_code == 200, response.text
        return response.json()

    def legacy(self, identifier: str, code: str, **fields: Any) -> requests.Response:
        body = {"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": code, **fields}}
        return self.call("POST", "/code/execute", api=LEGACY, identifier=identifier, json=body)


def error_code(response: requests.Response) -> str:
    assert response.headers.get("x-ms-error-code") == response.json()["error"]["code"]
    return response.json()["error"]["code"]


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"  # a zombie is dead, just not reaped
    except FileNotFoundError:
        return False


def host_pids(marker: str) -> list[int]:
    """Host pids of processes whose command line has ``marker`` (pids printed in a sandbox are its own)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if marker.encode() in cmdline.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
    return [p for p in found if pid_alive(p)]


def wait_until(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()

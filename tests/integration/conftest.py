"""Fixtures of the emulator's integration tests (the helpers they use live in emulator_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from emulator.testing import EmulatorProcess
from tests.integration.emulator_helpers import Client, check_contract


@pytest.fixture(scope="module")
def spec_checked() -> Iterator[None]:
    """Every response any client (requests, azure-core, langchain) gets in the module is checked."""
    original = HTTPAdapter.send

    def send(self: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        response = original(self, request, *args, **kwargs)
        check_contract(response)
        return response

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HTTPAdapter, "send", send)
        yield


@pytest.fixture(scope="module")
def dp(emu: EmulatorProcess) -> Client:
    """A data-plane client of the module's ``emu`` fixture."""
    return Client.of(emu)

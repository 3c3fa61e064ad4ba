"""In-process fixtures (flaskr style): the real app factory with a fake executor, no processes.

``app`` is ``create_app`` with ``fake_executor``; ``api_client`` is its Flask test client.
(``client`` in tests/conftest.py is the conformance suite's real gunicorn servers.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend import create_app
from backend.config import Settings
from tests.unit.fakes import FakeExecutor


@pytest.fixture
def fake_executor() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
def app(fake_executor: FakeExecutor) -> Iterator[Flask]:
    app = create_app(Settings.from_env({}), executor=fake_executor)
    app.config["TESTING"] = True
    yield app
    app.extensions["piston"].close()


@pytest.fixture
def api_client(app: Flask) -> FlaskClient:
    return app.test_client()

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.config import Settings, SettingsError, env_names, old_env_names, server_setting

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_pistons() -> None:
    s = Settings.from_env({})
    assert (s.run_timeout, s.compile_timeout, s.run_cpu_time, s.compile_cpu_time) == (3000, 10000, 3000, 10000)
    assert (s.max_process_count, s.max_open_files, s.max_file_size) == (64, 2048, 10_000_000)
    # Not Piston's -1: a judge-sized cap when a request gives none (README, "Memory").
    assert (s.run_memory_limit, s.compile_memory_limit, s.sandbox_memory_budget_bytes) == (2**30, 2**30, 0)
    assert s.use_local_executor is True


@pytest.mark.parametrize(("env", "needle"), [
    ({"RUN_TIMEOUT": "soon"}, "RUN_TIMEOUT='soon' is invalid"),
    ({"RUN_TIMEOUT": "0"}, "RUN_TIMEOUT='0' is invalid: must be at least 1"),
    ({"USE_LOCAL_EXECUTOR": "maybe"}, "USE_LOCAL_EXECUTOR='maybe' is invalid: expected true or false"),
    ({"SESSION_STRATEGY": "sticky"}, "SESSION_STRATEGY='sticky' is invalid: expected one of auto, reuse, fresh"),
    ({"USE_LOCAL_EXECUTOR": "false"}, "USE_LOCAL_EXECUTOR=false needs POOL_MANAGEMENT_ENDPOINT"),
])
def test_invalid_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert needle in str(info.value)


def test_env_example_documents_every_setting() -> None:
    text = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    missing = set(env_names()) - documented
    assert not missing, f".env.example lacks {sorted(missing)}"
    for name, default in env_names().items():
        assert re.search(rf"^#?\s*{name}={re.escape(default)}$", text, re.M), f"{name} default should be {default!r}"


# Settings renamed to carry their unit: the old name still works for one release, with a warning.
@pytest.mark.parametrize(("old", "new", "attr", "value"), [
    ("QUEUE_TIMEOUT", "QUEUE_TIMEOUT_MS", "queue_timeout_ms", 1234),
    ("SESSION_REQUEST_TIMEOUT", "SESSION_REQUEST_TIMEOUT_S", "session_request_timeout_s", 17),
    ("SESSION_COOLDOWN_SECONDS", "SESSION_COOLDOWN_S", "session_cooldown_s", 42),
    ("SANDBOX_TMP_SIZE", "SANDBOX_TMP_BYTES", "sandbox_tmp_bytes", 2 << 20),
    ("SANDBOX_BOX_SIZE", "SANDBOX_BOX_BYTES", "sandbox_box_bytes", 3 << 20),
    ("SANDBOX_MEMORY_BUDGET", "SANDBOX_MEMORY_BUDGET_BYTES", "sandbox_memory_budget_bytes", 5 << 30),
    ("COMPILE_CACHE_SIZE", "COMPILE_CACHE_BYTES", "compile_cache_bytes", 7 << 20),
])
def test_old_setting_names_still_work(caplog: pytest.LogCaptureFixture, old: str, new: str, attr: str,
                                      value: int) -> None:
    assert old_env_names()[old] == new
    with caplog.at_level("WARNING", logger="backend.config"):
        assert getattr(Settings.from_env({new: str(value)}), attr) == value
    assert not caplog.records  # the new name alone: no warning

    with caplog.at_level("WARNING", logger="backend.config"):
        assert getattr(Settings.from_env({old: str(value)}), attr) == value
    assert [r.getMessage() for r in caplog.records] == [
        f"{old} is deprecated and will be removed in the next release; set {new} instead"]

    caplog.clear()
    with caplog.at_level("WARNING", logger="backend.config"):
        assert getattr(Settings.from_env({old: "999", new: str(value)}), attr) == value  # the new name wins
    assert [r.getMessage() for r in caplog.records] == [f"{new} and its old name {old} are both set; using {new}"]


def test_an_invalid_old_name_is_named_in_the_error() -> None:
    with pytest.raises(SettingsError, match="QUEUE_TIMEOUT='soon' is invalid"):
        Settings.from_env({"QUEUE_TIMEOUT": "soon"})


def test_gunicorn_timeout_reads_its_old_name(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("WEB_TIMEOUT_S", raising=False)
    monkeypatch.setenv("WEB_TIMEOUT", "77")
    with caplog.at_level("WARNING", logger="backend.config"):
        assert server_setting("WEB_TIMEOUT_S", "120", old_env="WEB_TIMEOUT") == "77"
    assert "WEB_TIMEOUT is deprecated" in caplog.text
    monkeypatch.setenv("WEB_TIMEOUT_S", "88")
    assert server_setting("WEB_TIMEOUT_S", "120", old_env="WEB_TIMEOUT") == "88"
    monkeypatch.delenv("WEB_TIMEOUT")
    monkeypatch.delenv("WEB_TIMEOUT_S")
    assert server_setting("WEB_TIMEOUT_S", "120", old_env="WEB_TIMEOUT") == "120"

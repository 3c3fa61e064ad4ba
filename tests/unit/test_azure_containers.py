"""The emulator's custom-container sessions, without starting one: uid blocks and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.containers import UID_BASE, UID_BLOCK, ContainerProcess, UidBlock


def test_uid_blocks_are_exclusive_machine_wide_and_reused_after_release() -> None:
    first, second = UidBlock(), UidBlock()
    try:
        assert first.base != second.base and min(first.base, second.base) >= UID_BASE
        assert not (first.owns(second.base) or second.owns(first.base))
        assert first.owns(first.base + UID_BLOCK - 1) and not first.owns(first.base + UID_BLOCK)
    finally:
        first.release()
    again = UidBlock()
    try:
        assert again.base <= first.base and again.base != second.base  # lock files: freed blocks come back
    finally:
        again.release()
        second.release()


def test_a_session_gets_its_own_settings_and_nothing_of_the_emulators(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "emulator-secret")
    monkeypatch.setenv("PISTON_TEST_SECRET", "backend-secret")
    container = ContainerProcess(app_dir=tmp_path, python="python3", data_dir=tmp_path / "s1",
                                 extra_env={"SANDBOX_MODE": "uid"})
    container._uids = UidBlock()
    try:
        env = container.environment()
    finally:
        container._uids.release()
    assert "emulator-secret" not in env.values() and "backend-secret" not in env.values()
    assert set(env) == {"PATH", "HOME", "LANG", "PYTHONDONTWRITEBYTECODE", "SERVICE_ROLE", "HOST", "PORT",
                        "SANDBOX_STATE_DIR", "SANDBOX_WORK_DIR", "SANDBOX_CGROUP_NAME", "SANDBOX_UID_BASE",
                        "MAX_CONCURRENT_JOBS", "WEB_WORKERS", "WEB_THREADS", "LOG_LEVEL", "SANDBOX_MODE"}
    assert env["SERVICE_ROLE"] == "session" and int(env["SANDBOX_UID_BASE"]) >= 64000

"""Settings: one frozen object built once at start from the environment (and `.env`).

Every setting is declared in ``_TABLE`` with its environment name, default, parser
and a one-line description; ``.env.example`` documents the same table. Nothing in
the service reads the environment anywhere else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """An invalid setting; the message names the variable."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def _int(raw: str) -> int:
    return int(raw.strip())


def _str(raw: str) -> str:
    return raw.strip()


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


class ServiceRole(StrEnum):
    """``api``: the public service. ``session``: this image inside a custom-container session,
    behind the pool's own authentication (local executor, no API keys, no fallback)."""

    API = "api"
    SESSION = "session"


class PoolType(StrEnum):
    """``properties.containerType`` of the session pool; AUTO asks ARM (or reads the endpoint's form)."""

    AUTO = "auto"
    PYTHON_LTS = "PythonLTS"
    CUSTOM_CONTAINER = "CustomContainer"


class SessionStrategy(StrEnum):
    """When a session identifier is used again: ``reuse`` warm sessions, a ``fresh`` one per
    submission, or ``auto``: reuse only where the session separates runs (see the README)."""

    AUTO = "auto"
    REUSE = "reuse"
    FRESH = "fresh"


def _enum(kind: type[StrEnum]) -> Callable[[str], StrEnum]:
    by_name = {member.value.lower(): member for member in kind}

    def parse(raw: str) -> StrEnum:
        value = by_name.get(raw.strip().lower())
        if value is None:
            raise ValueError(f"expected one of {', '.join(m.value for m in kind)}")
        return value

    return parse


@dataclass(frozen=True)
class _Option:
    env: str
    default: str
    parse: Callable[[str], Any]
    minimum: int | None = None
    # The name before it carried its unit: still read for one release, with a warning at start.
    old_env: str | None = None


# attribute name -> option. Defaults are Piston's unless DEVIATIONS in the README says otherwise.
_TABLE: dict[str, _Option] = {
    # -- executor selection
    "service_role": _Option("SERVICE_ROLE", "api", _enum(ServiceRole)),
    "use_local_executor": _Option("USE_LOCAL_EXECUTOR", "true", _bool),
    "fallback_to_local": _Option("FALLBACK_TO_LOCAL", "false", _bool),
    # -- HTTP
    "max_request_bytes": _Option("MAX_REQUEST_BYTES", "16777216", _int, 1024),
    "api_keys": _Option("API_KEYS", "", _csv),
    "cors_origins": _Option("CORS_ORIGINS", "", _csv),
    "log_level": _Option("LOG_LEVEL", "INFO", lambda r: r.strip().upper()),
    # -- limits (Piston's names without the PISTON_ prefix)
    "output_max_size": _Option("OUTPUT_MAX_SIZE", "1048576", _int, 1),
    "max_process_count": _Option("MAX_PROCESS_COUNT", "64", _int, 1),
    "max_open_files": _Option("MAX_OPEN_FILES", "2048", _int, 16),
    "max_file_size": _Option("MAX_FILE_SIZE", "10000000", _int, 1),
    "compile_timeout": _Option("COMPILE_TIMEOUT", "10000", _int, 1),
    "run_timeout": _Option("RUN_TIMEOUT", "3000", _int, 1),
    "compile_cpu_time": _Option("COMPILE_CPU_TIME", "10000", _int, 1),
    "run_cpu_time": _Option("RUN_CPU_TIME", "3000", _int, 1),
    # Judge-sized caps (Piston: -1, none): a request without a limit cannot hold the host's memory.
    "compile_memory_limit": _Option("COMPILE_MEMORY_LIMIT", "1073741824", _int, -1),
    "run_memory_limit": _Option("RUN_MEMORY_LIMIT", "1073741824", _int, -1),
    "max_concurrent_jobs": _Option("MAX_CONCURRENT_JOBS", "0", _int, 0),
    "max_queued_jobs": _Option("MAX_QUEUED_JOBS", "64", _int, 0),
    "queue_timeout_ms": _Option("QUEUE_TIMEOUT_MS", "30000", _int, 0, old_env="QUEUE_TIMEOUT"),
    # -- judge endpoint
    "judge_max_cases": _Option("JUDGE_MAX_CASES", "200", _int, 1),
    "judge_max_input_bytes": _Option("JUDGE_MAX_INPUT_BYTES", "16777216", _int, 1),
    "judge_display_bytes": _Option("JUDGE_DISPLAY_BYTES", "1024", _int, 0),
    # -- local sandbox
    "sandbox_mode": _Option("SANDBOX_MODE", "auto", _choice("auto", "bwrap", "uid", "none")),
    "allow_unsafe_sandbox": _Option("ALLOW_UNSAFE_SANDBOX", "false", _bool),
    "sandbox_network": _Option("SANDBOX_NETWORK", "false", _bool),
    "sandbox_work_dir": _Option("SANDBOX_WORK_DIR", "/tmp/piston-boxes", _str),
    "sandbox_state_dir": _Option("SANDBOX_STATE_DIR", "/tmp/piston-state", _str),
    "sandbox_uid_base": _Option("SANDBOX_UID_BASE", "60000", _int, 1000),
    "sandbox_tmp_bytes": _Option("SANDBOX_TMP_BYTES", "67108864", _int, 1048576, old_env="SANDBOX_TMP_SIZE"),
    "sandbox_box_bytes": _Option("SANDBOX_BOX_BYTES", "268435456", _int, 1048576, old_env="SANDBOX_BOX_SIZE"),
    "cgroup_name": _Option("SANDBOX_CGROUP_NAME", "piston", _str),
    "sandbox_memory_budget_bytes": _Option("SANDBOX_MEMORY_BUDGET_BYTES", "0", _int, -1, old_env="SANDBOX_MEMORY_BUDGET"),
    "sandbox_pch_dir": _Option("SANDBOX_PCH_DIR", "/usr/local/lib/piston-pch", _str),
    "compile_cache_bytes": _Option("COMPILE_CACHE_BYTES", "268435456", _int, 0, old_env="COMPILE_CACHE_SIZE"),
    # -- Azure dynamic sessions
    "pool_management_endpoint": _Option("POOL_MANAGEMENT_ENDPOINT", "", _str),
    "azure_subscription_id": _Option("AZURE_SUBSCRIPTION_ID", "", _str),
    "azure_resource_group": _Option("AZURE_RESOURCE_GROUP", "", _str),
    "session_pool_name": _Option("SESSION_POOL_NAME", "", _str),
    "azure_resource_manager_url": _Option("AZURE_RESOURCE_MANAGER_URL", "", _str),
    # Set by Container Apps for azure-identity, which reads it itself; only its presence is used
    # here, to pick ManagedIdentityCredential over the slower DefaultAzureCredential chain.
    "identity_endpoint": _Option("IDENTITY_ENDPOINT", "", _str),
    "sessions_api_version": _Option("SESSIONS_API_VERSION", "2025-10-02-preview", _str),
    "sessions_token_scope": _Option("SESSIONS_TOKEN_SCOPE", "https://dynamicsessions.io/.default", _str),
    "session_pool_type": _Option("SESSION_POOL_TYPE", "auto", _enum(PoolType)),
    "session_strategy": _Option("SESSION_STRATEGY", "auto", _enum(SessionStrategy)),
    "session_cooldown_s": _Option("SESSION_COOLDOWN_S", "300", _int, 1, old_env="SESSION_COOLDOWN_SECONDS"),
    "session_request_timeout_s": _Option("SESSION_REQUEST_TIMEOUT_S", "240", _int, 1, old_env="SESSION_REQUEST_TIMEOUT"),
    "session_max_retries": _Option("SESSION_MAX_RETRIES", "4", _int, 0),
    # azure-identity reads it too; the session pool executor passes it explicitly.
    "azure_client_id": _Option("AZURE_CLIENT_ID", "", _str),
}


@dataclass(frozen=True)
class Settings:
    service_role: ServiceRole
    use_local_executor: bool
    fallback_to_local: bool
    max_request_bytes: int
    api_keys: tuple[str, ...]
    cors_origins: tuple[str, ...]
    log_level: str
    output_max_size: int
    max_process_count: int
    max_open_files: int
    max_file_size: int
    compile_timeout: int
    run_timeout: int
    compile_cpu_time: int
    run_cpu_time: int
    compile_memory_limit: int
    run_memory_limit: int
    max_concurrent_jobs: int
    max_queued_jobs: int
    queue_timeout_ms: int
    judge_max_cases: int
    judge_max_input_bytes: int
    judge_display_bytes: int
    sandbox_mode: str
    allow_unsafe_sandbox: bool
    sandbox_network: bool
    sandbox_work_dir: str
    sandbox_state_dir: str
    sandbox_uid_base: int
    sandbox_tmp_bytes: int
    sandbox_box_bytes: int
    sandbox_pch_dir: str
    compile_cache_bytes: int
    cgroup_name: str
    sandbox_memory_budget_bytes: int
    pool_management_endpoint: str
    azure_subscription_id: str
    azure_resource_group: str
    session_pool_name: str
    azure_resource_manager_url: str
    identity_endpoint: str
    sessions_api_version: str
    sessions_token_scope: str
    session_pool_type: PoolType
    session_strategy: SessionStrategy
    session_cooldown_s: int
    session_request_timeout_s: int
    session_max_retries: int
    azure_client_id: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default: ``os.environ``); keyword overrides win.

        Raises SettingsError naming the variable on the first invalid value.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, option in _TABLE.items():
            if name in overrides:
                values[name] = overrides.pop(name)
                continue
            env, raw = _raw_value(environ, option)
            try:
                value = option.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{env}={raw!r} is invalid: {exc}") from None
            if option.minimum is not None and value < option.minimum:
                raise SettingsError(f"{env}={raw!r} is invalid: must be at least {option.minimum}")
            values[name] = value
        if overrides:
            raise SettingsError(f"unknown settings: {', '.join(sorted(overrides))}")
        if values["max_concurrent_jobs"] == 0:
            values["max_concurrent_jobs"] = 2 * (os.cpu_count() or 1)
        if values["service_role"] is ServiceRole.SESSION:
            values.update(_SESSION_ROLE, judge_display_bytes=values["output_max_size"])
        settings = cls(**values)
        settings._check_consistency()
        return settings

    def _check_consistency(self) -> None:
        if not self.use_local_executor and not (
            self.pool_management_endpoint
            or (self.azure_subscription_id and self.azure_resource_group and self.session_pool_name)
        ):
            raise SettingsError(
                "USE_LOCAL_EXECUTOR=false needs POOL_MANAGEMENT_ENDPOINT, or AZURE_SUBSCRIPTION_ID, "
                "AZURE_RESOURCE_GROUP and SESSION_POOL_NAME"
            )

    def replace(self, **changes: Any) -> Settings:
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return Settings(**current)


# What the session role forces, whatever the environment says: the pool authenticates callers (the
# Authorization header that may reach the container is the pool's token, not an API key), the
# sandbox is this container's own, and there is nowhere to fall back to. The backend that called
# truncates judge output for display itself, so the session sends it whole (up to OUTPUT_MAX_SIZE).
_SESSION_ROLE: dict[str, Any] = {"use_local_executor": True, "fallback_to_local": False, "api_keys": ()}


def _raw_value(environ: Mapping[str, str], option: _Option) -> tuple[str, str]:
    """(variable read, raw value): the option's own name, else its old name (with a warning), else
    the default. The new name wins when both are set."""
    old = option.old_env
    if old is None or old not in environ:
        return option.env, environ.get(option.env, option.default)
    if option.env in environ:
        log.warning("%s and its old name %s are both set; using %s", option.env, old, option.env)
        return option.env, environ[option.env]
    log.warning("%s is deprecated and will be removed in the next release; set %s instead", old, option.env)
    return old, environ[old]


def server_setting(env: str, default: str, *, old_env: str | None = None) -> str:
    """A gunicorn setting (read by gunicorn.conf.py, outside Settings), with the same old-name rule."""
    return _raw_value(os.environ, _Option(env, default, _str, old_env=old_env))[1]


def old_env_names() -> dict[str, str]:
    """Old (deprecated) environment variable name -> its new name."""
    return {option.old_env: option.env for option in _TABLE.values() if option.old_env}


def env_names() -> dict[str, str]:
    """Environment variable name -> default, for documentation checks."""
    return {option.env: option.default for option in _TABLE.values()}


def load_settings(dotenv_path: str | None = None) -> Settings:
    """Load `.env` (real environment variables win) and build the settings."""
    from dotenv import load_dotenv

    # A session container has no secrets: it reads no .env that happens to sit in the image or app dir.
    if os.environ.get("SERVICE_ROLE", "").strip().lower() != ServiceRole.SESSION.value:
        load_dotenv(dotenv_path, override=False)
    return Settings.from_env()

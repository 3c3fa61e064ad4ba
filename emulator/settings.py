"""Emulator settings: one frozen object built by the CLI (or a test) and passed to ``create_app``.

Nothing here reads the environment; the CLI turns flags into a ``Settings`` and the factory keeps it.
Constants that describe the real service (api-versions, audiences, limits) live here too, each with
the research note's evidence label in a comment (see ``/work/shared/research/azure-sessions.md``).
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from typing import Literal

# -- Audiences. The data plane wants aud=https://dynamicsessions.io [DOC sessions-usage.md].
DATA_PLANE_AUDIENCE = "https://dynamicsessions.io"
# Guess: Semantic Kernel 1.45 still defaults to this older audience [SDK], which suggests the service
# still accepts it; on by default, off with --strict-audience.
LEGACY_DATA_PLANE_AUDIENCE = "https://acasessions.io"
ARM_AUDIENCES = (
    "https://management.azure.com",
    "https://management.azure.com/",
    "https://management.core.windows.net",
    "https://management.core.windows.net/",
)

# -- Data-plane api-versions [SPEC + DOC]. 2024-09-01 exists as a "stable" swagger folder but is not
# in the readme tags; the research note says not to target it, so it is rejected here.
LEGACY_API_VERSIONS = ("2024-02-02-preview", "2024-08-02-preview")
NEW_API_VERSIONS = ("2024-10-02-preview", "2025-02-02-preview", "2025-10-02-preview")
KNOWN_API_VERSIONS = LEGACY_API_VERSIONS + NEW_API_VERSIONS
MSI_API_VERSION = "2019-08-01"

MAX_EXECUTION_SECONDS = 220  # [DOC sessions-code-interpreter.md]
DEFAULT_OUTPUT_MAX_LENGTH = 4096  # [MS-SAMPLE api-spec-python.md] outputStreamsMaxLength default
MAX_UPLOAD_BYTES = 128 * 1024 * 1024  # [DOC] "might get an HTTP 413" above 128 MB
MAX_SESSIONS_LIMIT = 600  # [DOC session-pool.md] "The maximum value is 600"
SESSION_EXECUTOR_ROLE_ID = "0fb8eba5-a2bb-4abe-b1c1-49dfad359bb0"  # Azure ContainerApps Session Executor

# -- Fixed identities so tests and docs can name them. Not real Entra ids.
TENANT_ID = "72f988bf-0000-4000-8000-00000000e0e0"
DEFAULT_CLIENT_ID = "c11e0000-0000-4000-8000-000000000001"
DEFAULT_PRINCIPAL_ID = "9a1c0000-0000-4000-8000-000000000001"
# A user-assigned identity that exists but is NOT in the default allow-list: a token for it gets 403.
UNAUTHORIZED_CLIENT_ID = "c11e0000-0000-4000-8000-000000000002"
UNAUTHORIZED_PRINCIPAL_ID = "9a1c0000-0000-4000-8000-000000000002"

OPTIONAL_TOOLCHAINS = ("gcc",)  # toolchains --image-toolchains may add to the pythonlts image

IdentifierRule = Literal["common", "union"]
IDENTIFIER_RULE_NAMES = ("common", "union")  # see emulator/checks.py

BodyShape = Literal["flat", "wrapped", "any"]
BODY_SHAPES = ("flat", "wrapped", "any")
POOL_TYPES = ("PythonLTS", "CustomContainer")  # properties.containerType [SPEC ARM 2025-07-01]

# -- What the sessions look like inside (emulator/image.py says what each part rests on).
Profile = Literal["pythonlts", "host"]
PROFILES = ("pythonlts", "host")
KernelUser = Literal["ubuntu", "root"]
KERNEL_USERS = ("ubuntu", "root")  # root: test-only, so the harness's root path can be exercised
KernelUserns = Literal["deny", "allow"]
KERNEL_USERNS = ("deny", "allow")  # may an unprivileged kernel create user namespaces (image.py: Guess)
# pythonlts kernel uids: base + (n % span). Worktree sandboxes use 60500..63500, the harness 30000..60000
# inside sessions, custom-container sessions >= 64000 (below this range); 65534 is nobody.
DEFAULT_KERNEL_UID_BASE = 65000
KERNEL_UID_SPAN = 500


@dataclass(frozen=True)
class Identity:
    """A managed identity the token endpoint can mint tokens for."""

    client_id: str
    principal_id: str
    name: str
    system_assigned: bool = False

    def resource_id(self, subscription_id: str, resource_group: str) -> str:
        if self.system_assigned:
            return ""
        return (
            f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{self.name}"
        )


DEFAULT_IDENTITIES = (
    Identity(DEFAULT_CLIENT_ID, DEFAULT_PRINCIPAL_ID, "system", system_assigned=True),
    Identity(UNAUTHORIZED_CLIENT_ID, UNAUTHORIZED_PRINCIPAL_ID, "unauthorized-identity"),
)

# Settings a test may change on a running emulator through POST /_emulator/config.
RUNTIME_KEYS = frozenset(
    {
        "latency_ms",
        "max_sessions",
        "cooldown_s",
        "token_lifetime_s",
        "allowed_principals",
        "executions_body",
        "code_execute_body",
        "accept_legacy_audience",
        "max_execution_s",
        "identifier_rule",
    }
)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "emulator-rg"
    pool_name: str = "emulatorpool"
    location: str = "westus2"
    # Guess: no documented default; 20 matches the Bicep sample and keeps RAM use sane (~70 MB a kernel).
    max_sessions: int = 20
    cooldown_s: float = 300.0  # [DOC] 300-3600 s; the emulator allows shorter values for tests
    ready_sessions: int = 2  # like scaleConfiguration.readySessionInstances
    latency_ms: int = 0  # added to every service call (not the control API)
    token_lifetime_s: int = 3600
    identity_header: str = field(default_factory=lambda: secrets.token_hex(16))
    token_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    allowed_principals: tuple[str, ...] = (DEFAULT_PRINCIPAL_ID,)  # "*" allows every principal
    identities: tuple[Identity, ...] = DEFAULT_IDENTITIES
    accept_legacy_audience: bool = True
    executions_body: BodyShape = "flat"  # shape POST /executions accepts
    code_execute_body: BodyShape = "wrapped"  # shape POST /code/execute accepts
    max_execution_s: int = MAX_EXECUTION_SECONDS
    identifier_rule: IdentifierRule = "common"
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    data_root: str | None = None  # None: a temporary directory removed on exit
    kernel_python: str = sys.executable
    kernel_start_timeout_s: float = 60.0
    log_requests: bool = False
    exit_with_parent: bool = False  # stop (and kill all kernels) when the launching process dies
    profile: Profile = "pythonlts"
    image_toolchains: tuple[str, ...] = ()  # optional toolchains the pythonlts image shows ("gcc")
    kernel_user: KernelUser = "ubuntu"
    kernel_userns: KernelUserns = "deny"
    kernel_uid_base: int = DEFAULT_KERNEL_UID_BASE
    # -- CustomContainer pools (emulator/containers.py): each session runs the app in session_app_dir
    pool_type: str = "PythonLTS"
    session_app_dir: str | None = None
    session_env: tuple[str, ...] = ()  # extra KEY=VALUE settings for every session app
    environment_id: str = "emulatorenv-7f3c2a1b"  # the endpoint's <environment-id> label

    def __post_init__(self) -> None:
        # Fail at construction, naming the field, rather than at the first request.
        checks: list[tuple[bool, str]] = [
            (0 <= self.port <= 65535, "port must be 0..65535"),
            (1 <= self.max_sessions <= MAX_SESSIONS_LIMIT, f"max_sessions must be 1..{MAX_SESSIONS_LIMIT}"),
            (self.cooldown_s > 0, "cooldown_s must be > 0"),
            (self.ready_sessions >= 0, "ready_sessions must be >= 0"),
            (self.latency_ms >= 0, "latency_ms must be >= 0"),
            (self.token_lifetime_s != 0, "token_lifetime_s must not be 0"),
            (bool(self.identity_header), "identity_header must not be empty"),
            (bool(self.token_secret), "token_secret must not be empty"),
            (bool(self.identities), "identities must not be empty"),
            (self.executions_body in BODY_SHAPES, f"executions_body must be one of {BODY_SHAPES}"),
            (self.code_execute_body in BODY_SHAPES, f"code_execute_body must be one of {BODY_SHAPES}"),
            (1 <= self.max_execution_s <= 3600, "max_execution_s must be 1..3600"),
            (self.identifier_rule in IDENTIFIER_RULE_NAMES, f"identifier_rule must be one of {IDENTIFIER_RULE_NAMES}"),
            (self.max_upload_bytes > 0, "max_upload_bytes must be > 0"),
            (self.kernel_start_timeout_s > 0, "kernel_start_timeout_s must be > 0"),
            (self.profile in PROFILES, f"profile must be one of {PROFILES}"),
            (self.kernel_user in KERNEL_USERS, f"kernel_user must be one of {KERNEL_USERS}"),
            (self.kernel_userns in KERNEL_USERNS, f"kernel_userns must be one of {KERNEL_USERNS}"),
            (
                all(t in OPTIONAL_TOOLCHAINS for t in self.image_toolchains),
                f"image_toolchains must be among {OPTIONAL_TOOLCHAINS}",
            ),
            (1000 <= self.kernel_uid_base <= 65534 - KERNEL_UID_SPAN, "kernel_uid_base out of range"),
            (self.pool_type in POOL_TYPES, f"pool_type must be one of {POOL_TYPES}"),
            (self.pool_type != "CustomContainer" or bool(self.session_app_dir),
             "pool_type CustomContainer needs session_app_dir (--session-app-dir)"),
            (all("=" in item for item in self.session_env), "session_env items must be KEY=VALUE"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        for name in ("allowed_principals", "image_toolchains"):
            if not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def pool_path(self) -> str:
        """Path of the data-plane endpoint, as in https://<region>.dynamicsessions.io/<this>."""
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/sessionPools/{self.pool_name}"

    @property
    def container_host(self) -> str:
        """The host of a custom-container pool's endpoint [DOC sessions-custom-container.md]."""
        return f"{self.pool_name}.{self.environment_id}.{self.location}.azurecontainerapps.io"

    def endpoint_path(self) -> str:
        """The pool management endpoint's path on the emulator, for this pool type."""
        return "/" + self.container_host if self.pool_type == "CustomContainer" else self.pool_path

    @property
    def arm_pool_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.App/sessionPools/{self.pool_name}"
        )

    def data_plane_audiences(self) -> tuple[str, ...]:
        if self.accept_legacy_audience:
            return (DATA_PLANE_AUDIENCE, LEGACY_DATA_PLANE_AUDIENCE)
        return (DATA_PLANE_AUDIENCE,)

    def principal_allowed(self, principal_id: str) -> bool:
        return "*" in self.allowed_principals or principal_id in self.allowed_principals

    def public(self) -> dict[str, object]:
        """The settings a test may want to see (no secrets)."""
        return {
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "pool_name": self.pool_name,
            "location": self.location,
            "max_sessions": self.max_sessions,
            "cooldown_s": self.cooldown_s,
            "ready_sessions": self.ready_sessions,
            "latency_ms": self.latency_ms,
            "token_lifetime_s": self.token_lifetime_s,
            "allowed_principals": list(self.allowed_principals),
            "identities": [
                {"client_id": i.client_id, "principal_id": i.principal_id, "system_assigned": i.system_assigned}
                for i in self.identities
            ],
            "accept_legacy_audience": self.accept_legacy_audience,
            "executions_body": self.executions_body,
            "code_execute_body": self.code_execute_body,
            "max_execution_s": self.max_execution_s,
            "identifier_rule": self.identifier_rule,
            "max_upload_bytes": self.max_upload_bytes,
            "profile": self.profile,
            "image_toolchains": list(self.image_toolchains),
            "kernel_user": self.kernel_user,
            "kernel_userns": self.kernel_userns,
            "pool_type": self.pool_type,
        }

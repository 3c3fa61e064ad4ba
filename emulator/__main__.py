"""``python -m emulator``: run the Azure Container Apps dynamic-sessions emulator.

Prints ``EMULATOR_READY <base_url>`` and then the client's env lines (KEY=value) to stdout once it
listens; logs go to stderr. See emulator/README.md for every flag.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .server import serve
from .settings import (
    BODY_SHAPES,
    DEFAULT_IDENTITIES,
    IDENTIFIER_RULE_NAMES,
    KERNEL_USERNS,
    KERNEL_USERS,
    OPTIONAL_TOOLCHAINS,
    POOL_TYPES,
    PROFILES,
    Identity,
    Settings,
)


def _identity(text: str) -> Identity:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise argparse.ArgumentTypeError("expected CLIENT_ID:PRINCIPAL_ID[:NAME]")
    name = parts[2] if len(parts) == 3 and parts[2] else f"identity-{parts[0][:8]}"
    return Identity(parts[0], parts[1], name)


def build_parser() -> argparse.ArgumentParser:
    d = Settings(identity_header="-", token_secret="-")  # defaults, for the help text
    p = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.splitlines()[0])
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port, help="0 picks a free port (see the READY line)")
    p.add_argument("--subscription", default=d.subscription_id, help="subscription id in paths")
    p.add_argument("--resource-group", default=d.resource_group)
    p.add_argument("--pool", default=d.pool_name, help="session pool name")
    p.add_argument("--location", default=d.location, help="ARM location of the pool")
    p.add_argument("--max-sessions", type=int, default=d.max_sessions, help="maxConcurrentSessions (404 when full)")
    p.add_argument("--cooldown", type=float, default=d.cooldown_s, help="idle seconds before a session is destroyed")
    p.add_argument("--ready-sessions", type=int, default=d.ready_sessions, help="pre-started kernels")
    p.add_argument("--latency-ms", type=int, default=d.latency_ms, help="latency added to every service call")
    p.add_argument("--token-lifetime", type=int, default=d.token_lifetime_s, help="seconds a token is valid")
    p.add_argument(
        "--allowed-principals",
        nargs="+",
        default=list(d.allowed_principals),
        metavar="OID",
        help="principal (object) ids holding the Session Executor role; '*' allows all",
    )
    p.add_argument("--identity-header", default=None, help="IDENTITY_HEADER secret (default: random)")
    p.add_argument("--token-secret", default=None, help="HS256 signing secret (default: random)")
    p.add_argument(
        "--user-identity",
        action="append",
        type=_identity,
        default=[],
        metavar="CLIENT_ID:PRINCIPAL_ID[:NAME]",
        help="add a user-assigned identity (repeatable)",
    )
    p.add_argument("--executions-body", choices=BODY_SHAPES, default=d.executions_body)
    p.add_argument(
        "--reject-flat-executions",
        action="store_true",
        help="same as --executions-body wrapped (POST /executions demands {'properties': {...}})",
    )
    p.add_argument("--code-execute-body", choices=BODY_SHAPES, default=d.code_execute_body)
    p.add_argument("--strict-audience", action="store_true", help="reject aud https://acasessions.io")
    p.add_argument("--max-execution-seconds", type=int, default=d.max_execution_s, help="execution time cap")
    p.add_argument("--max-upload-bytes", type=int, default=d.max_upload_bytes)
    p.add_argument("--data-root", default=None, help="where session directories live (default: a temp dir)")
    p.add_argument("--kernel-start-timeout", type=float, default=d.kernel_start_timeout_s)
    choice_flags = (
        ("--identifier-rule", IDENTIFIER_RULE_NAMES, d.identifier_rule,
         "common: what every documented rule accepts ([A-Za-z0-9-]{4,128}); union: what any accepts"),
        ("--profile", PROFILES, d.profile,
         "pythonlts: each kernel in a PythonLTS-like sandbox (default); host: this machine as is (debugging)"),
        ("--kernel-user", KERNEL_USERS, d.kernel_user,
         "pythonlts kernel user; root is for tests of a root session only (PythonLTS runs as ubuntu)"),
        ("--kernel-userns", KERNEL_USERNS, d.kernel_userns,
         "may an unprivileged pythonlts kernel create user namespaces (deny: like Docker's seccomp profile)"),
    )
    for flag, choices, default, text in choice_flags:
        p.add_argument(flag, choices=choices, default=default, help=text)
    p.add_argument(
        "--image-toolchains",
        nargs="*",
        choices=OPTIONAL_TOOLCHAINS,
        default=[],
        help="unverified toolchains the pythonlts image shows too",
    )
    p.add_argument("--kernel-uid-base", type=int, default=d.kernel_uid_base, help="first uid of pythonlts kernels")
    p.add_argument("--pool-type", choices=POOL_TYPES, default=d.pool_type,
                   help="CustomContainer: each session is a process of --session-app-dir in SERVICE_ROLE=session")
    p.add_argument("--session-app-dir", default=None, help="repo root of the session app (CustomContainer)")
    p.add_argument("--session-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra setting for every session app (repeatable; CustomContainer)")
    p.add_argument("--log-requests", action="store_true", help="log every request to stderr")
    p.add_argument("--exit-with-parent", action="store_true", help="shut down when the launching process dies")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    extra: dict[str, str] = {}
    if args.identity_header:
        extra["identity_header"] = args.identity_header
    if args.token_secret:
        extra["token_secret"] = args.token_secret
    return Settings(
        host=args.host,
        port=args.port,
        subscription_id=args.subscription,
        resource_group=args.resource_group,
        pool_name=args.pool,
        location=args.location,
        max_sessions=args.max_sessions,
        cooldown_s=args.cooldown,
        ready_sessions=args.ready_sessions,
        latency_ms=args.latency_ms,
        token_lifetime_s=args.token_lifetime,
        allowed_principals=tuple(args.allowed_principals),
        identities=DEFAULT_IDENTITIES + tuple(args.user_identity),
        accept_legacy_audience=not args.strict_audience,
        executions_body="wrapped" if args.reject_flat_executions else args.executions_body,
        code_execute_body=args.code_execute_body,
        max_execution_s=args.max_execution_seconds,
        max_upload_bytes=args.max_upload_bytes,
        identifier_rule=args.identifier_rule,
        data_root=args.data_root,
        kernel_start_timeout_s=args.kernel_start_timeout,
        log_requests=args.log_requests,
        exit_with_parent=args.exit_with_parent,
        profile=args.profile,
        image_toolchains=tuple(args.image_toolchains),
        kernel_user=args.kernel_user,
        kernel_userns=args.kernel_userns,
        kernel_uid_base=args.kernel_uid_base,
        pool_type=args.pool_type,
        session_app_dir=args.session_app_dir,
        session_env=tuple(args.session_env),
        **extra,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.log_requests and args.log_level == "WARNING" else args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())

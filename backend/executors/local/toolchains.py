"""Which languages this machine really has, found once at start."""

from __future__ import annotations

import logging
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

from backend.runtimes import LANGUAGES, LanguageSpec, Runtime, normalize_version

log = logging.getLogger(__name__)


def _resolve(spec: LanguageSpec) -> dict[str, str] | None:
    found: dict[str, str] = {}
    for role, candidates in spec.binaries.items():
        path = next((c for c in candidates if os.access(c, os.X_OK)), None)
        if path is None:
            return None
        found[role] = path
    return found


def _probe(spec: LanguageSpec) -> Runtime | None:
    binaries = _resolve(spec)
    if binaries is None:
        return None
    argv = [part.format(**binaries) if part.startswith("{") else part for part in spec.version_cmd]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=20, check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s: version probe failed: %s", spec.language, exc)
        return None
    match = re.search(spec.version_regex, result.stdout + result.stderr)
    if result.returncode != 0 or match is None:
        log.warning("%s: cannot read its version from %r", spec.language, (result.stdout + result.stderr)[:200])
        return None
    return Runtime(
        language=spec.language, version=normalize_version(match.group(1)), aliases=spec.aliases,
        provider=spec.provider, compiled=spec.compiled, binaries=binaries,
    )


def discover_runtimes() -> list[Runtime]:
    """Probe every known language in parallel; keep those that answer with a version."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(_probe, LANGUAGES))
    return [rt for rt in found if rt is not None]

"""Which languages this machine really has, found once at start (the probe of ``backend/runrules.py``)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from backend import runrules
from backend.runtimes import LANGUAGES, LanguageSpec, Runtime, probed_runtime

log = logging.getLogger(__name__)


def _probe(spec: LanguageSpec) -> Runtime | None:
    found = runrules.probe_toolchain({role: list(paths) for role, paths in spec.binaries.items()},
                                     list(spec.version_cmd))
    if found["binaries"] is None:
        return None
    runtime = probed_runtime(spec, found)
    if runtime is None:
        log.warning("%s: cannot read its version (exit %s) from %r", spec.language, found["returncode"],
                    found["output"][:200])
    return runtime


def discover_runtimes() -> list[Runtime]:
    """Probe every known language in parallel; keep those that answer with a version."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(_probe, LANGUAGES))
    return [rt for rt in found if rt is not None]

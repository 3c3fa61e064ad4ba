"""Start-up probe: pick the strongest sandbox that really works on this machine.

Layers, strongest first: bubblewrap namespaces (no network, own pid namespace,
read-only system, private /tmp); a separate unprivileged uid per slot (needs root);
cgroups for exact memory and process limits. Each is tried for real, not assumed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from backend.config import Settings
from backend.executors.local.cgroups import cgroups_writable, detect_version
from backend.executors.local.launcher import LauncherError, ensure_launcher
from backend.executors.local.sandbox import Sandbox, SandboxPlan, Slot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    plan: SandboxPlan | None
    namespaces: bool
    uid_separation: bool
    cgroups: int  # 0 = none, else the cgroup version
    refusal: str | None  # why submissions are refused, if they are

    @property
    def mode(self) -> str:
        if self.plan is None:
            return "unavailable"
        layers = []
        if self.namespaces:
            layers.append("bwrap")
        if self.uid_separation:
            layers.append("uid")
        if self.cgroups:
            layers.append(f"cgroup-v{self.cgroups}")
        return "+".join(layers) or "unsafe-none"

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "namespaces": self.namespaces,
            "uid_separation": self.uid_separation,
            "cgroups": f"v{self.cgroups}" if self.cgroups else None,
            "refused": self.refusal,
        }


def _works(plan: SandboxPlan, uid: int | None) -> bool:
    """Run /usr/bin/true in a throw-away sandbox built from ``plan``."""
    root = Path(tempfile.mkdtemp(prefix="probe-", dir=plan_dir(plan)))
    try:
        os.chmod(root, 0o711)
        slot = Slot(index=-1, uid=uid, root=root, cgroup=None)
        for path in (slot.box, slot.io):
            path.mkdir()
            if uid is not None:
                os.chown(path, uid, uid)
        sandbox = Sandbox(plan, slot)
        sandbox.start(["/usr/bin/true"], stdin_path=None, rlimits={})
        outcome = sandbox.collect(timeout_ms=10_000, output_max_size=4096)
        sandbox.destroy()
        if outcome.wait_status != 0:
            log.info("sandbox probe failed: %s", outcome.sandbox_error or outcome.stderr[-300:])
        return outcome.wait_status == 0
    except OSError as exc:
        log.info("sandbox probe failed: %s", exc)
        return False
    finally:
        shutil.rmtree(root, ignore_errors=True)


def plan_dir(plan: SandboxPlan) -> str:
    return str(Path(plan.launcher).parent)


def probe(settings: Settings) -> ProbeResult:
    try:
        launcher = ensure_launcher(settings.sandbox_state_dir)
    except (LauncherError, OSError) as exc:
        return ProbeResult(None, False, False, 0, f"sandbox launcher unavailable: {exc}")
    is_root = os.geteuid() == 0
    bwrap = shutil.which("bwrap")
    probe_uid = settings.sandbox_uid_base + 4095 if is_root else None
    wanted = settings.sandbox_mode

    def plan(with_bwrap: bool, uid_sep: bool) -> SandboxPlan:
        return SandboxPlan(
            launcher=launcher, bwrap=bwrap if with_bwrap else None, uid_separation=uid_sep,
            network=settings.sandbox_network, tmp_size=settings.sandbox_tmp_bytes,
        )

    namespaces = bool(bwrap) and wanted in ("auto", "bwrap") and _works(plan(True, is_root), probe_uid)
    uid_sep = is_root and wanted != "none" and _works(plan(namespaces, True), probe_uid)
    cgroups = detect_version() if is_root and cgroups_writable(settings.cgroup_name) else 0
    refusal = None
    if wanted == "bwrap" and not namespaces:
        refusal = "SANDBOX_MODE=bwrap but bubblewrap namespaces do not work here"
    elif not namespaces and not uid_sep and not settings.allow_unsafe_sandbox:
        refusal = (
            "no sandbox layer works here (no namespaces, no uid separation); "
            "set ALLOW_UNSAFE_SANDBOX=true to run submissions unconfined"
        )
    result = ProbeResult(plan(namespaces, uid_sep) if refusal is None else None, namespaces, uid_sep, cgroups, refusal)
    log.info("local sandbox mode: %s", result.mode if refusal is None else f"refused ({refusal})")
    return result

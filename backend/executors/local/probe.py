"""Start-up probe: pick the strongest sandbox that really works on this machine.

Layers, strongest first: bubblewrap namespaces (no network, own pid namespace,
read-only system, private /tmp); a separate unprivileged uid per slot (needs root);
cgroups for exact memory and process limits. Each is tried for real, not assumed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from backend.config import Settings
from backend.executors.local.cgroups import cgroups_writable, detect_version
from backend.executors.local.launcher import LauncherError, ensure_launcher
from backend.executors.local.sandbox import Sandbox, SandboxPlan, Slot, make_dev_dir, open_netns

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
            "dev": ("template" if self.plan.dev_dir else "bwrap") if self.plan and self.namespaces else None,
            "kept_netns": bool(self.plan and self.plan.keep_netns),
            "refused": self.refusal,
        }


# Proves the /dev template's nodes work where the sandbox sees them (not on a nodev mount).
DEV_CHECK = ("/usr/bin/dd", "if=/dev/zero", "of=/dev/null", "count=1", "status=none")


def _works(plan: SandboxPlan, uid: int | None, argv: tuple[str, ...] = ("/usr/bin/true",)) -> bool:
    """Run ``argv`` in a throw-away sandbox built from ``plan``."""
    root = Path(tempfile.mkdtemp(prefix="probe-", dir=plan_dir(plan)))
    slot = Slot(index=-1, uid=uid, root=root / "slot", cgroup=None)
    try:
        os.chmod(root, 0o711)
        slot.root.mkdir(mode=0o711)
        if plan.keep_netns:
            slot.netns_fd = open_netns(plan.launcher, slot.netns_reference)
        for path in (slot.box, slot.io):
            path.mkdir()
            if uid is not None:
                os.chown(path, uid, uid)
        sandbox = Sandbox(plan, slot)
        sandbox.start(list(argv), stdin_path=None, rlimits={})
        outcome = sandbox.collect(timeout_ms=10_000, output_max_size=4096)
        sandbox.destroy()
        if outcome.wait_status != 0:
            log.info("sandbox probe failed: %s", outcome.sandbox_error or outcome.stderr[-300:])
        return outcome.wait_status == 0
    except OSError as exc:
        log.info("sandbox probe failed: %s", exc)
        return False
    finally:
        if slot.netns_fd is not None:
            os.close(slot.netns_fd)
        shutil.rmtree(root, ignore_errors=True)


def _with_dev_template(plan: SandboxPlan, state_dir: str, uid: int | None) -> SandboxPlan:
    """The plan with one bind of a /dev template instead of bwrap's --dev, if that works here."""
    try:
        dev_dir = make_dev_dir(Path(state_dir) / "dev")
    except OSError as exc:  # no CAP_MKNOD (an unprivileged container)
        log.info("sandbox /dev from bwrap --dev (no template: %s)", exc)
        return plan
    candidate = dataclasses.replace(plan, dev_dir=str(dev_dir))
    return candidate if _works(candidate, uid, DEV_CHECK) else plan


def _with_kept_netns(plan: SandboxPlan, uid: int | None) -> SandboxPlan:
    """The plan with a network namespace kept per slot, if the launcher can make and join one here."""
    if plan.network:
        return plan
    candidate = dataclasses.replace(plan, keep_netns=True)
    return candidate if _works(candidate, uid) else plan


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
    chosen = plan(namespaces, uid_sep) if refusal is None else None
    if chosen is not None and namespaces and is_root:
        chosen = _with_dev_template(chosen, settings.sandbox_state_dir, probe_uid if uid_sep else None)
        chosen = _with_kept_netns(chosen, probe_uid if uid_sep else None)
    result = ProbeResult(chosen, namespaces, uid_sep, cgroups, refusal)
    log.info("local sandbox mode: %s", result.mode if refusal is None else f"refused ({refusal})")
    return result

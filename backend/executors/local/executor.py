"""The local executor: submissions run on this machine in per-slot sandboxes."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import shutil
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from backend import runrules
from backend.config import Settings
from backend.executors.base import Box, Executor
from backend.executors.errors import ExecutorUnavailable
from backend.executors.local import precompiled as pch
from backend.executors.local.cgroups import apply_memory_budget, memory_budget_bytes
from backend.executors.local.compile_cache import CompileCache, cache_key
from backend.executors.local.live import LiveStage
from backend.executors.local.probe import ProbeResult, probe
from backend.executors.local.results import to_stage
from backend.executors.local.sandbox import Slot
from backend.executors.local.slots import SlotPool
from backend.executors.local.toolchains import discover_runtimes
from backend.interactive import InteractiveSession
from backend.models import ExecutionResult, Limits, Program, RunSpec, StageResult, Status
from backend.runtimes import CXX_FLAGS, JAVAC_JVM_FLAGS, NO_SPEEDUPS, Commands, Runtime, Speedups, build_commands

# NPROC counts per uid: the slot uid also runs bwrap's own processes, and their delayed teardown.
BWRAP_PROCESSES = 16
log = logging.getLogger(__name__)
IO_INSIDE = "/.io"  # where the slot's io directory (stdin files) appears in the sandbox


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.probe: ProbeResult = probe(settings)
        self._runtimes = discover_runtimes()
        self.slots: SlotPool | None = None
        self.speedups = NO_SPEEDUPS
        self.compile_cache: CompileCache | None = None
        if self.probe.plan is not None:
            plan = self.probe.plan
            self.speedups = self._prepare_speedups()
            if self.settings.sandbox_pch_dir and not self.settings.sandbox_pch_dir.startswith("/usr/") \
                    and self.speedups != NO_SPEEDUPS:
                plan = dataclasses.replace(plan, ro_binds=(self.settings.sandbox_pch_dir,))
            if settings.compile_cache_bytes > 0:
                self.compile_cache = CompileCache(
                    os.path.join(settings.sandbox_state_dir, "compile-cache"), settings.compile_cache_bytes)
            self.slots = SlotPool(
                plan, count=settings.max_concurrent_jobs, work_dir=settings.sandbox_work_dir,
                state_dir=settings.sandbox_state_dir, uid_base=settings.sandbox_uid_base,
                cgroup_name=settings.cgroup_name if self.probe.cgroups else None,
                box_size=settings.sandbox_box_bytes if os.geteuid() == 0 else 0,
            )
        self.memory_budget: int | None = None  # what the slots' parent cgroup holds them to; None: nothing
        if self.slots is not None and self.probe.cgroups:
            budget = memory_budget_bytes(settings.sandbox_memory_budget_bytes)
            try:
                apply_memory_budget(settings.cgroup_name, budget)
                self.memory_budget = budget
            except OSError as exc:  # /health then shows none; the per-run caps still hold
                log.error("could not set the sandbox memory budget of %d bytes: %s", budget, exc)

    def _prepare_speedups(self) -> Speedups:
        root = self.settings.sandbox_pch_dir
        binaries = {role: path for rt in self._runtimes for role, path in rt.binaries.items()}
        if not root:
            return NO_SPEEDUPS
        may_build = os.geteuid() == 0
        # Each check runs a real compile (about a second): side by side, off the start-up's critical path.
        with ThreadPoolExecutor(max_workers=2) as pool:
            headers_check = pool.submit(pch.prepare, root, binaries["cxx"], CXX_FLAGS, may_build=may_build) \
                if "cxx" in binaries else None
            archive_check = pool.submit(pch.prepare_javac_archive, root, binaries["javac"], JAVAC_JVM_FLAGS,
                                        may_build=may_build) if "javac" in binaries else None
            headers = headers_check.result() if headers_check else None
            archive = archive_check.result() if archive_check else None
        return Speedups(cxx_include_dirs=(str(headers),) if headers else (),
                        javac_archive=str(archive) if archive else None)

    def runtimes(self) -> list[Runtime]:
        return list(self._runtimes)

    def health(self) -> dict[str, Any]:
        slots = [slot.index for slot in self.slots.slots] if self.slots else []
        return {"executor": self.name, "sandbox": {
            **self.probe.to_json(), "slots": slots, "memory_budget": self.memory_budget,
            "precompiled_headers": (self.speedups.cxx_include_dirs or [None])[0],
            "javac_archive": self.speedups.javac_archive, "compile_cache": self.compile_cache is not None,
        }}

    def stats(self) -> dict[str, Any]:
        """For /metrics (piston_executor_*): sandbox slots in total and free right now."""
        return {"sandbox_slots": self.slots.stats() if self.slots else {"total": 0, "free": 0}}

    def ready(self) -> tuple[bool, str]:
        if self.slots is None:
            return False, self.probe.refusal or "sandbox unavailable"
        return True, f"sandbox {self.probe.mode}"

    @contextlib.contextmanager
    def open(self, program: Program, runtime: Runtime) -> Iterator[Box]:
        if self.slots is None:
            raise ExecutorUnavailable(f"local sandbox unavailable: {self.probe.refusal}")
        slot = self.slots.acquire(self.settings.queue_timeout_ms / 1000)
        try:
            box = LocalBox(self.slots, slot, program, runtime, speedups=self.speedups, cache=self.compile_cache)
            box.prepare()
            yield box
        finally:
            self.slots.release(slot)

    def run_interactive(self, program: Program, runtime: Runtime, spec: RunSpec,
                        session: InteractiveSession) -> ExecutionResult:
        """/api/v2/connect: compile as usual, then run with live stdin and streamed output."""
        with self.open(program, runtime) as box:
            assert isinstance(box, LocalBox)
            session.runtime(runtime.language, runtime.version)  # Piston: once the box is primed
            if box.compile is not None:
                # The compile ran in open() like any other; its output is sent in one piece.
                session.stage("compile")
                for stream in ("stdout", "stderr"):
                    session.output(stream, getattr(box.compile, stream).encode())
                session.exit("compile", box.compile)
            if not box.compiled_ok or session.cancelled.is_set():
                # Piston: no run stage after a failed compile (nor after the client left).
                return ExecutionResult(runtime.language, runtime.version, box.compile or StageResult(), box.compile)
            session.stage("run")
            run = box.run_live(spec, session)
            session.exit("run", run)
        return ExecutionResult(runtime.language, runtime.version, run, box.compile)

    def close(self) -> None:
        if self.slots is not None:
            self.slots.close()


class LocalBox(Box):
    def __init__(self, slots: SlotPool, slot: Slot, program: Program, runtime: Runtime,
                 *, speedups: Speedups = NO_SPEEDUPS, cache: CompileCache | None = None) -> None:
        self.slots = slots
        self.speedups = speedups if speedups.applies_to(runtime.language) else NO_SPEEDUPS
        self.cache = cache
        self.slot = slot
        self.program = program
        self.runtime = runtime
        self._stdin_seq = 0
        self._lock = threading.Lock()

    def prepare(self) -> None:
        for f in self.program.files:
            self._write(f.name, f.content)
        # Run limits are not known yet; commands only use the memory limit for JVM/V8 flags, set per run.
        limits = self.program.compile_limits
        commands = build_commands(self.runtime, self.program.files, limits, speedups=self.speedups)
        for old, new in commands.renames:
            os.replace(self.slot.box / old, self.slot.box / new)
        if commands.compile is None:
            return
        if self.cache is None:
            self.compile = self._compile(commands)
            return
        key = cache_key(self.runtime, commands.compile, commands.renames, self.program.files, limits)
        with self.cache.claim(key):
            self.compile = self.cache.get(key, self.slot.box, self.slot.uid)
            if self.compile is None:
                self.compile = self._compile(commands)
                self.cache.put(key, self.slot.box, self.compile)

    def _compile(self, commands: Commands) -> StageResult:
        """Compile; with precompiled state, a compile that says anything is redone without it.

        GCC's diagnostics through a precompiled header can differ from the plain ones (an
        include chain loses its last "from main.cpp:1" line), so whatever the submitter reads
        comes from the plain command. A silent success, the usual case, keeps the fast result.
        """
        assert commands.compile is not None
        limits = self.program.compile_limits
        stage = self._stage(list(commands.compile), "", limits)
        clean = stage.ok and not stage.stdout and not stage.stderr
        if self.speedups == NO_SPEEDUPS or clean or stage.status == Status.TIMEOUT:
            return stage
        self._reset_box(commands)
        plain = build_commands(self.runtime, self.program.files, limits)
        assert plain.compile is not None
        return self._stage(list(plain.compile), "", limits)

    def _reset_box(self, commands: Commands) -> None:
        """Remove what a compile added to the box: only the submitted files stay."""
        renamed = dict(commands.renames)
        keep = {renamed.get(f.name, f.name).split("/", 1)[0] for f in self.program.files}
        for entry in os.scandir(self.slot.box):
            if entry.name in keep:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)

    def run_many(self, specs: Sequence[RunSpec]) -> list[StageResult]:
        if not self.compiled_ok:
            return [self.compile for _ in specs]  # type: ignore[misc]
        if len(specs) == 1:
            return [self._run(self.slot, specs[0])]
        # Many cases: borrow slots that are free right now and run in parallel, each
        # on its own copy of the compiled box; never wait for more.
        extra = self.slots.try_acquire(len(specs) - 1)
        try:
            for helper in extra:
                _clone_box(self.slot, helper)
            pending: queue.SimpleQueue[int] = queue.SimpleQueue()
            for index in range(len(specs)):
                pending.put(index)
            results: list[StageResult | None] = [None] * len(specs)

            def drain(slot: Slot) -> None:
                while True:
                    try:
                        index = pending.get_nowait()
                    except queue.Empty:
                        return
                    results[index] = self._run(slot, specs[index])

            with ThreadPoolExecutor(max_workers=1 + len(extra)) as pool:
                for future in [pool.submit(drain, slot) for slot in (self.slot, *extra)]:
                    future.result()
        finally:
            for helper in extra:
                self.slots.release(helper)
        return [r for r in results if r is not None]

    def run_live(self, spec: RunSpec, session: InteractiveSession) -> StageResult:
        """One run whose stdin is fed by the session as the client sends it."""
        commands = build_commands(self.runtime, self.program.files, spec.limits)
        live = LiveStage(self.slot, session.output)
        session.attach(live)
        try:
            return self._stage([*commands.run, *spec.args], "", spec.limits, live=live)
        finally:
            session.detach()
            live.close()

    def _run(self, slot: Slot, spec: RunSpec) -> StageResult:
        commands = build_commands(self.runtime, self.program.files, spec.limits)
        return self._stage([*commands.run, *spec.args], spec.stdin, spec.limits, slot)

    def _write(self, name: str, content: bytes) -> None:
        path = self.slot.box / name
        if path.parent != self.slot.box:  # the box itself exists; skip a syscall per file
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if self.slot.uid is not None:
            for part in [path, *path.relative_to(self.slot.box).parents]:
                target = self.slot.box / part
                if target != self.slot.box:
                    os.chown(target, self.slot.uid, self.slot.uid)

    def _stdin_file(self, stdin: str, slot: Slot) -> str:
        with self._lock:
            self._stdin_seq += 1
            name = f"stdin-{self._stdin_seq}"
        path: Path = slot.io / name
        path.write_bytes(stdin.encode())
        if slot.uid is not None:
            os.chown(path, slot.uid, slot.uid)
        os.chmod(path, 0o400)
        return self._inside(path, slot)

    def _inside(self, path: Path, slot: Slot) -> str:
        """The path of a file of the slot's io directory as the sandboxed program sees it."""
        return f"{IO_INSIDE}/{path.relative_to(slot.io)}" if self.slots.plan.bwrap else str(path)

    def _stage(self, argv: list[str], stdin: str, limits: Limits, slot: Slot | None = None,
               live: LiveStage | None = None) -> StageResult:
        slot = slot or self.slot
        sandbox = self.slots.take_sandbox(slot)
        try:
            if slot.cgroup is not None:
                slot.cgroup.configure(limits.memory_bytes, limits.max_processes)
            stdin_path = self._inside(live.path, slot) if live else self._stdin_file(stdin, slot)
            sandbox.start(argv, stdin_path=stdin_path, rlimits=self._rlimits(limits, slot),
                          cpu_ms=limits.cpu_time_ms, wall_ms=limits.timeout_ms)
            if live:
                live.started(sandbox)
            outcome = sandbox.collect(timeout_ms=limits.timeout_ms, output_max_size=limits.output_max_size,
                                      on_output=live.output if live else None)
        finally:
            sandbox.destroy(finished=sandbox.finished)
            # The next stage (run after compile, or the next test case) finds its sandbox ready.
            self.slots.prewarm(slot)
        cgroup = slot.cgroup
        return to_stage(
            outcome, limits,
            peak_memory=cgroup.peak_memory() if cgroup else None,
            oom_killed=cgroup.oom_killed_since_configure() if cgroup else False,
        )

    def _rlimits(self, limits: Limits, slot: Slot) -> dict[str, tuple[int | str, int | str]]:
        # Without a cgroup, rlimits bound memory and processes (NPROC per slot uid).
        no_cgroup = slot.cgroup is None
        return runrules.rlimits(vars(limits), memory=no_cgroup,
                                nproc_others=BWRAP_PROCESSES if no_cgroup and slot.uid is not None else None)


def _clone_box(source: Slot, target: Slot) -> None:
    """Copy the compiled box into another slot's box, owned by that slot's uid."""
    shutil.copytree(source.box, target.box, symlinks=True, dirs_exist_ok=True)
    if target.uid is not None:
        for root, dirs, files in os.walk(target.box):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), target.uid, target.uid)

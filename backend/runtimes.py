"""The language registry: what each language needs, and lookup by name/alias + semver range.

``LANGUAGES`` says how to find, compile and run each language. Which of them exist,
and at which version, is found by each executor (the local machine is probed at
start; a session pool is probed once through the harness). Both render commands
with ``build_commands`` so a program runs the same way everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import nodesemver

from backend.models import Limits, SourceFile


@dataclass(frozen=True)
class LanguageSpec:
    language: str
    aliases: tuple[str, ...]
    # Piston's `runtime` field: set only when one toolchain provides several languages.
    provider: str | None
    # Binaries by role, each a list of absolute candidates; the first that exists wins.
    binaries: dict[str, tuple[str, ...]]
    # argv printing the version; {bin} placeholders are filled from `binaries`.
    version_cmd: tuple[str, ...]
    version_regex: str
    compiled: bool = False


def _b(*paths: str) -> tuple[str, ...]:
    return paths


LANGUAGES: tuple[LanguageSpec, ...] = (
    LanguageSpec(
        "python", ("py", "py3", "python3"), None,
        {"python": _b("/usr/bin/python3", "/usr/local/bin/python3")},
        ("{python}", "-c", "import platform; print(platform.python_version())"), r"(\d+\.\d+\.\d+)",
    ),
    LanguageSpec(
        "c", ("gcc",), "gcc",
        {"cc": _b("/usr/bin/gcc")},
        ("{cc}", "-dumpfullversion"), r"(\d+\.\d+\.\d+)", compiled=True,
    ),
    LanguageSpec(
        "c++", ("cpp", "g++"), "gcc",
        {"cxx": _b("/usr/bin/g++")},
        ("{cxx}", "-dumpfullversion"), r"(\d+\.\d+\.\d+)", compiled=True,
    ),
    LanguageSpec(
        "java", (), None,
        {"javac": _b("/usr/bin/javac"), "java": _b("/usr/bin/java")},
        ("{javac}", "-version"), r"(\d+\.\d+\.\d+)", compiled=True,
    ),
    LanguageSpec(
        "javascript", ("node-javascript", "node-js", "js"), "node",
        {"node": _b("/usr/bin/node", "/usr/local/bin/node")},
        ("{node}", "--version"), r"v(\d+\.\d+\.\d+)",
    ),
    LanguageSpec(
        "bash", ("sh",), None,
        {"bash": _b("/usr/bin/bash", "/bin/bash")},
        ("{bash}", "-c", "echo ${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}"),
        r"(\d+\.\d+\.\d+)",
    ),
    LanguageSpec(
        "ruby", ("ruby3", "rb"), None,
        {"ruby": _b("/usr/bin/ruby")},
        ("{ruby}", "-e", "print RUBY_VERSION"), r"(\d+\.\d+\.\d+)",
    ),
    LanguageSpec(
        "php", (), None,
        {"php": _b("/usr/bin/php")},
        ("{php}", "-r", "echo PHP_VERSION;"), r"(\d+\.\d+\.\d+)",
    ),
    LanguageSpec(
        "perl", ("pl",), None,
        {"perl": _b("/usr/bin/perl")},
        ("{perl}", "-e", "print substr($^V, 1)"), r"(\d+\.\d+\.\d+)",
    ),
    LanguageSpec(
        "go", ("go", "golang"), None,
        {"go": _b("/usr/lib/go/bin/go", "/usr/bin/go", "/usr/local/go/bin/go")},
        ("{go}", "env", "GOVERSION"), r"go(\d+\.\d+(?:\.\d+)?)", compiled=True,
    ),
)

SPECS: dict[str, LanguageSpec] = {spec.language: spec for spec in LANGUAGES}


@dataclass(frozen=True)
class Runtime:
    """One usable language at one version, with the binaries it resolved to."""

    language: str
    version: str
    aliases: tuple[str, ...]
    provider: str | None
    compiled: bool
    binaries: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "language": self.language,
            "version": self.version,
            "aliases": list(self.aliases),
        }
        if self.provider:
            body["runtime"] = self.provider
        return body


def normalize_version(raw: str) -> str:
    """Make a toolchain version semver-valid ("1.19" -> "1.19.0")."""
    parts = raw.split(".")
    while len(parts) < 3:
        parts.append("0")
    return ".".join(parts[:3])



def probed_runtime(spec: LanguageSpec, probe: dict) -> Runtime | None:
    """The runtime a toolchain probe found (``backend/runrules.probe_toolchain``; the session
    harness answers the same fields), or None: no binary, or no version in the command's output."""
    binaries = probe.get("binaries")
    match = re.search(spec.version_regex, probe.get("output") or "")
    if not binaries or probe.get("returncode") != 0 or match is None:
        return None
    return Runtime(
        language=spec.language, version=normalize_version(match.group(1)), aliases=spec.aliases,
        provider=spec.provider, compiled=spec.compiled, binaries=dict(binaries),
    )

class RuntimeRegistry:
    """Lookup in Piston's way: exact, case-sensitive name or alias; highest version matching the range."""

    def __init__(self, runtimes: Iterable[Runtime]) -> None:
        self._runtimes = list(runtimes)

    def __iter__(self):
        return iter(self._runtimes)

    def __len__(self) -> int:
        return len(self._runtimes)

    def find(self, language: str, version_range: str) -> Runtime | None:
        candidates = [
            rt for rt in self._runtimes
            if (rt.language == language or language in rt.aliases) and _satisfies(rt.version, version_range)
        ]
        if not candidates:
            return None
        best = nodesemver.max_satisfying([rt.version for rt in candidates], "*", loose=False)
        return next(rt for rt in candidates if rt.version == best)

    def to_json(self) -> list[dict[str, object]]:
        return [rt.to_json() for rt in self._runtimes]


def _satisfies(version: str, version_range: str) -> bool:
    try:
        return bool(nodesemver.satisfies(version, version_range, loose=False))
    except (ValueError, TypeError):
        return False


# ---------------------------------------------------------------- commands

@dataclass(frozen=True)
class Commands:
    """argv of the compile step (or None) and of the run step; `args` are appended to `run`."""

    compile: tuple[str, ...] | None
    run: tuple[str, ...]
    # Files to rename before compiling (Java needs File.java to match its public class).
    renames: tuple[tuple[str, str], ...] = ()


# The c++ runtime's language and optimisation flags, and the JVM flags javac runs with: the
# compile commands and what backend/executors/local/precompiled.py builds for them use exactly these.
CXX_FLAGS = ("-std=gnu++17", "-O2")
JAVAC_JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


@dataclass(frozen=True)
class Speedups:
    """Precompiled state a compile may load; none of it changes what the compile produces."""

    cxx_include_dirs: tuple[str, ...] = ()  # precompiled headers, first on the include path
    javac_archive: str | None = None  # a class-data-sharing archive of javac's own classes

    def applies_to(self, language: str) -> bool:
        return (language == "c++" and bool(self.cxx_include_dirs)) or (language == "java" and bool(self.javac_archive))


NO_SPEEDUPS = Speedups()

_JAVA_PUBLIC_CLASS = re.compile(r"public\s+(?:final\s+|abstract\s+)*class\s+([A-Za-z_$][\w$]*)")
_JAVA_MAIN_CLASS = re.compile(
    r"class\s+([A-Za-z_$][\w$]*)[^{]*\{(?:(?!\bclass\b).)*?static\s+void\s+main\s*\(", re.S
)


def _java_main_class(source: str, fallback: str) -> str:
    match = _JAVA_MAIN_CLASS.search(source)
    return match.group(1) if match else fallback


def build_commands(runtime: Runtime, files: Sequence[SourceFile], limits: Limits,
                   *, speedups: Speedups = NO_SPEEDUPS) -> Commands:
    """Render the commands for ``files`` (the first is the main file) under ``limits``."""
    b = runtime.binaries
    main = files[0].name
    sources = [f.name for f in files if f.is_source]
    lang = runtime.language
    if lang == "python":
        # -E -s: ignore PYTHON* variables and the user site; not -I, which would drop the
        # script's directory from sys.path and break multi-file submissions.
        return Commands(None, (b["python"], "-E", "-s", main))
    if lang == "c":
        return Commands(
            # -x c: sources may carry Piston's default names (file0.code).
            (b["cc"], "-std=gnu17", "-O2", "-pipe", "-o", "a.out", "-x", "c",
             *[s for s in sources if not s.endswith(".h")], "-x", "none", "-lm"),
            ("./a.out",),
        )
    if lang == "c++":
        includes = [arg for d in speedups.cxx_include_dirs for arg in ("-I", d)]
        return Commands(
            (b["cxx"], *CXX_FLAGS, "-pipe", *includes, "-o", "a.out", "-x", "c++",
             *[s for s in sources if not s.endswith((".h", ".hpp"))]),
            ("./a.out",),
        )
    if lang == "java":
        return _java_commands(runtime, files, limits, speedups.javac_archive)
    if lang == "javascript":
        flags: list[str] = []
        if limits.memory_bytes > 0:
            flags.append(f"--max-old-space-size={max(16, limits.memory_bytes * 3 // 4 // 2**20)}")
        return Commands(None, (b["node"], *flags, main))
    if lang == "bash":
        return Commands(None, (b["bash"], main))
    if lang == "ruby":
        return Commands(None, (b["ruby"], main))
    if lang == "php":
        return Commands(None, (b["php"], main))
    if lang == "perl":
        return Commands(None, (b["perl"], main))
    if lang == "go":
        go_files = [s for s in sources if s.endswith(".go")] or [main]
        return Commands((b["go"], "build", "-o", "a.out", *go_files), ("./a.out",))
    raise ValueError(f"no commands for {lang}")


def _java_commands(runtime: Runtime, files: Sequence[SourceFile], limits: Limits,
                   javac_archive: str | None) -> Commands:
    b = runtime.binaries
    renames: list[tuple[str, str]] = []
    sources: list[str] = []
    main_class = ""
    for index, f in enumerate(files):
        if not f.is_source:
            continue
        text = f.content.decode("utf-8", "replace")
        name = f.name
        public = _JAVA_PUBLIC_CLASS.search(text)
        if public and "/" not in name and name != f"{public.group(1)}.java":
            renamed = f"{public.group(1)}.java"
            renames.append((name, renamed))
            name = renamed
        elif not name.endswith(".java"):
            renamed = name.rsplit(".", 1)[0] + ".java" if "." in name else name + ".java"
            renames.append((name, renamed))
            name = renamed
        sources.append(name)
        if index == 0:
            main_class = _java_main_class(text, name.rsplit("/", 1)[-1][: -len(".java")])
    flags = ["-XX:+UseSerialGC", "-Xss64m"]
    if limits.memory_bytes > 0:
        flags.append(f"-Xmx{max(16, limits.memory_bytes * 3 // 4 // 2**20)}m")
    jvm = [*JAVAC_JVM_FLAGS, *([f"-XX:SharedArchiveFile={javac_archive}"] if javac_archive else [])]
    return Commands(
        (b["javac"], *[f"-J{flag}" for flag in jvm], "-encoding", "UTF-8", "-d", ".", *sources),
        (b["java"], *flags, "-cp", ".", main_class),
        tuple(renames),
    )

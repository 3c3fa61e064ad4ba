"""The README's layout tables match the tree: every top-level entry and every file under backend/
is named with its job, and every path they name exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BACKEND_HEADER = "| `backend/` module | its one job |"
TOP_HEADER = "| path | what it holds |"


def _table(header: str) -> list[str]:
    """The backticked names in the first column of the README table that starts with ``header``."""
    lines = (REPO / "README.md").read_text().splitlines()
    assert header in lines, f"README.md has no table starting {header!r}"
    rows = []
    for line in lines[lines.index(header) + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1])
    return [name for row in rows for name in re.findall(r"`([^`]+)`", row)]


def _tracked() -> list[str]:
    """The repository's tracked files (what CI checks out), without ones deleted in the work tree."""
    out = subprocess.run(["git", "ls-files", "--cached"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return [path for path in out.splitlines() if (REPO / path).exists()]


def _top_level(path: str) -> str:
    head, _, rest = path.partition("/")
    return f"{head}/" if rest else head


def test_every_top_level_entry_is_in_the_layout_table() -> None:
    named = {name.split("/")[0] + ("/" if "/" in name else "") for name in _table(TOP_HEADER)}
    entries = {_top_level(path) for path in _tracked()}
    missing = sorted(entries - named)
    assert not missing, f"README.md's layout table lacks {missing}"
    stale = sorted(name for name in named if not (REPO / name).exists())
    assert not stale, f"README.md's layout table names {stale}, which do not exist"


def test_every_backend_file_is_in_the_module_table() -> None:
    named = set(_table(BACKEND_HEADER))
    files = {path.removeprefix("backend/") for path in _tracked() if path.startswith("backend/")}
    missing = sorted(files - named)
    assert not missing, f"README.md's backend/ table lacks {missing}"
    stale = sorted(name for name in named if not (REPO / "backend" / name).exists())
    assert not stale, f"README.md's backend/ table names {stale}, which do not exist under backend/"

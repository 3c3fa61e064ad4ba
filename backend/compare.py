"""Output matching (the "match" step of a verdict). Standard library only: the session-pool harness embeds this file.

Modes:
- exact: byte-for-byte equal.
- lines (default, Judge0's rule): trailing whitespace of each line and trailing newlines ignored.
- tokens: equal sequences of whitespace-separated tokens.
- float: tokens equal, except that numeric tokens match within an absolute or relative tolerance.
"""

from __future__ import annotations

import math

MODES = ("exact", "lines", "tokens", "float")


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def _number(token: str) -> float | None:
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _float_equal(got: str, want: str, abs_tol: float, rel_tol: float) -> bool:
    if got == want:
        return True
    a, b = _number(got), _number(want)
    if a is None or b is None:
        return False
    return abs(a - b) <= max(abs_tol, rel_tol * abs(b))


def outputs_match(got: str, want: str, mode: str = "lines", *, abs_tol: float = 1e-6, rel_tol: float = 1e-6) -> bool:
    if mode == "exact":
        return got == want
    if mode == "lines":
        return _lines(got) == _lines(want)
    got_tokens, want_tokens = got.split(), want.split()
    if len(got_tokens) != len(want_tokens):
        return False
    if mode == "tokens":
        return got_tokens == want_tokens
    if mode == "float":
        return all(_float_equal(g, w, abs_tol, rel_tol) for g, w in zip(got_tokens, want_tokens, strict=True))
    raise ValueError(f"unknown comparison mode {mode!r}")

"""Turning Jupyter iopub messages into the service's stdout/stderr/result fields (pure functions)."""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_LITERAL_MAX_CHARS = 100_000  # literal_eval on huge reprs is slow; such results stay text
_NOT_JSON = object()


def strip_ansi(text: str) -> str:
    """IPython colours tracebacks; the service returns plain text."""
    return _ANSI.sub("", text)


def result_value(data: Mapping[str, Any]) -> Any:
    """The ``executionResult``/``result`` value for an ``execute_result``/``display_data`` bundle.

    Guess: the docs only show that the value is JSON-typed (``"executionResult": 4``) and that images come
    back as ``{"type": "image", "format": "png", "base64_data": ...}`` [SDK langchain/llama-index]. So:
    images first, then an ``application/json`` bundle, then the ``text/plain`` repr parsed as a Python
    literal when that gives a JSON value (ints, strings, lists, dicts...), else the repr text itself.
    """
    for mime, fmt in (("image/png", "png"), ("image/jpeg", "jpeg")):
        if mime in data:
            return {"type": "image", "format": fmt, "base64_data": data[mime]}
    if "application/json" in data:
        return data["application/json"]
    text = data.get("text/plain", "")
    if not isinstance(text, str):
        return ""
    return literal_or_text(text)


def literal_or_text(text: str) -> Any:
    if len(text) > _LITERAL_MAX_CHARS:
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    converted = _to_json(value, 0)
    return text if converted is _NOT_JSON else converted


def _to_json(value: Any, depth: int) -> Any:
    if depth > 50:
        return _NOT_JSON
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NOT_JSON
    if isinstance(value, list | tuple):
        items = [_to_json(v, depth + 1) for v in value]
        return _NOT_JSON if any(i is _NOT_JSON for i in items) else items
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            converted = _to_json(item, depth + 1)
            if not isinstance(key, str) or converted is _NOT_JSON:
                return _NOT_JSON
            out[key] = converted
        return out
    return _NOT_JSON


def truncate(text: str, limit: int) -> str:
    """Guess: the service keeps the head of each stream (nothing documents head vs tail, or a marker)."""
    return text[:limit]


@dataclass
class OutputCollector:
    """Accumulates one execution's output, never holding more than ``limit`` chars per stream."""

    limit: int
    _stdout: list[str] = field(default_factory=list)
    _stderr: list[str] = field(default_factory=list)
    _sizes: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    result: Any = None  # no execute_result (or a figure) seen
    error_name: str | None = None

    def _append(self, stream: str, text: str) -> None:
        room = self.limit - self._sizes[stream]
        if room <= 0 or not text:
            return
        chunk = text[:room]
        (self._stdout if stream == "stdout" else self._stderr).append(chunk)
        self._sizes[stream] += len(chunk)

    def feed(self, msg_type: str, content: Mapping[str, Any]) -> None:
        if msg_type == "stream":
            name = "stderr" if content.get("name") == "stderr" else "stdout"
            self._append(name, str(content.get("text", "")))
        elif msg_type == "execute_result":
            self.result = result_value(content.get("data", {}))
        elif msg_type == "display_data":
            # Only figures become the result (plt.show() in a PythonLTS session); other displays are dropped.
            data = content.get("data", {})
            if self.result is None and ("image/png" in data or "image/jpeg" in data):
                self.result = result_value(data)
        elif msg_type == "error":
            self.error_name = str(content.get("ename", "Error"))
            traceback = "\n".join(str(line) for line in content.get("traceback", []))
            if not traceback:
                traceback = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"
            self._append("stderr", strip_ansi(traceback).rstrip("\n") + "\n")

    def add_stderr(self, text: str) -> None:
        self._append("stderr", text)

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

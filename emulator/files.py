"""A session's data directory (``/mnt/data`` in the real service) as seen through the files API."""

from __future__ import annotations

import mimetypes
import os
import uuid
from pathlib import Path
from typing import Any

from werkzeug.datastructures import FileStorage

from .errors import bad_request, not_found
from .sessions import iso

# [DOC sessions-code-interpreter.md]: names may use A-Z a-z 0-9 - _ space . @ $ & = ; , # % ^ ( ) and
# Unicode letters ("Paths can't contain ." is read as: no "." or ".." segments).
_ALLOWED_PUNCTUATION = frozenset("-_ .@$&=;,#%^()")
_MNT_DATA = "/mnt/data/"


def check_name(name: str) -> str:
    if not name or len(name) > 255 or name in (".", ".."):
        raise bad_request("InvalidFileName", f"The file name '{name}' is not valid.")
    bad = [ch for ch in name if not (ch.isalnum() or ch in _ALLOWED_PUNCTUATION)]
    if bad:
        raise bad_request(
            "InvalidFileName",
            f"The file name '{name}' contains characters that are not allowed: {''.join(sorted(set(bad)))!r}.",
        )
    return name


def resolve_dir(data_dir: Path, path: str | None) -> Path:
    """The directory named by the ``path`` query parameter (relative to the data dir; "" = the root)."""
    rel = (path or "").strip()
    if rel.startswith(_MNT_DATA) or rel == _MNT_DATA.rstrip("/"):
        rel = rel[len(_MNT_DATA) :]  # Guess: clients may pass the absolute in-session path
    parts = [p for p in rel.strip("/").split("/") if p]
    for part in parts:
        check_name(part)
    return data_dir.joinpath(*parts)


def resolve_file(data_dir: Path, name: str, path: str | None = None) -> Path:
    if name.startswith(_MNT_DATA):
        name = name[len(_MNT_DATA) :]
    return resolve_dir(data_dir, path) / check_name(name)


def existing_file(data_dir: Path, name: str, path: str | None = None) -> Path:
    target = resolve_file(data_dir, name, path)
    if not target.is_file():
        raise not_found("FileNotFound", f"The file '{name}' was not found in the session.")
    return target


def _modified(path: Path) -> str:
    return iso(path.stat().st_mtime)


def file_entry(path: Path, data_dir: Path) -> dict[str, Any]:
    """SessionResourceFile [SPEC]; ``directory`` (2025-10-02-preview) is always included: harmless extra."""
    directory = path.parent.relative_to(data_dir).as_posix()
    entry: dict[str, Any] = {"name": path.name, "directory": "" if directory == "." else directory}
    if path.is_dir():
        entry.update(type="Directory", lastModifiedAt=_modified(path))
    else:
        entry.update(
            type="File",
            contentType=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            sizeInBytes=path.stat().st_size,
            lastModifiedAt=_modified(path),
        )
    return entry


def list_entries(data_dir: Path, path: str | None, recursive: bool) -> list[dict[str, Any]]:
    root = resolve_dir(data_dir, path)
    if not root.is_dir():
        raise not_found("DirectoryNotFound", f"The directory '{path}' was not found in the session.")
    found = sorted(root.rglob("*") if recursive else root.iterdir())
    return [file_entry(p, data_dir) for p in found if not p.is_symlink() or p.exists()]


def legacy_envelope(paths: list[Path]) -> dict[str, Any]:
    """The 2024-02-02-preview list/upload shape, with its "$id" counters [DOC sessions-code-interpreter.md]."""
    counter = 1
    value = []
    for path in paths:
        value.append(
            {
                "$id": str(counter + 1),
                "properties": {
                    "$id": str(counter + 2),
                    "filename": path.name,
                    "size": path.stat().st_size,
                    "lastModifiedTime": _modified(path),
                },
            }
        )
        counter += 2
    return {"$id": "1", "value": value}


def legacy_list(data_dir: Path) -> dict[str, Any]:
    # Guess: the legacy list shows the files at the top of /mnt/data only (it has no path parameter).
    return legacy_envelope(sorted(p for p in data_dir.iterdir() if p.is_file()))


def save_upload(storage: FileStorage, data_dir: Path, path: str | None, owner: int | None = None) -> Path:
    """Store an upload; ``owner`` (the session's uid) gets the file and any directory made for it.

    Guess: uploads are the session user's to change or delete, as the kernel's own files are.
    """
    if not storage.filename:
        raise bad_request("InvalidFileName", "The multipart part 'file' must carry a filename.")
    target = resolve_file(data_dir, storage.filename, path)
    missing = [p for p in [target.parent, *target.parent.parents] if not p.exists() and data_dir in p.parents]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".upload-{uuid.uuid4().hex}")
    try:
        storage.save(tmp)
        if owner is not None and owner != os.geteuid():
            for created in (tmp, *missing):
                os.chown(created, owner, owner)
        os.replace(tmp, target)  # an upload overwrites a file of the same name (Guess)
    finally:
        tmp.unlink(missing_ok=True)
    return target

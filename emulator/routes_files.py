"""Data plane: the files API of both generations, over the session's data directory.

Legacy [DOC sessions-code-interpreter.md]: ``POST /files/upload`` (multipart ``file``), ``GET /files``,
``GET /files/content/{name}``. New [SPEC]: ``GET|POST /files``, ``GET|DELETE /files/{name}``,
``GET /files/{name}/content``; ``path`` selects a sub-directory, ``recursive`` (2025-10-02-preview) lists
the whole tree. ``GET /files`` serves both generations, so its answer's shape follows the api-version.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, send_file

from . import files
from .checks import DATAPLANE_PREFIX, check_pool, get_emulator, is_legacy, leased, operation, prologue, session_headers
from .errors import bad_request
from .sessions import Session

bp = Blueprint("files", __name__, url_prefix=DATAPLANE_PREFIX)
bp.url_value_preprocessor(check_pool)


def _owner(session: Session) -> int | None:
    return session.box.uid if session.box is not None else None


def _uploads() -> list:
    parts = request.files.getlist("file")
    if not parts:
        raise bad_request("InvalidRequestBody", "The request must be multipart/form-data with a part named 'file'.")
    return parts


@bp.post("/files/upload")
@operation("files")
def legacy_upload() -> Response:
    emu = get_emulator()
    _, ident = prologue(emu)
    parts = _uploads()
    with leased(emu, ident) as session:
        assert session.data_dir is not None
        saved = [files.save_upload(part, session.data_dir, None, _owner(session)) for part in parts]
        response = jsonify(files.legacy_envelope(saved))
        response.headers.update(session_headers(session))
    return response


@bp.get("/files")
@operation("files")
def list_files() -> Response:
    emu = get_emulator()
    version, ident = prologue(emu)
    recursive = request.args.get("recursive", "false").lower() == "true"
    with leased(emu, ident) as session:
        assert session.data_dir is not None
        if is_legacy(version):
            body = files.legacy_list(session.data_dir)
        else:
            body = {
                "value": files.list_entries(session.data_dir, request.args.get("path"), recursive),
                "nextLink": None,
            }
        response = jsonify(body)
        response.headers.update(session_headers(session))
    return response


@bp.post("/files")
@operation("files")
def upload() -> Response:
    emu = get_emulator()
    _, ident = prologue(emu)
    parts = _uploads()
    with leased(emu, ident) as session:
        assert session.data_dir is not None
        saved = [files.save_upload(part, session.data_dir, request.args.get("path"), _owner(session)) for part in parts]
        # Guess: one SessionResourceFile comes back [SPEC example]; with several parts, the first.
        response = jsonify(files.file_entry(saved[0], session.data_dir))
        response.headers.update(session_headers(session))
    return response


@bp.get("/files/content/<name>")
@operation("files")
def legacy_download(name: str) -> Response:
    return _download(name)


@bp.get("/files/<name>/content")
@operation("files")
def download(name: str) -> Response:
    return _download(name)


def _download(name: str) -> Response:
    emu = get_emulator()
    _, ident = prologue(emu)
    with leased(emu, ident) as session:
        assert session.data_dir is not None
        target = files.existing_file(session.data_dir, name, request.args.get("path"))
        # send_file opens the file now, so a later reap of the session cannot break the transfer.
        response = send_file(target, mimetype="application/octet-stream", conditional=False, etag=False, max_age=0)
        response.headers.update(session_headers(session))
    return response


@bp.get("/files/<name>")
@operation("files")
def file_metadata(name: str) -> Response:
    emu = get_emulator()
    _, ident = prologue(emu)
    with leased(emu, ident) as session:
        assert session.data_dir is not None
        target = files.existing_file(session.data_dir, name, request.args.get("path"))
        response = jsonify(files.file_entry(target, session.data_dir))
        response.headers.update(session_headers(session))
    return response


@bp.delete("/files/<name>")
@operation("files")
def delete_file(name: str) -> Response:
    emu = get_emulator()
    _, ident = prologue(emu)
    with leased(emu, ident) as session:
        assert session.data_dir is not None
        files.existing_file(session.data_dir, name, request.args.get("path")).unlink()
        response = Response(status=204)
        response.headers.update(session_headers(session))
    return response

"""Code execution requests: parse either body shape, run on a session, serialise either generation."""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from dataclasses import dataclass
from typing import Any

from .errors import EmulatorError, bad_request
from .kernel import ExecOutcome
from .sessions import Session, SessionRegistry
from .settings import DEFAULT_OUTPUT_MAX_LENGTH, BodyShape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecuteRequest:
    code: str
    asynchronous: bool
    timeout_s: float
    output_limit: int


def _invalid(message: str) -> EmulatorError:
    # "SessionRequestValidationFailed" is the code seen live for bad requests [3P test fixture].
    return bad_request("SessionRequestValidationFailed", message)


def parse_execute_body(body: Any, shape: BodyShape, *, max_execution_s: int) -> ExecuteRequest:
    """Validate an execute body. ``shape`` says which form the route accepts (see --executions-body).

    The wrong shape gets 400 ``SessionPropertiesMissing``, as users report from the real service
    (flat body on a pool that wants ``properties``, and the reverse) [3P, research note 1.4].
    """
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    wrapped = isinstance(body.get("properties"), dict)
    if shape == "wrapped" and not wrapped:
        raise bad_request("SessionPropertiesMissing", "properties is required but not provided.")
    if shape == "flat" and "code" not in body:
        # Message as reported for a wrapped body sent to a flat-only /executions [3P].
        raise bad_request("SessionPropertiesMissing", "code is required but not provided.")
    fields: dict[str, Any] = body["properties"] if wrapped and shape != "flat" else body
    code = fields.get("code")
    if code is None:
        raise bad_request("SessionPropertiesMissing", "code is required but not provided.")
    if not isinstance(code, str):
        raise _invalid("code must be a string.")

    # Enums are modelAsString and clients send lowercase values that work [SPEC; 3P runs].
    input_type = str(fields.get("codeInputType") or "Inline").lower()
    if input_type == "inlinebase64":
        try:
            code = base64.b64decode(code, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _invalid("code is not valid base64-encoded UTF-8 (codeInputType InlineBase64).") from None
    elif input_type not in ("inline", "inlinetext"):
        raise _invalid("codeInputType must be one of Inline, InlineBase64, InlineText.")

    execution_type = str(fields.get("executionType") or "Synchronous").lower()
    if execution_type not in ("synchronous", "asynchronous"):
        raise _invalid("executionType must be Synchronous or Asynchronous.")

    # Guess: the swagger marks timeoutInSeconds required but live pools accept it missing [3P]; then the
    # 220 s cap applies. Larger values are accepted and silently capped.
    timeout = fields.get("timeoutInSeconds")
    if timeout is None:
        timeout_s = float(max_execution_s)
    elif isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise _invalid("timeoutInSeconds must be a positive integer.")
    else:
        timeout_s = float(min(timeout, max_execution_s))

    limit = fields.get("outputStreamsMaxLength")
    if limit is None:
        limit = DEFAULT_OUTPUT_MAX_LENGTH
    elif isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise _invalid("outputStreamsMaxLength must be a positive integer.")
    return ExecuteRequest(code, execution_type == "asynchronous", timeout_s, limit)


@dataclass
class ExecutionRecord:
    id: str
    identifier: str
    asynchronous: bool
    status: str = "NotStarted"  # Azure.Core OperationState: NotStarted|Running|Succeeded|Failed|Canceled
    outcome: ExecOutcome | None = None
    timeout_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The 2024-10-02-preview+ SessionCodeExecutionResource [SPEC]."""
        body: dict[str, Any] = {
            "id": self.id,
            "identifier": self.identifier,
            "executionType": "Asynchronous" if self.asynchronous else "Synchronous",
            "status": self.status,
        }
        outcome = self.outcome
        if outcome is not None:
            body["result"] = {
                "stdout": outcome.stdout,
                "stderr": outcome.stderr,
                # No value (a statement, or an expression that is None) is null [SPEC example
                # CodeExecution_Execute_Result_None, 2025-10-02-preview].
                "executionResult": outcome.result,
                "executionTimeInMilliseconds": outcome.duration_ms,
            }
            # Guess: user exceptions carry no "error" (clients read result.stderr [3P]); a timeout does,
            # since it is the service, not the code, that failed the execution. The swagger types the field
            # as an ErrorResponse, so the code and message sit under "error" twice [SPEC].
            if outcome.timed_out:
                body["error"] = {
                    "error": {
                        "code": "ExecutionTimedOut",
                        "message": f"The execution exceeded the {self.timeout_s:g} second timeout.",
                    }
                }
        return body

    def to_legacy_json(self) -> dict[str, Any]:
        """The 2024-02-02-preview /code/execute response, "$id" bookkeeping included [SDK langchain tests]."""
        outcome = self.outcome
        assert outcome is not None
        return {
            "$id": "1",
            "properties": {
                "$id": "2",
                # Guess: "Failure" comes from the 2024-09-01 draft enum Success|Failure; no live capture seen.
                "status": "Success" if outcome.succeeded else "Failure",
                "stdout": outcome.stdout,
                "stderr": outcome.stderr,
                "result": "" if outcome.result is None else outcome.result,  # Guess: legacy keeps ""
                "executionTimeInMilliseconds": outcome.duration_ms,
            },
        }


def run_execution(registry: SessionRegistry, session: Session, record: ExecutionRecord, req: ExecuteRequest) -> None:
    """Run one execution; executions of one session are serialised by its lock."""
    record.timeout_s = req.timeout_s
    with session.exec_lock:
        kernel = session.kernel
        if session.closed or kernel is None:
            record.outcome = ExecOutcome(False, "", "The session was deleted.\n", None, 0, kernel_lost=True)
            record.status = "Failed"
            return
        record.status = "Running"
        outcome = kernel.execute(req.code, timeout_s=req.timeout_s, output_limit=req.output_limit)
        if outcome.kernel_lost and not session.closed:
            # Guess: like a container restart, the session keeps its files but loses its Python state.
            try:
                registry.replace_kernel(session)
            except Exception:
                log.exception("could not restart the kernel of session %s", session.identifier)
        session.execution_count += 1
        record.outcome = outcome
        record.status = "Succeeded" if outcome.succeeded else "Failed"


def run_in_background(registry: SessionRegistry, session: Session, record: ExecutionRecord, req: ExecuteRequest) -> None:
    """Asynchronous execution. The caller's lease on ``session`` is handed over and released here."""

    def work() -> None:
        try:
            run_execution(registry, session, record, req)
        except Exception:
            log.exception("asynchronous execution %s failed", record.id)
            record.status = "Failed"
        finally:
            registry.release(session)

    threading.Thread(target=work, name=f"exec-{record.id[:8]}", daemon=True).start()

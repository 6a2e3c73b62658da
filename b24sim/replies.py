"""HTTP reply helpers: JSON bodies, error bodies (no ``time`` block in them), the ``time`` block."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import lookup
from .faults import FaultAction


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    drop: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # the error code of an error body, for the call log
    #: seconds between two bytes of the body (0: all at once): a hostile portal's drip
    drip_s: float = 0.0

    @property
    def outcome(self) -> str:
        """ "success", an error code, "redirect_<status>", "drop" or "http_<status>"."""
        if self.drop:
            return "drop"
        if self.error:
            return self.error
        if 300 <= self.status < 400:
            return f"redirect_{self.status}"
        return "success" if self.status == 200 else f"http_{self.status}"


def json_reply(status: int, data: Any) -> Reply:
    return Reply(status, json.dumps(data, ensure_ascii=False).encode("utf-8"))


def error_reply(
    code: str,
    description: str | None = None,
    status: int | None = None,
    oauth: bool = False,
) -> Reply:
    """``{"error", "error_description"}`` with the code's status: the rest module's outputError."""
    st, desc = lookup(code, oauth=oauth)
    reply = json_reply(status or st, {"error": code, "error_description": description or desc})
    reply.error = code
    return reply


def success_reply(result: Any, t0: float, operating: float, reset_at: float) -> Reply:
    return json_reply(200, {"result": result, "time": time_block(t0, operating, reset_at)})


def redirect_reply(status: int, location: str) -> Reply:
    return Reply(status, b"", "text/html; charset=utf-8", headers={"Location": location})


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def time_block(t0: float, operating: float, reset_at: float) -> dict[str, Any]:
    t1 = time.time()
    return {
        "start": t0,
        "finish": t1,
        "duration": t1 - t0,
        "processing": t1 - t0,
        "date_start": _iso(t0),
        "date_finish": _iso(t1),
        "operating_reset_at": reset_at,
        "operating": operating,
    }


def fault_reply(action: FaultAction, oauth: bool) -> Reply | None:
    if action.latency_s > 0:
        time.sleep(action.latency_s)
    if action.kind == "drop":
        return Reply(0, drop=True)
    if action.kind == "non_json":
        return Reply(action.status, action.body.encode("utf-8"), "text/html; charset=utf-8")
    if action.kind == "error":
        return error_reply(action.error, action.description, action.status, oauth=oauth)
    if action.kind == "success_false":
        reply = success_reply({"SUCCESS": False, "DATA": []}, time.time(), 0.0, time.time())
        reply.error = "SUCCESS_FALSE"
        return reply
    return None


@dataclass
class MethodResult:
    """One method execution: ``result`` on success, else ``error`` (never a ``time`` block)."""

    status: int
    result: Any = None
    error: str | None = None
    description: str = ""
    time: dict[str, Any] = field(default_factory=dict)

    def reply(self) -> Reply:
        if self.error is None:
            return json_reply(self.status, {"result": self.result, "time": self.time})
        return error_reply(self.error, self.description or None, self.status)


def method_error(code: str, description: str | None = None) -> MethodResult:
    status, desc = lookup(code)
    return MethodResult(status, error=code, description=description or desc)

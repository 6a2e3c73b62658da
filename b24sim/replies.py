"""HTTP reply helpers: JSON bodies, error bodies, the ``time`` block."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
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


def json_reply(status: int, data: Any) -> Reply:
    return Reply(status, json.dumps(data, ensure_ascii=False).encode("utf-8"))


def error_reply(
    code: str,
    description: str | None = None,
    status: int | None = None,
    oauth: bool = False,
    extra: dict[str, Any] | None = None,
) -> Reply:
    st, desc = lookup(code, oauth=oauth)
    body: dict[str, Any] = {"error": code, "error_description": description or desc}
    if extra:
        body.update(extra)
    return json_reply(status or st, body)


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
    return None

"""The `batch` call: up to 50 groups of one portal in one request, one slot of its budget.

    POST {client_endpoint}batch
    {"halt": 0,
     "cmd": {"g0": "imconnector.send.status.delivery?CONNECTOR=...&LINE=...&MESSAGES%5B0%5D...",
             ...},
     "auth": access_token}

Each command is the method name, `?`, and its parameters as a query string with nested arrays
spelled the way PHP (and the official SDKs, which feed PHP) spell them:
`MESSAGES[0][im][chat_id]=323`, keys and values percent-encoded. The answer (HTTP 200) carries
each command's own answer in `result.result[name]` or `result.result_error[name]`; anything
else fails the request as a whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from worker.errors import PortalError
from worker.flush.call import METHOD, Timeouts, _error_from, _json, _request
from worker.flush.policy import BATCH_ONLY, Outcome, canonical, classify_command
from worker.settings import check_endpoint

BATCH = "batch"
#: a command answered with one of these: this method may not run inside `batch` on this portal
#: (the policy's `BATCH_ONLY` rows; worker/flush/policy.py says why each)
NOT_PACKABLE = frozenset(c for c, o in BATCH_ONLY.items() if o is Outcome.NOT_PACKABLE)


def _scalar(value: Any) -> str:
    if value is True:
        return "1"
    if value is False:
        return "0"
    return str(value)


def _pairs(prefix: str, value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []  # PHP's http_build_query leaves nulls out
    if isinstance(value, Mapping):
        items: list[tuple[Any, Any]] = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    else:
        return [(prefix, _scalar(value))]
    out: list[tuple[str, str]] = []
    for key, item in items:
        out += _pairs(f"{prefix}[{key}]", item)
    return out


def php_query(params: Mapping[str, Any]) -> str:
    """`params` as a query string, nested arrays PHP-style (`A[0][b]=1`), percent-encoded as
    PHP's http_build_query does (space as `+`, brackets as `%5B`/`%5D`)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        pairs += _pairs(str(key), value)
    return "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs)


def command(connector: str, line: int, messages: list[dict[str, Any]]) -> str:
    """One group's call as a `batch` command."""
    return f"{METHOD}?{php_query({'CONNECTOR': connector, 'LINE': line, 'MESSAGES': messages})}"


@dataclass(frozen=True)
class Answer:
    """One command's answer: success (with its `time` block), or its error."""

    ok: bool
    time: dict[str, Any] = field(default_factory=dict)
    error: PortalError | None = None

    @property
    def not_packable(self) -> bool:
        return self.error is not None and self.error.outcome is Outcome.NOT_PACKABLE


def _as_map(value: Any) -> dict[str, Any]:
    """PHP encodes an empty map as `[]` and a map keyed 0..n-1 as a list."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _answer(
    name: str, results: dict[str, Any], errors: dict[str, Any], times: dict[str, Any]
) -> Answer:
    if name in errors:
        err = errors[name] if isinstance(errors[name], dict) else {}
        code = canonical(str(err.get("error") or "ERROR_UNEXPECTED_ANSWER")[:100])
        description = str(err.get("error_description", ""))[:300]
        return Answer(False, error=PortalError(classify_command(code), code, description))
    result = results.get(name)
    if isinstance(result, dict) and result.get("SUCCESS") is True:
        time_block = times.get(name)
        return Answer(True, time=time_block if isinstance(time_block, dict) else {})
    return Answer(
        False,
        error=PortalError(
            Outcome.TRANSIENT,
            "ERROR_UNEXPECTED_ANSWER",
            "batch command without result.SUCCESS or an error",
            200,
        ),
    )


def send_batch(
    endpoint: str, access_token: str, commands: dict[str, str], timeouts: Timeouts
) -> dict[str, Answer]:
    """POST the commands as one `batch` (halt=0); each command's answer by name.

    Raises PortalError when the request fails as a whole (503, 401, network, non-JSON)."""
    problem = check_endpoint(endpoint)
    if problem:
        raise PortalError(Outcome.PERMANENT, "INVALID_ENDPOINT", f"client_endpoint {problem}")
    body = {"halt": 0, "cmd": commands, "auth": access_token}
    response = _request("POST", endpoint + BATCH, timeouts, json=body)
    payload = _json(response)
    inner = payload.get("result") if isinstance(payload, dict) else None
    if response.status_code != 200 or not isinstance(inner, dict) or "error" in payload:
        if response.status_code == 200 and payload is not None and "error" not in payload:
            raise PortalError(
                Outcome.TRANSIENT, "ERROR_UNEXPECTED_ANSWER", "HTTP 200 without result", 200
            )
        raise _error_from(response, payload)
    results = _as_map(inner.get("result"))
    errors = _as_map(inner.get("result_error"))
    times = _as_map(inner.get("result_time"))
    return {name: _answer(name, results, errors, times) for name in commands}

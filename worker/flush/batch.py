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

The platform reads each command's query with PHP's `parse_str` (`rest_util.php`
`ParseBatchQuery`), which stops at `max_input_vars` (PHP's default 1000) without an error: the
confirmations past it would be lost while the answer says `SUCCESS`. `plan()` therefore counts the
variables each command encodes and keeps every one at or under `COMMAND_MAX_VARS`, splitting a
group's items over several commands, and never puts more than `MAX_COMMANDS` in one request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import requests

from worker.errors import PortalError
from worker.flush.call import METHOD, Timeouts, error_from
from worker.flush.policy import BATCH_ONLY, Outcome, canonical, classify_command
from worker.net.answer import fetch

BATCH = "batch"
#: PHP's default `max_input_vars`: `parse_str` silently drops every variable past it
PHP_MAX_INPUT_VARS = 1000
#: the most variables one packed command encodes: PHP's default less a margin
COMMAND_MAX_VARS = 900
#: commands in one `batch` request (`rest_provider.php` `methodsBatch` runs no more)
MAX_COMMANDS = 50
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


def element_variables(element: Mapping[str, Any]) -> int:
    """The variables one `MESSAGES` element encodes (one per leaf: `im` two, `message.id` one
    per external id, `message.date`, `chat.id`)."""
    return len(_pairs("M", element))


@dataclass(frozen=True)
class Part:
    """Some of one group's items as one command: `elements[start:stop]` of group `group`."""

    group: int
    start: int
    stop: int
    query: str
    variables: int


@dataclass(frozen=True)
class Plan:
    """One `batch` request's commands by name; the groups that did not fit in it (back to their
    queue at once, for the next call); the groups no request can carry (a direct call)."""

    commands: dict[str, Part]
    left: list[int]
    direct: list[int]


def _split(elements: list[dict[str, Any]], max_vars: int) -> list[tuple[int, int, int]] | None:
    """`elements` cut in order into runs of at most `max_vars` variables each, with CONNECTOR and
    LINE; None when one element alone is over it."""
    runs: list[tuple[int, int, int]] = []
    start, used = 0, 2
    for i, element in enumerate(elements):
        n = element_variables(element)
        if n + 2 > max_vars:
            return None
        if used + n > max_vars:
            runs.append((start, i, used))
            start, used = i, 2
        used += n
    runs.append((start, len(elements), used))
    return runs


def plan(
    groups: list[tuple[str, int, list[dict[str, Any]]]],
    *,
    max_commands: int = MAX_COMMANDS,
    max_vars: int = COMMAND_MAX_VARS,
) -> Plan:
    """The commands for `groups` (connector, line, elements), in order: each command at most
    `max_vars` variables, at most `max_commands` commands. A group is sent whole or not at all:
    one that does not fit after others is left for the next call; one that fits in no request
    (with a huge DELIVERY_BATCH_SIZE) goes as a direct JSON call, which has no such limit."""
    commands: dict[str, Part] = {}
    left: list[int] = []
    direct: list[int] = []
    for index, (connector, line, elements) in enumerate(groups):
        runs = _split(elements, max_vars)
        if runs is None or len(runs) > max_commands:
            direct.append(index)
            continue
        if left or len(commands) + len(runs) > max_commands:
            left.append(index)  # the order of readiness is kept: none overtakes it
            continue
        for j, (start, stop, used) in enumerate(runs):
            name = f"g{index}" if len(runs) == 1 else f"g{index}p{j}"
            query = command(connector, line, elements[start:stop])
            commands[name] = Part(index, start, stop, query, used)
    return Plan(commands, left, direct)


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
    endpoint: str,
    access_token: str,
    commands: dict[str, str],
    timeouts: Timeouts,
    session: requests.Session,
) -> dict[str, Answer]:
    """POST the commands as one `batch` (halt=0); each command's answer by name. The session
    judges the endpoint as a direct call's (worker/net/trust.py): a refused one parks the portal.

    Raises PortalError when the request fails as a whole (503, 401, network, non-JSON)."""
    body = {"halt": 0, "cmd": commands, "auth": access_token}
    answer = fetch("POST", endpoint + BATCH, timeouts, session, json=body)
    payload = answer.body
    inner = payload.get("result") if payload is not None else None
    if answer.status != 200 or payload is None or not isinstance(inner, dict) or "error" in payload:
        if answer.status == 200 and payload is not None and "error" not in payload:
            raise PortalError(
                Outcome.TRANSIENT, "ERROR_UNEXPECTED_ANSWER", "HTTP 200 without result", 200
            )
        raise error_from(answer)
    results = _as_map(inner.get("result"))
    errors = _as_map(inner.get("result_error"))
    times = _as_map(inner.get("result_time"))
    return {name: _answer(name, results, errors, times) for name in commands}

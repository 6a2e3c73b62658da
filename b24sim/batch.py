"""``batch``: up to 50 commands run per request, one slot of the portal's leaky bucket.

Body ``{"halt": 0|1, "cmd": {name: "method?query"}, "auth": token}`` (JSON, or form-encoded the way
SDKs send it: ``cmd[name]=...``). Each command's query is decoded with PHP-style nested keys
(``MESSAGES[0][im][chat_id]=323``), inherits the request's auth, and is checked and executed on its
own. Each command's query is read as PHP's ``parse_str`` reads it (``rest_util.php``
``ParseBatchQuery``): variables past ``max_input_vars`` (1000) are dropped without an error, so a
command over it loses its last elements and still succeeds. Commands past the 50th are not run:
each gets ``ERROR_BATCH_LENGTH_EXCEEDED`` in ``result_error``, HTTP 200 still
(``rest_provider.php`` ``methodsBatch``). The outer request adds no operating time of its own;
each command is metered under its method. The answer is HTTP 200 ``{"result": {"result",
"result_error", "result_total", "result_next", "result_time"}, "time"}``; ``halt`` stops at the
first failed command. Empty maps are ``[]`` and maps keyed 0..n-1 are lists, as PHP encodes
arrays. Nested ``batch`` is refused
per command (``ERROR_BATCH_METHOD_NOT_ALLOWED``), as the rest module does. Faults with target
"batch_command" fail single commands; "rest" faults fail the request as a whole.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .portal import PortalState
from .replies import MethodResult, Reply, error_reply, json_reply, method_error, time_block
from .validate import METHOD, parse_str

if TYPE_CHECKING:
    from .rest import RestEndpoint

MAX_COMMANDS = 50


def _php_array(data: dict[str, Any]) -> Any:
    """JSON as PHP's json_encode gives it: [] when empty, a list when keyed 0..n-1."""
    if not data:
        return []
    if list(data) == [str(i) for i in range(len(data))]:
        return list(data.values())
    return data


def _commands(cmd: Any) -> list[tuple[str, Any]] | None:
    if isinstance(cmd, list):
        return [(str(i), c) for i, c in enumerate(cmd)]
    if isinstance(cmd, dict):
        return [(str(k), v) for k, v in cmd.items()]
    return None


def _halt(value: Any) -> bool:
    return str(value).strip().lower() not in ("", "0", "false", "none")


def _command(sim: RestEndpoint, p: PortalState, name: str, text: Any) -> MethodResult:
    method, _, query = str(text).partition("?")
    method = method.strip().lower().removesuffix(".json")
    if method == "batch":
        return method_error("ERROR_BATCH_METHOD_NOT_ALLOWED")
    if method != METHOD:
        return method_error("ERROR_METHOD_NOT_FOUND")
    if p.config.batch_refuse:
        return method_error(p.config.batch_refuse)
    action = sim._faults.consult(p.config.member_id, "batch_command")
    if action.fault_ids:
        sim._count(p, "faults_injected")
    if action.kind == "error":
        return method_error(action.error, action.description)
    params, truncated = parse_str(query)
    if truncated:
        sim._count(p, "input_vars_truncated")
    return sim.run_method(p, method, params, time.time(), via="batch", command=name)


def run_batch(sim: RestEndpoint, p: PortalState, params: dict[str, Any], t0: float) -> Reply:
    """The ``batch`` method on an admitted, authorised request."""
    sim._count(p, "batch_requests")
    items = _commands(params.get("cmd"))
    if items is None:
        return error_reply("ERROR_ARGUMENT", "cmd must be an array of commands")
    halt = _halt(params.get("halt", 0))
    results: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    times: dict[str, Any] = {}
    for index, (name, text) in enumerate(items):
        if index >= MAX_COMMANDS:  # not run, refused one by one
            sim._count(p, "batch_length_exceeded")
            errors[name] = {
                "error": "ERROR_BATCH_LENGTH_EXCEEDED",
                "error_description": "Max batch length exceeded",
            }
            continue
        sim._count(p, "batch_commands")
        res = _command(sim, p, name, text)
        if res.error is None:
            results[name] = res.result
            times[name] = res.time
            continue
        errors[name] = {"error": res.error, "error_description": res.description}
        if halt:
            break
    _, total, reset_at = p.meter(METHOD).check()
    body = {
        "result": {
            "result": _php_array(results),
            "result_error": _php_array(errors),
            "result_total": [],
            "result_next": [],
            "result_time": _php_array(times),
        },
        "time": time_block(t0, total, reset_at),
    }
    return json_reply(200, body)

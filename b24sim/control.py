"""``/_sim/`` control endpoints on the main listener: the Python API over HTTP, for the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .faults import Fault
from .portal import PortalConfig
from .replies import Reply, json_reply

if TYPE_CHECKING:
    from .core import SimCore


def control(sim: SimCore, verb: str, name: str, query: str, body: bytes) -> Reply:
    try:
        data: dict[str, Any] = json.loads(body) if body.strip() else {}
        data.update(dict(parse_qsl(query)))
        return _control(sim, verb, name, data)
    except (ValueError, TypeError, KeyError) as exc:
        return json_reply(400, {"error": "SIM_BAD_REQUEST", "error_description": str(exc)})


def _ok(fn: Callable[[], None]) -> dict[str, Any]:
    fn()
    return {"ok": True}


def _flag(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    return value not in ("0", 0, False, "false", "")


def _int_or_none(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _actions(sim: SimCore, data: dict[str, Any]) -> dict[tuple[str, str], Callable[[], Any]]:
    portal = data.get("portal")
    fid = data.get("id")
    return {
        ("GET", "state"): lambda: sim.state(records=_flag(data.get("records"), True)),
        ("POST", "portals"): lambda: sim.add_portal(PortalConfig.from_dict(data)).to_dict(),
        ("POST", "faults"): lambda: {"id": sim.inject(Fault.from_dict(data))},
        ("DELETE", "faults"): lambda: {
            "removed": sim.clear_faults(portal, int(fid) if fid else None)
        },
        ("POST", "reset"): lambda: _ok(sim.reset),
        ("POST", "clear_records"): lambda: _ok(sim.clear_records),
        ("POST", "expire_tokens"): lambda: {"expired": sim.expire_tokens(portal)},
        ("POST", "revoke_refresh"): lambda: _ok(
            lambda: sim.revoke_refresh(str(portal), _flag(data.get("revoked"), True))
        ),
        ("POST", "webhook_token"): lambda: {"token": sim.webhook_token(str(portal))},
        ("POST", "credentials"): lambda: sim.issue_credentials(str(portal)).to_dict(),
        ("POST", "move_portal"): lambda: {
            "client_endpoint": sim.move_portal(
                str(portal), int(data.get("status", 302)), _flag(data.get("new_port"))
            )
        },
        ("GET", "oauth_servers"): lambda: [s.to_dict() for s in sim.oauth_servers()],
        ("POST", "oauth_servers"): lambda: sim.add_oauth_server(
            float(data.get("delay_s", 0.0)), data.get("client_id"), data.get("client_secret")
        ).to_dict(),
        ("POST", "oauth_delay"): lambda: _ok(
            lambda: sim.set_oauth_delay(float(data["delay_s"]), int(data.get("server", 0)))
        ),
        ("POST", "hostile"): lambda: _ok(
            lambda: sim.set_hostile(str(portal), data.get("kind") or None)
        ),
        ("POST", "refuse_in_batch"): lambda: _ok(
            lambda: sim.refuse_in_batch(
                str(portal), data.get("error", "ERROR_BATCH_METHOD_NOT_ALLOWED")
            )
        ),
        ("GET", "calls"): lambda: [c.to_dict() for c in sim.calls(portal)],
        ("GET", "refresh_requests"): lambda: [
            r.to_dict() for r in sim.refresh_requests(_int_or_none(data.get("server")), portal)
        ],
        ("GET", "observations"): lambda: {
            "call_outcomes": sim.call_outcomes(portal),
            "replaced_token_calls": sim.replaced_token_calls(portal),
            "refresh_counts": {str(k): v for k, v in sim.refresh_counts().items()},
            "invalid_grants": sim.invalid_grants(portal),
        },
    }


def _control(sim: SimCore, verb: str, name: str, data: dict[str, Any]) -> Reply:
    action = _actions(sim, data).get((verb, name))
    if action is None:
        return json_reply(
            404, {"error": "SIM_NOT_FOUND", "error_description": f"{verb} /_sim/{name}"}
        )
    return json_reply(200, action())

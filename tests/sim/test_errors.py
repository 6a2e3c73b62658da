"""Errors the platform and its OAuth servers give, injectable as faults.

Facts checked: every error body is ``{"error", "error_description"}`` with no ``time`` block (the
rest module's outputError), including 429 OPERATION_TIME_LIMIT (limits.md); PORTAL_DELETED is
thrown with 403 by the rest module (the docs' table says 500, b24pysdk expects 410); the token
endpoint can answer wrong_client with HTTP 200 (b24pysdk), invalid_client (401, b24phpsdk),
insufficient_scope and NOT_INSTALLED; older portals answered HTTP 200 with ``SUCCESS: false``.
"""

from __future__ import annotations

import pytest
import requests

from b24sim import Credentials, Fault, PortalConfig, Simulator

from .conftest import call, refresh


@pytest.mark.parametrize("status", [403, 410, 500])
def test_portal_deleted_statuses(
    sim: Simulator, creds: Credentials, session: requests.Session, status: int
) -> None:
    fault = Fault(error="PORTAL_DELETED", count=1)
    if status != 403:
        fault.status = status
    sim.inject(fault)
    r = call(session, creds)
    assert (r.status_code, r.json()["error"]) == (status, "PORTAL_DELETED")
    assert set(r.json()) == {"error", "error_description"}


def test_invalid_token(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    sim.inject(Fault(error="invalid_token", count=1))
    r = call(session, creds)
    assert r.status_code == 401
    assert r.json() == {
        "error": "invalid_token",
        "error_description": "unable to get application by token",
    }


def test_429_without_time_block(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    last = call(session, creds).json()["time"]
    sim.inject(Fault(error="OPERATION_TIME_LIMIT", count=1))
    r = call(session, creds)
    assert (r.status_code, set(r.json())) == (429, {"error", "error_description"})
    assert last["operating_reset_at"] > 0  # where a client takes its wait from


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("wrong_client", 200),
        ("invalid_client", 401),
        ("insufficient_scope", 400),
        ("NOT_INSTALLED", 400),
        ("authorization_error", 400),
        ("PAYMENT_REQUIRED", 400),
    ],
)
def test_token_endpoint_errors(
    sim: Simulator, creds: Credentials, session: requests.Session, code: str, status: int
) -> None:
    sim.inject(Fault(error=code, target="oauth", count=1))
    r = refresh(session, sim, creds.refresh_token)
    assert r.status_code == status
    assert r.json() == {"error": code, "error_description": r.json()["error_description"]}
    assert sim.refresh_requests()[-1].outcome == code
    assert sim.counters("m1")["refresh_failures"] == 1
    assert refresh(session, sim, creds.refresh_token).status_code == 200  # token not spent


def test_oauth_fault_on_one_server_only(session: requests.Session) -> None:
    with Simulator(client_id="app.test", client_secret="s3cret", oauth_servers=1) as sim:
        c = sim.add_portal(PortalConfig(member_id="r"))
        sim.inject(Fault(error="wrong_client", target="oauth", server=1))
        r1 = refresh(session, sim, c.refresh_token, client_id="app.test")
        assert r1.status_code == 200 and "access_token" in r1.json()  # server 0 unaffected
        params = {
            "grant_type": "refresh_token",
            "client_id": "app.test",
            "client_secret": "s3cret",
            "refresh_token": r1.json()["refresh_token"],
        }
        r2 = session.get(sim.oauth_server(1).token_url, params=params, timeout=5)
        assert (r2.status_code, r2.json()["error"]) == (200, "wrong_client")


def test_success_false(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    sim.inject(Fault(kind="success_false", count=1, portal="m1"))
    r = call(session, creds)
    assert r.status_code == 200
    assert r.json()["result"] == {"SUCCESS": False, "DATA": []}
    assert sim.accepted() == []
    assert sim.counters("m1")["success_false"] == 1
    assert sim.call_outcomes("m1") == {"SUCCESS_FALSE": 1}
    assert call(session, creds).json()["result"]["SUCCESS"] is True


def test_fault_target_validated() -> None:
    with pytest.raises(ValueError, match="target"):
        Fault(error="X", target="nope")  # type: ignore[arg-type]

"""Fault injection: every documented error, count, fraction, latency, drop, non-JSON, overload."""

from __future__ import annotations

import time

import pytest
import requests

from b24sim import OAUTH_ERRORS, REST_ERRORS, Credentials, Fault, PortalConfig, Simulator

from .conftest import call, refresh

DOCUMENTED = {
    "WRONG_AUTH_TYPE": 403,
    "ERROR_ARGUMENT": 400,
    "IMCONNECTOR_NO_CORRECT_PROVIDER": 400,
    "INTERNAL_SERVER_ERROR": 500,
    "ERROR_UNEXPECTED_ANSWER": 500,
    "QUERY_LIMIT_EXCEEDED": 503,
    "ERROR_BATCH_METHOD_NOT_ALLOWED": 405,
    "ERROR_BATCH_LENGTH_EXCEEDED": 400,
    "NO_AUTH_FOUND": 401,
    "INVALID_REQUEST": 400,
    "OVERLOAD_LIMIT": 503,
    "ACCESS_DENIED": 403,
    "INVALID_CREDENTIALS": 403,
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": 404,
    # the docs list 403; the OAuth check's errors come with 401 (rest/lib/oauthexception.php)
    "insufficient_scope": 401,
    "expired_token": 401,
    "user_access_error": 401,
    # rest/lib/oauth/auth.php: the portal could not reach its authorization server; the
    # application is not known to the portal any more
    "CONNECTION_ERROR": 401,
    "APPLICATION_NOT_FOUND": 401,
    "PORTAL_DELETED": 403,  # the docs' table says 500; the rest module source throws 403
    "OPERATION_TIME_LIMIT": 429,
    # imconnector module source
    "IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR": 400,
    "IMCONNECTOR_COULD_NOT_GET_PROVIDER_OBJECT": 400,
    "IMCONNECTOR_NOT_SPECIFIED_CORRECT_COMMAND": 400,
    # seen in the official SDKs (statuses other than invalid_token's are the simulator's choice)
    "invalid_token": 401,
    "NOT_INSTALLED": 403,
    "authorization_error": 401,
    "PAYMENT_REQUIRED": 402,
    "ERROR_OAUTH": 401,
}


def test_table_matches_docs() -> None:
    """system-errors.md, the method page, the module source and the SDKs' codes, with statuses;
    token-endpoint codes of auto-renewal.md plus those the SDKs handle."""
    assert {k: v[0] for k, v in REST_ERRORS.items()} == DOCUMENTED
    assert {k: v[0] for k, v in OAUTH_ERRORS.items()} == {
        "invalid_request": 400,
        "invalid_client": 401,  # b24phpsdk
        "invalid_scope": 400,
        "invalid_grant": 400,
        "PAYMENT_REQUIRED": 400,
        "wrong_client": 200,  # b24pysdk: with HTTP 200
        "insufficient_scope": 400,
        "NOT_INSTALLED": 400,
        "authorization_error": 400,
    }


@pytest.mark.parametrize(("code", "status"), sorted(DOCUMENTED.items()))
def test_every_error_injectable(
    sim: Simulator, creds: Credentials, session: requests.Session, code: str, status: int
) -> None:
    sim.inject(Fault(error=code, count=1, portal="m1"))
    r = call(session, creds)
    assert r.status_code == status
    assert r.json() == {"error": code, "error_description": REST_ERRORS[code][1]}
    assert call(session, creds).status_code == 200
    assert len(sim.accepted()) == 1  # the faulted call recorded nothing
    assert sim.counters("m1")["faults_injected"] == 1


def test_count_burst_of_5xx_only_for_that_portal(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    other = sim.add_portal(PortalConfig(member_id="m2"))
    sim.inject(Fault(error="INTERNAL_SERVER_ERROR", count=3, portal="m1"))
    assert call(session, other).status_code == 200
    assert [call(session, creds).status_code for _ in range(4)] == [500, 500, 500, 200]
    assert sim.faults() == []  # exhausted faults disappear


def test_fraction_is_seeded_and_roughly_right(sim: Simulator, session: requests.Session) -> None:
    c = sim.add_portal(PortalConfig(member_id="fr", rate_per_s=1e4, burst=1e4))

    def run(seed: int) -> list[int]:
        sim.clear_faults()
        sim.inject(Fault(error="ERROR_UNEXPECTED_ANSWER", fraction=0.3, seed=seed))
        return [call(session, c).status_code for _ in range(200)]

    first = run(7)
    assert first == run(7)
    share = first.count(500) / len(first)
    assert 0.2 < share < 0.4


def test_latency(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    sim.inject(Fault(kind="latency", latency_s=0.2, count=1))
    t0 = time.monotonic()
    assert call(session, creds).status_code == 200
    assert time.monotonic() - t0 >= 0.2
    t1 = time.monotonic()
    assert call(session, creds).status_code == 200
    assert time.monotonic() - t1 < 0.2


def test_drop_connection(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    sim.inject(Fault(kind="drop", count=1, portal="m1"))
    with pytest.raises(requests.ConnectionError):
        call(session, creds)
    assert call(session, creds).status_code == 200
    assert len(sim.accepted()) == 1


def test_non_json_proxy_page(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    sim.inject(Fault(kind="non_json", count=1))
    r = call(session, creds)
    assert r.status_code == 502
    assert r.headers["Content-Type"].startswith("text/html")
    with pytest.raises(requests.JSONDecodeError):
        r.json()
    sim.inject(Fault(kind="non_json", count=1, status=504, body="gateway timeout"))
    r = call(session, creds)
    assert (r.status_code, r.text) == (504, "gateway timeout")


def test_overload_until_cleared(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    fid = sim.inject(Fault(kind="overload", portal="m1"))
    for _ in range(3):
        r = call(session, creds)
        assert (r.status_code, r.json()["error"]) == (503, "OVERLOAD_LIMIT")
    assert sim.clear_faults(fault_id=fid) == 1
    assert call(session, creds).status_code == 200


def test_faults_via_control_endpoint(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    r = session.post(
        f"{sim.base_url}/_sim/faults", json={"error": "PORTAL_DELETED", "count": 2}, timeout=5
    )
    assert r.status_code == 200
    assert r.json()["id"] >= 1
    assert call(session, creds).json()["error"] == "PORTAL_DELETED"
    assert session.delete(f"{sim.base_url}/_sim/faults", timeout=5).json() == {"removed": 1}
    assert call(session, creds).status_code == 200
    bad = session.post(f"{sim.base_url}/_sim/faults", json={"kind": "nope"}, timeout=5)
    assert bad.status_code == 400


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="error code"):
        Fault(kind="error")
    with pytest.raises(ValueError, match="fraction"):
        Fault(error="X", fraction=2)


def test_oauth_faults(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    sim.inject(Fault(error="invalid_grant", target="oauth", count=1))
    r = refresh(session, sim, creds.refresh_token)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    sim.inject(Fault(kind="drop", target="oauth", count=1))
    with pytest.raises(requests.ConnectionError):
        refresh(session, sim, creds.refresh_token)
    assert refresh(session, sim, creds.refresh_token).status_code == 200
    counters = sim.counters("m1")
    assert counters["refresh_failures"] == 2
    assert counters["refreshes"] == 1

"""Access-token expiry, NO_AUTH_FOUND, refresh rotation, single use, invalid_client, revocation."""

from __future__ import annotations

import threading
import time

import requests

from b24sim import Credentials, PortalConfig, Simulator

from .conftest import CLIENT_ID, REFRESH_KEYS, call, payload, refresh


def test_token_expires_after_ttl(sim: Simulator, session: requests.Session) -> None:
    c = sim.add_portal(PortalConfig(member_id="short", token_ttl_s=0.15, rate_per_s=1e4, burst=1e4))
    assert c.expires_in == 0.15
    assert call(session, c).status_code == 200
    deadline = time.monotonic() + 5
    while (r := call(session, c)).status_code == 200:
        assert time.monotonic() < deadline
    assert (r.status_code, r.json()["error"]) == (401, "expired_token")
    counters = sim.counters("short")
    assert counters["expired_token_401"] == 1
    assert counters["unauthorized_401"] == 1


def test_expire_tokens_now(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    assert call(session, creds).status_code == 200
    sim.expire_tokens("m1")
    r = call(session, creds)
    assert (r.status_code, r.json()["error"]) == (401, "expired_token")


def test_no_auth_found(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    other = sim.add_portal(PortalConfig(member_id="m2"))
    for body in (payload(None), payload(None, auth="bogus"), payload(other)):
        r = call(session, creds, body)
        assert (r.status_code, r.json()["error"]) == (401, "NO_AUTH_FOUND")
    assert sim.counters("m1")["no_auth_401"] == 3
    assert sim.accepted() == []


def test_refresh_rotates_and_is_single_use(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    r = refresh(session, sim, creds.refresh_token)
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) == REFRESH_KEYS
    assert data["member_id"] == "m1"
    # auto-renewal.md: `domain` is the OAuth server's host, not the portal's
    assert data["domain"] == sim.base_url.removeprefix("http://")
    assert data["server_endpoint"] == f"{sim.base_url}/rest/"
    assert data["client_endpoint"] == creds.client_endpoint
    assert data["expires_in"] == 3600
    assert data["expires"] > time.time() + 3500
    assert data["access_token"] != creds.access_token
    assert data["refresh_token"] != creds.refresh_token
    # old access token is dead, new one works
    old = call(session, creds)
    assert (old.status_code, old.json()["error"]) == (401, "NO_AUTH_FOUND")
    assert call(session, creds, payload(None, auth=data["access_token"])).status_code == 200
    # second use of the same refresh token
    again = refresh(session, sim, creds.refresh_token)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    # the new refresh token works once
    assert refresh(session, sim, data["refresh_token"]).status_code == 200
    assert sim.credentials("m1").refresh_token != data["refresh_token"]
    counters = sim.counters("m1")
    assert counters["refreshes"] == 2
    assert counters["refresh_failures"] == 1


def test_refresh_after_expiry_recovers(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    sim.expire_tokens("m1")
    assert call(session, creds).json()["error"] == "expired_token"
    new = refresh(session, sim, creds.refresh_token).json()
    assert call(session, creds, payload(None, auth=new["access_token"])).status_code == 200


def test_invalid_client(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    """invalid_client comes with HTTP 401 (b24phpsdk handles it so)."""
    for over in ({"client_id": "other"}, {"client_secret": "wrong"}):
        r = refresh(session, sim, creds.refresh_token, **over)
        assert r.status_code == 401
        assert r.json() == {
            "error": "invalid_client",
            "error_description": r.json()["error_description"],
        }
    # the refresh token was not consumed by the failed attempts
    assert refresh(session, sim, creds.refresh_token).status_code == 200


def test_invalid_request_and_unknown_token(sim: Simulator, session: requests.Session) -> None:
    r = refresh(session, sim, "x", grant_type="authorization_code")
    assert r.json()["error"] == "invalid_request"
    assert refresh(session, sim, "").json()["error"] == "invalid_request"
    assert refresh(session, sim, "unknown").json()["error"] == "invalid_grant"


def test_revoked_refresh(sim: Simulator, session: requests.Session) -> None:
    c = sim.add_portal(PortalConfig(member_id="rv", refresh_revoked=True))
    assert refresh(session, sim, c.refresh_token).json()["error"] == "invalid_grant"
    d = sim.add_portal(PortalConfig(member_id="rv2"))
    sim.revoke_refresh("rv2")
    r = refresh(session, sim, d.refresh_token)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    assert sim.counters("rv2")["refresh_failures"] == 1
    assert call(session, d).status_code == 200  # the access token still works until it expires


def test_concurrent_refresh_one_wins(sim: Simulator) -> None:
    c = sim.add_portal(PortalConfig(member_id="race", refresh_latency_s=0.1))
    results: list[int] = []
    barrier = threading.Barrier(3)

    def worker() -> None:
        with requests.Session() as s:
            barrier.wait()
            results.append(refresh(s, sim, c.refresh_token).status_code)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 400, 400]
    assert sim.counters("race")["refreshes"] == 1


def test_post_form_refresh(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    r = session.post(
        sim.oauth_url,
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": "s3cret",
            "refresh_token": creds.refresh_token,
        },
        timeout=5,
    )
    assert r.status_code == 200

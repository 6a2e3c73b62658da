"""Records, counters, /_sim/ control endpoints."""

from __future__ import annotations

import time

import requests

from b24sim import COUNTER_NAMES, Credentials, Fault, PortalConfig, Simulator

from .conftest import call, payload


def test_records_and_counters(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    before = time.time()
    assert call(session, creds, payload(creds, n=3)).status_code == 200
    assert call(session, creds, payload(creds, n=2, CONNECTOR="c2", LINE=5)).status_code == 200
    recs = sim.accepted(portal="m1")
    assert len(recs) == 5
    assert {r.call_id for r in recs[:3]} != {r.call_id for r in recs[3:]}
    assert [(r.batch_size, r.index) for r in recs] == [(3, 0), (3, 1), (3, 2), (2, 0), (2, 1)]
    assert recs[3].connector == "c2"
    assert recs[3].line == 5
    assert all(before <= r.arrived_at <= time.time() for r in recs)
    assert recs[0].im == {"chat_id": 323, "message_id": 85911}
    assert recs[0].chat == {"id": "channel-123"}
    c = sim.counters("m1")
    assert set(c) == set(COUNTER_NAMES)
    assert (c["calls"], c["success"], c["accepted_messages"]) == (2, 2, 5)
    sim.clear_records()
    assert sim.accepted() == []
    assert sim.accepted(portal="zzz") == []


def test_state_endpoint(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    call(session, creds)
    call(session, creds, payload(None, auth="bad"))
    sim.inject(Fault(kind="latency", latency_s=0.0))
    st = session.get(f"{sim.base_url}/_sim/state", timeout=5).json()
    assert st["base_url"] == sim.base_url
    assert st["oauth_url"] == sim.oauth_url
    p = st["portals"]["m1"]
    assert p["counters"]["calls"] == 2
    assert p["counters"]["no_auth_401"] == 1
    assert p["accepted"] == 1
    assert st["accepted_total"] == 1
    assert st["accepted"][0]["member_id"] == "m1"
    assert p["client_endpoint"] == creds.client_endpoint
    assert p["config"]["effective_burst"] == 50.0
    assert "imconnector.send.status.delivery" in p["operating"]
    assert st["faults"][0]["kind"] == "latency"
    light = session.get(f"{sim.base_url}/_sim/state?records=0", timeout=5).json()
    assert "accepted" not in light


def test_control_endpoints(sim: Simulator, session: requests.Session) -> None:
    base = f"{sim.base_url}/_sim"
    r = session.post(f"{base}/portals", json={"member_id": "px", "burst": 5}, timeout=5)
    assert r.status_code == 200
    c = Credentials(**r.json())
    assert c.client_endpoint == f"{sim.base_url}/px/rest/"
    assert session.post(f"{base}/portals", json={"member_id": "px"}, timeout=5).status_code == 400
    assert session.post(f"{base}/portals", json={"bogus": 1}, timeout=5).status_code == 400
    assert call(session, c).status_code == 200
    assert session.post(f"{base}/expire_tokens", json={"portal": "px"}, timeout=5).ok
    assert call(session, c).json()["error"] == "expired_token"
    new = session.post(f"{base}/credentials", json={"portal": "px"}, timeout=5).json()
    assert call(session, c, payload(None, auth=new["access_token"])).status_code == 200
    wh = session.post(f"{base}/webhook_token", json={"portal": "px"}, timeout=5).json()["token"]
    assert call(session, c, payload(None, auth=wh)).status_code == 403
    assert session.post(f"{base}/revoke_refresh", json={"portal": "px"}, timeout=5).ok
    assert sim.portal_config("px").refresh_revoked
    assert session.post(f"{base}/clear_records", timeout=5).ok
    assert sim.accepted() == []
    assert session.post(f"{base}/reset", timeout=5).ok
    assert sim.counters("px")["calls"] == 0
    assert sim.bucket_level("px") == 0
    assert session.get(f"{base}/nothing", timeout=5).status_code == 404


def test_constructor_portals_and_faults() -> None:
    sim = Simulator(
        portals=[PortalConfig(member_id="a"), PortalConfig(member_id="b")],
        faults=[Fault(error="ACCESS_DENIED", count=1, portal="b")],
    )
    with sim, requests.Session() as s:
        assert sim.portals() == ["a", "b"]
        assert call(s, sim.credentials("a")).status_code == 200
        assert call(s, sim.credentials("b")).status_code == 403
        kw = sim.credentials("b").as_register_kwargs()
        assert set(kw) == {
            "member_id",
            "domain",
            "client_endpoint",
            "server_endpoint",
            "access_token",
            "refresh_token",
            "expires_in",
        }

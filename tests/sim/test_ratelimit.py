"""Leaky bucket per portal: burst, 503 QUERY_LIMIT_EXCEEDED, drain rate, enterprise numbers."""

from __future__ import annotations

import time

import requests

from b24sim import Credentials, PortalConfig, Simulator

from .conftest import call


def _until_rejected(session: requests.Session, c: Credentials, limit: int) -> tuple[int, float]:
    t0 = time.monotonic()
    for n in range(limit):
        r = call(session, c)
        if r.status_code == 503:
            assert r.json()["error"] == "QUERY_LIMIT_EXCEEDED"
            return n, time.monotonic() - t0
        assert r.status_code == 200, r.text
    raise AssertionError("never rate limited")


def test_default_burst_50_then_503(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    cfg = sim.portal_config("m1")
    assert (cfg.effective_rate, cfg.effective_burst) == (2.0, 50.0)
    accepted, elapsed = _until_rejected(session, creds, 200)
    assert 50 <= accepted <= 50 + int(2.0 * elapsed)
    # rejected requests do not add to the level
    for _ in range(5):
        assert call(session, creds).status_code == 503
    assert sim.bucket_level("m1") <= 50.0
    counters = sim.counters("m1")
    assert counters["rate_limited_503"] == 6
    assert counters["success"] == accepted
    assert len(sim.accepted("m1")) == accepted


def test_enterprise_numbers(sim: Simulator, session: requests.Session) -> None:
    c = sim.add_portal(PortalConfig(member_id="ent", enterprise=True))
    cfg = sim.portal_config("ent")
    assert (cfg.effective_rate, cfg.effective_burst) == (5.0, 250.0)
    accepted, elapsed = _until_rejected(session, c, 1000)
    assert 250 <= accepted <= 250 + int(5.0 * elapsed)


def test_drains_at_configured_rate(sim: Simulator, session: requests.Session) -> None:
    rate = 20.0
    c = sim.add_portal(PortalConfig(member_id="fast", rate_per_s=rate, burst=10))
    _until_rejected(session, c, 100)
    t0 = time.monotonic()
    ok = 0
    while time.monotonic() - t0 < 0.5:
        if call(session, c).status_code == 200:
            ok += 1
    elapsed = time.monotonic() - t0
    # over the window, admissions track the drain rate (+1 for the partial unit at the start)
    assert rate * elapsed - 2 <= ok <= rate * elapsed + 2


def test_portals_have_separate_buckets(sim: Simulator, session: requests.Session) -> None:
    a = sim.add_portal(PortalConfig(member_id="a", burst=3, rate_per_s=0.01))
    b = sim.add_portal(PortalConfig(member_id="b", burst=3, rate_per_s=0.01))
    assert [call(session, a).status_code for _ in range(4)] == [200, 200, 200, 503]
    assert call(session, b).status_code == 200


def test_float_rate_and_level(sim: Simulator, session: requests.Session) -> None:
    c = sim.add_portal(PortalConfig(member_id="f", burst=2, rate_per_s=0.5))
    assert [call(session, c).status_code for _ in range(3)] == [200, 200, 503]
    assert 1.9 <= sim.bucket_level("f") <= 2.0

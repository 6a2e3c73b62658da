"""A portal that moved: the old address redirects (change-domen.md), the new one is authoritative.

Fact checked throughout: a portal that changed its address answers the old one with a redirect
and ``Location``; the call must be repeated at the new address (b24pysdk and b24phpsdk follow it),
and the refresh answer's ``client_endpoint`` is the portal's current REST address
(auto-renewal.md).
"""

from __future__ import annotations

import pytest
import requests

from b24sim import METHOD, Credentials, Simulator

from .conftest import call, payload, refresh


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_old_address_redirects_with_location(
    sim: Simulator, creds: Credentials, session: requests.Session, status: int
) -> None:
    """The old address answers the configured 3xx with Location at the new address, keeping the
    method path and the query string."""
    new = sim.move_portal("m1", status=status)
    assert new != creds.client_endpoint and new.endswith("/rest/")
    assert sim.client_endpoint("m1") == new
    r = session.post(
        creds.client_endpoint + METHOD + ".json?x=1",
        json=payload(creds),
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == status
    assert r.headers["Location"] == new + METHOD + ".json?x=1"
    assert sim.accepted() == []  # nothing is delivered at the old address
    assert sim.counters("m1")["redirects"] == 1
    assert sim.call_outcomes("m1") == {f"redirect_{status}": 1}


def test_new_address_works_with_the_same_tokens(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    """The call repeated at the new address succeeds with the tokens the app already holds;
    a 307 is followed with its body by an ordinary client."""
    new = sim.move_portal("m1", status=307)
    r = session.post(new + METHOD, json=payload(creds), timeout=5)
    assert r.status_code == 200, r.text
    followed = call(session, creds)  # requests re-sends the POST body on 307
    assert followed.status_code == 200
    assert [h.status_code for h in followed.history] == [307]
    assert len(sim.accepted("m1")) == 2


def test_move_to_a_second_port(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    """The new address may be another host:port; the old one still redirects there."""
    new = sim.move_portal("m1", status=302, new_port=True)
    assert not new.startswith(sim.base_url)
    assert new.endswith("/m1/rest/")
    assert session.post(new + METHOD, json=payload(creds), timeout=5).status_code == 200
    r = session.get(creds.client_endpoint + METHOD, allow_redirects=False, timeout=5)
    assert (r.status_code, r.headers["Location"]) == (302, new + METHOD)
    # the new port serves portals only: no token endpoint, no control endpoints
    port_base = new.removesuffix("/m1/rest/")
    assert session.get(port_base + "/oauth/token/", timeout=5).status_code == 404
    assert session.get(port_base + "/_sim/state", timeout=5).status_code == 404


def test_refresh_reports_the_new_endpoint(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    """After a move the refresh answer's client_endpoint is the new address."""
    new = sim.move_portal("m1")
    data = refresh(session, sim, creds.refresh_token).json()
    assert data["client_endpoint"] == new
    assert sim.credentials("m1").client_endpoint == new


def test_moving_twice_redirects_every_old_address_to_the_latest(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    first = sim.move_portal("m1")
    second = sim.move_portal("m1", status=301)
    for old, status in ((creds.client_endpoint, 302), (first, 301)):
        r = session.get(old + METHOD, allow_redirects=False, timeout=5)
        assert (r.status_code, r.headers["Location"]) == (status, second + METHOD)


def test_move_via_control_endpoint_and_bad_status(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    r = session.post(
        f"{sim.base_url}/_sim/move_portal", json={"portal": "m1", "status": 308}, timeout=5
    )
    assert r.status_code == 200
    new = r.json()["client_endpoint"]
    assert sim.client_endpoint("m1") == new
    state = session.get(f"{sim.base_url}/_sim/state", timeout=5).json()
    assert state["portals"]["m1"]["moved_from"] == [creds.client_endpoint]
    with pytest.raises(ValueError, match="status"):
        sim.move_portal("m1", status=200)
    bad = session.post(
        f"{sim.base_url}/_sim/move_portal", json={"portal": "m1", "status": 303}, timeout=5
    )
    assert bad.status_code == 400

"""Regional OAuth servers, a slow OAuth server, and what tests observe about refreshes.

Facts checked (auto-renewal.md, auth-params-in-events.md): there is more than one OAuth server;
an install's auth block carries ``server_endpoint``, the server that refreshes its tokens; the
refresh answer carries access_token, refresh_token, expires, expires_in, member_id,
client_endpoint, server_endpoint, domain (the OAuth server's host), scope, status, user_id; the
refresh token is single-use and a refresh kills the old pair.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from b24sim import PortalConfig, Simulator

from .conftest import CLIENT_ID, CLIENT_SECRET, REFRESH_KEYS, call, payload


def _refresh(
    session: requests.Session, url: str, token: str, cid: str = CLIENT_ID, sec: str = CLIENT_SECRET
) -> requests.Response:
    params = {
        "grant_type": "refresh_token",
        "client_id": cid,
        "client_secret": sec,
        "refresh_token": token,
    }
    return session.get(url, params=params, timeout=10)


@pytest.fixture
def regional() -> Iterator[Simulator]:
    with Simulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, oauth_servers=2) as s:
        yield s


def test_each_server_has_its_own_port_and_shares_token_state(
    regional: Simulator, session: requests.Session
) -> None:
    """Token endpoints on their own ports; a pair issued by one is refreshed at another; each
    answer names the server that gave it (server_endpoint, domain = its host)."""
    servers = regional.oauth_servers()
    assert [s.index for s in servers] == [0, 1, 2]
    assert len({urlsplit(s.token_url).port for s in servers}) == 3
    assert all(s.token_url.endswith("/oauth/token/") for s in servers)
    c = regional.add_portal(PortalConfig(member_id="ru", oauth_server=1))
    assert c.server_endpoint == servers[1].server_endpoint
    assert c.as_register_kwargs()["server_endpoint"] == servers[1].server_endpoint
    token = c.refresh_token
    for srv in (servers[1], servers[2], servers[0]):
        r = _refresh(session, srv.token_url, token)
        assert r.status_code == 200, r.text
        data = r.json()
        assert set(data) == REFRESH_KEYS
        assert data["server_endpoint"] == srv.server_endpoint
        assert data["domain"] == urlsplit(srv.base_url).netloc != "ru.bitrix24.test"
        assert data["client_endpoint"] == c.client_endpoint
        assert (data["member_id"], data["scope"], data["status"], data["user_id"]) == (
            "ru",
            "imopenlines",
            "L",
            1,
        )
        token = data["refresh_token"]
    assert regional.refresh_counts() == {0: 1, 1: 1, 2: 1}
    assert [r.server for r in regional.refresh_requests(portal="ru")] == [1, 2, 0]


def test_regional_servers_serve_only_the_token_endpoint(
    regional: Simulator, session: requests.Session
) -> None:
    base = regional.oauth_server(1).base_url
    assert session.get(base + "/_sim/state", timeout=5).status_code == 404
    assert session.post(base + "/m1/rest/batch", timeout=5).status_code == 404


def test_records_which_server_got_which_secret(session: requests.Session) -> None:
    """Client id and secret are per region: a server with its own credentials refuses another
    region's (invalid_client), and the log shows which secret reached which server."""
    with Simulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        eu = sim.add_oauth_server(client_id="app.eu", client_secret="eu-secret")
        c = sim.add_portal(PortalConfig(member_id="p", oauth_server=eu.index))
        r = _refresh(session, eu.token_url, c.refresh_token)
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
        ok = _refresh(session, eu.token_url, c.refresh_token, "app.eu", "eu-secret")
        assert ok.status_code == 200
        seen = [(r.server, r.client_id, r.client_secret) for r in sim.refresh_requests()]
        assert seen == [(1, CLIENT_ID, CLIENT_SECRET), (1, "app.eu", "eu-secret")]
        assert not [r for r in sim.refresh_requests(server=0) if r.client_secret == "eu-secret"]
        assert [r.outcome for r in sim.refresh_requests()] == ["invalid_client", "success"]


def test_slow_server_and_calls_with_a_replaced_token(
    regional: Simulator, session: requests.Session
) -> None:
    """A slow OAuth server (issue 14's incident): the refresh token is spent at once, the answer
    comes after the delay; calls with the old token meanwhile are recorded as made with a replaced
    token, and a second refresh with the spent token gets invalid_grant (single use)."""
    regional.set_oauth_delay(0.5, server=2)
    c = regional.add_portal(PortalConfig(member_id="slow"))
    regional.expire_tokens("slow")
    answers: list[requests.Response] = []
    t = threading.Thread(
        target=lambda: answers.append(
            _refresh(requests.Session(), regional.oauth_server(2).token_url, c.refresh_token)
        )
    )
    t0 = time.monotonic()
    t.start()
    deadline = time.monotonic() + 5
    while not regional.calls("slow") or not regional.calls("slow")[-1].with_replaced_token:
        assert time.monotonic() < deadline
        call(session, c)
    again = _refresh(session, regional.oauth_server(0).token_url, c.refresh_token)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    t.join()
    assert time.monotonic() - t0 >= 0.5
    new = answers[0].json()
    last = regional.calls("slow")[-1]
    assert (last.token_state, last.refresh_in_flight, last.token_version) == ("replaced", True, 1)
    assert last.outcome == "NO_AUTH_FOUND"
    assert regional.replaced_token_calls("slow") >= 1
    assert regional.counters("slow")["replaced_token_calls"] == regional.replaced_token_calls()
    assert regional.invalid_grants("slow") == 1
    assert regional.counters("slow")["invalid_grant"] == 1
    ok = call(session, c, payload(None, auth=new["access_token"]))
    assert ok.status_code == 200
    good = regional.calls("slow")[-1]
    assert (good.token_state, good.token_version, good.with_replaced_token) == ("valid", 2, False)


def test_expired_token_calls_are_not_counted_as_replaced(
    regional: Simulator, session: requests.Session
) -> None:
    c = regional.add_portal(PortalConfig(member_id="e"))
    regional.expire_tokens("e")
    assert call(session, c).json()["error"] == "expired_token"
    rec = regional.calls("e")[0]
    assert (rec.token_state, rec.with_replaced_token) == ("expired", False)
    assert regional.call_outcomes("e") == {"expired_token": 1}


def test_control_endpoints_for_servers_and_observations(
    regional: Simulator, session: requests.Session
) -> None:
    base = f"{regional.base_url}/_sim"
    added = session.post(f"{base}/oauth_servers", json={"delay_s": 0.1}, timeout=5).json()
    assert added["index"] == 3 and added["token_url"].endswith("/oauth/token/")
    assert len(session.get(f"{base}/oauth_servers", timeout=5).json()) == 4
    r = session.post(f"{base}/oauth_delay", json={"delay_s": 0.2, "server": 1}, timeout=5)
    assert r.status_code == 200
    assert regional.oauth_server(1).delay_s == 0.2
    c = regional.add_portal(PortalConfig(member_id="o"))
    _refresh(session, added["token_url"], c.refresh_token)
    _refresh(session, added["token_url"], c.refresh_token)
    call(session, c)
    obs = session.get(f"{base}/observations?portal=o", timeout=5).json()
    assert obs == {
        "call_outcomes": {"NO_AUTH_FOUND": 1},
        "replaced_token_calls": 1,
        "refresh_counts": {"3": 2},
        "invalid_grants": 1,
    }
    reqs = session.get(f"{base}/refresh_requests?server=3", timeout=5).json()
    assert [q["outcome"] for q in reqs] == ["success", "invalid_grant"]
    calls = session.get(f"{base}/calls?portal=o", timeout=5).json()
    assert calls[0]["with_replaced_token"] is True

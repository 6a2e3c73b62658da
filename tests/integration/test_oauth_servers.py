"""Refreshes go to the OAuth server that issued the portal's tokens, only when its host is
allowed; the two token-ownership modes, with the connector service's own Celery app.

Platform facts checked: the auth block's `server_endpoint` names "the authorization server needed
to refresh tokens" and there is more than one (oauth.bitrix.info, oauth.bitrix24.tech); a refresh
answer's `domain` is the OAuth server's host, its `client_endpoint` the portal's current address;
a refresh token is single-use, so exactly one side may refresh.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from b24sim import PortalConfig, Simulator
from tests.harness import CLIENT_SECRET, Fleet, confirmation, stats, wait_for
from tests.integration.owner_app import QUEUE, RENEWED_TASK, REQUEST_TASK
from tests.integration.platform_util import (
    client,
    owner_app,
    parked_reason,
    portal,
    received,
    report,
    start,
)
from worker.errors import PortalError
from worker.flush.policy import Outcome
from worker.ingest.validation import registration
from worker.portals.registry import PortalStore, Refresh
from worker.settings import Settings
from worker.store.keys import Keys

#: no operator override: each portal's own server_endpoint decides
PER_PORTAL = {"BITRIX24_OAUTH_URL": ""}
#: the owner app's task and queue for renewed tokens (token_owner worker) ...
ANNOUNCE_TO_OWNER = {
    "DELIVERY_TOKENS_RENEWED_TASK": RENEWED_TASK,
    "DELIVERY_TOKENS_RENEWED_QUEUE": QUEUE,
}
#: ... and for token requests (token_owner producer)
ASK_OWNER = {"DELIVERY_TOKEN_REQUEST_TASK": REQUEST_TASK, "DELIVERY_TOKEN_REQUEST_QUEUE": QUEUE}


def test_refresh_goes_to_the_portals_own_oauth_server(
    fleet: Fleet, sim: Simulator, redis_url: str
) -> None:
    regional = sim.add_oauth_server()
    p = start(fleet, sim, redis_url, PortalConfig(member_id="eu", oauth_server=1), **PER_PORTAL)
    sim.expire_tokens("eu")
    p.confirm(**confirmation("eu", 1))
    wait_for(lambda: stats(client(fleet)).get("delivered") == 1, what="delivery after refresh")
    report("regional OAuth server", sim, fleet, "eu")
    assert sim.refresh_counts().get(1) == 1 and not sim.refresh_counts().get(0)
    stored = portal(fleet, "eu")
    assert stored["server_endpoint"] == regional.server_endpoint
    assert stored["domain"] == "eu.bitrix24.test", "the answer's domain is the OAuth server's"


def test_the_operators_oauth_url_overrides_every_portals_server(
    fleet: Fleet, sim: Simulator, redis_url: str
) -> None:
    sim.add_oauth_server()
    p = start(fleet, sim, redis_url, PortalConfig(member_id="eu", oauth_server=1))
    sim.expire_tokens("eu")
    p.confirm(**confirmation("eu", 1))
    wait_for(lambda: stats(client(fleet)).get("delivered") == 1, what="delivery after refresh")
    report("BITRIX24_OAUTH_URL set", sim, fleet, "eu")
    assert sim.refresh_counts().get(0) == 1 and not sim.refresh_counts().get(1)


def test_a_server_endpoint_outside_the_allowlist_gets_no_request_and_parks(
    fleet: Fleet, sim: Simulator, redis_url: str
) -> None:
    sim.add_oauth_server()  # the portal's "own" server, on a port the allowlist does not name
    main_port = urlsplit(sim.base_url).port
    rogue = urlsplit(sim.oauth_server(1).base_url).netloc
    p = start(
        fleet,
        sim,
        redis_url,
        PortalConfig(member_id="rogue", oauth_server=1),
        BITRIX24_OAUTH_HOSTS=f"127.0.0.1:{main_port}",
        **PER_PORTAL,
    )
    wait_for(lambda: parked_reason(fleet, "rogue") == "OAUTH_HOST_NOT_ALLOWED", what="parking")
    sim.expire_tokens("rogue")
    p.confirm(**confirmation("rogue", 1))
    wait_for(lambda: stats(client(fleet)).get("ingested") == 1, what="ingest")
    report("server_endpoint not allowed", sim, fleet, "rogue")
    assert sim.refresh_requests() == [], "not one request reached any token endpoint"
    assert sim.calls("rogue") == [], "a parked portal is not called"
    logs = fleet.logs()
    assert rogue in logs and '"alert": true' in logs
    assert CLIENT_SECRET not in logs


def test_worker_owned_tokens_are_announced_after_each_refresh(
    fleet: Fleet, sim: Simulator, redis_url: str, tmp_path: Path
) -> None:
    with owner_app(redis_url, tmp_path) as r:
        p = start(fleet, sim, redis_url, **ANNOUNCE_TO_OWNER)
        sim.expire_tokens("p1")
        p.confirm(**confirmation("p1", 1))
        got = wait_for(lambda: received(r), what="the renewed-tokens task")
        report("token_owner worker", sim, fleet, "p1")
        print(f"  the owner app received: {[g['task'] for g in got]}")
    current = sim.credentials("p1")
    assert len(got) == 1 and got[0]["task"] == RENEWED_TASK
    assert got[0]["kwargs"] == {
        "member_id": "p1",
        "domain": "p1.bitrix24.test",
        "client_endpoint": current.client_endpoint,
        "server_endpoint": current.server_endpoint,
        "access_token": current.access_token,
        "refresh_token": current.refresh_token,
        "expires_in": current.expires_in,
    }
    assert current.access_token not in fleet.logs()


def test_producer_owned_tokens_are_requested_once_per_version_never_refreshed(
    fleet: Fleet, sim: Simulator, redis_url: str, tmp_path: Path
) -> None:
    with owner_app(redis_url, tmp_path) as r:
        p = start(fleet, sim, redis_url, register={"token_owner": "producer"}, **ASK_OWNER)
        version = int(portal(fleet, "p1")["version"])
        sim.expire_tokens("p1")
        for line in (1, 2, 3):  # three groups hit expired_token
            p.confirm(**confirmation("p1", line, line=line))
        wait_for(lambda: parked_reason(fleet, "p1") == "WAITING_FOR_TOKENS", what="parking")
        wait_for(lambda: received(r), what="the token request")
        wait_for(lambda: stats(client(fleet)).get("ingested") == 3, what="ingest")
        assert sim.counters("p1")["refreshes"] == 0, "the worker never spends the refresh token"
        # the owner answers with portal.register, bringing fresh tokens
        fresh = sim.issue_credentials("p1").as_register_kwargs()
        p.register_portal(**fresh, token_owner="producer")
        wait_for(lambda: stats(client(fleet)).get("delivered") == 3, what="delivery")
        report("token_owner producer", sim, fleet, "p1")
        requests = [g for g in received(r) if g["task"] == REQUEST_TASK]
    assert requests == [
        {"task": REQUEST_TASK, "kwargs": {"member_id": "p1", "token_version": version}}
    ]
    assert sim.counters("p1")["refreshes"] == 0


def test_a_refresh_answer_replaces_the_stored_endpoints_but_not_the_domain(
    sim: Simulator, settings: Settings, r: redis.Redis
) -> None:
    regional = sim.add_oauth_server()
    creds = sim.add_portal(PortalConfig(member_id="m1", oauth_server=1))
    store = PortalStore(r, dataclasses.replace(settings, oauth_url=None))
    store.register(registration(creds.as_register_kwargs()))
    moved_to = sim.move_portal("m1")  # the portal's address changed since its registration
    stored = {k.decode(): v.decode() for k, v in r.hgetall(Keys().portal("m1")).items()}
    assert store.refresh("m1", int(stored["version"])) is Refresh.REFRESHED
    after = {k.decode(): v.decode() for k, v in r.hgetall(Keys().portal("m1")).items()}
    print(f"\n[refresh answer endpoints] {stored['client_endpoint']} -> {after['client_endpoint']}")
    assert after["client_endpoint"] == moved_to
    assert after["server_endpoint"] == regional.server_endpoint
    assert after["domain"] == "m1.bitrix24.test", "the answer's domain is the OAuth server's host"
    assert [x.server for x in sim.refresh_requests()] == [1]


def test_a_refresh_toward_a_host_no_longer_allowed_is_refused_before_any_connection(
    sim: Simulator, settings: Settings, r: redis.Redis
) -> None:
    sim.add_oauth_server()
    creds = sim.add_portal(PortalConfig(member_id="m1", oauth_server=1))
    per_portal = dataclasses.replace(settings, oauth_url=None)
    PortalStore(r, per_portal).register(registration(creds.as_register_kwargs()))
    # the operator narrowed the allowlist since the portal registered
    main_only = dataclasses.replace(
        per_portal, oauth_hosts=f"127.0.0.1:{urlsplit(sim.base_url).port}"
    )
    version = int(r.hget(Keys().portal("m1"), "version") or 0)
    with pytest.raises(PortalError) as refused:
        PortalStore(r, main_only).refresh("m1", version)
    assert refused.value.code == "OAUTH_HOST_NOT_ALLOWED"
    assert refused.value.outcome is Outcome.DENIED
    assert sim.refresh_requests() == [], "the secret went nowhere"

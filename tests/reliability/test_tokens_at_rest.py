"""Trust boundaries with real workers: tokens encrypted at rest (and key rotation), and a portal
whose endpoint resolves to a disallowed network parked instead of called."""

from __future__ import annotations

import json
import subprocess
import sys

import redis
from cryptography.fernet import Fernet

from b24sim import PortalConfig, Simulator
from tests.harness import ROOT, Fleet, confirmation, delivered_ids, producer, stats, wait_for
from worker.store.keys import Keys

K1, K2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _every_value(r: redis.Redis) -> str:
    """Every key and every value in the database, as one text (what a Redis reader sees)."""
    out: list[str] = []
    for key in r.scan_iter(count=1000):
        kind = r.type(key).decode()
        values: object = kind
        if kind == "string":
            values = r.get(key)
        elif kind == "hash":
            values = r.hgetall(key)
        elif kind == "list":
            values = r.lrange(key, 0, -1)
        elif kind == "set":
            values = r.smembers(key)
        elif kind == "zset":
            values = r.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            values = r.xrange(key)
        out.append(f"{key!r} {values!r}")
    return "\n".join(out)


def _stored(r: redis.Redis, member_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(Keys().portal(member_id)).items()}


def _opens_with(key: str, stored: str) -> str:
    assert stored.startswith("fernet:"), "stored encrypted"
    return Fernet(key).decrypt(stored.removeprefix("fernet:").encode()).decode()


def _drained(r: redis.Redis) -> bool:
    return r.llen("celery") == 0 and r.llen("flush") == 0 and r.hlen("unacked") == 0


def test_no_token_is_readable_in_redis_after_a_run(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    fleet.start(concurrency=2, beat=True, DELIVERY_TOKEN_KEYS=K1)
    p = producer(redis_url)
    tokens: set[str] = set()
    members = ("enc1", "enc2")
    for mid in members:
        creds = sim.add_portal(PortalConfig(member_id=mid))
        tokens |= {creds.access_token, creds.refresh_token}
        p.register_portal(**creds.as_register_kwargs())
    for round_ in range(2):  # the second round refreshes every portal's tokens first
        if round_:
            sim.expire_tokens()
        for mid in members:
            p.confirm(**confirmation(mid, 1 + round_))
        wait_for(
            lambda n=round_: all(len(delivered_ids(sim, m)) > n for m in members),  # type: ignore[misc]
            timeout_s=30,
            what="deliveries",
        )
    for mid in members:
        creds = sim.credentials(mid)
        tokens |= {creds.access_token, creds.refresh_token}
    wait_for(lambda: _drained(r), what="the broker's queues and unacked hash to drain")
    corpus = _every_value(r)
    found = sorted(t[:8] for t in tokens if t in corpus)
    refreshes = sum(sim.counters(m)["refreshes"] for m in members)
    print(
        f"\n[at-rest] keys={len(list(r.scan_iter(count=1000)))} chars={len(corpus)} "
        f"tokens={len(tokens)} refreshes={refreshes} found={found}"
    )
    assert refreshes >= 2 and stats(r)["token_refreshes"] >= 2
    assert not found, f"tokens readable in Redis: {found}"
    for mid in members:  # ...and what is stored is the current pair, encrypted with the key
        stored, creds = _stored(r, mid), sim.credentials(mid)
        assert _opens_with(K1, stored["access_token"]) == creds.access_token
        assert _opens_with(K1, stored["refresh_token"]) == creds.refresh_token
    assert "tokens are stored in plaintext" not in fleet.logs()


def _rotate(fleet: Fleet, keys: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "rotate-keys"],
        cwd=ROOT,
        env=fleet.environment(DELIVERY_TOKEN_KEYS=keys),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_key_rotation_with_both_keys_live(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = producer(redis_url)
    creds = sim.add_portal(PortalConfig(member_id="rot"))
    fleet.start(concurrency=1, beat=True, DELIVERY_TOKEN_KEYS=K1)
    p.register_portal(**creds.as_register_kwargs())
    p.confirm(**confirmation("rot", 1))
    wait_for(lambda: delivered_ids(sim, "rot") == [1], what="delivery with K1")
    fleet.stop()

    # a worker without the key that wrote the tokens refuses to start, and says why
    refused = fleet.spawn(concurrency=1, DELIVERY_TOKEN_KEYS=K2)
    assert refused.process.wait(60) != 0
    assert "refusing to start: portal rot:" in refused.log()
    assert "not in DELIVERY_TOKEN_KEYS" in refused.log()

    # the new key first, the old one still listed: old tokens read, new ones written with K2
    fleet.start(concurrency=1, beat=True, DELIVERY_TOKEN_KEYS=f"{K2},{K1}")
    p.confirm(**confirmation("rot", 2))
    wait_for(lambda: delivered_ids(sim, "rot") == [1, 2], what="delivery with K2,K1")
    assert _rotate(fleet, f"{K2},{K1}") == {"portals": 1, "rewritten": 1, "unreadable": []}
    assert _rotate(fleet, f"{K2},{K1}")["rewritten"] == 0, "nothing left to rewrite"
    stored = _stored(r, "rot")
    assert _opens_with(K2, stored["access_token"]) == sim.credentials("rot").access_token
    assert _opens_with(K2, stored["refresh_token"]) == sim.credentials("rot").refresh_token
    fleet.stop()

    # the old key dropped: tokens still read, and a refresh works with the new key alone
    fleet.start(concurrency=1, beat=True, DELIVERY_TOKEN_KEYS=K2)
    sim.expire_tokens()
    p.confirm(**confirmation("rot", 3))
    wait_for(lambda: delivered_ids(sim, "rot") == [1, 2, 3], what="delivery with K2 alone")
    assert sim.counters("rot")["refreshes"] >= 1
    assert _opens_with(K2, _stored(r, "rot")["access_token"]) == sim.credentials("rot").access_token
    print(f"\n[rotation] refreshes={sim.counters('rot')['refreshes']} refused_log_ok=True")


def test_an_endpoint_on_a_disallowed_network_parks_the_portal(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    """Production's default (public only): `localhost` resolves to loopback, so the portal is
    parked with the reason and nothing is sent; a loopback literal is refused at registration."""
    worker = fleet.start(
        concurrency=1,
        beat=True,
        DELIVERY_ALLOWED_ENDPOINT_NETWORKS="public",
        BITRIX24_OAUTH_URL="https://oauth.bitrix.info/oauth/token/",  # never reached here
    )
    port = sim.base_url.rsplit(":", 1)[1]
    p = producer(redis_url)
    creds = sim.add_portal(PortalConfig(member_id="near"))
    named = {
        **creds.as_register_kwargs(),
        "client_endpoint": f"https://localhost:{port}/near/rest/",
    }
    p.register_portal(**named)
    literal = {**named, "member_id": "lit", "client_endpoint": f"http://127.0.0.1:{port}/x/rest/"}
    p.register_portal(**literal)
    p.confirm(**confirmation("near", 1))
    wait_for(lambda: _stored(r, "near").get("block_reason"), what="the portal parked")
    wait_for(lambda: stats(r).get("rejected", 0) >= 1, what="the literal's rejection")
    reason = _stored(r, "near")["block_reason"]
    rejected = [json.loads(x) for x in r.lrange("b24d:rejected", 0, -1)]
    print(f"\n[networks] parked: {reason!r} rejected: {[x['error'] for x in rejected]}")
    assert "ENDPOINT_REFUSED" in reason
    assert sim.counters("near")["calls"] == 0
    assert not r.exists(Keys().portal("lit"))
    assert any("when loopback is allowed" in x["error"] for x in rejected)
    assert "tokens are stored in plaintext" in worker.log()  # no keys: the start-up warning
    assert '"alert": true' in worker.log() and "localhost" in worker.log()

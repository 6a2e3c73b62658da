"""Secrets never leak (logs, task events, rejected and dead-letter records, exceptions), and a
token is only ever sent to the endpoint the portal registered."""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any

import pytest
import redis

from b24sim import Fault, PortalConfig, Simulator
from tests.harness import (
    CLIENT_SECRET,
    Fleet,
    confirmation,
    portal_hash,
    producer,
    rejected_records,
    stats,
    wait_for,
)
from tests.reliability.util import spawn, wait_ready
from worker.errors import InvalidInput
from worker.store.keys import Keys


class _Events:
    """Capture every Celery event (what Flower shows) in a background thread."""

    def __init__(self, app: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.conn = app.connection()
        self.receiver = app.events.Receiver(self.conn, handlers={"*": self.events.append})
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # stopping the receiver ends the capture
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> _Events:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.receiver.should_stop = True
        self.thread.join(5)
        self.conn.release()


def test_no_secret_appears_anywhere(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    secrets: set[str] = {CLIENT_SECRET}
    p = producer(redis_url)
    workers = [spawn(fleet, concurrency=2, beat=True)]
    wait_ready(workers)
    # as Flower does while it runs (workers send no task events else); replies: they have it
    p.app.control.enable_events(reply=True, timeout=5.0)
    with _Events(p.app) as events:
        creds = {
            "s1": sim.add_portal(PortalConfig(member_id="s1")),
            "s2": sim.add_portal(PortalConfig(member_id="s2")),
            "s3": sim.add_portal(PortalConfig(member_id="s3")),
        }
        for c in creds.values():
            secrets |= {c.access_token, c.refresh_token}
            p.register_portal(**c.as_register_kwargs())
        # a rejected registration with a bad endpoint but real tokens
        leaked = sim.issue_credentials("s1")
        secrets |= {leaked.access_token, leaked.refresh_token}
        p.app.send_task(
            "portal.register",
            kwargs={**leaked.as_register_kwargs(), "client_endpoint": "http://evil.example/rest/"},
        )
        # and one whose payload is a repr-ish string carrying a token
        p.app.send_task(
            "delivery.confirm",
            kwargs={**confirmation("s1", 5), "auth": f"access_token={leaked.access_token}"},
        )
        wait_for(lambda: portal_hash(r, "s3").get("version"), what="registrations")
        sim.inject(Fault(error="ERROR_ARGUMENT", portal="s2"))  # permanent: dead letters
        sim.revoke_refresh("s3")
        for round_ in range(3):  # refreshes (s1), a dead letter (s2), invalid_grant (s3)
            sim.expire_tokens()
            for mid in creds:
                p.confirm(**confirmation(mid, 10 * round_ + 1, line=1 + round_))
            wait_for(
                lambda n=round_: len(sim.accepted("s1")) >= n + 1,  # type: ignore[misc]
                timeout_s=30,
                what="s1 delivered",
            )
            for mid in creds:
                stored = portal_hash(r, mid)
                secrets |= {stored.get("access_token", ""), stored.get("refresh_token", "")}
        wait_for(lambda: r.hlen(Keys().dead_data) >= 1, what="a dead letter")
        wait_for(lambda: portal_hash(r, "s3").get("block_reason"), what="s3 parked")
        wait_for(lambda: stats(r).get("rejected", 0) >= 2, what="the rejections")
        wait_for(lambda: len(events.events) > 20, what="task events")
    for mid in creds:
        c = sim.credentials(mid)
        secrets |= {c.access_token, c.refresh_token}
    secrets.discard("")
    corpus = {
        "logs": fleet.logs(),
        "events": json.dumps(events.events, default=repr),
        "rejected": json.dumps([x.decode() for x in r.lrange(Keys().rejected, 0, -1)]),
        "dead": json.dumps([v.decode() for v in r.hvals(Keys().dead_data)]),
        "stats": json.dumps({k.decode(): v.decode() for k, v in r.hgetall(Keys().stats).items()}),
    }
    found = {where: [s[:8] for s in secrets if s in text] for where, text in corpus.items()}
    leaking_events = sorted(
        {
            f"{e.get('type')}:{e.get('name') or e.get('uuid', '')[:8]}"
            for e in events.events
            if any(s in json.dumps(e, default=repr) for s in secrets)
        }
    )
    print(f"  events carrying a secret: {leaking_events}")
    print(
        f"\n[secrets] secrets={len(secrets)} refreshes={sim.counters('s1')['refreshes']} "
        f"events={len(events.events)} log_chars={len(corpus['logs'])} "
        f"rejected={r.llen(Keys().rejected)} dead={r.hlen(Keys().dead_data)} "
        f"found={ {k: v for k, v in found.items() if v} }"
    )
    assert sim.counters("s1")["refreshes"] >= 2
    assert any(e.get("type") == "task-received" for e in events.events)
    assert not any(found.values()), f"secrets leaked into: {found}"
    rejected = rejected_records(r)
    assert any(rec["field"] == "client_endpoint" for rec in rejected)
    assert any("***" in rec["payload"] for rec in rejected), "the record shows tokens masked"


BAD_ENDPOINTS = [
    "http://evil.example/rest/",
    "http://10.0.0.5/rest/",
    "http://127.0.0.1.nip.io/rest/",
    "ftp://p.bitrix24.test/rest/",
    "not a url",
    "//p.bitrix24.test/rest/",
    "https://user:pass@p.bitrix24.test/rest/",
    "javascript:alert(1)",
]


def test_tokens_only_go_to_the_registered_endpoint(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    wait_ready([spawn(fleet, concurrency=2, beat=True)])
    p = producer(redis_url)
    good = sim.add_portal(PortalConfig(member_id="good"))
    other = sim.add_portal(PortalConfig(member_id="other"))  # never registered with the worker
    p.register_portal(**good.as_register_kwargs())
    for n, endpoint in enumerate(BAD_ENDPOINTS):
        bad = {**good.as_register_kwargs(), "member_id": f"bad{n}", "client_endpoint": endpoint}
        with pytest.raises(InvalidInput, match="client_endpoint"):
            p.register_portal(**bad)  # the producer refuses it before sending...
        p.app.send_task("portal.register", kwargs=bad)  # ...and so does the worker
    smuggled = [
        {"client_endpoint": other.client_endpoint},
        {"auth": other.access_token},
        {"domain": "other.bitrix24.test"},
        {"client_endpoint": other.client_endpoint, "auth": other.access_token},
    ]
    for n, extra in enumerate(smuggled):
        p.app.send_task("delivery.confirm", kwargs={**confirmation("good", 100 + n), **extra})
    for i in range(5):
        p.confirm(**confirmation("good", 1 + i))
    wait_for(
        lambda: (
            stats(r).get("rejected", 0) >= len(BAD_ENDPOINTS) + len(smuggled)
            and len(sim.accepted("good")) >= 5
        ),
        what="rejections and deliveries",
    )
    rejected = rejected_records(r)
    fields = sorted(rec["field"] for rec in rejected)
    print(
        f"\n[endpoints] bad_registrations={len(BAD_ENDPOINTS)} smuggled={len(smuggled)} "
        f"rejected={stats(r).get('rejected')} good_calls={sim.counters('good')['calls']} "
        f"other_calls={sim.counters('other')['calls']} fields={sorted(set(fields))}"
    )
    assert stats(r)["rejected"] == len(BAD_ENDPOINTS) + len(smuggled)
    assert fields.count("client_endpoint") >= len(BAD_ENDPOINTS)
    for n in range(len(BAD_ENDPOINTS)):
        assert not r.exists(Keys().portal(f"bad{n}")), "no portal hash for a refused endpoint"
    assert sorted(int(a.im["message_id"]) for a in sim.accepted("good")) == [1, 2, 3, 4, 5]
    assert sim.counters("other")["calls"] == 0

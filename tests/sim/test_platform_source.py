"""What the platform's own source says, where the docs are silent or differ; one fact per test.

Sources: the ``rest`` module (``rest_provider.php`` ``methodsBatch``, ``rest_util.php``
``ParseBatchQuery``, ``lib/oauthexception.php``, ``lib/oauth/auth.php``), ``limits.md``, and
PHP's ``parse_str`` with its ``max_input_vars`` default (1000).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from b24sim import Credentials, Fault, OperatingMeter, PortalConfig, Simulator
from worker.flush.batch import COMMAND_MAX_VARS, plan
from worker.flush.batch import command as encode

from .conftest import call, payload
from .test_batch import batch, command


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_operating_window_counts_from_the_first_call_not_whole_minutes() -> None:
    """limits.md: ten minutes from the first call in the oldest bucket, not aligned to minutes."""
    clock = Clock(1000.5)  # not on a minute (960, 1020)
    m = OperatingMeter(limit_s=3, bucket_s=60, n_buckets=10, clock=clock)
    m.add(2)
    clock.t = 1059.0  # the same bucket: opened at 1000.5, 60 s long
    total, reset_at = m.add(2)
    assert (total, reset_at) == (4, 1600.5)  # 1000.5 + 600, not 1560 or 1620
    clock.t = 1600.4
    assert m.check()[0]
    clock.t = 1600.5
    assert m.check()[:2] == (False, 0.0)


def test_a_later_bucket_opens_at_its_own_first_call() -> None:
    clock = Clock(1000.5)
    m = OperatingMeter(limit_s=3, bucket_s=60, n_buckets=10, clock=clock)
    m.add(2)
    clock.t = 1070.25  # past the first bucket's 60 s: a new one opens here
    m.add(2)
    assert m.check() == (True, 4.0, 1600.5)
    clock.t = 1600.5  # the first bucket left; the second stays until 1670.25
    assert m.check() == (False, 2.0, 1670.25)


def test_the_outer_batch_adds_no_operating_time_and_takes_one_slot(
    sim: Simulator, session: requests.Session
) -> None:
    """limits.md: the outer `batch` has no operating time of its own (each command is metered
    under its method); it is still one request in the leaky bucket."""
    c = sim.add_portal(PortalConfig(member_id="op", operating_per_call_s=1.0, rate_per_s=0.0001))
    r = batch(session, c, {"a": command(1), "b": command(2), "c": command(3)})
    assert r.status_code == 200
    assert r.json()["time"]["operating"] == pytest.approx(3.0)  # three commands, nothing more
    assert set(sim.state()["portals"]["op"]["operating"]) == {"imconnector.send.status.delivery"}
    assert sim.bucket_level("op") == pytest.approx(1.0, abs=0.01)


def test_a_json_body_is_decoded_only_with_its_content_type(
    creds: Credentials, session: requests.Session
) -> None:
    """The rest module reads a JSON body only when Content-Type is application/json; otherwise
    the body is a form, and a JSON text there gives no parameters (ERROR_ARGUMENT)."""
    body = json.dumps(payload(creds))
    as_json = session.post(
        creds.client_endpoint + "imconnector.send.status.delivery",
        data=body,
        headers={"Content-Type": "application/json; charset=utf-8"},
        timeout=10,
    )
    assert as_json.status_code == 200
    as_text = session.post(
        creds.client_endpoint + "imconnector.send.status.delivery",
        data=body,
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert (as_text.status_code, as_text.json()["error"]) == (401, "NO_AUTH_FOUND")


@pytest.mark.parametrize("code", ["insufficient_scope", "user_access_error", "expired_token"])
def test_the_oauth_checks_errors_come_with_401(
    sim: Simulator, creds: Credentials, session: requests.Session, code: str
) -> None:
    """rest/lib/oauthexception.php: every OAuth check error is HTTP 401 (the docs list
    insufficient_scope and user_access_error as 403)."""
    sim.inject(Fault(error=code, count=1, portal="m1"))
    r = call(session, creds)
    assert (r.status_code, r.json()["error"]) == (401, code)


@pytest.mark.parametrize("code", ["CONNECTION_ERROR", "APPLICATION_NOT_FOUND"])
def test_the_oauth_servers_errors_of_the_portal_come_with_401(
    sim: Simulator, creds: Credentials, session: requests.Session, code: str
) -> None:
    """rest/lib/oauth/auth.php: the portal could not reach its authorization server
    (CONNECTION_ERROR), or the application is not known to it (APPLICATION_NOT_FOUND)."""
    sim.inject(Fault(error=code, count=1, portal="m1"))
    r = call(session, creds)
    assert (r.status_code, r.json()["error"]) == (401, code)
    assert call(session, creds).status_code == 200  # CONNECTION_ERROR passes; the call works


def _elements(n: int, ids: int) -> list[dict[str, Any]]:
    return [
        {
            "im": {"chat_id": 323, "message_id": 1000 + i},
            "message": {"id": [f"ext-{i}-{k}" for k in range(ids)], "date": 1738065600},
            "chat": {"id": "channel-1"},
        }
        for i in range(n)
    ]


def test_parse_str_drops_the_variables_past_max_input_vars_under_a_success(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    """rest_util.php ParseBatchQuery reads a command with PHP's parse_str, which stops at
    max_input_vars (1000) without an error: a command over it loses its last elements while
    the answer says SUCCESS. (Elements of 2 variables: 2 + 499 * 2 = 1000 exactly.)"""
    elements = [{"im": {"chat_id": 1, "message_id": 1 + i}} for i in range(600)]
    r = batch(session, creds, {"g0": encode("myconnector", 107, elements)})
    assert r.json()["result"]["result"]["g0"] == {"SUCCESS": True, "DATA": []}
    assert len(sim.accepted("m1")) == 499  # 101 confirmations lost, silently
    assert sim.counters("m1")["input_vars_truncated"] == 1


def test_our_planned_commands_never_lose_an_element(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    """The same kind of load, planned by worker/flush/batch.py: every command under the cap,
    every element accepted once."""
    elements = _elements(50, ids=100)  # 104 variables each: 5202 for the group
    got = plan([("myconnector", 107, elements)])
    assert all(p.variables <= COMMAND_MAX_VARS for p in got.commands.values())
    r = batch(session, creds, {name: p.query for name, p in got.commands.items()})
    assert not r.json()["result"]["result_error"]
    accepted = sim.accepted("m1")
    assert sorted(int(a.im["message_id"]) for a in accepted) == list(range(1000, 1050))
    assert all(len(a.message["id"]) == 100 for a in accepted)
    assert sim.counters("m1")["input_vars_truncated"] == 0

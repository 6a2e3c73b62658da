"""``batch`` (settings/how-to-call-rest-api/batch.md, the rest module source).

Facts checked: up to 50 commands run per request (more: the first 50 run, each extra one gets
ERROR_BATCH_LENGTH_EXCEEDED in result_error, HTTP 200: rest_provider.php methodsBatch), counted as
one request by the leaky bucket; body ``{"halt", "cmd": {name: "method?query"}, "auth"}`` with
nested arrays encoded PHP-style (``MESSAGES[0][im][chat_id]=323``, as b24pysdk and fast_bitrix24
encode them); answer HTTP 200 with result, result_error, result_total, result_next, result_time;
``halt`` stops at the first error; nested ``batch`` is refused; commands inherit the request's
auth. Whether imconnector.send.status.delivery is allowed inside batch is not documented: a switch
refuses it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from b24sim import METHOD, Credentials, Fault, PortalConfig, Simulator

from .conftest import TIME_KEYS, call


def command(line: int, n: int = 1, connector: str = "myconnector", **extra: str) -> str:
    """One command the way the SDKs build it: method?PHP-style nested query."""
    pairs: list[tuple[str, Any]] = [("CONNECTOR", connector), ("LINE", line)]
    for i in range(n):
        pairs += [
            (f"MESSAGES[{i}][im][chat_id]", 323),
            (f"MESSAGES[{i}][im][message_id]", 1000 * line + i),
            (f"MESSAGES[{i}][message][id][0]", f"ext-{line}-{i}"),
        ]
    pairs += list(extra.items())
    return f"{METHOD}?{urlencode(pairs)}"


def batch(
    session: requests.Session, creds: Credentials, cmd: Any, halt: int = 0
) -> requests.Response:
    body = {"halt": halt, "cmd": cmd, "auth": creds.access_token}
    return session.post(creds.client_endpoint + "batch", json=body, timeout=10)


def test_answer_shape_and_nested_arrays(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    r = batch(session, creds, {"g1": command(1, n=2), "g2": command(2)})
    assert r.status_code == 200, r.text
    data = r.json()
    res = data["result"]
    assert set(res) == {"result", "result_error", "result_total", "result_next", "result_time"}
    assert res["result"] == {
        "g1": {"SUCCESS": True, "DATA": []},
        "g2": {"SUCCESS": True, "DATA": []},
    }
    assert res["result_error"] == []  # an empty PHP array
    assert set(res["result_time"]["g1"]) == TIME_KEYS
    assert set(data["time"]) == TIME_KEYS
    recs = sim.accepted("m1")
    assert [(r.line, r.im["message_id"], r.via, r.command) for r in recs] == [
        (1, "1000", "batch", "g1"),
        (1, "1001", "batch", "g1"),
        (2, "2000", "batch", "g2"),
    ]
    assert recs[0].message == {"id": ["ext-1-0"]}
    assert recs[0].im == {"chat_id": "323", "message_id": "1000"}


def test_form_encoded_body(sim: Simulator, creds: Credentials, session: requests.Session) -> None:
    form = {"halt": "0", "cmd[a]": command(5), "cmd[b]": command(6), "auth": creds.access_token}
    r = session.post(creds.client_endpoint + "batch.json", data=form, timeout=5)
    assert r.status_code == 200, r.text
    assert set(r.json()["result"]["result"]) == {"a", "b"}
    assert len(sim.accepted("m1")) == 2


def test_list_of_commands_gives_lists(creds: Credentials, session: requests.Session) -> None:
    r = batch(session, creds, [command(1), command(2)])
    assert r.json()["result"]["result"] == [{"SUCCESS": True, "DATA": []}] * 2


def test_one_slot_of_the_bucket(sim: Simulator, session: requests.Session) -> None:
    c = sim.add_portal(PortalConfig(member_id="b", rate_per_s=0.0001, burst=2))
    cmds = {f"c{i}": command(i) for i in range(50)}
    assert batch(session, c, cmds).status_code == 200
    assert sim.bucket_level("b") == pytest.approx(1.0, abs=0.01)
    assert len(sim.accepted("b")) == 50
    assert sim.counters("b")["batch_commands"] == 50
    assert call(session, c).status_code == 200
    r = batch(session, c, cmds)
    assert (r.status_code, r.json()["error"]) == (503, "QUERY_LIMIT_EXCEEDED")


def test_more_than_50_commands_run_the_first_50_and_refuse_the_rest(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    """rest_provider.php methodsBatch: commands past the 50th are not run; each gets
    ERROR_BATCH_LENGTH_EXCEEDED in result_error, and the request is still HTTP 200."""
    r = batch(session, creds, {f"c{i}": command(i + 1) for i in range(53)})
    assert r.status_code == 200
    res = r.json()["result"]
    assert set(res["result"]) == {f"c{i}" for i in range(50)}
    assert res["result_error"] == {
        f"c{i}": {
            "error": "ERROR_BATCH_LENGTH_EXCEEDED",
            "error_description": "Max batch length exceeded",
        }
        for i in (50, 51, 52)
    }
    assert sorted(r.line for r in sim.accepted("m1")) == list(range(1, 51))
    counters = sim.counters("m1")
    assert (counters["batch_commands"], counters["batch_length_exceeded"]) == (50, 3)


def test_each_command_checked_on_its_own(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    cmds = {
        "ok": command(1),
        "no_line": f"{METHOD}?CONNECTOR=x&MESSAGES[0][im][chat_id]=1",
        "nested": "batch?cmd[x]=y",
        "other": "im.message.add?x=1",
        "ok2": command(2),
    }
    res = batch(session, creds, cmds).json()["result"]
    assert set(res["result"]) == {"ok", "ok2"}
    assert {k: v["error"] for k, v in res["result_error"].items()} == {
        "no_line": "ERROR_ARGUMENT",
        "nested": "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "other": "ERROR_METHOD_NOT_FOUND",
    }
    assert all(set(v) == {"error", "error_description"} for v in res["result_error"].values())
    assert [r.line for r in sim.accepted("m1")] == [1, 2]


def test_halt_stops_at_the_first_error(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    cmds = {"a": command(1), "b": f"{METHOD}?LINE=1", "c": command(3)}
    res = batch(session, creds, cmds, halt=1).json()["result"]
    assert list(res["result"]) == ["a"]
    assert list(res["result_error"]) == ["b"]
    assert [r.line for r in sim.accepted("m1")] == [1]


def test_strict_mode_applies_per_command(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    bad = f"{METHOD}?CONNECTOR=x&LINE=1&MESSAGES[0][im][chat_id]=1"
    assert batch(session, creds, {"a": bad}).json()["result"]["result_error"] == []
    sim.strict = True
    errors = batch(session, creds, {"a": bad}).json()["result"]["result_error"]
    assert errors["a"]["error"] == "ERROR_ARGUMENT"


@pytest.mark.parametrize("code", ["ERROR_BATCH_METHOD_NOT_ALLOWED", "WRONG_AUTH_TYPE"])
def test_refusal_switch(
    sim: Simulator, creds: Credentials, session: requests.Session, code: str
) -> None:
    """Unconfirmed whether the method is allowed in batch: the switch refuses it per command,
    while a direct call still works."""
    sim.refuse_in_batch("m1", code)
    res = batch(session, creds, {"a": command(1), "b": command(2)}).json()["result"]
    assert res["result"] == []
    assert {k: v["error"] for k, v in res["result_error"].items()} == {"a": code, "b": code}
    assert call(session, creds).status_code == 200
    sim.refuse_in_batch("m1", None)
    assert batch(session, creds, {"a": command(1)}).json()["result"]["result_error"] == []


def test_refusal_via_control_endpoint(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    r = session.post(f"{sim.base_url}/_sim/refuse_in_batch", json={"portal": "m1"}, timeout=5)
    assert r.status_code == 200
    assert sim.portal_config("m1").batch_refuse == "ERROR_BATCH_METHOD_NOT_ALLOWED"


def test_auth_is_the_requests(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    """Commands inherit the request's auth: a bad token fails the whole request."""
    body = {"cmd": {"a": command(1)}, "auth": "bogus"}
    r = session.post(creds.client_endpoint + "batch", json=body, timeout=5)
    assert (r.status_code, r.json()["error"]) == (401, "NO_AUTH_FOUND")
    (rec,) = sim.calls("m1")
    assert (rec.method, rec.via, rec.outcome) == ("batch", "batch", "NO_AUTH_FOUND")


def test_fault_on_single_commands(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    """Each command is executed on its own, so one can fail while the others succeed."""
    sim.inject(Fault(error="INTERNAL_SERVER_ERROR", target="batch_command", count=1))
    res = batch(session, creds, {"a": command(1), "b": command(2)}).json()["result"]
    assert list(res["result_error"]) == ["a"]
    assert res["result_error"]["a"]["error"] == "INTERNAL_SERVER_ERROR"
    assert list(res["result"]) == ["b"]
    assert call(session, creds).status_code == 200  # direct calls are not commands

"""Hostile payloads: validation rejects every invalid one with `InvalidInput` naming the field
and the rule, normalises valid ones, and a real worker survives hundreds of them."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b24sim import PortalConfig, Simulator
from tests.harness import Fleet, confirmation, producer, rejected_records, stats, wait_for
from tests.reliability.util import SCALE, alive, rss_mb, spawn, wait_ready
from worker.errors import InvalidInput
from worker.ingest import validation

CONFIRM_PATHS = [
    ("portal",),
    ("connector",),
    ("line",),
    ("im",),
    ("im", "chat_id"),
    ("im", "message_id"),
    ("message",),
    ("message", "id"),
    ("message", "date"),
    ("chat",),
    ("chat", "id"),
]
#: values wrong for every field of the confirmation (given where the field is)
HOSTILE = [
    None,
    True,
    -1,
    0,
    2**64,
    -(2**70),
    1.5,
    float("nan"),
    "",
    " ",
    "x" * 100_000,
    "../../etc/passwd",
    "a:b:c",
    "\u202e\u0000\ud7ff",
    "😀" * 300,
    [],
    [[[[[]]]]],
    {},
    {"$where": "1"},
    {"nested": {"deep": [1, 2, {"x": None}]}},
]
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.sampled_from(HOSTILE),
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


def _valid(mid: int = 1) -> dict[str, Any]:
    return confirmation("p1", mid)


def _set(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    target = out
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value
    return out


def _drop(payload: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    target = out
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return out


def _check_outcome(payload: Any, validate: Any) -> InvalidInput | Any:
    """Either a normalised value or InvalidInput whose message is '<field> <rule>'."""
    try:
        result = validate(payload)
    except InvalidInput as exc:
        error = exc
    else:
        return result
    text = str(error)
    assert error.field and error.rule, text
    assert text == f"{error.field} {error.rule}", text
    assert text.startswith(error.field)
    assert len(text) < 400, "the message is bounded whatever the input"
    assert any(w in error.rule for w in ("must", "is required", "is not a known field")), text
    return error


def _check_confirmation(payload: dict[str, Any]) -> InvalidInput | validation.Confirmation:
    out = _check_outcome(payload, validation.confirmation)
    if isinstance(out, validation.Confirmation):
        im = out.element["im"]
        assert isinstance(im["message_id"], int) and 0 < im["message_id"] <= validation.MAX_ID
        assert isinstance(im["chat_id"], int) and im["chat_id"] > 0
        assert out.message_id == str(im["message_id"])
        assert out.group.line > 0 and isinstance(out.group.line, int)
        json.dumps(out.element)  # what goes to Redis and to the portal is JSON
        assert set(out.element) <= {"im", "message", "chat"}
    return out


FAST = settings(
    max_examples=1500 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FAST
@given(path=st.sampled_from(CONFIRM_PATHS), value=json_value)
def test_one_bad_field_names_that_field(path: tuple[str, ...], value: Any) -> None:
    payload = _set(_valid(), path, value)
    out = _check_confirmation(payload)
    if isinstance(out, InvalidInput):
        assert out.field.split(".")[0] == path[0], (path, out.field)


@FAST
@given(
    path=st.sampled_from(
        [p for p in CONFIRM_PATHS if p[0] in ("portal", "connector", "line", "im") or len(p) == 2]
    )
)
def test_a_missing_required_field_is_named(path: tuple[str, ...]) -> None:
    out = _check_confirmation(_drop(_valid(), path))
    if path[0] in ("message", "chat") and path[-1] != "id":
        return
    if path == ("message", "id"):
        assert not isinstance(out, InvalidInput)  # message.id is optional
        return
    assert isinstance(out, InvalidInput)
    assert out.field == ".".join(path) and out.rule.startswith("is required")


@FAST
@given(payload=st.dictionaries(st.text(max_size=20), json_value, max_size=8))
def test_arbitrary_payloads_raise_only_invalid_input(payload: dict[str, Any]) -> None:
    _check_confirmation(payload)
    _check_outcome(payload, validation.registration)


@FAST
@given(
    extra=st.dictionaries(
        st.text(min_size=1, max_size=30).filter(lambda k: k not in validation.CONFIRM_FIELDS),
        json_value,
        min_size=1,
        max_size=3,
    )
)
def test_unknown_fields_are_refused(extra: dict[str, Any]) -> None:
    out = _check_confirmation({**_valid(), **extra})
    assert isinstance(out, InvalidInput) and "is not a known field" in out.rule


@FAST
@given(
    mid=st.integers(min_value=1, max_value=validation.MAX_ID),
    chat=st.integers(min_value=1, max_value=validation.MAX_ID),
    line=st.integers(min_value=1, max_value=validation.MAX_ID),
    as_text=st.booleans(),
)
def test_valid_confirmations_normalise(mid: int, chat: int, line: int, as_text: bool) -> None:
    payload = confirmation("p1", mid, line=str(line) if as_text else line)  # type: ignore[arg-type]
    payload["im"]["chat_id"] = str(chat) if as_text else chat
    out = _check_confirmation(payload)
    assert isinstance(out, validation.Confirmation)
    assert out.element["im"] == {"chat_id": chat, "message_id": mid} and out.group.line == line


REGISTER_FIELDS = [
    "member_id",
    "domain",
    "client_endpoint",
    "access_token",
    "refresh_token",
    "expires_in",
    "rate_per_s",
    "rate_burst",
]


@FAST
@given(field=st.sampled_from(REGISTER_FIELDS), value=json_value)
def test_registration_bad_field(field: str, value: Any) -> None:
    base = {
        "member_id": "p1",
        "domain": "p1.bitrix24.test",
        "client_endpoint": "https://p1.bitrix24.test/rest/",
        "access_token": "a" * 48,
        "refresh_token": "r" * 48,
        "expires_in": 3600,
    }
    out = _check_outcome({**base, field: value}, validation.registration)
    if isinstance(out, InvalidInput):
        assert out.field == field, (field, out.field)
    else:
        assert out.client_endpoint.endswith("/")
        assert out.client_endpoint.startswith(
            ("https://", "http://127.0.0.1", "http://localhost", "http://[::1]")
        )


# -- through a real worker -------------------------------------------------------------------


def _hostile(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Payloads that each break one rule (checked locally before they are sent)."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        base = confirmation("bad", 900_000 + len(out), line=1 + len(out) % 3)
        kind = rng.randrange(4)
        if kind == 0:
            payload = _set(base, rng.choice(CONFIRM_PATHS), rng.choice(HOSTILE))
        elif kind == 1:
            payload = _drop(
                base, rng.choice([("portal",), ("line",), ("im",), ("im", "message_id")])
            )
        elif kind == 2:
            deep: Any = "x"
            for _ in range(rng.randrange(5, 60)):
                deep = {"d": [deep]}
            payload = {**base, rng.choice(["message", "chat", "im", "extra"]): deep}
        else:
            payload = {**base, "client_endpoint": "https://evil.example/rest/", "auth": "t" * 40}
        if any(isinstance(v, float) and v != v for v in _leaves(payload)):
            continue  # NaN is not JSON
        try:
            validation.confirmation(payload)
        except InvalidInput:
            out.append(payload)
    return out


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_worker_survives_hostile_payloads_and_delivers_the_valid_ones(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    worker = spawn(fleet, concurrency=2, beat=True)
    wait_ready([worker])
    p = producer(redis_url)
    p.register_portal(
        **sim.add_portal(
            PortalConfig(member_id="bad", rate_per_s=100, burst=500)
        ).as_register_kwargs()
    )
    rng = random.Random(1337)
    hostile = _hostile(rng, 300 * SCALE)
    bad_registrations = [
        {
            "member_id": "bad",
            "domain": "x",
            "client_endpoint": "http://evil.example/rest/",
            "access_token": "a",
            "refresh_token": "b",
        },
        {"member_id": ["bad"], "domain": 1},
        {
            "member_id": "bad",
            "domain": "x" * 10_000,
            "client_endpoint": "x",
            "access_token": None,
            "refresh_token": {},
        },
    ] * 5
    valid_ids = []
    rss_before = rss_mb(worker.process.pid)
    for n, payload in enumerate(hostile):
        p.app.send_task("delivery.confirm", kwargs=payload)
        mid = 1 + n
        p.confirm(**confirmation("bad", mid, line=1 + n % 3))  # the same groups
        valid_ids.append(mid)
        if n % 20 == 0:
            p.app.send_task(
                "portal.register", kwargs=bad_registrations[(n // 20) % len(bad_registrations)]
            )
    invalid = len(hostile) + len(range(0, len(hostile), 20))
    wait_for(
        lambda: (
            stats(r).get("rejected", 0) >= invalid
            and {int(a.im["message_id"]) for a in sim.accepted("bad")} >= set(valid_ids)
        ),
        timeout_s=120,
        interval_s=0.25,
        what="valid delivered and invalid rejected",
    )
    rss_after = rss_mb(worker.process.pid)
    s = stats(r)
    print(
        f"\n[bad input] hostile={invalid} rejected={s.get('rejected')} valid={len(valid_ids)} "
        f"delivered={len({a.im['message_id'] for a in sim.accepted('bad')})} "
        f"rss_mb={rss_before:.0f}->{rss_after:.0f} alive={alive(worker)}"
    )
    assert s.get("rejected") == invalid
    assert s.get("ingested") == len(valid_ids)
    assert alive(worker)
    # the absolute figure is ~240 MB at rest (main + 2 pool children + beat); bound the growth
    assert rss_after < rss_before + 150
    records = rejected_records(r)
    assert all(rec["field"] and rec["rule"] and len(rec["payload"]) <= 2000 for rec in records)

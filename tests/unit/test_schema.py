"""The JSON Schemas agree with the validator: one rule, two expressions.

Every accept/refuse case of the validator's tests (tests/unit/test_validation.py, its
parametrized cases read from the test functions themselves, and the hypothesis strategies of
tests/reliability/test_bad_input.py) is judged by the validator and by the schema; both must say
the same. Payloads that are not JSON (NaN, infinities) are out of a JSON Schema's reach and
skipped. The one rule left to the worker alone: the network of an IP literal endpoint host
(its refusal names `address …`), checked at registration and on every connection.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tests.harness import ROOT, run_python
from tests.harness import confirmation as payload
from tests.reliability import test_bad_input as bad
from tests.unit import test_validation as cases
from worker.errors import InvalidInput
from worker.ingest import receipt_payloads, schema
from worker.ingest.many import judge
from worker.ingest.validation import ALL_NETWORKS, confirmation, registration

PUBLIC = frozenset({"public"})
DEV = frozenset({"public", "loopback"})
AGREE = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def validator(name: str, networks: frozenset[str] = ALL_NETWORKS, **chosen: Any) -> Any:
    return _validator(
        name,
        networks,
        chosen.get("confirm_many_max", 500),
        bool(chosen.get("require_message_id", False)),
    )


@functools.cache
def _validator(name: str, networks: frozenset[str], limit: int, require: bool) -> Any:
    class Chosen:
        endpoint_networks = networks
        confirm_many_max = limit
        require_message_id = require

    document = schema.schema(name, Chosen())
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document)


def is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError):
        return False
    return True


def agree(
    name: str,
    validate: Callable[[Any], Any],
    body: Any,
    networks: frozenset[str] = ALL_NETWORKS,
    **chosen: Any,
) -> str:
    """Judge `body` both ways; the outcome (`accepted`, `refused`, `address`, `not json`)."""
    if not is_json(body):
        return "not json"
    by_schema = validator(name, networks, **chosen).is_valid(body)
    error = refusal(validate, body)
    if error is not None:
        if by_schema and error.rule.startswith("address "):
            return "address"  # an IP literal's network: the worker's rule alone
        assert not by_schema, f"schema accepts what the validator refuses ({error}): {body!r}"
        return "refused"
    errors = [e.message for e in validator(name, networks, **chosen).iter_errors(body)]
    assert by_schema, f"schema refuses what the validator accepts {errors}: {body!r}"
    return "accepted"


def refusal(validate: Callable[[Any], Any], body: Any) -> InvalidInput | None:
    try:
        validate(body)
    except InvalidInput as exc:
        return exc
    return None


def parametrized(test: Callable[..., None]) -> list[Any]:
    marks = [m for m in getattr(test, "pytestmark", []) if m.name == "parametrize"]
    assert marks, test.__name__
    return list(marks[0].args[1])


# -- tests/unit/test_validation.py, case by case -------------------------------------------


def test_the_valid_confirmation_case() -> None:
    body = payload("p1", 85911, line="107", message={"id": "ext-1", "date": 1})
    assert agree("delivery.confirm", confirmation, body) == "accepted"


@pytest.mark.parametrize("case", parametrized(cases.test_invalid_confirmations_name_field_and_rule))
def test_each_invalid_confirmation_case(case: tuple[dict[str, Any], str]) -> None:
    change, _ = case
    assert agree("delivery.confirm", confirmation, {**payload("p1", 1), **change}) == "refused"


@pytest.mark.parametrize("field", ["portal", "connector", "line", "im"])
def test_each_missing_field_case(field: str) -> None:
    body = payload("p1", 1)
    del body[field]
    assert agree("delivery.confirm", confirmation, body) == "refused"


@pytest.mark.parametrize("endpoint", parametrized(cases.test_registration_refuses_unsafe_endpoints))
def test_each_unsafe_endpoint_case(endpoint: str) -> None:
    body = {**cases.AUTH, "client_endpoint": endpoint}
    assert agree("portal.register", registration, body) == "refused"


@pytest.mark.parametrize(
    "endpoint", parametrized(cases.test_registration_accepts_https_and_loopback)
)
def test_each_accepted_endpoint_case(endpoint: str) -> None:
    body = {**cases.AUTH, "client_endpoint": endpoint}
    check = lambda b: registration(b, DEV)  # noqa: E731
    assert agree("portal.register", check, body, DEV) == "accepted"


def test_the_networks_cases() -> None:
    loopback_http = {**cases.AUTH, "client_endpoint": "http://127.0.0.1:9/x/rest/"}
    assert agree("portal.register", registration, loopback_http) == "accepted"
    public = lambda b: registration(b, PUBLIC)  # noqa: E731
    assert agree("portal.register", public, loopback_http, PUBLIC) == "refused"
    private = {**cases.AUTH, "client_endpoint": "https://10.0.0.5/rest/"}
    metadata = {**cases.AUTH, "client_endpoint": "https://169.254.169.254/rest/"}
    assert agree("portal.register", public, private, PUBLIC) == "address"
    assert agree("portal.register", registration, metadata) == "address"


@pytest.mark.parametrize(
    "case", parametrized(cases.test_registration_refuses_bad_server_endpoint_and_owner)
)
def test_each_bad_server_endpoint_or_owner_case(case: tuple[dict[str, Any], str]) -> None:
    change, _ = case
    assert agree("portal.register", registration, {**cases.AUTH, **change}) == "refused"


def test_the_kept_server_endpoint_case() -> None:
    body = {
        **cases.AUTH,
        "server_endpoint": "https://oauth.bitrix24.tech/rest/",
        "token_owner": "producer",
    }
    assert agree("portal.register", registration, body) == "accepted"
    assert agree("portal.register", registration, cases.AUTH) == "accepted"


# -- tests/reliability/test_bad_input.py, its strategies and hostile values ----------------


@AGREE
@given(path=st.sampled_from(bad.CONFIRM_PATHS), value=bad.json_value)
def test_one_bad_field(path: tuple[str, ...], value: Any) -> None:
    agree("delivery.confirm", confirmation, bad._set(bad._valid(), path, value))


@pytest.mark.parametrize("path", bad.CONFIRM_PATHS)
@pytest.mark.parametrize("value", bad.HOSTILE, ids=lambda x: repr(x)[:20])
def test_each_hostile_value(path: tuple[str, ...], value: Any) -> None:
    agree("delivery.confirm", confirmation, bad._set(bad._valid(), path, value))


@pytest.mark.parametrize("path", bad.CONFIRM_PATHS)
def test_each_missing_path(path: tuple[str, ...]) -> None:
    agree("delivery.confirm", confirmation, bad._drop(bad._valid(), path))


@AGREE
@given(body=st.dictionaries(st.text(max_size=20), bad.json_value, max_size=8))
def test_arbitrary_payloads(body: dict[str, Any]) -> None:
    agree("delivery.confirm", confirmation, body)
    agree("portal.register", registration, body)
    agree("delivery.sent", receipt_payloads.sent, body)
    agree("delivery.delivered", receipt_payloads.receipt, body)


@AGREE
@given(
    extra=st.dictionaries(st.text(min_size=1, max_size=30), bad.json_value, min_size=1, max_size=3)
)
def test_unknown_fields(extra: dict[str, Any]) -> None:
    agree("delivery.confirm", confirmation, {**bad._valid(), **extra})


@AGREE
@given(
    mid=st.integers(min_value=1, max_value=bad.validation.MAX_ID),
    line=st.integers(min_value=1, max_value=bad.validation.MAX_ID),
    as_text=st.booleans(),
    as_float=st.booleans(),
)
def test_valid_confirmations(mid: int, line: int, as_text: bool, as_float: bool) -> None:
    body = payload("p1", mid, line=str(line) if as_text else line)  # type: ignore[arg-type]
    if as_float and float(mid) <= bad.validation.MAX_ID:
        body["im"]["message_id"] = float(mid)
    assert agree("delivery.confirm", confirmation, body) == "accepted"


@AGREE
@given(field=st.sampled_from(bad.REGISTER_FIELDS), value=bad.json_value)
def test_registration_bad_field(field: str, value: Any) -> None:
    base = {**cases.AUTH, "client_endpoint": "https://p1.bitrix24.test/rest/"}
    agree("portal.register", registration, {**base, field: value})


@AGREE
@given(
    url=st.text(max_size=60)
    | st.sampled_from(["https://", "http://", "https://a.b"]).flatmap(
        lambda head: st.text(max_size=30).map(lambda tail: head + tail)
    )
)
def test_endpoint_shapes(url: str) -> None:
    for networks in (ALL_NETWORKS, PUBLIC, DEV):
        check = lambda b, n=networks: registration(b, n)  # noqa: E731
        agree("portal.register", check, {**cases.AUTH, "client_endpoint": url}, networks)


def test_the_hostile_payloads_of_the_worker_run() -> None:
    import random

    for body in bad._hostile(random.Random(1337), 200):
        assert agree("delivery.confirm", confirmation, body) in ("refused", "not json")


# -- the other payloads --------------------------------------------------------------------


def test_confirm_many_agrees_with_its_envelope_and_elements() -> None:
    good = payload("p1", 1)

    def whole(body: Any) -> None:
        judged = judge(body, 3)
        if judged.invalid:
            raise judged.invalid[0][1]

    for body in (
        {"confirmations": [good, good]},
        {"confirmations": []},
        {"confirmations": [good] * 4},
        {"confirmations": [good, {**good, "line": 0}]},
        {"confirmations": "x"},
        {"confirmations": [good], "extra": 1},
        {},
    ):
        agree("delivery.confirm_many", whole, body, confirm_many_max=3)


def test_require_message_id_is_in_the_schema() -> None:
    without = payload("p1", 1)
    del without["message"]
    assert validator("delivery.confirm").is_valid(without)
    assert not validator("delivery.confirm", require_message_id=True).is_valid(without)
    with_id = payload("p1", 1)
    assert validator("delivery.confirm", require_message_id=True).is_valid(with_id)


def test_the_tasks_the_worker_sends_match_their_schemas() -> None:
    from worker.portals.ownership import renewed_kwargs

    renewed = renewed_kwargs(
        "p1",
        "p1.bitrix24.test",
        "https://p1.bitrix24.test/rest/",
        "https://oauth.bitrix.info/rest/",
        {"access_token": "a", "refresh_token": "r", "expires_in": 3600},
    )
    assert validator("tokens.renewed").is_valid(renewed)
    assert validator("tokens.request").is_valid({"member_id": "p1", "token_version": 3})
    assert not validator("tokens.request").is_valid({"member_id": "p1"})


def test_number_ranges_are_exact() -> None:
    import re

    for lo, hi in [(1, 9), (1, 10), (7, 123), (1, 10_000), (99, 1001), (1, bad.validation.MAX_ID)]:
        pattern = re.compile(f"^0*{schema.number_range(lo, hi)}{schema.END}")
        probes = {lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, (lo + hi) // 2, 10, 100, 1000}
        for n in probes:
            if n >= 0:
                assert bool(pattern.search(str(n))) == (lo <= n <= hi), (lo, hi, n)


# -- where they are shipped, and the command -----------------------------------------------


def test_the_shipped_schemas_are_current() -> None:
    """The wheel (worker/schemas/) and the docs (docs/schemas/) carry the defaults' schemas."""
    for folder in schema.FOLDERS:
        where = folder if folder.is_absolute() else ROOT / folder
        for name in schema.NAMES:
            path = where / f"{name}.json"
            assert path.is_file(), f"{path} is missing: run `make schemas`"
            current = schema.dumps(schema.schema(name))
            assert path.read_text() == current, f"{path} is stale: run `make schemas`"


def test_the_schema_command_lists_prints_and_refuses() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DELIVERY_", "BITRIX24_"))}
    env.update(PYTHONPATH=str(ROOT), DELIVERY_CONFIRM_MANY_MAX="7")
    listed = run_python("-m", "worker.cli", "schema", env=env)
    assert listed.returncode == 0 and listed.stdout.split() == list(schema.NAMES)
    printed = run_python("-m", "worker.cli", "schema", "delivery.confirm_many", env=env)
    assert printed.returncode == 0, printed.stderr
    document = json.loads(printed.stdout)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["properties"]["confirmations"]["maxItems"] == 7, "the current settings"
    unknown = run_python("-m", "worker.cli", "schema", "delivery.nope", env=env)
    assert unknown.returncode == 2 and "unknown payload" in unknown.stderr
    assert "Traceback" not in unknown.stderr

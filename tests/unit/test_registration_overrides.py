"""`portal.register`'s numeric overrides obey the ranges of their settings, and any registration
payload gets a Registration or an InvalidInput, never another exception."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.errors import InvalidInput
from worker.ingest.validation import OVERRIDES, REGISTER_FIELDS, Registration, registration
from worker.settings import ENV_NAMES, RULES, Settings

AUTH: dict[str, Any] = {
    "member_id": "m1",
    "domain": "m1.bitrix24.com",
    "client_endpoint": "https://m1.bitrix24.com/rest/",
    "access_token": "AT",
    "refresh_token": "RT",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rate_per_s", 1e-300),  # stalled limiter.lua for every flush of the portal
        ("rate_per_s", 0.0),
        ("rate_per_s", -1),
        ("rate_per_s", 10_000.5),
        ("rate_per_s", math.inf),
        ("rate_per_s", math.nan),
        ("rate_per_s", True),
        ("rate_per_s", "fast"),
        ("rate_per_s", [1]),
        ("rate_burst", 2**63 - 1),
        ("rate_burst", 0),
        ("rate_burst", 100_001),
        ("rate_burst", 1.5),
        ("rate_per_s", "2"),  # a rate is a JSON number
        ("rate_burst", "1e3"),
        ("rate_burst", 1e20),
        ("rate_burst", False),
    ],
)
def test_an_override_outside_its_settings_range_is_refused(field: str, value: object) -> None:
    with pytest.raises(InvalidInput) as info:
        registration({**AUTH, field: value})
    assert info.value.field == field
    assert RULES[field][1] in info.value.rule and ENV_NAMES[field] in info.value.rule


@pytest.mark.parametrize(
    ("field", "value", "kept"),
    [
        ("rate_per_s", 0.01, 0.01),
        ("rate_per_s", 2, 2.0),
        ("rate_per_s", 10_000, 10_000.0),
        ("rate_burst", 1, 1),
        ("rate_burst", "45", 45),
        ("rate_burst", 4.0, 4),  # a JSON number without a fraction is an integer
        ("rate_burst", 100_000, 100_000),
    ],
)
def test_an_override_inside_the_range_is_kept(field: str, value: object, kept: float) -> None:
    assert getattr(registration({**AUTH, field: value}), field) == kept


@given(st.sampled_from(OVERRIDES), st.one_of(st.integers(), st.floats(), st.text(max_size=30)))
def test_an_override_is_accepted_exactly_when_the_setting_would_be(field: str, value: Any) -> None:
    """The same range, the same answer: a value kept for a portal is one the setting accepts."""
    try:
        reg = registration({**AUTH, field: value})
    except InvalidInput:
        return
    Settings().with_overrides(**{field: getattr(reg, field)})  # raises SettingsError if not
    assert not isinstance(value, bool)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["https://p.example/rest/", "http://127.0.0.1:9/rest/", "1e-300", "45"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@settings(max_examples=300)
@given(
    st.dictionaries(st.sampled_from(sorted(REGISTER_FIELDS)), JSON, max_size=12),
    st.dictionaries(st.text(max_size=10), JSON, max_size=2),
    st.booleans(),
)
def test_any_registration_payload_is_a_registration_or_invalid_input(
    fields: dict[str, Any], extra: dict[str, Any], based: bool
) -> None:
    payload = {**(AUTH if based else {}), **fields, **(extra if not based else {})}
    outcome = _register(payload)
    if isinstance(outcome, InvalidInput):
        assert outcome.field and outcome.rule, "an error names the field and the rule"
        return
    assert isinstance(outcome, Registration)
    for field in OVERRIDES:
        if getattr(outcome, field) is not None:
            Settings().with_overrides(**{field: getattr(outcome, field)})


def _register(payload: dict[str, Any]) -> Registration | InvalidInput:
    """The registration, or the InvalidInput it raised (any other exception fails the test)."""
    try:
        return registration(payload)
    except InvalidInput as exc:
        return exc

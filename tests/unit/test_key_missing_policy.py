"""A missing token key (a DELIVERY_TOKEN_KEYS rollout) defers a flush with a capped backoff of
its own: never a failure, never a dead letter, never a parking, whatever the batch's history."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from worker.flush.policy import OWN_CODES, Action, Backoff, Outcome, classify, decide

BACKOFF = Backoff(1.0, 300.0, 8, 86_400.0, 900.0, 60.0)


def test_the_code_has_its_own_row() -> None:
    assert classify(None, "TOKEN_KEY_MISSING") is Outcome.KEY_MISSING
    assert OWN_CODES["TOKEN_KEY_MISSING"][0] is Outcome.KEY_MISSING


def test_the_backoff_grows_with_the_portals_own_count_within_the_cap() -> None:
    def delay(waits: int) -> float:
        return decide(
            Outcome.KEY_MISSING,
            failures=0,
            age_s=1.0,
            backoff=BACKOFF,
            now=0.0,
            key_waits=waits,
            rng=random.Random(3),
        ).delay_s

    assert 0.5 <= delay(0) <= 1.0
    assert 4.0 <= delay(3) <= 8.0
    assert 150.0 <= delay(50) <= 300.0, "capped at DELIVERY_BACKOFF_CAP_S"


@given(
    failures=st.integers(min_value=0, max_value=10_000),
    key_waits=st.integers(min_value=0, max_value=10_000),
    age_s=st.floats(min_value=0, max_value=1e9),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_a_missing_key_is_never_a_failure_nor_a_dead_letter(
    failures: int, key_waits: int, age_s: float, seed: int
) -> None:
    d = decide(
        Outcome.KEY_MISSING,
        failures=failures,
        age_s=age_s,
        backoff=BACKOFF,
        now=0.0,
        key_waits=key_waits,
        rng=random.Random(seed),
    )
    assert d.action is Action.RETRY
    assert d.counts_key_wait and not d.counts_failure
    assert not d.portal_wide and not d.drain_budget
    assert 0 < d.delay_s <= BACKOFF.cap_s


def test_the_backoff_never_overflows() -> None:
    """A count in the thousands (a key missing for days, a portal throttled for long) stays a
    capped delay, not an OverflowError."""
    for outcome in (Outcome.KEY_MISSING, Outcome.THROTTLED):
        d = decide(
            outcome,
            failures=0,
            throttles=50_000,
            age_s=1.0,
            backoff=BACKOFF,
            now=0.0,
            key_waits=50_000,
        )
        assert 0 < d.delay_s <= BACKOFF.cap_s

"""What counts as a parking of a portal (the rate budget's own waits do not)."""

from __future__ import annotations

from worker.ops.parking import portal_parking
from worker.store.scripts import PARKED


def test_a_parking_until_register_or_unpark() -> None:
    fields = {
        "blocked_until": str(PARKED),
        "block_reason": "ACCESS_DENIED",
        "block_description": "REST API is available only on commercial plans.",
        "blocked_at": "100.5",
    }
    assert portal_parking(fields, now=200.0) == {
        "reason": "ACCESS_DENIED",
        "description": "REST API is available only on commercial plans.",
        "since": 100.5,
        "until": "portal.register or unpark",
    }


def test_a_timed_parking_ends_by_itself() -> None:
    fields = {"blocked_until": "300", "block_reason": "OVERLOAD_LIMIT"}
    parking = portal_parking(fields, now=200.0)
    assert parking is not None and parking["until"] == 300.0
    assert portal_parking(fields, now=301.0) is None


def test_backoffs_of_the_rate_budget_are_not_parkings() -> None:
    for reason in ("QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT"):
        assert portal_parking({"blocked_until": "300", "block_reason": reason}, now=200.0) is None


def test_a_connection_error_backoff_is_a_wait_but_an_endless_one_is_listed() -> None:
    # CONNECTION_ERROR (the portal could not reach its OAuth server) backs off portal-wide
    fields = {"blocked_until": "300", "block_reason": "CONNECTION_ERROR"}
    assert portal_parking(fields, now=200.0) is None
    # the release before parked a portal so until unpark: listed, so an operator can find it
    old = {"blocked_until": str(PARKED), "block_reason": "CONNECTION_ERROR", "blocked_at": "1"}
    parking = portal_parking(old, now=200.0)
    assert parking is not None and parking["reason"] == "CONNECTION_ERROR"
    assert parking["until"] == "portal.register or unpark"

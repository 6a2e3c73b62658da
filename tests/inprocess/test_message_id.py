"""Confirmations without `message.id` in-process: accepted and counted (`without_message_id`), one
warning per group (not one per item), refused at ingest with DELIVERY_REQUIRE_MESSAGE_ID=1.

Why it matters (imopenlines `onReceivedStatusDelivery`): the portal stores `message.id` as the
message's external id (`CONNECTOR_MID`); an older version did nothing at all without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from tests.harness import stats
from worker.errors import InvalidInput
from worker.ingest import many
from worker.ingest.message_id import note_missing
from worker.ingest.validation import confirmation
from worker.ops.exporter import COUNTERS
from worker.runtime import Runtime


def _bare(line: int, message_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "portal": "p1",
        "connector": "myconnector",
        "line": line,
        "im": {"chat_id": 323, "message_id": message_id},
        **extra,
    }


def test_counted_and_warned_once_per_group(rt: Runtime, r: redis.Redis) -> None:
    with capture_logs() as logs:
        for i in range(1, 6):
            assert note_missing(rt, [confirmation(_bare(107, i))]) == 1
        judged = many.judge(
            {
                "confirmations": [
                    _bare(108, 1),
                    _bare(108, 2),
                    _bare(109, 3, message={"id": ["ext-3"]}),
                ]
            },
            limit=10,
        )
        assert note_missing(rt, judged.valid) == 2
    assert stats(r)["without_message_id"] == 7
    warned = [e for e in logs if "without message.id" in e["event"]]
    assert [(e["line"], e["count"]) for e in warned] == [(107, 1), (108, 2)]
    assert all(e["log_level"] == "warning" for e in warned)
    assert "without_message_id" in COUNTERS  # exported as b24d_without_message_id


def test_refused_when_required(make_rt: Callable[..., Runtime], r: redis.Redis) -> None:
    rt = make_rt(require_message_id=True)
    required = rt.settings.require_message_id
    with pytest.raises(InvalidInput) as info:
        confirmation(_bare(107, 1), require_message_id=required)
    assert info.value.field == "message.id" and "DELIVERY_REQUIRE_MESSAGE_ID" in info.value.rule
    judged = many.judge(
        {"confirmations": [_bare(107, 1), _bare(107, 2, message={"id": ["ext-2"]})]},
        limit=10,
        require_message_id=required,
    )
    assert [c.message_id for c in judged.valid] == ["2"]
    assert [(i, e.field) for i, e, _ in judged.invalid] == [(0, "confirmations[0].message.id")]
    assert note_missing(rt, judged.valid) == 0 and "without_message_id" not in stats(r)

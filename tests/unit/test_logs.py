"""Secrets are masked wherever they appear in a log event, and in Celery's stdlib records."""

from __future__ import annotations

import io
import json
import logging

import structlog

from worker.ops.logs import configure_logging, redact


def test_redact_masks_keys_at_any_depth_and_inside_text() -> None:
    event = {
        "access_token": "AT-1",
        "nested": {"deeper": [{"refresh_token": "RT-1"}]},
        "url": "https://oauth/?grant_type=refresh_token&client_secret=CS-1&refresh_token=RT-2",
        "body": '{"auth": "AT-2", "LINE": 1}',
        "repr": "{'auth': 'AT-3'}",
        "keep": "LINE=107",
    }
    text = json.dumps(redact(event))
    for secret in ("AT-1", "RT-1", "CS-1", "RT-2", "AT-2", "AT-3"):
        assert secret not in text
    assert "LINE=107" in text and "grant_type=refresh_token" in text


def test_logs_render_json_and_mask_secrets_for_structlog_and_stdlib() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    structlog.stdlib.get_logger("t").info("calling", auth="AT-9", portal="p1")
    logging.getLogger("celery.app.trace").error("failed with refresh_token=RT-9 in the url")
    try:
        raise ValueError("client_secret=CS-9")
    except ValueError:
        structlog.stdlib.get_logger("t").exception("boom")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "calling" and lines[0]["portal"] == "p1"
    assert "AT-9" not in stream.getvalue()
    assert "RT-9" not in stream.getvalue() and "CS-9" not in stream.getvalue()
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()

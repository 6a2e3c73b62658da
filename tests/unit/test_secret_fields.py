"""The one list of secret field names (worker/ops/redaction.py), and each place that shows a
value through it: log lines (ours, and Celery's own debug lines), task events (what Flower shows),
the producer helper's task messages. Sentry: tests/ops/test_tracking.py; rejected-payload
records: tests/inprocess/test_rejected_secrets.py."""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Any

import pytest
import structlog
from celery import Celery
from celery.concurrency.solo import TaskPool
from hypothesis import given
from hypothesis import strategies as st
from kombu.message import Message

from b24producer import MaskingAMQP
from worker.ops.logs import configure_logging
from worker.ops.redaction import MASK, SECRET_KEYS, is_secret_key, redact
from worker.transport.events import RedactedRequest

SECRET = "S3CRET-value-42"
#: the install form (AUTH_ID, REFRESH_ID) and the event's auth block, as Bitrix24 names them
NEW_NAMES = ("application_token", "auth_id", "refresh_id", "AUTH_ID", "REFRESH_ID")


def test_the_list_holds_the_fields_bitrix24_sends() -> None:
    assert {"access_token", "refresh_token", "client_secret", "auth"} <= SECRET_KEYS
    assert {"application_token", "auth_id", "refresh_id"} <= SECRET_KEYS


@pytest.mark.parametrize("name", [*sorted(SECRET_KEYS), "AUTH_ID", "REFRESH_ID", "Access_Token"])
def test_every_name_is_masked_as_a_key_and_inside_text(name: str) -> None:
    shown = redact({name: SECRET, "nested": [{name: SECRET}], "keep": "LINE=107"})
    assert shown[name] == MASK and shown["nested"][0][name] == MASK and shown["keep"] == "LINE=107"
    for text in (
        f"{name}={SECRET}&x=1",
        f'{{"{name}": "{SECRET}"}}',
        f"{{'{name}': '{SECRET}'}}",
        f"auth[{name}]={SECRET}",
        f"b'{name}: {SECRET}'",
    ):
        assert SECRET not in redact(text), text


def test_a_bracketed_form_key_is_judged_by_its_last_part() -> None:
    assert is_secret_key("auth[access_token]") and is_secret_key("AUTH[APPLICATION_TOKEN]")
    assert not is_secret_key("auth[domain]") and not is_secret_key("member_id")
    form = {"auth[application_token]": SECRET, "auth[domain]": "p.bitrix24.com"}
    assert redact(form) == {"auth[application_token]": MASK, "auth[domain]": "p.bitrix24.com"}


@given(st.sampled_from(sorted(SECRET_KEYS)), st.text(min_size=1, max_size=30), st.booleans())
def test_a_secret_value_never_survives(name: str, value: str, upper: bool) -> None:
    key = name.upper() if upper else name
    assert redact({key: value}) == {key: MASK}
    assert redact({"deep": [{"x": {key: value}}]}) == {"deep": [{"x": {key: MASK}}]}


@pytest.fixture
def log_stream() -> Any:
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream)
    yield stream
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()
    logging.getLogger().setLevel(logging.WARNING)


def test_log_lines_mask_every_name(log_stream: io.StringIO) -> None:
    fields = {name: f"{SECRET}-{i}" for i, name in enumerate(NEW_NAMES)}
    structlog.stdlib.get_logger("t").info("install", **fields)
    logging.getLogger("t").warning("form %s", "&".join(f"{k}={v}" for k, v in fields.items()))
    assert SECRET not in log_stream.getvalue()
    assert log_stream.getvalue().count(MASK) >= 2 * len(fields)


def _task_message(app: Celery, kwargs: dict[str, Any]) -> Message:
    """A real task message as a producer sends it (protocol 2, JSON)."""
    headers, properties, body, _ = app.amqp.as_task_v2(
        str(uuid.uuid4()), "portal.register", kwargs=kwargs
    )
    return Message(
        body=json.dumps(body).encode(),
        headers=headers,
        content_type="application/json",
        content_encoding="utf-8",
        delivery_info=properties.get("delivery_info", {}),
    )


AUTH = {
    "member_id": "m1",
    "access_token": SECRET,
    "refresh_token": SECRET,
    "application_token": SECRET,
    "AUTH_ID": SECRET,
    "REFRESH_ID": SECRET,
}


def test_task_events_show_masked_arguments() -> None:
    """RedactedRequest: the argsrepr/kwargsrepr the worker's task events carry (Flower)."""
    app = Celery("events", set_as_current=False)

    @app.task(name="portal.register", shared=False)
    def register(**auth: Any) -> None:
        """The worker's task, as far as its events go."""

    request = RedactedRequest(_task_message(app, AUTH), app=app, task=register)
    assert SECRET not in request.kwargsrepr and "m1" in request.kwargsrepr
    assert request.kwargsrepr.count(MASK) == 5


def test_celerys_own_debug_lines_are_masked(log_stream: io.StringIO) -> None:
    """At `-l debug` the pool logs each task's raw message body ("TaskPool: Apply ... args:");
    Celery's own code writes it here, through the logs' redaction."""
    app = Celery("debug-lines", set_as_current=False)
    message = _task_message(app, AUTH)
    pool = TaskPool()
    pool.start()  # reads the logger's level: DEBUG
    body = ("task", "id", {}, message.body, "application/json")
    pool.apply_async(lambda *a: None, args=body, callback=lambda _: None)
    written = log_stream.getvalue()
    assert "TaskPool: Apply" in written, "Celery's debug line was written"
    assert "m1" in written and SECRET not in written


def test_the_producer_helper_masks_its_task_messages() -> None:
    app = Celery("producer", set_as_current=False, amqp=MaskingAMQP)
    headers = app.amqp.as_task_v2(str(uuid.uuid4()), "portal.register", kwargs=AUTH)[0]
    assert SECRET not in headers["kwargsrepr"] and "m1" in headers["kwargsrepr"]

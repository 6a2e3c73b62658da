"""Sentry: a token inside an exception, its message, the task's arguments or a log breadcrumb
never reaches the event. The SDK's own transport API records the envelopes it would send."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

sentry_sdk = pytest.importorskip("sentry_sdk", reason="the sentry extra is not installed")
from celery import Celery  # noqa: E402
from sentry_sdk.envelope import Envelope  # noqa: E402
from sentry_sdk.transport import Transport  # noqa: E402

from worker.errors import SettingsError  # noqa: E402
from worker.ops import sentry as tracking  # noqa: E402
from worker.settings import Settings  # noqa: E402

ACCESS = "at-7d1f0c2e9b8a4f6e"
REFRESH = "rt-93b2a61c04d5e7f8"


class Recording(Transport):
    """What the SDK would have sent, kept in memory."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


@pytest.fixture
def transport() -> Iterator[Recording]:
    recording = Recording()
    settings = Settings(sentry_dsn="https://publickey@sentry.invalid/42")
    assert tracking.init(settings, transport=recording)
    yield recording
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # no DSN: the SDK is off for the rest of the run


def test_no_dsn_no_sdk() -> None:
    assert tracking.init(Settings()) is False


def test_a_token_in_an_exception_never_reaches_the_event(transport: Recording) -> None:
    app = Celery("tracking-test", set_as_current=False)

    @app.task(name="test.refresh")
    def refresh(**payload: Any) -> None:
        logging.getLogger("test").warning("calling %s", f"refresh_token={REFRESH}")
        raise RuntimeError(f"refused: {{'access_token': '{ACCESS}', 'refresh_token': '{REFRESH}'}}")

    refresh.apply(kwargs={"member_id": "m1", "access_token": ACCESS, "auth": ACCESS})
    try:
        raise ValueError(f"GET /oauth/token/?grant_type=refresh_token&refresh_token={REFRESH}")
    except ValueError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush()

    events = [item for env in transport.envelopes for item in env.items if item.type == "event"]
    body = b"".join(env.serialize() for env in transport.envelopes)
    assert len(events) >= 2, "both errors reached the tracker"
    assert b"RuntimeError" in body and b"ValueError" in body and b"test.refresh" in body
    assert ACCESS.encode() not in body
    assert REFRESH.encode() not in body
    assert b"***" in body


def test_a_dsn_without_the_sdk_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "sentry_sdk", None)
    with pytest.raises(SettingsError, match="sentry-sdk is not installed"):
        tracking.init(Settings(sentry_dsn="https://publickey@sentry.invalid/42"))


def test_settings_name_a_bad_dsn() -> None:
    with pytest.raises(SettingsError, match="SENTRY_DSN"):
        Settings.from_env({"SENTRY_DSN": "not a dsn"})


def test_the_install_forms_and_the_events_secrets_never_reach_the_event(
    transport: Recording,
) -> None:
    """`application_token` and the install form's `AUTH_ID`/`REFRESH_ID` (the one list of
    secret names, worker/ops/redaction.py) are masked in extras, messages and breadcrumbs."""
    form = f"AUTH_ID={ACCESS}&REFRESH_ID={REFRESH}&auth[application_token]={ACCESS}"
    logging.getLogger("test").warning("install form %s", form)
    with sentry_sdk.new_scope() as scope:
        scope.set_extra("auth", {"application_token": ACCESS, "Auth_Id": ACCESS})
        scope.set_extra("form", form)
        sentry_sdk.capture_message(f"install refused: {form}")
    sentry_sdk.flush()
    body = b"".join(env.serialize() for env in transport.envelopes)
    assert b"install refused" in body
    assert ACCESS.encode() not in body and REFRESH.encode() not in body

"""Enqueue delivery confirmations from any Python service, without the worker's app or its deps.

    from b24producer import Producer
    producer = Producer("redis://127.0.0.1:6379/0")
    producer.confirm(portal="a1b2...", connector="myconnector", line=107,
                     im={"chat_id": 323, "message_id": 85911},
                     message={"id": ["ext-msg-1007"], "date": 1738065600},
                     chat={"id": "channel-123"})
    producer.confirm_many([{"portal": "a1b2...", "connector": "myconnector", "line": 107,
                             "im": {"chat_id": 323, "message_id": 85912}}, ...])
    producer.register_portal(member_id="a1b2...", domain="example.bitrix24.com",
                             client_endpoint="https://example.bitrix24.com/rest/",
                             access_token="...", refresh_token="...", expires_in=3600)

Tasks go by name (`send_task`) to Celery's default queue `celery`, as JSON, each announced by a
`task-sent` event (Flower shows it as received-pending, with its queue time).
The broker is the URL given: Redis (`redis://`), or RabbitMQ (`amqp://`), where each call
returns only once the broker confirmed the message (publisher confirms; persistent messages on
the durable queue).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from celery.utils.saferepr import saferepr

from worker.ops.redaction import redact

CONFIRM = "delivery.confirm"
CONFIRM_MANY = "delivery.confirm_many"
REGISTER = "portal.register"
_SECRET_FIELDS = ("access_token", "refresh_token", "application_token")


class MaskingAMQP(AMQP):
    """Task messages whose argsrepr/kwargsrepr (what task events and Flower show) have secrets
    masked, whichever way a task is sent (`Producer` methods or `producer.app.send_task`)."""

    def as_task_v2(self, *args: Any, **options: Any) -> Any:
        task_args = args[2] if len(args) > 2 else options.get("args")
        task_kwargs = args[3] if len(args) > 3 else options.get("kwargs")
        if options.get("argsrepr") is None:
            options["argsrepr"] = saferepr(redact(list(task_args or ())), self.argsrepr_maxsize)
        if options.get("kwargsrepr") is None:
            options["kwargsrepr"] = saferepr(redact(task_kwargs or {}), self.kwargsrepr_maxsize)
        return super().as_task_v2(*args, **options)


class Producer:
    def __init__(
        self, broker_url: str, *, app: Celery | None = None, sentinel_master: str | None = None
    ) -> None:
        """`broker_url`: Redis (`redis://`), kombu's Sentinel list
        (`sentinel://h1:26379;sentinel://h2:26379/0`, with `sentinel_master` the monitored
        master's name), or RabbitMQ (`amqp://`)."""
        self.app = app or Celery(
            "b24producer", broker=broker_url, set_as_current=False, amqp=MaskingAMQP
        )
        amqp = broker_url.split(":", 1)[0] in ("amqp", "amqps", "pyamqp")
        transport: dict[str, Any] = (
            {"confirm_publish": True}  # send_task returns once the broker has the message
            if amqp
            else {"socket_connect_timeout": 2, "socket_timeout": 5}
        )
        if sentinel_master:
            transport["master_name"] = sentinel_master
        self.app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            # a task-sent event per task, so Flower shows queued confirmations and their wait;
            # its arguments are the masked reprs (MaskingAMQP), as the worker's events are
            task_send_sent_event=True,
            # a clear error instead of a hang when the broker is down
            broker_connection_retry=False,
            broker_connection_max_retries=0,
            broker_connection_timeout=2,
            broker_transport_options=transport,
            task_default_delivery_mode="persistent",
        )

    def confirm(
        self,
        *,
        portal: str,
        connector: str,
        line: int,
        im: dict[str, Any],
        message: dict[str, Any] | None = None,
        chat: dict[str, Any] | None = None,
    ) -> str:
        """Enqueue one confirmation; returns the task id."""
        kwargs: dict[str, Any] = {"portal": portal, "connector": connector, "line": line, "im": im}
        if message is not None:
            kwargs["message"] = message
        if chat is not None:
            kwargs["chat"] = chat
        return str(self.app.send_task(CONFIRM, kwargs=kwargs, retry=False).id)

    def confirm_many(self, confirmations: list[dict[str, Any]]) -> str:
        """Enqueue many confirmations as one message (each shaped as `confirm`'s keyword
        arguments, at most the worker's DELIVERY_CONFIRM_MANY_MAX); returns the task id.
        The worker judges each element on its own: a bad one is rejected, the others go on."""
        kwargs = {"confirmations": list(confirmations)}
        return str(self.app.send_task(CONFIRM_MANY, kwargs=kwargs, retry=False).id)

    def register_portal(self, **auth: Any) -> str:
        """Enqueue a portal's `auth` block; its tokens never show in task events or reprs."""
        shown = {k: ("***" if k in _SECRET_FIELDS else v) for k, v in auth.items()}
        return str(
            self.app.send_task(REGISTER, kwargs=auth, kwargsrepr=repr(shown), retry=False).id
        )

    def close(self) -> None:
        self.app.close()

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
    # confirm by the external id (docs/receipts.md): the worker keeps the Bitrix24 ids
    producer.sent(portal="a1b2...", connector="myconnector", line=107,
                  im={"chat_id": 323, "message_id": 85911}, message={"id": ["ext-msg-1007"]})
    producer.delivered(portal="a1b2...", connector="myconnector", message_id="ext-msg-1007",
                       date=1738065600)

Each payload is checked before it is sent, with the worker's own rules
(worker/ingest/validation.py, which imports nothing beyond this base install): a bad one raises
`InvalidInput` at the call site, naming the field and the rule, and nothing is sent.

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

from worker.errors import InvalidInput
from worker.ingest import receipt_payloads, validation
from worker.ops.redaction import redact

__all__ = ["InvalidInput", "MaskingAMQP", "Producer"]

CONFIRM = "delivery.confirm"
CONFIRM_MANY = "delivery.confirm_many"
REGISTER = "portal.register"
SENT = "delivery.sent"
DELIVERED = "delivery.delivered"
#: the worker's default DELIVERY_CONFIRM_MANY_MAX
CONFIRM_MANY_MAX = 500


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
        self,
        broker_url: str,
        *,
        app: Celery | None = None,
        sentinel_master: str | None = None,
        confirm_many_max: int = CONFIRM_MANY_MAX,
        require_message_id: bool = False,
    ) -> None:
        """`broker_url`: Redis (`redis://`), kombu's Sentinel list
        (`sentinel://h1:26379;sentinel://h2:26379/0`, with `sentinel_master` the monitored
        master's name), or RabbitMQ (`amqp://`). `confirm_many_max`, `require_message_id`: the
        workers' DELIVERY_CONFIRM_MANY_MAX and DELIVERY_REQUIRE_MESSAGE_ID (when not the
        defaults)."""
        self.confirm_many_max = confirm_many_max
        self.require_message_id = require_message_id
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
        """Enqueue one confirmation; returns the task id. Raises InvalidInput (nothing sent)
        when the worker would reject it."""
        kwargs: dict[str, Any] = {"portal": portal, "connector": connector, "line": line, "im": im}
        if message is not None:
            kwargs["message"] = message
        if chat is not None:
            kwargs["chat"] = chat
        validation.confirmation(kwargs, require_message_id=self.require_message_id)
        return str(self.app.send_task(CONFIRM, kwargs=kwargs, retry=False).id)

    def confirm_many(self, confirmations: list[dict[str, Any]]) -> str:
        """Enqueue many confirmations as one message (each shaped as `confirm`'s keyword
        arguments, at most the worker's DELIVERY_CONFIRM_MANY_MAX); returns the task id.
        The worker judges each element on its own; here a bad one raises InvalidInput (named
        `confirmations[3].line`) before anything is sent."""
        items = list(confirmations)
        if len(items) > self.confirm_many_max:
            raise InvalidInput(
                "confirmations",
                f"must hold at most {self.confirm_many_max} confirmations "
                f"(DELIVERY_CONFIRM_MANY_MAX); got {len(items)}",
            )
        for index, item in enumerate(items):
            where = f"confirmations[{index}]"
            if not isinstance(item, dict):
                raise InvalidInput(where, "must be an object")
            try:
                validation.confirmation(item, require_message_id=self.require_message_id)
            except InvalidInput as exc:
                raise InvalidInput(f"{where}.{exc.field}", exc.rule) from None
        kwargs = {"confirmations": items}
        return str(self.app.send_task(CONFIRM_MANY, kwargs=kwargs, retry=False).id)

    def register_portal(self, **auth: Any) -> str:
        """Enqueue a portal's `auth` block; its tokens never show in task events or reprs.
        Raises InvalidInput (nothing sent) when the worker would reject it (the endpoint's
        network is judged by the worker's DELIVERY_ALLOWED_ENDPOINT_NETWORKS)."""
        validation.registration(auth)
        shown = repr(redact(auth))  # the one list of secret names (worker/ops/redaction.py)
        return str(self.app.send_task(REGISTER, kwargs=auth, kwargsrepr=shown, retry=False).id)

    def sent(
        self,
        *,
        portal: str,
        connector: str,
        line: int,
        im: dict[str, Any],
        message: dict[str, Any],
        chat: dict[str, Any] | None = None,
    ) -> str:
        """The message with these Bitrix24 ids (`im`, from OnImConnectorMessageAdd) went out as
        `message["id"]` (its external ids): the worker keeps them for the receipt. Returns the
        task id; raises InvalidInput (nothing sent) when the worker would reject it."""
        kwargs: dict[str, Any] = {
            "portal": portal,
            "connector": connector,
            "line": line,
            "im": im,
            "message": message,
        }
        if chat is not None:
            kwargs["chat"] = chat
        receipt_payloads.sent(kwargs)
        return str(self.app.send_task(SENT, kwargs=kwargs, retry=False).id)

    def delivered(
        self,
        *,
        portal: str,
        connector: str,
        message_id: str | list[str],
        date: int,
        chat: dict[str, Any] | None = None,
    ) -> str:
        """The external network's receipt: the messages with these external ids arrived at
        `date` (Unix seconds). The worker confirms each kept `sent` record they name. Returns
        the task id; raises InvalidInput (nothing sent) when the worker would reject it."""
        kwargs: dict[str, Any] = {
            "portal": portal,
            "connector": connector,
            "message_id": message_id,
            "date": date,
        }
        if chat is not None:
            kwargs["chat"] = chat
        receipt_payloads.receipt(kwargs)
        return str(self.app.send_task(DELIVERED, kwargs=kwargs, retry=False).id)

    def close(self) -> None:
        self.app.close()

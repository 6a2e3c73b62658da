"""`enqueue` and `register`: send the public tasks by name, as any producer would.

Both validate the payload here first (the worker validates it again), so a mistake is one line
on stderr, exit 2, and nothing is sent. Tokens come only from stdin, never from flags: flags
show in `ps` and in shell history. A confirmation for a portal that is not registered is sent
all the same (exit 0: it was accepted, and waits for the portal's portal.register), with a
warning on stderr saying so.
"""

from __future__ import annotations

import argparse
from typing import Any

from worker.cli.common import Subparsers, UserError, emit, read_json_object, settings, warn

_FLAGS = ("portal", "connector", "line", "chat_id", "message_id")


def register(sub: Subparsers) -> None:
    enqueue = sub.add_parser(
        "enqueue",
        help="send one delivery.confirm (from flags, or a JSON object on stdin)",
        description=(
            "Send one confirmation as the delivery.confirm task. Give it with flags "
            "(--portal --connector --line --chat-id --message-id, optionally --external-id, "
            "--date, --chat) or, with no flags, as a JSON object on stdin. Exit 0 once the "
            "broker has it; 2 for invalid input (nothing sent). For a portal that is not "
            "registered yet it is sent too, exit 0, with a warning on stderr: it waits, "
            "parked as unregistered, until the portal's portal.register."
        ),
    )
    enqueue.add_argument("--portal", help="the portal's member_id")
    enqueue.add_argument("--connector", help="the connector id")
    enqueue.add_argument("--line", type=int, help="the open line id")
    enqueue.add_argument("--chat-id", type=int, help="im.chat_id")
    enqueue.add_argument("--message-id", type=int, help="im.message_id")
    enqueue.add_argument(
        "--external-id",
        action="append",
        metavar="ID",
        help="message.id: your system's message id (repeatable)",
    )
    enqueue.add_argument("--date", type=int, help="message.date, Unix seconds")
    enqueue.add_argument("--chat", metavar="ID", help="chat.id: your system's chat id")
    enqueue.set_defaults(handler=_enqueue)

    reg = sub.add_parser(
        "register",
        help="send one portal.register (the auth block as a JSON object on stdin)",
        description=(
            "Store or replace a portal's tokens: pipe its auth block (member_id, domain, "
            "client_endpoint, access_token, refresh_token, expires_in) as a JSON object on "
            "stdin. Tokens are never taken from flags."
        ),
    )
    reg.set_defaults(handler=_register)


def confirmation_from_flags(args: argparse.Namespace) -> dict[str, Any] | None:
    """The payload the flags describe; None when no flag was given (read stdin instead)."""
    given = [name for name in _FLAGS if getattr(args, name) is not None]
    extras = args.external_id or args.date is not None or args.chat is not None
    if not given and not extras:
        return None
    missing = [f"--{name.replace('_', '-')}" for name in _FLAGS if name not in given]
    if missing:
        raise UserError(f"enqueue: missing {', '.join(missing)} (or give no flags and use stdin)")
    payload: dict[str, Any] = {
        "portal": args.portal,
        "connector": args.connector,
        "line": args.line,
        "im": {"chat_id": args.chat_id, "message_id": args.message_id},
    }
    if args.external_id or args.date is not None:
        message: dict[str, Any] = {"id": args.external_id or []}
        if args.date is not None:
            message["date"] = args.date
        payload["message"] = message
    if args.chat is not None:
        payload["chat"] = {"id": args.chat}
    return payload


def _enqueue(args: argparse.Namespace) -> int:
    from b24producer import CONFIRM
    from worker.ingest.validation import confirmation

    payload = confirmation_from_flags(args)
    if payload is None:
        payload = read_json_object("enqueue")
    confirmation(payload)  # InvalidInput: one line naming the field and the rule
    registered = _registered(str(payload["portal"]))
    emit({"task": CONFIRM, "id": _send(CONFIRM, payload, secret=False)})
    if registered is False:
        warn(
            f"portal {payload['portal']!r} is not registered: the confirmation waits (parked, "
            "reason unregistered) until a portal.register for it arrives"
        )
    return 0


def _registered(portal: str) -> bool | None:
    """Whether the state Redis knows the portal; None when Redis cannot tell (the send does not
    depend on it: the broker may be another server)."""
    import redis

    from worker.cli.common import connect, keys

    s = settings()
    try:
        client = connect(s)
        try:
            return bool(client.sismember(keys(s).portals, portal))
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return None


def _register(args: argparse.Namespace) -> int:
    from b24producer import REGISTER
    from worker.ingest.validation import registration

    payload = read_json_object("register")
    registration(payload, settings().endpoint_networks)  # the endpoint rules the worker applies
    emit({"task": REGISTER, "id": _send(REGISTER, payload, secret=True)})
    return 0


def _send(task: str, payload: dict[str, Any], *, secret: bool) -> str:
    from b24producer import Producer
    from worker.cli.common import broker_url

    s = settings()
    producer = Producer(broker_url(s), sentinel_master=s.redis_sentinel_master)
    try:
        if secret:
            return producer.register_portal(**payload)
        return producer.confirm(**payload)
    finally:
        producer.close()

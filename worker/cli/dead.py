"""`dead list|replay|purge`: dead letters, and putting them back into their groups."""

from __future__ import annotations

import argparse

from worker.cli.common import Subparsers, emit, settings
from worker.cli.inspect import _positive


def register(sub: Subparsers) -> None:
    dead = sub.add_parser(
        "dead",
        help="dead letters: list, replay (back into their groups) or purge",
        description=(
            "list: group, message, code, attempts, times (oldest first). replay: back into "
            "their groups with fresh attempts. purge: drop them. --portal and --id narrow it."
        ),
    )
    dead.add_argument(
        "action",
        choices=("list", "replay", "purge"),
        help="list them, replay them (back into their groups), or purge them",
    )
    dead.add_argument("--portal", help="only this portal's dead letters (member_id)")
    dead.add_argument(
        "--id", action="append", dest="ids", metavar="ID", help="only this one (repeatable)"
    )
    dead.add_argument("--limit", type=_positive, default=100, help="list at most N (default 100)")
    dead.set_defaults(handler=_dead)


def _dead(args: argparse.Namespace) -> int:
    from b24producer import Producer
    from worker import runtime
    from worker.cli.common import broker_url, connect
    from worker.ops import records

    s = settings()
    connect(s).close()  # a clear "cannot reach Redis" before anything else
    if args.action == "list":
        rt = runtime.Runtime.create(s, _no_send)
        for record in records.dead_letters(rt, args.limit, portal=args.portal):
            emit(record)
        return 0
    producer = Producer(broker_url(s), sentinel_master=s.redis_sentinel_master)
    try:
        rt = runtime.Runtime.create(s, producer.app.send_task)
        if args.action == "replay":
            emit({"replayed": records.replay(rt, ids=args.ids, portal=args.portal)})
        else:
            emit({"purged": records.purge(rt, ids=args.ids, portal=args.portal)})
    finally:
        producer.close()
    return 0


def _no_send(*args: object, **kwargs: object) -> object:
    raise AssertionError("listing sends no task")

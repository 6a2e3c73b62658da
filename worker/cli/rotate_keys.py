"""`rotate-keys`: every portal's tokens re-encrypted with the newest `DELIVERY_TOKEN_KEYS` key."""

from __future__ import annotations

import argparse

from worker.cli.common import Subparsers


def register(sub: Subparsers) -> None:
    rotate = sub.add_parser(
        "rotate-keys",
        help="re-encrypt every portal's tokens with the newest DELIVERY_TOKEN_KEYS key",
        description=(
            "With DELIVERY_TOKEN_KEYS=NEW,OLD on every worker: rewrites each portal's access and "
            "refresh tokens with NEW (plaintext ones get encrypted too), then OLD can be dropped. "
            "Prints {portals, rewritten, unreadable}; exits 1 when some portal could not be read."
        ),
    )
    rotate.set_defaults(handler=_rotate)


def _rotate(args: argparse.Namespace) -> int:
    from worker.cli.common import connect, emit, settings
    from worker.portals.keyring import rotate_keys

    s = settings()
    client = connect(s)
    try:
        done = rotate_keys(client, s)
    finally:
        client.close()
    emit({"portals": done.portals, "rewritten": done.rewritten, "unreadable": done.unreadable})
    return 1 if done.unreadable else 0

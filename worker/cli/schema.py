"""`schema [NAME]`: the JSON Schema (Draft 2020-12) of a task payload, for the current settings."""

from __future__ import annotations

import argparse
import sys

from worker.cli.common import Subparsers, UserError, settings


def register(sub: Subparsers) -> None:
    from worker.ingest.schema import NAMES

    parser = sub.add_parser(
        "schema",
        help="the JSON Schema of a task payload (no NAME: list them)",
        description=(
            "Print the JSON Schema (Draft 2020-12) of a payload for the current settings "
            "(DELIVERY_CONFIRM_MANY_MAX, DELIVERY_ALLOWED_ENDPOINT_NETWORKS, ...). Without NAME, "
            f"list the names: {', '.join(NAMES)}. The defaults ship in the package "
            "(worker/schemas/NAME.json)."
        ),
    )
    parser.add_argument(
        "name", nargs="?", metavar="NAME", help="a payload name, e.g. delivery.confirm"
    )
    parser.set_defaults(handler=_schema)


def _schema(args: argparse.Namespace) -> int:
    from worker.ingest.schema import NAMES, dumps, schema

    if args.name is None:
        sys.stdout.write("".join(f"{name}\n" for name in NAMES))
        return 0
    if args.name not in NAMES:
        raise UserError(f"unknown payload {args.name!r}: one of {', '.join(NAMES)}")
    sys.stdout.write(dumps(schema(args.name, settings())))
    return 0

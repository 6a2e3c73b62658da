"""`simulator`: the Bitrix24 portal simulator (the same as `python -m b24sim`)."""

from __future__ import annotations

import argparse

from worker.cli.common import Subparsers


def register(sub: Subparsers) -> None:
    from b24sim.__main__ import build_parser

    sim = build_parser()
    sub.add_parser(
        "simulator",
        help="run the Bitrix24 portal simulator on loopback (for tests and demos)",
        description=sim.description,
        parents=[sim],
        add_help=False,
    ).set_defaults(handler=_simulator)


def _simulator(args: argparse.Namespace) -> int:
    from b24sim.__main__ import run

    return run(args)

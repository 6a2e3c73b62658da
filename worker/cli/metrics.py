"""`metrics`: the fleet-wide Prometheus exporter (the same as `python -m worker.ops.exporter`)."""

from __future__ import annotations

import argparse

from worker.cli.common import Subparsers


def register(sub: Subparsers) -> None:
    exporter = sub.add_parser(
        "metrics",
        help="serve the fleet's Prometheus metrics over HTTP (worker extra)",
        description="Serve /metrics (the fleet's counters and histograms, read from Redis).",
    )
    try:
        from worker.ops.exporter import add_arguments
    except ModuleNotFoundError:  # the producer install: running it says which extra it needs
        exporter.set_defaults(unparsed_ok=True)
    else:
        add_arguments(exporter)
    exporter.set_defaults(handler=_metrics)


def _metrics(args: argparse.Namespace) -> int:
    from worker.ops.exporter import serve

    return serve(args)

"""`health worker` and `health beat`: liveness probes, one line of output, exit 0 or 1."""

from __future__ import annotations

import argparse

from worker.cli.common import Subparsers

DESCRIPTION = """\
health worker [--node NAME] [--timeout-s 5]
    This host's workers answer a remote-control request through the broker (their broker
    connection is up, their event loop runs) and every pool process they report is alive on
    this host: run it inside the worker's container. Without --node it asks every worker
    whose node name ends in @<this host> (names are unique per process: celery-<pid>-<hex>);
    with it, the workers of that name (`-n NAME@%h`, or NAME@HOST).
health beat [--intervals 30]
    The sweep ran within N sweep intervals (DELIVERY_SWEEP_INTERVAL_S), by Redis' clock. Beat
    schedules it and a worker runs it from the `flush` queue, so a dead beat and a stalled
    `flush` queue both fail here.
Exit 0 when healthy, 1 when not; one line on stdout either way.
"""


def _positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{raw!r} must be above 0 and at most 3600")
    return value


def register(sub: Subparsers) -> None:
    health = sub.add_parser(
        "health",
        help="liveness probes for a worker and for beat (exit 0 healthy, 1 not)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    probes = health.add_subparsers(dest="probe", required=True, metavar="PROBE")
    worker = probes.add_parser("worker", help="this host's worker answers and its pool lives")
    worker.add_argument(
        "--node", help="a worker's name, or NAME@HOST (default: every worker on this host)"
    )
    worker.add_argument("--timeout-s", type=_positive, default=5.0, help="default 5")
    worker.set_defaults(handler=_worker)
    beat = probes.add_parser("beat", help="the sweep ran within N sweep intervals")
    beat.add_argument("--intervals", type=_positive, default=30.0, help="default 30")
    beat.set_defaults(handler=_beat)


def _worker(args: argparse.Namespace) -> int:
    from worker import app
    from worker.ops.health import check_worker

    verdict = check_worker(app, args.node, args.timeout_s)
    print(verdict.line)
    return 0 if verdict.healthy else 1


def _beat(args: argparse.Namespace) -> int:
    from worker.cli.common import settings
    from worker.ops.health import check_beat
    from worker.transport.sentinel import connect

    s = settings()
    client = connect(s.redis_url, s.redis_sentinel_master, timeout_s=5)
    try:
        verdict = check_beat(client, s, args.intervals)
    finally:
        client.close()
    print(verdict.line)
    return 0 if verdict.healthy else 1

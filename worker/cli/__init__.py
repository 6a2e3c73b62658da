"""`b24-delivery`: the operator's commands, one console script (also `python -m worker.cli`).

Each group of subcommands is a module here with `register(subparsers)`; COMMANDS lists them.
Output is JSON lines (pipe it into jq); tokens never appear. A user's mistake (bad JSON, a
missing field, an unknown portal, an unreachable Redis) prints one line to stderr and exits 2.
Modules import their heavy dependencies inside the handler, so `--help` and the producer-only
install (`pip install .`: Celery and its transports) reach every command that needs no more.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from worker.cli import (
    dead,
    health,
    inspect,
    metrics,
    parking,
    produce,
    receipts,
    rotate_keys,
    schema,
    simulator,
)
from worker.cli.common import USAGE_ERROR, UserError, fail
from worker.release import version

#: every group of subcommands, in `--help` order
COMMANDS = (
    inspect,
    parking,
    dead,
    receipts,
    rotate_keys,
    produce,
    schema,
    simulator,
    metrics,
    health,
)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="b24-delivery",
        description="Operate b24-delivery: inspect the buffer, manage portals, produce work.",
    )
    ap.add_argument(
        "--version", action="version", version=f"b24-delivery {version()}", help="print the version"
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser()
    args, unparsed = ap.parse_known_args(argv)
    if unparsed and not getattr(args, "unparsed_ok", False):
        ap.error(f"unrecognized arguments: {' '.join(unparsed)}")
    try:
        return int(args.handler(args))
    except UserError as error:
        return fail(str(error))
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # known environment failures become one line; bugs re-raise
        message = _known(error)
        if message is None:
            raise
        return fail(message)


def _known(error: Exception) -> str | None:
    """One line for the failures a user can fix; None for bugs (those keep their traceback)."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from worker.errors import InvalidInput, SettingsError

    if isinstance(error, SettingsError):
        return f"invalid configuration: {error}"
    if isinstance(error, InvalidInput):
        return f"invalid input: {error}"
    if isinstance(error, RedisConnectionError | RedisTimeoutError | OperationalError):
        return f"cannot reach Redis: {error}"
    if isinstance(error, ModuleNotFoundError):
        return f"this command needs the worker extra (pip install 'b24-delivery[worker]'): {error}"
    return None


__all__ = ["COMMANDS", "USAGE_ERROR", "main", "parser"]

"""The kombu release the patched transport was tested with, and the start-up check.

The channel in this package overrides kombu's private methods (the BRPOP state machine, the
unacked indices). A kombu of another minor release may have changed them without notice, so a
worker refuses to start on one: the `worker` extra pins the same range, and an install outside
the lock files is caught here, at start, instead of by a message lost later.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

#: the kombu minor release this package was written and tested against (the lock files pin a
#: patch release of it; pyproject's `worker` extra allows only this minor release)
TESTED_KOMBU = "5.7"

_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:[.\-+a-z0-9]*)$", re.IGNORECASE)


def untested_kombu(found: str, tested: str = TESTED_KOMBU) -> str | None:
    """Why kombu `found` may not run the patched transport, or None when it is the `tested`
    minor release (any patch release of it)."""
    match = _RELEASE.match(found.strip())
    if match is None or ".".join(match.groups()) != tested:
        return (
            f"kombu {found} is installed, but the patched Redis transport "
            f"(worker/transport/kombu_redis) was tested with kombu {tested}.x only: install "
            f"'kombu>={tested},<{_next_minor(tested)}' (the lock files pin it)"
        )
    return None


def require_tested_kombu() -> None:
    """At worker start: exit with a clear message on a kombu this package was not tested with."""
    try:
        found = version("kombu")
    except PackageNotFoundError:  # pragma: no cover - celery itself needs kombu
        found = "(not installed)"
    reason = untested_kombu(found)
    if reason:
        raise SystemExit(f"b24-delivery: refusing to start: {reason}")


def _next_minor(release: str) -> str:
    major, minor = release.split(".")
    return f"{major}.{int(minor) + 1}"

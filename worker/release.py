"""This release's identity: the version written once, in pyproject.toml, read at run time from the
installed package's metadata (`b24-delivery --version`, the exporter's `b24d_build_info`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version

#: the distribution's name on PyPI and in the wheel
DISTRIBUTION = "b24-delivery"


def version() -> str:
    """The installed package's version; `0+unknown` when run from a tree that was never installed
    (`make install` installs it editable, so the tests and the demo see the real one)."""
    try:
        return distribution_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"

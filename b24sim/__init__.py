"""b24sim: a local simulator of Bitrix24 portals (REST) and their OAuth server, for tests."""

from __future__ import annotations

from .bucket import LeakyBucket
from .errors import OAUTH_ERRORS, REST_ERRORS
from .faults import Fault
from .operating import OperatingMeter
from .portal import COUNTER_NAMES, Accepted, Credentials, PortalConfig
from .server import Simulator
from .validate import METHOD, load_spec, validate

__all__ = [
    "COUNTER_NAMES",
    "METHOD",
    "OAUTH_ERRORS",
    "REST_ERRORS",
    "Accepted",
    "Credentials",
    "Fault",
    "LeakyBucket",
    "OperatingMeter",
    "PortalConfig",
    "Simulator",
    "load_spec",
    "validate",
]

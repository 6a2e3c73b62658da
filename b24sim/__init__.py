"""b24sim: a local simulator of Bitrix24 portals (REST) and their OAuth server, for tests."""

from __future__ import annotations

from .batch import MAX_COMMANDS
from .bucket import LeakyBucket
from .core import REDIRECT_STATUSES
from .errors import OAUTH_ERRORS, REST_ERRORS
from .faults import Fault
from .oauth import OAuthServer
from .operating import OperatingMeter
from .portal import COUNTER_NAMES, Accepted, Credentials, PortalConfig
from .records import CallRecord, RefreshRecord
from .server import Simulator
from .validate import METHOD, load_spec, validate

__all__ = [
    "COUNTER_NAMES",
    "MAX_COMMANDS",
    "METHOD",
    "OAUTH_ERRORS",
    "REDIRECT_STATUSES",
    "REST_ERRORS",
    "Accepted",
    "CallRecord",
    "Credentials",
    "Fault",
    "LeakyBucket",
    "OAuthServer",
    "OperatingMeter",
    "PortalConfig",
    "RefreshRecord",
    "Simulator",
    "load_spec",
    "validate",
]

"""Portal configuration and per-portal runtime state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .bucket import LeakyBucket
from .hostile import check_kind
from .operating import OperatingMeter
from .validate import real_connector_id

COUNTER_NAMES: tuple[str, ...] = (
    "calls",  # every REST request addressed to the portal
    "success",
    "accepted_messages",
    "rate_limited_503",
    "unauthorized_401",
    "expired_token_401",
    "no_auth_401",
    "operation_limit_429",
    "wrong_auth_type_403",
    "error_argument_400",
    "no_provider_400",
    "not_active_connector_400",
    "input_vars_truncated",  # batch commands whose query parse_str cut at max_input_vars
    "batch_length_exceeded",  # batch commands past the 50th, refused unrun
    "success_false",  # injected HTTP 200 {"SUCCESS": false} answers
    "faults_injected",
    "redirects",  # calls at an old address answered with a redirect
    "replaced_token_calls",  # calls with a token replaced or being replaced by a refresh
    "batch_requests",
    "batch_commands",
    "refreshes",
    "refresh_failures",
    "invalid_grant",
    "hostile_answers",  # answers of a hostile kind (b24sim/hostile.py: an adversary, no platform)
)


@dataclass
class PortalConfig:
    """One simulated portal. ``rate_per_s``/``burst`` default to 2/50 (enterprise: 5/250).

    ``connectors``: connector ids with a provider (None: any). ``active_connectors``: the portal's
    list of active connectors (None: every connector with a provider); a known connector not in
    it answers IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR (imconnector ``input.php``
    ``routing()``, ``Connector::isConnector``). ``lines``: line -> connector ids switched on for
    it (None: any connector on any line): the delivery path never reads it
    (``receivingStatusDelivery`` has no line check; only ``receivingMessage`` answers
    IMCONNECTOR_NOT_ACTIVE_LINE), so a delivery for a line whose connector is off succeeds.
    Ids are compared as the portal does (lowercased, cut at the first "."). ``oauth_server``:
    index of the OAuth server that issues its tokens (0: the main one). ``batch_refuse``: the
    error code this portal's ``batch`` answers for imconnector.send.status.delivery commands
    (None: allowed, as the rest source implies).
    """

    member_id: str
    domain: str = ""
    rate_per_s: float | None = None
    burst: float | None = None
    enterprise: bool = False
    token_ttl_s: float = 3600.0
    connectors: list[str] | None = None  # None: any connector is accepted
    active_connectors: list[str] | None = None  # None: every connector with a provider
    lines: dict[int, list[str]] | None = None  # None: every connector is active on every line
    oauth_server: int = 0
    batch_refuse: str | None = None
    refresh_latency_s: float = 0.0
    operating_per_call_s: float = 0.001
    operating_limit_s: float = 480.0
    operating_bucket_s: float = 60.0
    operating_buckets: int = 10
    refresh_revoked: bool = False
    scope: str = "imopenlines"
    user_id: int = 1
    status: str = "L"
    #: an adversary's answers instead of a portal's (b24sim/hostile.py KINDS); None: honest
    hostile: str | None = None

    def __post_init__(self) -> None:
        self.hostile = check_kind(self.hostile)
        if not self.member_id or "/" in self.member_id or self.member_id.startswith("_"):
            raise ValueError("member_id must be non-empty, without '/', not starting with '_'")
        if not self.domain:
            self.domain = f"{self.member_id}.bitrix24.test"
        if self.token_ttl_s <= 0:
            raise ValueError("token_ttl_s must be > 0")
        if self.connectors is not None:
            self.connectors = [real_connector_id(c) for c in self.connectors]
        if self.active_connectors is not None:
            self.active_connectors = [real_connector_id(c) for c in self.active_connectors]
        if self.lines is not None:
            try:
                self.lines = {
                    int(k): [real_connector_id(c) for c in v] for k, v in self.lines.items()
                }
            except (TypeError, ValueError, AttributeError):
                raise ValueError("lines must map line numbers to lists of connector ids") from None
        if self.oauth_server < 0:
            raise ValueError("oauth_server must be >= 0")

    @property
    def effective_rate(self) -> float:
        if self.rate_per_s is not None:
            return float(self.rate_per_s)
        return 5.0 if self.enterprise else 2.0

    @property
    def effective_burst(self) -> float:
        if self.burst is not None:
            return float(self.burst)
        return 250.0 if self.enterprise else 50.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PortalConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown portal fields: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["effective_rate"] = self.effective_rate
        d["effective_burst"] = self.effective_burst
        return d


@dataclass(frozen=True)
class Credentials:
    """What the application gets when a portal installs it."""

    member_id: str
    domain: str
    client_endpoint: str
    server_endpoint: str
    access_token: str
    refresh_token: str
    expires_in: float
    expires: int
    version: int = 0  # the portal's token version: 1 on install, +1 per issued pair

    def as_register_kwargs(self) -> dict[str, Any]:
        """The auth block as an install event carries it (``server_endpoint`` included)."""
        return {
            "member_id": self.member_id,
            "domain": self.domain,
            "client_endpoint": self.client_endpoint,
            "server_endpoint": self.server_endpoint,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_in": self.expires_in,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Accepted:
    """One accepted MESSAGES element; ``im``/``message``/``chat`` as sent (no ids are checked).

    ``via``: "direct" or "batch" (then ``command`` is the batch command's name).
    """

    member_id: str
    connector: str
    line: int
    im: Any
    message: Any
    chat: Any
    arrived_at: float
    call_id: int
    batch_size: int
    index: int
    via: str = "direct"
    command: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PortalState:
    """A portal's address is ``{base_url}/{prefix}/rest/``; a move changes one or both."""

    config: PortalConfig
    base_url: str
    prefix: str
    bucket: LeakyBucket
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    meters: dict[str, OperatingMeter] = field(default_factory=dict)

    @classmethod
    def create(cls, config: PortalConfig, base_url: str) -> PortalState:
        return cls(
            config=config,
            base_url=base_url,
            prefix=config.member_id,
            bucket=LeakyBucket(config.effective_rate, config.effective_burst),
        )

    @property
    def client_endpoint(self) -> str:
        return f"{self.base_url}/{self.prefix}/rest/"

    def meter(self, method: str) -> OperatingMeter:
        m = self.meters.get(method)
        if m is None:
            c = self.config
            m = OperatingMeter(c.operating_limit_s, c.operating_bucket_s, c.operating_buckets)
            self.meters[method] = m
        return m

    def reset(self) -> None:
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.bucket.reset()
        for m in self.meters.values():
            m.reset()

"""Portal configuration and per-portal runtime state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .bucket import LeakyBucket
from .operating import OperatingMeter

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
    "faults_injected",
    "refreshes",
    "refresh_failures",
)


@dataclass
class PortalConfig:
    """One simulated portal. ``rate_per_s``/``burst`` default to 2/50 (enterprise: 5/250)."""

    member_id: str
    domain: str = ""
    rate_per_s: float | None = None
    burst: float | None = None
    enterprise: bool = False
    token_ttl_s: float = 3600.0
    connectors: list[str] | None = None  # None: any connector is accepted
    refresh_latency_s: float = 0.0
    operating_per_call_s: float = 0.001
    operating_limit_s: float = 480.0
    operating_bucket_s: float = 60.0
    operating_buckets: int = 10
    refresh_revoked: bool = False
    scope: str = "imopenlines"
    user_id: int = 1
    status: str = "L"

    def __post_init__(self) -> None:
        if not self.member_id or "/" in self.member_id or self.member_id.startswith("_"):
            raise ValueError("member_id must be non-empty, without '/', not starting with '_'")
        if not self.domain:
            self.domain = f"{self.member_id}.bitrix24.test"
        if self.token_ttl_s <= 0:
            raise ValueError("token_ttl_s must be > 0")

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

    def as_register_kwargs(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "domain": self.domain,
            "client_endpoint": self.client_endpoint,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_in": self.expires_in,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Accepted:
    """One accepted MESSAGES element."""

    member_id: str
    connector: str
    line: int
    im: dict[str, Any]
    message: dict[str, Any] | None
    chat: dict[str, Any] | None
    arrived_at: float
    call_id: int
    batch_size: int
    index: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PortalState:
    config: PortalConfig
    client_endpoint: str
    bucket: LeakyBucket
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    meters: dict[str, OperatingMeter] = field(default_factory=dict)

    @classmethod
    def create(cls, config: PortalConfig, base_url: str) -> PortalState:
        return cls(
            config=config,
            client_endpoint=f"{base_url}/{config.member_id}/rest/",
            bucket=LeakyBucket(config.effective_rate, config.effective_burst),
        )

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

"""Fault injection: error codes, 5xx bursts, latency, dropped connections, non-JSON, overload,
and the HTTP 200 ``SUCCESS: false`` answer of older portals."""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import lookup

FaultKind = Literal["error", "latency", "drop", "non_json", "overload", "success_false"]
FaultTarget = Literal["rest", "oauth", "batch_command"]
KINDS: tuple[str, ...] = ("error", "latency", "drop", "non_json", "overload", "success_false")
TARGETS: tuple[str, ...] = ("rest", "oauth", "batch_command")

DEFAULT_HTML = (
    "<html><head><title>502 Bad Gateway</title></head><body>"
    "<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


@dataclass
class Fault:
    """One fault rule.

    ``kind``: "error" (answer ``error`` with its documented status, or ``status``), "latency"
    (sleep ``latency_s`` then continue normally), "drop" (close the socket without an answer),
    "non_json" (answer ``body``/an HTML page with ``status``, default 502), "overload"
    (``OVERLOAD_LIMIT`` until cleared), "success_false" (HTTP 200 ``{"result": {"SUCCESS":
    false}}``, as older portals answered a failure). Setting ``error`` alone implies kind "error".
    ``portal``: member_id, or None for every portal. ``count``: fire on the next K matching calls;
    ``fraction``: fire on that share of calls (seeded RNG); neither: every call until cleared.
    ``target``: "rest" (portal REST requests, a ``batch`` as a whole), "oauth" (the token
    endpoints) or "batch_command" (one command inside a ``batch``: only "error" kinds apply);
    ``server``: with "oauth", only that OAuth server's index (None: every one).
    """

    kind: FaultKind = "error"
    error: str | None = None
    portal: str | None = None
    count: int | None = None
    fraction: float | None = None
    latency_s: float = 0.0
    status: int | None = None
    body: str | None = None
    description: str | None = None
    target: FaultTarget = "rest"
    server: int | None = None
    seed: int | None = None
    id: int = field(default=0, compare=False)
    fired: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.target not in TARGETS:
            raise ValueError(f"unknown fault target {self.target!r}; one of {', '.join(TARGETS)}")
        if self.kind == "overload":
            self.error = "OVERLOAD_LIMIT"
        if self.kind == "error" and not self.error:
            raise ValueError("an error fault needs an error code")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction must be within [0, 1]")
        if self.count is not None and self.count < 0:
            raise ValueError("count must be >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        allowed = {k for k in cls.__dataclass_fields__ if k not in ("id", "fired")}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultAction:
    """What to do with one request after the faults were consulted."""

    latency_s: float = 0.0
    kind: str | None = None  # None: proceed normally; "error" | "drop" | "non_json" | ...
    status: int = 200
    error: str = ""
    description: str = ""
    body: str = ""
    fault_ids: list[int] = field(default_factory=list)


class FaultBook:
    """Thread-safe list of active faults."""

    def __init__(self, seed: int | None = 0) -> None:
        self._faults: list[Fault] = []
        self._rngs: dict[int, random.Random] = {}
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> int:
        with self._lock:
            fault.id = next(self._ids)
            seed = fault.seed if fault.seed is not None else self._rng.randrange(2**32)
            self._rngs[fault.id] = random.Random(seed)
            self._faults.append(fault)
            return fault.id

    def clear(self, portal: str | None = None, fault_id: int | None = None) -> int:
        with self._lock:
            keep = [
                f
                for f in self._faults
                if not (
                    (fault_id is None or f.id == fault_id)
                    and (portal is None or f.portal == portal)
                )
            ]
            removed = len(self._faults) - len(keep)
            self._faults = keep
            return removed

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def _fires(self, f: Fault) -> bool:
        if f.count is not None:
            if f.count <= 0:
                return False
            f.count -= 1
            return True
        if f.fraction is not None:
            return self._rngs[f.id].random() < f.fraction
        return True

    def consult(
        self, member_id: str | None, target: FaultTarget, server: int | None = None
    ) -> FaultAction:
        action = FaultAction()
        with self._lock:
            for f in self._faults:
                if f.target != target or (f.portal is not None and f.portal != member_id):
                    continue
                if f.server is not None and f.server != server:
                    continue
                if f.kind == "latency":
                    if self._fires(f):
                        f.fired += 1
                        action.latency_s += f.latency_s
                        action.fault_ids.append(f.id)
                    continue
                if action.kind is not None or not self._fires(f):
                    continue
                f.fired += 1
                action.fault_ids.append(f.id)
                action.latency_s += f.latency_s
                action.kind = "error" if f.kind == "overload" else f.kind
                if action.kind == "error":
                    code = f.error or "INTERNAL_SERVER_ERROR"
                    status, desc = lookup(code, oauth=target == "oauth")
                    action.status = f.status or status
                    action.error = code
                    action.description = f.description or desc
                elif action.kind == "non_json":
                    action.status = f.status or 502
                    action.body = f.body if f.body is not None else DEFAULT_HTML
            self._faults = [f for f in self._faults if f.count is None or f.count > 0]
        return action

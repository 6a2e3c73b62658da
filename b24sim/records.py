"""What tests observe: one record per REST request and per refresh request, and their counts."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CallRecord:
    """One REST request addressed to a portal (a ``batch`` request is one record).

    ``token_state``: "valid", "expired", "replaced" (its refresh token was spent), "unknown",
    "webhook" or "none" (no token), as of the moment the request arrived; ``refresh_in_flight``:
    a refresh of this token's pair was under way at an OAuth server then. ``outcome``: "success",
    the error code, "SUCCESS_FALSE", "redirect_<status>", "drop" or "http_<status>".
    """

    call_id: int
    member_id: str
    method: str
    via: str  # "direct" or "batch"
    address: str  # the base URL + prefix the request reached
    access_token: str
    token_version: int | None
    token_state: str
    refresh_in_flight: bool
    status: int
    outcome: str
    at: float

    @property
    def with_replaced_token(self) -> bool:
        """Made with a token that a refresh had replaced or was replacing (whatever the answer)."""
        return self.token_state == "replaced" or self.refresh_in_flight  # noqa: S105 (a state)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["with_replaced_token"] = self.with_replaced_token
        return d


@dataclass(frozen=True)
class RefreshRecord:
    """One request to a token endpoint: which server got it, with which client id and secret."""

    server: int
    member_id: str | None  # None: the refresh token was never issued
    client_id: str
    client_secret: str
    refresh_token: str
    status: int
    outcome: str  # "success" or the error code
    started_at: float
    finished_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recorder:
    """Thread-safe logs of calls and refresh requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[CallRecord] = []
        self._refreshes: list[RefreshRecord] = []

    def add_call(self, rec: CallRecord) -> None:
        with self._lock:
            self._calls.append(rec)

    def add_refresh(self, rec: RefreshRecord) -> None:
        with self._lock:
            self._refreshes.append(rec)

    def calls(self, portal: str | None = None) -> list[CallRecord]:
        with self._lock:
            return [c for c in self._calls if portal is None or c.member_id == portal]

    def refreshes(
        self, server: int | None = None, portal: str | None = None
    ) -> list[RefreshRecord]:
        with self._lock:
            return [
                r
                for r in self._refreshes
                if (server is None or r.server == server)
                and (portal is None or r.member_id == portal)
            ]

    def call_outcomes(self, portal: str | None = None) -> dict[str, int]:
        return dict(Counter(c.outcome for c in self.calls(portal)))

    def refresh_counts(self) -> dict[int, int]:
        return dict(Counter(r.server for r in self.refreshes()))

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
            self._refreshes.clear()

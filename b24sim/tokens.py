"""Access/refresh token store with single-use refresh tokens."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass


@dataclass
class AccessToken:
    member_id: str
    expires_at: float  # time.monotonic()
    webhook: bool = False


class TokenStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, tuple[str, str]] = {}  # refresh -> (member_id, access)
        self._spent: dict[str, str] = {}  # used refresh token -> member_id

    def issue(self, member_id: str, ttl_s: float) -> tuple[str, str]:
        access, refresh = secrets.token_hex(24), secrets.token_hex(24)
        with self._lock:
            self._access[access] = AccessToken(member_id, time.monotonic() + ttl_s)
            self._refresh[refresh] = (member_id, access)
        return access, refresh

    def issue_webhook(self, member_id: str, ttl_s: float) -> str:
        token = secrets.token_hex(8)
        with self._lock:
            self._access[token] = AccessToken(member_id, time.monotonic() + ttl_s, webhook=True)
        return token

    def get(self, access: str) -> AccessToken | None:
        with self._lock:
            return self._access.get(access)

    def expire(self, member_id: str | None = None) -> int:
        past = time.monotonic() - 1.0
        n = 0
        with self._lock:
            for a in self._access.values():
                if member_id is None or a.member_id == member_id:
                    a.expires_at = past
                    n += 1
        return n

    def owner_of_refresh(self, refresh: str) -> str | None:
        """Portal of a live or already-used refresh token."""
        with self._lock:
            entry = self._refresh.get(refresh)
            return entry[0] if entry else self._spent.get(refresh)

    def consume(self, refresh: str) -> str | None:
        """Spend a refresh token and kill its access token; its member_id, or None if invalid."""
        with self._lock:
            entry = self._refresh.pop(refresh, None)
            if entry is None:
                return None
            self._spent[refresh] = entry[0]
            self._access.pop(entry[1], None)
            return entry[0]

"""One small exception tree for everything that can go wrong.

    DeliveryError
    ├── SettingsError          a setting is invalid (start-up stops)
    ├── InvalidInput           a task's payload breaks a rule (names the field and the rule)
    └── PortalError            a call to Bitrix24 did not succeed; `.outcome` is its policy row

The code branches on `PortalError.outcome` (worker/flush/policy.py's table), never on a subclass.
Messages never carry tokens or the client secret: they are built from codes and descriptions.
"""

from __future__ import annotations

from worker.flush.policy import Outcome


class DeliveryError(Exception):
    """Raised when anything this project checks goes wrong (the root of its exceptions)."""


class SettingsError(DeliveryError):
    """Raised when a setting is invalid; the message names the variable and what it accepts."""


class InvalidInput(DeliveryError):
    """Raised when a task's payload breaks a rule; names the field and the rule."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field} {rule}")
        self.field = field
        self.rule = rule

    def __reduce__(self) -> tuple[type[InvalidInput], tuple[str, str]]:
        # Celery pickles a task's exception for its events; keep the class (and `throws`).
        return (InvalidInput, (self.field, self.rule))


class PortalError(DeliveryError):
    """Raised when a Bitrix24 call or token refresh did not succeed; `.outcome` says how the
    policy treats it (throttled, auth, blocked, transient, permanent, ...)."""

    def __init__(
        self,
        outcome: Outcome,
        code: str,
        description: str = "",
        http_status: int | None = None,
        reset_at: float | None = None,
        location: str = "",
    ) -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.outcome = outcome
        self.code = code
        self.description = description
        self.http_status = http_status
        #: for OPERATION_TIME_LIMIT: the portal's `time.operating_reset_at`, when it gave one
        self.reset_at = reset_at
        #: for a redirect (MOVED): the answer's Location header
        self.location = location

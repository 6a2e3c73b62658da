"""One small exception tree for everything that can go wrong.

    DeliveryError
    ├── SettingsError          a setting is invalid (start-up stops)
    ├── InvalidInput           a task's payload breaks a rule (names the field and the rule)
    └── PortalError            a call to Bitrix24 did not succeed; `.outcome` is its policy row
        ├── Throttled          503 QUERY_LIMIT_EXCEEDED, 429 OPERATION_TIME_LIMIT
        ├── TokenExpired       401 expired_token
        ├── AuthBroken         401 NO_AUTH_FOUND on a fresh token, invalid_grant, no credentials
        ├── PortalBlocked      503 OVERLOAD_LIMIT
        ├── Transient          5xx, timeouts, resets, non-JSON bodies
        └── Permanent          400/403/404/405: method, argument and access errors

Messages never carry tokens or the client secret: they are built from codes and descriptions.
"""

from __future__ import annotations

from worker.policy import Outcome


class DeliveryError(Exception):
    """Root of the project's exceptions."""


class SettingsError(DeliveryError):
    """A setting is invalid; the message names the variable and what it accepts."""


class InvalidInput(DeliveryError):
    """A payload breaks a rule."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field} {rule}")
        self.field = field
        self.rule = rule

    def __reduce__(self) -> tuple[type[InvalidInput], tuple[str, str]]:
        # Celery pickles a task's exception for its events; keep the class (and `throws`).
        return (InvalidInput, (self.field, self.rule))


class PortalError(DeliveryError):
    """A Bitrix24 call or token refresh that did not succeed."""

    outcome: Outcome = Outcome.TRANSIENT

    def __init__(
        self,
        code: str,
        description: str = "",
        http_status: int | None = None,
        reset_at: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.http_status = http_status
        #: for OPERATION_TIME_LIMIT: the portal's `time.operating_reset_at`, when it gave one
        self.reset_at = reset_at


class Throttled(PortalError):
    outcome = Outcome.THROTTLED


class TokenExpired(PortalError):
    outcome = Outcome.AUTH


class AuthBroken(PortalError):
    outcome = Outcome.AUTH_BROKEN


class PortalBlocked(PortalError):
    outcome = Outcome.BLOCKED


class Transient(PortalError):
    outcome = Outcome.TRANSIENT


class Permanent(PortalError):
    outcome = Outcome.PERMANENT


BY_OUTCOME: dict[Outcome, type[PortalError]] = {
    Outcome.THROTTLED: Throttled,
    Outcome.OPERATION_LIMIT: Throttled,
    Outcome.AUTH: TokenExpired,
    Outcome.AUTH_BROKEN: AuthBroken,
    Outcome.BLOCKED: PortalBlocked,
    Outcome.TRANSIENT: Transient,
    Outcome.PERMANENT: Permanent,
}


def portal_error(
    outcome: Outcome,
    code: str,
    description: str = "",
    http_status: int | None = None,
    reset_at: float | None = None,
) -> PortalError:
    """The exception for a classified outcome (keeps the precise outcome on the instance)."""
    error = BY_OUTCOME[outcome](code, description, http_status, reset_at)
    error.outcome = outcome
    return error

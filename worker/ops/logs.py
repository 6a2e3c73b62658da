"""structlog set-up: JSON lines off a terminal, console rendering on one, secrets redacted.

Celery's own stdlib log records go through the same processors (ProcessorFormatter), so a token
that reaches a log line by any path is masked before it is written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor

from worker.ops.redaction import MASK, SECRET_KEYS, redact

__all__ = ["MASK", "SECRET_KEYS", "configure_logging", "redact", "redact_secrets"]


def redact_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets wherever they appear in the event."""
    clean: MutableMapping[str, Any] = redact(event_dict)
    return dict(clean)


def _renderer(fmt: str, stream: Any) -> Processor:
    console = fmt == "console" or (fmt == "auto" and getattr(stream, "isatty", lambda: False)())
    if console:
        return structlog.dev.ConsoleRenderer(colors=True)
    return structlog.processors.JSONRenderer(sort_keys=False)


def shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]


def configure_logging(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Route structlog and stdlib logging (Celery's included) through one redacting pipeline."""
    stream = stream or sys.stderr
    shared = shared_processors()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(fmt, stream),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "kombu", "amqp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)

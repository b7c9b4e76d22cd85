"""Structured logs: JSON lines in production, readable console lines in development.

Every line of a request or an expiry carries the bound context (correlation id, session id).
"""

from __future__ import annotations

import logging
import sys

import structlog

from payment_window.config import Environment, Settings
from payment_window.redaction import redact_secrets


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    as_json = (
        settings.log_json
        if settings.log_json is not None
        else (settings.env is Environment.PRODUCTION)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(),
            # Local variables in tracebacks would print request headers, bearer tokens included.
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False),
        )
    )
    processors = [*shared]
    if as_json:
        processors.append(structlog.processors.format_exc_info)
    # Last before rendering, so the rendered traceback (JSON mode) is masked too.
    processors.append(redact_secrets(settings))
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Not cached: configuring again (a Lambda's warm start, tests) must reach every logger.
        cache_logger_on_first_use=False,
    )

"""Keep bearer tokens out of log records.

The websockets protocol object that uvicorn uses logs every handshake header at DEBUG
level (through ``uvicorn.error``), and browsers carry their token in
``Sec-WebSocket-Protocol``. A filter on the loggers that see those headers rewrites any
record that would contain a token, whatever level the operator chose.
"""

from __future__ import annotations

import logging
import re

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(authorization\s*[:=]\s*)[^\r\n]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[^\s,'\"]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(ems\.bearer\.)[^\s,'\"]+"), r"\1[redacted]"),
    (re.compile(r"\bems_[A-Za-z0-9]{16,}"), "ems_[redacted]"),
)

#: Loggers that may see raw handshake headers or request lines.
GUARDED_LOGGERS: tuple[str, ...] = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "websockets",
    "websockets.server",
    "websockets.protocol",
    "ems_dashboard_ws",
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactTokens(logging.Filter):
    """Rewrite records whose rendered message would carry a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def install() -> None:
    """Attach the filter to every guarded logger once (idempotent)."""
    for name in GUARDED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())

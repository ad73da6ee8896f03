"""Named errors of the access engine; callers catch these, never asyncpg's."""

from __future__ import annotations


class AccessError(Exception):
    """Base class of every error raised by ems_access."""


class InvalidTopicFilterError(AccessError, ValueError):
    """A topic filter that MQTT (or our placeholder syntax) does not allow."""


class InvalidRuleError(AccessError, ValueError):
    """An ACL rule whose topic or access value is not allowed."""


class InvalidTokenError(AccessError, ValueError):
    """A token too short to be a high-entropy secret, or a bad role/device binding."""


class TokenNotFoundError(AccessError, LookupError):
    """No live token with that id (never existed, or revoked)."""


class TokenUnusableError(AccessError):
    """A configured token (e.g. EMS_ADMIN_TOKEN) exists but is revoked or expired."""


class UnknownDeviceError(AccessError, LookupError):
    """A device token names a device that is not registered."""

"""Named errors of the platform; each is raised ``from`` the cause it explains."""

from __future__ import annotations


class PlatformError(Exception):
    """Base of the platform's own errors."""


class SchemaNotMigratedError(PlatformError):
    """The database lacks the EMS tables: ``ems migrate`` has not been run against it."""


class DatabaseUnavailableError(PlatformError):
    """The database could not be reached at startup."""

"""Validation of the MQTT topic filters browsers subscribe to."""

from __future__ import annotations

from ems_access.errors import InvalidTopicFilterError
from ems_access.topics import PLACEHOLDERS, validate_filter

MAX_FILTER_BYTES = 1024


class InvalidFilter(ValueError):
    """A subscription filter that MQTT would refuse, or that only an ACL rule may use."""


def check_filter(topic_filter: str) -> str:
    """Return the filter if a browser may subscribe to it, else raise InvalidFilter.

    ``%c``/``%u`` are ACL placeholders, not topics, so a browser may not use them.
    """
    if len(topic_filter.encode("utf-8", "surrogatepass")) > MAX_FILTER_BYTES:
        raise InvalidFilter(f"topic filter longer than {MAX_FILTER_BYTES} bytes")
    try:
        levels = validate_filter(topic_filter)
    except InvalidTopicFilterError as exc:
        raise InvalidFilter(str(exc)) from exc
    if PLACEHOLDERS.intersection(levels):
        raise InvalidFilter(f"placeholders are not allowed in {topic_filter!r}")
    return topic_filter

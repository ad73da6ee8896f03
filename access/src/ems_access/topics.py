"""MQTT topic-filter algebra: matching, validation, coverage and overlap.

Everything works on topics split into levels, so a filter is parsed once per rule and the
hot path (one ACL check per delivered message) is a short loop over tuples.

The ``$`` rule of MQTT 3.1.1 (4.7.2) applies throughout: a filter whose first level is a
wildcard never matches a topic whose first level starts with ``$``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ems_access.errors import InvalidTopicFilterError

SINGLE = "+"
MULTI = "#"
PLACEHOLDERS = frozenset({"%c", "%u"})
# MQTT strings are length-prefixed with two bytes.
MAX_TOPIC_BYTES = 65535

Levels = Sequence[str]


def _check_common(name: str, what: str) -> None:
    if not name:
        raise InvalidTopicFilterError(f"{what} must not be empty")
    if "\0" in name:
        raise InvalidTopicFilterError(f"{what} must not contain NUL")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise InvalidTopicFilterError(f"{what} is longer than {MAX_TOPIC_BYTES} bytes")


def validate_filter(topic_filter: str, *, placeholders: bool = False) -> tuple[str, ...]:
    """Split a filter into levels, or raise InvalidTopicFilterError.

    ``+`` and ``#`` must fill a whole level and ``#`` must be last. With ``placeholders``,
    ``%c`` and ``%u`` are accepted too, but only as whole levels: a half-substituted level
    such as ``dev-%c`` would let a crafted client id widen the rule.
    """
    _check_common(topic_filter, "topic filter")
    levels = tuple(topic_filter.split("/"))
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if level == MULTI:
            if index != last:
                raise InvalidTopicFilterError(f"'#' must be the last level: {topic_filter!r}")
        elif level == SINGLE:
            continue
        elif MULTI in level or SINGLE in level:
            raise InvalidTopicFilterError(f"wildcards must fill a whole level: {topic_filter!r}")
        elif "%" in level and placeholders and level not in PLACEHOLDERS:
            raise InvalidTopicFilterError(
                f"placeholders %c and %u must fill a whole level: {topic_filter!r}"
            )
    return levels


def is_valid_filter(topic_filter: str) -> bool:
    try:
        validate_filter(topic_filter)
    except InvalidTopicFilterError:
        return False
    return True


def is_valid_topic_name(topic: str) -> bool:
    """A concrete topic a client may publish to: non-empty, no wildcards, no NUL."""
    return (
        bool(topic)
        and SINGLE not in topic
        and MULTI not in topic
        and "\0" not in topic
        and len(topic) <= MAX_TOPIC_BYTES
    )


def _dollar_blocked(filter_first: str, topic_first: str) -> bool:
    return filter_first in (SINGLE, MULTI) and topic_first.startswith("$")


def match_levels(filter_levels: Levels, topic_levels: Levels) -> bool:
    """Whether a split filter matches a split concrete topic."""
    if _dollar_blocked(filter_levels[0], topic_levels[0]):
        return False
    n_topic = len(topic_levels)
    for index, level in enumerate(filter_levels):
        if level == MULTI:
            # '#' also matches the parent level: 'a/#' matches 'a'.
            return True
        if index >= n_topic:
            return False
        if level != SINGLE and level != topic_levels[index]:
            return False
    return len(filter_levels) == n_topic


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching of a concrete topic against a filter (``+``, ``#``, ``$`` rule)."""
    if not topic_filter or not is_valid_topic_name(topic):
        return False
    return match_levels(topic_filter.split("/"), topic.split("/"))


def covers_levels(outer: Levels, inner: Levels) -> bool:
    """Whether every topic matched by ``inner`` is also matched by ``outer``."""
    # A literal '$...' first level makes inner match '$' topics, which outer's leading
    # wildcard would not; a leading wildcard in inner matches no '$' topic at all.
    if inner[0] not in (SINGLE, MULTI) and _dollar_blocked(outer[0], inner[0]):
        return False
    n_inner = len(inner)
    for index, level in enumerate(outer):
        if level == MULTI:
            return True
        if index >= n_inner:
            return False
        inner_level = inner[index]
        if inner_level == MULTI:
            # A bare '#' matches every (non-$) topic of one or more levels, and so does
            # '+/#'; deeper down, inner's '#' also matches its parent, which outer cannot.
            return index == 0 and tuple(outer) == (SINGLE, MULTI)
        if level == SINGLE:
            continue
        if inner_level == SINGLE or inner_level != level:
            return False
    return len(outer) == n_inner


def filter_covers(outer: str, inner: str) -> bool:
    """String form of covers_levels; invalid filters cover and are covered by nothing."""
    if not (is_valid_filter(outer) and is_valid_filter(inner)):
        return False
    return covers_levels(outer.split("/"), inner.split("/"))


def overlap_levels(a: Levels, b: Levels) -> bool:
    """Whether some concrete topic is matched by both filters."""
    if _dollar_blocked(a[0], b[0]) or _dollar_blocked(b[0], a[0]):
        return False
    for index in range(max(len(a), len(b))):
        level_a = a[index] if index < len(a) else None
        level_b = b[index] if index < len(b) else None
        if level_a == MULTI or level_b == MULTI:
            return True
        if level_a is None or level_b is None:
            return False
        if level_a != level_b and SINGLE not in (level_a, level_b):
            return False
    return True


def filters_overlap(a: str, b: str) -> bool:
    if not (is_valid_filter(a) and is_valid_filter(b)):
        return False
    return overlap_levels(a.split("/"), b.split("/"))

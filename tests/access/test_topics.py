"""MQTT filter algebra: matching, validation, coverage, overlap."""

from __future__ import annotations

import itertools

import pytest

from ems_access import InvalidTopicFilterError, filter_covers, filters_overlap, topic_matches
from ems_access.topics import is_valid_filter, is_valid_topic_name, match_levels, validate_filter


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("ems/dev1/telemetry", "ems/dev1/telemetry", True),
        ("ems/dev1/telemetry", "ems/dev2/telemetry", False),
        ("ems/+/telemetry", "ems/dev1/telemetry", True),
        ("ems/+/telemetry", "ems/dev1/status", False),
        ("ems/+", "ems/dev1/telemetry", False),
        ("ems/#", "ems/dev1/telemetry", True),
        ("ems/#", "ems", True),  # '#' includes the parent level
        ("ems/#", "emsx/a", False),
        ("#", "anything/at/all", True),
        ("+", "a", True),
        ("+", "a/b", False),
        ("+/+", "/a", True),  # an empty level is still a level
        ("ems/+/cmd/#", "ems/d/cmd", True),
        ("ems/+/cmd/#", "ems/d/cmd/ack", True),
        ("#", "$SYS/broker/load", False),  # MQTT 4.7.2: wildcards skip $-topics
        ("+/broker/load", "$SYS/broker/load", False),
        ("$SYS/#", "$SYS/broker/load", True),
        ("$SYS/+/load", "$SYS/broker/load", True),
        ("ems/dev1", "ems/dev1/", False),
        ("ems/dev1/", "ems/dev1/", True),
        ("ems/#", "ems/+/x", False),  # a topic name may not hold wildcards
        ("ems/#", "", False),
        ("", "ems", False),
        ("Ems/#", "ems/a", False),  # case-sensitive
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    "bad",
    ["", "ems/#/x", "ems/a#", "ems/+a", "a/b+/c", "##", "a\0b", "x" * 70000],
)
def test_invalid_filters(bad: str) -> None:
    assert not is_valid_filter(bad)
    with pytest.raises(InvalidTopicFilterError):
        validate_filter(bad)


@pytest.mark.parametrize("good", ["#", "+", "a/+/#", "/", "a//b", "$SYS/#", "ems/%c/cmd"])
def test_valid_filters(good: str) -> None:
    assert is_valid_filter(good)


def test_placeholders_must_fill_a_level() -> None:
    assert validate_filter("ems/%c/cmd", placeholders=True) == ("ems", "%c", "cmd")
    assert validate_filter("ems/%u/#", placeholders=True) == ("ems", "%u", "#")
    with pytest.raises(InvalidTopicFilterError):
        validate_filter("ems/dev-%c/cmd", placeholders=True)
    with pytest.raises(InvalidTopicFilterError):
        validate_filter("ems/%x/cmd", placeholders=True)


def test_topic_names() -> None:
    assert is_valid_topic_name("ems/dev1/telemetry")
    assert is_valid_topic_name("/")
    for bad in ("", "a/+", "a/#", "a\0"):
        assert not is_valid_topic_name(bad)


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("ems/#", "ems/#", True),
        ("ems/#", "ems/+/telemetry", True),
        ("ems/#", "ems", True),
        ("ems/#", "#", False),
        ("#", "ems/#", True),
        ("#", "+/x", True),
        ("#", "$SYS/#", False),
        ("$SYS/#", "$SYS/x", True),
        ("ems/+/telemetry", "ems/dev1/telemetry", True),
        ("ems/+/telemetry", "ems/+/telemetry", True),
        ("ems/dev1/telemetry", "ems/+/telemetry", False),
        ("ems/+/telemetry", "ems/#", False),
        ("ems/+", "ems/+/x", False),
        ("ems/+/#", "ems/a", True),
        ("ems/+/#", "ems/#", False),  # ems/# also matches 'ems' itself
        ("ems/a/#", "ems/+/x", False),
        ("a/+", "a", False),
    ],
)
def test_filter_covers(outer: str, inner: str, expected: bool) -> None:
    assert filter_covers(outer, inner) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("ems/#", "ems/dev1/cmd", True),
        ("ems/+/cmd", "ems/dev1/+", True),
        ("ems/+/cmd", "ems/dev1/status", False),
        ("ems/#", "ems", True),
        ("ems/a", "ems/a/b", False),
        ("ems/a/#", "ems/+", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/+", True),
        ("#", "+", True),
    ],
)
def test_filters_overlap(a: str, b: str, expected: bool) -> None:
    assert filters_overlap(a, b) is expected
    assert filters_overlap(b, a) is expected


_LEVELS = ["a", "b", "$s", "", "+", "#"]
_TOPIC_LEVELS = ["a", "b", "$s", ""]


def _filters(max_levels: int) -> list[str]:
    out: list[str] = []
    for n in range(1, max_levels + 1):
        for combo in itertools.product(_LEVELS, repeat=n):
            candidate = "/".join(combo)
            if is_valid_filter(candidate):
                out.append(candidate)
    return out


def _topics(max_levels: int) -> list[str]:
    out: list[str] = []
    for n in range(1, max_levels + 1):
        out.extend("/".join(c) for c in itertools.product(_TOPIC_LEVELS, repeat=n))
    # The empty topic is not publishable, but the algebra treats it as a topic like any
    # other (which only errs on the safe side for deny rules), so it is a witness here.
    return ["", *out]


def test_cover_and_overlap_agree_with_brute_force() -> None:
    """Exhaustively check coverage/overlap against matching over a small universe.

    Filters of up to 3 levels only ever distinguish topics by their first 3 levels plus
    "deeper than that", so topics of up to 4 levels are a complete witness set.
    """
    filters = _filters(3)
    topics = _topics(4)
    matched = {
        f: frozenset(t for t in topics if match_levels(f.split("/"), t.split("/"))) for f in filters
    }
    for outer, inner in itertools.product(filters, repeat=2):
        assert filter_covers(outer, inner) is (matched[inner] <= matched[outer]), (outer, inner)
        assert filters_overlap(outer, inner) is bool(matched[inner] & matched[outer]), (
            outer,
            inner,
        )

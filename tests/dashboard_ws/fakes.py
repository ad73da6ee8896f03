"""A fake principal for the pure routing tests: reads the topics its filters match."""

from __future__ import annotations

from dataclasses import dataclass, field

from ems_access.topics import filters_overlap, topic_matches


@dataclass
class FakePolicy:
    readable: list[str] = field(default_factory=lambda: ["#"])

    def can_read(self, topic: str) -> bool:
        return any(topic_matches(f, topic) for f in self.readable)

    def may_subscribe(self, topic_filter: str) -> bool:
        return any(filters_overlap(f, topic_filter) for f in self.readable)

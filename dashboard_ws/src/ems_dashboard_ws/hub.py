"""The in-process fan-out: broker messages in, per-session frames out.

Everything here is synchronous on purpose: routing a message is a loop of dictionary
lookups and non-blocking appends, so one slow browser can never hold up the broker link or
another browser.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ems_access.topics import topic_matches
from ems_contract import TopicError, TopicKind, parse_topic
from ems_dashboard_ws import frames
from ems_dashboard_ws.filters import InvalidFilter, check_filter
from ems_dashboard_ws.frames import Envelope
from ems_dashboard_ws.session import Session

logger = logging.getLogger(__name__)


def _retained_by_contract(topic: str) -> bool:
    """Status topics are retained by the wire contract.

    MQTT 3.1.1 brokers clear the RETAIN flag on messages forwarded to an existing
    subscription, so a live status update arrives unflagged; the contract tells us it
    replaced the retained one.
    """
    try:
        return parse_topic(topic).kind is TopicKind.STATUS
    except TopicError:
        return False


class Hub:
    def __init__(self, *, max_filters: int = 256, retained_limit: int = 100_000) -> None:
        self._sessions: dict[int, Session] = {}
        self._retained: dict[str, Envelope] = {}
        self._max_filters = max_filters
        self._retained_limit = retained_limit
        self.messages_in = 0
        self.frames_out = 0

    # -- sessions ------------------------------------------------------------------------

    def attach(self, session: Session) -> None:
        self._sessions[session.id] = session

    def detach(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    @property
    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    # -- broker side ---------------------------------------------------------------------

    def on_mqtt_message(self, topic: str, payload: bytes, retain: bool) -> None:
        self.messages_in += 1
        targets = [s for s in self._sessions.values() if s.wants(topic)]
        keep = retain or _retained_by_contract(topic)
        if not targets and not keep:
            return  # nobody is watching: skip decoding the payload at all
        envelope = Envelope.from_mqtt(topic, payload)
        if keep:
            self._remember(envelope, empty=not payload)
        if targets:
            live = envelope.frame(retained=retain)
            for session in targets:
                session.offer(live)
            self.frames_out += len(targets)

    def _remember(self, envelope: Envelope, *, empty: bool) -> None:
        # A zero-length retained message is how MQTT deletes the retained message.
        self._retained.pop(envelope.topic, None)
        if empty:
            return
        if len(self._retained) >= self._retained_limit:
            oldest = next(iter(self._retained))
            del self._retained[oldest]
            logger.warning(
                "retained cache full (%d topics); forgot %s", self._retained_limit, oldest
            )
        self._retained[envelope.topic] = envelope

    def forget_retained(self) -> None:
        """Called on (re)connect: the broker is about to send its current retained set."""
        self._retained.clear()

    def retained_topics(self) -> list[str]:
        return sorted(self._retained)

    # -- browser side --------------------------------------------------------------------

    def subscribe(self, session: Session, topic_filters: Iterable[str]) -> None:
        """Answer ``subscribed`` and replay matching retained messages, in that order.

        Both happen in one synchronous step, so no live message can slip in between the
        answer and the replay, nor between the replay and later live messages.
        """
        accepted: list[str] = []
        denied: list[str] = []
        problems: list[str] = []
        for topic_filter in dict.fromkeys(topic_filters):
            try:
                check_filter(topic_filter)
            except InvalidFilter as exc:
                denied.append(topic_filter)
                problems.append(str(exc))
                continue
            known = topic_filter in session.filters
            if not known and len(session.filters) + len(accepted) >= self._max_filters:
                denied.append(topic_filter)
                problems.append(f"at most {self._max_filters} subscriptions per connection")
                continue
            if session.policy.may_subscribe(topic_filter):
                accepted.append(topic_filter)
            else:
                denied.append(topic_filter)
        if problems:
            session.send_control(frames.error("; ".join(dict.fromkeys(problems))))
        session.add_filters(accepted)
        session.send_control(frames.subscribed(accepted, denied))
        for topic in sorted(self._retained):
            if any(topic_matches(f, topic) for f in accepted) and session.may_read(topic):
                session.offer(self._retained[topic].frame(retained=True))
                self.frames_out += 1
        logger.debug(
            "session %d subscribed %d filters, %d denied", session.id, len(accepted), len(denied)
        )

    def unsubscribe(self, session: Session, topic_filters: Iterable[str]) -> None:
        removed = session.remove_filters(list(dict.fromkeys(topic_filters)))
        session.send_control(frames.unsubscribed(removed))

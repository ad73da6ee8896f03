"""Routing logic of the fan-out with fake principals (the end-to-end tests use real ones)."""

import json

from ems_dashboard_ws.hub import Hub
from ems_dashboard_ws.session import Session
from tests.dashboard_ws.fakes import FakePolicy


async def _frames(session: Session) -> list[dict[str, object]]:
    out = []
    while session.queued:
        out.append(json.loads(await session.next_frame()))
    return out


def _session(*readable: str) -> Session:
    return Session(FakePolicy(list(readable) or ["#"]), "tok", queue_size=100, peer="test")


async def test_messages_reach_only_matching_and_readable_sessions() -> None:
    hub = Hub()
    everyone, dev1_only, unsubscribed = _session(), _session("ems/dev1/#"), _session()
    for s in (everyone, dev1_only, unsubscribed):
        hub.attach(s)
    hub.subscribe(everyone, ["ems/#"])
    hub.subscribe(dev1_only, ["ems/dev1/#"])
    await _frames(everyone)
    await _frames(dev1_only)

    hub.on_mqtt_message("ems/dev1/telemetry", b'{"v":1}', False)
    hub.on_mqtt_message("ems/dev2/telemetry", b'{"v":2}', False)

    assert [f["topic"] for f in await _frames(everyone)] == [
        "ems/dev1/telemetry",
        "ems/dev2/telemetry",
    ]
    assert [f["topic"] for f in await _frames(dev1_only)] == ["ems/dev1/telemetry"]
    assert await _frames(unsubscribed) == []


async def test_overlapping_filters_deliver_once() -> None:
    hub = Hub()
    session = _session()
    hub.attach(session)
    hub.subscribe(session, ["ems/#", "ems/+/status", "ems/dev1/status"])
    await _frames(session)
    hub.on_mqtt_message("ems/dev1/status", b'{"v":1,"state":"online"}', False)
    assert len(await _frames(session)) == 1


async def test_subscribe_answers_then_replays_retained() -> None:
    hub = Hub()
    hub.on_mqtt_message("ems/dev1/status", b'{"v":1,"state":"online"}', True)
    hub.on_mqtt_message("ems/dev2/status", b'{"v":1,"state":"offline"}', True)
    hub.on_mqtt_message("ems/dev1/telemetry", b'{"v":1}', False)
    session = _session("ems/dev1/#")
    hub.attach(session)
    hub.subscribe(session, ["ems/+/status", "ems/dev2/#"])
    frames = await _frames(session)
    assert frames[0] == {
        "type": "subscribed",
        "topics": ["ems/+/status"],
        "denied": ["ems/dev2/#"],
    }
    assert frames[1:] == [
        {
            "type": "message",
            "topic": "ems/dev1/status",
            "payload": {"v": 1, "state": "online"},
            "retained": True,
        }
    ]


async def test_live_status_replaces_retained_and_empty_clears_it() -> None:
    hub = Hub()
    hub.on_mqtt_message("ems/dev1/status", b'{"v":1,"state":"online"}', True)
    # Live messages arrive without the RETAIN flag, but status is retained by contract.
    hub.on_mqtt_message("ems/dev1/status", b'{"v":1,"state":"offline"}', False)
    hub.on_mqtt_message("other/thing", b"x", True)
    hub.on_mqtt_message("other/thing", b"", True)
    assert hub.retained_topics() == ["ems/dev1/status"]
    session = _session()
    hub.attach(session)
    hub.subscribe(session, ["#"])
    frames = await _frames(session)
    assert frames[1]["payload"] == {"v": 1, "state": "offline"}


async def test_invalid_filters_are_denied_with_an_error() -> None:
    hub = Hub()
    session = _session()
    hub.attach(session)
    hub.subscribe(session, ["ems/#/x", "ems/a+", "ems/+/status"])
    frames = await _frames(session)
    assert frames[0]["type"] == "error"
    assert frames[1] == {
        "type": "subscribed",
        "topics": ["ems/+/status"],
        "denied": ["ems/#/x", "ems/a+"],
    }


async def test_filter_limit() -> None:
    hub = Hub(max_filters=2)
    session = _session()
    hub.attach(session)
    hub.subscribe(session, ["a", "b", "c"])
    frames = await _frames(session)
    assert "at most 2" in str(frames[0]["detail"])
    assert frames[1]["denied"] == ["c"]


async def test_unsubscribe_stops_delivery() -> None:
    hub = Hub()
    session = _session()
    hub.attach(session)
    hub.subscribe(session, ["ems/#"])
    hub.unsubscribe(session, ["ems/#"])
    hub.on_mqtt_message("ems/dev1/telemetry", b"{}", False)
    frames = await _frames(session)
    assert frames[-1] == {"type": "unsubscribed", "topics": ["ems/#"]}
    assert all(f["type"] != "message" for f in frames)


async def test_detached_sessions_get_nothing() -> None:
    hub = Hub()
    session = _session()
    hub.attach(session)
    hub.subscribe(session, ["#"])
    await _frames(session)
    hub.detach(session)
    hub.on_mqtt_message("ems/dev1/telemetry", b"{}", False)
    assert await _frames(session) == []

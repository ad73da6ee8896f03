import asyncio
import json

from ems_dashboard_ws.session import Session
from tests.dashboard_ws.fakes import FakePolicy


def _session(queue_size: int = 3) -> Session:
    return Session(FakePolicy(), "tok", queue_size=queue_size, peer="test")


async def _drain(session: Session) -> list[str]:
    out = []
    while session.queued:
        out.append(await session.next_frame())
    return out


async def test_full_outbox_drops_oldest_and_reports_lag() -> None:
    session = _session(queue_size=3)
    for n in range(10):
        session.offer(f"m{n}")
    first = await session.next_frame()
    assert json.loads(first) == {"type": "lag", "dropped": 7}
    assert await _drain(session) == ["m7", "m8", "m9"]
    assert session.dropped_total == 7


async def test_control_frames_are_never_dropped() -> None:
    session = _session(queue_size=2)
    session.send_control("c1")
    for n in range(5):
        session.offer(f"m{n}")
    frames = [await session.next_frame()]
    frames += await _drain(session)
    assert frames[0].startswith('{"type": "lag"')
    assert frames[1:] == ["c1", "m3", "m4"]


async def test_next_frame_waits_for_work() -> None:
    session = _session()
    waiter = asyncio.create_task(session.next_frame())
    await asyncio.sleep(0)
    assert not waiter.done()
    session.offer("m")
    assert await waiter == "m"


async def test_routes_follow_filters_and_policy() -> None:
    session = Session(FakePolicy(["ems/dev1/#"]), "tok", queue_size=3, peer="test")
    assert not session.wants("ems/dev1/status")
    session.add_filters(["ems/+/status"])
    assert session.wants("ems/dev1/status")
    assert not session.wants("ems/dev2/status")
    session.set_policy(FakePolicy(["#"]))
    assert session.wants("ems/dev2/status")
    assert session.remove_filters(["ems/+/status", "nope"]) == ["ems/+/status"]
    assert not session.wants("ems/dev2/status")


async def test_close_request_is_first_wins() -> None:
    session = _session()
    session.request_close(1008, "first")
    session.request_close(1000, "second")
    assert (await session.close_request).reason == "first"

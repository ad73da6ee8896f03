"""The cancel request a failed TaskGroup leaves on its waiting task is withdrawn, so the task's
later timeouts still time out (CPython 3.11; see ``_drop_group_cancel``)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from ems_platform.ingest.service import _drop_group_cancel


async def _fail() -> None:
    await asyncio.sleep(0)
    raise RuntimeError("child failed")


async def test_a_failed_group_leaves_no_cancel_request_and_timeouts_work() -> None:
    me = asyncio.current_task()
    assert me is not None
    before = me.cancelling()
    with pytest.raises(ExceptionGroup):
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_fail())
            tasks.create_task(asyncio.sleep(3600))
    _drop_group_cancel(me, before)
    assert me.cancelling() == before
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await asyncio.Event().wait()


async def test_cancel_requests_counted_before_the_group_are_kept() -> None:
    me = asyncio.current_task()
    assert me is not None
    me.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0)  # delivered here, and still counted by cancelling()
    before = me.cancelling()
    assert before == 1
    _drop_group_cancel(me, before)
    assert me.cancelling() == 1
    me.uncancel()

"""Steady telemetry load and exactly-once checks for the resilience and scale-out tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiomqtt
import asyncpg

from ems_platform.core.db import Pool
from tests.platform.payloads import encode, sample

POLL_ATTEMPTS = 6000  # x 50 ms: a bound for a stuck test, not a performance target
PHASES_PER_SAMPLE = 3


async def eventually(check: Callable[[], Awaitable[bool]], attempts: int = POLL_ATTEMPTS) -> None:
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def rows_stored(pool: Pool) -> int:
    """energy_readings rows, or -1 while the database is unreachable."""
    try:
        return int(await pool.fetchval("SELECT count(*) FROM energy_readings"))
    except (
        OSError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.OperatorInterventionError,
        asyncpg.CannotConnectNowError,
    ):
        return -1


@dataclass
class Fleet:
    """Devices publishing one 3-phase sample each per period, with unique ``seq``/``ts``.

    ``published[d]`` counts samples the broker acknowledged (QoS 1), so after ``stop`` the
    database must end up holding exactly ``published[d] * 3`` rows of device ``d``.
    """

    host: str
    port: int
    device_ids: list[str]
    period: float = 0.05
    tokens: dict[str, str] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.published.values())

    def start(self) -> None:
        for device_id in self.device_ids:
            self.published[device_id] = 0
            self._tasks.append(
                asyncio.create_task(self._publish(device_id), name=f"fleet-{device_id}")
            )

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _publish(self, device_id: str) -> None:
        token = self.tokens.get(device_id)
        async with aiomqtt.Client(
            self.host,
            self.port,
            identifier=device_id,
            username=device_id if token else None,
            password=token,
        ) as client:
            seq = 0
            while not self._stop.is_set():
                payload = encode(sample(seq, energy=100.0))
                await client.publish(f"ems/{device_id}/telemetry", payload, qos=1)
                seq += 1
                self.published[device_id] = seq
                try:
                    async with asyncio.timeout(self.period):
                        await self._stop.wait()
                except TimeoutError:
                    pass

    async def all_stored(self, pool: Pool) -> bool:
        return await rows_stored(pool) == self.total * PHASES_PER_SAMPLE


async def assert_exactly_once(pool: Pool, fleet: Fleet) -> None:
    """Every published sample stored once per phase: nothing missing, nothing twice."""
    rows = await pool.fetch(
        "SELECT device_id, phase, count(*) AS n, count(DISTINCT seq) AS seqs, "
        "min(seq) AS first, max(seq) AS last FROM energy_readings GROUP BY device_id, phase"
    )
    got = {(r["device_id"], r["phase"]): (r["n"], r["seqs"], r["first"], r["last"]) for r in rows}
    expected = {
        (device_id, phase): (n, n, 0, n - 1)
        for device_id, n in fleet.published.items()
        for phase in ("A", "B", "C")
    }
    assert got == expected

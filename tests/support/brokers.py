"""pytest plugin: one conformance suite, every EMS broker.

- ``broker_kind`` (function, parametrised over ``BROKER_KINDS``): ``"amqtt"`` (the built-in
  ``ems broker``, from ``tests/support/ems_broker.py``) or ``"mosquitto"`` (``ems broker
  --mosquitto``, from ``tests/support/ems_mosquitto.py``).
- ``broker_under_test_factory``: ``start(**EMS_env)`` -> ``BrokerUnderTest`` of that kind,
  against the test's ``database_url``; everything started is stopped by the underlying
  fixture.
- ``broker_under_test``: one broker of that kind with default settings.

A ``BrokerUnderTest`` has ``kind``, ``host``, ``port``, ``database_url``, ``logs()`` and
``stop()``, and ``await synced()``: returns once the broker enforces the database's current
tokens and rules (Mosquitto's plugin reads a snapshot file that follows the database; the
built-in broker reads the database itself, so there it returns at once).

``@pytest.mark.broker_xfail("amqtt", reason=...)`` marks a behaviour one broker cannot meet
as a *strict* xfail for that broker only (an unexpected pass fails the run, so a fix is
noticed); the test still runs, and still must pass, on the other brokers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

BROKER_KINDS = ("amqtt", "mosquitto")
_FACTORIES = {"amqtt": "ems_broker_factory", "mosquitto": "ems_mosquitto_factory"}


class BrokerHandle(Protocol):
    host: str
    port: int
    database_url: str

    def logs(self) -> str: ...

    def stop(self) -> None: ...


@dataclass
class BrokerUnderTest:
    kind: str
    handle: BrokerHandle

    @property
    def host(self) -> str:
        return self.handle.host

    @property
    def port(self) -> int:
        return self.handle.port

    @property
    def database_url(self) -> str:
        return self.handle.database_url

    def logs(self) -> str:
        return self.handle.logs()

    def stop(self) -> None:
        self.handle.stop()

    async def synced(self) -> None:
        wait_synced = getattr(self.handle, "wait_synced", None)
        if wait_synced is not None:
            await asyncio.to_thread(wait_synced)


BrokerFactory = Callable[..., BrokerUnderTest]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "broker_xfail(kind, reason): strict xfail of a conformance test for one broker kind",
    )


@pytest.fixture(params=BROKER_KINDS)
def broker_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    for mark in request.node.iter_markers("broker_xfail"):
        if mark.args and mark.args[0] == kind:
            reason = str(mark.kwargs.get("reason", ""))
            # Added before the test body runs, so pytest evaluates it for the call phase.
            request.node.add_marker(pytest.mark.xfail(strict=True, reason=f"{kind}: {reason}"))
    return kind


@pytest.fixture
def broker_under_test_factory(broker_kind: str, request: pytest.FixtureRequest) -> BrokerFactory:
    factory: Callable[..., Any] = request.getfixturevalue(_FACTORIES[broker_kind])

    def start(**env: str) -> BrokerUnderTest:
        return BrokerUnderTest(broker_kind, factory(**env))

    return start


@pytest.fixture
def broker_under_test(broker_under_test_factory: BrokerFactory) -> BrokerUnderTest:
    return broker_under_test_factory()

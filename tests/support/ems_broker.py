"""pytest plugin: the EMS broker (``python -m ems_broker``) as a real subprocess.

- ``ems_broker_factory`` (function): ``start(**env)`` runs a broker on a free port against
  the test's ``database_url`` (extra ``EMS_*`` settings as keyword arguments, e.g.
  ``EMS_MQTT_MAX_PACKET="4096"``) and returns a handle; all are stopped at teardown.
- ``ems_broker`` (function): one broker with default settings.

A handle has ``host``, ``port``, ``database_url``, ``logs()`` and ``stop()``. The broker
opens its port only after its database pool is up, so "accepts TCP" means "ready".
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest

from tests.support.processes import ServiceProcess, service_factory


class EmsBrokerError(RuntimeError):
    """The broker did not start or stop as asked."""


class EmsBrokerProcess(ServiceProcess):
    name = "ems broker"
    log_name = "ems-broker.log"
    error = EmsBrokerError
    start_timeout_s = 60.0

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ems_broker", "--log-level", "INFO"]


@pytest.fixture
def ems_broker_factory(database_url: str) -> Iterator[Callable[..., EmsBrokerProcess]]:
    yield from service_factory(EmsBrokerProcess, database_url, "ems-broker-")


@pytest.fixture
def ems_broker(ems_broker_factory: Callable[..., EmsBrokerProcess]) -> EmsBrokerProcess:
    return ems_broker_factory()

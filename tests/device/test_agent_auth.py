"""The agent against a Mosquitto that enforces the contract's device credentials and ACL."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ems_contract import parse_telemetry
from ems_device.agent import Agent
from tests.device.conftest import agent_settings
from tests.device.fakes import MqttObserver, eventually
from tests.support.mosquitto import MosquittoBroker, MosquittoFactory, write_password_file

TOKEN = "ems_dev1TokenThatMustNeverBeLogged0123456789"

# The default device rules of ARCHITECTURE section 3, in Mosquitto's ACL syntax.
ACL = """\
pattern write ems/%c/telemetry
pattern write ems/%c/status
pattern write ems/%c/cmd/ack
pattern read ems/%c/cmd
user observer
topic read ems/#
"""


@pytest.fixture
def secured(tmp_path: Path, mosquitto_factory: MosquittoFactory) -> MosquittoBroker:
    passwords = write_password_file(
        tmp_path / "passwd", {"dev1": TOKEN, "observer": "observer-secret"}
    )
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return mosquitto_factory(password_file=passwords, acl_file=acl)


async def test_device_token_connects_under_the_device_acl(
    tmp_path: Path,
    secured: MosquittoBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    observer = MqttObserver(
        secured.port, ["ems/#"], username="observer", password="observer-secret"
    )
    settings = agent_settings(tmp_path, secured, device_token=TOKEN)
    try:
        with caplog.at_level(logging.DEBUG):
            async with Agent(settings):
                await observer.wait_for(
                    lambda got: (
                        any(
                            m.topic == "ems/dev1/telemetry"
                            and parse_telemetry("dev1", m.payload).samples
                            for m in got
                        )
                        and any(m.topic == "ems/dev1/status" for m in got)
                    ),
                    what="telemetry and status allowed by the ACL",
                )
        assert TOKEN not in caplog.text
    finally:
        observer.close()


async def test_a_wrong_token_is_refused_and_sampling_goes_on(
    tmp_path: Path,
    secured: MosquittoBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "ems_wrongTokenAlsoNeverLogged"
    settings = agent_settings(tmp_path, secured, device_token=wrong)
    with caplog.at_level(logging.DEBUG):
        async with Agent(settings) as agent:
            await eventually(
                lambda: "refused the connection" in caplog.text, what="a refused CONNECT"
            )
            await eventually(lambda: agent.backlog >= 5, what="samples buffered meanwhile")
            assert not agent.connected
    assert wrong not in caplog.text

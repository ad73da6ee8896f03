"""Authentication, device binding, takeover policy and live revocation over real TCP."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
from paho.mqtt.reasoncodes import ReasonCode

from ems_access import authenticate, generate_token, revoke_token
from ems_timescale import LocalCluster
from tests.broker.clients import RawConnection, connect_packet
from tests.broker.conftest import MakeClient, MakeToken, Pool
from tests.support.ems_broker import EmsBrokerProcess

BAD_USERNAME_PASSWORD = 4
IDENTIFIER_REJECTED = 2
NOT_AUTHORIZED = 5


def refused_with(reason: ReasonCode | None, name: str) -> bool:
    return reason is not None and reason.is_failure and name.lower() in str(reason).lower()


async def test_good_token_accepted_with_any_username(
    make_token: MakeToken, clients: MakeClient
) -> None:
    token = await make_token("viewer")
    for username in ("ops", "someone else", ""):
        client = clients(f"viewer-{len(username)}", username=username, password=token)
        assert await client.connect(), client.connack


async def test_bad_tokens_refused(make_token: MakeToken, clients: MakeClient) -> None:
    await make_token("admin")
    unknown = clients("c1", username="ops", password=generate_token())
    assert not await unknown.connect()
    assert refused_with(unknown.connack, "user name or password")
    no_password = clients("c2", username="ops")
    assert not await no_password.connect()
    anonymous = clients("c3")
    assert not await anonymous.connect()


async def test_refusal_codes_on_the_wire(
    make_token: MakeToken, ems_broker: EmsBrokerProcess
) -> None:
    token = await make_token("device", device_id="dev1")
    cases = [
        (connect_packet("x", username="x", password=generate_token()), BAD_USERNAME_PASSWORD),
        (connect_packet("dev1", username="dev1"), BAD_USERNAME_PASSWORD),
        (connect_packet("other", username="dev1", password=token), NOT_AUTHORIZED),
        (connect_packet("dev1", username="dev1", password=token), 0),
    ]
    for raw_connect, expected in cases:
        conn = RawConnection(ems_broker.port)
        try:
            conn.send(raw_connect)
            assert conn.connack_code() == expected
        finally:
            conn.close()


async def test_secrets_never_reach_the_log(
    make_token: MakeToken, clients: MakeClient, ems_broker: EmsBrokerProcess
) -> None:
    token = await make_token("device", device_id="dev1")
    wrong = generate_token()
    assert not await clients("c1", username="dev1", password=wrong).connect()
    # A token pasted into the username field is redacted too.
    assert not await clients("c2", username=token, password=token).connect()
    assert await clients("dev1", username="dev1", password=token).connect()
    logs = ems_broker.logs()
    assert "refused MQTT connection" in logs
    for secret in (token, wrong, token[4:], wrong[4:]):
        assert secret not in logs


async def test_device_bound_to_its_id(make_token: MakeToken, clients: MakeClient) -> None:
    token = await make_token("device", device_id="dev1")
    wrong_client_id = clients("dev2", username="dev1", password=token)
    assert not await wrong_client_id.connect()
    assert refused_with(wrong_client_id.connack, "not authori")
    wrong_username = clients("dev1", username="ops", password=token)
    assert not await wrong_username.connect()
    no_username = clients("dev1", password=token)
    assert not await no_username.connect()
    right = clients("dev1", username="dev1", password=token)
    assert await right.connect()


async def test_revoked_token_refused_and_its_session_closed(
    make_token: MakeToken, clients: MakeClient, db_pool: Pool
) -> None:
    token = await make_token("viewer")
    live = clients("watcher", username="ops", password=token)
    assert await live.connect()
    assert await live.subscribe("ems/#") == 1
    principal = await authenticate(db_pool, token)
    assert principal is not None
    await revoke_token(db_pool, principal.token_id)
    await live.wait_disconnected()
    again = clients("watcher-2", username="ops", password=token)
    assert not await again.connect()


async def test_second_device_connection_replaces_the_first(
    make_token: MakeToken, clients: MakeClient
) -> None:
    device = await make_token("device", device_id="dev1")
    operator = await make_token("operator")
    first = clients("dev1", username="dev1", password=device, clean_session=False)
    assert await first.connect()
    assert await first.subscribe("ems/dev1/cmd") == 1
    second = clients("dev1", username="dev1", password=device, clean_session=False)
    assert await second.connect()
    await first.wait_disconnected()
    # The persistent session (with its subscription) moved to the new connection, which is
    # not deaf (amqtt 0.12.1 left it so).
    assert second.session_present
    ops = clients("ops-1", username="ops", password=operator)
    assert await ops.connect()
    await ops.publish("ems/dev1/cmd", b'{"v": 1}')
    received = await second.next_message()
    assert received.topic == "ems/dev1/cmd"


async def test_clean_session_takeover_closes_the_old_connection(
    make_token: MakeToken, clients: MakeClient
) -> None:
    device = await make_token("device", device_id="dev1")
    first = clients("dev1", username="dev1", password=device)
    assert await first.connect()
    second = clients("dev1", username="dev1", password=device)
    assert await second.connect()
    await first.wait_disconnected()
    assert await second.subscribe("ems/dev1/cmd") == 1


async def test_others_cannot_take_a_devices_client_id(
    make_token: MakeToken, clients: MakeClient
) -> None:
    device = await make_token("device", device_id="dev1")
    admin = await make_token("admin")
    dev = clients("dev1", username="dev1", password=device)
    assert await dev.connect()
    squatter = clients("dev1", username="ops", password=admin)
    assert not await squatter.connect()
    assert refused_with(squatter.connack, "identifier")
    assert not dev.disconnected.is_set()
    assert await dev.subscribe("ems/dev1/cmd") == 1


async def test_device_takes_its_id_back_from_a_squatter(
    make_token: MakeToken, clients: MakeClient
) -> None:
    device = await make_token("device", device_id="dev1")
    viewer = await make_token("viewer")
    squatter = clients("dev1", username="ops", password=viewer)
    assert await squatter.connect()
    dev = clients("dev1", username="dev1", password=device)
    assert await dev.connect()
    await squatter.wait_disconnected()


async def test_will_topic_must_be_writable(make_token: MakeToken, clients: MakeClient) -> None:
    device = await make_token("device", device_id="dev1")
    foreign_will = ("ems/dev2/status", b'{"v": 1, "state": "offline"}', 1, True)
    spoofer = clients("dev1", username="dev1", password=device, will=foreign_will)
    assert not await spoofer.connect()
    own_will = ("ems/dev1/status", b'{"v": 1, "state": "offline"}', 1, True)
    honest = clients("dev1", username="dev1", password=device, will=own_will)
    assert await honest.connect()


async def test_database_outage_keeps_connected_clients_working(
    make_token: MakeToken,
    clients: MakeClient,
    pg_cluster: LocalCluster,
    database_url: str,
    ems_broker: EmsBrokerProcess,
) -> None:
    """Connected clients never wait on the database: publishing works while it is away."""
    token = await make_token("admin")
    uncached = await make_token("admin")
    sub = clients("sub", username="ops", password=token)
    assert await sub.connect()
    assert await sub.subscribe("ems/#") == 1
    pub = clients("pub", username="ops", password=token)
    assert await pub.connect()
    database = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(pg_cluster.dsn("postgres"))
    try:
        # Refuse new connections to the broker's database and cut the existing ones.
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
        )
        await pub.publish("ems/dev1/telemetry", b"during outage")
        assert (await sub.next_message()).payload == b"during outage"
        # A token the broker has seen recently still works (cached); an unseen one cannot be
        # checked, and the client is told the server is unavailable, not that it is wrong.
        cached = clients("cached", username="ops", password=token)
        assert await cached.connect()
        newcomer = clients("new", username="ops", password=uncached)
        assert not await newcomer.connect()
        assert refused_with(newcomer.connack, "unavailable"), ems_broker.logs()[-3000:]
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()

"""The ACL matrix: role x topic x publish / subscribe / receive, retained delivery included.

One broker serves the whole matrix; each row is a token (the five roles' default rules and
two edited rule lists). For each row the test checks, against what ARCHITECTURE section 3
says the rules mean:

- subscribe: SUBACK for the exact topic is granted iff the token may read it;
- receive (retained): after subscribing to the exact topics *and* to wide filters (``#``,
  ``ems/#``, ``ems/+/cmd``), the retained messages delivered are exactly the readable ones.
  A broker may refuse a wide filter or grant it and filter per message; either way nothing
  unreadable may arrive;
- receive (live): the same for messages published while subscribed;
- publish: of the token's QoS 1 publishes, exactly the writable ones reach an admin watcher.

"Nothing else arrived" is decided by a sentinel message sent after the others, never by
waiting for a timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

from ems_access import AclRule, Role
from tests.conformance.conftest import MakeClient, Tokens
from tests.conformance.mqtt import Client, collect_until
from tests.support.brokers import BrokerUnderTest

DEV1 = ("ems/dev1/telemetry", "ems/dev1/status", "ems/dev1/cmd", "ems/dev1/cmd/ack")
DEV2 = ("ems/dev2/telemetry", "ems/dev2/status", "ems/dev2/cmd", "ems/dev2/cmd/ack")
EMS = DEV1 + DEV2
TOPICS = (*EMS, "site/other")
WIDE_FILTERS = ("#", "ems/#", "ems/+/cmd")
GRANTED = {0, 1}
REFUSED = 0x80


@dataclass(frozen=True)
class Row:
    name: str
    role: Role
    readable: frozenset[str]
    writable: frozenset[str]
    username: str
    device_id: str | None = None
    acl: tuple[AclRule, ...] | None = None

    @property
    def client_id(self) -> str:
        return self.device_id or f"row-{self.name}"

    @property
    def sentinel_topic(self) -> str:
        return sorted(self.readable)[0]

    @property
    def must_grant(self) -> tuple[str, ...]:
        """Wide filters the token may read entirely: these subscriptions must be granted."""
        covered = {"#": set(TOPICS), "ems/#": set(EMS), "ems/+/cmd": {DEV1[2], DEV2[2]}}
        return tuple(f for f, topics in covered.items() if topics <= self.readable)


ROWS = (
    Row(
        "device",
        "device",
        readable=frozenset({"ems/dev1/cmd"}),
        writable=frozenset({"ems/dev1/telemetry", "ems/dev1/status", "ems/dev1/cmd/ack"}),
        username="dev1",
        device_id="dev1",
    ),
    Row("viewer", "viewer", frozenset(EMS), frozenset(), username="wall"),
    Row("operator", "operator", frozenset(EMS), frozenset({DEV1[2], DEV2[2]}), username="ops"),
    Row("service", "service", frozenset(EMS), frozenset(EMS), username="ingest"),
    Row("admin", "admin", frozenset(TOPICS), frozenset(TOPICS), username="root"),
    # Edited rules: first match wins, so the deny shadows the later read of ems/#.
    Row(
        "viewer-deny-dev2",
        "viewer",
        frozenset(DEV1),
        frozenset(),
        username="wall2",
        acl=(AclRule("ems/dev2/#", "deny"), AclRule("ems/#", "read")),
    ),
    # %u fills a whole level with the username.
    Row(
        "service-own-site",
        "service",
        frozenset(DEV2),
        frozenset(DEV2),
        username="dev2",
        acl=(AclRule("ems/%u/#", "readwrite"),),
    ),
)


async def _subscribe_all(client: Client, row: Row) -> dict[str, int]:
    codes = {topic: await client.subscribe(topic) for topic in TOPICS}
    for wide in WIDE_FILTERS:
        codes[wide] = await client.subscribe(wide)
    return codes


async def _check_row(
    row: Row,
    broker: BrokerUnderTest,
    tokens: Tokens,
    clients: MakeClient,
    watcher: Client,
    admin: Client,
) -> list[str]:
    """The row's deviations from the expected matrix (empty: conformant)."""
    issued = await tokens.make(
        row.role, device_id=row.device_id, acl=list(row.acl) if row.acl else None
    )
    client = clients(broker, row.client_id, username=row.username, password=issued.token)
    assert await client.connect(), row.name
    problems: list[str] = []

    codes = await _subscribe_all(client, row)
    for topic in TOPICS:
        if (codes[topic] in GRANTED) != (topic in row.readable):
            problems.append(f"subscribe {topic}: SUBACK {codes[topic]}")
    for wide in row.must_grant:
        if codes[wide] not in GRANTED:
            problems.append(f"subscribe {wide}: SUBACK {codes[wide]}, expected granted")

    # Retained messages were sent as each subscription was granted; the sentinel follows.
    sentinel = f"sentinel retained {row.name}".encode()
    await admin.publish(row.sentinel_topic, sentinel)
    seen = await collect_until(client, row.sentinel_topic, sentinel)
    retained = {m.topic for m in seen if m.retain}
    if retained != row.readable:
        problems.append(f"retained received {sorted(retained ^ row.readable)} wrongly")

    for topic in TOPICS:
        await admin.publish(topic, f"live {row.name} {topic}".encode())
    sentinel = f"sentinel live {row.name}".encode()
    await admin.publish(row.sentinel_topic, sentinel)
    seen = await collect_until(client, row.sentinel_topic, sentinel)
    live = {m.topic for m in seen if m.payload.startswith(f"live {row.name} ".encode())}
    if live != row.readable:
        problems.append(f"live received {sorted(live ^ row.readable)} wrongly")

    for topic in TOPICS:
        await client.publish(topic, f"from {row.name} {topic}".encode())
    sentinel = f"sentinel publish {row.name}".encode()
    await admin.publish("site/other", sentinel)
    seen = await collect_until(watcher, "site/other", sentinel)
    published = {m.topic for m in seen if m.payload.startswith(f"from {row.name} ".encode())}
    if published != row.writable:
        problems.append(f"publish reached watcher for {sorted(published ^ row.writable)} wrongly")
    client.close()
    return [f"{row.name}: {problem}" for problem in problems]


async def test_acl_matrix(broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient) -> None:
    root = await tokens.make("admin")
    admin = clients(broker, "matrix-admin", username="root", password=root.token)
    watcher = clients(broker, "matrix-watcher", username="root", password=root.token)
    for client in (admin, watcher):
        assert await client.connect()
    assert await watcher.subscribe("#") in GRANTED
    # One retained message on every topic, before any row connects.
    for topic in TOPICS:
        await admin.publish(topic, f"retained {topic}".encode(), retain=True)
    sentinel = b"sentinel setup"
    await admin.publish("site/other", sentinel)
    await collect_until(watcher, "site/other", sentinel)

    problems: list[str] = []
    for row in ROWS:
        problems += await _check_row(row, broker, tokens, clients, watcher, admin)
    assert problems == []


async def test_retained_not_replayed_past_a_narrowed_acl(
    broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient
) -> None:
    """A persistent session subscribed while allowed must not get retained messages it may
    no longer read when it comes back (amqtt pushed them on reconnect, unchecked)."""
    root = await tokens.make("admin")
    admin = clients(broker, "admin", username="root", password=root.token)
    assert await admin.connect()
    reader = await tokens.make("viewer")
    first = clients(broker, "wall", username="wall", password=reader.token, clean_session=False)
    assert await first.connect()
    assert await first.subscribe("ems/#") in GRANTED
    first.close()

    await tokens.set_acl(reader, [AclRule("ems/dev2/#", "deny"), AclRule("ems/#", "read")])
    await admin.publish("ems/dev2/status", b"secret", retain=True)
    await admin.publish("ems/dev1/status", b"public", retain=True)

    again = clients(broker, "wall", username="wall", password=reader.token, clean_session=False)
    assert await again.connect()
    sentinel = b"sentinel"
    await admin.publish("ems/dev1/telemetry", sentinel)
    seen = await collect_until(again, "ems/dev1/telemetry", sentinel)
    assert [m for m in seen if m.topic.startswith("ems/dev2/")] == []

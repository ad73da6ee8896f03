"""The C plugin's pure parts against the Python engine, and the plugin build."""

from __future__ import annotations

import ctypes
import random
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ems_access import Access, AclRule, Principal, hash_token
from ems_access.store import SnapshotToken
from ems_broker.mosquitto import plugin_build
from ems_broker.mosquitto.plugin_build import PluginBuildError, build_plugin, source_dir
from ems_broker.mosquitto.snapshot import render_snapshot, write_snapshot

ACCESS: dict[Access, int] = {"read": 1, "write": 2, "readwrite": 3, "deny": 4}
LEVELS = ["ems", "a", "b", "$SYS", "+", "#", "%c", "%u", ""]
TOPIC_LEVELS = ["ems", "a", "b", "$SYS", "x", ""]


class RuleStruct(ctypes.Structure):
    _fields_ = [
        ("topic", ctypes.c_char_p),
        ("levels", ctypes.c_void_p),
        ("nlevels", ctypes.c_size_t),
        ("access", ctypes.c_uint),
        ("placeholders", ctypes.c_bool),
    ]


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ctypes.CDLL]:
    out = tmp_path_factory.mktemp("plugin") / "ems_pure.so"
    sources = [str(source_dir() / name) for name in ("acl.c", "snapshot.c", "ratelimit.c")]
    subprocess.run(
        ["gcc", "-O1", "-fPIC", "-shared", "-std=gnu11", "-o", str(out), *sources], check=True
    )
    library = ctypes.CDLL(str(out))
    library.ems_can.restype = ctypes.c_bool
    library.ems_can.argtypes = [
        ctypes.POINTER(RuleStruct), ctypes.c_size_t, ctypes.c_bool, ctypes.c_char_p,
        ctypes.c_char_p, ctypes.c_char_p,
    ]  # fmt: skip
    library.ems_can_subscribe.restype = ctypes.c_bool
    library.ems_can_subscribe.argtypes = [
        ctypes.POINTER(RuleStruct), ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p,
        ctypes.c_char_p,
    ]  # fmt: skip
    library.ems_rule_init.argtypes = [ctypes.POINTER(RuleStruct), ctypes.c_char_p, ctypes.c_uint]
    library.ems_snapshot_parse.restype = ctypes.c_void_p
    library.ems_snapshot_parse.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
    ]  # fmt: skip
    library.ems_snapshot_free.argtypes = [ctypes.c_void_p]
    library.ems_snapshot_find.restype = ctypes.c_void_p
    library.ems_snapshot_find.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    library.ems_limiter_new.restype = ctypes.c_void_p
    library.ems_limiter_new.argtypes = [ctypes.c_int, ctypes.c_double, ctypes.c_size_t]
    library.ems_limiter_failed.restype = ctypes.c_double
    library.ems_limiter_failed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_double]
    library.ems_limiter_blocked.restype = ctypes.c_double
    library.ems_limiter_blocked.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_double]
    library.ems_limiter_free.argtypes = [ctypes.c_void_p]
    library.ems_limiter_key.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    yield library


def _random_filter(rng: random.Random, levels: list[str]) -> str:
    return "/".join(rng.choice(levels) for _ in range(rng.randint(1, 4)))


def _valid_rules(rng: random.Random) -> list[AclRule]:
    rules: list[AclRule] = []
    while len(rules) < rng.randint(1, 4):
        try:
            rules.append(AclRule(_random_filter(rng, LEVELS), rng.choice(list(ACCESS))))
        except Exception:  # noqa: S112 - invalid generated filters are simply skipped
            continue
    return rules


def _c_rules(lib: ctypes.CDLL, rules: list[AclRule]) -> ctypes.Array[RuleStruct]:
    array = (RuleStruct * len(rules))()
    for index, rule in enumerate(rules):
        assert (
            lib.ems_rule_init(ctypes.byref(array[index]), rule.topic.encode(), ACCESS[rule.access])
            == 0
        )
    return array


def _b(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def test_acl_decisions_match_the_python_engine(lib: ctypes.CDLL) -> None:
    rng = random.Random(20261122)
    identities = [("a", "b"), ("x/y", "+"), ("ems", None), ("$SYS", "a")]
    checked = 0
    for _ in range(3000):
        rules = _valid_rules(rng)
        principal = Principal(uuid.uuid4(), "viewer", "t", None, tuple(rules))
        c_rules = _c_rules(lib, rules)
        client_id, username = rng.choice(identities)
        topic = _random_filter(rng, TOPIC_LEVELS)
        for write in (False, True):
            expected = principal.can(
                "write" if write else "read", topic, client_id=client_id, username=username
            )
            got = lib.ems_can(
                c_rules, len(rules), write, topic.encode(), _b(client_id), _b(username)
            )
            assert got == expected, (rules, topic, write, client_id, username)
        sub = _random_filter(rng, [*TOPIC_LEVELS, "+", "#"])
        expected = principal.can_subscribe(sub, client_id=client_id, username=username)
        got = lib.ems_can_subscribe(c_rules, len(rules), sub.encode(), _b(client_id), _b(username))
        assert got == expected, (rules, sub, client_id, username)
        checked += 1
    assert checked == 3000


def _snapshot_token(token: str, **kwargs: object) -> SnapshotToken:
    base: dict[str, object] = {
        "token_hash": hash_token(token),
        "id": uuid.uuid4(),
        "role": "viewer",
        "device_id": None,
        "expires_at": None,
        "rules": (AclRule("ems/#", "read"),),
    }
    base.update(kwargs)
    return SnapshotToken(**base)  # type: ignore[arg-type]


def test_snapshot_round_trips_through_the_c_parser(lib: ctypes.CDLL) -> None:
    tokens = [
        _snapshot_token("ems_one_0123456789012345678901234567890"),
        _snapshot_token(
            "ems_two_0123456789012345678901234567890",
            role="device",
            device_id="dev-a",
            expires_at=datetime(2030, 1, 1, tzinfo=UTC),
            rules=(
                AclRule("ems/%c/telemetry", "write"),
                AclRule("odd \\ topic/with space", "read"),
            ),
        ),
    ]
    text = render_snapshot(tokens).encode()
    err = ctypes.create_string_buffer(256)
    snap = lib.ems_snapshot_parse(text, len(text), err, len(err))
    assert snap, err.value
    try:
        for token in (
            "ems_one_0123456789012345678901234567890",
            "ems_two_0123456789012345678901234567890",
        ):
            assert lib.ems_snapshot_find(snap, bytes.fromhex(hash_token(token)))
        assert not lib.ems_snapshot_find(snap, bytes.fromhex(hash_token("nope")))
    finally:
        lib.ems_snapshot_free(snap)
    truncated = text[: text.rindex(b"end")]
    assert not lib.ems_snapshot_parse(truncated, len(truncated), err, len(err))
    assert b"truncated" in err.value


def test_rate_limiter_matches_ems_access_semantics(lib: ctypes.CDLL) -> None:
    limiter = lib.ems_limiter_new(3, 60.0, 100)
    try:
        key = b"10.0.0.1"
        assert lib.ems_limiter_failed(limiter, key, 0.0) == 0.0
        assert lib.ems_limiter_failed(limiter, key, 1.0) == 0.0
        assert lib.ems_limiter_failed(limiter, key, 2.0) == pytest.approx(58.0)
        assert lib.ems_limiter_blocked(limiter, key, 30.0) == pytest.approx(30.0)
        assert lib.ems_limiter_blocked(limiter, b"10.0.0.2", 30.0) == 0.0
        assert lib.ems_limiter_blocked(limiter, key, 60.0) == 0.0  # oldest left the window
    finally:
        lib.ems_limiter_free(limiter)
    out = ctypes.create_string_buffer(80)
    for addr, key_text in [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
    ]:
        lib.ems_limiter_key(addr.encode(), out, len(out))
        assert out.value.decode() == key_text


def test_write_snapshot_is_atomic_and_skips_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "access.snapshot"
    assert write_snapshot(path, "a\n")
    inode = path.stat().st_ino
    assert not write_snapshot(path, "a\n")
    assert path.stat().st_ino == inode
    assert write_snapshot(path, "b\n")
    assert path.read_text() == "b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["access.snapshot"]


def test_build_is_cached_by_source_hash(tmp_path: Path) -> None:
    first = build_plugin(tmp_path)
    assert first.name == "ems_auth.so" and first.parent.name == plugin_build.source_hash()
    mtime = first.stat().st_mtime_ns
    assert build_plugin(tmp_path) == first
    assert first.stat().st_mtime_ns == mtime


def test_missing_headers_say_how_to_fix_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin_build, "HEADERS", (tmp_path / "mosquitto_broker.h",))
    with pytest.raises(PluginBuildError, match=r"run scripts/setup-system\.sh"):
        build_plugin(tmp_path / "cache")

"""The fast telemetry path accepts exactly what the exact path accepts, with identical samples.

``parse_telemetry`` first tries ``parse_telemetry_fast`` (one pydantic-core pass over the
bytes) and falls back to ``parse_telemetry_exact`` (json.loads, then each check in turn)
whenever the fast path has anything to reject. So the property is: whatever the payload,
``parse_telemetry`` gives the very verdict of the exact path. Crafted payloads cover the
known differences between the two JSON parsers; seeded random mutations of valid payloads
look for unknown ones.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from ems_contract import MAX_BATCH_BYTES, MEASUREMENTS, Sample, TelemetryVerdict, parse_telemetry
from ems_contract.telemetry import parse_telemetry_exact, parse_telemetry_fast
from tests.contract.test_payloads import PHASE, sample

DEVICE = "dev1"


def fingerprint(verdict: TelemetryVerdict) -> tuple[Any, ...]:
    """Everything observable of a verdict, down to the sign of a zero and the fields set."""

    def of(s: Sample) -> tuple[Any, ...]:
        phases = [(p, repr(r), sorted(r.model_fields_set)) for p, r in s.phases.items()]
        units = None if s.units is None else (repr(s.units), sorted(s.units.model_fields_set))
        return (repr(s), sorted(s.model_fields_set), s.ts.tzinfo, phases, units)

    rejected = [(r.reason, r.detail, r.index, repr(r.raw)) for r in verdict.rejected]
    return (verdict.batch, [of(s) for s in verdict.samples], rejected)


def check(payload: bytes) -> bool:
    """Assert the property for one payload; say whether the fast path took it."""
    exact = parse_telemetry_exact(DEVICE, payload)
    fast = parse_telemetry_fast(DEVICE, payload)
    if fast is not None:
        assert not exact.rejected, (payload, exact.rejected)
        assert fingerprint(fast) == fingerprint(exact), payload
    assert fingerprint(parse_telemetry(DEVICE, payload)) == fingerprint(exact), payload
    return fast is not None


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


CANONICAL = dumps(sample())
BATCH = dumps({"v": 1, "samples": [sample(seq=1), sample(seq=2)]})


def test_common_payloads_take_the_fast_path() -> None:
    """Not a correctness matter: the fast path must not quietly stop being taken."""
    common = [
        CANONICAL,
        json.dumps(sample()).encode(),  # with spaces
        dumps(sample(ts=1795335303000)),
        dumps(sample(units={"energy": "Wh", "power": "kW"})),
        dumps(sample(device_id=DEVICE)),
        dumps(sample(phases={"A": {k: int(v) for k, v in PHASE.items()}})),
        BATCH,
        dumps({"v": 1, "device_id": DEVICE, "samples": [sample(device_id=DEVICE)]}),
    ]
    for payload in common:
        assert check(payload), payload


def _swap(payload: bytes, old: bytes, new: bytes) -> bytes:
    assert old in payload, old
    return payload.replace(old, new, 1)


CRAFTED: dict[str, bytes] = {
    "v 1.0": _swap(CANONICAL, b'"v":1', b'"v":1.0'),
    "v true": _swap(CANONICAL, b'"v":1', b'"v":true'),
    "v 2": _swap(CANONICAL, b'"v":1', b'"v":2'),
    "v string": _swap(CANONICAL, b'"v":1', b'"v":"1"'),
    "v missing": _swap(CANONICAL, b'"v":1,', b""),
    "v duplicate 2 then 1": _swap(CANONICAL, b'"v":1', b'"v":2,"v":1'),
    "v duplicate 1 then 2": _swap(CANONICAL, b'"v":1', b'"v":1,"v":2'),
    "device duplicate, last ours": _swap(
        CANONICAL, b'"v":1', b'"v":1,"device_id":"dev2","device_id":"dev1"'
    ),
    "device duplicate, last other": _swap(
        CANONICAL, b'"v":1', b'"v":1,"device_id":"dev1","device_id":"dev2"'
    ),
    "device other": _swap(CANONICAL, b'"v":1', b'"v":1,"device_id":"dev2"'),
    "device null": _swap(CANONICAL, b'"v":1', b'"v":1,"device_id":null'),
    "device number": _swap(CANONICAL, b'"v":1', b'"v":1,"device_id":1'),
    "device non-ascii": _swap(CANONICAL, b'"v":1', '"v":1,"device_id":"dév1"'.encode()),
    "device escaped": _swap(CANONICAL, b'"v":1', b'"v":1,"device_id":"\\u0064ev1"'),
    "phase duplicate": _swap(CANONICAL, b'"B":{', b'"A":{'),
    "phase duplicate, first bad": _swap(
        CANONICAL, b'"A":{"voltage_rms":230.4', b'"A":{}, "A":{"voltage_rms":230.4'
    ),
    "NaN": _swap(CANONICAL, b"230.4", b"NaN"),
    "Infinity": _swap(CANONICAL, b"230.4", b"Infinity"),
    "-Infinity": _swap(CANONICAL, b"1102.5", b"-Infinity"),
    "1e999": _swap(CANONICAL, b"230.4", b"1e999"),
    "-1e999": _swap(CANONICAL, b"1102.5", b"-1e999"),
    "big int float": _swap(CANONICAL, b"230.4", b"1" + b"0" * 30),
    "huge int float": _swap(CANONICAL, b"230.4", b"1" + b"0" * 400),
    "tiny float": _swap(CANONICAL, b"230.4", b"1e-400"),
    "negative zero": _swap(CANONICAL, b"1102.5", b"-0.0"),
    "negative int zero": _swap(CANONICAL, b"1102.5", b"-0"),
    "float exponent": _swap(CANONICAL, b"230.4", b"2.304E2"),
    "many digits": _swap(CANONICAL, b"230.4", b"230.40000000000000568434188608080148696899414"),
    "halfway digits": _swap(CANONICAL, b"1102.5", b"9007199254740993"),
    "leading zero": _swap(CANONICAL, b"230.4", b"0230.4"),
    "bare dot": _swap(CANONICAL, b"230.4", b"230."),
    "dot first": _swap(CANONICAL, b"230.4", b".4"),
    "plus sign": _swap(CANONICAL, b"230.4", b"+230.4"),
    "hex": _swap(CANONICAL, b"230.4", b"0x10"),
    "seq float": _swap(CANONICAL, b'"seq":48213', b'"seq":48213.0'),
    "seq exponent": _swap(CANONICAL, b'"seq":48213', b'"seq":4.8213e4'),
    "seq big": _swap(CANONICAL, b'"seq":48213', b'"seq":123456789012345678901234567890'),
    "seq negative zero": _swap(CANONICAL, b'"seq":48213', b'"seq":-0'),
    "seq true": _swap(CANONICAL, b'"seq":48213', b'"seq":true'),
    "ts int": _swap(CANONICAL, b'"2026-11-22T08:15:03.000Z"', b"1795335303000"),
    "ts float": _swap(CANONICAL, b'"2026-11-22T08:15:03.000Z"', b"1795335303000.0"),
    "ts big": _swap(CANONICAL, b'"2026-11-22T08:15:03.000Z"', b"1" + b"0" * 40),
    "ts lower": _swap(CANONICAL, b'"2026-11-22T08:15:03.000Z"', b'"2026-11-22t08:15:03.000z"'),
    "ts offset": _swap(CANONICAL, b'"2026-11-22T08:15:03.000Z"', b'"2026-11-22T09:15:03+01:00"'),
    "ts escaped": _swap(CANONICAL, b'"2026-11-22T08', b'"2026-11-22\\u005408'),
    "ts surrogate": _swap(CANONICAL, b'.000Z"', b'.000Z\\udc00"'),
    "ts unicode digit": _swap(CANONICAL, b'"2026-', '"202\u0666-'.encode()),
    "boot escaped": _swap(CANONICAL, b'"boot":"3f9c', b'"boot":"\\u0033f9c'),
    "boot newline": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":"3f9c2a1e\\n"'),
    "boot raw tab": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":"3f9c\t2a1e"'),
    "boot raw control": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":"3f9c\x012a1e"'),
    "boot bad escape": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":"3f9c\\x2a1e"'),
    "boot lone surrogate": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":"\\ud800"'),
    "boot surrogate pair": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":"\\ud83d\\ude00"'),
    "boot 64": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":"' + b"b" * 64 + b'"'),
    "boot 65": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":"' + b"b" * 65 + b'"'),
    "boot empty": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":""'),
    "boot space": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":"3f9c 2a1e"'),
    "boot slash": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":"3f9c/2a1e"'),
    "boot every allowed": _swap(CANONICAL, b'"boot":"3f9c2a1e"', b'"boot":"azAZ09_.:-"'),
    "key escaped": _swap(CANONICAL, b'"seq"', b'"\\u0073eq"'),
    "units default": _swap(CANONICAL, b'"v":1', b'"v":1,"units":{}'),
    "units null": _swap(CANONICAL, b'"v":1', b'"v":1,"units":null'),
    "units bad": _swap(CANONICAL, b'"v":1', b'"v":1,"units":{"energy":"J"}'),
    "extra key": _swap(CANONICAL, b'"v":1', b'"v":1,"x":1'),
    "deep nesting": _swap(CANONICAL, b'"v":1', b'"v":1,"x":' + b"[" * 300 + b"]" * 300),
    "trailing comma": _swap(CANONICAL, b"}}}", b"},}}"),
    "trailing garbage": CANONICAL + b"x",
    "two objects": CANONICAL + b"{}",
    "trailing whitespace": CANONICAL + b" \t\r\n",
    "leading whitespace": b" \t\r\n" + CANONICAL,
    "form feed": CANONICAL + b"\x0c",
    "vertical tab": b"\x0b" + CANONICAL,
    "no-break space": CANONICAL + b"\xc2\xa0",
    "BOM": b"\xef\xbb\xbf" + CANONICAL,
    "latin-1 byte": _swap(CANONICAL, b'"boot":"3f9c', b'"boot":"\xe93f9c'),
    "invalid utf-8": CANONICAL + b"\xff",
    "nul byte": CANONICAL + b"\x00",
    "empty": b"",
    "array": b"[" + CANONICAL + b"]",
    "string": b'"x"',
    "null": b"null",
    "truncated": CANONICAL[:-1],
    "oversize": CANONICAL[:-1] + b" " * MAX_BATCH_BYTES + b"}",
    "just under the size limit": CANONICAL[:-1] + b" " * (MAX_BATCH_BYTES - len(CANONICAL)) + b"}",
    "samples in a single": _swap(CANONICAL, b'"v":1', b'"v":1,"samples":[]'),
    "batch": BATCH,
    "batch empty": dumps({"v": 1, "samples": []}),
    "batch not a list": dumps({"v": 1, "samples": {"0": sample()}}),
    "batch one bad": dumps({"v": 1, "samples": [sample(), sample(seq=-1)]}),
    "batch other device": dumps({"v": 1, "device_id": "dev2", "samples": [sample()]}),
    "batch sample other device": dumps({"v": 1, "samples": [sample(device_id="dev2")]}),
    "batch sample our device": dumps({"v": 1, "samples": [sample(device_id=DEVICE)]}),
    "batch v 2": dumps({"v": 2, "samples": [sample()]}),
    "batch v true": dumps({"v": True, "samples": [sample()]}),
    "batch extra": dumps({"v": 1, "samples": [sample()], "x": 1}),
    "batch escaped key": _swap(BATCH, b'"samples"', b'"\\u0073amples"'),
    "batch samples duplicate": _swap(BATCH, b'"samples":[', b'"samples":[1],"samples":['),
    "batch samples duplicate, last bad": _swap(
        BATCH, b'"samples":[', b'"samples":[],"samples":[1,'
    ),
    "batch of not objects": dumps({"v": 1, "samples": [1, "x", None]}),
    "batch too long": dumps({"v": 1, "samples": [{}] * 3601}),
    "batch nested": dumps({"v": 1, "samples": [{"v": 1, "samples": [sample()]}]}),
    "batch NaN": _swap(BATCH, b"230.4", b"NaN"),
}


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_payloads_agree(name: str) -> None:
    check(CRAFTED[name])


# Random mutations: JSON values put in place of a field's value, then byte-level edits.
_VALUES: list[Any] = [
    0, 1, -1, 1.5, -0.0, 2**53 + 1, 10**30, 1e-320, 1e308, True, False, None, "", "A", "1",
    "2026-11-22T08:15:03Z", "3f9c2a1e", [], [1], {}, {"A": 1}, 1795335303000, 0.961, -1.0001,
]  # fmt: skip
_TOKENS: list[bytes] = [
    b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-0", b"01", b"1.", b".5", b"+1", b"1e",
    b"true", b"null", b'"\\ud800"', b'"\\u0041"', b'"\xc3\xa9"', b"\xff", b"\x00", b"\t",
    b"\x0c", b",", b":", b"{", b"}", b"[", b"]", b'"', b"\\", b" ", b'"v":1,', b'"v":2,',
    b'"device_id":"dev1",', b'"device_id":"dev2",', b'"units":{"power":"kW"},', b'"x":1,',
]  # fmt: skip


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*path, index)))
    return found


def _mutate_value(rng: random.Random, doc: Any) -> Any:
    path = rng.choice(_paths(doc)[1:])
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    action = rng.random()
    if action < 0.6:
        parent[path[-1]] = rng.choice(_VALUES)
    elif action < 0.8 and isinstance(parent, dict):
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[rng.choice(["v", "ts", "seq", "boot", "phases", "units", "device_id", "samples",
                           "A", "D", *MEASUREMENTS])] = rng.choice(_VALUES)  # fmt: skip
    return doc


def _render(rng: random.Random, doc: Any) -> bytes:
    separators = rng.choice([(",", ":"), (", ", ": "), (" ,", " : ")])
    return json.dumps(doc, separators=separators, ensure_ascii=rng.random() < 0.5).encode()


def _mutate_bytes(rng: random.Random, payload: bytes) -> bytes:
    at = rng.randrange(len(payload) + 1)
    action = rng.random()
    if action < 0.4:
        return payload[:at] + rng.choice(_TOKENS) + payload[at:]
    if action < 0.7:
        return payload[:at] + rng.choice(_TOKENS) + payload[at + rng.randint(1, 8) :]
    if action < 0.85:
        return payload[:at] + payload[at + rng.randint(1, 4) :]
    # A number token swapped for a tricky one, where the payload has numbers.
    start = payload.find(b":", at)
    if start < 0:
        return payload
    return (
        payload[: start + 1] + rng.choice(_TOKENS) + payload[start + 1 :].lstrip(b"0123456789.-eE+")
    )


def _base(rng: random.Random) -> Any:
    if rng.random() < 0.7:
        return sample(seq=rng.randrange(10**6))
    return {"v": 1, "samples": [sample(seq=i) for i in range(rng.randint(1, 4))]}


MUTATIONS_PER_SEED = 600


def mutated_payloads(seed: int, count: int = MUTATIONS_PER_SEED) -> Iterator[bytes]:
    """Seeded random payloads: valid ones with values replaced, then bytes edited."""
    rng = random.Random(seed)
    for _ in range(count):
        doc = _base(rng)
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            doc = _mutate_value(rng, doc)
        payload = _render(rng, doc)
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            payload = _mutate_bytes(rng, payload)
        yield payload


@pytest.mark.parametrize("seed", range(8))
def test_random_mutations_agree(seed: int) -> None:
    fast_taken = sum(check(payload) for payload in mutated_payloads(seed))
    # Both kinds of outcome were exercised, so agreement says something.
    assert 0 < fast_taken < MUTATIONS_PER_SEED


def _number(rng: random.Random) -> bytes:
    """A JSON number as a device might write it, or one at the edge of a double's precision."""
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25))).lstrip("0")
    digits = digits or "0"
    kind = rng.random()
    if kind < 0.3:
        return digits.encode()  # an integer, maybe beyond 64 bits
    point = rng.randint(0, len(digits))
    mantissa = f"{digits[:point] or '0'}.{digits[point:] or '0'}"
    if kind < 0.6:
        return mantissa.encode()
    return f"{mantissa}{rng.choice('eE')}{rng.choice(['', '-', '+'])}{rng.randint(0, 330)}".encode()


def number_payloads(seed: int, count: int = 500) -> Iterator[bytes]:
    """The canonical sample with three of its numbers replaced by seeded random ones."""
    rng = random.Random(seed)
    fields = [b'"power_watt":1102.5', b'"power_var":210.0', b'"energy_kwh":10423.118']
    for _ in range(count):
        payload = CANONICAL
        for name in fields:
            payload = payload.replace(name, name.split(b":")[0] + b":" + _number(rng))
        yield payload


@pytest.mark.parametrize("seed", range(4))
def test_numbers_parse_to_the_same_floats(seed: int) -> None:
    """Both JSON parsers must round every decimal to the very same double."""
    fast_taken = sum(check(payload) for payload in number_payloads(seed))
    assert fast_taken > 0  # most are finite, so both paths accept and the floats are compared

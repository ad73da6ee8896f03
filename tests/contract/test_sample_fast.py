"""msgspec's decoding of the common single sample (``decode_sample``) never accepts what the
contract's models refuse, and what it accepts has the models' very values.

The payloads are those that hold ``parse_telemetry_fast`` to the exact path: crafted ones
for the known differences between JSON parsers, seeded random mutations of valid payloads,
and numbers at the edge of a double's precision.
"""

from __future__ import annotations

from typing import Any

import pytest

from ems_contract import MEASUREMENTS
from ems_contract.sample_fast import decode_sample
from ems_contract.telemetry import parse_telemetry_exact
from tests.contract.test_fast_path import (
    CANONICAL,
    CRAFTED,
    DEVICE,
    MUTATIONS_PER_SEED,
    dumps,
    mutated_payloads,
    number_payloads,
)
from tests.contract.test_payloads import PHASE, sample


def exact_rows(payload: bytes) -> list[tuple[Any, ...]] | None:
    """The rows the exact path gives, when it accepts the payload whole as one sample in kWh
    and W; every float by its repr, so a sign of zero or a last digit counts."""
    verdict = parse_telemetry_exact(DEVICE, payload)
    if verdict.rejected or verdict.batch or len(verdict.samples) != 1:
        return None
    s = verdict.samples[0]
    if s.units is not None:
        return None
    return [
        (phase, s.ts, s.ts.utcoffset(), s.seq, s.boot,
         tuple(repr(getattr(s.phases[phase], m)) for m in MEASUREMENTS))
        for phase in sorted(s.phases)
    ]  # fmt: skip


def check(payload: bytes) -> bool:
    """Assert the property for one payload; say whether decode_sample took it."""
    fast = decode_sample(DEVICE, payload)
    if fast is None:
        return False
    rows = [
        (phase, fast.ts, fast.ts.utcoffset(), fast.seq, fast.boot,
         tuple(repr(v) for v in fast.phases[phase]))
        for phase in sorted(fast.phases)
    ]  # fmt: skip
    assert all(type(v) is float for values in fast.phases.values() for v in values), payload
    assert rows == exact_rows(payload), payload
    return True


def test_common_payloads_are_taken() -> None:
    """Not a correctness matter: the fast decoding must not quietly stop being used."""
    for payload in [
        CANONICAL,
        dumps(sample(ts=1795335303000)),
        dumps(sample(device_id=DEVICE)),
        dumps(sample(phases={"A": {k: int(v) for k, v in PHASE.items()}})),
        dumps(sample(units=None)),
    ]:
        assert check(payload), payload


def test_what_it_leaves_to_the_models() -> None:
    for payload in [
        dumps(sample(units={"energy": "Wh", "power": "kW"})),
        dumps(sample(units={})),
        dumps(sample(device_id="dev2")),
        dumps({"v": 1, "samples": [sample()]}),
        CANONICAL.replace(b'"boot":"3f9c2a1e"', b'"boot":"3f9c2a1e\\n"'),
    ]:
        assert decode_sample(DEVICE, payload) is None, payload


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_payloads_agree(name: str) -> None:
    check(CRAFTED[name])


@pytest.mark.parametrize("seed", range(8))
def test_random_mutations_agree(seed: int) -> None:
    taken = sum(check(payload) for payload in mutated_payloads(seed))
    assert 0 < taken < MUTATIONS_PER_SEED  # both outcomes exercised: agreement says something


@pytest.mark.parametrize("seed", range(4))
def test_numbers_parse_to_the_same_floats(seed: int) -> None:
    taken = sum(check(payload) for payload in number_payloads(seed))
    assert taken > 0

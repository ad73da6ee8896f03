import random

import pytest

from ems_contract.backoff import Backoff


def test_delays_grow_to_the_cap_and_reset() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(20)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert delays[0] <= 1.0 and delays[1] <= 2.0 and delays[2] <= 4.0
    assert max(delays[3:]) > 4.0  # the cap is reached, not exceeded
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_a_base_above_the_cap_is_clamped() -> None:
    assert Backoff(base=2.0, cap=0.05).next_delay() <= 0.05


def test_jitter_spreads_a_fleet() -> None:
    fleet = [Backoff(base=1.0, cap=30.0, rng=random.Random(seed)) for seed in range(50)]
    for b in fleet:
        b.attempt = 5
    assert len({round(b.next_delay(), 3) for b in fleet}) > 40


@pytest.mark.parametrize(("base", "cap"), [(0, 1), (-1, 1), (1, 0)])
def test_bad_arguments(base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base=base, cap=cap)

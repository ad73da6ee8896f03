from ems_dashboard_ws.backoff import Backoff


def test_delays_grow_are_jittered_and_capped() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0

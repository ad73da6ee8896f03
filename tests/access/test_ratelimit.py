"""FailureLimiter: a pure-logic unit, driven by a fake clock."""

from __future__ import annotations

import logging
import threading

import pytest

from ems_access.ratelimit import FailureLimiter, client_key, log_refusal


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_blocks_after_limit_failures_within_window() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(limit=3, window=10, clock=clock)
    assert limiter.blocked("10.0.0.1") == 0.0
    assert limiter.failed("10.0.0.1") == 0.0
    clock.now += 1
    assert limiter.failed("10.0.0.1") == 0.0
    clock.now += 1
    assert limiter.failed("10.0.0.1") == pytest.approx(8.0)
    assert limiter.blocked("10.0.0.1") == pytest.approx(8.0)
    assert limiter.blocked("10.0.0.2") == 0.0


def test_block_ends_when_oldest_failure_leaves_window() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(limit=2, window=5, clock=clock)
    limiter.failed("a")
    clock.now += 2
    limiter.failed("a")
    assert limiter.blocked("a") == pytest.approx(3.0)
    clock.now += 3
    assert limiter.blocked("a") == 0.0
    # one more guess is allowed; failing it blocks again until the next-oldest expires
    assert limiter.failed("a") == pytest.approx(2.0)


def test_failures_outside_window_do_not_count() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(limit=2, window=5, clock=clock)
    limiter.failed("a")
    clock.now += 6
    assert limiter.failed("a") == 0.0
    assert limiter.blocked("a") == 0.0


def test_success_forgives_nothing_by_default() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(limit=2, window=5, clock=clock)
    limiter.failed("a")
    limiter.succeeded("a")
    assert limiter.failed("a") > 0


def test_success_can_forgive_when_configured() -> None:
    limiter = FailureLimiter(limit=2, window=5, forgive_on_success=True, clock=FakeClock())
    limiter.failed("a")
    limiter.succeeded("a")
    assert limiter.failed("a") == 0.0


def test_disabled_when_limit_is_zero() -> None:
    limiter = FailureLimiter(limit=0, window=5, clock=FakeClock())
    for _ in range(100):
        assert limiter.failed("a") == 0.0
    assert limiter.blocked("a") == 0.0
    assert len(limiter) == 0


def test_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(limit=3, window=60, max_addresses=100, clock=clock)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100


def test_expired_entries_are_dropped_on_lookup() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(limit=3, window=5, clock=clock)
    limiter.failed("a")
    clock.now += 10
    assert limiter.blocked("a") == 0.0
    assert len(limiter) == 0


def test_ipv6_counted_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1")
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert client_key("[::1]") == client_key("::1")
    assert client_key(None) == "unknown"
    assert client_key("not-an-ip") == "not-an-ip"
    clock = FakeClock()
    limiter = FailureLimiter(limit=2, window=5, clock=clock)
    limiter.failed("2001:db8::1")
    limiter.failed("2001:db8::2")
    assert limiter.blocked("2001:db8::3") > 0


def test_thread_safe_counting() -> None:
    limiter = FailureLimiter(limit=1000, window=60)

    def hammer() -> None:
        for _ in range(100):
            limiter.failed("a")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limiter.blocked("a") == 0.0
    limiter.failed("a")
    limiter.failed("a")  # 802 failures < 1000
    assert limiter.blocked("a") == 0.0


def test_bad_arguments_refused() -> None:
    with pytest.raises(ValueError):
        FailureLimiter(limit=1, window=0)
    with pytest.raises(ValueError):
        FailureLimiter(limit=1, window=1, max_addresses=0)


def test_log_refusal_names_door_addr_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ems_access.ratelimit"):
        log_refusal("rest", "10.0.0.9", "rate limited", retry_after=3.2)
        log_refusal("mqtt", None, "unknown token")
    assert "door=rest addr=10.0.0.9 reason=rate limited retry_after=3.2s" in caplog.text
    assert "door=mqtt addr=unknown reason=unknown token" in caplog.text

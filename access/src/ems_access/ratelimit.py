"""Failed-authentication limiter, one implementation for every door (MQTT, WebSocket, REST).

A sliding window per client address: after ``limit`` failures within ``window`` seconds,
further attempts from that address are refused *before* any token is checked, until the
oldest of those failures leaves the window. Refused attempts do not count as failures, so
an address that keeps guessing gets ``limit`` guesses per ``window`` and no more.

Why a success forgives nothing by default: a success proves only that the address holds
*some* token, not that its failures were honest typos. Forgiving on success would let the
holder of any token (a device's own, say) interleave one good login between guesses and
guess without limit. ``forgive_on_success=True`` exists for doors where that trade is wanted.

Memory is bounded: at most ``max_addresses`` addresses are remembered (least recently
failed evicted first) and each holds at most ``limit`` timestamps. IPv6 addresses are keyed
by their /64, because one host usually owns a whole /64 and could otherwise rotate
addresses to escape the limit. ``limit <= 0`` disables the limiter.

Settings convention for services: ``EMS_AUTH_FAIL_LIMIT`` (default 10) and
``EMS_AUTH_FAIL_WINDOW`` (seconds, default 60).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 10
DEFAULT_WINDOW_S = 60.0
DEFAULT_MAX_ADDRESSES = 10_000

Clock = Callable[[], float]


def client_key(addr: str | None) -> str:
    """The key an address is counted under: IPv4 as is, IPv6 by /64, else the string."""
    if not addr:
        return "unknown"
    text = addr.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    text = text.split("%", 1)[0]  # drop an IPv6 zone index
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailureLimiter:
    """Counts failed authentications per client address; see the module docstring.

    Thread-safe (one lock, O(limit) work per call), so a broker plugin running callbacks on
    threads can share one instance with asyncio code.
    """

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW_S,
        *,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
        forgive_on_success: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        if max_addresses <= 0:
            raise ValueError("max_addresses must be positive")
        self.limit = limit
        self.window = float(window)
        self.max_addresses = max_addresses
        self.forgive_on_success = forgive_on_success
        self._clock = clock
        self._lock = threading.Lock()
        # key -> timestamps of its most recent failures (at most `limit`), oldest first;
        # ordered by last failure so eviction drops the address idle the longest.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def __len__(self) -> int:
        return len(self._failures)

    def blocked(self, addr: str | None) -> float:
        """Seconds until ``addr`` may try again; 0.0 if it may try now."""
        if not self.enabled:
            return 0.0
        key = client_key(addr)
        with self._lock:
            return self._blocked_locked(key, self._clock())

    def failed(self, addr: str | None) -> float:
        """Record a failed authentication; returns how long ``addr`` is now blocked (0.0: not)."""
        if not self.enabled:
            return 0.0
        key = client_key(addr)
        with self._lock:
            now = self._clock()
            stamps = self._failures.pop(key, None)
            if stamps is None:
                stamps = deque(maxlen=self.limit)
            self._prune(stamps, now)
            stamps.append(now)
            self._failures[key] = stamps
            self._evict()
            left = self._blocked_locked(key, now)
        if left > 0:
            logger.warning(
                "auth failures: %s reached %d in %.0f s; refusing it for %.1f s",
                key,
                self.limit,
                self.window,
                left,
            )
        return left

    def succeeded(self, addr: str | None) -> None:
        """Record a successful authentication (forgives past failures only if configured)."""
        if not self.enabled or not self.forgive_on_success:
            return
        key = client_key(addr)
        with self._lock:
            self._failures.pop(key, None)

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()

    def _blocked_locked(self, key: str, now: float) -> float:
        stamps = self._failures.get(key)
        if stamps is None:
            return 0.0
        self._prune(stamps, now)
        if not stamps:
            del self._failures[key]
            return 0.0
        if len(stamps) < self.limit:
            return 0.0
        return max(stamps[0] + self.window - now, 0.0)

    def _prune(self, stamps: deque[float], now: float) -> None:
        horizon = now - self.window
        while stamps and stamps[0] <= horizon:
            stamps.popleft()

    def _evict(self) -> None:
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)


def log_refusal(door: str, addr: str | None, reason: str, *, retry_after: float = 0.0) -> None:
    """Log one refused authentication: door, address and reason, never the secret.

    ``reason`` must be a fixed phrase chosen by the door ("unknown token", "rate limited",
    "device id mismatch"), never text derived from the presented credentials.
    """
    if retry_after > 0:
        logger.info(
            "auth refused: door=%s addr=%s reason=%s retry_after=%.1fs",
            door,
            addr or "unknown",
            reason,
            retry_after,
        )
    else:
        logger.info("auth refused: door=%s addr=%s reason=%s", door, addr or "unknown", reason)

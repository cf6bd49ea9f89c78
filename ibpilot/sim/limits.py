"""IB's limits as the gateway enforces them; plain objects, time passed in.

- :class:`MessageRate`: 50 messages a second per client.  Approaching the limit
  gives a code-0 warning, each message over it error 100, and after
  ``max_violations`` of those the gateway closes the socket.
- :class:`HistoricalPacer`: the historical-data pacing rules (error 162): an
  identical request within 15 s; six or more requests for the same
  contract/exchange/tick type within 2 s; more than 60 requests in 10 minutes.
  BID_ASK requests count twice.  As IB documents, the rules bind requests for
  bars of 30 seconds or less (``max_bar_seconds``).
- :class:`LineBudget`: market-data lines (default 100), error 101 past the limit.

Times are real (monotonic) seconds: these limits are about API traffic, not about
market time, so they hold whatever the speed of the simulated clock.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass


class RateVerdict(enum.Enum):
    """What the gateway does with one incoming message."""

    OK = "ok"
    WARN = "warn"  # error code 0: approaching the limit
    VIOLATION = "violation"  # error 100
    DISCONNECT = "disconnect"  # error 100, then the socket is closed


@dataclass(frozen=True, slots=True)
class RateDecision:
    verdict: RateVerdict
    count: int  # messages in the last second, this one included


class MessageRate:
    """Sliding one-second window of a client's messages."""

    def __init__(
        self, limit: int = 50, warn_at: int | None = None, max_violations: int = 3
    ) -> None:
        if limit < 1:
            raise ValueError(f"message rate limit must be at least 1, got {limit}")
        self.limit = limit
        self.warn_at = warn_at if warn_at is not None else max(1, (limit * 9) // 10)
        self.max_violations = max_violations
        self._times: deque[float] = deque()
        self._violations = 0
        self._warned_until = float("-inf")

    def on_message(self, now: float) -> RateDecision:
        """Account for one message received at ``now``."""
        times = self._times
        while times and now - times[0] >= 1.0:
            times.popleft()
        times.append(now)
        count = len(times)
        if count > self.limit:
            self._violations += 1
            if self._violations >= self.max_violations:
                return RateDecision(RateVerdict.DISCONNECT, count)
            return RateDecision(RateVerdict.VIOLATION, count)
        if count >= self.warn_at and now >= self._warned_until:
            self._warned_until = now + 1.0
            return RateDecision(RateVerdict.WARN, count)
        return RateDecision(RateVerdict.OK, count)


class PacingRule(enum.Enum):
    """Which historical pacing rule a request broke."""

    IDENTICAL_WITHIN_15S = "identical request within 15 seconds"
    SIX_WITHIN_2S = "6 or more requests for the same contract, exchange and tick type in 2 seconds"
    SIXTY_IN_10MIN = "more than 60 requests in 10 minutes"


@dataclass(frozen=True, slots=True)
class HistoricalRequestKey:
    """What the pacing rules compare."""

    contract: Hashable  # contract identity (conId, or the description)
    exchange: str
    what_to_show: str
    identity: Hashable  # everything else: end, duration, bar size, RTH...


class HistoricalPacer:
    """IB's three historical-data pacing rules."""

    def __init__(
        self,
        identical_window: float = 15.0,
        burst_window: float = 2.0,
        burst_count: int = 6,
        long_window: float = 600.0,
        long_count: int = 60,
        max_bar_seconds: int = 30,
    ) -> None:
        self.identical_window = identical_window
        self.burst_window = burst_window
        self.burst_count = burst_count
        self.long_window = long_window
        self.long_count = long_count
        self.max_bar_seconds = max_bar_seconds
        self._log: deque[tuple[float, HistoricalRequestKey]] = deque()

    def check(self, key: HistoricalRequestKey, bar_seconds: int, now: float) -> PacingRule | None:
        """Record the request if it is allowed; otherwise return the rule it broke."""
        if bar_seconds > self.max_bar_seconds:
            return None
        log = self._log
        while log and now - log[0][0] >= self.long_window:
            log.popleft()
        weight = 2 if key.what_to_show == "BID_ASK" else 1
        if any(k == key and now - t < self.identical_window for t, k in log):
            return PacingRule.IDENTICAL_WITHIN_15S
        same = (key.contract, key.exchange, key.what_to_show)
        recent = sum(
            1
            for t, k in log
            if now - t < self.burst_window and (k.contract, k.exchange, k.what_to_show) == same
        )
        if recent + weight >= self.burst_count:
            return PacingRule.SIX_WITHIN_2S
        if len(log) + weight > self.long_count:
            return PacingRule.SIXTY_IN_10MIN
        for _ in range(weight):
            log.append((now, key))
        return None


class LineBudget:
    """Market-data lines in use across the gateway's clients."""

    def __init__(self, limit: int = 100) -> None:
        if limit < 0:
            raise ValueError(f"market-data lines must be >= 0, got {limit}")
        self.limit = limit
        self._held: set[Hashable] = set()

    @property
    def in_use(self) -> int:
        """Lines held now."""
        return len(self._held)

    def acquire(self, holder: Hashable) -> bool:
        """Take a line for ``holder``; False when every line is in use."""
        if holder in self._held:
            return True
        if len(self._held) >= self.limit:
            return False
        self._held.add(holder)
        return True

    def release(self, holder: Hashable) -> None:
        """Give a line back (no-op when not held)."""
        self._held.discard(holder)

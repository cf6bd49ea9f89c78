"""IB's limits as the gateway enforces them; plain objects, time passed in.

- :class:`MessageRate`: 50 messages a second per client.  Approaching the limit
  gives a code-0 warning, each message over it error 100, and after
  ``max_violations`` of those the gateway closes the socket.
- :class:`HistoricalPacing`: the historical-data pacing rules (error 162): an
  identical request within 15 s; six or more requests for the same
  contract/exchange/tick type within 2 s; more than 60 requests in 10 minutes.
  BID_ASK requests count twice.  As IB documents, the rules bind requests for
  bars of 30 seconds or less (``max_bar_seconds``).
- ``LineBudget`` (shared with the runtime, ``ibpilot.pacing``): market-data lines
  (default 100), error 101 past the limit.

Times are real (monotonic) seconds: these limits are about API traffic, not about
market time, so they hold whatever the speed of the simulated clock.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from ibpilot.pacing import HistoricalKey, HistoricalPacer, LineBudget

__all__ = ["HistoricalKey", "HistoricalPacing", "LineBudget", "MessageRate", "RateVerdict"]


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


class HistoricalPacing:
    """IB's server-side view of the historical-data rules.

    The rules themselves are :class:`ibpilot.pacing.HistoricalPacer` (the runtime keeps
    itself inside them with the same object); here a request that would have to wait
    is a violation.  Requests for bars longer than ``max_bar_seconds`` are not paced.
    """

    def __init__(self, max_bar_seconds: int = 30) -> None:
        self.max_bar_seconds = max_bar_seconds
        self._rules = HistoricalPacer(max_open=2**31, margin=0.0)

    def violates(self, key: HistoricalKey, bar_seconds: int, now: float) -> bool:
        """True when ``key`` breaks a rule; otherwise it is recorded as served."""
        if bar_seconds > self.max_bar_seconds:
            return False
        if self._rules.delay(key, now) > 0:
            return True
        self._rules.sent(key, now)
        self._rules.done()
        return False

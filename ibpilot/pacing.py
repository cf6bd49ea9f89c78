"""The runtime's own pacing, so that IB never has to pace it.

Plain objects; time is passed in (monotonic seconds), nothing sleeps here.  The
adapter asks how long to wait, waits, then records what it sent.

- :class:`TokenBucket`: outbound messages, below IB's 50 messages/second (default 45,
  as ib_async's own throttle) with a configurable burst.
- :class:`HistoricalPacer`: IB's historical-data rules, applied before sending so that
  error 162 never comes back: no identical request within 15 s, at most 5 requests
  for one contract/exchange/tick type in 2 s, at most 60 in 10 minutes (BID_ASK
  counts twice), at most 50 open at once.
- :class:`LineBudget`: market-data lines, so a subscription that would exceed the
  account's lines (IB's error 101) is refused locally with a clear reason.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

_EPSILON = 1e-9


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``."""

    def __init__(self, rate: float = 45.0, burst: int = 45) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def _refill(self, now: float) -> None:
        if self._at is None:
            self._at = now
            return
        elapsed = max(0.0, now - self._at)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._at = max(self._at, now)

    def delay(self, now: float, cost: float = 1.0) -> float:
        """Seconds to wait before ``cost`` tokens are available (0 when they are)."""
        if cost > self.burst:
            raise ValueError(f"cost {cost} exceeds the burst size {self.burst}")
        self._refill(now)
        missing = cost - self._tokens
        # a shortfall below a billionth of a token is rounding: waiting for it could add less
        # than the clock's resolution and never end
        return 0.0 if missing <= _EPSILON else missing / self.rate

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if available now; False (nothing spent) otherwise."""
        if self.delay(now, cost) > 0:
            return False
        self._tokens = max(0.0, self._tokens - cost)
        return True


@dataclass(frozen=True, slots=True)
class HistoricalKey:
    """What IB's historical pacing compares."""

    contract: Hashable  # conId, or the contract's description
    exchange: str
    what_to_show: str
    identity: Hashable  # the rest of the request: end, duration, bar size, RTH, format


class HistoricalPacer:
    """IB's historical-data pacing rules, kept one request short of each limit."""

    def __init__(
        self,
        identical_window: float = 15.0,
        burst_window: float = 2.0,
        burst_limit: int = 5,
        long_window: float = 600.0,
        long_limit: int = 60,
        max_open: int = 50,
        margin: float = 0.05,
    ) -> None:
        self.margin = margin  # seconds added to every wait: clocks and networks differ
        self.identical_window = identical_window
        self.burst_window = burst_window
        self.burst_limit = burst_limit
        self.long_window = long_window
        self.long_limit = long_limit
        self.max_open = max_open
        self._sent: deque[tuple[float, HistoricalKey]] = deque()
        self._open = 0

    def _prune(self, now: float) -> None:
        while self._sent and now - self._sent[0][0] >= self.long_window:
            self._sent.popleft()

    def delay(self, key: HistoricalKey, now: float) -> float:
        """Seconds to wait before ``key`` may be sent without breaking a rule.

        ``inf`` while ``max_open`` requests are open (wait for one to finish).
        """
        if self._open >= self.max_open:
            return float("inf")
        self._prune(now)
        weight = 2 if key.what_to_show == "BID_ASK" else 1
        waits = [0.0]
        same = [t for t, k in self._sent if k == key]
        if same:
            waits.append(same[-1] + self.identical_window - now)
        group = (key.contract, key.exchange, key.what_to_show)
        burst = [
            t
            for t, k in self._sent
            if now - t < self.burst_window and (k.contract, k.exchange, k.what_to_show) == group
        ]
        if len(burst) + weight > self.burst_limit:
            waits.append(
                burst[len(burst) + weight - self.burst_limit - 1] + self.burst_window - now
            )
        if len(self._sent) + weight > self.long_limit:
            waits.append(self._sent[len(self._sent) + weight - self.long_limit - 1][0]
                         + self.long_window - now)  # fmt: skip
        wait = max(waits)
        return wait + self.margin if wait > 0 else 0.0

    def sent(self, key: HistoricalKey, now: float) -> None:
        """Record that ``key`` was sent at ``now`` (and is open until :meth:`done`)."""
        weight = 2 if key.what_to_show == "BID_ASK" else 1
        for _ in range(weight):
            self._sent.append((now, key))
        self._open += 1

    def done(self) -> None:
        """One open request finished (answered, failed or cancelled)."""
        self._open = max(0, self._open - 1)

    @property
    def open_requests(self) -> int:
        """Requests sent and not finished."""
        return self._open


class LineBudget:
    """Market-data lines the runtime holds, against the account's limit."""

    def __init__(self, limit: int = 100) -> None:
        if limit < 0:
            raise ValueError(f"line limit must be >= 0, got {limit}")
        self.limit = limit
        self._held: set[Hashable] = set()

    @property
    def in_use(self) -> int:
        return len(self._held)

    def acquire(self, holder: Hashable) -> bool:
        """Take a line for ``holder``; False when none is left."""
        if holder in self._held:
            return True
        if len(self._held) >= self.limit:
            return False
        self._held.add(holder)
        return True

    def release(self, holder: Hashable) -> None:
        """Give ``holder``'s line back (no-op when it holds none)."""
        self._held.discard(holder)

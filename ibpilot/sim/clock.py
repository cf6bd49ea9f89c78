"""The simulator's clock: real time, or accelerated from a chosen start.

Simulated time is ``start + (wall - wall_at_start) * speed``.  With no start it
begins at the wall clock's now.  All times are UTC epoch seconds (floats) or
UTC-aware datetimes; nothing here is naive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime


class SimClock:
    """A clock that runs at ``speed`` times real time from ``start``."""

    def __init__(
        self,
        start: datetime | None = None,
        speed: float = 1.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        if start is not None and start.tzinfo is None:
            raise ValueError("start must be timezone-aware (naive datetimes are ambiguous)")
        self._wall = wall
        self._wall0 = wall()
        self._sim0 = start.timestamp() if start is not None else self._wall0
        self._speed = float(speed)

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self._speed

    def now(self) -> float:
        """Simulated UTC epoch seconds."""
        return self._sim0 + (self._wall() - self._wall0) * self._speed

    def epoch(self) -> int:
        """Simulated UTC epoch, whole seconds."""
        return int(self.now())

    def now_dt(self) -> datetime:
        """Simulated now as a UTC-aware datetime."""
        return datetime.fromtimestamp(self.now(), UTC)

    def real_seconds(self, sim_seconds: float) -> float:
        """How long ``sim_seconds`` of simulated time take in real time."""
        return sim_seconds / self._speed

    def set_speed(self, speed: float) -> None:
        """Change the speed from now on, keeping simulated time continuous."""
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self._sim0 = self.now()
        self._wall0 = self._wall()
        self._speed = float(speed)

    def jump_to(self, when: datetime) -> None:
        """Move simulated time to ``when`` (forwards only: IB's clock never goes back)."""
        target = when.timestamp()
        if target < self.now():
            raise ValueError("the simulated clock only moves forwards")
        self._sim0 = target
        self._wall0 = self._wall()

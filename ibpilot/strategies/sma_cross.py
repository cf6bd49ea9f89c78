"""The moving-average crossover template (``"strategy": "sma_cross"``).

Parameters (``params`` in the strategy file):

``fast`` (bars, default 10), ``slow`` (bars, default 30, more than ``fast``)
    The two simple moving averages, over the closes of completed bars.
``quantity`` (required, > 0)
    The position held while the fast average is above the slow one.
``allow_short`` (default false)
    When the fast average crosses below: target ``-quantity`` instead of flat.

Orders happen only on a cross: the bar where the fast average moves to the other side of the
slow one.  Warm-up bars set the side without trading, so a restart does not re-enter a
position the bot already took (the broker's position and open orders count in
``target_position``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ibpilot.strategies.base import Bar, Context, Strategy


def _whole(params: Any, name: str, default: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"params.{name} must be a whole number of bars >= 1, got {value!r}")
    return value


class SmaCross(Strategy):
    """Long (or short) on a fast/slow simple-moving-average crossover."""

    def __init__(self) -> None:
        self.fast, self.slow = 10, 30
        self.quantity = Decimal(0)
        self.allow_short = False
        self._above: dict[str, bool] = {}  # symbol -> fast above slow, at the last decided bar

    def on_start(self, ctx: Context, **kwargs: Any) -> None:
        """Read and check the parameters. Raises ValueError (TypeError) naming a bad one."""
        params = ctx.params
        self.fast, self.slow = _whole(params, "fast", 10), _whole(params, "slow", 30)
        if self.fast >= self.slow:
            raise ValueError(f"params.fast ({self.fast}) must be less than slow ({self.slow})")
        quantity = params.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int | float) or quantity <= 0:
            raise ValueError(f"params.quantity must be a number > 0, got {quantity!r}")
        self.quantity = Decimal(str(quantity))
        allow_short = params.get("allow_short", False)
        if not isinstance(allow_short, bool):
            raise TypeError(f"params.allow_short must be true or false, got {allow_short!r}")
        self.allow_short = allow_short

    def on_bar(self, ctx: Context, bar: Bar, **kwargs: Any) -> None:
        closes = ctx.closes(bar.symbol, self.slow)
        if len(closes) < self.slow:
            return
        fast = sum(closes[-self.fast :], Decimal(0)) / self.fast
        slow = sum(closes, Decimal(0)) / self.slow
        if fast == slow:
            return  # touching is not crossing: wait for a side
        above = fast > slow
        before = self._above.get(bar.symbol)
        self._above[bar.symbol] = above
        if before is None or before == above or ctx.warming_up:
            return
        if above:
            ctx.target_position(bar.symbol, self.quantity)
        else:
            ctx.target_position(bar.symbol, -self.quantity if self.allow_short else 0)

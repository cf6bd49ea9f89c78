"""A strategy for end-to-end tests: it proposes the orders its parameters list, nothing else.

Referenced from strategy files as ``e2e_strategy:Proposer`` (``tests/runtime`` is on sys.path
under pytest; a subprocess gets it through PYTHONPATH).  Parameters:

``steps``
    A list of steps; a step is a list of orders, all proposed in one ``on_tick``.  The first
    step goes on the first two-sided quote at least ``delay_s`` seconds (``ctx.now``) after the
    first quote; each later step once nothing earlier is pending any more (filled or ended).
``repeat_s``
    Instead of moving on: propose the first step again every ``repeat_s`` seconds.
an order
    ``{"symbol", "side", "quantity", "order_type" (MKT), "limit_price" | "limit_pct",
    "stop_price" | "stop_pct"}``; ``*_pct`` is a percentage off the quote's midpoint
    (``-20``: 20% below), rounded to the cent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ibpilot.strategies import Context, Quote, Strategy

_CENT = Decimal("0.01")


def _price(order: Any, name: str, mid: Decimal) -> Decimal | None:
    if order.get(f"{name}_price") is not None:
        return Decimal(str(order[f"{name}_price"]))
    if order.get(f"{name}_pct") is not None:
        return (mid * (1 + Decimal(str(order[f"{name}_pct"])) / 100)).quantize(_CENT)
    return None


class Proposer(Strategy):
    """Proposes the orders of ``params.steps`` (see the module doc)."""

    def __init__(self) -> None:
        self.first_quote: datetime | None = None
        self.last_sent: datetime | None = None
        self.step = 0

    def _due(self, ctx: Context, steps: Any) -> bool:
        now = ctx.now
        if self.first_quote is None:
            self.first_quote = now
        if now - self.first_quote < timedelta(seconds=float(ctx.params.get("delay_s", 0))):
            return False
        repeat = ctx.params.get("repeat_s")
        if repeat is not None:
            return self.last_sent is None or now - self.last_sent >= timedelta(seconds=repeat)
        if self.step >= len(steps):
            return False
        return not any(ctx.pending(symbol) for symbol in ctx.symbols)

    def on_tick(self, ctx: Context, quote: Quote, **kwargs: Any) -> None:
        steps = ctx.params["steps"]
        if quote.bid is None or quote.ask is None or not self._due(ctx, steps):
            return
        mid = (quote.bid + quote.ask) / 2
        for order in steps[min(self.step, len(steps) - 1)]:
            ctx.propose_order(
                order["symbol"],
                order["side"],
                order["quantity"],
                order.get("order_type", "MKT"),
                _price(order, "limit", mid),
                _price(order, "stop", mid),
            )
        self.last_sent = ctx.now
        self.step += 1

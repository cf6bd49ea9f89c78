"""The fault campaign's strategy: small seeded orders, often, on every instrument it trades.

Referenced from the campaign's strategy file as ``chaos_strategy:Churn`` (the harness puts
``tests/resilience`` on the bot's PYTHONPATH).  Deterministic: whether and what it proposes
for a symbol depends only on ``(seed, symbol, the period of ctx.now)``, so a bot restarted
by ``kill -9`` makes the same choices for the same simulated minutes.

Parameters
    ``seed``; ``every_s`` (simulated seconds per period: at most one proposal per symbol per
    period); ``chance`` (the probability that a period proposes); ``max_quantity`` (1..n
    shares per order); ``max_position`` (past it, only orders back towards flat);
    ``quiet`` (a file: while it exists, nothing is proposed);
    ``heartbeat`` (a file the strategy appends ``<wall time> <symbol>`` to, at most every
    ``heartbeat_s`` real seconds per symbol: the harness's proof that quotes reach the
    strategy again after a fault).

Orders are MKT, or DAY LMT priced from the quote's midpoint: marketable, at the touch, or
a few cents away so that some rest until the market comes to them, the close expires them
or the harness's cancel-all cancels them.
"""

from __future__ import annotations

import random
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from ibpilot.strategies import Context, Quote, Strategy

_CENT = Decimal("0.01")
_OFFSETS = (Decimal("0.05"), Decimal("0.02"), Decimal(0), Decimal("-0.03"), Decimal("-0.10"))


class Churn(Strategy):
    """Proposes a small order per symbol in some periods (see the module doc)."""

    def __init__(self) -> None:
        self.last_period: dict[str, int] = {}
        self.last_beat: dict[str, float] = {}

    def on_tick(self, ctx: Context, quote: Quote, **kwargs: Any) -> None:
        self._beat(ctx, quote.symbol)
        if ctx.warming_up or quote.bid is None or quote.ask is None:
            return
        period = int(ctx.now.timestamp() // float(ctx.params.get("every_s", 60)))
        if self.last_period.get(quote.symbol) == period:
            return
        self.last_period[quote.symbol] = period
        rng = random.Random(f"{ctx.params.get('seed', 1)}|{quote.symbol}|{period}")
        if rng.random() >= float(ctx.params.get("chance", 0.5)):
            return
        quiet = ctx.params.get("quiet")
        if quiet and Path(str(quiet)).exists():
            return
        self._propose(ctx, quote, rng)

    def _propose(self, ctx: Context, quote: Quote, rng: random.Random) -> None:
        assert quote.bid is not None
        assert quote.ask is not None
        symbol = quote.symbol
        exposure = ctx.position(symbol) + ctx.pending(symbol)
        limit = Decimal(int(ctx.params.get("max_position", 100)))
        side = rng.choice(("BUY", "SELL"))
        if exposure >= limit:
            side = "SELL"
        elif exposure <= -limit:
            side = "BUY"
        quantity = rng.randint(1, int(ctx.params.get("max_quantity", 10)))
        if rng.random() < 0.5:
            ctx.propose_order(symbol, side, quantity)
            return
        offset = rng.choice(_OFFSETS)  # positive: through the market (marketable)
        mid = (quote.bid + quote.ask) / 2
        price = mid + offset if side == "BUY" else mid - offset
        ctx.propose_order(symbol, side, quantity, "LMT", max(price.quantize(_CENT), _CENT))

    def _beat(self, ctx: Context, symbol: str) -> None:
        path = ctx.params.get("heartbeat")
        now = time.time()
        if not path or now - self.last_beat.get(symbol, 0.0) < float(
            ctx.params.get("heartbeat_s", 0.05)
        ):
            return
        self.last_beat[symbol] = now
        with Path(str(path)).open("a", encoding="ascii") as out:
            out.write(f"{now:.3f} {symbol}\n")

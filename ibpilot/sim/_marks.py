"""Marks for the account: the simulated market's prices at one instant."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal

from ibpilot.sim.account import dec
from ibpilot.sim.market import MarketModel
from ibpilot.sim.refdata import ContractQuery, Instrument, RefData


class MarketMarks:
    """:class:`ibpilot.sim.account.Marks` from the price model at second ``t``: the quote's
    midpoint (the last print for instruments without a quote), FX rates from the CASH
    pairs of reference data (``CCY.USD`` or ``USD.CCY``)."""

    def __init__(
        self, refdata: RefData, market: MarketModel, t: int, day: date, base: str = "USD"
    ) -> None:
        self._refdata = refdata
        self._market = market
        self._t = t
        self._day = day
        self._base = base
        self._rates: dict[str, Decimal] = {base: Decimal(1)}

    def price(self, inst: Instrument) -> float:
        q = self._market.quote(inst, self._t)
        if q.bid > 0 and q.ask > 0 and (q.bid_size or q.ask_size):
            return q.midpoint
        return q.last if not math.isnan(q.last) else q.midpoint

    def underlying_price(self, inst: Instrument) -> float:
        under = self._refdata.by_con_id(inst.underlying_con_id)
        return self.price(under) if under is not None else inst.strike

    def rate(self, currency: str) -> Decimal:
        """Base currency per unit of ``currency``; raises LookupError without a CASH pair."""
        got = self._rates.get(currency)
        if got is not None:
            return got
        direct = self._pair(currency, self._base)
        if direct is not None:
            rate = dec(self.price(direct))
        else:
            inverse = self._pair(self._base, currency)
            if inverse is None:
                raise LookupError(f"no CASH pair converts {currency} to {self._base}")
            rate = Decimal(1) / dec(self.price(inverse))
        self._rates[currency] = rate
        return rate

    def _pair(self, symbol: str, currency: str) -> Instrument | None:
        query = ContractQuery(symbol=symbol, sec_type="CASH", currency=currency)
        found = self._refdata.resolve(query, self._day)
        return found[0] if found else None

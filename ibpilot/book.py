"""The engine's P&L book: positions, marks, and realised/unrealised P&L per trading day.

:class:`Book` holds the positions by symbol, the last price seen (the mark) and today's basis
per unit of each open position.  Realised P&L comes from fills (less commissions); unrealised
is the open positions valued at the marks against that basis.  :meth:`Book.new_day` restarts
both at the start of a trading day, with positions held overnight valued from the last price.
:class:`DaySpan` is a trading day in a time zone and the UTC instants it spans, so the engine
can tell a new day without a time-zone conversion per quote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

ZERO = Decimal(0)


class Book:
    """Positions by symbol and today's P&L (see the module docstring)."""

    def __init__(self) -> None:
        self.quantity: dict[str, Decimal] = {}
        self.basis: dict[str, Decimal] = {}  # today's cost per unit of the open position
        self.marks: dict[str, Decimal] = {}
        self.multipliers: dict[str, Decimal] = {}
        self.realized = ZERO

    def mark(self, symbol: str, price: Decimal | None) -> None:
        if price is not None:
            self.marks[symbol] = price
            if self.quantity.get(symbol) and symbol not in self.basis:
                self.basis[symbol] = price

    def fill(self, symbol: str, signed: Decimal, price: Decimal, commission: Decimal) -> None:
        self.realized -= commission
        held, basis = self.quantity.get(symbol, ZERO), self.basis.get(symbol, price)
        after = held + signed
        if held and (held > 0) != (signed > 0):  # reducing, maybe crossing zero
            closed = min(abs(signed), abs(held))
            sign = 1 if held > 0 else -1
            self.realized += (price - basis) * closed * sign * self.multipliers.get(symbol, 1)
            basis = price if after and (after > 0) != (held > 0) else basis
        elif after:
            basis = (basis * held + price * signed) / after
        self.quantity[symbol] = after
        self.basis.pop(symbol, None)
        if after:
            self.basis[symbol] = basis

    @property
    def unrealized(self) -> Decimal:
        total = ZERO
        for symbol, held in self.quantity.items():
            if held and symbol in self.marks and symbol in self.basis:
                mult = self.multipliers.get(symbol, Decimal(1))
                total += held * (self.marks[symbol] - self.basis[symbol]) * mult
        return total

    def set_positions(self, positions: Mapping[str, Decimal]) -> dict[str, Decimal]:
        """Adopt the broker's positions; returns the differences (broker minus ours)."""
        changed = {}
        for symbol in set(self.quantity) | set(positions):
            ours, theirs = self.quantity.get(symbol, ZERO), positions.get(symbol, ZERO)
            if ours != theirs:
                changed[symbol] = theirs - ours
                self.quantity[symbol] = theirs
                self.basis.pop(symbol, None)
                self.mark(symbol, self.marks.get(symbol))
        return changed

    def new_day(self) -> None:
        self.realized = ZERO
        self.basis = {s: self.marks[s] for s, q in self.quantity.items() if q and s in self.marks}


@dataclass(frozen=True, slots=True)
class DaySpan:
    """A day in a time zone and the instants it spans, ``[start, end)`` in UTC."""

    day: date
    zone: ZoneInfo
    start: datetime
    end: datetime

    @staticmethod
    def of(day: date, zone: ZoneInfo | None) -> DaySpan | None:
        """None when there is no zone, or when local midnight does not bound the day (a zone
        whose clocks go back across midnight): the day is then converted every time."""
        if zone is None:
            return None
        midnight = datetime.min.time()
        start = datetime.combine(day, midnight, tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), midnight, tzinfo=zone).astimezone(UTC)
        last = end - timedelta(microseconds=1)
        if start.astimezone(zone).date() != day or last.astimezone(zone).date() != day:
            return None
        return DaySpan(day, zone, start, end)

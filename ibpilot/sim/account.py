"""The simulated account: cash, positions, average-cost P&L, margin and commissions.

Money is ``Decimal`` throughout (prices enter as the decimal their float stands for), so the
books balance exactly.  Conventions, chosen to match what IB reports:

* **Average cost.** A position keeps its signed ``cost``: what opening it paid, commissions
  included (a short's cost is minus its proceeds net of commission).  ``avgCost = cost /
  quantity``, per unit *times the multiplier* for derivatives, as IB reports it.  Reducing
  a position realises ``proceeds - cost share - commission`` and leaves the average cost
  unchanged; a fill through zero closes, then opens with the rest (commission split pro
  rata).  ``unrealized = quantity x price x multiplier - cost``.
* **Cash.** Internally every fill moves cash by its value and commission:
  ``cash = start - buys + sells - commissions`` (an invariant the tests check to the cent),
  so ``NetLiquidation = cash + sum(quantity x price x multiplier) = start + realized +
  unrealized``.  Futures are the one exception in what is *reported*: IB does not charge
  their notional to cash, so ``TotalCashValue`` adds back the open futures' notional and
  their ``NetLiquidation`` contribution is their unrealised P&L (same total).
  ``GrossPositionValue`` leaves futures out; the portfolio's ``marketValue`` is notional.
* **FX.** A CASH pair is a position in the base currency paid in the quote currency (no
  separate base-currency balance); cash is kept per currency and converted to the account
  currency (USD) at the rates the caller's :class:`Marks` give.  Commissions are in USD
  and charged to USD cash; they enter a position's cost only when the instrument trades in
  the account currency (a USD.JPY position's average cost is in yen, without commission).
* **Commissions** (IB fixed pricing, per order: the engine charges each execution the
  increase of :func:`commission` over the order's cumulative fills): stocks/ETFs 0.005 USD
  a share, min 1 USD, max 1% of trade value; options 0.65 a contract, min 1; futures 0.85
  a contract; FX 0.2 bp of value, min 2 USD.  Rounded to the cent.
* **Margin** (a Reg-T margin account): stocks 50% initial / 25% maintenance; futures a
  fixed initial margin per contract (ES 15,000, NQ 20,000, CL 6,000; others 10% of
  notional), maintenance 90% of it; FX 3% / 2.7%; long options their premium, short
  options 20% of the underlying notional.  ``EquityWithLoanValue = NetLiquidation``,
  ``AvailableFunds = ELV - InitMarginReq``, ``ExcessLiquidity = ELV - MaintMarginReq``,
  ``BuyingPower = 4 x AvailableFunds`` (IB's day-trading buying power of a margin
  account).  An order is refused when it raises the initial margin above the ELV; working
  orders are not reserved.
* **Day.** ``RealizedPnL`` (account values, reqPnL) is today's; a position's
  ``realized_pnl`` (portfolio) is cumulative.  ``dailyPnL`` is the change of the account's
  (position's) value since the start of the caller's trading day, marked then and now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from ibpilot.sim.refdata import Instrument

ZERO = Decimal(0)
CENT = Decimal("0.01")
DEFAULT_CASH = Decimal(1_000_000)
FUTURES_INITIAL = {"ES": Decimal(15_000), "NQ": Decimal(20_000), "CL": Decimal(6_000)}
FUTURES_DEFAULT_RATE = Decimal("0.10")  # of notional, for futures without a table entry
MAINT_OF_INITIAL = Decimal("0.9")  # futures and FX
STOCK_INITIAL, STOCK_MAINT = Decimal("0.5"), Decimal("0.25")
FX_INITIAL = Decimal("0.03")
SHORT_OPTION_RATE = Decimal("0.2")
BUYING_POWER_MULTIPLE = 4


def dec(x: float | int | str | Decimal) -> Decimal:
    """The decimal a float stands for (its shortest repr), or any other number exactly."""
    return x if isinstance(x, Decimal) else Decimal(repr(x) if isinstance(x, float) else x)


def multiplier(inst: Instrument) -> Decimal:
    return Decimal(inst.multiplier) if inst.multiplier else Decimal(1)


def commission(inst: Instrument, qty: Decimal, value_usd: Decimal) -> Decimal:
    """USD commission of an order whose fills so far total ``qty`` units worth ``value_usd``."""
    qty = abs(qty)
    if qty == 0:
        return ZERO
    st = inst.sec_type
    if st == "OPT":
        fee = max(qty * Decimal("0.65"), Decimal(1))
    elif st in ("FUT", "FOP"):
        fee = qty * Decimal("0.85")
    elif st == "CASH":
        fee = max(value_usd * Decimal("0.00002"), Decimal(2))
    else:  # STK, ETF, anything else share-like
        fee = min(max(qty * Decimal("0.005"), Decimal(1)), value_usd * Decimal("0.01"))
    return fee.quantize(CENT, ROUND_HALF_UP)


class Marks(Protocol):
    """Prices the account is marked at (the engine's market at one instant)."""

    def price(self, inst: Instrument) -> float: ...

    def underlying_price(self, inst: Instrument) -> float: ...

    def rate(self, currency: str) -> Decimal:
        """Account currency per unit of ``currency``."""
        ...


@dataclass(slots=True)
class _Book:
    inst: Instrument
    quantity: Decimal = ZERO
    cost: Decimal = ZERO  # signed, commissions included
    notional: Decimal = ZERO  # futures: signed notional of the open position
    realized: Decimal = ZERO  # cumulative, instrument currency


@dataclass(frozen=True, slots=True)
class Position:
    inst: Instrument
    quantity: Decimal
    avg_cost: Decimal  # per unit x multiplier, commissions included
    realized_pnl: Decimal  # cumulative, instrument currency


@dataclass(frozen=True, slots=True)
class PortfolioItem:
    """One row of updatePortfolio (instrument currency)."""

    inst: Instrument
    position: Decimal
    market_price: Decimal
    market_value: Decimal
    average_cost: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class AccountValues:
    """The account's values under IB's tag names (account currency)."""

    NetLiquidation: Decimal
    TotalCashValue: Decimal
    GrossPositionValue: Decimal
    InitMarginReq: Decimal
    MaintMarginReq: Decimal
    AvailableFunds: Decimal
    ExcessLiquidity: Decimal
    BuyingPower: Decimal
    EquityWithLoanValue: Decimal
    UnrealizedPnL: Decimal
    RealizedPnL: Decimal
    currency: str

    def tags(self) -> dict[str, str]:
        """``{tag: value}`` with two decimals, as accountSummary/updateAccountValue send."""
        return {
            f.name: f"{getattr(self, f.name).quantize(CENT, ROUND_HALF_UP)}"
            for f in fields(self)
            if f.name != "currency"
        }


@dataclass(frozen=True, slots=True)
class PnL:
    """reqPnL: today's P&L, open positions' unrealised P&L, today's realised P&L."""

    daily_pnl: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class PnLSingle:
    """reqPnLSingle for one position."""

    position: Decimal
    daily_pnl: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    value: Decimal


class Account:
    """One account's cash and positions; the engine calls :meth:`apply_fill` per execution."""

    def __init__(
        self, account_id: str = "DU0000001", cash: Decimal = DEFAULT_CASH, currency: str = "USD"
    ) -> None:
        self.account_id = account_id
        self.currency = currency
        self._start_cash: dict[str, Decimal] = {currency: Decimal(cash)}
        self._cash: dict[str, Decimal] = {currency: Decimal(cash)}
        self._books: dict[int, _Book] = {}
        self._day: date | None = None
        self._day_qty: dict[int, Decimal] = {}
        self._day_flow: dict[int, Decimal] = {}  # trade value flows, instrument currency
        self._day_comm: dict[int, Decimal] = {}  # commissions, account currency
        self._day_realized: dict[int, Decimal] = {}

    # --- bookkeeping --------------------------------------------------------------------
    def cash_balances(self) -> dict[str, Decimal]:
        """Internal cash per currency (futures notional included; see module docstring)."""
        return dict(self._cash)

    def reported_cash_balances(self) -> dict[str, Decimal]:
        """Cash per currency as IB reports it (``CashBalance``): open futures' notional is
        not cash, so it is added back, as ``TotalCashValue`` does."""
        cash = dict(self._cash)
        for b in self._books.values():
            if b.notional:
                cash[b.inst.currency] = cash.get(b.inst.currency, ZERO) + b.notional
        return cash

    def start_cash(self) -> dict[str, Decimal]:
        return dict(self._start_cash)

    def positions(self) -> list[Position]:
        """Every position the account has held (closed ones with quantity 0), by conId."""
        return [self._position(b) for _, b in sorted(self._books.items())]

    def position(self, con_id: int) -> Position | None:
        b = self._books.get(con_id)
        return None if b is None else self._position(b)

    @staticmethod
    def _position(b: _Book) -> Position:
        avg = b.cost / b.quantity if b.quantity else ZERO
        return Position(b.inst, b.quantity, avg, b.realized)

    def apply_fill(
        self, inst: Instrument, buy: bool, qty: Decimal, price: float, fee: Decimal, day: date
    ) -> Decimal | None:
        """Book one execution; returns its realised P&L (None when it only opened or added).

        ``fee`` is the commission in the account currency; ``day`` the trading day.
        """
        if qty <= 0:
            raise ValueError(f"fill quantity must be positive, got {qty}")
        self._roll(day)
        b = self._books.setdefault(inst.con_id, _Book(inst))
        sign = Decimal(1) if buy else Decimal(-1)
        m = multiplier(inst)
        px = dec(price)
        flow = -sign * qty * px * m
        self._cash[inst.currency] = self._cash.get(inst.currency, ZERO) + flow
        self._cash[self.currency] = self._cash.get(self.currency, ZERO) - fee
        con = inst.con_id
        self._day_flow[con] = self._day_flow.get(con, ZERO) + flow
        self._day_comm[con] = self._day_comm.get(con, ZERO) + fee
        # the commission is in the account currency; it is part of the cost (IB's avgCost)
        # when the instrument trades in that currency, else it stays in cash only
        fee_local = fee if inst.currency == self.currency else ZERO
        realized: Decimal | None = None
        if b.quantity * sign < 0:  # reduces (and maybe reverses) the position
            closing = min(qty, abs(b.quantity))
            fee_close = fee_local * closing / qty
            share = b.cost * closing / abs(b.quantity)
            realized = -sign * closing * px * m - share - fee_close
            b.notional -= b.notional * closing / abs(b.quantity)
            b.cost -= share
            b.quantity += sign * closing
            if b.quantity == 0:
                b.cost = b.notional = ZERO
            b.realized += realized
            self._day_realized[con] = self._day_realized.get(con, ZERO) + realized
            qty, fee_local = qty - closing, fee_local - fee_close
        if qty > 0:
            b.cost += sign * qty * px * m + fee_local
            if inst.sec_type == "FUT":
                b.notional += sign * qty * px * m
            b.quantity += sign * qty
        return realized

    def _roll(self, day: date) -> None:
        if day != self._day:
            self._day = day
            self._day_qty = {c: b.quantity for c, b in self._books.items() if b.quantity}
            self._day_flow, self._day_comm, self._day_realized = {}, {}, {}

    # --- valuation ----------------------------------------------------------------------
    def portfolio(self, marks: Marks) -> list[PortfolioItem]:
        """updatePortfolio rows: every position held (closed ones with quantity 0)."""
        out = []
        for p in self.positions():
            px = dec(marks.price(p.inst))
            value = p.quantity * px * multiplier(p.inst)
            cost = p.avg_cost * p.quantity
            out.append(PortfolioItem(p.inst, p.quantity, px, value, p.avg_cost, value - cost,
                                     p.realized_pnl))  # fmt: skip
        return out

    def values(self, marks: Marks, day: date) -> AccountValues:
        """IB's account tags, marked at ``marks``; ``day`` is today (for RealizedPnL)."""
        self._roll(day)
        cash = sum((v * marks.rate(c) for c, v in self._cash.items()), ZERO)
        positions = gross = unrealized = fut_notional = ZERO
        for b in self._books.values():
            if not b.quantity:
                continue
            r = marks.rate(b.inst.currency)
            value = b.quantity * dec(marks.price(b.inst)) * multiplier(b.inst) * r
            positions += value
            unrealized += value - b.cost * r
            if b.inst.sec_type == "FUT":
                fut_notional += b.notional * r
            else:
                gross += abs(value)
        init, maint = self.margin(marks)
        nlv = cash + positions
        realized = sum(self._day_realized.values(), ZERO)
        return AccountValues(
            NetLiquidation=nlv, TotalCashValue=cash + fut_notional, GrossPositionValue=gross,
            InitMarginReq=init, MaintMarginReq=maint, AvailableFunds=nlv - init,
            ExcessLiquidity=nlv - maint, BuyingPower=(nlv - init) * BUYING_POWER_MULTIPLE,
            EquityWithLoanValue=nlv, UnrealizedPnL=unrealized, RealizedPnL=realized,
            currency=self.currency,
        )  # fmt: skip

    def pnl(self, marks: Marks, start_marks: Marks, day: date) -> PnL:
        """reqPnL: ``start_marks`` are the prices at the start of ``day``."""
        self._roll(day)
        daily = unrealized = realized = ZERO
        for con in self._books:
            one = self.pnl_single(con, marks, start_marks, day)
            if one is not None:
                daily += one.daily_pnl
                unrealized += one.unrealized_pnl
                realized += one.realized_pnl
        return PnL(daily, unrealized, realized)

    def pnl_single(
        self, con_id: int, marks: Marks, start_marks: Marks, day: date
    ) -> PnLSingle | None:
        """reqPnLSingle (account currency); None if the account never held ``con_id``."""
        self._roll(day)
        b = self._books.get(con_id)
        if b is None:
            return None
        m, r = multiplier(b.inst), marks.rate(b.inst.currency)
        value = b.quantity * dec(marks.price(b.inst)) * m
        start_qty = self._day_qty.get(con_id, ZERO)
        start = start_qty * dec(start_marks.price(b.inst)) * m if start_qty else ZERO
        flow = self._day_flow.get(con_id, ZERO)
        daily = (value - start + flow) * r - self._day_comm.get(con_id, ZERO)
        unrealized = (value - b.cost) * r
        realized = self._day_realized.get(con_id, ZERO) * r
        return PnLSingle(b.quantity, daily, unrealized, realized, value * r)

    # --- margin -------------------------------------------------------------------------
    def margin(self, marks: Marks) -> tuple[Decimal, Decimal]:
        """(initial, maintenance) margin requirement of the positions held."""
        init = maint = ZERO
        for b in self._books.values():
            if b.quantity:
                i, mm = _requirement(b.inst, b.quantity, marks.price(b.inst), marks)
                init, maint = init + i, maint + mm
        return init, maint

    def what_if(
        self, inst: Instrument, buy: bool, qty: Decimal, price: float, marks: Marks
    ) -> tuple[tuple[Decimal, Decimal], tuple[Decimal, Decimal], Decimal]:
        """((init, maint) now, (init, maint) if the order filled at ``price``, ELV now)."""
        init, maint = self.margin(marks)
        held = self._books.get(inst.con_id)
        q = held.quantity if held is not None else ZERO
        after = q + (qty if buy else -qty)
        i0, m0 = _requirement(inst, q, marks.price(inst), marks) if q else (ZERO, ZERO)
        i1, m1 = _requirement(inst, after, price, marks) if after else (ZERO, ZERO)
        cash = sum((v * marks.rate(c) for c, v in self._cash.items()), ZERO)
        elv = cash + sum(
            (b.quantity * dec(marks.price(b.inst)) * multiplier(b.inst) * marks.rate(
                b.inst.currency) for b in self._books.values() if b.quantity),
            ZERO,
        )  # fmt: skip
        return (init, maint), (init - i0 + i1, maint - m0 + m1), elv

    def check_order(
        self, inst: Instrument, buy: bool, qty: Decimal, price: float, marks: Marks
    ) -> str | None:
        """None if the account can take the order, else IB's 201 reason text."""
        (init, _), (after, _), elv = self.what_if(inst, buy, qty, price, marks)
        if after <= init or after <= elv:
            return None
        return (
            "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY "
            f"WITH LOAN VALUE [{elv.quantize(CENT)} {self.currency}] MUST EXCEED THE INITIAL "
            f"MARGIN [{after.quantize(CENT)} {self.currency}] (insufficient funds)"
        )

    # --- snapshot -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (Decimals as strings)."""

        def money(d: dict[Any, Decimal]) -> dict[str, str]:
            return {str(k): str(v) for k, v in d.items()}

        return {
            "account_id": self.account_id,
            "currency": self.currency,
            "start_cash": money(self._start_cash),
            "cash": money(self._cash),
            "positions": [
                {
                    "con_id": c,
                    "exchange": b.inst.exchange,
                    "quantity": str(b.quantity),
                    "cost": str(b.cost),
                    "notional": str(b.notional),
                    "realized": str(b.realized),
                }
                for c, b in sorted(self._books.items())
            ],
            "day": self._day.isoformat() if self._day else None,
            "day_qty": money(self._day_qty),
            "day_flow": money(self._day_flow),
            "day_comm": money(self._day_comm),
            "day_realized": money(self._day_realized),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], lookup: Callable[[int], Instrument]) -> Account:
        """Rebuild from :meth:`to_dict`; ``lookup`` finds instruments by conId (it raises
        for unknown ones).  Raises KeyError/ValueError for a malformed dict."""
        acct = cls(data["account_id"], ZERO, data["currency"])

        def money(d: dict[str, str]) -> dict[str, Decimal]:
            return {k: Decimal(v) for k, v in d.items()}

        def by_con(d: dict[str, str]) -> dict[int, Decimal]:
            return {int(k): Decimal(v) for k, v in d.items()}

        acct._start_cash, acct._cash = money(data["start_cash"]), money(data["cash"])
        for row in data["positions"]:
            inst = lookup(int(row["con_id"]))
            if inst.exchange != row["exchange"]:
                inst = replace(inst, exchange=row["exchange"])
            acct._books[inst.con_id] = _Book(
                inst,
                Decimal(row["quantity"]),
                Decimal(row["cost"]),
                Decimal(row["notional"]),
                Decimal(row["realized"]),
            )
        acct._day = date.fromisoformat(data["day"]) if data["day"] else None
        acct._day_qty, acct._day_flow = by_con(data["day_qty"]), by_con(data["day_flow"])
        acct._day_comm, acct._day_realized = by_con(data["day_comm"]), by_con(data["day_realized"])
        return acct


def _requirement(
    inst: Instrument, qty: Decimal, price: float, marks: Marks
) -> tuple[Decimal, Decimal]:
    """(initial, maintenance) margin of holding ``qty`` at ``price``, account currency."""
    m, r = multiplier(inst), marks.rate(inst.currency)
    value = abs(qty * dec(price) * m) * r
    st = inst.sec_type
    if st == "FUT":
        per = FUTURES_INITIAL.get(inst.symbol)
        init = abs(qty) * per if per is not None else value * FUTURES_DEFAULT_RATE
        return init, init * MAINT_OF_INITIAL
    if st == "OPT":
        if qty > 0:
            return value, value
        under = abs(qty) * dec(marks.underlying_price(inst)) * m * r * SHORT_OPTION_RATE
        return under, under
    if st == "CASH":
        return value * FX_INITIAL, value * FX_INITIAL * MAINT_OF_INITIAL
    return value * STOCK_INITIAL, value * STOCK_MAINT

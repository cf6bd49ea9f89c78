"""Translations between ib_async's objects and the broker interface's types (pure, no I/O).

ib_async carries floats with IB's sentinels (NaN, ``UNSET_DOUBLE``, -1 for "no price"); the
runtime sees ``Decimal`` or ``None``.  Order statuses are read from the trade's log, skipping
entries ib_async made up itself: on an error it marks the order Cancelled (wrong for 462, 404,
10147...) and on a warning "ValidationError"; those entries carry the error code, real
``orderStatus`` messages carry 0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ib_async

from ibpilot.broker._ibkr_hours import Hours, parse_hours, zone_name
from ibpilot.broker.base import (
    AccountSnapshot,
    Bar,
    BrokerOrderStatus,
    BrokerRequestError,
    Contract,
    ContractRef,
    ExecutionReport,
    OrderReport,
    OrderRequest,
    Position,
    Quote,
    Side,
)
from ibpilot.errors import ErrorName, by_name

log = logging.getLogger("ibpilot.broker.ibkr")

UNSET_DOUBLE = 1.7976931348623157e308  # IB's "no value" for doubles
_STATUS_ALIASES = {"ApiPending": BrokerOrderStatus.PENDING_SUBMIT}


def dec(value: object) -> Decimal | None:
    """A float/str/Decimal from IB as Decimal; None for NaN, infinities and IB's unset marker."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or value >= UNSET_DOUBLE:
            return None
        return Decimal(int(value)) if value.is_integer() else Decimal(repr(value))
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        return None
    return out if out.is_finite() else None


def price(value: object) -> Decimal | None:
    """A price; IB's -1 ("no quote") is None as well."""
    out = dec(value)
    return None if out is None or out == -1 else out


def dec0(value: object) -> Decimal:
    """A quantity; unset is 0."""
    out = dec(value)
    return Decimal(0) if out is None else out


def aware(value: datetime | None, fallback: datetime) -> datetime:
    """A UTC-aware datetime (ib_async's times are UTC-aware; a naive one is taken as UTC)."""
    if value is None:
        return fallback
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def zone(name: str) -> ZoneInfo:
    """IB's time zone id as a ZoneInfo (US/Eastern when IB's id is unknown here)."""
    try:
        return ZoneInfo(name or "US/Eastern")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("US/Eastern")


def raw_client(ib: ib_async.IB) -> Any:
    """ib_async's Client, untyped: its request methods carry no annotations (mypy strict)."""
    return ib.client


def raw_wrapper(ib: ib_async.IB) -> Any:
    """ib_async's Wrapper, untyped: several of its methods carry no annotations."""
    return ib.wrapper


# --- contracts ------------------------------------------------------------------------------


def ib_contract_of_ref(ref: ContractRef) -> ib_async.Contract:
    """A contract query for reqContractDetails."""
    return ib_async.Contract(
        conId=ref.con_id,
        symbol="" if ref.con_id else ref.symbol,
        secType=ref.sec_type,
        exchange=ref.exchange,
        currency=ref.currency,
        primaryExchange=ref.primary_exchange,
        lastTradeDateOrContractMonth=ref.last_trade_date_or_contract_month,
        strike=float(ref.strike) if ref.strike is not None else 0.0,
        right=ref.right,
        multiplier=ref.multiplier,
    )


def ib_contract(contract: Contract) -> ib_async.Contract:
    """A resolved contract as ib_async wants it for orders and market data."""
    return ib_async.Contract(
        conId=contract.con_id,
        symbol=contract.symbol,
        secType=contract.sec_type,
        exchange=contract.exchange,
        primaryExchange=contract.primary_exchange,
        currency=contract.currency,
        localSymbol=contract.local_symbol,
    )


def liquid_hours_of(details: ib_async.ContractDetails) -> Hours:
    """The contract's liquid hours; unknown (logged) when IB's string cannot be read."""
    try:
        return parse_hours(details.liquidHours or "", details.timeZoneId or "")
    except ValueError as exc:
        symbol = details.contract.symbol if details.contract else "?"
        log.warning("liquid hours of %s not used: %s", symbol, exc)
        return Hours()


def contract_of(details: ib_async.ContractDetails) -> Contract:
    """Our contract from IB's contract details (liquid hours parsed in its time zone)."""
    c = details.contract or ib_async.Contract()
    hours = liquid_hours_of(details)
    return Contract(
        con_id=c.conId,
        symbol=c.symbol,
        sec_type=c.secType,
        exchange=c.exchange,
        currency=c.currency,
        primary_exchange=c.primaryExchange,
        local_symbol=c.localSymbol,
        min_tick=dec(details.minTick) or Decimal("0.01"),
        multiplier=dec(c.multiplier) or Decimal(1),
        time_zone=zone_name(details.timeZoneId or "") or "US/Eastern",
        long_name=details.longName,
        liquid_hours=hours.sessions,
        liquid_hours_known=hours.known,
    )


def describe(contract: Contract) -> str:
    """One candidate of an ambiguous lookup, as a user can tell them apart."""
    parts = [f"conId {contract.con_id}", contract.local_symbol or contract.symbol]
    parts += [contract.sec_type, contract.primary_exchange or contract.exchange, contract.currency]
    if contract.multiplier != 1:
        parts.append(f"x{contract.multiplier}")
    return " ".join(p for p in parts if p)


# --- market data ----------------------------------------------------------------------------


def quote_of(ticker: ib_async.Ticker, now: datetime) -> Quote | None:
    """A Quote from an updated ticker (None when it has no contract id)."""
    contract = ticker.contract
    if contract is None or not contract.conId:
        return None
    return Quote(
        con_id=contract.conId,
        time=aware(ticker.time, now),
        bid=_quote_dec(ticker.bid, price),
        ask=_quote_dec(ticker.ask, price),
        last=_quote_dec(ticker.last, price),
        bid_size=_quote_dec(ticker.bidSize, dec),
        ask_size=_quote_dec(ticker.askSize, dec),
    )


def _quote_dec(value: object, convert: Callable[[object], Decimal | None]) -> Decimal | None:
    """``convert(value)`` (price or dec), for a usual float without the general rules' calls:
    this runs five times for every quote."""
    if type(value) is not float or not -1.0 < value < UNSET_DOUBLE:  # NaN, inf, -1, unset...
        return convert(value)
    return Decimal(int(value)) if value.is_integer() else Decimal(repr(value))


def realtime_bar(con_id: int, bar: ib_async.RealTimeBar) -> Bar:
    """A 5-second bar."""
    return Bar(
        con_id=con_id,
        time=aware(bar.time, bar.time),
        open=dec0(bar.open_),
        high=dec0(bar.high),
        low=dec0(bar.low),
        close=dec0(bar.close),
        volume=max(Decimal(0), dec0(bar.volume)),
    )


def history_bar(contract: Contract, bar: ib_async.BarData) -> Bar:
    """A historical bar; daily bars (a date) start at midnight in the contract's time zone.

    IB's volume -1 ("no volume", e.g. MIDPOINT) becomes 0.
    """
    stamp: date = bar.date
    if isinstance(stamp, datetime):
        start = aware(stamp, stamp)
    else:
        start = datetime.combine(stamp, time(0), tzinfo=zone(contract.time_zone)).astimezone(UTC)
    return Bar(
        con_id=contract.con_id,
        time=start,
        open=dec0(bar.open),
        high=dec0(bar.high),
        low=dec0(bar.low),
        close=dec0(bar.close),
        volume=max(Decimal(0), dec0(bar.volume)),
    )


# --- orders ---------------------------------------------------------------------------------


def ib_order(order: OrderRequest, account: str) -> ib_async.Order:
    """The ib_async order for ``order``: orderRef carries the intent id."""
    out = ib_async.Order(
        action=order.side.value,
        totalQuantity=float(order.quantity),
        orderType=order.order_type,
        tif=order.tif,
        outsideRth=order.outside_rth,
        orderRef=order.intent_id,
        account=account,
        transmit=True,
    )
    if order.limit_price is not None:
        out.lmtPrice = float(order.limit_price)
    if order.stop_price is not None:
        out.auxPrice = float(order.stop_price)
    return out


def status_of(trade: ib_async.Trade) -> BrokerOrderStatus | None:
    """The order's last status that IB itself reported (see the module doc)."""
    for entry in reversed(trade.log):
        if entry.errorCode:
            continue
        status = _status(entry.status)
        if status is not None:
            return status
    return _status(trade.orderStatus.status)


def _status(text: str) -> BrokerOrderStatus | None:
    if text in _STATUS_ALIASES:
        return _STATUS_ALIASES[text]
    try:
        return BrokerOrderStatus(text)
    except ValueError:
        return None


def side_of(action: str) -> Side:
    """IB's BUY/SELL (orders) or BOT/SLD (executions)."""
    return Side.BUY if action.upper() in ("BUY", "BOT") else Side.SELL


def order_report(trade: ib_async.Trade, now: datetime) -> OrderReport | None:
    """An OrderReport of an open or live order; None while its status is not IB's own."""
    status = status_of(trade)
    if status is None:
        return None
    order, st = trade.order, trade.orderStatus
    quantity = dec0(order.totalQuantity)
    filled = dec0(st.filled) or dec0(order.filledQuantity)
    remaining = dec(st.remaining)
    if remaining is None or (remaining == 0 and status is not BrokerOrderStatus.FILLED):
        remaining = max(Decimal(0), quantity - filled)
    avg = dec(st.avgFillPrice)
    return OrderReport(
        intent_id=order.orderRef or "",
        order_id=order.orderId or st.orderId,
        perm_id=order.permId or st.permId,
        con_id=trade.contract.conId if trade.contract else 0,
        side=side_of(order.action),
        quantity=quantity,
        filled=filled,
        remaining=remaining,
        status=status,
        avg_fill_price=avg if avg and filled else None,
        time=now,
    )


def completed_report(trade: ib_async.Trade, now: datetime) -> OrderReport | None:
    """An OrderReport of a completed order (reqCompletedOrders carries no average price)."""
    status = _status(trade.orderStatus.status)
    if status is None:
        return None
    order = trade.order
    quantity, filled = dec0(order.totalQuantity), dec0(order.filledQuantity)
    return OrderReport(
        intent_id=order.orderRef or "",
        order_id=order.orderId,
        perm_id=order.permId,
        con_id=trade.contract.conId if trade.contract else 0,
        side=side_of(order.action),
        quantity=quantity,
        filled=filled,
        remaining=max(Decimal(0), quantity - filled),
        status=status,
        avg_fill_price=None,
        time=now,
    )


def execution_report(
    fill: ib_async.Fill, report: ib_async.CommissionReport | None = None
) -> ExecutionReport:
    """One fill; the commission when ``report`` (or the fill's own report) is for this fill."""
    ex = fill.execution
    known = report if report is not None else fill.commissionReport
    has_commission = known is not None and known.execId == ex.execId
    return ExecutionReport(
        exec_id=ex.execId,
        intent_id=ex.orderRef or "",
        order_id=ex.orderId,
        perm_id=ex.permId,
        con_id=fill.contract.conId if fill.contract else 0,
        side=side_of(ex.side),
        quantity=dec0(ex.shares),
        price=dec0(ex.price),
        time=aware(ex.time if isinstance(ex.time, datetime) else None, aware(fill.time, fill.time)),
        commission=dec(known.commission) if has_commission and known else None,
        realized_pnl=dec(known.realizedPNL) if has_commission and known else None,
    )


def position_of(item: ib_async.Position) -> Position:
    return Position(
        con_id=item.contract.conId,
        symbol=item.contract.localSymbol or item.contract.symbol,
        quantity=dec0(item.position),
        avg_cost=dec0(item.avgCost),
    )


def ref_text(ref: ContractRef) -> str:
    """A contract query as users wrote it, for messages."""
    if ref.con_id:
        return f"conId {ref.con_id}"
    parts = [
        ref.symbol,
        ref.sec_type,
        ref.exchange,
        ref.currency,
        ref.primary_exchange,
        ref.last_trade_date_or_contract_month,
        str(ref.strike or ""),
        ref.right,
    ]
    return " ".join(p for p in parts if p)


def account_snapshot(account: str, values: Sequence[ib_async.AccountValue]) -> AccountSnapshot:
    """Account values (reqAccountUpdates) in the base currency ("BASE" totals preferred).

    Raises BrokerRequestError SERVER_ERROR when IB sent no NetLiquidation.
    """
    by_tag: dict[str, dict[str, str]] = {}
    for v in values:
        by_tag.setdefault(v.tag, {})[v.currency] = v.value
    net = by_tag.get("NetLiquidation", {})
    base = next((c for c in net if c and c != "BASE"), "BASE")

    def pick(tag: str) -> Decimal:
        options = by_tag.get(tag, {})
        for currency in ("BASE", base, ""):
            if currency in options:
                return dec(options[currency]) or Decimal(0)
        return Decimal(0)

    if not net:
        detail = f"IB sent no NetLiquidation for account {account}"
        raise BrokerRequestError(by_name(ErrorName.SERVER_ERROR), detail)
    return AccountSnapshot(
        account=account,
        net_liquidation=pick("NetLiquidation"),
        cash=pick("TotalCashValue"),
        realized_pnl=pick("RealizedPnL"),
        unrealized_pnl=pick("UnrealizedPnL"),
        buying_power=pick("BuyingPower"),
    )

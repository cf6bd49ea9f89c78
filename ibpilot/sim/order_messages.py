"""Encoders for the order and account messages the gateway sends, per server version.

openOrder, orderStatus, completedOrder, orderBound, execDetails, commissionReport,
position, portfolioValue, acctValue, acctUpdateTime, accountSummary,
accountUpdateMulti, pnl and pnlSingle, at server versions 157..178.  Each returns
the message's fields (message id first); ``protocol.encode_message`` frames them.

openOrder and completedOrder echo the order fields the simulator does not model
from ``OrderSpec.raw`` (see :mod:`ibpilot.sim.order_wire`), with TWS's own values
for fields the client never sent: ``deltaNeutralOrderType`` is ``None`` as real
TWS writes it, and numbers are unset in the form that both ib_async's and IB's
decoders read as unset.

Version gates where the two real clients disagree: openOrder's ``duration`` is read
by IB's client from 158 and by ib_async from 159.  It is sent from 158 (TWS's gate):
ib_async ignores trailing fields, so at 158 it decodes the message without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from ibpilot.sim.order_wire import (
    COMBO_LEG,
    CONDITION_LAYOUTS,
    FIELD_KINDS,
    ORDER_COMBO_LEG,
    PEG_BENCH_TYPES,
    SV_AUTO_CANCEL_PARENT,
    SV_DURATION,
    SV_FA_PROFILE_DESUPPORT,
    SV_PEGBEST_PEGMID_OFFSETS,
    SV_PENDING_PRICE_REVISION,
    SV_POST_TO_ATS,
    TAG_VALUE,
    GroupLayout,
    group_count,
    group_items,
    scale_fields_follow,
)
from ibpilot.sim.orders import Execution, OrderSpec
from ibpilot.sim.outbound import In
from ibpilot.sim.protocol import Field, Unset
from ibpilot.sim.refdata import Instrument
from ibpilot.sim.requests import ContractSpec

TWS_TIME_ZONE = "US/Eastern"


@dataclass(frozen=True, slots=True)
class WireContract:
    """The contract fields order and account messages carry."""

    con_id: int
    symbol: str
    sec_type: str
    last_trade_date_or_contract_month: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""

    @classmethod
    def from_instrument(cls, inst: Instrument, exchange: str = "") -> WireContract:
        """A resolved instrument; ``exchange`` overrides its routing exchange (e.g. SMART)."""
        return cls(
            con_id=inst.con_id,
            symbol=inst.symbol,
            sec_type=inst.sec_type,
            last_trade_date_or_contract_month=inst.last_trade_date,
            strike=inst.strike,
            right=inst.right,
            multiplier=inst.multiplier,
            exchange=exchange or inst.exchange,
            primary_exchange=inst.primary_exchange,
            currency=inst.currency,
            local_symbol=inst.local_symbol,
            trading_class=inst.trading_class,
        )

    @classmethod
    def from_spec(cls, spec: ContractSpec) -> WireContract:
        """The contract as a client sent it (e.g. a BAG, which has no instrument)."""
        return cls(
            con_id=spec.con_id,
            symbol=spec.symbol,
            sec_type=spec.sec_type,
            last_trade_date_or_contract_month=spec.last_trade_date_or_contract_month,
            strike=spec.strike,
            right=spec.right,
            multiplier=spec.multiplier,
            exchange=spec.exchange,
            primary_exchange=spec.primary_exchange,
            currency=spec.currency,
            local_symbol=spec.local_symbol,
            trading_class=spec.trading_class,
        )

    def fields(self, venue: str | None = None) -> list[Field]:
        """The usual 11 fields: conId .. tradingClass, with ``venue`` in the exchange slot."""
        return [
            self.con_id,
            self.symbol,
            self.sec_type,
            self.last_trade_date_or_contract_month,
            self.strike,
            self.right,
            self.multiplier,
            self.exchange if venue is None else venue,
            self.currency,
            self.local_symbol,
            self.trading_class,
        ]


@dataclass(frozen=True, slots=True)
class OrderState:
    """openOrder's order state: status, what-if margins and commission (None = unset)."""

    status: str
    init_margin_before: float | None = None
    maint_margin_before: float | None = None
    equity_with_loan_before: float | None = None
    init_margin_change: float | None = None
    maint_margin_change: float | None = None
    equity_with_loan_change: float | None = None
    init_margin_after: float | None = None
    maint_margin_after: float | None = None
    equity_with_loan_after: float | None = None
    commission: float | None = None
    min_commission: float | None = None
    max_commission: float | None = None
    commission_currency: str = ""
    warning_text: str = ""

    def fields(self) -> list[Field]:
        """status, the 9 margin fields, commission, min, max, currency, warningText."""
        numbers = (
            self.init_margin_before,
            self.maint_margin_before,
            self.equity_with_loan_before,
            self.init_margin_change,
            self.maint_margin_change,
            self.equity_with_loan_change,
            self.init_margin_after,
            self.maint_margin_after,
            self.equity_with_loan_after,
            self.commission,
            self.min_commission,
            self.max_commission,
        )
        return [
            str(self.status),
            *(_double(n) for n in numbers),
            self.commission_currency,
            self.warning_text,
        ]


def ib_time(epoch: int, time_zone: str = TWS_TIME_ZONE) -> str:
    """``yyyymmdd hh:mm:ss <zone>`` as TWS writes execution and completion times."""
    local = datetime.fromtimestamp(epoch, tz=ZoneInfo(time_zone))
    return f"{local:%Y%m%d %H:%M:%S} {time_zone}"


# --- orders ---------------------------------------------------------------------------


def open_order(
    spec: OrderSpec,
    contract: WireContract,
    perm_id: int,
    state: OrderState,
    server_version: int,
) -> list[Field]:
    """openOrder (no version field): the order, its contract and its state."""
    raw = spec.raw
    fields: list[Field] = [In.OPEN_ORDER, spec.order_id, *contract.fields()]
    fields += _order_head(spec, raw)
    fields += [spec.client_id, perm_id, spec.outside_rth, *_echo(raw, "hidden", "discretionaryAmt")]
    fields += [spec.good_after_time, ""]  # sharesAllocation: deprecated
    fields += _fa_params(raw, server_version)
    fields += [*_echo(raw, "modelCode"), spec.good_till_date]
    fields += _echo(
        raw, "rule80A", "percentOffset", "settlingFirm", "shortSaleSlot", "designatedLocation",
        "exemptCode", "auctionStrategy", "startingPrice", "stockRefPrice", "delta",
        "stockRangeLower", "stockRangeUpper", "displaySize", "blockOrder", "sweepToFill",
        "allOrNone", "minQty",
    )  # fmt: skip
    fields += [spec.oca_type, *_echo(raw, "eTradeOnly", "firmQuoteOnly", "nbboPriceCap")]
    fields += [spec.parent_id, *_echo(raw, "triggerMethod", "volatility", "volatilityType")]
    fields += _delta_neutral(
        raw,
        "deltaNeutralConId", "deltaNeutralSettlingFirm", "deltaNeutralClearingAccount",
        "deltaNeutralClearingIntent", "deltaNeutralOpenClose", "deltaNeutralShortSale",
        "deltaNeutralShortSaleSlot", "deltaNeutralDesignatedLocation",
    )  # fmt: skip
    fields += [*_echo(raw, "continuousUpdate", "referencePriceType")]
    fields += [spec.trail_stop_price, spec.trailing_percent]
    fields += _echo(raw, "basisPoints", "basisPointsType")
    fields += _combo_legs(raw) + _scale_and_hedge(raw)
    fields += _echo(raw, "optOutSmartRouting", "clearingAccount", "clearingIntent", "notHeld")
    fields += _delta_neutral_contract(raw) + _algo(raw)
    fields += [*_echo(raw, "solicited"), spec.what_if, *state.fields()]
    fields += _echo(raw, "randomizeSize", "randomizePrice")
    fields += _peg_bench(spec, raw) + _conditions(raw)
    fields += [*_echo(raw, "adjustedOrderType", "triggerPrice")]
    fields += [_double(spec.trail_stop_price), _double(spec.lmt_price_offset)]
    fields += _echo(
        raw, "adjustedStopPrice", "adjustedStopLimitPrice", "adjustedTrailingAmount",
        "adjustableTrailingUnit", "softDollarTier.name", "softDollarTier.value",
        "softDollarTier.displayName", "cashQty", "dontUseAutoPriceForHedge", "isOmsContainer",
        "discretionaryUpToLimitPrice", "usePriceMgmtAlgo",
    )  # fmt: skip
    for gate, name in _OPEN_ORDER_GATED:
        if server_version >= gate:
            fields += _echo(raw, name)
    return fields + _peg_offsets(raw, server_version)


_OPEN_ORDER_GATED = (
    (SV_DURATION, "duration"),
    (SV_POST_TO_ATS, "postToAts"),
    (SV_AUTO_CANCEL_PARENT, "autoCancelParent"),
)


def completed_order(
    spec: OrderSpec,
    contract: WireContract,
    perm_id: int,
    status: str,
    filled_quantity: Decimal,
    completed_time: int,
    completed_status: str,
    server_version: int,
    parent_perm_id: int = 0,
    time_zone: str = TWS_TIME_ZONE,
) -> list[Field]:
    """completedOrder (no version field, no orderId/clientId); times are epoch seconds.

    ``completed_status`` is TWS's free text, e.g. ``Filled`` or ``Cancelled by Trader``.
    """
    raw = spec.raw
    fields: list[Field] = [In.COMPLETED_ORDER, *contract.fields()]
    fields += _order_head(spec, raw)
    fields += [perm_id, spec.outside_rth, *_echo(raw, "hidden", "discretionaryAmt")]
    fields += [spec.good_after_time, *_fa_params(raw, server_version)]
    fields += [*_echo(raw, "modelCode"), spec.good_till_date]
    fields += _echo(
        raw, "rule80A", "percentOffset", "settlingFirm", "shortSaleSlot", "designatedLocation",
        "exemptCode", "startingPrice", "stockRefPrice", "delta", "stockRangeLower",
        "stockRangeUpper", "displaySize", "sweepToFill", "allOrNone", "minQty",
    )  # fmt: skip
    fields += [spec.oca_type, *_echo(raw, "triggerMethod", "volatility", "volatilityType")]
    fields += _delta_neutral(
        raw,
        "deltaNeutralConId", "deltaNeutralShortSale", "deltaNeutralShortSaleSlot",
        "deltaNeutralDesignatedLocation",
    )  # fmt: skip
    fields += [*_echo(raw, "continuousUpdate", "referencePriceType")]
    fields += [spec.trail_stop_price, spec.trailing_percent]
    fields += _combo_legs(raw) + _scale_and_hedge(raw)
    fields += _echo(raw, "clearingAccount", "clearingIntent", "notHeld")
    fields += _delta_neutral_contract(raw) + _algo(raw)
    fields += [*_echo(raw, "solicited"), status, *_echo(raw, "randomizeSize", "randomizePrice")]
    fields += _peg_bench(spec, raw) + _conditions(raw)
    fields += [_double(spec.trail_stop_price), _double(spec.lmt_price_offset)]
    fields += _echo(raw, "cashQty", "dontUseAutoPriceForHedge", "isOmsContainer", "autoCancelDate")
    fields += [filled_quantity, *_echo(raw, "refFuturesConId", "autoCancelParent", "shareholder")]
    fields += [*_echo(raw, "imbalanceOnly", "routeMarketableToBbo"), parent_perm_id]
    fields += [ib_time(completed_time, time_zone), completed_status]
    return fields + _peg_offsets(raw, server_version)


def order_status(
    order_id: int,
    status: str,
    filled: Decimal,
    remaining: Decimal,
    avg_fill_price: float,
    perm_id: int,
    parent_id: int,
    last_fill_price: float,
    client_id: int,
    why_held: str = "",
    mkt_cap_price: float = 0.0,
) -> list[Field]:
    """orderStatus (no version field from server version 131)."""
    return [
        In.ORDER_STATUS, order_id, str(status), filled, remaining, avg_fill_price, perm_id,
        parent_id, last_fill_price, client_id, why_held, mkt_cap_price,
    ]  # fmt: skip


def order_bound(perm_id: int, client_id: int, order_id: int) -> list[Field]:
    """orderBound: a TWS order (orderId 0 in TWS) bound to an API order id."""
    return [In.ORDER_BOUND, perm_id, client_id, order_id]


# --- executions -------------------------------------------------------------------------


def exec_details(
    req_id: int,
    execution: Execution,
    contract: WireContract,
    server_version: int,
    last_liquidity: int = 0,
    time_zone: str = TWS_TIME_ZONE,
) -> list[Field]:
    """execDetails (no version field from 136); ``req_id`` is -1 for unsolicited fills.

    The contract's exchange slot carries the execution venue, as TWS sends it.
    ``last_liquidity``: 1 added, 2 removed, 3 routed out (0 unknown).
    """
    fields: list[Field] = [
        In.EXECUTION_DATA, req_id, execution.order_id, *contract.fields(execution.exchange),
        execution.exec_id, ib_time(execution.time, time_zone), execution.account,
        execution.exchange, execution.side, execution.shares, execution.price,
        execution.perm_id, execution.client_id, 0, execution.cum_qty, execution.avg_price,
        execution.order_ref, "", None, "", last_liquidity,
    ]  # fmt: skip  # ... liquidation, evRule, evMultiplier, modelCode, lastLiquidity
    if server_version >= SV_PENDING_PRICE_REVISION:
        fields.append(False)  # pendingPriceRevision
    return fields


def commission_report(execution: Execution) -> list[Field]:
    """commissionReport (v1); unset realized P&L and yield are IB's unset double."""
    return [
        In.COMMISSION_REPORT, 1, execution.exec_id, execution.commission,
        execution.commission_currency, _double(execution.realized_pnl), Unset.DOUBLE, "",
    ]  # fmt: skip


# --- positions and account ----------------------------------------------------------------


def position(account: str, contract: WireContract, pos: Decimal, avg_cost: float) -> list[Field]:
    """position (v3): the contract with its exchange."""
    return [In.POSITION_DATA, 3, account, *contract.fields(), pos, avg_cost]


def portfolio_value(
    contract: WireContract,
    pos: Decimal,
    market_price: float,
    market_value: float,
    average_cost: float,
    unrealized_pnl: float,
    realized_pnl: float,
    account: str,
) -> list[Field]:
    """portfolioValue (v8): the contract with primaryExchange in the exchange slot."""
    return [
        In.PORTFOLIO_VALUE, 8, *contract.fields(contract.primary_exchange), pos, market_price,
        market_value, average_cost, unrealized_pnl, realized_pnl, account,
    ]  # fmt: skip


def account_value(key: str, value: str, currency: str, account: str) -> list[Field]:
    """acctValue (v2), e.g. ``NetLiquidation``, ``12345.67``, ``USD``."""
    return [In.ACCT_VALUE, 2, key, value, currency, account]


def account_update_time(hh_mm: str) -> list[Field]:
    """acctUpdateTime (v1): ``HH:MM``."""
    return [In.ACCT_UPDATE_TIME, 1, hh_mm]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> list[Field]:
    """accountSummary (v1)."""
    return [In.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency]


def account_update_multi(
    req_id: int, account: str, model_code: str, key: str, value: str, currency: str
) -> list[Field]:
    """accountUpdateMulti (v1)."""
    return [In.ACCOUNT_UPDATE_MULTI, 1, req_id, account, model_code, key, value, currency]


def pnl(
    req_id: int, daily: float | None, unrealized: float | None, realized: float | None
) -> list[Field]:
    """pnl (no version field); None is sent as IB's unset double."""
    return [In.PNL, req_id, _double(daily), _double(unrealized), _double(realized)]


def pnl_single(
    req_id: int,
    pos: Decimal,
    daily: float | None,
    unrealized: float | None,
    realized: float | None,
    value: float,
) -> list[Field]:
    """pnlSingle (no version field); None is sent as IB's unset double."""
    return [
        In.PNL_SINGLE, req_id, pos, _double(daily), _double(unrealized), _double(realized),
        value,
    ]  # fmt: skip


# --- shared order blocks ----------------------------------------------------------------


def _order_head(spec: OrderSpec, raw: dict[str, str]) -> list[Field]:
    """action .. orderRef: the same in openOrder and completedOrder."""
    return [
        spec.action, spec.total_quantity, spec.order_type, spec.lmt_price, spec.aux_price,
        spec.tif, spec.oca_group, spec.account, *_echo(raw, "openClose", "origin"),
        spec.order_ref,
    ]  # fmt: skip


def _fa_params(raw: dict[str, str], server_version: int) -> list[Field]:
    names = ["faGroup", "faMethod", "faPercentage"]
    if server_version < SV_FA_PROFILE_DESUPPORT:
        names.append("faProfile")
    return _echo(raw, *names)


def _delta_neutral(raw: dict[str, str], *block: str) -> list[Field]:
    """deltaNeutralOrderType (``None`` when unset, as TWS sends it), aux price, the block."""
    dn_type = raw.get("deltaNeutralOrderType") or "None"
    return [dn_type, *_echo(raw, "deltaNeutralAuxPrice", *block)]


def _combo_legs(raw: dict[str, str]) -> list[Field]:
    fields = _echo(raw, "comboLegsDescrip")
    fields += _group(raw, "comboLegs", COMBO_LEG)
    fields += _group(raw, "orderComboLegs", ORDER_COMBO_LEG)
    return fields + _group(raw, "smartComboRoutingParams", TAG_VALUE)


def _scale_and_hedge(raw: dict[str, str]) -> list[Field]:
    fields = _echo(raw, "scaleInitLevelSize", "scaleSubsLevelSize", "scalePriceIncrement")
    if scale_fields_follow(raw.get("scalePriceIncrement", "")):
        fields += _echo(
            raw, "scalePriceAdjustValue", "scalePriceAdjustInterval", "scaleProfitOffset",
            "scaleAutoReset", "scaleInitPosition", "scaleInitFillQty", "scaleRandomPercent",
        )  # fmt: skip
    fields += _echo(raw, "hedgeType")
    if raw.get("hedgeType"):
        fields += _echo(raw, "hedgeParam")
    return fields


def _delta_neutral_contract(raw: dict[str, str]) -> list[Field]:
    if raw.get("deltaNeutralContractPresent") != "1":
        return [False]
    return [
        True,
        *_echo(
            raw,
            "deltaNeutralContract.conId",
            "deltaNeutralContract.delta",
            "deltaNeutralContract.price",
        ),
    ]


def _algo(raw: dict[str, str]) -> list[Field]:
    strategy = raw.get("algoStrategy", "")
    if not strategy:
        return [strategy]
    return [strategy, *_group(raw, "algoParams", TAG_VALUE)]


def _peg_bench(spec: OrderSpec, raw: dict[str, str]) -> list[Field]:
    if spec.order_type not in PEG_BENCH_TYPES:
        return []
    return _echo(
        raw, "referenceContractId", "isPeggedChangeAmountDecrease", "peggedChangeAmount",
        "referenceChangeAmount", "referenceExchangeId",
    )  # fmt: skip


def _conditions(raw: dict[str, str]) -> list[Field]:
    count = group_count(raw, "conditions")
    fields: list[Field] = [count]
    for i in range(count):
        cond_type = raw[f"conditions.{i}.conditionType"]
        names = [name for name, _ in CONDITION_LAYOUTS[int(cond_type)]]
        fields += [cond_type, *(raw[f"conditions.{i}.{name}"] for name in names)]
    if count:
        fields += _echo(raw, "conditionsIgnoreRth", "conditionsCancelOrder")
    return fields


def _peg_offsets(raw: dict[str, str], server_version: int) -> list[Field]:
    if server_version < SV_PEGBEST_PEGMID_OFFSETS:
        return []
    return _echo(
        raw, "minTradeQty", "minCompeteSize", "competeAgainstBestOffset", "midOffsetAtWhole",
        "midOffsetAtHalf",
    )  # fmt: skip


def _group(raw: dict[str, str], prefix: str, layout: GroupLayout) -> list[Field]:
    items = group_items(raw, prefix, [name for name, _ in layout])
    return [len(items), *(value for item in items for value in item)]


def _echo(raw: dict[str, str], *names: str) -> list[Field]:
    """Raw fields as sent, or TWS's value when absent; unset in the form the decoders expect."""
    fields: list[Field] = []
    for name in names:
        kind, default = FIELD_KINDS[name]
        value = raw.get(name, default)
        if value == "" and kind == "I":
            fields.append(Unset.INTEGER)
        elif value == "" and kind == "F":
            fields.append(Unset.DOUBLE)
        else:
            fields.append(value)
    return fields


def _double(value: float | None) -> Field:
    return Unset.DOUBLE if value is None else value

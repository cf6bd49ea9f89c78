"""Encoders for the messages the gateway sends, field by field, per server version.

Each function returns the message's fields (message id first) exactly as TWS lays
them out at the negotiated server version (157..178 here); ``protocol.encode_message``
turns them into bytes.  The layouts are checked against both real decoders
(ib_async's and IB's official client) by the conformance tests.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ibpilot.sim.protocol import Field
from ibpilot.sim.refdata import Instrument, OptionChain

# Server-version gates (the names IB uses in its clients, for the fields we emit).
SV_ENCODE_MSG_ASCII7 = 153
SV_FRACTIONAL_SIZE_SUPPORT = 163
SV_SIZE_RULES = 164
SV_ADVANCED_ORDER_REJECT = 166
SV_BOND_ISSUERID = 176


class In(enum.IntEnum):
    """Ids of messages sent by the gateway (IB's ``IN`` table)."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    HISTORICAL_DATA = 17
    TICK_GENERIC = 45
    TICK_STRING = 46
    CURRENT_TIME = 49
    REAL_TIME_BARS = 50
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    SECURITY_DEFINITION_OPTION_PARAMETER = 75
    SECURITY_DEFINITION_OPTION_PARAMETER_END = 76
    SYMBOL_SAMPLES = 79
    TICK_REQ_PARAMS = 81
    HEAD_TIMESTAMP = 88
    HISTORICAL_DATA_UPDATE = 90
    PNL = 94
    PNL_SINGLE = 95
    ORDER_BOUND = 100
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


class TickType(enum.IntEnum):
    """IB's tick type ids used by the simulator."""

    BID_SIZE = 0
    BID = 1
    ASK = 2
    ASK_SIZE = 3
    LAST = 4
    LAST_SIZE = 5
    HIGH = 6
    LOW = 7
    VOLUME = 8
    CLOSE = 9
    OPEN = 14
    LAST_TIMESTAMP = 45
    HALTED = 49
    DELAYED_BID = 66
    DELAYED_ASK = 67
    DELAYED_LAST = 68
    DELAYED_BID_SIZE = 69
    DELAYED_ASK_SIZE = 70
    DELAYED_LAST_SIZE = 71
    DELAYED_HIGH = 72
    DELAYED_LOW = 73
    DELAYED_VOLUME = 74
    DELAYED_CLOSE = 75
    DELAYED_OPEN = 76
    DELAYED_LAST_TIMESTAMP = 88


def tick_price(
    req_id: int, tick: TickType, price: float, size: float | None, attr_mask: int = 0
) -> list[Field]:
    """tickPrice (v6): price with the size of the same side (ibapi splits it in two)."""
    return [In.TICK_PRICE, 6, req_id, int(tick), price, _size(size), attr_mask]


def tick_size(req_id: int, tick: TickType, size: float) -> list[Field]:
    """tickSize (v6)."""
    return [In.TICK_SIZE, 6, req_id, int(tick), _size(size)]


def tick_generic(req_id: int, tick: int, value: float) -> list[Field]:
    """tickGeneric (v6)."""
    return [In.TICK_GENERIC, 6, req_id, tick, value]


def tick_string(req_id: int, tick: int, value: str) -> list[Field]:
    """tickString (v6), e.g. the last trade's epoch time (tick 45)."""
    return [In.TICK_STRING, 6, req_id, tick, value]


def tick_req_params(
    req_id: int, min_tick: float, bbo_exchange: str, snapshot_permissions: int
) -> list[Field]:
    """tickReqParams: sent after reqMktData with the contract's tick size."""
    return [In.TICK_REQ_PARAMS, req_id, min_tick, bbo_exchange, snapshot_permissions]


def tick_snapshot_end(req_id: int) -> list[Field]:
    """tickSnapshotEnd: the end of a snapshot request."""
    return [In.TICK_SNAPSHOT_END, 1, req_id]


def market_data_type(req_id: int, data_type: int) -> list[Field]:
    """marketDataType: 1 live, 2 frozen, 3 delayed, 4 delayed-frozen."""
    return [In.MARKET_DATA_TYPE, 1, req_id, data_type]


def error(
    req_id: int, code: int, text: str, server_version: int, advanced_reject: str = ""
) -> list[Field]:
    """errMsg (v2); the advanced-reject JSON field exists from server version 166."""
    fields: list[Field] = [In.ERR_MSG, 2, req_id, code, text]
    if server_version >= SV_ADVANCED_ORDER_REJECT:
        fields.append(advanced_reject)
    return fields


def next_valid_id(order_id: int) -> list[Field]:
    """nextValidId (v1)."""
    return [In.NEXT_VALID_ID, 1, order_id]


def managed_accounts(accounts: Sequence[str]) -> list[Field]:
    """managedAccounts (v1): a comma-separated list in one field."""
    return [In.MANAGED_ACCTS, 1, ",".join(accounts)]


def current_time(epoch: int) -> list[Field]:
    """currentTime (v1): seconds since the epoch on the gateway's clock."""
    return [In.CURRENT_TIME, 1, epoch]


@dataclass(frozen=True, slots=True)
class ContractDetailsExtra:
    """Contract-details fields computed per request rather than stored."""

    trading_hours: str
    liquid_hours: str


def contract_data(
    req_id: int, inst: Instrument, extra: ContractDetailsExtra, server_version: int
) -> list[Field]:
    """contractData: IB's contract details at the negotiated server version."""
    fields: list[Field] = [In.CONTRACT_DATA]
    if server_version < SV_SIZE_RULES:
        fields.append(8)
    last_times = inst.last_trade_date
    fields += [
        req_id,
        inst.symbol,
        inst.sec_type,
        last_times,
        inst.strike,
        inst.right,
        inst.exchange,
        inst.currency,
        inst.local_symbol,
        inst.market_name,
        inst.trading_class,
        inst.con_id,
        inst.min_tick,
    ]
    if server_version < SV_SIZE_RULES:
        fields.append(1)  # mdSizeMultiplier, obsolete
    fields += [
        inst.multiplier,
        inst.order_types,
        inst.valid_exchanges,
        inst.price_magnifier,
        inst.underlying_con_id,
        inst.long_name,
        inst.primary_exchange,
        inst.contract_month,
        inst.industry,
        inst.category,
        inst.subcategory,
        inst.time_zone_id,
        extra.trading_hours,
        extra.liquid_hours,
        "",  # evRule
        None,  # evMultiplier
        len(inst.sec_ids),
    ]
    for tag, value in inst.sec_ids:
        fields += [tag, value]
    fields += [
        inst.agg_group,
        inst.under_symbol,
        inst.under_sec_type,
        inst.market_rule_ids,
        inst.last_trade_date,  # realExpirationDate
        inst.stock_type,
    ]
    if server_version == SV_FRACTIONAL_SIZE_SUPPORT:
        fields.append(_size(inst.size_increment))  # sizeMinTick, this version only
    if server_version >= SV_SIZE_RULES:
        fields += [
            _size(inst.min_size),
            _size(inst.size_increment),
            _size(inst.suggested_size_increment),
        ]
    return fields


def contract_data_end(req_id: int) -> list[Field]:
    """contractDataEnd (v1)."""
    return [In.CONTRACT_DATA_END, 1, req_id]


def symbol_samples(req_id: int, items: Sequence[Instrument], server_version: int) -> list[Field]:
    """symbolSamples: the answer to reqMatchingSymbols."""
    fields: list[Field] = [In.SYMBOL_SAMPLES, req_id, len(items)]
    for inst in items:
        fields += [
            inst.con_id,
            inst.symbol,
            inst.sec_type,
            inst.primary_exchange or inst.exchange,
            inst.currency,
            len(inst.derivative_sec_types),
            *inst.derivative_sec_types,
        ]
        if server_version >= SV_BOND_ISSUERID:
            fields += [inst.long_name, ""]  # description, issuerId
    return fields


def sec_def_opt_params(req_id: int, chain: OptionChain) -> list[Field]:
    """securityDefinitionOptionParameter: one exchange's expirations and strikes."""
    return [
        In.SECURITY_DEFINITION_OPTION_PARAMETER,
        req_id,
        chain.exchange,
        chain.underlying_con_id,
        chain.trading_class,
        chain.multiplier,
        len(chain.expirations),
        *chain.expirations,
        len(chain.strikes),
        *chain.strikes,
    ]


def sec_def_opt_params_end(req_id: int) -> list[Field]:
    """securityDefinitionOptionParameterEnd."""
    return [In.SECURITY_DEFINITION_OPTION_PARAMETER_END, req_id]


@dataclass(frozen=True, slots=True)
class WireBar:
    """One historical bar as sent: the date is already formatted for the request."""

    date: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int


def historical_data(req_id: int, start: str, end: str, bars: Sequence[WireBar]) -> list[Field]:
    """historicalData (no version at 178): start/end strings, then 8 fields a bar."""
    fields: list[Field] = [In.HISTORICAL_DATA, req_id, start, end, len(bars)]
    for bar in bars:
        fields += [
            bar.date,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            _size(bar.volume),
            _size(bar.wap),
            bar.count,
        ]
    return fields


def historical_data_update(req_id: int, bar: WireBar) -> list[Field]:
    """historicalDataUpdate (keepUpToDate): note IB's open, close, high, low order."""
    return [
        In.HISTORICAL_DATA_UPDATE,
        req_id,
        bar.count,
        bar.date,
        bar.open,
        bar.close,
        bar.high,
        bar.low,
        _size(bar.wap),
        _size(bar.volume),
    ]


def real_time_bar(
    req_id: int,
    time: int,
    open_: float,
    high: float,
    low: float,
    close: float,
    volume: float,
    wap: float,
    count: int,
) -> list[Field]:
    """realTimeBars (v3): one 5-second bar."""
    return [
        In.REAL_TIME_BARS,
        3,
        req_id,
        time,
        open_,
        high,
        low,
        close,
        _size(volume),
        _size(wap),
        count,
    ]


def head_timestamp(req_id: int, timestamp: str) -> list[Field]:
    """headTimestamp: the earliest data point available."""
    return [In.HEAD_TIMESTAMP, req_id, timestamp]


def open_order_end() -> list[Field]:
    """openOrderEnd (v1)."""
    return [In.OPEN_ORDER_END, 1]


def position_end() -> list[Field]:
    """positionEnd (v1)."""
    return [In.POSITION_END, 1]


def account_download_end(account: str) -> list[Field]:
    """accountDownloadEnd (v1)."""
    return [In.ACCT_DOWNLOAD_END, 1, account]


def account_update_multi_end(req_id: int) -> list[Field]:
    """accountUpdateMultiEnd (v1)."""
    return [In.ACCOUNT_UPDATE_MULTI_END, 1, req_id]


def account_summary_end(req_id: int) -> list[Field]:
    """accountSummaryEnd (v1)."""
    return [In.ACCOUNT_SUMMARY_END, 1, req_id]


def exec_details_end(req_id: int) -> list[Field]:
    """execDetailsEnd (v1)."""
    return [In.EXECUTION_DATA_END, 1, req_id]


def completed_orders_end() -> list[Field]:
    """completedOrdersEnd (no version)."""
    return [In.COMPLETED_ORDERS_END]


def _size(value: float | None) -> Field:
    """Sizes are decimals on the wire: integral values without a fraction."""
    if value is None:
        return ""
    if float(value).is_integer():
        return int(value)
    return float(value)

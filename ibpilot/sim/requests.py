"""Typed requests parsed from client messages (the ``OUT`` side of IB's protocol).

:func:`parse_request` reads one :class:`~ibpilot.sim.protocol.Message` into a frozen
dataclass.  Layouts are those that ib_async 2.x and IB's official client send at
server versions 157..178; where the two differ (unset encodings), both are read.
Unknown message ids come back as :class:`Unsupported` so the session can answer
with an error rather than drop the connection.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from ibpilot.sim.protocol import FieldReader, Message
from ibpilot.sim.refdata import ContractQuery


class Out(enum.IntEnum):
    """Ids of messages sent by clients (IB's ``OUT`` table), those the simulator reads."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCT_DATA = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_REAL_TIME_BARS = 50
    CANCEL_REAL_TIME_BARS = 51
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_SEC_DEF_OPT_PARAMS = 78
    REQ_MATCHING_SYMBOLS = 81
    REQ_HEAD_TIMESTAMP = 87
    CANCEL_HEAD_TIMESTAMP = 90
    REQ_PNL = 92
    CANCEL_PNL = 93
    REQ_PNL_SINGLE = 94
    CANCEL_PNL_SINGLE = 95
    REQ_COMPLETED_ORDERS = 99


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """The 12 contract fields a request carries."""

    con_id: int
    symbol: str
    sec_type: str
    last_trade_date_or_contract_month: str
    strike: float
    right: str
    multiplier: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str

    def query(self, include_expired: bool = False) -> ContractQuery:
        """The reference-data query this contract describes."""
        return ContractQuery(
            con_id=self.con_id,
            symbol=self.symbol,
            sec_type=self.sec_type,
            last_trade_date_or_contract_month=self.last_trade_date_or_contract_month,
            strike=self.strike,
            right=self.right,
            multiplier=self.multiplier,
            exchange=self.exchange,
            primary_exchange=self.primary_exchange,
            currency=self.currency,
            local_symbol=self.local_symbol,
            trading_class=self.trading_class,
            include_expired=include_expired,
        )

    def describe(self) -> str:
        """A short human form for error texts, e.g. ``AAPL STK SMART USD``."""
        if self.con_id:
            return f"conId {self.con_id}"
        parts = [
            self.local_symbol or self.symbol,
            self.sec_type,
            self.last_trade_date_or_contract_month,
            self.exchange,
            self.currency,
        ]
        return " ".join(p for p in parts if p)


def read_contract(r: FieldReader) -> ContractSpec:
    """Read the 12-field contract block (conId first)."""
    return ContractSpec(
        con_id=r.integer("conId"),
        symbol=r.text("symbol"),
        sec_type=r.text("secType"),
        last_trade_date_or_contract_month=r.text("lastTradeDateOrContractMonth"),
        strike=r.number("strike"),
        right=r.text("right"),
        multiplier=r.text("multiplier"),
        exchange=r.text("exchange"),
        primary_exchange=r.text("primaryExchange"),
        currency=r.text("currency"),
        local_symbol=r.text("localSymbol"),
        trading_class=r.text("tradingClass"),
    )


def _skip_combo_legs(r: FieldReader, contract: ContractSpec) -> None:
    if contract.sec_type == "BAG":
        for _ in range(r.integer("comboLegsCount")):
            r.integer("leg.conId")
            r.integer("leg.ratio")
            r.text("leg.action")
            r.text("leg.exchange")


@dataclass(frozen=True, slots=True)
class StartApi:
    client_id: int
    optional_capabilities: str


@dataclass(frozen=True, slots=True)
class NoArgs:
    """A request with nothing to read beyond its id (and version)."""

    msg_id: int


@dataclass(frozen=True, slots=True)
class ReqIds:
    num_ids: int


@dataclass(frozen=True, slots=True)
class ReqContractDetails:
    req_id: int
    contract: ContractSpec
    include_expired: bool
    sec_id_type: str
    sec_id: str


@dataclass(frozen=True, slots=True)
class ReqMatchingSymbols:
    req_id: int
    pattern: str


@dataclass(frozen=True, slots=True)
class ReqSecDefOptParams:
    req_id: int
    underlying_symbol: str
    fut_fop_exchange: str
    underlying_sec_type: str
    underlying_con_id: int


@dataclass(frozen=True, slots=True)
class ReqMarketDataType:
    market_data_type: int


@dataclass(frozen=True, slots=True)
class ReqMktData:
    req_id: int
    contract: ContractSpec
    generic_ticks: str
    snapshot: bool
    regulatory_snapshot: bool


@dataclass(frozen=True, slots=True)
class Cancel:
    """A cancel naming a request id (market data, bars, history, head timestamp, ...)."""

    msg_id: int
    req_id: int


@dataclass(frozen=True, slots=True)
class ReqRealTimeBars:
    req_id: int
    contract: ContractSpec
    bar_size: int
    what_to_show: str
    use_rth: bool


@dataclass(frozen=True, slots=True)
class ReqHistoricalData:
    req_id: int
    contract: ContractSpec
    include_expired: bool
    end_date_time: str
    bar_size: str
    duration: str
    use_rth: bool
    what_to_show: str
    format_date: int
    keep_up_to_date: bool


@dataclass(frozen=True, slots=True)
class ReqHeadTimestamp:
    req_id: int
    contract: ContractSpec
    include_expired: bool
    use_rth: bool
    what_to_show: str
    format_date: int


@dataclass(frozen=True, slots=True)
class ReqAccountUpdates:
    subscribe: bool
    account: str


@dataclass(frozen=True, slots=True)
class ReqAccountUpdatesMulti:
    req_id: int
    account: str
    model_code: str
    ledger_and_nlv: bool


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    client_id: int
    account: str
    time: str
    symbol: str
    sec_type: str
    exchange: str
    side: str


@dataclass(frozen=True, slots=True)
class ReqExecutions:
    req_id: int
    filter: ExecutionFilter


@dataclass(frozen=True, slots=True)
class ReqAccountSummary:
    req_id: int
    group: str
    tags: str


@dataclass(frozen=True, slots=True)
class ReqAutoOpenOrders:
    auto_bind: bool


@dataclass(frozen=True, slots=True)
class ReqCompletedOrders:
    api_only: bool


@dataclass(frozen=True, slots=True)
class ReqPnL:
    req_id: int
    account: str
    model_code: str


@dataclass(frozen=True, slots=True)
class ReqPnLSingle:
    req_id: int
    account: str
    model_code: str
    con_id: int


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A well-framed request the simulator does not serve (``req_id`` when it carries one,
    so the refusal reaches the client's pending request instead of timing it out)."""

    msg_id: int
    req_id: int = -1


# Where the request id sits in requests the simulator does not serve (field index).
_UNSERVED_REQ_ID_FIELD = {
    10: 2,  # reqMktDepth (versioned)
    52: 2,  # reqFundamentalData
    54: 2,  # calculateImpliedVolatility
    55: 2,  # calculateOptionPrice
    74: 2,  # reqPositionsMulti
    22: 1,  # reqScannerSubscription
    79: 1,  # reqSoftDollarTiers
    83: 1,  # reqSmartComponents
    84: 1,  # reqNewsArticle
    86: 1,  # reqHistoricalNews
    88: 1,  # reqHistogramData
    96: 1,  # reqHistoricalTicks
    97: 1,  # reqTickByTickData
    100: 1,  # reqWshMetaData
    102: 1,  # reqWshEventData
    104: 1,  # reqUserInfo
}


Request = (
    StartApi
    | NoArgs
    | ReqIds
    | ReqContractDetails
    | ReqMatchingSymbols
    | ReqSecDefOptParams
    | ReqMarketDataType
    | ReqMktData
    | Cancel
    | ReqRealTimeBars
    | ReqHistoricalData
    | ReqHeadTimestamp
    | ReqAccountUpdates
    | ReqAccountUpdatesMulti
    | ReqExecutions
    | ReqAccountSummary
    | ReqAutoOpenOrders
    | ReqCompletedOrders
    | ReqPnL
    | ReqPnLSingle
    | Unsupported
)

_Parser = Callable[[FieldReader], Request]


def _start_api(r: FieldReader) -> Request:
    r.integer("version")
    client_id = r.integer("clientId")
    capabilities = r.text("optionalCapabilities") if r.remaining else ""
    return StartApi(client_id, capabilities)


def _req_ids(r: FieldReader) -> Request:
    r.integer("version")
    return ReqIds(r.integer("numIds"))


def _contract_details(r: FieldReader) -> Request:
    r.integer("version")
    req_id = r.integer("reqId")
    contract = read_contract(r)
    include_expired = r.flag("includeExpired")
    sec_id_type = r.text("secIdType")
    sec_id = r.text("secId")
    return ReqContractDetails(req_id, contract, include_expired, sec_id_type, sec_id)


def _matching_symbols(r: FieldReader) -> Request:
    return ReqMatchingSymbols(r.integer("reqId"), r.text("pattern"))


def _sec_def_opt_params(r: FieldReader) -> Request:
    return ReqSecDefOptParams(
        r.integer("reqId"),
        r.text("underlyingSymbol"),
        r.text("futFopExchange"),
        r.text("underlyingSecType"),
        r.integer("underlyingConId"),
    )


def _market_data_type(r: FieldReader) -> Request:
    r.integer("version")
    return ReqMarketDataType(r.integer("marketDataType"))


def _mkt_data(r: FieldReader) -> Request:
    r.integer("version")
    req_id = r.integer("reqId")
    contract = read_contract(r)
    _skip_combo_legs(r, contract)
    if r.flag("deltaNeutralContractPresent"):
        r.integer("deltaNeutral.conId")
        r.number("deltaNeutral.delta")
        r.number("deltaNeutral.price")
    generic = r.text("genericTickList")
    snapshot = r.flag("snapshot")
    regulatory = r.flag("regulatorySnapshot")
    return ReqMktData(req_id, contract, generic, snapshot, regulatory)


def _cancel_versioned(msg_id: int) -> _Parser:
    def parse(r: FieldReader) -> Request:
        r.integer("version")
        return Cancel(msg_id, r.integer("reqId"))

    return parse


def _cancel_plain(msg_id: int) -> _Parser:
    def parse(r: FieldReader) -> Request:
        return Cancel(msg_id, r.integer("reqId"))

    return parse


def _no_args(msg_id: int) -> _Parser:
    def parse(r: FieldReader) -> Request:
        return NoArgs(msg_id)

    return parse


def _real_time_bars(r: FieldReader) -> Request:
    r.integer("version")
    req_id = r.integer("reqId")
    contract = read_contract(r)
    bar_size = r.integer("barSize")
    what = r.text("whatToShow")
    use_rth = r.flag("useRTH")
    return ReqRealTimeBars(req_id, contract, bar_size, what, use_rth)


def _historical_data(r: FieldReader) -> Request:
    req_id = r.integer("reqId")
    contract = read_contract(r)
    include_expired = r.flag("includeExpired")
    end = r.text("endDateTime")
    bar_size = r.text("barSizeSetting")
    duration = r.text("durationStr")
    use_rth = r.flag("useRTH")
    what = r.text("whatToShow")
    format_date = r.integer("formatDate", default=1)
    _skip_combo_legs(r, contract)
    keep = r.flag("keepUpToDate")
    return ReqHistoricalData(
        req_id, contract, include_expired, end, bar_size, duration, use_rth, what,
        format_date, keep,
    )  # fmt: skip


def _head_timestamp(r: FieldReader) -> Request:
    req_id = r.integer("reqId")
    contract = read_contract(r)
    include_expired = r.flag("includeExpired")
    use_rth = r.flag("useRTH")
    what = r.text("whatToShow")
    format_date = r.integer("formatDate", default=1)
    return ReqHeadTimestamp(req_id, contract, include_expired, use_rth, what, format_date)


def _account_updates(r: FieldReader) -> Request:
    r.integer("version")
    return ReqAccountUpdates(r.flag("subscribe"), r.text("acctCode"))


def _account_updates_multi(r: FieldReader) -> Request:
    r.integer("version")
    return ReqAccountUpdatesMulti(
        r.integer("reqId"), r.text("account"), r.text("modelCode"), r.flag("ledgerAndNLV")
    )


def _executions(r: FieldReader) -> Request:
    r.integer("version")
    req_id = r.integer("reqId")
    flt = ExecutionFilter(
        client_id=r.integer("filter.clientId"),
        account=r.text("filter.acctCode"),
        time=r.text("filter.time"),
        symbol=r.text("filter.symbol"),
        sec_type=r.text("filter.secType"),
        exchange=r.text("filter.exchange"),
        side=r.text("filter.side"),
    )
    return ReqExecutions(req_id, flt)


def _account_summary(r: FieldReader) -> Request:
    r.integer("version")
    return ReqAccountSummary(r.integer("reqId"), r.text("groupName"), r.text("tags"))


def _auto_open_orders(r: FieldReader) -> Request:
    r.integer("version")
    return ReqAutoOpenOrders(r.flag("autoBind"))


def _completed_orders(r: FieldReader) -> Request:
    return ReqCompletedOrders(r.flag("apiOnly"))


def _pnl(r: FieldReader) -> Request:
    return ReqPnL(r.integer("reqId"), r.text("account"), r.text("modelCode"))


def _pnl_single(r: FieldReader) -> Request:
    return ReqPnLSingle(
        r.integer("reqId"), r.text("account"), r.text("modelCode"), r.integer("conId")
    )


PARSERS: dict[int, _Parser] = {
    Out.START_API: _start_api,
    Out.REQ_CURRENT_TIME: _no_args(Out.REQ_CURRENT_TIME),
    Out.REQ_IDS: _req_ids,
    Out.REQ_MANAGED_ACCTS: _no_args(Out.REQ_MANAGED_ACCTS),
    Out.REQ_CONTRACT_DATA: _contract_details,
    Out.REQ_MATCHING_SYMBOLS: _matching_symbols,
    Out.REQ_SEC_DEF_OPT_PARAMS: _sec_def_opt_params,
    Out.REQ_MARKET_DATA_TYPE: _market_data_type,
    Out.REQ_MKT_DATA: _mkt_data,
    Out.CANCEL_MKT_DATA: _cancel_versioned(Out.CANCEL_MKT_DATA),
    Out.REQ_REAL_TIME_BARS: _real_time_bars,
    Out.CANCEL_REAL_TIME_BARS: _cancel_versioned(Out.CANCEL_REAL_TIME_BARS),
    Out.REQ_HISTORICAL_DATA: _historical_data,
    Out.CANCEL_HISTORICAL_DATA: _cancel_versioned(Out.CANCEL_HISTORICAL_DATA),
    Out.REQ_HEAD_TIMESTAMP: _head_timestamp,
    Out.CANCEL_HEAD_TIMESTAMP: _cancel_plain(Out.CANCEL_HEAD_TIMESTAMP),
    Out.REQ_POSITIONS: _no_args(Out.REQ_POSITIONS),
    Out.CANCEL_POSITIONS: _no_args(Out.CANCEL_POSITIONS),
    Out.REQ_OPEN_ORDERS: _no_args(Out.REQ_OPEN_ORDERS),
    Out.REQ_ALL_OPEN_ORDERS: _no_args(Out.REQ_ALL_OPEN_ORDERS),
    Out.REQ_AUTO_OPEN_ORDERS: _auto_open_orders,
    Out.REQ_COMPLETED_ORDERS: _completed_orders,
    Out.REQ_ACCT_DATA: _account_updates,
    Out.REQ_ACCOUNT_UPDATES_MULTI: _account_updates_multi,
    Out.CANCEL_ACCOUNT_UPDATES_MULTI: _cancel_versioned(Out.CANCEL_ACCOUNT_UPDATES_MULTI),
    Out.REQ_EXECUTIONS: _executions,
    Out.REQ_ACCOUNT_SUMMARY: _account_summary,
    Out.CANCEL_ACCOUNT_SUMMARY: _cancel_versioned(Out.CANCEL_ACCOUNT_SUMMARY),
    Out.REQ_PNL: _pnl,
    Out.CANCEL_PNL: _cancel_plain(Out.CANCEL_PNL),
    Out.REQ_PNL_SINGLE: _pnl_single,
    Out.CANCEL_PNL_SINGLE: _cancel_plain(Out.CANCEL_PNL_SINGLE),
}

REQUEST_NAMES: dict[int, str] = {int(m): m.name for m in Out}


def request_name(msg_id: int) -> str:
    """IB's name for a request id, or ``msg<id>`` when the simulator does not know it."""
    return REQUEST_NAMES.get(msg_id, f"msg{msg_id}")


def parse_request(message: Message) -> Request:
    """Parse one client message; raises FieldError naming the bad field."""
    msg_id = message.msg_id
    parser = PARSERS.get(msg_id)
    reader = FieldReader(request_name(msg_id), message.fields)
    if parser is None:
        index = _UNSERVED_REQ_ID_FIELD.get(msg_id)
        if index is None or index >= len(message.fields):
            return Unsupported(msg_id)
        try:
            return Unsupported(msg_id, int(message.fields[index]))
        except ValueError:
            return Unsupported(msg_id)
    return parser(reader)

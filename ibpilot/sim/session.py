"""One API client's session with the simulated gateway (sans-IO).

A :class:`ClientSession` is created once the client has sent startApi.  It is fed
typed requests (``requests.py``) and answers through a ``send`` callable with
message fields (``outbound.py``), exactly as TWS answers at the negotiated server
version.  Streaming subscriptions live in the gateway's :class:`MarketFeed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ibpilot.sim import outbound as out
from ibpilot.sim.history import HistoryError, serve_head_timestamp, serve_history
from ibpilot.sim.order_wire import CancelOrder, OrderRequest, PlaceOrder, ReqGlobalCancel
from ibpilot.sim.protocol import Field
from ibpilot.sim.requests import (
    Cancel,
    NoArgs,
    Out,
    ReqAccountSummary,
    ReqAccountUpdates,
    ReqAccountUpdatesMulti,
    ReqAutoOpenOrders,
    ReqCompletedOrders,
    ReqContractDetails,
    ReqExecutions,
    ReqHeadTimestamp,
    ReqHistoricalData,
    ReqIds,
    ReqMarketDataType,
    ReqMatchingSymbols,
    ReqMktData,
    ReqPnL,
    ReqPnLSingle,
    ReqRealTimeBars,
    ReqSecDefOptParams,
    Request,
    StartApi,
    Unsupported,
    request_name,
)

if TYPE_CHECKING:
    from ibpilot.sim.core import GatewayCore

log = logging.getLogger("ibpilot.sim")

FARM_TEXTS = {
    2104: "Market data farm connection is OK:usfarm",
    2106: "HMDS data farm connection is OK:ushmds",
    2158: "Sec-def data farm connection is OK:secdefnj",
    2103: "Market data farm connection is broken:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2157: "Sec-def data farm connection is broken:secdefnj",
    2107: "HMDS data farm connection is inactive but should be available upon demand.ushmds",
    2108: "Market data farm connection is inactive but should be available upon demand.usfarm",
}

NO_SECURITY_DEFINITION = "No security definition has been found for the request"

Send = Callable[[list[Field]], None]

_ACCOUNT_CANCEL_KINDS: dict[int, str] = {
    Out.CANCEL_ACCOUNT_SUMMARY: "summary",
    Out.CANCEL_ACCOUNT_UPDATES_MULTI: "multi",
    Out.CANCEL_PNL: "pnl",
    Out.CANCEL_PNL_SINGLE: "pnl_single",
}

_CANCEL_KINDS: dict[int, str] = {
    Out.CANCEL_MKT_DATA: "mkt",
    Out.CANCEL_REAL_TIME_BARS: "rtb",
    Out.CANCEL_HISTORICAL_DATA: "hist",
}


class ClientSession:
    """Requests in, messages out, for one client id."""

    def __init__(self, core: GatewayCore, client_id: int, server_version: int, send: Send) -> None:
        self.core = core
        self.client_id = client_id
        self.server_version = server_version
        self.send = send
        self.market_data_type = 1
        self.closed = False
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            NoArgs: self._no_args,
            ReqIds: self._req_ids,
            ReqContractDetails: self._contract_details,
            ReqMatchingSymbols: self._matching_symbols,
            ReqSecDefOptParams: self._sec_def_opt_params,
            ReqMarketDataType: self._market_data_type,
            ReqMktData: self._mkt_data,
            ReqRealTimeBars: self._real_time_bars,
            ReqHistoricalData: self._historical_data,
            ReqHeadTimestamp: self._head_timestamp,
            Cancel: self._cancel,
            ReqAccountUpdates: self._account_updates,
            ReqAccountUpdatesMulti: self._account_updates_multi,
            ReqExecutions: self._executions,
            ReqAccountSummary: self._account_summary,
            ReqAutoOpenOrders: self._auto_open_orders,
            ReqCompletedOrders: self._completed_orders,
            ReqPnL: self._pnl,
            ReqPnLSingle: self._pnl_single,
            Unsupported: self._unsupported,
            StartApi: self._start_api_again,
            PlaceOrder: lambda r: self.core.desk.place(self, r),
            CancelOrder: lambda r: self.core.desk.cancel(self, r),
            ReqGlobalCancel: lambda r: self.core.desk.global_cancel(self),
        }

    # --- output helpers -------------------------------------------------------
    def error(self, req_id: int, code: int, text: str) -> None:
        """Send IB's errMsg at this session's server version."""
        self.send(out.error(req_id, code, text, self.server_version))

    def welcome(self) -> None:
        """What TWS sends right after startApi."""
        core = self.core
        self.send(out.managed_accounts(core.accounts))
        self.send(out.next_valid_id(core.next_order_id()))
        for code in core.config.farm_notices:
            self.error(-1, code, FARM_TEXTS.get(code, "farm status"))

    # --- dispatch -------------------------------------------------------------
    def handle(self, request: Request | OrderRequest) -> None:
        """Serve one request."""
        handler = self._handlers[type(request)]
        handler(request)

    def _start_api_again(self, request: StartApi) -> None:
        log.warning("client %d sent startApi twice; ignored", self.client_id)

    def _unsupported(self, request: Unsupported) -> None:
        name = request_name(request.msg_id)
        log.info("client %d: %s is not served by the simulator", self.client_id, name)
        # 322 (not 321, which ib_async treats as a warning) so a pending request ends at once
        self.error(
            request.req_id,
            322,
            f"Error processing request.-'{name}' : cause - not supported by the ibpilot simulator",
        )

    def _no_args(self, request: NoArgs) -> None:
        msg_id = request.msg_id
        if msg_id == Out.REQ_CURRENT_TIME:
            self.send(out.current_time(self.core.clock.epoch()))
        elif msg_id == Out.REQ_MANAGED_ACCTS:
            self.send(out.managed_accounts(self.core.accounts))
        elif msg_id in (Out.REQ_POSITIONS, Out.CANCEL_POSITIONS):
            self.core.desk.positions(self, subscribe=msg_id == Out.REQ_POSITIONS)
        elif msg_id in (Out.REQ_OPEN_ORDERS, Out.REQ_ALL_OPEN_ORDERS):
            self.core.desk.open_orders(self, all_clients=msg_id == Out.REQ_ALL_OPEN_ORDERS)

    def _req_ids(self, request: ReqIds) -> None:
        self.send(out.next_valid_id(self.core.next_order_id()))

    # --- reference data -------------------------------------------------------
    def _contract_details(self, request: ReqContractDetails) -> None:
        core = self.core
        today = core.clock.now_dt().date()
        matches = core.refdata.resolve(request.contract.query(request.include_expired), today)
        if not matches:
            self.error(request.req_id, 200, NO_SECURITY_DEFINITION)
            return
        for inst in matches:
            extra = out.ContractDetailsExtra(
                trading_hours=core.refdata.trading_hours(inst, today),
                liquid_hours=core.refdata.liquid_hours(inst, today),
            )
            self.send(out.contract_data(request.req_id, inst, extra, self.server_version))
        self.send(out.contract_data_end(request.req_id))

    def _matching_symbols(self, request: ReqMatchingSymbols) -> None:
        items = self.core.refdata.search(request.pattern)
        self.send(out.symbol_samples(request.req_id, items, self.server_version))

    def _sec_def_opt_params(self, request: ReqSecDefOptParams) -> None:
        today = self.core.clock.now_dt().date()
        chains = self.core.refdata.option_params(
            request.underlying_symbol,
            request.underlying_sec_type,
            request.underlying_con_id,
            request.fut_fop_exchange,
            today,
        )
        for chain in chains:
            self.send(out.sec_def_opt_params(request.req_id, chain))
        self.send(out.sec_def_opt_params_end(request.req_id))

    # --- market data ----------------------------------------------------------
    def _market_data_type(self, request: ReqMarketDataType) -> None:
        if request.market_data_type not in (1, 2, 3, 4):
            self.error(
                -1,
                321,
                "Error validating request:-'bd' : cause - Invalid market data type "
                f"{request.market_data_type}: expected 1 (live), 2 (frozen), 3 (delayed) or "
                "4 (delayed frozen)",
            )
            return
        self.market_data_type = request.market_data_type

    def _mkt_data(self, request: ReqMktData) -> None:
        self.core.feed.subscribe_market_data(self, request)

    def _real_time_bars(self, request: ReqRealTimeBars) -> None:
        self.core.feed.subscribe_real_time_bars(self, request)

    def _historical_data(self, request: ReqHistoricalData) -> None:
        core = self.core
        try:
            result = serve_history(core, request)
        except HistoryError as exc:
            self.error(request.req_id, exc.code, exc.text)
            return
        self.send(out.historical_data(request.req_id, result.start, result.end, result.bars))
        if request.keep_up_to_date:
            core.feed.subscribe_history_updates(self, request, result)

    def _head_timestamp(self, request: ReqHeadTimestamp) -> None:
        try:
            stamp = serve_head_timestamp(self.core, request)
        except HistoryError as exc:
            self.error(request.req_id, exc.code, exc.text)
            return
        self.send(out.head_timestamp(request.req_id, stamp))

    def _cancel(self, request: Cancel) -> None:
        account_kind = _ACCOUNT_CANCEL_KINDS.get(request.msg_id)
        if account_kind is not None:
            self.core.desk.cancel_subscription(self, account_kind, request.req_id)
            return
        kind = _CANCEL_KINDS.get(request.msg_id)
        if kind is None:  # head timestamps: answered at once, nothing pending
            return
        req_id = request.req_id
        if not self.core.feed.cancel(self, kind, req_id):
            if kind == "mkt":
                self.error(req_id, 300, f"Can't find EId with tickerId:{req_id}")
            elif kind == "hist":
                self.error(req_id, 366, f"No historical data query found for ticker id:{req_id}")

    # --- account and orders: the gateway's trading desk -------------------------
    def _account_updates(self, request: ReqAccountUpdates) -> None:
        self.core.desk.account_updates(self, request)

    def _account_updates_multi(self, request: ReqAccountUpdatesMulti) -> None:
        self.core.desk.account_updates_multi(self, request)

    def _executions(self, request: ReqExecutions) -> None:
        self.core.desk.executions(self, request)

    def _account_summary(self, request: ReqAccountSummary) -> None:
        self.core.desk.account_summary(self, request)

    def _auto_open_orders(self, request: ReqAutoOpenOrders) -> None:
        if self.client_id != 0:  # IB: only client 0 may auto-bind TWS orders
            self.error(
                -1,
                327,
                "Only API connections with clientId set to 0 can set the auto bind TWS "
                "orders property.",
            )

    def _completed_orders(self, request: ReqCompletedOrders) -> None:
        self.core.desk.completed_orders(self)

    def _pnl(self, request: ReqPnL) -> None:
        self.core.desk.pnl(self, request)

    def _pnl_single(self, request: ReqPnLSingle) -> None:
        self.core.desk.pnl_single(self, request)

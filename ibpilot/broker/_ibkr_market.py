"""Market data for the IB adapter: quote and 5-second-bar subscriptions, and paced history.

Subscriptions are kept by conId so they can be renewed: after a socket reconnect (ib_async
has discarded its tickers) and after IB's 1101 (IB dropped them; the stale request ids are
cancelled quietly first).  Each subscription holds two market-data lines of the
:class:`~ibpilot.pacing.LineBudget` (quotes and real-time bars, as the simulator and IB count
them), so a subscription that would exceed the account's lines is refused here, not by IB's 101.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ib_async

from ibpilot.broker import _ibkr_convert as cv
from ibpilot.broker.base import Bar, BrokerEvent, BrokerRequestError, Contract
from ibpilot.errors import ErrorName, by_name, lookup
from ibpilot.pacing import HistoricalKey, HistoricalPacer, LineBudget

Spend = Callable[[float], Awaitable[None]]
Publish = Callable[[BrokerEvent], None]
RT_BAR_SECONDS = 5
_OPEN_POLL = 0.1  # seconds between looks while IB's 50 open history requests are in flight


@dataclass(slots=True)
class _Subscription:
    contract: Contract
    ticker: ib_async.Ticker | None = None
    bars: ib_async.RealTimeBarList | None = None


def _new_bar_list() -> ib_async.BarDataList:
    factory: Any = ib_async.BarDataList  # an unannotated constructor (mypy strict)
    out: ib_async.BarDataList = factory()
    return out


def _bar_source(contract: Contract) -> str:
    """What the 5-second bars are built from: FX has no trades, an index no quotes."""
    return "MIDPOINT" if contract.sec_type == "CASH" else "TRADES"


class MarketData:
    """Quote/bar subscriptions and paced historical requests over one ib_async client."""

    def __init__(
        self,
        ib: ib_async.IB,
        spend: Spend,
        publish: Publish,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        *,
        lines: int,
        history_max_wait: float,
        request_timeout: float,
        quiet: set[int],
    ) -> None:
        self._ib, self._spend, self._publish = ib, spend, publish
        self._clock, self._monotonic, self._sleep = clock, monotonic, sleep
        self._lines = LineBudget(lines)
        self._pacer = HistoricalPacer()
        self._max_wait = history_max_wait
        self._history_timeout = max(request_timeout, 60.0)
        self._quiet = quiet
        self._subs: dict[int, _Subscription] = {}
        ib.pendingTickersEvent += self._on_tickers
        ib.barUpdateEvent += self._on_bars

    @property
    def subscribed(self) -> tuple[int, ...]:
        """conIds with a live subscription."""
        return tuple(self._subs)

    @property
    def lines_in_use(self) -> int:
        return self._lines.in_use

    # --- subscriptions ------------------------------------------------------------------------
    async def subscribe(self, contract: Contract) -> None:
        if contract.con_id in self._subs:
            return
        holders = (("mkt", contract.con_id), ("rtb", contract.con_id))
        if self._lines.limit - self._lines.in_use < len(holders):
            detail = (
                f"{contract.symbol} (conId {contract.con_id}) needs 2 market-data lines "
                f"and {self._lines.in_use} of {self._lines.limit} are in use"
            )
            raise BrokerRequestError(by_name(ErrorName.MAX_TICKERS), detail)
        for holder in holders:
            self._lines.acquire(holder)
        sub = _Subscription(contract)
        self._subs[contract.con_id] = sub
        await self._spend(2)
        self._start(sub)

    async def unsubscribe(self, contract: Contract) -> None:
        sub = self._subs.pop(contract.con_id, None)
        if sub is None:
            return
        await self._spend(2)
        self._stop(sub, quiet=False)
        self._lines.release(("mkt", contract.con_id))
        self._lines.release(("rtb", contract.con_id))

    def _start(self, sub: _Subscription) -> None:
        if not self._ib.client.isReady():
            return  # renewed after the reconnect
        c = cv.ib_contract(sub.contract)
        sub.ticker = self._ib.reqMktData(c)
        sub.bars = self._ib.reqRealTimeBars(c, RT_BAR_SECONDS, _bar_source(sub.contract), False)

    def _stop(self, sub: _Subscription, *, quiet: bool) -> None:
        client, wrapper = cv.raw_client(self._ib), cv.raw_wrapper(self._ib)
        ticker, bars, sub.ticker, sub.bars = sub.ticker, sub.bars, None, None
        connected = bool(client.isConnected())
        if ticker is not None:
            req_id = int(wrapper.endTicker(ticker, "mktData") or 0)
            if req_id and connected:
                if quiet:
                    self._quiet.add(req_id)
                client.cancelMktData(req_id)
        if bars is not None:
            wrapper.endSubscription(bars)
            if connected:
                if quiet:
                    self._quiet.add(bars.reqId)
                client.cancelRealTimeBars(bars.reqId)

    def socket_closed(self) -> None:
        """ib_async discarded its tickers and bar lists; keep the subscriptions to renew."""
        for sub in self._subs.values():
            sub.ticker = sub.bars = None

    async def renew(self, *, socket_was_closed: bool) -> None:
        """Request every subscription again (after a reconnect, or IB's 1101)."""
        for sub in list(self._subs.values()):
            if not socket_was_closed:
                self._stop(sub, quiet=True)
            await self._spend(2)
            if sub.contract.con_id in self._subs:
                self._start(sub)

    def forget_all(self) -> None:
        """Drop every subscription (disconnect by the user)."""
        self._subs.clear()
        self._lines = LineBudget(self._lines.limit)

    def _on_tickers(self, tickers: set[ib_async.Ticker]) -> None:
        now = self._clock()
        for ticker in tickers:
            contract = ticker.contract
            sub = self._subs.get(contract.conId) if contract is not None else None
            if sub is None or sub.ticker is not ticker:
                continue
            quote = cv.quote_of(ticker, now)
            if quote is not None:
                self._publish(quote)

    def _on_bars(self, bars: object, has_new_bar: bool) -> None:
        if not has_new_bar or not isinstance(bars, ib_async.RealTimeBarList) or not bars:
            return
        sub = self._subs.get(bars.contract.conId)
        if sub is not None and sub.bars is bars:
            self._publish(cv.realtime_bar(sub.contract.con_id, bars[-1]))

    # --- history ------------------------------------------------------------------------------
    async def history(
        self,
        contract: Contract,
        end: datetime | None,
        duration: str,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
    ) -> list[Bar]:
        identity = (end.isoformat() if end else "", duration, bar_size, use_rth)
        key = HistoricalKey(contract.con_id, contract.exchange, what_to_show, identity)
        await self._wait_for_pacing(key)
        self._pacer.sent(key, self._monotonic())
        try:
            await self._spend(1)
            bars = await self._request_history(
                contract, end, duration, bar_size, what_to_show, use_rth
            )
        finally:
            self._pacer.done()
        return [cv.history_bar(contract, b) for b in bars]

    async def _wait_for_pacing(self, key: HistoricalKey) -> None:
        deadline = self._monotonic() + self._max_wait
        while True:
            now = self._monotonic()
            wait, left = self._pacer.delay(key, now), deadline - now
            if wait <= 0:
                return
            if math.isinf(wait):
                if left <= 0:
                    detail = (
                        f"{self._pacer.max_open} historical requests stayed open for "
                        f"{self._max_wait:g} s"
                    )
                    raise BrokerRequestError(by_name(ErrorName.TOO_MANY_REQUESTS), detail)
                await self._sleep(min(_OPEN_POLL, left))
                continue
            if wait > left:
                detail = (
                    f"IB's historical pacing rules need a wait of {wait:.0f} s, more than "
                    f"the {self._max_wait:g} s allowed"
                )
                raise BrokerRequestError(by_name(ErrorName.PACING_VIOLATION), detail)
            await self._sleep(wait)

    async def _request_history(
        self,
        contract: Contract,
        end: datetime | None,
        duration: str,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
    ) -> ib_async.BarDataList:
        """reqHistoricalData as ib_async does it, keeping the request id to cancel on timeout."""
        client, wrapper = cv.raw_client(self._ib), cv.raw_wrapper(self._ib)
        c = cv.ib_contract(contract)
        req_id = int(client.getReqId())
        bars: ib_async.BarDataList = _new_bar_list()
        bars.reqId, bars.contract, bars.endDateTime = req_id, c, end
        bars.durationStr, bars.barSizeSetting, bars.whatToShow = duration, bar_size, what_to_show
        bars.useRTH, bars.formatDate, bars.keepUpToDate, bars.chartOptions = use_rth, 2, False, []
        future: asyncio.Future[object] = wrapper.startReq(req_id, c, container=bars)
        client.reqHistoricalData(
            req_id,
            c,
            ib_async.util.formatIBDatetime(end),
            duration,
            bar_size,
            what_to_show,
            use_rth,
            2,
            False,
            [],
        )
        what = f"historical {what_to_show} bars of {contract.symbol}"
        try:
            await asyncio.wait_for(asyncio.shield(future), self._history_timeout)
        except TimeoutError:
            self._quiet.add(req_id)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            if client.isConnected():
                client.cancelHistoricalData(req_id)
            detail = f"no answer to the request for {what} within {self._history_timeout:g} s"
            raise BrokerRequestError(by_name(ErrorName.SERVER_ERROR), detail) from None
        except ConnectionError as exc:
            raise BrokerRequestError(
                by_name(ErrorName.NOT_CONNECTED), f"{what}: the link closed ({exc})"
            ) from None
        except ib_async.RequestError as exc:
            entry = lookup(exc.code, exc.message)
            if entry.name is ErrorName.HISTORICAL_NO_DATA:
                return bars
            detail = f"{what}: IB {exc.code}: {exc.message}"
            raise BrokerRequestError(entry, detail, exc.code) from None
        return bars

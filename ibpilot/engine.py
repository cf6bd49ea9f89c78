"""The engine: market data -> strategy -> gate -> OMS -> broker, the same loop live and backtest.

:meth:`Engine.run` connects, ledgers START, CONFIG_LOADED, SPEC_HASH and CONNECTION, resolves the
instruments, reconciles (the OMS against the broker's orders and executions; positions from the
broker), starts the strategy, warms it up on history (its proposals are dropped then),
subscribes, and consumes the broker's events until :meth:`Engine.stop` or the end of the feed.
Every order, whoever proposes it (strategy, dashboard ticket, flatten), takes one path:
``_propose``: the gate decides on a state built from the broker and the OMS, the OMS ledgers
the proposal and decision (refusals too) and, if allowed, the intent before sending it.

Positions come from the broker at each reconciliation and move with fills in between.  Today's
P&L is the engine's own: realised from fills (less commissions) plus unrealised against the
day's basis (positions held at the start are valued from the last price seen); it restarts at
midnight in the first instrument's time zone.  The book is ledgered after every fill (PNL), so a
bot restarted on the same day resumes from today's realised P&L (and the basis of positions that
did not move meanwhile): a restart never resets the daily loss limit.  A daily loss above the
mandate's halts the bot (and flattens it through the gate if the mandate says so).  A halt,
whoever made it, outlives the process: a bot whose ledger's last HALT has no RESUME after it
starts halted (a NOTE says since when) until it is resumed.  Cancelling
the ``run()`` task is a crash: nothing is cancelled and no STOP is written; use
:meth:`Engine.stop`.  Fills found by a reconciliation move positions but are not replayed to
``on_fill``.  Subscriptions are the broker's to renew after a reconnect.  The P&L book is
:mod:`ibpilot.book`; the watchdogs and alerts are :mod:`ibpilot.engine_watch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from ibpilot.alerts import AlertKind, Severity
from ibpilot.book import Book, DaySpan
from ibpilot.broker.base import Bar as BrokerBar
from ibpilot.broker.base import (
    Broker,
    BrokerError,
    BrokerEvent,
    ConnectionEvent,
    ConnectionInfo,
    ConnectionState,
    Contract,
    ContractRef,
    ExecutionReport,
    OrderReport,
    Side,
)
from ibpilot.broker.base import Quote as BrokerQuote
from ibpilot.config import Environment, LoadedStrategy, OnStop, OrderType, SecType
from ibpilot.engine_status import DecisionRecord, EngineStatus
from ibpilot.engine_watch import EngineWatch, SessionsFor, Watchdogs
from ibpilot.gate import (
    Decision,
    GateState,
    LinkState,
    Proposal,
    Reason,
    ReasonCode,
    Sessions,
    Source,
    TimeInForce,
    TradingState,
    TradingTrigger,
    decide,
    next_trading_state,
)
from ibpilot.gate import Quote as GateQuote
from ibpilot.ledger import EntryKind, Ledger
from ibpilot.oms import IntentState, Oms, Reconciliation
from ibpilot.strategies import (
    Bar,
    BarBuilder,
    Context,
    ContextData,
    Fill,
    Quote,
    Strategy,
    call_hook,
    load_strategy_class,
)
from ibpilot.strategies.base import freeze

__all__ = ["Clock", "DecisionRecord", "Engine", "EngineStatus", "SessionsFor", "Watchdogs"]

log = logging.getLogger("ibpilot.engine")

Clock = Callable[[], datetime]
ZERO = Decimal(0)
_K = EntryKind
_DEFAULT_INSTRUMENT = (SecType.STK, Decimal(1))


class Engine:
    """One strategy on one broker, with one ledger. See the module docstring."""

    _day_span: DaySpan | None = None  # today's bounds, for _check_loss

    def __init__(
        self, strategy_config: LoadedStrategy, broker: Broker, ledger: Ledger, clock: Clock, *,
        environment: Environment, strategy: Strategy | None = None,
        max_strategy_errors: int | None = 3, sessions: SessionsFor | None = None,
        feed_bar_seconds: int = 5, history_limit: int = 2000, rng: random.Random | None = None,
        watchdogs: Watchdogs | None = None,
    ) -> None:  # fmt: skip
        """``strategy`` overrides the file's class (tests, notebooks); ``max_strategy_errors``
        halts after that many hook failures (None: never); ``sessions`` gives liquid hours per
        symbol for the gate.  Raises StrategyLoadError if the file's class cannot be loaded."""
        self.config, self.spec_hash = strategy_config.config, strategy_config.spec_hash
        self._raw = strategy_config.raw_bytes
        self.environment, self._clock = environment, clock
        self._broker, self._ledger = broker, ledger
        self._strategy = strategy or load_strategy_class(self.config.strategy)()
        self._oms = Oms(ledger, broker, spec_hash=self.spec_hash, clock=clock, rng=rng)
        self._max_errors, self._sessions = max_strategy_errors, sessions
        self._bars, self._book = BarBuilder(self.config.bar_size, feed_bar_seconds), Book()
        kinds = {
            i.symbol: (i.sec_type, i.multiplier or Decimal(1)) for i in self.config.instruments
        }
        self._data = ContextData(clock, freeze(self.config.params), kinds, history_limit)
        self._ctx = Context(self._data)
        self._contracts: dict[str, Contract] = {}
        self._symbols: dict[int, str] = {}
        self._zones: dict[int, ZoneInfo] = {}
        self._quotes: dict[str, GateQuote] = {}
        self._connection, self._trading = ConnectionState.DISCONNECTED, TradingState.ACTIVE
        self._halt_reason: str | None = None
        self._decisions: deque[DecisionRecord] = deque(maxlen=100)
        self._errors, self._loss_halted, self._day = 0, False, date.min
        self._started = self._running = self._stopping = False
        self._stop_reason = "operator"
        self._stop_requested, self._done = asyncio.Event(), asyncio.Event()
        self._lock = asyncio.Lock()
        self._last_reconciliation: Reconciliation | None = None
        self._reconciled = False  # since the last (re)connect; no orders before it
        self._watch = EngineWatch(
            watchdogs or Watchdogs(), broker=broker, clock=clock, append=self._append,
            contracts=self._contracts, sessions=sessions, link=self._link,
            reconcile=self._try_reconcile,
        )  # fmt: skip
        self._maintenance: asyncio.Task[None] | None = None
        self._events: AsyncIterator[BrokerEvent] | None = None

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop` or the end of the broker's events, then stop (see on_stop).

        Raises what connecting or resolving an instrument raises (BrokerConnectError,
        BrokerRequestError), and LedgerError; after START, STOP records it.  A reconciliation
        that fails (the link dropped meanwhile) is retried; no order leaves before one passes.
        """
        self._running = True
        try:
            # a gateway restart can roll nextValidId back: never reuse an id the ledger shows
            used = max((i.order_id or 0 for i in self._oms.intents()), default=0)
            self._broker.reserve_order_ids(used)
            info = await self._broker.connect()
            events = aiter(self._broker.events())  # from now on: nothing during start-up is lost
            self._events = events
            self._connection = ConnectionState.CONNECTED
            self._watch.outage.connected(self._clock())
            self._log_start(info)
            self._restore_halt()
            try:
                await self._start()
                self._maintenance = asyncio.ensure_future(self._watch.run())
                reason = await self._loop(events)
            except Exception as exc:
                await self._shutdown(f"error: {type(exc).__name__}: {exc}")
                raise
            await self._shutdown(reason)
        finally:
            self._running = False
            self._done.set()

    async def stop(self, reason: str = "operator") -> None:
        """No new orders; the on_stop policy; STOP; disconnect. Returns when run() has ended.

        Not for use from inside the run (a strategy hook): it would wait for itself.
        """
        self._stop_reason = reason
        self._stop_requested.set()
        if self._running:
            await self._done.wait()

    def _log_start(self, info: ConnectionInfo) -> None:
        start = {"environment": self.environment, "strategy": self.config.strategy,
                 "name": self.config.name, "accounts": list(info.accounts),
                 "server_version": info.server_version, "host": info.host, "port": info.port,
                 "client_id": info.client_id}  # fmt: skip
        config = {"name": self.config.name, "config": self.config.model_dump(mode="json"),
                  "file": self._raw.decode("utf-8", "replace")}  # fmt: skip
        records: list[tuple[EntryKind, Mapping[str, object]]] = [
            (_K.START, start), (_K.CONFIG_LOADED, config),
            (_K.SPEC_HASH, {"spec_hash": self.spec_hash}),
            (_K.CONNECTION, {"state": ConnectionState.CONNECTED, "accounts": list(info.accounts)}),
        ]  # fmt: skip
        self._ledger.append_many(records, ts=self._clock(), spec_hash=self.spec_hash)

    async def _start(self) -> None:
        for inst in self.config.instruments:
            ref = ContractRef(
                inst.symbol, inst.sec_type.value, inst.exchange, inst.currency,
                inst.primary_exchange or "", inst.last_trade_date_or_contract_month or "",
                inst.strike, inst.right.value if inst.right else "",
                str(inst.multiplier) if inst.multiplier else "",
            )  # fmt: skip
            self._register(inst.symbol, await self._broker.resolve(ref))
        # a link lost meanwhile is not fatal: orders wait (NOT_RECONCILED) for the retry
        await self._try_reconcile("restart" if self._oms.intents() else "start")
        self._started = True
        if not await self._call("on_start"):
            await self.halt("the strategy failed to start", source="strategy_errors")
        await self._warm_up()
        self._restore_pnl()
        for symbol, contract in self._contracts.items():
            await self._broker.subscribe(contract)
            self._watch.feeds.subscribed(symbol, self._clock())

    def _register(self, symbol: str, contract: Contract) -> None:
        self._contracts[symbol], self._symbols[contract.con_id] = contract, symbol
        self._zones[contract.con_id] = ZoneInfo(contract.time_zone)
        self._book.multipliers[symbol] = contract.multiplier
        sec_type = self._data.instruments.get(symbol, _DEFAULT_INSTRUMENT)[0]
        self._data.instruments[symbol] = (sec_type, contract.multiplier)

    async def _warm_up(self) -> None:
        self._data.warming_up = True
        bars: list[BrokerBar] = []
        for symbol, contract in self._contracts.items():
            try:
                bars += await self._broker.history(
                    contract, end=None, duration=self.config.warmup, bar_size=self.config.bar_size
                )
            except Exception as exc:  # no warm-up for this symbol; the bot still runs
                self._append(_K.NOTE, {"warmup_failed": symbol, "error": f"{exc}"[:500]})
        for b in sorted(bars, key=lambda b: b.time):
            symbol = self._symbols[b.con_id]
            self._book.mark(symbol, b.close)
            await self._strategy_bar(Bar(symbol, b.time, b.open, b.high, b.low, b.close, b.volume))
        self._data.warming_up = False
        self._book.new_day()  # held positions count from the last price, not from history

    async def _loop(self, events: AsyncIterator[BrokerEvent]) -> str:
        """Dispatch events until :meth:`stop` or the end of the feed.

        The next event is awaited in this task, not in a task of its own (that costs more
        than handling a quote); :meth:`stop` ends the wait by cancelling this task while it
        waits, never while it handles an event.  A cancellation from anyone else propagates.
        """
        task, waiting, interrupted = asyncio.current_task(), False, False

        def on_stop(_: object) -> None:
            nonlocal interrupted
            if waiting and task is not None:
                interrupted = True
                task.cancel()

        stop = asyncio.ensure_future(self._stop_requested.wait())
        stop.add_done_callback(on_stop)
        try:
            while not self._stop_requested.is_set():
                waiting = True
                try:
                    event = await anext(events, None)
                except asyncio.CancelledError:
                    if interrupted and task is not None and task.uncancel() == 0:
                        break  # stop() interrupted the wait
                    raise
                finally:
                    waiting = False
                if event is None:
                    return "end of feed"
                await self._dispatch(event)
        finally:
            stop.remove_done_callback(on_stop)
            stop.cancel()
        return self._stop_reason

    async def _dispatch(self, event: object) -> None:
        match event:
            case BrokerQuote():
                await self._on_quote(event)
            case BrokerBar():
                await self._on_bar(event)
            case OrderReport():
                self._oms.on_order_report(event)
            case ExecutionReport():
                await self._on_execution(event)
            case ConnectionEvent():
                await self._on_connection(event)
            case BrokerError():
                self._on_broker_error(event)

    async def _shutdown(self, reason: str) -> None:
        self._stopping = True
        maintenance, self._maintenance = self._maintenance, None
        if maintenance is not None:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
        if self._started:
            await self._call("on_stop")
        cancelled: list[str] = []
        if self._started and self.config.on_stop is OnStop.CANCEL_OPEN_ORDERS:
            cancelled = await self._oms.cancel_all("stop")
        if reason != "end of feed":
            await self._drain()
        payload = {"reason": reason, "on_stop": self.config.on_stop, "cancelled": cancelled,
                   "open_orders": [i.intent_id for i in self._oms.intents(open_only=True)],
                   "positions": {s: q for s, q in self._book.quantity.items() if q}}  # fmt: skip
        self._append(_K.STOP, payload)
        for contract in self._contracts.values():
            with contextlib.suppress(Exception):  # leaving anyway
                await self._broker.unsubscribe(contract)
        with contextlib.suppress(Exception):
            await self._broker.disconnect()
        self._connection = ConnectionState.DISCONNECTED

    async def _drain(self, idle: float = 0.3, limit: float = 2.0) -> None:
        """Before STOP: record the order reports, fills and errors already received or arriving
        while orders are still open (the last moment's fills, the cancels' confirmations),
        until ``idle`` s pass without one or ``limit`` s in all.  Quotes are not handled."""
        events = self._events
        if events is None or self._connection is not ConnectionState.CONNECTED:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while (left := deadline - loop.time()) > 0:
            wait = min(left, idle if self._oms.intents(open_only=True) else 0.05)
            try:
                event = await asyncio.wait_for(anext(events, None), wait)
            except TimeoutError:
                return
            if event is None:
                return
            if isinstance(event, OrderReport | ExecutionReport | BrokerError):
                await self._dispatch(event)

    # -- events -------------------------------------------------------------------------------

    async def _on_quote(self, q: BrokerQuote) -> None:
        symbol = self._symbols.get(q.con_id)
        if symbol is None:
            return
        quote = GateQuote(bid=q.bid, ask=q.ask, last=q.last, time=q.time)
        self._quotes[symbol] = quote
        self._watch.data_seen(symbol)
        self._data.quotes[symbol] = Quote(symbol, q.time, q.bid, q.ask, q.last)
        self._book.mark(symbol, quote.mid if quote.mid is not None else q.last)
        await self._check_loss()
        await self._call("on_tick", self._data.quotes[symbol])

    async def _on_bar(self, b: BrokerBar) -> None:
        symbol = self._symbols.get(b.con_id)
        if symbol is None:
            return
        self._watch.data_seen(symbol)
        self._book.mark(symbol, b.close)
        bar = Bar(symbol, b.time, b.open, b.high, b.low, b.close, b.volume)
        for done in self._bars.add(bar, self._zones[b.con_id]):
            await self._strategy_bar(done)
        await self._check_loss()

    async def _strategy_bar(self, bar: Bar) -> None:
        self._data.add_bar(bar)
        await self._call("on_bar", bar)

    async def _on_execution(self, e: ExecutionReport) -> None:
        outcome = self._oms.on_execution(e)
        symbol = self._symbols.get(e.con_id)
        if outcome is None or symbol is None:
            return
        if outcome.commission_only:  # IB reports the commission after the fill
            self._book.realized -= e.commission or ZERO
            self._record_pnl()
            return
        quantity = e.quantity - (outcome.replaced.quantity if outcome.replaced else ZERO)
        signed = quantity if e.side.value == "BUY" else -quantity
        self._book.fill(symbol, signed, e.price, e.commission or ZERO)
        self._record_pnl()
        intent = outcome.intent
        if intent is not None and intent.source == Source.STRATEGY:
            corrects = outcome.replaced.exec_id if outcome.replaced else None
            fill = Fill(intent.intent_id, symbol, intent.side, e.quantity, e.price, e.time,
                        e.commission, corrects)  # fmt: skip
            await self._call("on_fill", fill)
        await self._check_loss()

    async def _on_connection(self, e: ConnectionEvent) -> None:
        payload: dict[str, object] = {"state": e.state, "code": e.code, "name": e.name,
                                      "message": e.message, "data_lost": e.data_lost}  # fmt: skip
        before, self._connection = self._connection, e.state
        now = self._clock()
        if e.state is ConnectionState.CONNECTED:
            ended = self._watch.outage.connected(now)
            if ended is not None:
                payload["outage_s"] = (ended.until - ended.since).total_seconds()
                payload["unexplained_s"] = ended.unexplained.total_seconds()
                payload["expected_window"] = ended.expected_window
        elif e.state in (ConnectionState.DISCONNECTED, ConnectionState.IB_LOST):
            window = self._watch.outage.disconnected(now)
            payload["expected_window"] = window.name if window is not None else None
            level = logging.INFO if window is not None else logging.WARNING
            log.log(level, "link %s (%s) %s", e.state, e.name or e.code, window or "unexpected")
        self._append(_K.CONNECTION, payload)
        if e.state is not ConnectionState.CONNECTED:
            self._reconciled = False
        elif before is not ConnectionState.CONNECTED:
            self._watch.feeds.restart_all(now)  # the broker renewed the subscriptions
            await self._try_reconcile("reconnect")

    def _on_broker_error(self, error: BrokerError) -> None:
        intent = self._oms.on_broker_error(error)
        if self._watch.farm_notice(error):
            return
        if intent is not None and error.terminal:
            message = (
                f"order {intent.intent_id} ({intent.symbol}) ended: IB {error.code} {error.message}"
            )
            self._watch.alert(AlertKind.ORDER_REJECTED, message, Severity.WARNING,
                              intent.intent_id, code=error.code, name=error.name)  # fmt: skip

    # -- strategy hooks -----------------------------------------------------------------------

    async def _call(self, hook: str, *args: object) -> bool:
        """Run a hook; record a failure (halting after too many); send its proposals."""
        pending: dict[str, Decimal] = {}
        buys, sells = self._oms.pending()
        if buys or sells:
            for symbol in set(buys) | set(sells):
                pending[symbol] = buys.get(symbol, ZERO) - sells.get(symbol, ZERO)
        self._data.pending = pending
        self._data.positions = {s: q for s, q in self._book.quantity.items() if q}
        failure = call_hook(self._strategy, hook, self._ctx, *args)
        proposals = self._data.take_proposals()
        if failure is not None:
            self._errors += 1
            payload = {"hook": failure.hook, "error": failure.error, "message": failure.message,
                       "traceback": failure.traceback, "count": self._errors}  # fmt: skip
            self._append(_K.STRATEGY_ERROR, payload)
            if self._max_errors is not None and self._errors == self._max_errors:
                await self.halt(f"{self._errors} strategy errors", source="strategy_errors")
            return False
        if self._data.warming_up or self._stopping:
            if proposals:
                why = "warm-up" if self._data.warming_up else "stop"
                self._append(_K.NOTE, {"dropped_proposals": len(proposals), "during": why})
            return True
        for proposal in proposals:
            await self._propose(proposal)
        return True

    # -- the one path to the broker -----------------------------------------------------------

    async def _propose(self, proposal: Proposal) -> Decision | None:
        """Gate, ledger, OMS, broker. None when the bot is stopping (no new orders)."""
        if self._stopping:
            return None
        async with self._lock:
            decision = decide(proposal, self.config.mandate, self._gate_state(proposal.source))
            contract = self._contracts.get(proposal.symbol)
            if decision.allowed and contract is None:
                contract, decision = await self._resolve_for(proposal, decision)
            intent = await self._oms.submit(proposal, decision, contract)
        p = proposal
        record = DecisionRecord(self._clock(), p.source, p.symbol, p.side, p.quantity,
                                decision.allowed, tuple(decision.codes))  # fmt: skip
        self._decisions.append(record)
        if intent is not None and intent.state is IntentState.UNKNOWN:
            await self._try_reconcile("send failed")
        if decision.halt:
            await self._daily_loss_breached()
        return decision

    async def _resolve_for(
        self, proposal: Proposal, decision: Decision
    ) -> tuple[Contract | None, Decision]:
        try:
            contract = await self._broker.resolve(ContractRef(proposal.symbol, proposal.sec_type))
        except Exception as exc:
            reason = Reason(ReasonCode.INVALID_ORDER, f"cannot resolve {proposal.symbol}: {exc}")
            return None, replace(decision, allowed=False, reasons=(reason,))
        self._register(proposal.symbol, contract)
        return contract, decision

    def _gate_state(self, source: Source) -> GateState:
        now = self._clock()
        buys, sells = self._oms.pending(include_cancelling=source is not Source.FLATTEN)
        for order in self._oms.foreign_open_orders():
            symbol = self._symbols.get(order.con_id)
            if symbol is not None:  # orders not placed by ibpilot count too
                side = buys if order.side.value == "BUY" else sells
                side[symbol] = side.get(symbol, ZERO) + order.remaining
        quotes = self._quotes
        if self._connection is not ConnectionState.CONNECTED or self._watch.market_farm_down:
            quotes = {s: replace(q, stale=True) for s, q in quotes.items()}
        elif any(self._watch.feeds.stale(s) for s in quotes):
            quotes = {s: replace(q, stale=self._watch.feeds.stale(s)) for s, q in quotes.items()}
        sessions: dict[str, Sessions] = {}
        if self._sessions is not None:
            hours = self._sessions
            sessions = {s: found for s in self._contracts if (found := hours(s, now)) is not None}
        book = self._book  # its dicts as they are, not copies: the gate decides at once
        return GateState(
            now=now, environment=self.environment, trading_state=self._trading, link=self._link(),
            halt_reason=self._halt_reason, positions=book.quantity, pending_buys=buys,
            pending_sells=sells, quotes=quotes, marks=book.marks, multipliers=book.multipliers,
            realized_pnl=book.realized, unrealized_pnl=book.unrealized,
            recent_orders=self._oms.recent_sends(now), sessions=sessions,
        )  # fmt: skip

    def _link(self) -> LinkState:
        if self._connection is ConnectionState.IB_LOST:
            return LinkState.IB_LOST
        if self._connection is not ConnectionState.CONNECTED:
            return LinkState.DISCONNECTED
        return LinkState.UP if self._reconciled else LinkState.RECONCILING

    def _today(self, now: datetime) -> date:
        """The trading day at ``now``, in the first instrument's time zone."""
        zone = next(iter(self._zones.values()), None)
        span = self._day_span
        if span is not None and span.zone is zone and span.start <= now < span.end:
            return span.day  # runs for every quote: no time-zone conversion within the day
        today = now.astimezone(zone).date() if zone is not None else now.date()
        self._day_span = DaySpan.of(today, zone)
        return today

    async def _check_loss(self) -> None:
        today = self._today(self._clock())
        if self._day not in (date.min, today):
            self._book.new_day()
            self._loss_halted = False
            self._append(_K.NOTE, {"new_trading_day": today})
        self._day = today
        loss = -(self._book.realized + self._book.unrealized)
        if self._started and loss > self.config.mandate.max_daily_loss:
            await self._daily_loss_breached()

    def _record_pnl(self) -> None:
        """The day's book after a fill (PNL): what a restart on the same day starts from."""
        book = self._book
        held = {s: {"quantity": q, "basis": book.basis.get(s)} for s, q in book.quantity.items()
                if q}  # fmt: skip
        payload = {"day": self._today(self._clock()), "realized": book.realized, "positions": held}
        self._append(_K.PNL, payload)

    def _restore_pnl(self) -> None:
        """Today's realised P&L, and the basis of positions unchanged since, from the last PNL
        of today: a restart does not reset the daily loss limit."""
        now = self._clock()
        today = self._today(now)
        span = self._day_span
        since = span.start if span is not None and span.day == today else now - timedelta(days=2)
        last = None
        for entry in self._ledger.entries(since=since, kind=_K.PNL):
            last = entry
        if last is None or last.payload.get("day") != today.isoformat():
            return
        book, p = self._book, last.payload
        book.realized = Decimal(str(p["realized"]))
        positions = p.get("positions")
        for symbol, held in (positions if isinstance(positions, dict) else {}).items():
            if not isinstance(held, dict):
                continue
            quantity, basis = held.get("quantity"), held.get("basis")
            if basis is not None and book.quantity.get(symbol) == Decimal(str(quantity)):
                book.basis[symbol] = Decimal(str(basis))  # else: it moved while the bot was away
        self._day = today
        self._append(_K.NOTE, {"pnl_restored": today, "realized": book.realized, "from": last.seq})

    async def _daily_loss_breached(self) -> None:
        if self._loss_halted:
            return
        self._loss_halted = True
        loss = -(self._book.realized + self._book.unrealized)
        reason = (
            f"MAX_DAILY_LOSS: today's loss {loss} is above {self.config.mandate.max_daily_loss}"
        )
        await self.halt(reason, source="daily_loss")
        if self.config.mandate.flatten_on_daily_loss:
            await self.flatten("daily_loss")

    async def _reconcile(self, reason: str) -> None:
        self._reconciled = False
        self._last_reconciliation = await self._oms.reconcile(reason)
        held = {self._symbols[p.con_id]: p.quantity for p in await self._broker.positions()
                if p.con_id in self._symbols}  # fmt: skip
        changed = self._book.set_positions(held)
        payload = {"finding": "positions", "reason": reason, "positions": held, "changed": changed}
        self._append(_K.RECONCILIATION, payload)
        self._reconciled = True

    async def _try_reconcile(self, reason: str) -> None:
        try:
            async with self._lock:  # no proposal is decided halfway through
                await self._reconcile(reason)
        except Exception as exc:  # the maintenance tick tries again (orders wait meanwhile)
            self._watch.reconcile_failed_at = asyncio.get_running_loop().time()
            self._append(_K.NOTE, {"reconcile_failed": reason, "error": f"{exc}"[:500]})
            return
        self._watch.reconcile_failed_at = None
        await self._oms.retry_cancels()  # cancels the link (or a send in progress) held back
        found = self._last_reconciliation
        if found is not None and (found.unknown_orders or found.unknown_executions
                                  or found.missing or found.unconfirmed):  # fmt: skip
            counts = {k: v for k, v in found.summary().items() if k not in ("finding", "reason")}
            message = f"reconciliation ({reason}) found something unexpected: {counts}"
            self._watch.alert(AlertKind.RECONCILIATION_UNEXPECTED, message, Severity.WARNING,
                              reason, **counts)  # fmt: skip

    def _append(self, kind: EntryKind, payload: Mapping[str, object]) -> None:
        self._ledger.append(kind, payload, ts=self._clock(), spec_hash=self.spec_hash)

    # -- the kill switch and the ticket -------------------------------------------------------

    def _restore_halt(self) -> None:
        """A halt outlives the process: the last HALT with no RESUME after it holds until
        ``ibpilot resume`` (a crash or a restart must not put a halted bot back to work)."""
        last = None
        for entry in self._ledger.entries(kind=(_K.HALT, _K.RESUME)):
            last = entry
        if last is None or last.kind is not _K.HALT or self._trading is TradingState.HALTED:
            return
        reason, source = str(last.payload.get("reason", "")), last.payload.get("source")
        self._trading = next_trading_state(self._trading, TradingTrigger.HALT)
        self._halt_reason = f"{reason} (halted since {last.ts:%Y-%m-%d %H:%M:%S} UTC)"
        self._append(_K.NOTE, {"halted_at_start": reason, "source": source, "since": last.ts})
        log.warning("starting halted: %s; 'ibpilot resume' lets it trade", self._halt_reason)

    async def halt(self, reason: str = "operator", *, source: str = "operator") -> None:
        """No new orders except those that reduce a position (HALT). Idempotent."""
        if self._trading is not TradingState.HALTED:
            self._trading = next_trading_state(self._trading, TradingTrigger.HALT)
            self._halt_reason = reason
            self._append(_K.HALT, {"reason": reason, "source": source})
            message = f"trading halted: {reason}"
            self._watch.alert(AlertKind.HALT, message, Severity.CRITICAL, source)

    async def resume(self, reason: str = "operator") -> None:
        """Back to ACTIVE (RESUME). Does nothing when active."""
        if self._trading is not TradingState.ACTIVE:
            self._trading = next_trading_state(self._trading, TradingTrigger.RESUME)
            self._halt_reason = None
            self._append(_K.RESUME, {"reason": reason})

    async def cancel_all(self, reason: str = "operator") -> list[str]:
        """Cancel every open intent (KILL_SWITCH). Returns the intent ids asked for."""
        self._append(_K.KILL_SWITCH, {"action": "cancel_all", "reason": reason})
        return await self._oms.cancel_all(reason)

    async def flatten(self, reason: str = "operator") -> list[Decision]:
        """Cancel open orders, then close every position with a MKT order through the gate."""
        self._append(_K.KILL_SWITCH, {"action": "flatten", "reason": reason})
        await self._oms.cancel_all("flatten")
        decisions = []
        for symbol, held in sorted(self._book.quantity.items()):
            if held:
                sec_type, multiplier = self._data.instruments.get(symbol, _DEFAULT_INSTRUMENT)
                proposal = Proposal(
                    source=Source.FLATTEN, symbol=symbol, side=Side.SELL if held > 0 else Side.BUY,
                    quantity=abs(held), order_type=OrderType.MKT, sec_type=sec_type,
                    multiplier=multiplier,
                )  # fmt: skip
                decision = await self._propose(proposal)
                if decision is not None:
                    decisions.append(decision)
        return decisions

    async def submit_order(
        self, symbol: str, side: str, quantity: Decimal, *, order_type: str = "MKT",
        limit_price: Decimal | None = None, stop_price: Decimal | None = None,
        tif: str = "DAY", source: Source = Source.DASHBOARD,
    ) -> Decision | None:  # fmt: skip
        """An order from the dashboard ticket or the CLI, through the gate like every other.

        Raises ValueError for a malformed order (side, order type, TIF, non-positive numbers).
        """
        sec_type, multiplier = self._data.instruments.get(symbol, _DEFAULT_INSTRUMENT)
        proposal = Proposal(
            source=source, symbol=symbol, side=Side(side.upper()), quantity=quantity,
            order_type=OrderType(order_type), sec_type=sec_type, limit_price=limit_price,
            stop_price=stop_price, tif=TimeInForce(tif), multiplier=multiplier,
        )  # fmt: skip
        return await self._propose(proposal)

    async def integrity_violation(self, found_hash: str) -> None:
        """The strategy file changed on disk: halt, record MANDATE_INTEGRITY_VIOLATION, stop."""
        payload = {"expected": self.spec_hash, "found": found_hash}
        self._append(_K.MANDATE_INTEGRITY_VIOLATION, payload)
        await self.halt("MANDATE_INTEGRITY_VIOLATION", source="integrity")
        await self.stop("MANDATE_INTEGRITY_VIOLATION")

    def status(self) -> EngineStatus:
        """A snapshot: positions, P&L, open orders, last decisions, connection, trading state."""
        return EngineStatus(
            self._running, self.environment, self.config.strategy, self.spec_hash,
            self._connection, self._trading, self._halt_reason,
            {s: q for s, q in self._book.quantity.items() if q}, dict(self._book.marks),
            self._book.realized, self._book.unrealized,
            tuple(self._oms.intents(open_only=True)), tuple(self._decisions), self._errors,
            self._last_reconciliation, self._link(), self._watch.outage.down_since,
            tuple(s for s in self._contracts if self._watch.feeds.stale(s)),
            tuple(sorted(code for code, ok in self._watch.farms.items() if not ok)),
            self._watch.notifier.status() if self._watch.notifier is not None else None,
        )  # fmt: skip

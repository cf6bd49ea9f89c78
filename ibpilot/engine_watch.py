"""The engine's watchdogs and alerts: feeds, the link to IB, market-data farms.

:class:`EngineWatch` is owned by the :class:`~ibpilot.engine.Engine` and runs its maintenance
tick (:meth:`EngineWatch.run`): it retries a reconciliation that failed, alerts on an outage
that lasts outside IB's expected windows (or a weekly re-login that is needed), resubscribes a
feed that went silent while its market is open and alerts if it stays silent.  It keeps IB's
farm notices (2103-2106, 2157/2158) and raises every alert of the engine: ledgered as ALERT,
then handed to the notifier (or the log).  It reads the engine only through what it is given:
the contracts (the engine's, live), the link state, and the engine's reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ibpilot.alerts import AlertKind, Notifier, Severity
from ibpilot.broker.base import Broker, BrokerError, Contract
from ibpilot.gate import LinkState, Sessions
from ibpilot.ib_schedule import IbSchedule
from ibpilot.ledger import EntryKind
from ibpilot.watch import DataAction, DataWatch, OutageAction, OutageWatch

log = logging.getLogger("ibpilot.engine")  # the engine's log, as before the split

Clock = Callable[[], datetime]
SessionsFor = Callable[[str, datetime], Sessions | None]
Append = Callable[[EntryKind, Mapping[str, object]], None]
_K = EntryKind
_MARKET_FARM_CODES = {2103: False, 2104: True}  # market-data farm broken / OK
_FARM_CODES = {**_MARKET_FARM_CODES, 2105: False, 2106: True, 2157: False, 2158: True}


@dataclass(frozen=True, slots=True)
class Watchdogs:
    """How the engine watches its feeds and its link (see :mod:`ibpilot.watch`)."""

    notifier: Notifier | None = None  # None: alerts go to the log and the ledger only
    schedule: IbSchedule | None = None  # IB's windows; None: the North American defaults
    stale_data_after: timedelta = timedelta(seconds=120)
    resubscribe_attempts: int = 2
    connection_alert_after: timedelta = timedelta(minutes=5)
    every: float = 1.0  # wall seconds between maintenance ticks
    reconcile_retry: float = 5.0  # wall seconds between reconciliation attempts that failed


class EngineWatch:
    """The engine's watchdogs and alerts (see the module docstring)."""

    def __init__(
        self, config: Watchdogs, *, broker: Broker, clock: Clock, append: Append,
        contracts: Mapping[str, Contract], sessions: SessionsFor | None,
        link: Callable[[], LinkState], reconcile: Callable[[str], Awaitable[None]],
    ) -> None:  # fmt: skip
        """``contracts`` is the engine's own mapping (read live); ``link`` says whether the
        link is up and reconciled; ``reconcile`` is the engine's reconciliation that ledgers
        its failure (the caller sets :attr:`reconcile_failed_at`)."""
        self.config, self.notifier = config, config.notifier
        self._broker, self._clock, self._append = broker, clock, append
        self._contracts, self._sessions = contracts, sessions
        self._link, self._reconcile = link, reconcile
        self.feeds = DataWatch(config.stale_data_after, config.resubscribe_attempts)
        schedule = config.schedule or IbSchedule.for_region()
        self.outage = OutageWatch(schedule, config.connection_alert_after)
        self.farms: dict[int, bool] = {}  # farm notice code family -> ok
        self.market_farm_down = False
        self.reconcile_failed_at: float | None = None  # event-loop time of the last failure

    async def run(self) -> None:
        """Every ``watchdogs.every`` s: retry a failed reconciliation, watch feeds and outages."""
        while True:
            await asyncio.sleep(self.config.every)
            try:
                await self.tick()
            except Exception:  # a watchdog must never stop the bot
                log.exception("maintenance tick failed")

    async def tick(self) -> None:
        """One maintenance tick."""
        now = self._clock()
        for outage in self.outage.due(now):
            self._outage_alert(outage)
        link = self._link()
        if link not in (LinkState.UP, LinkState.RECONCILING):  # not connected
            return
        if link is LinkState.RECONCILING:
            loop_now = asyncio.get_running_loop().time()
            failed_at = self.reconcile_failed_at
            if failed_at is None or loop_now - failed_at >= self.config.reconcile_retry:
                await self._reconcile("retry")
            return
        hours = self._sessions or (lambda symbol, now: None)
        open_now = {s for s in self._contracts
                    if (found := hours(s, now)) is not None
                    and any(start <= now < end for start, end in found)}  # fmt: skip
        for symbol, action in self.feeds.due(now, open_now):
            silent = self.feeds.stale_after.total_seconds()
            if action is DataAction.RESUBSCRIBE:
                payload = {"symbol": symbol, "state": "silent", "silent_s": silent}
                self._append(_K.MARKET_DATA, payload | {"action": "resubscribe"})
                await self._resubscribe(symbol)
            else:
                message = f"{symbol}: no market data while its market is open, after resubscribing"
                self._append(_K.MARKET_DATA, {"symbol": symbol, "state": "stale"})
                self.alert(AlertKind.DATA_STALE, message, Severity.WARNING, symbol)

    def data_seen(self, symbol: str) -> None:
        """Data for ``symbol`` arrived; ledgers that it flows again after a silence."""
        if self.feeds.seen(symbol, self._clock()):
            self._append(_K.MARKET_DATA, {"symbol": symbol, "state": "flowing"})

    def farm_notice(self, error: BrokerError) -> bool:
        """Keep a farm notice (ledgered when a farm's state changes); False if it is none."""
        ok = _FARM_CODES.get(error.code)
        if ok is None:
            return False
        family = error.code - (0 if ok is False else 1)
        if self.farms.get(family, True) is not ok:
            self.farms[family] = ok
            payload = {"farm": error.name, "code": error.code, "ok": ok,
                       "message": error.message}  # fmt: skip
            self._append(_K.MARKET_DATA, payload)
        self.market_farm_down = self.farms.get(2103, True) is False
        return True

    async def _resubscribe(self, symbol: str) -> None:
        contract = self._contracts[symbol]
        try:
            with contextlib.suppress(Exception):
                await self._broker.unsubscribe(contract)
            await self._broker.subscribe(contract)
        except Exception as exc:
            self._append(_K.MARKET_DATA, {"symbol": symbol, "resubscribe_failed": f"{exc}"[:500]})

    def _outage_alert(self, action: OutageAction) -> None:
        since = self.outage.down_since
        if action is OutageAction.NOT_RESTORED:
            minutes = self.config.connection_alert_after.total_seconds() / 60
            message = (
                f"the connection to IB is not restored after {minutes:g} min outside IB's "
                f"expected windows (down since {since:%Y-%m-%d %H:%M} UTC)"
            )
            self.alert(AlertKind.CONNECTION_NOT_RESTORED, message, Severity.CRITICAL, "link")
        else:
            message = ("IB's weekly token invalidation has passed: the gateway needs a manual "
                       "login (2FA) before the bot can reconnect")  # fmt: skip
            self.alert(AlertKind.RELOGIN_NEEDED, message, Severity.CRITICAL, "relogin")

    def alert(
        self, kind: AlertKind, message: str, severity: Severity, key: str = "", **details: object
    ) -> None:
        """Ledger the alert and hand it to the notifier (log + webhook, never blocking)."""
        self._append(_K.ALERT, {"kind": kind, "severity": severity, "key": key,
                                "message": message, **details})  # fmt: skip
        if self.notifier is not None:
            self.notifier.alert(kind, message, severity, key, **details)
        else:
            log.warning("ALERT %s: %s", kind, message)

"""Watchdogs the engine runs beside its event loop: silent feeds and long outages.

Both are sans-IO: the engine tells them what happened (a quote arrived, the link went down)
and asks, at each maintenance tick, what is due.  Time is the engine's clock (simulated time
under ``--clock sim``), so market hours and IB's windows are judged in the market's time.

:class:`DataWatch`: a subscribed instrument that has not ticked for ``stale_after`` while its
market is open is *silent*.  The first ``resubscribe_attempts`` times the answer is
RESUBSCRIBE (the engine renews the subscription and the silence is timed afresh); after that
it is REPORT, once, and the symbol counts as stale until data arrives again.  The count of
attempts restarts only once the feed has flowed for a whole ``stale_after`` after the last
resubscription (a lone snapshot answering a renewed request does not make it healthy).  A
silent feed is never taken for a quiet market: the gate sees the symbol's quote as stale.

:class:`OutageWatch`: the link went down at ``since``.  Inside one of IB's expected windows
(:mod:`ibpilot.ib_schedule`: the daily server reset, the weekend maintenance, the Gateway's
own restart) the outage is waited out quietly; the time that counts is the time down outside
any window, and once it passes ``alert_after`` the outage is reported (once).  A re-login is
reported (once per outage) when IB's weekly token invalidation has passed since the last
successful connect: an auto-restarting Gateway then waits for a person with 2FA.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ibpilot.ib_schedule import IbSchedule, Window


class DataAction(enum.StrEnum):
    RESUBSCRIBE = "resubscribe"
    REPORT = "report"


@dataclass(slots=True)
class _Feed:
    last: datetime  # the last tick, or the last (re)subscription
    attempts: int = 0  # resubscriptions since the feed last flowed for a whole stale bound
    renewed: datetime | None = None  # the last resubscription
    reported: bool = False


class DataWatch:
    """Which subscribed symbols fell silent while their market is open; see the module doc."""

    def __init__(self, stale_after: timedelta, resubscribe_attempts: int = 2) -> None:
        if stale_after <= timedelta(0):
            raise ValueError(f"stale_after must be positive, got {stale_after}")
        if resubscribe_attempts < 0:
            raise ValueError(f"resubscribe_attempts must be >= 0, got {resubscribe_attempts}")
        self.stale_after, self.attempts = stale_after, resubscribe_attempts
        self._feeds: dict[str, _Feed] = {}

    def subscribed(self, symbol: str, now: datetime) -> None:
        """The symbol was (re)subscribed at ``now``: its silence is timed from here."""
        feed = self._feeds.get(symbol)
        if feed is None:
            self._feeds[symbol] = _Feed(now)
        else:
            feed.last = max(feed.last, now)

    def restart_all(self, now: datetime) -> None:
        """Every subscription was renewed (a reconnect): time every silence from ``now``."""
        for feed in self._feeds.values():
            feed.last, feed.attempts, feed.renewed = max(feed.last, now), 0, None

    def seen(self, symbol: str, now: datetime) -> bool:
        """Data arrived; True if the symbol had been reported stale (it has recovered)."""
        feed = self._feeds.get(symbol)
        if feed is None:
            return False
        recovered = feed.reported
        feed.last, feed.reported = max(feed.last, now), False
        return recovered

    def stale(self, symbol: str) -> bool:
        """True once the symbol has been reported (until data arrives again)."""
        feed = self._feeds.get(symbol)
        return feed is not None and feed.reported

    def silent_for(self, symbol: str, now: datetime) -> timedelta:
        feed = self._feeds.get(symbol)
        return now - feed.last if feed is not None else timedelta(0)

    def due(self, now: datetime, market_open: set[str]) -> list[tuple[str, DataAction]]:
        """What to do now for each symbol silent too long while its market is open.

        A closed market's silence does not count: its timer restarts at ``now``.
        """
        actions: list[tuple[str, DataAction]] = []
        for symbol, feed in sorted(self._feeds.items()):
            if symbol not in market_open:
                feed.last, feed.attempts, feed.renewed = max(feed.last, now), 0, None
                continue
            if feed.reported:
                continue
            if now - feed.last <= self.stale_after:
                if feed.renewed is not None and now - feed.renewed > self.stale_after:
                    feed.attempts, feed.renewed = 0, None  # it has flowed since: healthy
                continue
            if feed.attempts < self.attempts:
                feed.attempts += 1
                feed.last = feed.renewed = now
                actions.append((symbol, DataAction.RESUBSCRIBE))
            else:
                feed.reported = True
                actions.append((symbol, DataAction.REPORT))
        return actions


class OutageAction(enum.StrEnum):
    NOT_RESTORED = "not_restored"  # down longer than alert_after outside expected windows
    RELOGIN_NEEDED = "relogin_needed"  # the weekly token invalidation passed


@dataclass(slots=True)
class _Outage:
    since: datetime
    window: Window | None  # the expected window it started in, if any
    reported: set[OutageAction] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class OutageEnd:
    """A finished outage, for the ledger."""

    since: datetime
    until: datetime
    expected_window: str | None
    unexplained: timedelta


class OutageWatch:
    """Outages of the link to IB, judged against IB's schedule; see the module doc."""

    def __init__(self, schedule: IbSchedule, alert_after: timedelta) -> None:
        self.schedule, self.alert_after = schedule, alert_after
        self.last_login: datetime | None = None
        self._outage: _Outage | None = None

    @property
    def down_since(self) -> datetime | None:
        return self._outage.since if self._outage is not None else None

    def connected(self, now: datetime) -> OutageEnd | None:
        """The link is up (connect or reconnect); the outage that ended, if any."""
        self.last_login = now
        outage, self._outage = self._outage, None
        if outage is None:
            return None
        name = outage.window.name if outage.window is not None else None
        unexplained = self.schedule.unexplained_downtime(outage.since, now)
        return OutageEnd(outage.since, now, name, unexplained)

    def disconnected(self, now: datetime) -> Window | None:
        """The link went down (socket closed or IB's 1100); the expected window it is in."""
        if self._outage is None:
            self._outage = _Outage(now, self.schedule.window_at(now))
        return self._outage.window

    def due(self, now: datetime) -> list[OutageAction]:
        """What to report now (each at most once per outage)."""
        outage = self._outage
        if outage is None:
            return []
        found = []
        if self.schedule.unexplained_downtime(outage.since, now) > self.alert_after:
            found.append(OutageAction.NOT_RESTORED)
        login = self.last_login
        if login is not None and self.schedule.relogin_due(login, now):
            found.append(OutageAction.RELOGIN_NEEDED)
        fresh = [action for action in found if action not in outage.reported]
        outage.reported.update(fresh)
        return fresh

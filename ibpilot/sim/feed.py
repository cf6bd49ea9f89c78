"""Streaming market data: reqMktData, reqRealTimeBars and keepUpToDate history.

The feed is stepped by the server with the simulated time; at each step it walks
every simulated second since the last step (up to :data:`MAX_STEPS`, past which it
conflates to the latest state, as IB's own sampling does) and sends what changed.
Every value comes from the same :class:`~ibpilot.sim.market.MarketModel` that
serves history, so live and historical data tell one story.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ibpilot.sim import outbound as out
from ibpilot.sim.market import DataUnavailable
from ibpilot.sim.outbound import TickType
from ibpilot.sim.protocol import Field
from ibpilot.sim.refdata import Instrument
from ibpilot.sim.requests import ContractSpec, ReqHistoricalData, ReqMktData, ReqRealTimeBars

if TYPE_CHECKING:
    from ibpilot.sim.core import GatewayCore
    from ibpilot.sim.history import HistoryResult
    from ibpilot.sim.market import Quote
    from ibpilot.sim.session import ClientSession

log = logging.getLogger("ibpilot.sim")

MAX_STEPS = 120  # simulated seconds replayed one by one per step; beyond, conflate
MAX_RT_BARS = 720  # real-time bars sent per step at most (one simulated hour)
RT_BAR_SECONDS = 5

NO_SECURITY_DEFINITION = "No security definition has been found for the request"


class ContractNotFound(Exception):
    """No instrument (or more than one) matches a request's contract."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def resolve_one(
    core: GatewayCore, contract: ContractSpec, include_expired: bool = False
) -> Instrument:
    """The single instrument a data request names; raises ContractNotFound."""
    today = core.clock.now_dt().date()
    matches = core.refdata.resolve(contract.query(include_expired), today)
    if not matches:
        raise ContractNotFound(NO_SECURITY_DEFINITION)
    if len(matches) > 1:
        raise ContractNotFound(
            f"The contract description specified for {contract.symbol or contract.local_symbol} "
            "is ambiguous."
        )
    return matches[0]


@dataclass(slots=True)
class _Sent:
    """What a market-data subscriber has been told so far."""

    values: dict[int, float] = field(default_factory=dict)
    last_trade_time: int = -1


@dataclass(slots=True)
class _MarketDataSub:
    session: ClientSession
    req_id: int
    inst: Instrument
    second: int
    sent: _Sent = field(default_factory=_Sent)


@dataclass(slots=True)
class _RealTimeBarSub:
    session: ClientSession
    req_id: int
    inst: Instrument
    what: str
    use_rth: bool
    next_start: int  # start of the next 5-second bar to send


@dataclass(slots=True)
class _HistorySub:
    session: ClientSession
    req_id: int
    result: HistoryResult
    last_sent: out.WireBar | None = None


_Key = tuple[int, str, int]  # (id of session, kind, request id)
_Sub = _MarketDataSub | _RealTimeBarSub | _HistorySub


class MarketFeed:
    """All streaming subscriptions of one gateway."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self._subs: dict[_Key, _Sub] = {}
        self._silent_keys: set[_Key] = set()
        self._silent_con_ids: frozenset[int] = frozenset()
        self._silent_all = False

    @staticmethod
    def _key(session: ClientSession, kind: str, req_id: int) -> _Key:
        return (id(session), kind, req_id)

    # --- subscriptions ----------------------------------------------------------
    def _admit(
        self, session: ClientSession, kind: str, req_id: int, contract: ContractSpec
    ) -> tuple[_Key, Instrument] | None:
        """The key and instrument of a new subscription, or None after sending the error
        (322 for a request id in use, 200 for an unknown or ambiguous contract)."""
        key = self._key(session, kind, req_id)
        if key in self._subs:
            session.error(
                req_id, 322, "Error processing request.-'bO' : cause - Duplicate ticker id"
            )
            return None
        try:
            return key, resolve_one(self.core, contract)
        except ContractNotFound as exc:
            session.error(req_id, 200, exc.text)
            return None

    def subscribe_market_data(self, session: ClientSession, req: ReqMktData) -> None:
        """reqMktData: a snapshot, or a stream holding one market-data line."""
        core = self.core
        admitted = self._admit(session, "mkt", req.req_id, req.contract)
        if admitted is None:
            return
        key, inst = admitted
        if req.snapshot and req.generic_ticks:
            session.error(
                req.req_id,
                321,
                "Error validating request:-'bc' : cause - Snapshot market data subscription is "
                "not applicable to generic ticks",
            )
            return
        if not req.snapshot and not core.lines.acquire(key):
            session.error(req.req_id, 101, "Max number of tickers has been reached")
            return
        second = int(core.clock.now())
        quote = core.market.quote(inst, second)
        session.send(out.tick_req_params(req.req_id, inst.min_tick, "9c0001", 3))
        data_type = 2 if (session.market_data_type in (2, 4) and not quote.is_open) else 1
        session.send(out.market_data_type(req.req_id, data_type))
        sub = _MarketDataSub(session, req.req_id, inst, second)
        dead = self._silent_all or inst.con_id in self._silent_con_ids or not core.market_farm_up
        if not dead:
            self._send_quote(sub, quote)
        if req.snapshot:
            session.send(out.tick_snapshot_end(req.req_id))
            return
        self._subs[key] = sub

    def subscribe_real_time_bars(self, session: ClientSession, req: ReqRealTimeBars) -> None:
        """reqRealTimeBars: 5-second bars, which also hold a market-data line."""
        core = self.core
        admitted = self._admit(session, "rtb", req.req_id, req.contract)
        if admitted is None:
            return
        key, inst = admitted
        what = req.what_to_show.upper()
        if what not in ("TRADES", "MIDPOINT", "BID", "ASK"):
            session.error(
                req.req_id,
                321,
                f"Error validating request:-'bK' : cause - Invalid whatToShow '{req.what_to_show}' "
                "for real-time bars: expected TRADES, MIDPOINT, BID or ASK",
            )
            return
        now = int(core.clock.now())
        try:  # the model's rule (TRADES on CASH, quotes on IND), before a line is taken
            core.market.bars(inst, now, now, RT_BAR_SECONDS, what, req.use_rth)
        except DataUnavailable:
            session.error(
                req.req_id,
                162,
                f"Historical Market Data Service error message:No data of type {what} is "
                f"available for the exchange '{inst.exchange}' and the security type "
                f"'{inst.sec_type}'",
            )
            return
        if not core.lines.acquire(key):
            session.error(req.req_id, 101, "Max number of tickers has been reached")
            return
        start = now - now % RT_BAR_SECONDS
        self._subs[key] = _RealTimeBarSub(session, req.req_id, inst, what, req.use_rth, start)

    def subscribe_history_updates(
        self, session: ClientSession, req: ReqHistoricalData, result: HistoryResult
    ) -> None:
        """keepUpToDate: the current bar is re-sent as it changes, new bars as they start."""
        key = self._key(session, "hist", req.req_id)
        self._subs[key] = _HistorySub(session, req.req_id, result)

    def cancel(self, session: ClientSession, kind: str, req_id: int) -> bool:
        """Cancel one subscription; False when there was none."""
        key = self._key(session, kind, req_id)
        if self._subs.pop(key, None) is None:
            return False
        self.core.lines.release(key)
        return True

    def drop_client(self, session: ClientSession) -> None:
        """A client went away: its subscriptions end and its lines come back."""
        ident = id(session)
        for key in [k for k in self._subs if k[0] == ident]:
            del self._subs[key]
            self.core.lines.release(key)

    def drop_all_market_data(self) -> None:
        """Every market-data subscription is lost (IB 1101: data lost)."""
        for key in list(self._subs):
            del self._subs[key]
            self.core.lines.release(key)

    @property
    def subscription_count(self) -> int:
        """Active streaming subscriptions of all kinds."""
        return len(self._subs)

    def silence(self, con_ids: frozenset[int] | None, existing_only: bool) -> int:
        """Live data stops without an error, the subscriptions kept (a dead feed, as IB's
        can be after a reset): for ``con_ids`` (None: every instrument); with
        ``existing_only`` only the subscriptions open now (a new request gets data again),
        else every one, new ones included.  Returns how many subscriptions went silent."""
        streaming = [(k, s) for k, s in self._subs.items() if not isinstance(s, _HistorySub)]
        dead = [k for k, s in streaming if con_ids is None or s.inst.con_id in con_ids]
        if existing_only:
            self._silent_keys.update(dead)
        elif con_ids is None:
            self._silent_all = True
        else:
            self._silent_con_ids |= con_ids
        return len(dead)

    def unsilence(self) -> None:
        """Every feed flows again (from now: what was missed is not sent)."""
        self._silent_keys.clear()
        self._silent_con_ids, self._silent_all = frozenset(), False

    def _silent(self, key: _Key, sub: _Sub) -> bool:
        if isinstance(sub, _HistorySub):
            return False
        return (
            key in self._silent_keys
            or self._silent_all
            or sub.inst.con_id in self._silent_con_ids
            or not self.core.market_farm_up
        )

    # --- stepping -------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Send everything that happened up to simulated time ``now``."""
        second = int(now)
        cache: dict[tuple[int, int], Quote] = {}
        for key, sub in list(self._subs.items()):
            if sub.session.closed:
                continue
            if self._silent(key, sub):  # nothing is sent, nothing is caught up later
                if isinstance(sub, _MarketDataSub):
                    sub.second = max(sub.second, second)
                elif isinstance(sub, _RealTimeBarSub):
                    sub.next_start = max(sub.next_start, second - second % RT_BAR_SECONDS)
                continue
            try:
                if isinstance(sub, _MarketDataSub):
                    self._advance_market_data(sub, second, cache)
                elif isinstance(sub, _RealTimeBarSub):
                    self._advance_real_time_bars(sub, second)
                else:
                    self._advance_history(sub, now)
            except Exception:  # one broken subscription must not silence the others
                log.exception("subscription %s failed; ending it", key)
                self._subs.pop(key, None)
                self.core.lines.release(key)
                sub.session.error(sub.req_id, 322, "Error processing request: simulator fault")

    def _quote(self, inst: Instrument, second: int, cache: dict[tuple[int, int], Quote]) -> Quote:
        key = (inst.con_id, second)
        quote = cache.get(key)
        if quote is None:
            quote = self.core.market.quote(inst, second)
            cache[key] = quote
        return quote

    def _advance_market_data(
        self, sub: _MarketDataSub, second: int, cache: dict[tuple[int, int], Quote]
    ) -> None:
        if second <= sub.second:
            return
        first = max(sub.second + 1, second - MAX_STEPS + 1)
        for s in range(first, second + 1):
            self._send_quote(sub, self._quote(sub.inst, s, cache))
        sub.second = second

    def _send_quote(self, sub: _MarketDataSub, q: Quote) -> None:
        """Send the ticks of ``q`` that differ from what the subscriber was told."""
        send, req_id, sent = sub.session.send, sub.req_id, sub.sent
        sec_type = sub.inst.sec_type
        msgs: list[list[Field]] = []
        if sec_type != "IND":
            _price(msgs, sent, req_id, TickType.BID, q.bid, q.bid_size, TickType.BID_SIZE)
            _price(msgs, sent, req_id, TickType.ASK, q.ask, q.ask_size, TickType.ASK_SIZE)
        if sec_type != "CASH" and q.last_time > 0 and q.last_time != sent.last_trade_time:
            sent.last_trade_time = q.last_time
            size = None if sec_type == "IND" else q.last_size
            msgs.append(out.tick_price(req_id, TickType.LAST, q.last, size))
            sent.values[TickType.LAST] = q.last
            msgs.append(out.tick_string(req_id, TickType.LAST_TIMESTAMP, str(q.last_time)))
        if sec_type not in ("CASH", "IND"):
            _size(msgs, sent, req_id, TickType.VOLUME, q.volume)
        for tick, value in (
            (TickType.HIGH, q.high),
            (TickType.LOW, q.low),
            (TickType.CLOSE, q.close),
            (TickType.OPEN, q.open),
        ):
            if not math.isnan(value) and sent.values.get(tick) != value:
                sent.values[tick] = value
                msgs.append(out.tick_price(req_id, tick, value, None))
        for m in msgs:
            send(m)

    def _advance_real_time_bars(self, sub: _RealTimeBarSub, second: int) -> None:
        complete_until = second - second % RT_BAR_SECONDS  # bars ending at or before now
        if complete_until <= sub.next_start:
            return
        start = max(sub.next_start, complete_until - MAX_RT_BARS * RT_BAR_SECONDS)
        bars = self.core.market.bars(
            sub.inst, start, complete_until, RT_BAR_SECONDS, sub.what, sub.use_rth
        )
        for bar in bars:
            sub.session.send(
                out.real_time_bar(
                    sub.req_id,
                    bar.time,
                    bar.open,
                    bar.high,
                    bar.low,
                    bar.close,
                    bar.volume,
                    bar.wap,
                    bar.count,
                )
            )
        sub.next_start = complete_until

    def _advance_history(self, sub: _HistorySub, now: float) -> None:
        from ibpilot.sim.history import current_bar  # noqa: PLC0415 (history imports feed)

        bar = current_bar(self.core, sub.result, now)
        if bar is None or bar == sub.last_sent:
            return
        sub.last_sent = bar
        sub.session.send(out.historical_data_update(sub.req_id, bar))


def _price(
    msgs: list[list[Field]],
    sent: _Sent,
    req_id: int,
    tick: TickType,
    price: float,
    size: float,
    size_tick: TickType,
) -> None:
    if sent.values.get(tick) != price:
        sent.values[tick] = price
        sent.values[size_tick] = size
        msgs.append(out.tick_price(req_id, tick, price, size))
    elif sent.values.get(size_tick) != size:
        sent.values[size_tick] = size
        msgs.append(out.tick_size(req_id, size_tick, size))


def _size(msgs: list[list[Field]], sent: _Sent, req_id: int, tick: TickType, size: float) -> None:
    if sent.values.get(tick) != size:
        sent.values[tick] = size
        msgs.append(out.tick_size(req_id, tick, size))

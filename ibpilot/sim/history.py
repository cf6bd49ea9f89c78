"""Serving reqHistoricalData and reqHeadTimestamp from the price model.

The bars are computed by the same :class:`~ibpilot.sim.market.MarketModel` that
streams live ticks, over the window IB would use (``histparams``).  Requests are
validated and paced as IB does; refusals come back as :class:`HistoryError` with
IB's code and text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ibpilot.sim import histparams as hp
from ibpilot.sim.feed import ContractNotFound, resolve_one
from ibpilot.sim.limits import HistoricalKey
from ibpilot.sim.market import DailyBar, DataUnavailable, group_daily
from ibpilot.sim.outbound import WireBar
from ibpilot.sim.refdata import Instrument
from ibpilot.sim.requests import ReqHeadTimestamp, ReqHistoricalData

if TYPE_CHECKING:
    from ibpilot.sim.core import GatewayCore

HMDS = "Historical Market Data Service error message:"
PACING_VIOLATION = HMDS + "Historical data request pacing violation"


class HistoryError(Exception):
    """A historical request IB would refuse, with IB's error code and text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """What a historical request returned, and what keepUpToDate needs to go on."""

    inst: Instrument
    bar: hp.BarSize
    what: str
    use_rth: bool
    format_date: int
    start: str
    end: str
    bars: list[WireBar]


def serve_history(core: GatewayCore, req: ReqHistoricalData) -> HistoryResult:
    """The bars of one reqHistoricalData; raises HistoryError."""
    try:
        inst = resolve_one(core, req.contract, req.include_expired)
    except ContractNotFound as exc:
        raise HistoryError(200, exc.text) from None
    what = req.what_to_show.strip().upper()
    try:
        bar = hp.parse_bar_size(req.bar_size)
        duration = hp.parse_duration(req.duration)
        hp.validate(
            inst, bar, duration, what,
            end_text=req.end_date_time, format_date=req.format_date,
            keep_up_to_date=req.keep_up_to_date,
        )  # fmt: skip
        now = core.clock.epoch()
        end = min(hp.parse_end(req.end_date_time, inst.time_zone_id, now), now + 1)
    except hp.HistoryRequestError as exc:
        raise HistoryError(exc.code, exc.message) from None
    key = HistoricalKey(
        contract=inst.con_id,
        exchange=req.contract.exchange or inst.exchange,
        what_to_show=what,
        identity=(req.end_date_time, req.duration, req.bar_size, req.use_rth, req.format_date),
    )
    if core.pacer.violates(key, bar.nominal_seconds, core.real_clock()):
        raise HistoryError(162, PACING_VIOLATION)
    window = hp.window(inst, core.refdata, end, duration, req.use_rth)
    bars = _bars(core, inst, bar, what, req.use_rth, req.format_date, window)
    if not bars:
        raise HistoryError(162, _no_data(inst, what))
    tz = inst.time_zone_id
    return HistoryResult(
        inst, bar, what, req.use_rth, req.format_date,
        hp.format_time(window.start, tz), hp.format_time(window.end, tz), bars,
    )  # fmt: skip


def _no_data(inst: Instrument, what: str) -> str:
    name = inst.local_symbol or inst.symbol
    return HMDS + f"HMDS query returned no data: {name}@{inst.exchange} {what.title()}"


def _bars(
    core: GatewayCore,
    inst: Instrument,
    bar: hp.BarSize,
    what: str,
    use_rth: bool,
    format_date: int,
    window: hp.Window,
) -> list[WireBar]:
    market = core.market
    tz = inst.time_zone_id
    try:
        if bar.intraday:
            rows = market.bars(inst, window.start, window.end, bar.seconds, what, use_rth)
            return [
                WireBar(
                    hp.format_bar_time(b.time, tz, format_date),
                    b.open,
                    b.high,
                    b.low,
                    b.close,
                    b.volume,
                    b.wap,
                    b.count,
                )
                for b in rows
            ]
        if window.first_day is None or window.last_day is None:
            return []
        daily = market.daily_bars(
            inst, window.first_day, window.last_day, what, use_rth, end=window.end
        )
    except DataUnavailable as exc:
        raise HistoryError(162, HMDS + str(exc)) from None
    if bar.unit is hp.BarUnit.WEEK:
        daily = group_daily(daily, "week")
    elif bar.unit is hp.BarUnit.MONTH:
        daily = group_daily(daily, "month")
    return [_daily_wire(d, tz, format_date) for d in daily]


def _daily_wire(d: DailyBar, tz: str, format_date: int) -> WireBar:
    return WireBar(
        hp.format_bar_time(d.day, tz, format_date), d.open, d.high, d.low, d.close,
        d.volume, d.wap, d.count,
    )  # fmt: skip


def current_bar(core: GatewayCore, result: HistoryResult, now: float) -> WireBar | None:
    """keepUpToDate: the bar in progress at ``now`` (None while the market is shut)."""
    inst, bar = result.inst, result.bar
    second = int(now)
    if bar.intraday:
        rows = core.market.bars(
            inst, second - 2 * bar.seconds, second + 1, bar.seconds, result.what, result.use_rth
        )
        if not rows:
            return None
        b = rows[-1]
        return WireBar(
            hp.format_bar_time(b.time, inst.time_zone_id, result.format_date),
            b.open, b.high, b.low, b.close, b.volume, b.wap, b.count,
        )  # fmt: skip
    today = core.clock.now_dt().date()
    daily = core.market.daily_bars(
        inst, today.fromordinal(today.toordinal() - 3), today, result.what, result.use_rth,
        end=second + 1,
    )  # fmt: skip
    if not daily:
        return None
    return _daily_wire(daily[-1], inst.time_zone_id, result.format_date)


def serve_head_timestamp(core: GatewayCore, req: ReqHeadTimestamp) -> str:
    """The earliest data point of a contract, formatted as requested."""
    try:
        inst = resolve_one(core, req.contract, req.include_expired)
    except ContractNotFound as exc:
        raise HistoryError(200, exc.text) from None
    what = req.what_to_show.strip().upper()
    try:
        stamp = core.market.head_timestamp(inst, what, req.use_rth)
    except DataUnavailable as exc:
        raise HistoryError(162, HMDS + str(exc)) from None
    except ValueError:
        raise HistoryError(
            321, f"Error validating request.-'bK' : cause - whatToShow '{what}' is invalid"
        ) from None
    return hp.format_bar_time(stamp, inst.time_zone_id, 2 if req.format_date == 2 else 1)

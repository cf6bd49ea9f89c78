"""Generated futures and options: listing schedules, strike grids and the conId codec.

Futures and options are not listed in the data file one by one: the file describes a
*root* (ES, CL) or a *chain* (SPY options) and the contracts alive on a date are generated.
Their conIds are pure functions of what the contract is, so any of them can be decoded back
into the contract without having been generated in this process.

conId scheme (all below 2**31, so they fit IB's signed 32-bit conId):

* listed instruments (the data file): ``1 .. 1_099_999_999``
* futures: ``1_100_000_000 + code * 10_000 + (year - 2000) * 12 + (month - 1)``, where
  ``code`` (0..999) is the root's number in the data file and year/month the contract month.
* options: ``1_200_000_000 + ((code * 7000 + day) * 4000 + strike_index) * 2 + put``, where
  ``code`` (0..15) is the chain's number in the data file, ``day`` the expiry counted in
  weekdays from Monday 2020-01-06 (0..6999, i.e. until October 2046), ``strike_index`` the
  strike divided by the chain's ``strike_unit`` (1..3999) and ``put`` 0 for calls, 1 for puts.
  The largest option conId is 2_095_999_999.

A root's or chain's ``code`` is part of every conId it generates: never renumber one.

Price drivers (``ModelParams.driver_con_id``): ES and NQ follow SPX and NDX with a carry;
CL follows a synthetic, non-tradable WTI spot of the data file (``synthetic: true``, found
by conId only), so the whole curve is one path plus carry rather than twelve unrelated
walks, and a contract rolling into the front does not jump.  Options follow their
underlying, priced with the chain's ``iv``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from datetime import date, timedelta

from ibpilot.sim import refdata  # circular on purpose: attributes are used at call time only
from ibpilot.sim._calendar import Calendar, add_months, fridays_from, third_friday

LISTED_CON_ID_LIMIT = 1_100_000_000
FUT_BASE = 1_100_000_000
FUT_CODES = 1000
FUT_ROOT_SPAN = 10_000
FUT_EPOCH_YEAR = 2000
OPT_BASE = 1_200_000_000
OPT_CODES = 16
OPT_DAYS = 7000
OPT_STRIKES = 4000
OPT_EPOCH = date(2020, 1, 6)  # a Monday
OPT_END = OPT_BASE + OPT_CODES * OPT_DAYS * OPT_STRIKES * 2

MONTH_CODES = "FGHJKMNQUVXZ"
LAST_TRADE_RULES = ("third_friday", "energy")


@dataclass(frozen=True, slots=True)
class FutureRoot:
    """A futures root (ES, CL): the static contract fields and its listing schedule."""

    code: int
    proto: refdata.Instrument  # every field but con_id, local_symbol, dates
    months: str  # IB month codes of the cycle, e.g. "HMUZ"
    listed: int  # how many contracts are alive at any time
    last_trade: str  # one of LAST_TRADE_RULES


@dataclass(frozen=True, slots=True)
class OptionRoot:
    """An option chain on one underlying: static fields, expiry schedule, strike grid."""

    code: int
    proto: refdata.Instrument  # every field but con_id, local_symbol, dates, strike, right
    exchanges: tuple[str, ...]
    strike_unit: float
    strikes: tuple[float, ...]  # the grid around the underlying's reference price
    weeklies: int
    monthlies: int
    leaps: int
    daily_weekdays: frozenset[int]
    daily_weeks: int


# --- futures -------------------------------------------------------------------------------


def future_con_id(code: int, year: int, month: int) -> int:
    """The conId of root ``code``'s contract for ``year``/``month``."""
    return FUT_BASE + code * FUT_ROOT_SPAN + (year - FUT_EPOCH_YEAR) * 12 + month - 1


def decode_future(con_id: int) -> tuple[int, int, int] | None:
    """(code, year, month) of a futures conId, or None outside the futures range."""
    rel = con_id - FUT_BASE
    if not 0 <= rel < FUT_CODES * FUT_ROOT_SPAN:
        return None
    code, months = divmod(rel, FUT_ROOT_SPAN)
    year, month0 = divmod(months, 12)
    return code, FUT_EPOCH_YEAR + year, month0 + 1


def last_trade_date(root: FutureRoot, cal: Calendar, year: int, month: int) -> date:
    """Last trading day of a futures contract.

    ``third_friday``: the third Friday of the contract month (the trading day before it when
    it is a holiday), as CME equity-index futures.  ``energy``: NYMEX crude oil, three
    trading days before the 25th of the month before the contract month, or before the last
    trading day preceding the 25th when the 25th does not trade.
    """
    if root.last_trade == "third_friday":
        return cal.previous_trading_day(third_friday(year, month))
    prev_year, prev_month = add_months(year, month, -1)
    the_25th = date(prev_year, prev_month, 25)
    anchor = the_25th if cal.is_trading_day(the_25th) else cal.previous_trading_day(the_25th)
    return cal.add_trading_days(anchor, -3)


def future_contract(root: FutureRoot, cal: Calendar, year: int, month: int) -> refdata.Instrument:
    """The contract of ``root`` for ``year``/``month`` (ESH6, CLZ6 as IB names them)."""
    last = last_trade_date(root, cal, year, month)
    return replace(
        root.proto,
        con_id=future_con_id(root.code, year, month),
        local_symbol=f"{root.proto.symbol}{MONTH_CODES[month - 1]}{year % 10}",
        last_trade_date=f"{last:%Y%m%d}",
        contract_month=f"{year:04d}{month:02d}",
    )


def future_contracts(
    root: FutureRoot, cal: Calendar, on: date, include_expired: bool
) -> list[refdata.Instrument]:
    """The contracts alive on ``on`` (the next ``root.listed``), plus those expired in the
    two years before ``on`` when ``include_expired``."""
    year, month = max(
        (FUT_EPOCH_YEAR, 1), add_months(on.year, on.month, -25 if include_expired else -1)
    )
    oldest = on - timedelta(days=730)
    out: list[refdata.Instrument] = []
    alive = 0
    while alive < root.listed:
        if MONTH_CODES[month - 1] in root.months:
            last = last_trade_date(root, cal, year, month)
            if last >= on:
                alive += 1
                out.append(future_contract(root, cal, year, month))
            elif include_expired and last >= oldest:
                out.append(future_contract(root, cal, year, month))
        year, month = add_months(year, month, 1)
    return out


# --- options -------------------------------------------------------------------------------


def option_con_id(code: int, expiry: date, strike_index: int, right: str) -> int:
    """The conId of an option of chain ``code``; ``right`` is "C" or "P".

    Raises ValueError for an expiry on a weekend or outside 2020-01-06 .. 2046-10 or a
    strike index outside 0..3999 (the data loader keeps chains inside these bounds).
    """
    weeks, weekday = divmod((expiry - OPT_EPOCH).days, 7)
    day = weeks * 5 + weekday
    if weekday > 4 or not 0 <= day < OPT_DAYS or not 0 <= strike_index < OPT_STRIKES:
        raise ValueError(f"option {expiry} strike #{strike_index} is outside the conId scheme")
    return OPT_BASE + ((code * OPT_DAYS + day) * OPT_STRIKES + strike_index) * 2 + (right == "P")


def decode_option(con_id: int) -> tuple[int, date, int, str] | None:
    """(code, expiry, strike_index, right) of an option conId, or None outside the range."""
    if not OPT_BASE <= con_id < OPT_END:
        return None
    rest, put = divmod(con_id - OPT_BASE, 2)
    rest, strike_index = divmod(rest, OPT_STRIKES)
    code, day = divmod(rest, OPT_DAYS)
    weeks, weekday = divmod(day, 5)
    return code, OPT_EPOCH + timedelta(days=weeks * 7 + weekday), strike_index, "PC"[not put]


def strike_grid(
    price: float, unit: float, bands: tuple[tuple[float, float], ...]
) -> tuple[float, ...]:
    """Strikes around ``price``: for each (fraction, step) band, every multiple of ``step``
    within ``price * (1 ± fraction)``; returned as multiples of ``unit``, sorted."""
    indexes: set[int] = set()
    for fraction, step in bands:
        step_units = round(step / unit)
        low = math.ceil(price * (1 - fraction) / step - 1e-9)
        high = math.floor(price * (1 + fraction) / step + 1e-9)
        indexes.update(k * step_units for k in range(max(low, 1), high + 1))
    return tuple(i * unit for i in sorted(indexes))


def option_expirations(root: OptionRoot, cal: Calendar, on: date) -> list[date]:
    """The expiries listed on ``on``: the next weekly Fridays, the monthly third Fridays,
    the next December LEAPs after the last monthly, and the dailies; a Friday that is a
    holiday expires on the trading day before it."""
    out: set[date] = set()
    for friday in fridays_from(on):
        if len(out) >= root.weeklies:
            break
        expiry = cal.previous_trading_day(friday)
        if expiry >= on:
            out.add(expiry)
    monthlies = _monthlies(root, cal, on)
    out.update(monthlies)
    out.update(_leaps(root, cal, monthlies[-1] if monthlies else on))
    for offset in range(root.daily_weeks * 7):
        day = on + timedelta(days=offset)
        if day.weekday() in root.daily_weekdays and cal.is_trading_day(day):
            out.add(day)
    return sorted(d for d in out if in_option_horizon(d))


def in_option_horizon(expiry: date) -> bool:
    """True if an expiry falls inside the option conId scheme (2020-01-06 .. October 2046);
    chains simply end there."""
    return 0 <= (expiry - OPT_EPOCH).days // 7 * 5 + expiry.weekday() < OPT_DAYS


def _monthlies(root: OptionRoot, cal: Calendar, on: date) -> list[date]:
    year, month = on.year, on.month
    out: list[date] = []
    while len(out) < root.monthlies:
        expiry = cal.previous_trading_day(third_friday(year, month))
        if expiry >= on:
            out.append(expiry)
        year, month = add_months(year, month, 1)
    return out


def _leaps(root: OptionRoot, cal: Calendar, after: date) -> list[date]:
    out: list[date] = []
    year = after.year
    while len(out) < root.leaps:
        expiry = cal.previous_trading_day(third_friday(year, 12))
        if expiry > after:
            out.append(expiry)
        year += 1
    return out


def month_expirations(root: OptionRoot, cal: Calendar, year: int, month: int) -> list[date]:
    """Every expiry the chain's rules can produce in a month (for expired-contract queries)."""
    out: set[date] = set()
    for friday in fridays_from(date(year, month, 1)):
        if friday.month != month:
            break
        out.add(cal.previous_trading_day(friday))
    if root.daily_weekdays:
        day = date(year, month, 1)
        while day.month == month:
            if day.weekday() in root.daily_weekdays and cal.is_trading_day(day):
                out.add(day)
            day += timedelta(days=1)
    return sorted(d for d in out if d.month == month and in_option_horizon(d))


def occ_symbol(trading_class: str, expiry: date, right: str, strike: float) -> str:
    """OCC option symbol as IB's localSymbol: ``SPY   261218C00600000``."""
    return f"{trading_class:<6}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"


def parse_occ(local_symbol: str) -> tuple[str, date, str, float] | None:
    """(trading class, expiry, right, strike) of an OCC symbol, or None if it is not one."""
    if len(local_symbol) != 21 or local_symbol[12] not in "CP":
        return None
    digits = local_symbol[6:12] + local_symbol[13:]
    if not digits.isdigit():
        return None
    year, month, day = (int(local_symbol[i : i + 2]) for i in (6, 8, 10))
    try:
        expiry = date(2000 + year, month, day)
    except ValueError:
        return None
    return local_symbol[:6].strip(), expiry, local_symbol[12], int(local_symbol[13:]) / 1000


def build_options(
    root: OptionRoot,
    expiries: list[date],
    strikes: list[float],
    rights: str,
    exchange: str,
) -> list[refdata.Instrument]:
    """The option contracts of ``root`` for every expiry x strike x right, in that order.

    ``exchange`` is the exchange reported on each contract.  The model's ``price`` is a
    nominal value (intrinsic at the underlying's reference price, at least one tick): the
    market model prices options from the underlying's path and ``model.iv``.  Built from
    positional arguments because a full chain has thousands of contracts.
    """
    proto = root.proto
    names = [f.name for f in fields(refdata.Instrument)]
    base = [getattr(proto, name) for name in names]
    base[names.index("exchange")] = exchange
    i_con, i_local, i_last, i_month, i_strike, i_right, i_model = (
        names.index(n) for n in _OPTION_VARYING
    )
    models = {
        (strike, right): _option_model(proto, strike, right)
        for strike in strikes
        for right in rights
    }
    code, unit, trading_class = root.code, root.strike_unit, proto.trading_class
    out: list[refdata.Instrument] = []
    for expiry in expiries:
        base[i_last] = ymd = f"{expiry:%Y%m%d}"
        base[i_month] = ymd[:6]
        occ_date = f"{trading_class:<6}{expiry:%y%m%d}"
        first_con_id = option_con_id(code, expiry, 0, "C")
        for strike in strikes:
            base[i_strike] = strike
            strike_con_id = first_con_id + 2 * round(strike / unit)
            occ_strike = f"{round(strike * 1000):08d}"
            for right in rights:
                values = base.copy()
                values[i_con] = strike_con_id + (right == "P")
                values[i_local] = f"{occ_date}{right}{occ_strike}"
                values[i_right] = right
                values[i_model] = models[strike, right]
                out.append(refdata.Instrument(*values))
    return out


def _option_model(proto: refdata.Instrument, strike: float, right: str) -> refdata.ModelParams:
    model = proto.model
    intrinsic = model.price - strike if right == "C" else strike - model.price
    return replace(model, price=round(max(intrinsic, proto.min_tick), 2))


_OPTION_VARYING = (
    "con_id",
    "local_symbol",
    "last_trade_date",
    "contract_month",
    "strike",
    "right",
    "model",
)

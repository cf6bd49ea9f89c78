"""Reference data for the simulated gateway: contracts, option chains, trading calendars.

The instruments come from a JSON data file shipped with the package
(``ibpilot/sim/data/instruments.json``); users extend it with files of the same
shape passed to :meth:`RefData.load` (the file format is described in
``ibpilot/sim/_refdata_load.py``).  Everything here is plain data and pure
functions of a date: no clocks, no sockets.

Futures and options are generated for the date asked about, with stable conIds that
encode the contract (scheme in ``ibpilot/sim/_derivatives.py``): any of them can be
looked up by conId in any process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from ibpilot.sim import _derivatives, _refdata_load
from ibpilot.sim._calendar import Calendar, hours_string


@dataclass(frozen=True, slots=True)
class ModelParams:
    """How the price model moves an instrument (see ``ibpilot.sim.market``)."""

    price: float  # root drivers: the price on 2026-01-01 (market.MODEL_ANCHOR); else nominal
    vol: float = 0.2  # annualised volatility of the driver path
    drift: float = 0.0  # annualised drift
    spread_ticks: int = 1  # quoted spread, in min ticks
    daily_volume: int = 1_000_000  # units traded in a regular session
    driver_con_id: int = 0  # FUT: the spot it follows; OPT: the underlying; 0 = own path
    carry: float = 0.0  # FUT: annual carry over the driver
    iv: float = 0.0  # OPT: implied volatility used for pricing


@dataclass(frozen=True, slots=True)
class Instrument:
    """One contract, with the fields IB's contract details carry."""

    con_id: int
    symbol: str
    sec_type: str  # STK, IND, FUT, CASH, OPT
    exchange: str  # routing exchange as reported: SMART, CBOE, CME, NYMEX, IDEALPRO
    currency: str
    primary_exchange: str = ""
    local_symbol: str = ""
    trading_class: str = ""
    market_name: str = ""
    min_tick: float = 0.01
    multiplier: str = ""
    long_name: str = ""
    industry: str = ""
    category: str = ""
    subcategory: str = ""
    time_zone_id: str = "US/Eastern"
    calendar: str = "us_equity"  # name of a session template in the data file
    last_trade_date: str = ""  # YYYYMMDD for FUT/OPT
    contract_month: str = ""  # YYYYMM for FUT/OPT
    strike: float = 0.0
    right: str = ""  # "C" / "P" for OPT
    underlying_con_id: int = 0
    under_symbol: str = ""
    under_sec_type: str = ""
    order_types: str = ""
    valid_exchanges: str = ""
    market_rule_ids: str = ""
    stock_type: str = ""
    agg_group: int = 1
    price_magnifier: int = 1
    min_size: float = 1.0
    size_increment: float = 1.0
    suggested_size_increment: float = 100.0
    sec_ids: tuple[tuple[str, str], ...] = ()
    derivative_sec_types: tuple[str, ...] = ()
    model: ModelParams = field(default_factory=lambda: ModelParams(price=100.0))
    synthetic: bool = False  # a price-model driver only: found by con_id, never resolved/searched


@dataclass(frozen=True, slots=True)
class Session:
    """One trading day of one instrument; datetimes are UTC-aware."""

    day: date  # the trading day the session belongs to (for overnight sessions: the day it ends)
    open: datetime  # trading hours start
    close: datetime  # trading hours end
    liquid_open: datetime  # regular (liquid) hours start
    liquid_close: datetime  # regular (liquid) hours end


@dataclass(frozen=True, slots=True)
class ContractQuery:
    """What a client asked for (reqContractDetails); empty/zero fields match anything."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date_or_contract_month: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""
    include_expired: bool = False


@dataclass(frozen=True, slots=True)
class OptionChain:
    """One answer row of reqSecDefOptParams."""

    exchange: str
    underlying_con_id: int
    trading_class: str
    multiplier: str
    expirations: tuple[str, ...]  # YYYYMMDD, sorted
    strikes: tuple[float, ...]  # sorted


_DATA_FILE = "data/instruments.json"
_HOURS_MEMO_LIMIT = 4096  # hours strings: (calendar, zone, last trade date, day, liquid)
_CHAIN_MEMO_LIMIT = 8  # full option chains (a few MB each): (chain, date, exchange)
_ONE_DAY = timedelta(days=1)
_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")
_RIGHTS = {"": "CP", "?": "CP", "0": "CP", "C": "C", "CALL": "C", "P": "P", "PUT": "P"}


class RefData:
    """All instruments the simulator knows, listed and generated (futures, options).

    Build it with :meth:`load`.  Read-only after construction except two bounded memo
    tables (generated option chains per date, trading-hours strings per day), which only
    make repeated calls fast.
    """

    __slots__ = (
        "_by_con_id",
        "_by_local",
        "_by_symbol",
        "_calendars",
        "_chain_by_code",
        "_chain_memo",
        "_chains",
        "_chains_by_class",
        "_chains_by_symbol",
        "_fut_by_code",
        "_fut_by_symbol",
        "_hours_memo",
        "_public",
    )

    def __init__(self, loaded: _refdata_load.Loaded) -> None:
        """Index loaded data; use :meth:`load` rather than calling this directly."""
        self._by_con_id = {inst.con_id: inst for inst in loaded.instruments}
        self._public = tuple(
            sorted((i for i in loaded.instruments if not i.synthetic), key=lambda i: i.con_id)
        )
        self._by_symbol = _group(self._public, lambda i: i.symbol)
        self._by_local = _group(self._public, lambda i: i.local_symbol)
        self._calendars: dict[str, Calendar] = dict(loaded.calendars)
        self._fut_by_code = {root.code: root for root in loaded.futures}
        self._fut_by_symbol = _group(loaded.futures, lambda r: r.proto.symbol)
        self._chains = tuple(sorted(loaded.options, key=lambda c: c.code))
        self._chain_by_code = {chain.code: chain for chain in self._chains}
        self._chains_by_symbol = _group(self._chains, lambda c: c.proto.symbol)
        self._chains_by_class = _group(self._chains, lambda c: c.proto.trading_class)
        self._chain_memo: dict[tuple[int, date, str], tuple[Instrument, ...]] = {}
        self._hours_memo: dict[tuple[str, str, str, date, bool], str] = {}

    @classmethod
    def load(cls, extra_files: Sequence[Path] = ()) -> RefData:
        """The shipped data file, then each extra file in order (later entries replace earlier).

        Raises ValueError naming the file, the JSON path and what was expected when a file
        cannot be read, is not JSON, or does not have the expected shape.
        """
        shipped = files("ibpilot.sim").joinpath(_DATA_FILE).read_text(encoding="utf-8")
        sources = [(f"ibpilot/sim/{_DATA_FILE}", shipped)]
        for extra in extra_files:
            path = Path(extra)
            try:
                sources.append((str(path), path.read_text(encoding="utf-8")))
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise ValueError(f"{path}: cannot read reference-data file: {reason}") from exc
        return cls(_refdata_load.load(sources))

    # --- contracts -----------------------------------------------------------------------

    def by_con_id(self, con_id: int) -> Instrument | None:
        """The instrument with this conId (listed, synthetic driver or generated), or None.

        Generated futures and options are decoded from the conId: they need not have been
        generated before, and expired ones are returned too.
        """
        inst = self._by_con_id.get(con_id)
        if inst is not None:
            return inst
        future = _derivatives.decode_future(con_id)
        if future is not None:
            code, year, month = future
            root = self._fut_by_code.get(code)
            if root is None or _derivatives.MONTH_CODES[month - 1] not in root.months:
                return None
            return _derivatives.future_contract(root, self._calendar(root.proto), year, month)
        option = _derivatives.decode_option(con_id)
        if option is not None:
            code, expiry, index, right = option
            chain = self._chain_by_code.get(code)
            if chain is None or index == 0:
                return None
            if not self._calendar(chain.proto).is_trading_day(expiry):
                return None
            strike = index * chain.strike_unit
            exchange = chain.proto.exchange
            return _derivatives.build_options(chain, [expiry], [strike], right, exchange)[0]
        return None

    def resolve(self, query: ContractQuery, on: date) -> list[Instrument]:
        """The instruments matching a reqContractDetails query on date ``on``.

        A non-zero con_id selects exactly that contract; otherwise symbol or local_symbol is
        required and every non-empty field filters (symbol, sec_type, exchange, currency
        case-insensitively); sec_type CONTFUT gives the front future.  exchange "SMART"
        matches SMART-routable instruments; another exchange matches the instrument's
        exchange or one of its valid_exchanges and is reported on the returned copy.
        Derivatives expired before ``on`` are left out unless include_expired.  Ordered by
        (last_trade_date, strike, right, con_id).  Never raises for an unknown contract:
        the answer is an empty list.
        """
        if query.con_id:
            inst = self.by_con_id(query.con_id)
            found = [] if inst is None or inst.synthetic else [inst]
        elif query.symbol or query.local_symbol:
            found = self._listed_candidates(query) + self._future_candidates(query, on)
        else:
            return []
        out = [m for inst in found if (m := _match(inst, query, on)) is not None]
        if not query.con_id:
            out += self._option_candidates(query, on)
        out.sort(key=lambda i: (i.last_trade_date, i.strike, i.right, i.con_id))
        return out

    def search(self, pattern: str) -> list[Instrument]:
        """reqMatchingSymbols: listed instruments whose symbol starts with ``pattern``
        (shortest symbol first), then those whose long name contains it; at most 16."""
        needle = pattern.strip().upper()
        if not needle:
            return []
        by_symbol = sorted(
            (i for i in self._public if i.symbol.upper().startswith(needle)),
            key=lambda i: (len(i.symbol), i.symbol, i.sec_type, i.con_id),
        )
        seen = {i.con_id for i in by_symbol}
        by_name = sorted(
            (i for i in self._public if i.con_id not in seen and needle in i.long_name.upper()),
            key=lambda i: (i.symbol, i.sec_type, i.con_id),
        )
        return (by_symbol + by_name)[:16]

    def option_params(
        self, symbol: str, sec_type: str, con_id: int, exchange: str, on: date
    ) -> list[OptionChain]:
        """reqSecDefOptParams: one OptionChain per listing exchange of the underlying's chains.

        The underlying is found by con_id when non-zero, else by symbol (and sec_type when
        given).  ``exchange`` "" means every exchange.  Empty when there are no options.
        """
        if con_id:
            chains = [c for c in self._chains if c.proto.underlying_con_id == con_id]
        else:
            chains = [
                c
                for c in self._chains_by_symbol.get(symbol.upper(), ())
                if not sec_type or c.proto.under_sec_type == sec_type.upper()
            ]
        wanted = exchange.upper()
        out: list[OptionChain] = []
        for chain in chains:
            expiries = _derivatives.option_expirations(chain, self._calendar(chain.proto), on)
            stamps = tuple(f"{d:%Y%m%d}" for d in expiries)
            proto = chain.proto
            out += [
                OptionChain(
                    ex,
                    proto.underlying_con_id,
                    proto.trading_class,
                    proto.multiplier,
                    stamps,
                    chain.strikes,
                )
                for ex in chain.exchanges
                if not wanted or ex == wanted
            ]
        return out

    # --- calendars -----------------------------------------------------------------------

    def session(self, inst: Instrument, day: date) -> Session | None:
        """The session of trading day ``day`` (UTC-aware times), or None when closed.

        Raises ValueError if the instrument names a calendar the data does not define.
        """
        last = _last_trade(inst)
        if last is not None and day > last:
            return None
        bounds = self._calendar(inst).bounds(day)
        return None if bounds is None else Session(day, *bounds)

    def sessions_between(self, inst: Instrument, start: datetime, end: datetime) -> list[Session]:
        """Every session overlapping [start, end), in order.

        Raises ValueError if start or end is naive, or the instrument's calendar is unknown.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("sessions_between needs timezone-aware start and end")
        zone = self._calendar(inst).zone
        day = start.astimezone(zone).date() - _ONE_DAY
        last = end.astimezone(zone).date() + _ONE_DAY
        out: list[Session] = []
        while day <= last:
            found = self.session(inst, day)
            if found is not None and found.open < end and found.close > start:
                out.append(found)
            day += _ONE_DAY
        return out

    def trading_hours(self, inst: Instrument, around: date) -> str:
        """TWS's tradingHours string for the calendar days from the day before ``around``
        to six days after it, in the instrument's time zone: every session that starts or
        ends on one of those days as ``start-end`` with its own dates (an overnight session
        reads ``20260301:1700-20260302:1600``), and ``20260307:CLOSED`` for each of those
        days on which no session starts or ends (see :func:`hours_string`).  Raises
        ValueError if the instrument's calendar is unknown."""
        return self._hours(inst, around, liquid=False)

    def liquid_hours(self, inst: Instrument, around: date) -> str:
        """TWS's liquidHours string (regular trading hours), same days and form as
        trading_hours: ES reads ``20260301:CLOSED;20260302:0830-20260302:1500;...``."""
        return self._hours(inst, around, liquid=True)

    # --- private -------------------------------------------------------------------------

    def _calendar(self, inst: Instrument) -> Calendar:
        cal = self._calendars.get(inst.calendar)
        if cal is None:
            raise ValueError(
                f"{inst.symbol} names calendar {inst.calendar!r}, which no file defines"
            )
        return cal

    def _hours(self, inst: Instrument, around: date, liquid: bool) -> str:
        key = (inst.calendar, inst.time_zone_id, inst.last_trade_date, around, liquid)
        cached = self._hours_memo.get(key)
        if cached is not None:
            return cached
        window = [around + timedelta(days=offset) for offset in range(-1, 7)]
        # sessions of the days around the window too: an overnight session of the day after
        # it starts on its last day
        spans: list[tuple[datetime, datetime]] = []
        for offset in range(-2, 9):
            found = self.session(inst, around + timedelta(days=offset))
            if found is not None:
                spans.append(
                    (found.liquid_open, found.liquid_close) if liquid else (found.open, found.close)
                )
        text = hours_string(window, spans, ZoneInfo(inst.time_zone_id))
        _remember(self._hours_memo, key, text, _HOURS_MEMO_LIMIT)
        return text

    def _listed_candidates(self, query: ContractQuery) -> list[Instrument]:
        if query.symbol:
            return list(self._by_symbol.get(query.symbol.upper(), ()))
        return list(self._by_local.get(query.local_symbol.upper(), ()))

    def _future_candidates(self, query: ContractQuery, on: date) -> list[Instrument]:
        """FUT contracts of the named root; for CONTFUT, the front contract as IB reports
        it (secType CONTFUT with the front contract's conId)."""
        sec_type = query.sec_type.upper()
        if sec_type not in ("", "FUT", "CONTFUT"):
            return []
        root_symbol = query.symbol.upper() or query.local_symbol.upper()[:-2]
        out: list[Instrument] = []
        for root in self._fut_by_symbol.get(root_symbol, ()):
            cal = self._calendar(root.proto)
            if sec_type == "CONTFUT":
                front = _derivatives.future_contracts(root, cal, on, include_expired=False)[0]
                out.append(replace(front, sec_type="CONTFUT"))
            else:
                out += _derivatives.future_contracts(root, cal, on, query.include_expired)
        return out

    def _option_candidates(self, query: ContractQuery, on: date) -> list[Instrument]:
        if query.sec_type.upper() not in ("", "OPT"):
            return []
        occ = None
        if query.local_symbol:
            occ = _derivatives.parse_occ(query.local_symbol.upper())
            if occ is None:
                return []
        if query.symbol:
            chains = self._chains_by_symbol.get(query.symbol.upper(), ())
        else:
            chains = self._chains_by_class.get(occ[0] if occ else "", ())
        out: list[Instrument] = []
        for chain in chains:
            exchange = _reported_exchange(chain.proto, query.exchange)
            if exchange is not None and _static_match(chain.proto, query):
                out += self._chain_options(chain, query, on, exchange, occ)
        return out

    def _chain_options(
        self,
        chain: _derivatives.OptionRoot,
        query: ContractQuery,
        on: date,
        exchange: str,
        occ: tuple[str, date, str, float] | None,
    ) -> list[Instrument]:
        rights = _RIGHTS.get(query.right.upper(), "")
        when = query.last_trade_date_or_contract_month.strip()[:8]
        cal = self._calendar(chain.proto)
        if occ is None and not query.strike and not when:
            key = (chain.code, on, exchange)
            full = self._chain_memo.get(key)
            if full is None:
                expiries = _derivatives.option_expirations(chain, cal, on)
                built = _derivatives.build_options(
                    chain, expiries, list(chain.strikes), "CP", exchange
                )
                full = tuple(built)
                _remember(self._chain_memo, key, full, _CHAIN_MEMO_LIMIT)
            return list(full) if rights == "CP" else [i for i in full if i.right in rights]
        expiries = _derivatives.option_expirations(chain, cal, on)
        monthly = len(when) >= 6 and when[:6].isdigit()
        year, month = (int(when[:4]), int(when[4:6])) if monthly else (0, 0)
        if query.include_expired and 1 <= month <= 12:
            past = _derivatives.month_expirations(chain, cal, year, month)
            expiries = sorted(set(expiries) | set(past))
        strikes = list(chain.strikes)
        if occ is not None:
            expiries = [d for d in expiries if d == occ[1]]
            strikes = [s for s in strikes if abs(s - occ[3]) < 1e-6]
            rights = rights.replace("C" if occ[2] == "P" else "P", "")
        expiries = [
            d
            for d in expiries
            if _date_matches(f"{d:%Y%m%d}", when) and (query.include_expired or d >= on)
        ]
        if query.strike:
            strikes = [s for s in strikes if abs(s - query.strike) < 1e-6]
        return _derivatives.build_options(chain, expiries, strikes, rights, exchange)


def _group(items: Iterable[_T], key: Callable[[_T], str]) -> dict[str, tuple[_T, ...]]:
    out: dict[str, list[_T]] = {}
    for item in items:
        out.setdefault(key(item).upper(), []).append(item)
    return {k: tuple(v) for k, v in out.items()}


def _remember(memo: dict[_K, _V], key: _K, value: _V, limit: int) -> None:
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value


def _last_trade(inst: Instrument) -> date | None:
    ltd = inst.last_trade_date
    if len(ltd) < 8:
        return None
    return date(int(ltd[:4]), int(ltd[4:6]), int(ltd[6:8]))


def _date_matches(last_trade_date: str, when: str, contract_month: str = "") -> bool:
    if not when:
        return True
    if len(when) == 6:
        return contract_month == when or last_trade_date[:6] == when
    return last_trade_date == when


def _reported_exchange(inst: Instrument, wanted: str) -> str | None:
    """The exchange to report for a query's exchange, or None if the instrument is not there."""
    wanted = wanted.upper()
    if not wanted:
        return inst.exchange
    valid = inst.valid_exchanges.split(",")
    if wanted == "SMART":
        return inst.exchange if inst.exchange == "SMART" or "SMART" in valid else None
    if wanted == inst.exchange or wanted in valid:
        return wanted
    return None


def _static_match(inst: Instrument, q: ContractQuery) -> bool:
    """The filters that do not depend on the contract's expiry, strike or right."""
    if q.symbol and q.symbol.upper() != inst.symbol.upper():
        return False
    if q.sec_type and q.sec_type.upper() != inst.sec_type:
        return False
    if q.currency and q.currency.upper() != inst.currency.upper():
        return False
    if q.primary_exchange and q.primary_exchange.upper() != inst.primary_exchange.upper():
        return False
    if q.trading_class and q.trading_class.upper() != inst.trading_class.upper():
        return False
    return not q.multiplier or _number(q.multiplier) == _number(inst.multiplier or "1")


def _match(inst: Instrument, q: ContractQuery, on: date) -> Instrument | None:
    """The instrument as reported for the query, or None when a filter rejects it."""
    exchange = _reported_exchange(inst, q.exchange)
    if exchange is None or not _static_match(inst, q):
        return None
    if q.local_symbol and q.local_symbol.upper() != inst.local_symbol.upper():
        return None
    when = q.last_trade_date_or_contract_month.strip()[:8]
    if not _date_matches(inst.last_trade_date, when, inst.contract_month):
        return None
    if q.strike and abs(q.strike - inst.strike) > 1e-6:
        return None
    allowed = _RIGHTS.get(q.right.upper(), "")
    if allowed != "CP" and (not inst.right or inst.right not in allowed):
        return None
    last = _last_trade(inst)
    if last is not None and last < on and not q.include_expired:
        return None
    return inst if exchange == inst.exchange else replace(inst, exchange=exchange)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None

"""Reference data for the simulated gateway: contracts, option chains, trading calendars.

The instruments come from a JSON data file shipped with the package
(``ibpilot/sim/data/instruments.json``); users extend it with files of the same
shape passed to :meth:`RefData.load`.  Everything here is plain data and pure
functions of a date: no clocks, no sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True, slots=True)
class ModelParams:
    """How the price model moves an instrument (see ``ibpilot.sim.market``)."""

    price: float  # reference price at the model's epoch (root drivers) or nominal price
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


class RefData:
    """All instruments the simulator knows, listed and generated (futures, options)."""

    @classmethod
    def load(cls, extra_files: Sequence[Path] = ()) -> RefData:
        raise NotImplementedError

    def by_con_id(self, con_id: int) -> Instrument | None:
        raise NotImplementedError

    def resolve(self, query: ContractQuery, on: date) -> list[Instrument]:
        raise NotImplementedError

    def search(self, pattern: str) -> list[Instrument]:
        raise NotImplementedError

    def option_params(
        self, symbol: str, sec_type: str, con_id: int, exchange: str, on: date
    ) -> list[OptionChain]:
        raise NotImplementedError

    def session(self, inst: Instrument, day: date) -> Session | None:
        raise NotImplementedError

    def sessions_between(self, inst: Instrument, start: datetime, end: datetime) -> list[Session]:
        raise NotImplementedError

    def trading_hours(self, inst: Instrument, around: date) -> str:
        raise NotImplementedError

    def liquid_hours(self, inst: Instrument, around: date) -> str:
        raise NotImplementedError

"""Reading and validating reference-data files (the shipped one and users' extensions).

A file is one JSON object; every key is optional in an extension file:

``holidays``       ``{set name: {"YYYY-MM-DD": "holiday name"}}``
``calendars``      ``{name: {time_zone, weekdays, open, close, open_prev_day, liquid_open,
                   liquid_close, liquid_open_prev_day, holidays: set name}}``, times "HH:MM"
``templates``      ``{name: {instrument fields}}``, merged under an entry naming it
``instruments``    ``[{instrument fields, "template": name, "model": {model fields}}]``
``futures``        ``[{instrument fields, code, months, listed, last_trade}]``
``option_chains``  ``[{instrument fields, code, underlying_con_id, exchanges, strike_unit,
                   strike_bands, weeklies, monthlies, leaps, daily_weekdays, daily_weeks}]``

Instrument fields are :class:`~ibpilot.sim.refdata.Instrument`'s field names; ``sec_ids``
is an object ``{"ISIN": "..."}``.  Keys starting with ``_`` or ``$`` are comments.  Files are
applied in order: a later instrument with the same conId or the same symbol + secType +
currency replaces the earlier one; a later root/chain with the same code, or the same
symbol (futures) / underlying (options), replaces the earlier one; names (holiday sets,
calendars, templates) are replaced whole.  Every error is a ValueError naming the file, the
JSON path and what was expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from datetime import date, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ibpilot.sim import _derivatives as dv
from ibpilot.sim import refdata  # circular on purpose: attributes are used at call time only
from ibpilot.sim._calendar import WEEKDAY_NAMES, Calendar

SEC_TYPES = frozenset(
    {"STK", "IND", "CASH", "FUT", "OPT", "FOP", "CFD", "BOND", "CMDTY", "FUND", "WAR", "CRYPTO"}
)
_FUTURE_KEYS = frozenset({"code", "months", "listed", "last_trade"})
_CHAIN_KEYS = frozenset(
    {"code", "exchanges", "strike_unit", "strike_bands", "weeklies", "monthlies", "leaps"}
    | {"daily_weekdays", "daily_weeks"}
)
_TOP_KEYS = frozenset(
    {"format", "holidays", "calendars", "templates", "instruments", "futures", "option_chains"}
)
_CALENDAR_KEYS = frozenset(
    {"time_zone", "weekdays", "open", "close", "open_prev_day", "liquid_open", "liquid_close"}
    | {"liquid_open_prev_day", "holidays"}
)
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Loaded:
    """Everything the files define, validated and cross-referenced."""

    instruments: tuple[refdata.Instrument, ...]
    calendars: dict[str, Calendar]
    futures: tuple[dv.FutureRoot, ...]
    options: tuple[dv.OptionRoot, ...]


@dataclass(slots=True)
class _Entry:
    """One parsed entry (instrument, futures root or chain) before cross-referencing."""

    file: str
    path: str
    fields: dict[str, Any]
    model: dict[str, Any]
    spec: dict[str, Any] = field(default_factory=dict)


class _Where:
    """The file being read: builds the error messages."""

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, path: str, expected: str, got: Any = _MISSING) -> ValueError:
        shown = "nothing" if got is _MISSING else json.dumps(got)[:80]
        return ValueError(f"{self.file}: {path}: expected {expected}, got {shown}")


def _check(where: _Where, value: Any, path: str, kind: str) -> Any:
    """Validate one JSON value against a kind; return it converted."""
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "object": isinstance(value, dict),
        "list": isinstance(value, list),
        "strs": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "str_map": isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
    }[kind]
    if not ok:
        raise where.error(path, _KIND_TEXT[kind], value)
    if kind == "float":
        return float(value)
    if kind == "strs":
        return tuple(value)
    if kind == "str_map":
        return tuple(value.items())
    return value


_KIND_TEXT = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "object": "an object",
    "list": "a list",
    "strs": "a list of strings",
    "str_map": 'an object of strings, e.g. {"ISIN": "US0378331005"}',
}
_TYPE_KIND = {
    "int": "int",
    "float": "float",
    "str": "str",
    "bool": "bool",
    "tuple[str, ...]": "strs",
    "tuple[tuple[str, str], ...]": "str_map",
}


def _kinds(cls: type) -> dict[str, str]:
    return {f.name: _TYPE_KIND[str(f.type)] for f in fields(cls) if str(f.type) in _TYPE_KIND}


def _is_comment(key: str) -> bool:
    return key.startswith(("_", "$"))


def _parse_entry(
    where: _Where, raw: Any, path: str, templates: dict[str, _Entry], spec_keys: frozenset[str]
) -> _Entry:
    """Instrument fields (+ template, model, spec keys) of one object."""
    obj = _check(where, raw, path, "object")
    inst_kinds = _kinds(refdata.Instrument)
    entry = _Entry(where.file, path, {}, {})
    template = obj.get("template")
    if template is not None:
        if not isinstance(template, str) or template not in templates:
            raise where.error(
                f"{path}.template", f"one of the templates {sorted(templates)}", template
            )
        entry.fields.update(templates[template].fields)
        entry.model.update(templates[template].model)
    model_kinds = _kinds(refdata.ModelParams)
    for key, value in obj.items():
        sub = f"{path}.{key}"
        if _is_comment(key) or key == "template":
            continue
        if key == "model":
            for mkey, mvalue in _check(where, value, sub, "object").items():
                if mkey not in model_kinds:
                    raise where.error(f"{sub}.{mkey}", f"one of {sorted(model_kinds)}", mkey)
                entry.model[mkey] = _check(where, mvalue, f"{sub}.{mkey}", model_kinds[mkey])
        elif key in spec_keys:
            entry.spec[key] = value
        elif key in inst_kinds:
            entry.fields[key] = _check(where, value, sub, inst_kinds[key])
        else:
            raise where.error(sub, "an Instrument field name (or model/template)", key)
    return entry


def _parse_time(where: _Where, raw: Any, path: str) -> time:
    text = _check(where, raw, path, "str")
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise where.error(path, 'a time "HH:MM"', raw) from None


def _parse_date(where: _Where, raw: Any, path: str) -> date:
    try:
        return date.fromisoformat(_check(where, raw, path, "str"))
    except ValueError:
        raise where.error(path, 'a date "YYYY-MM-DD"', raw) from None


def _parse_zone(where: _Where, raw: Any, path: str) -> ZoneInfo:
    try:
        return ZoneInfo(_check(where, raw, path, "str"))
    except (ZoneInfoNotFoundError, ValueError):
        raise where.error(path, 'an IANA time zone such as "US/Eastern"', raw) from None


def _parse_weekdays(where: _Where, raw: Any, path: str) -> frozenset[int]:
    names = _check(where, raw, path, "strs")
    try:
        return frozenset(WEEKDAY_NAMES.index(n.upper()) for n in names)
    except ValueError:
        raise where.error(
            path, f"a list of weekday names from {list(WEEKDAY_NAMES)}", raw
        ) from None


def _parse_calendar(
    where: _Where, name: str, raw: Any, path: str, holidays: dict[str, frozenset[date]]
) -> Calendar:
    obj = _check(where, raw, path, "object")
    allowed = _CALENDAR_KEYS
    for key in obj:
        if key not in allowed and not _is_comment(key):
            raise where.error(f"{path}.{key}", f"one of {sorted(allowed)}", key)

    def need(key: str) -> Any:
        if key not in obj:
            raise where.error(f"{path}.{key}", "this key (it is required)")
        return obj[key]

    open_ = _parse_time(where, need("open"), f"{path}.open")
    close = _parse_time(where, need("close"), f"{path}.close")
    prev = _check(where, obj.get("open_prev_day", False), f"{path}.open_prev_day", "bool")
    has_liquid = "liquid_open" in obj
    holiday_set = obj.get("holidays")
    if holiday_set is not None and (
        not isinstance(holiday_set, str) or holiday_set not in holidays
    ):
        raise where.error(
            f"{path}.holidays", f"one of the holiday sets {sorted(holidays)}", holiday_set
        )
    return Calendar(
        name=name,
        zone=_parse_zone(where, need("time_zone"), f"{path}.time_zone"),
        weekdays=_parse_weekdays(where, need("weekdays"), f"{path}.weekdays"),
        open=open_,
        close=close,
        open_prev_day=prev,
        liquid_open=_parse_time(where, obj["liquid_open"], f"{path}.liquid_open")
        if has_liquid
        else open_,
        liquid_close=_parse_time(
            where, obj.get("liquid_close", need("close")), f"{path}.liquid_close"
        ),
        liquid_open_prev_day=_check(
            where,
            obj.get("liquid_open_prev_day", prev and not has_liquid),
            f"{path}.liquid_open_prev_day",
            "bool",
        ),
        holidays=holidays.get(holiday_set, frozenset()) if holiday_set else frozenset(),
    )


def _int_in(where: _Where, raw: Any, path: str, low: int, high: int) -> int:
    value = _check(where, raw, path, "int") if raw is not _MISSING else _MISSING
    if value is _MISSING or not low <= value <= high:
        raise where.error(path, f"an integer from {low} to {high}", raw)
    return int(value)


def _required(where: _Where, entry: _Entry, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in entry.fields:
            raise where.error(f"{entry.path}.{name}", "this field (it is required)")


def _model(where: _Where, entry: _Entry, defaults: dict[str, Any]) -> refdata.ModelParams:
    values = {**defaults, **entry.model}
    path = f"{entry.path}.model"
    if "price" not in values or values["price"] <= 0:
        raise where.error(f"{path}.price", "a reference price > 0", values.get("price", _MISSING))
    for name, low in (("vol", 0.0), ("spread_ticks", 1), ("daily_volume", 0), ("iv", 0.0)):
        if name in values and values[name] < low:
            raise where.error(f"{path}.{name}", f"a value >= {low}", values[name])
    return refdata.ModelParams(**values)


def _key(entry: _Entry) -> tuple[str, str, str]:
    f = entry.fields
    return (str(f["symbol"]).upper(), str(f["sec_type"]).upper(), str(f["currency"]).upper())


class _Builder:
    """Accumulates files in order, then cross-references everything once."""

    def __init__(self) -> None:
        self.holidays: dict[str, frozenset[date]] = {}
        self.calendars: dict[str, tuple[_Where, Any, str]] = {}
        self.templates: dict[str, _Entry] = {}
        self.instruments: list[_Entry] = []
        self.futures: list[_Entry] = []
        self.chains: list[_Entry] = []

    def add(self, name: str, text: str) -> None:
        """Parse one file and apply it over the earlier ones."""
        where = _Where(name)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{name}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            raise ValueError(msg) from None
        doc = _check(where, doc, "$", "object")
        for key in doc:
            if key not in _TOP_KEYS and not _is_comment(key):
                raise where.error(f"$.{key}", f"one of the sections {sorted(_TOP_KEYS)}", key)
        if doc.get("format", 1) != 1:
            raise where.error("$.format", "1 (the only format version)", doc["format"])
        for set_name, table in _check(
            where, doc.get("holidays", {}), "$.holidays", "object"
        ).items():
            path = f"$.holidays.{set_name}"
            days = _check(where, table, path, "object")
            self.holidays[set_name] = frozenset(
                _parse_date(where, day, f"{path}.{day}") for day in days if not _is_comment(day)
            )
        for cal_name, raw in _check(
            where, doc.get("calendars", {}), "$.calendars", "object"
        ).items():
            self.calendars[cal_name] = (where, raw, f"$.calendars.{cal_name}")
        for t_name, raw in _check(where, doc.get("templates", {}), "$.templates", "object").items():
            path = f"$.templates.{t_name}"
            self.templates[t_name] = _parse_entry(where, raw, path, self.templates, frozenset())
        self._add_instruments(where, self._entries(where, doc, "instruments", frozenset()))
        self._add_futures(where, self._entries(where, doc, "futures", _FUTURE_KEYS))
        self._add_chains(where, self._entries(where, doc, "option_chains", _CHAIN_KEYS))

    def _entries(
        self, where: _Where, doc: dict[str, Any], section: str, spec_keys: frozenset[str]
    ) -> list[_Entry]:
        raws = _check(where, doc.get(section, []), f"$.{section}", "list")
        return [
            _parse_entry(where, raw, f"$.{section}[{i}]", self.templates, spec_keys)
            for i, raw in enumerate(raws)
        ]

    def _add_instruments(self, where: _Where, new: list[_Entry]) -> None:
        seen: dict[int, str] = {}
        for entry in new:
            _required(where, entry, ("con_id", "symbol", "sec_type", "exchange", "currency"))
            con_id = entry.fields["con_id"]
            limit = dv.LISTED_CON_ID_LIMIT - 1
            path = f"{entry.path}.con_id"
            if not 1 <= con_id <= limit:
                raise where.error(path, f"a conId from 1 to {limit} (above: generated)", con_id)
            if con_id in seen:
                raise where.error(path, f"a conId not already used at {seen[con_id]}", con_id)
            seen[con_id] = entry.path
        keys = {_key(e) for e in new}
        self.instruments = [
            old
            for old in self.instruments
            if old.fields["con_id"] not in seen and _key(old) not in keys
        ] + new

    def _add_futures(self, where: _Where, new: list[_Entry]) -> None:
        codes: dict[int, str] = {}
        for entry in new:
            _required(where, entry, ("symbol", "exchange", "currency", "calendar"))
            code = _int_in(where, entry.spec.get("code", _MISSING), f"{entry.path}.code", 0, 999)
            if code in codes:
                raise where.error(f"{entry.path}.code", f"a code not used at {codes[code]}", code)
            codes[code] = entry.path
        symbols = {(e.fields["symbol"].upper(), e.fields["exchange"].upper()) for e in new}
        self.futures = [
            old
            for old in self.futures
            if old.spec["code"] not in codes
            and (old.fields["symbol"].upper(), old.fields["exchange"].upper()) not in symbols
        ] + new

    def _add_chains(self, where: _Where, new: list[_Entry]) -> None:
        codes: dict[int, str] = {}
        top = dv.OPT_CODES - 1
        for entry in new:
            _required(where, entry, ("underlying_con_id",))
            code = _int_in(where, entry.spec.get("code", _MISSING), f"{entry.path}.code", 0, top)
            if code in codes:
                raise where.error(f"{entry.path}.code", f"a code not used at {codes[code]}", code)
            codes[code] = entry.path
        unders = {e.fields["underlying_con_id"] for e in new}
        self.chains = [
            old
            for old in self.chains
            if old.spec["code"] not in codes and old.fields["underlying_con_id"] not in unders
        ] + new

    def finish(self) -> Loaded:
        """Cross-reference and build every instrument, root and chain."""
        calendars = {
            name: _parse_calendar(where, name, raw, path, self.holidays)
            for name, (where, raw, path) in self.calendars.items()
        }
        instruments = tuple(_instrument(e, calendars) for e in self.instruments)
        by_id = {inst.con_id: inst for inst in instruments}
        for entry, inst in zip(self.instruments, instruments, strict=True):
            driver = inst.model.driver_con_id
            if driver and (driver == inst.con_id or driver not in by_id):
                raise _Where(entry.file).error(
                    f"{entry.path}.model.driver_con_id", "0 or another listed conId", driver
                )
        return Loaded(
            instruments=instruments,
            calendars=calendars,
            futures=tuple(_future(e, calendars, by_id) for e in self.futures),
            options=tuple(_chain(e, calendars, by_id) for e in self.chains),
        )


def _calendar_of(
    where: _Where, entry: _Entry, calendars: dict[str, Calendar], default: str
) -> Calendar:
    name = entry.fields.setdefault("calendar", default)
    if name not in calendars:
        raise where.error(
            f"{entry.path}.calendar", f"one of the calendars {sorted(calendars)}", name
        )
    entry.fields.setdefault("time_zone_id", calendars[name].zone.key)
    _parse_zone(where, entry.fields["time_zone_id"], f"{entry.path}.time_zone_id")
    return calendars[name]


def _instrument(entry: _Entry, calendars: dict[str, Calendar]) -> refdata.Instrument:
    where = _Where(entry.file)
    _calendar_of(where, entry, calendars, "us_equity")
    kw = entry.fields
    kw.setdefault("local_symbol", kw["symbol"])
    kw.setdefault("trading_class", kw["symbol"])
    kw.setdefault("market_name", kw["trading_class"])
    if kw["sec_type"].upper() not in SEC_TYPES:
        raise where.error(f"{entry.path}.sec_type", f"one of {sorted(SEC_TYPES)}", kw["sec_type"])
    if kw.get("min_tick", 0.01) <= 0:
        raise where.error(f"{entry.path}.min_tick", "a number > 0", kw["min_tick"])
    return refdata.Instrument(**kw, model=_model(where, entry, {}))


def _no_con_id(where: _Where, entry: _Entry) -> None:
    if "con_id" in entry.fields:
        raise where.error(f"{entry.path}.con_id", "no con_id (generated contracts get theirs)")


def _future(
    entry: _Entry, calendars: dict[str, Calendar], by_id: dict[int, refdata.Instrument]
) -> dv.FutureRoot:
    where, spec, path = _Where(entry.file), entry.spec, entry.path
    _no_con_id(where, entry)
    _calendar_of(where, entry, calendars, "")
    months = _check(where, spec.get("months", _MISSING), f"{path}.months", "str")
    if not months or any(m not in dv.MONTH_CODES for m in months):
        raise where.error(f"{path}.months", f"IB month codes from {dv.MONTH_CODES!r}", months)
    last_trade = spec.get("last_trade", _MISSING)
    if last_trade not in dv.LAST_TRADE_RULES:
        raise where.error(f"{path}.last_trade", f"one of {list(dv.LAST_TRADE_RULES)}", last_trade)
    driver = by_id.get(entry.model.get("driver_con_id", 0))
    if driver is None:
        got = entry.model.get("driver_con_id", _MISSING)
        raise where.error(f"{path}.model.driver_con_id", "the conId of a listed instrument", got)
    kw = entry.fields
    symbol = kw["symbol"]
    kw.update(con_id=0, sec_type="FUT", underlying_con_id=driver.con_id)
    for name, value in (
        ("trading_class", symbol),
        ("market_name", symbol),
        ("under_symbol", driver.symbol),
        ("under_sec_type", driver.sec_type),
    ):
        kw.setdefault(name, value)
    dm = driver.model
    model = _model(where, entry, {"price": dm.price, "vol": dm.vol, "drift": dm.drift})
    return dv.FutureRoot(
        code=spec["code"],
        proto=refdata.Instrument(**kw, model=model),
        months=months,
        listed=_int_in(where, spec.get("listed", _MISSING), f"{path}.listed", 1, 60),
        last_trade=last_trade,
    )


def _bands(where: _Where, raw: Any, path: str, unit: float) -> tuple[tuple[float, float], ...]:
    expected = "a list of [fraction 0..1, step multiple of strike_unit] pairs"
    bands = []
    for band in _check(where, raw, path, "list"):
        ok = isinstance(band, list) and len(band) == 2
        ok = ok and all(isinstance(x, int | float) and not isinstance(x, bool) for x in band)
        if not ok or not 0 < band[0] < 1 or band[1] <= 0:
            raise where.error(path, expected, raw)
        if abs(band[1] / unit - round(band[1] / unit)) > 1e-9:
            raise where.error(path, expected, raw)
        bands.append((float(band[0]), float(band[1])))
    if not bands:
        raise where.error(path, expected, raw)
    return tuple(bands)


def _chain(
    entry: _Entry, calendars: dict[str, Calendar], by_id: dict[int, refdata.Instrument]
) -> dv.OptionRoot:
    where, spec, path, kw = _Where(entry.file), entry.spec, entry.path, entry.fields
    _no_con_id(where, entry)
    under = by_id.get(kw["underlying_con_id"])
    if under is None or under.synthetic:
        got = kw["underlying_con_id"]
        raise where.error(f"{path}.underlying_con_id", "the conId of a listed instrument", got)
    _calendar_of(where, entry, calendars, "us_option")
    unit = _check(where, spec.get("strike_unit", 0.5), f"{path}.strike_unit", "float")
    if unit <= 0:
        raise where.error(f"{path}.strike_unit", "a number > 0", unit)
    exchanges = _check(where, spec.get("exchanges", ["SMART"]), f"{path}.exchanges", "strs")
    if not exchanges:
        raise where.error(f"{path}.exchanges", "at least one exchange", [])
    kw.update(con_id=0, sec_type="OPT", symbol=under.symbol, exchange=exchanges[0])
    for name, value in (
        ("currency", under.currency),
        ("trading_class", under.symbol),
        ("market_name", kw.get("trading_class", under.symbol)),
        ("multiplier", "100"),
        ("long_name", under.long_name),
        ("industry", under.industry),
        ("category", under.category),
        ("subcategory", under.subcategory),
        ("under_symbol", under.symbol),
        ("under_sec_type", under.sec_type),
    ):
        kw.setdefault(name, value)
    um = under.model
    defaults = {"price": um.price, "vol": um.vol, "drift": um.drift, "iv": 0.25}
    model = replace(_model(where, entry, defaults), driver_con_id=under.con_id)
    strikes = dv.strike_grid(
        model.price, unit, _bands(where, spec.get("strike_bands"), f"{path}.strike_bands", unit)
    )
    if not strikes or strikes[-1] / unit >= dv.OPT_STRIKES:
        expected = f"a unit giving strikes below {dv.OPT_STRIKES} units (largest: {strikes[-1:]})"
        raise where.error(f"{path}.strike_unit", expected, unit)
    counts = {
        name: _int_in(where, spec.get(name, default), f"{path}.{name}", 0, 104)
        for name, default in (("weeklies", 8), ("monthlies", 6), ("leaps", 2), ("daily_weeks", 0))
    }
    days = _parse_weekdays(where, spec.get("daily_weekdays", []), f"{path}.daily_weekdays")
    return dv.OptionRoot(
        code=spec["code"],
        proto=refdata.Instrument(**kw, model=model),
        exchanges=exchanges,
        strike_unit=unit,
        strikes=strikes,
        weeklies=counts["weeklies"],
        monthlies=counts["monthlies"],
        leaps=counts["leaps"],
        daily_weekdays=days,
        daily_weeks=counts["daily_weeks"],
    )


def load(sources: list[tuple[str, str]]) -> Loaded:
    """Parse (name, JSON text) pairs in order; raises ValueError naming file, path, expectation."""
    builder = _Builder()
    for name, text in sources:
        builder.add(name, text)
    return builder.finish()

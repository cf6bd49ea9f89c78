"""The files a user writes: ``adapter.json`` and strategy files, their mandate, the spec hash.

Every model forbids unknown keys (a typo must never silently disable a limit) and takes numbers
only as JSON numbers, booleans only as ``true``/``false``.  Loading never shows a traceback or
pydantic's own message dump: :class:`ConfigError`'s text is one line per problem, naming the
file, the JSON path, what was expected and what was found::

    my-strategy.json: $.mandate.max_order_qty: unknown key (did you mean 'max_order_quantity'?)
    adapter.json: $.credentials.port: expected an integer port 1-65535, found "seven"

The spec hash is the SHA-256 of the strategy file's canonical JSON (sorted keys, no
whitespace), so formatting and key order do not change it and any value does.  Port and
account knowledge for the WRONG_ENVIRONMENT check lives here too.  No I/O except reading the
file in the ``load_*`` and ``spec_hash_of_file`` functions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

from ibpilot._config_load import (
    _cross,
    _duration,
    _fail,
    _hhmm,
    _json_native,
    _number,
    _parse,
    _read_bytes,
    _render,
    _strategy_ref,
    _text,
    _time_zone,
    _validate,
)
from ibpilot.alerts import WebhookTarget
from ibpilot.errors import ErrorName
from ibpilot.ib_schedule import Region

SIM_PORT = 4102
_E = TypeVar("_E", bound=StrEnum)
MAX_CLIENT_ID = 2**31 - 1


class Environment(StrEnum):
    SIM = "sim"
    PAPER = "paper"
    LIVE = "live"


class AccountKind(StrEnum):
    PAPER = "paper"
    LIVE = "live"
    SIM = "sim"
    UNKNOWN = "unknown"


class Broker(StrEnum):
    IBKR_PAPER = "ibkr-paper"
    IBKR_LIVE = "ibkr-live"


class Gateway(StrEnum):
    TWS = "tws"
    IBGATEWAY = "ibgateway"


class SecType(StrEnum):
    """IB's security types, as sent on the wire."""

    STK = "STK"
    OPT = "OPT"
    FUT = "FUT"
    CASH = "CASH"
    BOND = "BOND"
    IND = "IND"
    CFD = "CFD"
    FOP = "FOP"
    WAR = "WAR"
    CMDTY = "CMDTY"
    FUND = "FUND"


class OrderType(StrEnum):
    """The order types ibpilot sends, with IB's wire strings."""

    MKT = "MKT"
    LMT = "LMT"
    STP = "STP"
    STP_LMT = "STP LMT"
    MOC = "MOC"
    LOC = "LOC"
    MIT = "MIT"
    LIT = "LIT"


class Right(StrEnum):
    CALL = "C"
    PUT = "P"


class OnStop(StrEnum):
    CANCEL_OPEN_ORDERS = "cancel_open_orders"
    LEAVE_OPEN_ORDERS = "leave_open_orders"


# port -> (product, environment): what listens there by default.
_PORTS: dict[int, tuple[str, Environment]] = {
    7496: ("tws", Environment.LIVE),
    7497: ("tws", Environment.PAPER),
    4001: ("ibgateway", Environment.LIVE),
    4002: ("ibgateway", Environment.PAPER),
    SIM_PORT: ("sim", Environment.SIM),
}
_PRODUCT_NAMES = {"tws": "TWS", "ibgateway": "IB Gateway", "sim": "ibpilot sim"}
BAR_SIZES = (
    "1 secs", "5 secs", "10 secs", "15 secs", "30 secs", "1 min", "2 mins", "3 mins", "5 mins",
    "10 mins", "15 mins", "20 mins", "30 mins", "1 hour", "2 hours", "3 hours", "4 hours",
    "8 hours", "1 day", "1 week", "1 month",
)  # fmt: skip
Weekday = Literal["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
WEEKDAYS: tuple[Weekday, ...] = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


def port_product(port: int) -> str:
    """What listens on ``port`` by default: "TWS (paper)", "IB Gateway (live)", ... or "unknown"."""
    known = _PORTS.get(port)
    if known is None:
        return "unknown"
    product, environment = known
    name = _PRODUCT_NAMES[product]
    return name if environment is Environment.SIM else f"{name} ({environment})"


def expected_environment(port: int) -> Environment | None:
    """The environment a default port belongs to; None for a port that is not a default."""
    known = _PORTS.get(port)
    return None if known is None else known[1]


def port_for(environment: Environment, gateway: Gateway) -> int:
    """The default port of ``gateway`` for ``environment`` (the simulator's for "sim")."""
    if environment is Environment.SIM:
        return SIM_PORT
    for port, (product, env) in _PORTS.items():
        if product == gateway and env is environment:
            return port
    raise AssertionError(f"no default port for {gateway} {environment}")  # pragma: no cover


def account_kind(account_id: str) -> AccountKind:
    """Paper (``DU``/``DF``/``DI``...), live (``U``/``F``/``I``...), sim (``SIM``...) or unknown.

    The simulator's default account ``DU0000001`` is a paper-style id and counts as paper.
    """
    account = account_id.strip().upper()
    if account.startswith("SIM"):
        return AccountKind.SIM
    if re.fullmatch(r"D[UFI]\d+", account):
        return AccountKind.PAPER
    if re.fullmatch(r"[UFI]\d+", account):
        return AccountKind.LIVE
    return AccountKind.UNKNOWN


# ---------------------------------------------------------------------------------------------
# Problems and the error users see


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file or a connection, printed as ``file: path: message``."""

    file: str
    path: str
    message: str
    name: ErrorName = ErrorName.CONFIG_INVALID

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}: {where}{self.message}"


class ConfigError(Exception):
    """A configuration a human must fix; ``str()`` is one line per problem."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def _bar_size(value: str) -> str:
    if value not in BAR_SIZES:
        raise _fail("an IB bar size (" + ", ".join(repr(size) for size in BAR_SIZES) + ")")
    return value


PositiveNumber = Annotated[Decimal, BeforeValidator(_number), Field(gt=0, allow_inf_nan=False)]
Text = Annotated[str, BeforeValidator(_text)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
ClientId = Annotated[StrictInt, Field(ge=0, le=MAX_CLIENT_ID)]
TimeOfDay = Annotated[time, BeforeValidator(_hhmm)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Credentials(_Model):
    """Where the gateway listens. No IB login is ever needed: the gateway holds the session."""

    host: Text = "127.0.0.1"
    port: Port  # filled from broker/gateway/environment when the file leaves it out
    client_id: ClientId = 1
    # used when client_id is still held by a stale session (IB 326) after client_id_wait_s;
    # orders placed under client_id stay visible (reqAllOpenOrders) but only it can modify them
    fallback_client_id: ClientId | None = None

    @model_validator(mode="after")
    def _fallback_differs(self) -> Self:
        if self.fallback_client_id is not None and self.fallback_client_id == self.client_id:
            found = f"{self.fallback_client_id} (the same as client_id)"
            raise _cross("fallback_client_id", f"expected another id, found {found}")
        return self


class ContractFields(_Model):
    """The contract qualifiers IB needs beyond symbol and security type."""

    exchange: Text = "SMART"
    currency: Annotated[str, BeforeValidator(_text), Field(pattern=r"^[A-Z]{3}$")] = "USD"
    primary_exchange: Text | None = None
    last_trade_date_or_contract_month: (
        Annotated[str, BeforeValidator(_text), Field(pattern=r"^\d{6}(\d{2})?$")] | None
    ) = None
    strike: PositiveNumber | None = None
    right: Right | None = None
    multiplier: PositiveNumber | None = None


class ScheduleSettings(_Model):
    """When a disconnect is expected (see :mod:`ibpilot.ib_schedule`)."""

    region: Region = Region.NA  # whose daily server reset: "na", "eu" or "asia"
    gateway_restart_time: TimeOfDay | None = None  # IBC's AUTO_RESTART_TIME, 24-hour local
    gateway_time_zone: Annotated[str, AfterValidator(_time_zone)] = "US/Eastern"
    gateway_restart_grace_s: Annotated[StrictInt, Field(ge=1, le=3600)] = 120


Seconds = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]


class AlertsConfig(_Model):
    """Where alerts go besides the log, and how hard to try (see :mod:`ibpilot.alerts`)."""

    webhook_url: StrictStr | None = Field(default=None, repr=False)  # may hold a secret
    timeout_s: Annotated[Seconds, Field(gt=0, le=60)] = 5.0  # per attempt
    retries: Annotated[StrictInt, Field(ge=0, le=10)] = 3  # after the first attempt
    retry_backoff_s: Annotated[Seconds, Field(ge=0, le=60)] = 1.0  # doubled per retry
    cooldown_s: Annotated[Seconds, Field(ge=0, le=86400)] = 300.0  # same kind and key
    queue_size: Annotated[StrictInt, Field(ge=1, le=10000)] = 100
    connection_alert_after_s: Annotated[Seconds, Field(gt=0, le=86400)] = 300.0
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)

    @model_validator(mode="before")
    @classmethod
    def _webhook_url_valid(cls, data: Any) -> Any:
        """Check the URL here, so the error never repeats it (its path may be a secret)."""
        url = data.get("webhook_url") if isinstance(data, dict) else None
        if isinstance(url, str):
            try:
                WebhookTarget.parse(url)
            except ValueError as exc:
                raise _cross("webhook_url", str(exc)) from None
        return data


class AdapterConfig(ContractFields):
    """``adapter.json``: which gateway to talk to, how, and in which environment."""

    adapter: Literal["ibkr"] = "ibkr"
    credentials: Credentials
    environment: Environment  # filled from "broker" when the file leaves it out
    broker: Broker | None = None
    gateway: Gateway | None = None
    trading_pair: Text | None = None  # an instrument `ibpilot test` qualifies, e.g. "AAPL"
    sec_type: SecType = SecType.STK
    rate_limit_ms: Annotated[StrictInt, Field(ge=0)] = 0  # min ms between orders; 0: IB pacing
    account: Text | None = None  # the account id the gateway must report
    connect_timeout_s: Annotated[float, BeforeValidator(_number), Field(gt=0, le=300)] = 10.0
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)  # log only unless a webhook
    # a reqCurrentTime every keepalive_s (0: off); no answer in keepalive_timeout_s means the
    # gateway is hung or the socket half-open: ibpilot closes it and reconnects
    keepalive_s: Annotated[float, BeforeValidator(_number), Field(ge=0, le=3600)] = 20.0
    keepalive_timeout_s: Annotated[float, BeforeValidator(_number), Field(gt=0, le=300)] = 10.0
    # how long to wait for a stale session to free client_id (IB 326) before the fallback id
    # or, without one, failing with CLIENT_ID_IN_USE (0: fail at once)
    client_id_wait_s: Annotated[float, BeforeValidator(_number), Field(ge=0, le=3600)] = 0.0
    # a subscribed instrument silent this long while its market is open is resubscribed
    # (twice), then reported stale: a silent feed is never taken for a quiet market
    stale_data_s: Annotated[float, BeforeValidator(_number), Field(gt=0, le=86400)] = 120.0

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """Resolve ``broker``/``gateway`` into ``environment`` and ``credentials.port``."""
        if not isinstance(data, dict) or not isinstance(data.get("credentials", {}), dict):
            return data
        broker, gateway = _enum_or_none(Broker, data), _enum_or_none(Gateway, data)
        out = dict(data)
        if broker is not None:
            implied = Environment.PAPER if broker is Broker.IBKR_PAPER else Environment.LIVE
            given = data.get("environment")
            if given is not None and given != implied:
                found = _render(given)
                message = f'expected "{implied}" to agree with "broker": "{broker}", found {found}'
                raise _cross("environment", message)
            out["environment"] = implied
        environment = _enum_or_none(Environment, out, "environment")
        credentials = dict(out.get("credentials", {}))
        port = credentials.get("port")
        shorthand = broker is not None or gateway is not None
        if port is None and environment is not None and (shorthand or environment == "sim"):
            credentials["port"] = port_for(environment, gateway or Gateway.IBGATEWAY)
        elif isinstance(port, int) and shorthand and environment is not None:
            _check_port_agrees(port, environment, gateway)
        out["credentials"] = credentials
        return out

    @model_validator(mode="after")
    def _account_matches_environment(self) -> Self:
        if self.account is not None:
            problem = _account_problem(self.environment, self.account)
            if problem:
                raise _cross("account", problem)
        return self


def _enum_or_none(enum: type[_E], data: dict[str, Any], key: str = "") -> _E | None:
    value = data.get(key or enum.__name__.lower())
    try:
        return enum(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _check_port_agrees(port: int, environment: Environment, gateway: Gateway | None) -> None:
    known = _PORTS.get(port)
    if known is None:
        return  # a custom port (Docker mapping, SSH tunnel): the explicit port wins
    product, port_env = known
    sim = environment is Environment.SIM
    if port_env is environment and (gateway is None or sim or product == gateway):
        return
    wanted = port_for(environment, gateway or Gateway(product if product != "sim" else "ibgateway"))
    expected = (
        f"expected {wanted} ({port_product(wanted)}) to agree with broker/gateway/environment"
    )
    raise _cross("credentials.port", f"{expected}, found {port} ({port_product(port)})")


def _account_problem(environment: Environment, account: str) -> str:
    kind = account_kind(account)
    if environment is Environment.LIVE and kind is not AccountKind.LIVE:
        return f'expected a live account id (U...) for environment "live", found {account!r}'
    if environment is not Environment.LIVE and kind not in (AccountKind.PAPER, AccountKind.SIM):
        expected = f'expected a paper account id (DU...) for environment "{environment}"'
        return f"{expected}, found {account!r} ({kind} account)"
    return ""


# ---------------------------------------------------------------------------------------------
# Strategy files and the mandate


class TradingHours(_Model):
    """A daily window ``[start, end)`` in ``time_zone`` (DST-correct); it may wrap midnight."""

    start: TimeOfDay
    end: TimeOfDay
    time_zone: Annotated[str, AfterValidator(_time_zone)] = "US/Eastern"
    days: tuple[Weekday, ...] = WEEKDAYS[:5]

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise _cross("end", f'expected a time other than start, found "{self.end:%H:%M}"')
        return self

    def contains(self, moment: datetime) -> bool:
        """True if the aware datetime ``moment`` falls in the window on one of ``days``."""
        local = moment.astimezone(ZoneInfo(self.time_zone))
        at = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= at < self.end and WEEKDAYS[local.weekday()] in self.days
        if at >= self.start:  # evening part of a window wrapping midnight
            return WEEKDAYS[local.weekday()] in self.days
        if at < self.end:  # morning part: the window opened on the previous day
            return WEEKDAYS[(local - timedelta(days=1)).weekday()] in self.days
        return False


class Mandate(_Model):
    """The limits the gate enforces (see :mod:`ibpilot.gate` for the rules)."""

    allow_live: StrictBool = False
    allowed_symbols: Annotated[tuple[Text, ...], Field(min_length=1)]
    allowed_sec_types: Annotated[tuple[SecType, ...], Field(min_length=1)] = (SecType.STK,)
    allowed_order_types: Annotated[tuple[OrderType, ...], Field(min_length=1)] = (
        OrderType.MKT,
        OrderType.LMT,
    )
    max_order_quantity: PositiveNumber  # units (shares, contracts) per order
    max_order_notional: PositiveNumber  # currency per order: quantity x price x multiplier
    max_position: PositiveNumber  # absolute units per symbol, open orders included
    max_gross_exposure: PositiveNumber | None = None  # currency, all symbols; None: no limit
    max_daily_loss: PositiveNumber  # currency, realised + unrealised today
    flatten_on_daily_loss: StrictBool = False  # the loss limit always halts; also flatten?
    max_orders_per_minute: Annotated[StrictInt, Field(ge=1)] | None = None  # None: 10 live, 30
    trading_hours: TradingHours | None = None  # None: the exchange's liquid hours only
    price_collar_pct: PositiveNumber | None = None  # max % from the quote midpoint
    min_price: PositiveNumber | None = None
    require_quote: StrictBool = True  # refuse without a current two-sided quote
    max_quote_age_s: Annotated[StrictInt, Field(ge=1)] | None = None  # None: any non-stale

    def orders_per_minute(self, environment: Environment) -> int:
        """The orders-per-minute limit: the mandate's, else 10 on live and 30 on paper/sim."""
        if self.max_orders_per_minute is not None:
            return self.max_orders_per_minute
        return 10 if environment is Environment.LIVE else 30


class Instrument(ContractFields):
    """One instrument the strategy trades; ``symbol`` is the gate's key."""

    symbol: Text
    sec_type: SecType = SecType.STK


class StrategyConfig(_Model):
    """A strategy file: template or user class, parameters, instruments and mandate."""

    name: Text
    strategy: Annotated[str, AfterValidator(_strategy_ref)]
    params: Annotated[dict[str, JsonValue], BeforeValidator(_json_native)] = Field(
        default_factory=dict
    )  # free-form, per strategy; numbers with a fraction are floats
    instruments: Annotated[tuple[Instrument, ...], Field(min_length=1)]
    bar_size: Annotated[str, AfterValidator(_bar_size)] = "1 min"
    warmup: Annotated[str, AfterValidator(_duration)] = "1 D"
    on_stop: OnStop = OnStop.CANCEL_OPEN_ORDERS
    mandate: Mandate

    @model_validator(mode="after")
    def _instruments_within_mandate(self) -> Self:
        symbols = [instrument.symbol for instrument in self.instruments]
        for i, instrument in enumerate(self.instruments):
            at, symbol = f"instruments.{i}", instrument.symbol
            if symbol in symbols[:i]:
                raise _cross(f"{at}.symbol", f"expected each symbol once, found {symbol!r} again")
            if symbol not in self.mandate.allowed_symbols:
                expected = "expected a symbol listed in $.mandate.allowed_symbols"
                raise _cross(f"{at}.symbol", f"{expected}, found {symbol!r}")
            if instrument.sec_type not in self.mandate.allowed_sec_types:
                expected = "expected a sec_type listed in $.mandate.allowed_sec_types"
                raise _cross(f"{at}.sec_type", f"{expected}, found {instrument.sec_type.value!r}")
        return self


@dataclass(frozen=True, slots=True)
class LoadedStrategy:
    """A validated strategy file, its spec hash and the exact bytes it was loaded from."""

    config: StrategyConfig
    spec_hash: str
    raw_bytes: bytes


# ---------------------------------------------------------------------------------------------
# Loading: reading, JSON parsing and error translation live in ibpilot._config_load


def load_adapter(path: str | Path) -> AdapterConfig:
    """Read and validate an adapter file. Raises ConfigError, one line per problem."""
    return _validate(AdapterConfig, _parse(_read_bytes(path), str(path), exact=True), str(path))


def load_strategy(path: str | Path) -> LoadedStrategy:
    """Read and validate a strategy file and hash it. Raises ConfigError, one line per problem."""
    raw = _read_bytes(path)
    config = _validate(StrategyConfig, _parse(raw, str(path), exact=True), str(path))
    return LoadedStrategy(
        config=config, spec_hash=spec_hash_of_bytes(raw, str(path)), raw_bytes=raw
    )


# ---------------------------------------------------------------------------------------------
# Spec hash


def canonical_json(obj: Any) -> str:
    """The canonical form the spec hash is taken over: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(obj: Any) -> str:
    """SHA-256 hex of ``canonical_json(obj)``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8", "surrogatepass")).hexdigest()


def spec_hash_of_bytes(raw: bytes, name: str = "<strategy>") -> str:
    """The spec hash of a strategy file's bytes. Raises ConfigError if they are not JSON."""
    return spec_hash(_parse(raw, name, exact=False))


def spec_hash_of_file(path: str | Path) -> str:
    """The spec hash of the file at ``path``. Raises ConfigError (missing, unreadable, not JSON)."""
    return spec_hash_of_bytes(_read_bytes(path), str(path))


# ---------------------------------------------------------------------------------------------
# WRONG_ENVIRONMENT


def _compatible(asked: Environment, found: Environment) -> bool:
    if asked is Environment.LIVE or found is Environment.LIVE:
        return asked is found
    return True  # paper and sim are both play money


def check_environment(
    adapter: AdapterConfig, connected_account: str | None, *, file: str = "adapter.json"
) -> list[Problem]:
    """WRONG_ENVIRONMENT problems between what ``adapter`` asks for and what is connected.

    ``connected_account`` is the account id the gateway reported (managedAccounts; a
    comma-separated list is checked id by id), or None to check the port alone.  Paper and
    sim are compatible with each other; live is compatible only with live; an account id
    whose kind cannot be told is refused.  Never raises.
    """
    problems: list[Problem] = []
    environment, port = adapter.environment, adapter.credentials.port
    port_env = expected_environment(port)
    if port_env is not None and not _compatible(environment, port_env):
        message = f'environment "{environment}" but port {port} is {port_product(port)}'
        problems.append(Problem(file, "$.credentials.port", message, ErrorName.WRONG_ENVIRONMENT))
    accounts = [a.strip() for a in (connected_account or "").split(",") if a.strip()]
    for account in accounts:
        reason = _account_problem(environment, account)
        if reason:
            message = f"the gateway is logged into {account}: {reason}"
            problems.append(Problem(file, "$.environment", message, ErrorName.WRONG_ENVIRONMENT))
    if accounts and adapter.account is not None and adapter.account not in accounts:
        message = f"expected the gateway to manage {adapter.account!r}, found {', '.join(accounts)}"
        problems.append(Problem(file, "$.account", message, ErrorName.WRONG_ENVIRONMENT))
    return problems

"""The files a user writes: validation messages, the broker shorthand, the spec hash, ports."""

from __future__ import annotations

import copy
import json
import random
import re
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibpilot.config import (
    AccountKind,
    AdapterConfig,
    ConfigError,
    Environment,
    LoadedStrategy,
    Mandate,
    TradingHours,
    account_kind,
    canonical_json,
    check_environment,
    expected_environment,
    load_adapter,
    load_strategy,
    port_product,
    spec_hash,
    spec_hash_of_bytes,
    spec_hash_of_file,
)
from ibpilot.errors import ErrorName

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ADAPTER: dict[str, Any] = json.loads((EXAMPLES / "adapter.json").read_text())
STRATEGY: dict[str, Any] = json.loads((EXAMPLES / "sma_cross.json").read_text())
LINE = re.compile(r"^(adapter|my-strategy)\.json: (\$\S*|line \d+, column \d+): .+$")


def write(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / name
    text = content if isinstance(content, str) else json.dumps(content)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def adapter_errors(tmp_path: Path, content: Any) -> list[str]:
    write(tmp_path, "adapter.json", content)
    with pytest.raises(ConfigError) as caught:
        load_adapter("adapter.json")  # the working directory is tmp_path
    return _lines(caught.value)


def strategy_errors(tmp_path: Path, content: Any) -> list[str]:
    write(tmp_path, "my-strategy.json", content)
    with pytest.raises(ConfigError) as caught:
        load_strategy(Path("my-strategy.json"))
    return _lines(caught.value)


def _lines(error: ConfigError) -> list[str]:
    lines = str(error).splitlines()
    assert len(lines) == len(error.problems)
    for line in lines:
        assert "Traceback" not in line
        assert "Input should" not in line  # pydantic's own wording never leaks
        assert "pydantic" not in line
    return lines


def strategy(**mandate_changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(STRATEGY)
    doc["mandate"] |= mandate_changes
    return doc


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


# --- the example files ------------------------------------------------------------------------


def test_example_files_load() -> None:
    adapter = load_adapter(EXAMPLES / "adapter.json")
    assert adapter.credentials.port == 7497
    assert adapter.environment is Environment.PAPER
    loaded = load_strategy(EXAMPLES / "sma_cross.json")
    assert isinstance(loaded, LoadedStrategy)
    assert loaded.config.strategy == "sma_cross"
    assert loaded.config.params == {"fast": 10, "slow": 30, "quantity": 10}
    assert loaded.spec_hash == spec_hash_of_file(EXAMPLES / "sma_cross.json")
    assert loaded.raw_bytes == (EXAMPLES / "sma_cross.json").read_bytes()
    assert loaded.config.mandate.price_collar_pct == Decimal("1.5")
    assert isinstance(loaded.config.mandate.max_daily_loss, Decimal)


def test_numbers_keep_their_decimal_digits(tmp_path: Path) -> None:
    doc = strategy(max_order_notional=0.1, max_daily_loss=1e3)
    mandate = load_strategy(write(tmp_path, "s.json", doc)).config.mandate
    assert mandate.max_order_notional == Decimal("0.1")
    assert mandate.max_daily_loss == Decimal("1000")


def test_params_are_free_form_json(tmp_path: Path) -> None:
    params = {"threshold": 0.25, "nested": {"levels": [1, 2.5, "x", None, True]}}
    loaded = load_strategy(write(tmp_path, "s.json", STRATEGY | {"params": params}))
    assert loaded.config.params == params
    adapter = load_adapter(write(tmp_path, "a.json", ADAPTER | {"connect_timeout_s": 2.5}))
    assert adapter.connect_timeout_s == 2.5


def test_mandate_defaults() -> None:
    mandate = Mandate.model_validate(
        {"allowed_symbols": ["A"], "max_order_quantity": 1, "max_order_notional": 1,
         "max_position": 1, "max_daily_loss": 1}
    )  # fmt: skip
    assert mandate.allow_live is False
    assert mandate.allowed_sec_types == ("STK",)
    assert mandate.allowed_order_types == ("MKT", "LMT")
    assert mandate.require_quote is True
    assert mandate.flatten_on_daily_loss is False
    assert mandate.trading_hours is None
    assert mandate.orders_per_minute(Environment.LIVE) == 10
    assert mandate.orders_per_minute(Environment.PAPER) == 30


# --- error messages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"credentials": {"port": "seven"}},
         'adapter.json: $.credentials.port: expected an integer port 1-65535, found "seven"'),
        ({"credentials": {"port": 70000}},
         "adapter.json: $.credentials.port: expected an integer port 1-65535, found 70000"),
        ({"credentials": {"port": 7497.0}},
         "adapter.json: $.credentials.port: expected an integer port 1-65535, found 7497.0"),
        ({"credentials": {"port": 7497, "client_id": -1}},
         ("adapter.json: $.credentials.client_id: expected an integer client id 0-2147483647, "
         "found -1")),
        ({"credentials": {"port": 7497, "client_id": 2**31}},
         ("adapter.json: $.credentials.client_id: expected an integer client id 0-2147483647, "
         "found 2147483648")),
        ({"credentials": {"port": 7497, "host": ""}},
         ('adapter.json: $.credentials.host: expected a non-empty string without surrounding '
         'spaces, found ""')),
        ({"environment": "demo"},
         "adapter.json: $.environment: expected one of 'sim', 'paper' or 'live', found \"demo\""),
        ({"sec_type": "STOCK"},
         ("adapter.json: $.sec_type: expected one of 'STK', 'OPT', 'FUT', 'CASH', 'BOND', 'IND', "
         "'CFD', 'FOP', 'WAR', 'CMDTY' or 'FUND', found \"STOCK\"")),
        ({"rate_limit_ms": -1},
         ("adapter.json: $.rate_limit_ms: expected an integer number of milliseconds >= 0, "
         "found -1")),
        ({"rate_limit_ms": "1000"},
         ('adapter.json: $.rate_limit_ms: expected an integer number of milliseconds >= 0, '
         'found "1000"')),
        ({"adapter": "alpaca"}, "adapter.json: $.adapter: expected 'ibkr', found \"alpaca\""),
        ({"currency": "usd"},
         ('adapter.json: $.currency: expected a 3-letter currency code such as "USD", '
         'found "usd"')),
        ({"credentials": []}, "adapter.json: $.credentials: expected an object, found []"),
        ({"credentials": {"port": 7497, "hots": "x"}},
         "adapter.json: $.credentials.hots: unknown key (did you mean 'host'?)"),
        ({"enviroment": "paper"},
         "adapter.json: $.enviroment: unknown key (did you mean 'environment'?)"),
        ({"connect_timeout_s": True},
         ("adapter.json: $.connect_timeout_s: expected a number of seconds > 0 and <= 300, "
         "found true")),
    ],
)  # fmt: skip
def test_adapter_problems_name_path_expected_and_found(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    lines = adapter_errors(tmp_path, ADAPTER | change)
    assert expected in lines
    assert all(LINE.match(line) for line in lines)


def test_every_problem_is_reported_one_line_each(tmp_path: Path) -> None:
    bad = {"credentials": {"port": "x", "client_id": "y"}, "environment": 1, "extra": 1}
    lines = adapter_errors(tmp_path, bad)
    assert [line.split(": ")[1] for line in lines] == [
        "$.credentials.port",
        "$.credentials.client_id",
        "$.environment",
        "$.extra",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"max_order_qty": 5},
         "$.mandate.max_order_qty: unknown key (did you mean 'max_order_quantity'?)"),
        ({"max_position": -1}, "$.mandate.max_position: expected a number > 0, found -1"),
        ({"max_position": 0}, "$.mandate.max_position: expected a number > 0, found 0"),
        ({"max_daily_loss": "100"}, '$.mandate.max_daily_loss: expected a number > 0, found "100"'),
        ({"allow_live": "yes"}, '$.mandate.allow_live: expected true or false, found "yes"'),
        ({"allow_live": 1}, "$.mandate.allow_live: expected true or false, found 1"),
        ({"allowed_symbols": []},
         "$.mandate.allowed_symbols: expected a list of at least one symbol, found []"),
        ({"allowed_sec_types": ["STOCK"]},
         ("$.mandate.allowed_sec_types[0]: expected one of 'STK', 'OPT', 'FUT', 'CASH', 'BOND', "
         "'IND', 'CFD', 'FOP', 'WAR', 'CMDTY' or 'FUND', found \"STOCK\"")),
        ({"allowed_order_types": ["MARKET"]},
         ("$.mandate.allowed_order_types[0]: expected one of 'MKT', 'LMT', 'STP', 'STP LMT', "
         "'MOC', 'LOC', 'MIT' or 'LIT', found \"MARKET\"")),
        ({"price_collar_pct": None, "min_price": -2},
         "$.mandate.min_price: expected a number > 0, found -2"),
        ({"max_orders_per_minute": 0},
         "$.mandate.max_orders_per_minute: expected an integer >= 1, found 0"),
        ({"trading_hours": {"start": "9:30", "end": "16:00"}},
         '$.mandate.trading_hours.start: expected a time "HH:MM" (24-hour), found "9:30"'),
        ({"trading_hours": {"start": "09:30", "end": "09:30"}},
         '$.mandate.trading_hours.end: expected a time other than start, found "09:30"'),
        ({"trading_hours": {"start": "09:30", "end": "16:00", "time_zone": "Mars/Base"}},
         ('$.mandate.trading_hours.time_zone: expected an IANA time zone such as "US/Eastern" or '
         '"Europe/London", found "Mars/Base"')),
        ({"trading_hours": {"start": "09:30", "end": "16:00", "days": ["MONDAY"]}},
         ("$.mandate.trading_hours.days[0]: expected 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT' or "
         "'SUN', found \"MONDAY\"")),
        ({"trading_hours": {"start": "09:30", "ende": "16:00"}},
         "$.mandate.trading_hours.ende: unknown key (did you mean 'end'?)"),
    ],
)  # fmt: skip
def test_mandate_problems_name_path_expected_and_found(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    lines = strategy_errors(tmp_path, strategy(**change))
    assert f"my-strategy.json: {expected}" in lines


def test_a_missing_limit_is_named(tmp_path: Path) -> None:
    doc = strategy()
    del doc["mandate"]["max_daily_loss"]
    assert strategy_errors(tmp_path, doc) == [
        "my-strategy.json: $.mandate.max_daily_loss: required key missing: expected a number > 0"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"strategy": "my pkg"},
         ('$.strategy: expected a template name such as "sma_cross" or "package.module:Class", '
         'found "my pkg"')),
        ({"bar_size": "1 minute"}, "$.bar_size: expected an IB bar size ('1 secs', "),
        ({"warmup": "1D"}, ('$.warmup: expected an IB duration such as "1 D", "3600 S", "2 W", '
         '"1 M" or "1 Y", found "1D"')),
        ({"on_stop": "flatten"},
         ("$.on_stop: expected one of 'cancel_open_orders' or 'leave_open_orders', "
         'found "flatten"')),
        ({"instruments": []},
         "$.instruments: expected a list of at least one instrument object, found []"),
        ({"instruments": [{"symbol": "AAPL", "secType": "STK"}]},
         "$.instruments[0].secType: unknown key (did you mean 'sec_type'?)"),
        ({"instruments": [{"symbol": "MSFT"}]},
         ("$.instruments[0].symbol: expected a symbol listed in $.mandate.allowed_symbols, "
         "found 'MSFT'")),
        ({"instruments": [{"symbol": "AAPL", "sec_type": "OPT"}]},
         ("$.instruments[0].sec_type: expected a sec_type listed in $.mandate.allowed_sec_types, "
         "found 'OPT'")),
        ({"instruments": [{"symbol": "AAPL"}, {"symbol": "AAPL"}]},
         "$.instruments[1].symbol: expected each symbol once, found 'AAPL' again"),
        ({"instruments": [{"symbol": "AAPL", "last_trade_date_or_contract_month": "2026-06"}]},
         ('$.instruments[0].last_trade_date_or_contract_month: expected "YYYYMM" or "YYYYMMDD", '
         'found "2026-06"')),
        ({"strategee": "x"}, "$.strategee: unknown key (did you mean 'strategy'?)"),
        ({"zzz": 1}, ("$.zzz: unknown key (expected one of: name, strategy, params, instruments, "
         "bar_size, warmup, on_stop, mandate)")),
    ],
)  # fmt: skip
def test_strategy_problems_name_path_expected_and_found(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    lines = strategy_errors(tmp_path, STRATEGY | change)
    assert any(line.startswith(f"my-strategy.json: {expected}") for line in lines), lines


def test_user_classes_are_accepted_as_strategies(tmp_path: Path) -> None:
    doc = STRATEGY | {"strategy": "my_pkg.strategies:MeanReversion"}
    loaded = load_strategy(write(tmp_path, "s.json", doc))
    assert loaded.config.strategy == "my_pkg.strategies:MeanReversion"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{\n  "adapter": "ibkr",\n  "credentials": }',
         "adapter.json: line 3, column 18: invalid JSON: Expecting value"),
        ("", "adapter.json: line 1, column 1: invalid JSON: Expecting value"),
        ('{"adapter": "ibkr", "adapter": "ibkr"}',
         "adapter.json: duplicate key 'adapter': expected each key once per object"),
        ('{"rate_limit_ms": NaN}', "adapter.json: invalid JSON: NaN is not a JSON number"),
        ("[1, 2]", "adapter.json: $: expected an object, found [1, 2]"),
        (b"\xff\xfe{}", "adapter.json: expected UTF-8 text, found byte 0xff at offset 0"),
    ],
)  # fmt: skip
def test_unreadable_files_say_where(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "adapter.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as caught:
        load_adapter(path)
    assert str(caught.value) == f"{path}: {expected.removeprefix('adapter.json: ')}"


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.json: file not found$"):
        load_strategy(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="file not found"):
        spec_hash_of_file(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_adapter(tmp_path)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "adapter.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ADAPTER).encode())
    assert load_adapter(path).credentials.port == 7497


# --- the broker shorthand ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("broker", "gateway", "port", "environment"),
    [
        ("ibkr-paper", "tws", 7497, "paper"),
        ("ibkr-live", "tws", 7496, "live"),
        ("ibkr-paper", "ibgateway", 4002, "paper"),
        ("ibkr-live", "ibgateway", 4001, "live"),
        ("ibkr-paper", None, 4002, "paper"),  # the gateway defaults to IB Gateway
    ],
)
def test_broker_and_gateway_pick_port_and_environment(
    broker: str, gateway: str | None, port: int, environment: str
) -> None:
    doc: dict[str, Any] = {"broker": broker, "credentials": {"client_id": 7}}
    if gateway:
        doc["gateway"] = gateway
    adapter = AdapterConfig.model_validate(doc)
    assert adapter.credentials.port == port
    assert adapter.environment == environment
    assert adapter.credentials.client_id == 7
    assert adapter.credentials.host == "127.0.0.1"


def test_shorthand_without_credentials_and_gateway_with_environment() -> None:
    assert AdapterConfig.model_validate({"broker": "ibkr-live"}).credentials.port == 4001
    doc = {"gateway": "tws", "environment": "paper"}
    assert AdapterConfig.model_validate(doc).credentials.port == 7497
    assert AdapterConfig.model_validate({"environment": "sim"}).credentials.port == 4102


def test_an_explicit_port_wins_when_it_agrees() -> None:
    doc = {"broker": "ibkr-paper", "gateway": "tws", "credentials": {"port": 7497}}
    assert AdapterConfig.model_validate(doc).credentials.port == 7497
    docker = {"broker": "ibkr-paper", "credentials": {"port": 4004}}  # a socat relay
    assert AdapterConfig.model_validate(docker).credentials.port == 4004


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"broker": "ibkr-paper", "credentials": {"port": 7496}},
         ("$.credentials.port: expected 7497 (TWS (paper)) to agree with "
         "broker/gateway/environment, found 7496 (TWS (live))")),
        ({"broker": "ibkr-live", "gateway": "tws", "credentials": {"port": 4001}},
         ("$.credentials.port: expected 7496 (TWS (live)) to agree with broker/gateway/environment,"
         " found 4001 (IB Gateway (live))")),
        ({"broker": "ibkr-live", "environment": "paper"},
         '$.environment: expected "live" to agree with "broker": "ibkr-live", found "paper"'),
        ({"broker": "ibkr-demo"},
         "$.broker: expected one of 'ibkr-paper' or 'ibkr-live', found \"ibkr-demo\""),
        ({"environment": "paper"},
         ('$.credentials.port: required key missing: expected an integer port 1-65535 (or give '
         '"broker"/"gateway" to pick the default port)')),
        ({"credentials": {"port": 4002}},
         ('$.environment: required key missing: expected "sim", "paper" or "live" (or "broker": '
         '"ibkr-paper" / "ibkr-live")')),
        ({"environment": "sim", "account": "U1234567"},
         ('$.account: expected a paper account id (DU...) for environment "sim", found '
         "'U1234567' (live account)")),
        ({"broker": "ibkr-live", "account": "DU1234567"},
         ('$.account: expected a live account id (U...) for environment "live", found '
         "'DU1234567'")),
    ],
)  # fmt: skip
def test_contradictions_are_refused(tmp_path: Path, doc: dict[str, Any], expected: str) -> None:
    assert f"adapter.json: {expected}" in adapter_errors(tmp_path, doc)


# --- ports, accounts, WRONG_ENVIRONMENT --------------------------------------------------------


def test_port_knowledge() -> None:
    assert port_product(7496) == "TWS (live)"
    assert port_product(7497) == "TWS (paper)"
    assert port_product(4001) == "IB Gateway (live)"
    assert port_product(4002) == "IB Gateway (paper)"
    assert port_product(4102) == "ibpilot sim"
    assert port_product(1234) == "unknown"
    assert expected_environment(4001) is Environment.LIVE
    assert expected_environment(7497) is Environment.PAPER
    assert expected_environment(4102) is Environment.SIM
    assert expected_environment(4004) is None


@pytest.mark.parametrize(
    ("account", "kind"),
    [
        ("DU1234567", AccountKind.PAPER),
        ("DU0000001", AccountKind.PAPER),  # the simulator's default
        ("DF123456", AccountKind.PAPER),
        ("U1234567", AccountKind.LIVE),
        ("u1234567", AccountKind.LIVE),
        ("F1234567", AccountKind.LIVE),
        ("SIM001", AccountKind.SIM),
        ("XYZ", AccountKind.UNKNOWN),
        ("", AccountKind.UNKNOWN),
    ],
)
def test_account_kind(account: str, kind: AccountKind) -> None:
    assert account_kind(account) is kind


def adapter(environment: str, port: int, account: str | None = None) -> AdapterConfig:
    doc: dict[str, Any] = {"environment": environment, "credentials": {"port": port}}
    return AdapterConfig.model_validate(doc | ({"account": account} if account else {}))


@pytest.mark.parametrize(
    ("environment", "port", "connected", "paths"),
    [
        ("paper", 7497, "DU1234567", []),
        ("paper", 4002, None, []),
        ("sim", 4102, "DU0000001", []),
        ("paper", 4102, "DU0000001", []),  # paper config against the simulator: play money
        ("sim", 4002, "DU1234567", []),
        ("live", 7496, "U1234567", []),
        ("live", 4001, "U1,U2", []),
        ("live", 5555, "U1234567", []),  # a custom port is judged by its account
        ("paper", 7496, None, ["$.credentials.port"]),
        ("paper", 4001, "DU1234567", ["$.credentials.port"]),
        ("paper", 4002, "U1234567", ["$.environment"]),
        ("paper", 4002, "XYZ", ["$.environment"]),
        ("sim", 4102, "U1234567", ["$.environment"]),
        ("live", 7497, "DU1234567", ["$.credentials.port", "$.environment"]),
        ("live", 4102, None, ["$.credentials.port"]),
        ("live", 4001, "U1,DU2", ["$.environment"]),
    ],
)
def test_check_environment(
    environment: str, port: int, connected: str | None, paths: list[str]
) -> None:
    problems = check_environment(adapter(environment, port), connected)
    assert [problem.path for problem in problems] == paths
    for problem in problems:
        assert problem.name is ErrorName.WRONG_ENVIRONMENT
        assert str(problem).startswith(f"adapter.json: {problem.path}: ")


def test_check_environment_wants_the_expected_account() -> None:
    expecting = adapter("paper", 4002, account="DU1111111")
    assert check_environment(expecting, "DU1111111") == []
    problems = check_environment(expecting, "DU2222222", file="conf/adapter.json")
    assert [str(p) for p in problems] == [
        "conf/adapter.json: $.account: expected the gateway to manage 'DU1111111', found DU2222222"
    ]


def test_trading_hours_follow_daylight_saving_time() -> None:
    hours = TradingHours.model_validate({"start": "09:30", "end": "16:00"})
    assert hours.contains(datetime(2026, 1, 5, 14, 30, tzinfo=UTC))  # EST
    assert not hours.contains(datetime(2026, 1, 5, 13, 30, tzinfo=UTC))
    assert hours.contains(datetime(2026, 7, 6, 13, 30, tzinfo=UTC))  # EDT
    assert not hours.contains(datetime(2026, 7, 6, 20, 0, tzinfo=UTC))


# --- the spec hash ----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
objects = st.dictionaries(st.text(max_size=6), values, max_size=6)


def _shuffled(value: Any, rnd: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {key: _shuffled(inner, rnd) for key, inner in items}
    if isinstance(value, list):
        return [_shuffled(inner, rnd) for inner in value]
    return value


def _dumped(value: Any, rnd: random.Random) -> bytes:
    indent = rnd.choice([None, 0, 2, "\t"])
    separators = rnd.choice([(",", ":"), (", ", ": "), (" ,", " : ")])
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=rnd.random() < 0.5)
    return ("\n  " * rnd.randint(0, 2) + text + " \n").encode()


def _changed(value: Any) -> Any:
    if value is None:
        return 0
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return 1.0 if value == 0 else -value
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, None]
    return {**value, "\x00new": None}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, inner in items:
        found += _paths(inner, (*prefix, key))
    return found


def _mutated(obj: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    if not path:
        return _changed(result)  # type: ignore[no-any-return]
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = _changed(parent[path[-1]])
    return result


@settings(max_examples=200)
@given(objects, st.randoms(use_true_random=False))
def test_spec_hash_ignores_whitespace_and_key_order(
    obj: dict[str, Any], rnd: random.Random
) -> None:
    reference = spec_hash(obj)
    assert spec_hash_of_bytes(_dumped(_shuffled(obj, rnd), rnd)) == reference
    assert reference == spec_hash(json.loads(canonical_json(obj)))
    assert re.fullmatch(r"[0-9a-f]{64}", reference)


@settings(max_examples=200)
@given(objects, st.data())
def test_spec_hash_changes_with_any_value(obj: dict[str, Any], data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_paths(obj)))
    changed = _mutated(obj, path)
    assert canonical_json(changed) != canonical_json(obj)
    assert spec_hash(changed) != spec_hash(obj)


def test_spec_hash_of_the_example_file(tmp_path: Path) -> None:
    original = spec_hash_of_file(EXAMPLES / "sma_cross.json")
    reformatted = tmp_path / "reformatted.json"
    reformatted.write_text(json.dumps(dict(reversed(STRATEGY.items())), indent=7))
    assert spec_hash_of_file(reformatted) == original
    tighter = strategy(max_daily_loss=249)
    assert spec_hash_of_file(write(tmp_path, "tighter.json", tighter)) != original
    assert load_strategy(reformatted).spec_hash == original


# --- alerts -----------------------------------------------------------------------------------


def test_alerts_default_to_the_log_only_with_the_north_american_schedule() -> None:
    alerts = load_adapter(EXAMPLES / "adapter.json").alerts
    assert alerts.webhook_url is None
    assert (alerts.timeout_s, alerts.retries, alerts.retry_backoff_s) == (5, 3, 1)
    assert (alerts.cooldown_s, alerts.queue_size) == (300, 100)
    assert alerts.connection_alert_after_s == 300
    assert alerts.schedule.region == "na"
    assert alerts.schedule.gateway_restart_time is None
    assert alerts.schedule.gateway_time_zone == "US/Eastern"
    assert alerts.schedule.gateway_restart_grace_s == 120


def test_alerts_settings_load(tmp_path: Path) -> None:
    url = "https://hooks.example.com/services/T0/B0/s3cr3t"
    section = {
        "webhook_url": url, "timeout_s": 2.5, "retries": 0, "retry_backoff_s": 0,
        "cooldown_s": 60, "queue_size": 10, "connection_alert_after_s": 120,
        "schedule": {"region": "asia", "gateway_restart_time": "23:45",
                     "gateway_time_zone": "Asia/Hong_Kong", "gateway_restart_grace_s": 90},
    }  # fmt: skip
    adapter = load_adapter(write(tmp_path, "a.json", ADAPTER | {"alerts": section}))
    alerts = adapter.alerts
    assert alerts.webhook_url == url
    assert "s3cr3t" not in repr(adapter)
    assert (alerts.timeout_s, alerts.retries, alerts.cooldown_s) == (2.5, 0, 60)
    assert alerts.schedule.region == "asia"
    assert alerts.schedule.gateway_restart_time == time(23, 45)


URL = "an http:// or https:// URL"


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({"webhook_url": "ftp://h/s3cr3t"}, ".webhook_url", f'expected {URL}, found scheme "ftp"'),
        ({"webhook_url": "https:///s3cr3t"}, ".webhook_url",
         "expected a URL with a host, found https:// without one"),
        ({"webhook_url": "http://host/s3cr3t "}, ".webhook_url",
         "expected a URL without spaces or control characters"),
        ({"webhook_url": 5}, ".webhook_url", f"expected {URL} (a string), found 5"),
        ({"timeout_s": 0}, ".timeout_s", "expected a number of seconds > 0 and <= 60, found 0"),
        ({"timeout_s": "5"}, ".timeout_s",
         'expected a number of seconds > 0 and <= 60, found "5"'),
        ({"retries": 11}, ".retries", "expected an integer 0-10, found 11"),
        ({"retries": 1.5}, ".retries", "expected an integer 0-10, found 1.5"),
        ({"cooldown_s": -1}, ".cooldown_s",
         "expected a number of seconds >= 0 and <= 86400, found -1"),
        ({"queue_size": 0}, ".queue_size", "expected an integer 1-10000, found 0"),
        ({"connection_alert_after_s": True}, ".connection_alert_after_s",
         "expected a number of seconds > 0 and <= 86400, found true"),
        ({"cooldown": 60}, ".cooldown", "unknown key (did you mean 'cooldown_s'?)"),
        ({"schedule": {"region": "us"}}, ".schedule.region",
         "expected one of 'na', 'eu' or 'asia', found \"us\""),
        ({"schedule": {"gateway_restart_time": "11:45 PM"}}, ".schedule.gateway_restart_time",
         'expected a time "HH:MM" (24-hour), found "11:45 PM"'),
        ({"schedule": {"gateway_time_zone": "Eastern"}}, ".schedule.gateway_time_zone",
         'expected an IANA time zone such as "US/Eastern" or "Europe/London", found "Eastern"'),
        ({"schedule": {"gateway_restart_grace_s": 0}}, ".schedule.gateway_restart_grace_s",
         "expected an integer number of seconds 1-3600, found 0"),
        ({"schedule": []}, ".schedule", "expected an object, found []"),
        ("slack", "", 'expected an object, found "slack"'),
    ],
)  # fmt: skip
def test_alerts_problems_name_path_expected_and_found(
    tmp_path: Path, section: Any, path: str, message: str
) -> None:
    lines = adapter_errors(tmp_path, ADAPTER | {"alerts": section})
    assert lines == [f"adapter.json: $.alerts{path}: {message}"]
    assert all(LINE.match(line) for line in lines)
    assert "s3cr3t" not in "\n".join(lines)

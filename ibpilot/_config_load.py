"""Reading a user's file into a config model, or one line per problem (private to config).

JSON is parsed with exact decimals; duplicate keys, ``NaN`` and ``Infinity`` are refused.
Pydantic's errors are translated into :class:`~ibpilot.config.Problem` lines naming the JSON
path, what was expected (by field, constraint or type) and what was found; an unknown key gets
a did-you-mean.  The value checks the models' field types use live here too: they raise the two
error kinds the translation understands (``ibpilot_type``: a value of the wrong shape;
``ibpilot_cross``: a cross-field problem reported at another path).

:mod:`ibpilot.config` imports this module, so its names are imported here at call time only.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

if TYPE_CHECKING:
    from ibpilot.config import Problem

# ---------------------------------------------------------------------------------------------
# Value checks and the error kinds they raise


def _fail(expected: str) -> PydanticCustomError:
    return PydanticCustomError("ibpilot_type", "expected {expected}", {"expected": expected})


def _cross(at: str, message: str) -> PydanticCustomError:
    """A cross-field problem reported at ``at`` (dotted, relative to the failing model)."""
    return PydanticCustomError("ibpilot_cross", "{message}", {"at": at, "message": message})


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise _fail("a number")
    return value


def _text(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise _fail("a non-empty string without surrounding spaces")
    return value


def _hhmm(value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise _fail('a time "HH:MM" (24-hour)')
    return time.fromisoformat(value)


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail('an IANA time zone such as "US/Eastern" or "Europe/London"') from None
    return value


def _strategy_ref(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*|[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", value):
        raise _fail('a template name such as "sma_cross" or "package.module:Class"')
    return value


def _duration(value: str) -> str:
    if not re.fullmatch(r"[1-9]\d* [SDWMY]", value):
        raise _fail('an IB duration such as "1 D", "3600 S", "2 W", "1 M" or "1 Y"')
    return value


def _json_native(value: Any) -> Any:
    """Strategy parameters as plain JSON values: exact decimals back to float."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: _json_native(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_json_native(inner) for inner in value]
    return value


# ---------------------------------------------------------------------------------------------
# Loading: JSON with exact decimals, then validation translated into one line per problem

_M = TypeVar("_M", bound=BaseModel)

_EXPECTED_BY_TYPE = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string",
    "decimal_type": "a number", "decimal_parsing": "a number", "float_type": "a number",
    "float_parsing": "a number", "finite_number": "a finite number", "dict_type": "an object",
    "model_type": "an object", "model_attributes_type": "an object", "list_type": "a list",
    "tuple_type": "a list",
}  # fmt: skip
_CONSTRAINTS = {
    "greater_than": "a number > {gt}", "greater_than_equal": "a number >= {ge}",
    "less_than": "a number < {lt}", "less_than_equal": "a number <= {le}",
    "too_short": "at least {min_length} item(s)", "too_long": "at most {max_length} item(s)",
    "enum": "one of {expected}", "literal_error": "{expected}", "ibpilot_type": "{expected}",
}  # fmt: skip
_EXPECTED_BY_FIELD = {
    "port": "an integer port 1-65535",
    "client_id": "an integer client id 0-2147483647",  # = config.MAX_CLIENT_ID
    "currency": 'a 3-letter currency code such as "USD"',
    "last_trade_date_or_contract_month": '"YYYYMM" or "YYYYMMDD"',
    "rate_limit_ms": "an integer number of milliseconds >= 0",
    "connect_timeout_s": "a number of seconds > 0 and <= 300",
    "max_orders_per_minute": "an integer >= 1",
    "max_quote_age_s": "an integer number of seconds >= 1",
    "allowed_symbols": "a list of at least one symbol",
    "instruments": "a list of at least one instrument object",
    **dict.fromkeys(
        ("max_order_quantity", "max_order_notional", "max_position", "max_daily_loss"),
        "a number > 0",
    ),
    **dict.fromkeys(("name", "symbol"), "a non-empty string without surrounding spaces"),
    **dict.fromkeys(("mandate", "credentials", "alerts", "schedule"), "an object"),
    **dict.fromkeys(("start", "end"), 'a time "HH:MM" (24-hour)'),
    "strategy": 'a template name such as "sma_cross" or "package.module:Class"',
    "timeout_s": "a number of seconds > 0 and <= 60",
    "retries": "an integer 0-10",
    "retry_backoff_s": "a number of seconds >= 0 and <= 60",
    "cooldown_s": "a number of seconds >= 0 and <= 86400",
    "queue_size": "an integer 1-10000",
    "connection_alert_after_s": "a number of seconds > 0 and <= 86400",
    "gateway_restart_grace_s": "an integer number of seconds 1-3600",
    "gateway_restart_time": 'a time "HH:MM" (24-hour)',
    "webhook_url": "an http:// or https:// URL (a string)",
}
_MISSING_HINTS = {
    "port": 'an integer port 1-65535 (or give "broker"/"gateway" to pick the default port)',
    "environment": '"sim", "paper" or "live" (or "broker": "ibkr-paper" / "ibkr-live")',
}
_NO_FIELD_OVERRIDE = {"enum", "literal_error"}


class _BadJson(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _BadJson(f"duplicate key {key!r}: expected each key once per object")
        out[key] = value
    return out


def _no_constant(token: str) -> Any:
    raise _BadJson(f"invalid JSON: {token} is not a JSON number")


def _parse(raw: bytes, name: str, *, exact: bool) -> Any:
    """JSON from ``raw``; floats as Decimal when ``exact``. Raises ConfigError."""
    from ibpilot.config import ConfigError, Problem  # noqa: PLC0415 (config imports this module)

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        found = f"found byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        raise ConfigError([Problem(name, "", f"expected UTF-8 text, {found}")]) from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constant,
            parse_float=Decimal if exact else float,
        )
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ConfigError([Problem(name, where, f"invalid JSON: {exc.msg}")]) from None
    except _BadJson as exc:
        raise ConfigError([Problem(name, "", str(exc))]) from None


def _read_bytes(path: str | Path) -> bytes:
    from ibpilot.config import ConfigError, Problem  # noqa: PLC0415 (config imports this module)

    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), "", "file not found")]) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([Problem(str(path), "", f"cannot read the file: {reason}")]) from None


def _validate(model: type[_M], data: Any, name: str) -> _M:
    from ibpilot.config import ConfigError  # noqa: PLC0415 (config imports this module)

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # a list whose items failed also reports "too short": only the items' errors are useful
        locs = [tuple(error["loc"]) for error in errors]
        problems = [
            _problem(name, error, model)
            for error, loc in zip(errors, locs, strict=True)
            if error["type"] != "too_short" or not any(o[: len(loc)] == loc != o for o in locs)
        ]
        raise ConfigError(problems) from None


def _json_path(loc: Sequence[int | str]) -> str:
    parts = ["$"]
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif re.fullmatch(r"[A-Za-z_]\w*", part):
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(parts)


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else str(value)


def _render(value: Any) -> str:
    """A found value as the user wrote it (JSON), shortened to one readable line."""
    text = str(value) if isinstance(value, Decimal) else json.dumps(value, default=_plain)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part)
        current = None if field is None else _find_model(field.annotation)
    return current


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _unknown_key(model: type[BaseModel], loc: Sequence[int | str]) -> str:
    parent = _model_at(model, loc[:-1])
    fields = list(parent.model_fields) if parent is not None else []
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return "unknown key (expected one of: " + ", ".join(fields) + ")"


def _expected(error: ErrorDetails) -> str:
    kind, loc, ctx = error["type"], error["loc"], error.get("ctx", {})
    field = loc[-1] if loc and isinstance(loc[-1], str) else ""
    if field in _EXPECTED_BY_FIELD and kind not in _NO_FIELD_OVERRIDE:
        return _EXPECTED_BY_FIELD[field]
    if kind in _CONSTRAINTS:
        return _CONSTRAINTS[kind].format(**ctx)
    return _EXPECTED_BY_TYPE.get(kind, "a valid value (" + error["msg"].replace("\n", " ") + ")")


def _problem(name: str, error: ErrorDetails, model: type[BaseModel]) -> Problem:
    from ibpilot.config import Problem  # noqa: PLC0415 (config imports this module)

    kind, loc = error["type"], tuple(error["loc"])
    if kind == "ibpilot_cross":
        ctx = error.get("ctx", {})
        at = tuple(int(p) if p.isdigit() else p for p in str(ctx["at"]).split("."))
        return Problem(name, _json_path(loc + at), str(ctx["message"]))
    path = _json_path(loc)
    if kind == "missing":
        field = str(loc[-1]) if loc else ""
        expected = _MISSING_HINTS.get(field, _EXPECTED_BY_FIELD.get(field, ""))
        return Problem(
            name, path, "required key missing" + (f": expected {expected}" * bool(expected))
        )
    if kind == "extra_forbidden":
        return Problem(name, path, _unknown_key(model, loc))
    return Problem(name, path, f"expected {_expected(error)}, found {_render(error['input'])}")

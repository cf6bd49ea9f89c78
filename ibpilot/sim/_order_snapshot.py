"""JSON-safe dicts of the order model (``--state FILE``): specs, orders, executions.

Decimals become strings, enums their wire strings, instruments ``{"con_id", "exchange"}``
(looked up again in reference data on restore).  Field sets follow the dataclasses, so a
field added later round-trips without code here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from decimal import Decimal
from typing import Any, TypeVar

from ibpilot.sim.orders import Execution, OrderSpec, OrderStatus, WorkingOrder
from ibpilot.sim.refdata import Instrument

_T = TypeVar("_T", OrderSpec, Execution)
Lookup = Callable[[int], Instrument]


def _decimal_fields(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls) if "Decimal" in str(f.type))


_DECIMALS = {cls: _decimal_fields(cls) for cls in (OrderSpec, Execution, WorkingOrder)}


def _plain(obj: Any, cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cls):
        value = getattr(obj, f.name)
        out[f.name] = str(value) if isinstance(value, Decimal) else value
    return out


def _build(cls: type[_T], data: dict[str, Any]) -> _T:
    decimals = _DECIMALS[cls]
    kwargs: dict[str, Any] = {
        f.name: Decimal(data[f.name]) if f.name in decimals else data[f.name]
        for f in fields(cls)
        if f.name in data
    }
    return cls(**kwargs)


def spec_to_dict(spec: OrderSpec) -> dict[str, Any]:
    out = _plain(spec, OrderSpec)
    out["raw"] = dict(spec.raw)
    return out


def spec_from_dict(data: dict[str, Any]) -> OrderSpec:
    return _build(OrderSpec, data)


def execution_to_dict(ex: Execution) -> dict[str, Any]:
    return _plain(ex, Execution)


def execution_from_dict(data: dict[str, Any]) -> Execution:
    return _build(Execution, data)


def inst_to_dict(inst: Instrument) -> dict[str, Any]:
    return {"con_id": inst.con_id, "exchange": inst.exchange}


def inst_from_dict(data: dict[str, Any], lookup: Lookup) -> Instrument:
    inst = lookup(int(data["con_id"]))
    return inst if inst.exchange == data["exchange"] else replace(inst, exchange=data["exchange"])


def order_to_dict(o: WorkingOrder) -> dict[str, Any]:
    out = _plain(o, WorkingOrder)
    out["spec"] = spec_to_dict(o.spec)
    out["inst"] = inst_to_dict(o.inst)
    out["status"] = o.status.value
    return out


def order_from_dict(data: dict[str, Any], lookup: Lookup) -> WorkingOrder:
    decimals = _DECIMALS[WorkingOrder]
    kwargs: dict[str, Any] = {}
    for f in fields(WorkingOrder):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "spec":
            value = spec_from_dict(value)
        elif f.name == "inst":
            value = inst_from_dict(value, lookup)
        elif f.name == "status":
            value = OrderStatus(value)
        elif f.name in decimals:
            value = Decimal(value)
        kwargs[f.name] = value
    return WorkingOrder(**kwargs)

"""What IB checks before it accepts an order, and the texts it answers with (pure).

Two kinds of refusal (see ``matching.py``):

* *not accepted*: an error only, no order record (codes 321, 103, 104, 105, 110, 387, 434);
* *rejected*: the order exists with status Inactive, and error 201 "Order rejected -
  Reason: <text>" follows (the reasons of :func:`reject_reason` and the engine's own:
  margin, configured faults, parent problems).
"""

from __future__ import annotations

from ibpilot.sim._order_hours import parse_ib_time
from ibpilot.sim._triggers import AUCTIONS, conforms
from ibpilot.sim.orders import OrderSpec, OrderType, TimeInForce
from ibpilot.sim.refdata import Instrument

READ_ONLY = (
    321,
    "Error validating request:-'bh' : cause - The API interface is currently in Read-Only mode.",
)
INVALID_ACCOUNT = 321, "Error validating request.-'cq' : cause - Invalid account code"
DUPLICATE_ID = 103, "Duplicate order id"
MODIFY_FILLED = 104, "Can't modify a filled order"
MODIFY_MISMATCH = 105, "Order being modified does not match original order."
BAD_TICK = 110, "The price does not conform to the minimum price variation for this contract."
BAD_TYPE = 387, "Unsupported order type for this exchange and security type."
ZERO_SIZE = 434, "The order size cannot be zero"
REJECTED = 201  # "Order rejected - Reason: <text>"
CANCELLED = 202, "Order Canceled - reason:"


def rejected_text(reason: str) -> str:
    return f"Order rejected - Reason: {reason}"


def not_found_text(order_id: int) -> str:
    return f"OrderId {order_id} that needs to be cancelled is not found."


def cancel_pending_text(perm_id: int) -> str:
    return f"Cancel attempted when order is not in a cancellable state. Order permId ={perm_id}"


def not_cancellable_text(order_id: int, state: str) -> str:
    return f"OrderId {order_id} that needs to be cancelled can not be cancelled, state: {state}."


_KNOWN_TYPES = frozenset(t.value for t in OrderType)
_STOCK_ONLY = AUCTIONS | {OrderType.MIDPRICE}
_NEEDS_LIMIT = frozenset({OrderType.LMT, OrderType.STP_LMT, OrderType.LIT, OrderType.LOC})
_NEEDS_AUX = frozenset({OrderType.STP, OrderType.STP_LMT, OrderType.MIT, OrderType.LIT})
_TRAILS = frozenset({OrderType.TRAIL, OrderType.TRAIL_LIMIT})


def check_spec(spec: OrderSpec, inst: Instrument) -> tuple[int, str] | None:
    """(code, text) when IB would not accept the order at all, else None."""
    if spec.total_quantity <= 0:
        return ZERO_SIZE
    typ = spec.order_type
    if typ not in _KNOWN_TYPES:
        return BAD_TYPE
    if typ in _STOCK_ONLY and inst.sec_type != "STK":
        return BAD_TYPE
    if spec.tif == TimeInForce.OPG and (typ not in ("MKT", "LMT") or inst.sec_type != "STK"):
        return BAD_TYPE
    for price in _prices(spec):
        if price is not None and not conforms(price, inst.min_tick):
            return BAD_TICK
    return None


def _prices(spec: OrderSpec) -> list[float | None]:
    """The prices that must be whole ticks (a percentage trail is not a price)."""
    out = [spec.lmt_price, spec.trail_stop_price, spec.lmt_price_offset]
    if spec.order_type != OrderType.TRAIL or spec.trailing_percent is None:
        out.append(spec.aux_price)
    return out


def reject_reason(spec: OrderSpec, inst: Instrument) -> str | None:
    """A 201 reason that depends on the order alone, else None."""
    if inst.sec_type == "IND":
        return "Index contracts are not tradable"
    return _missing_price(spec) or _tif_problem(spec)


def _missing_price(spec: OrderSpec) -> str | None:
    typ = spec.order_type
    if typ in _NEEDS_LIMIT and not _positive(spec.lmt_price):
        return "Missing or invalid limit price"
    if typ in _NEEDS_AUX and not _positive(spec.aux_price):
        return "Missing or invalid stop/trigger price"
    if typ in _TRAILS and not (_positive(spec.aux_price) or _positive(spec.trailing_percent)):
        return "Missing trailing amount or trailing percent"
    if typ == OrderType.TRAIL_LIMIT and spec.lmt_price_offset is None:
        return "Missing limit price offset"
    return None


def _tif_problem(spec: OrderSpec) -> str | None:
    tif = spec.tif
    if tif not in {t.value for t in TimeInForce}:
        return f"Invalid time in force: {tif}"
    if spec.order_type in AUCTIONS and tif not in ("DAY", "GTC"):
        return f"Time in force {tif} is not allowed for {spec.order_type} orders"
    if tif == "GTD" and not spec.good_till_date:
        return "Missing good till date"
    gtd = spec.good_till_date if tif == "GTD" else ""
    for label, text in (("good after time", spec.good_after_time), ("good till date", gtd)):
        if text and _bad_time(text):
            return f"Invalid {label}: {text}"
    return None


def modify_mismatch(old: OrderSpec, new: OrderSpec, old_con_id: int, new_con_id: int) -> bool:
    """A modify may change prices, quantity, TIF and flags, not what is traded or how."""
    return (
        old.action.upper() != new.action.upper()
        or old.order_type != new.order_type
        or old.parent_id != new.parent_id
        or old_con_id != new_con_id
    )


def _positive(x: float | None) -> bool:
    return x is not None and x > 0


def _bad_time(text: str) -> bool:
    try:
        parse_ib_time(text)
    except ValueError:
        return True
    return False

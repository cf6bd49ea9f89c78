"""The simulator's order model: what a client asked for, and what became of it.

Shared by the wire layer (``order_wire.py``: placeOrder in, openOrder /
orderStatus / execDetails out) and the order engine (``matching.py``) and the
account (``account.py``).  Plain frozen data; the engine replaces records rather
than mutating them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from ibpilot.sim.refdata import Instrument


class OrderStatus(enum.StrEnum):
    """IB's order states, with their wire strings."""

    API_PENDING = "ApiPending"
    PENDING_SUBMIT = "PendingSubmit"
    PENDING_CANCEL = "PendingCancel"
    PRE_SUBMITTED = "PreSubmitted"
    SUBMITTED = "Submitted"
    API_CANCELLED = "ApiCancelled"
    CANCELLED = "Cancelled"
    FILLED = "Filled"
    INACTIVE = "Inactive"


TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.API_CANCELLED})


class OrderType(enum.StrEnum):
    """Order types the simulator matches (IB's wire spelling)."""

    MKT = "MKT"
    LMT = "LMT"
    STP = "STP"
    STP_LMT = "STP LMT"
    TRAIL = "TRAIL"
    TRAIL_LIMIT = "TRAIL LIMIT"
    MOC = "MOC"
    LOC = "LOC"
    MIT = "MIT"
    LIT = "LIT"
    MIDPRICE = "MIDPRICE"


class TimeInForce(enum.StrEnum):
    """Times in force the simulator honours."""

    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    OPG = "OPG"
    GTD = "GTD"  # good till ``OrderSpec.good_till_date``


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """An order as the client sent it (placeOrder), in the fields the simulator models.

    Prices are floats as on the wire (``None`` = unset); quantities are Decimals.
    ``raw`` keeps every other order field the client sent, by IB's field name, so
    that openOrder can echo them back unchanged.
    """

    order_id: int
    client_id: int
    action: str  # BUY, SELL (SSHORT treated as SELL)
    total_quantity: Decimal
    order_type: str  # an OrderType value; anything else is rejected by the engine
    lmt_price: float | None = None
    aux_price: float | None = None  # stop price; trailing amount for TRAIL
    tif: str = "DAY"
    outside_rth: bool = False
    order_ref: str = ""
    account: str = ""
    transmit: bool = True
    parent_id: int = 0
    oca_group: str = ""
    oca_type: int = 0
    trailing_percent: float | None = None
    trail_stop_price: float | None = None
    lmt_price_offset: float | None = None  # TRAIL LIMIT: limit = stop -/+ offset
    good_after_time: str = ""
    good_till_date: str = ""
    what_if: bool = False
    raw: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill, as execDetails and commissionReport report it."""

    exec_id: str  # unique per account, e.g. "0000e0d5.67a0b2c1.01.01"
    order_id: int
    client_id: int
    perm_id: int
    con_id: int
    account: str
    time: int  # epoch seconds (simulated clock)
    side: str  # "BOT" or "SLD"
    shares: Decimal
    price: float
    cum_qty: Decimal
    avg_price: float
    order_ref: str
    exchange: str
    commission: float
    commission_currency: str
    realized_pnl: float | None  # None when the fill opened or added to a position


# ----- the engine's view of an order ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """An order as the gateway holds it: the client's spec plus what became of it.

    Replaced, never mutated, by the engine (``matching.py``); an event carries the record
    as it was when the event happened.  Prices are floats as on the wire; quantities and
    money the engine accumulates are Decimals.  ``inst`` is the contract the order trades
    (for openOrder/execDetails).  Fields after ``completed_status`` are the engine's own
    bookkeeping (kept here so a snapshot is one record per order).
    """

    spec: OrderSpec
    inst: Instrument
    perm_id: int
    status: OrderStatus
    placed_at: int  # epoch seconds of the (last) placeOrder
    filled: Decimal = Decimal(0)
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    why_held: str = ""
    mkt_cap_price: float = 0.0
    completed_time: int | None = None  # when it became Filled/Cancelled/Inactive
    completed_status: str = ""  # completedOrder's completedStatus text
    # --- engine bookkeeping ---
    fill_value: Decimal = Decimal(0)  # sum of qty x price over the fills
    commission: Decimal = Decimal(0)  # charged so far (per-order minimums apply once)
    triggered: bool = False  # a STP/TRAIL/MIT/LIT has been elected
    trail_ref: float | None = None  # TRAIL: best price seen since activation
    trail_stop: float | None = None  # TRAIL: current stop price
    trigger_limit: float | None = None  # TRAIL LIMIT: limit price set at the trigger
    expires_at: int | None = None  # DAY/GTD: the instant the order expires
    auction_at: int | None = None  # MOC/LOC: the liquid close; OPG: the liquid open
    not_before: int | None = None  # goodAfterTime
    cancel_due: int | None = None  # PendingCancel: when the cancel is confirmed
    rejected: bool = False  # Inactive because IB rejected it (terminal)

    @property
    def order_id(self) -> int:
        return self.spec.order_id

    @property
    def client_id(self) -> int:
        return self.spec.client_id

    @property
    def parent_id(self) -> int:
        return self.spec.parent_id

    @property
    def remaining(self) -> Decimal:
        """Quantity still to fill (IB's orderStatus ``remaining``; kept after a cancel)."""
        return self.spec.total_quantity - self.filled

    @property
    def done(self) -> bool:
        """Filled, cancelled, or rejected: nothing more will happen to it."""
        return self.status in TERMINAL or self.rejected


# ----- events the engine returns to the server -------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """Send openOrder + orderStatus for ``order`` (``status_only``: orderStatus alone, as IB's
    duplicate status messages are)."""

    order: WorkingOrder
    status_only: bool = False


@dataclass(frozen=True, slots=True)
class Fill:
    """Send execDetails + commissionReport for one execution of a contract (an
    OrderUpdate with the order's new filled/remaining follows it)."""

    execution: Execution
    inst: Instrument


@dataclass(frozen=True, slots=True)
class OrderError:
    """Send error(order_id, code, text) to ``client_id``."""

    order_id: int
    client_id: int
    code: int
    text: str


@dataclass(frozen=True, slots=True)
class WhatIf:
    """Answer a whatIf placeOrder: openOrder whose OrderState carries these margin numbers
    (account base currency); the order itself is not placed."""

    order: WorkingOrder
    init_margin_before: Decimal
    init_margin_after: Decimal
    maint_margin_before: Decimal
    maint_margin_after: Decimal
    equity_with_loan_before: Decimal
    equity_with_loan_after: Decimal
    commission: Decimal
    commission_currency: str


OrderEvent = OrderUpdate | Fill | OrderError | WhatIf


# ----- the order state machine ------------------------------------------------------------


class OrderTrigger(enum.StrEnum):
    """What can happen to an order (the input of the state table)."""

    TRANSMIT = "transmit"  # a staged (transmit=False) order is released
    HOLD = "hold"  # accepted/kept but not working: simulated type, hours, parent, auction
    WORK = "work"  # working at the (simulated) exchange
    REJECT = "reject"  # refused by IB (error 201)
    MODIFY = "modify"  # placeOrder with the same id
    PARTIAL_FILL = "partial_fill"
    FILL = "fill"  # the fill that leaves nothing remaining
    CANCEL = "cancel"  # cancelOrder / reqGlobalCancel
    CONFIRM_CANCEL = "confirm_cancel"  # the exchange confirms the cancel
    EXPIRE = "expire"  # IB cancels: DAY end, IOC rest, OPG/LOC unfilled, OCA, parent gone


_S, _T = OrderStatus, OrderTrigger
TRANSITIONS: Mapping[tuple[OrderStatus, OrderTrigger], OrderStatus] = MappingProxyType(
    {
        (_S.API_PENDING, _T.TRANSMIT): _S.PENDING_SUBMIT,
        (_S.API_PENDING, _T.MODIFY): _S.API_PENDING,
        (_S.API_PENDING, _T.CANCEL): _S.API_CANCELLED,
        (_S.API_PENDING, _T.EXPIRE): _S.API_CANCELLED,
        (_S.PENDING_SUBMIT, _T.HOLD): _S.PRE_SUBMITTED,
        (_S.PENDING_SUBMIT, _T.WORK): _S.SUBMITTED,
        (_S.PENDING_SUBMIT, _T.REJECT): _S.INACTIVE,
        (_S.PENDING_SUBMIT, _T.MODIFY): _S.PENDING_SUBMIT,  # OCA/bracket reduce before the ack
        (_S.PENDING_SUBMIT, _T.EXPIRE): _S.CANCELLED,  # OCA/bracket cancel before the ack
        (_S.PRE_SUBMITTED, _T.HOLD): _S.PRE_SUBMITTED,
        (_S.PRE_SUBMITTED, _T.WORK): _S.SUBMITTED,
        (_S.PRE_SUBMITTED, _T.MODIFY): _S.PRE_SUBMITTED,
        (_S.PRE_SUBMITTED, _T.PARTIAL_FILL): _S.PRE_SUBMITTED,
        (_S.PRE_SUBMITTED, _T.FILL): _S.FILLED,
        (_S.PRE_SUBMITTED, _T.CANCEL): _S.PENDING_CANCEL,
        (_S.PRE_SUBMITTED, _T.EXPIRE): _S.CANCELLED,
        (_S.SUBMITTED, _T.HOLD): _S.PRE_SUBMITTED,
        (_S.SUBMITTED, _T.WORK): _S.SUBMITTED,
        (_S.SUBMITTED, _T.MODIFY): _S.SUBMITTED,
        (_S.SUBMITTED, _T.PARTIAL_FILL): _S.SUBMITTED,
        (_S.SUBMITTED, _T.FILL): _S.FILLED,
        (_S.SUBMITTED, _T.CANCEL): _S.PENDING_CANCEL,
        (_S.SUBMITTED, _T.EXPIRE): _S.CANCELLED,
        (_S.PENDING_CANCEL, _T.PARTIAL_FILL): _S.PENDING_CANCEL,  # a fill raced the cancel
        (_S.PENDING_CANCEL, _T.FILL): _S.FILLED,
        (_S.PENDING_CANCEL, _T.CONFIRM_CANCEL): _S.CANCELLED,
        (_S.PENDING_CANCEL, _T.EXPIRE): _S.CANCELLED,
    }
)
"""``{(state, trigger): next state}``.  Anything else is an :class:`IllegalTransition`.
Filled, Cancelled, ApiCancelled and (the engine's, reject-only) Inactive have no way out."""


class IllegalTransition(Exception):
    """A bug of ours: the engine tried a transition the state table does not allow."""

    def __init__(self, state: OrderStatus, trigger: OrderTrigger) -> None:
        super().__init__(f"order state {state} has no transition on {trigger}")
        self.state = state
        self.trigger = trigger


def next_status(state: OrderStatus, trigger: OrderTrigger) -> OrderStatus:
    """The state after ``trigger``; raises IllegalTransition when the table has no entry."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise IllegalTransition(state, trigger) from None


def transitions_markdown() -> str:
    """The state table as a Markdown table (for the docs; generated, never hand-written)."""
    rows = ["| state | trigger | next state |", "|---|---|---|"]
    rows += [f"| {s} | {t} | {n} |" for (s, t), n in TRANSITIONS.items()]
    return "\n".join(rows)

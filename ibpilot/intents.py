"""Order intents: the lifecycle table, ids, and the intent record with its ledger payloads.

Pure data and functions, no I/O: :mod:`ibpilot.oms` drives them.  Every proposal the gate
allows becomes an :class:`Intent` whose id (:class:`IntentIds`) travels in IB's orderRef.  The
lifecycle is :data:`INTENT_TRANSITIONS`; an edge missing from it raises
:class:`IllegalIntentTransition` (from broker data the OMS records it instead of raising).
:func:`encode` and :func:`decode` turn intents and broker reports into ledger payloads and back.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar, get_args, get_type_hints

from ibpilot.broker.base import (
    BrokerOrderStatus,
    Contract,
    ExecutionReport,
    OrderReport,
    OrderRequest,
    Side,
)
from ibpilot.broker.base import Side as BrokerSide
from ibpilot.ledger import JsonValue

ZERO = Decimal(0)
_D = TypeVar("_D")


class IntentState(StrEnum):
    PROPOSED = "PROPOSED"
    REFUSED = "REFUSED"
    APPROVED = "APPROVED"
    SENDING = "SENDING"  # ledgered, handed to the broker, no word back yet
    WORKING = "WORKING"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"  # may carry fills (partial fill, then cancel)
    REJECTED = "REJECTED"  # IB's Inactive or a terminal error; Inactive may come back
    UNKNOWN = "UNKNOWN"  # the send's outcome is unknown (crash mid-send, place() raised)
    MISSING = "MISSING"  # reconciliation found no trace at the broker; never re-sent


class IntentTrigger(StrEnum):
    APPROVE = "approve"
    REFUSE = "refuse"
    SEND = "send"
    ACK = "ack"  # PendingSubmit / PreSubmitted / Submitted / PendingCancel, nothing filled
    PARTIAL_FILL = "partial_fill"
    FILL = "fill"  # filled == quantity
    CANCEL = "cancel"  # Cancelled / ApiCancelled / error 202
    REJECT = "reject"  # Inactive / a terminal error (201 ...)
    LOST = "lost"  # the outcome of a send is unknown
    NOT_FOUND = "not_found"  # the broker has no trace (reconciliation, error 10147)


_S, _T = IntentState, IntentTrigger
# Broker evidence can move an intent from these states like from WORKING (late or lost news).
_EVIDENCE = {
    _T.ACK: _S.WORKING,
    _T.PARTIAL_FILL: _S.PARTIALLY_FILLED,
    _T.FILL: _S.FILLED,
    _T.CANCEL: _S.CANCELLED,
    _T.REJECT: _S.REJECTED,
}
INTENT_TRANSITIONS: Mapping[tuple[IntentState, IntentTrigger], IntentState] = {
    (_S.PROPOSED, _T.APPROVE): _S.APPROVED,
    (_S.PROPOSED, _T.REFUSE): _S.REFUSED,
    (_S.APPROVED, _T.SEND): _S.SENDING,
    # a fill may arrive before any status (IB sends no status for some immediate fills)
    **{(_S.SENDING, t): s for t, s in _EVIDENCE.items()},
    (_S.SENDING, _T.LOST): _S.UNKNOWN,
    (_S.SENDING, _T.NOT_FOUND): _S.MISSING,
    **{(_S.WORKING, t): s for t, s in _EVIDENCE.items()},  # ACK again: a duplicate status
    (_S.WORKING, _T.NOT_FOUND): _S.MISSING,
    **{(_S.PARTIALLY_FILLED, t): s for t, s in _EVIDENCE.items() if t is not _T.ACK},
    (_S.PARTIALLY_FILLED, _T.ACK): _S.PARTIALLY_FILLED,  # a late status
    (_S.PARTIALLY_FILLED, _T.NOT_FOUND): _S.MISSING,
    (_S.FILLED, _T.ACK): _S.FILLED,  # the status after the fill
    (_S.FILLED, _T.PARTIAL_FILL): _S.FILLED,  # executions after the Filled status
    (_S.FILLED, _T.FILL): _S.FILLED,
    (_S.CANCELLED, _T.ACK): _S.CANCELLED,
    (_S.CANCELLED, _T.PARTIAL_FILL): _S.CANCELLED,  # a fill reported after the cancel
    (_S.CANCELLED, _T.FILL): _S.FILLED,  # the fill won the race with the cancel
    (_S.CANCELLED, _T.CANCEL): _S.CANCELLED,
    (_S.CANCELLED, _T.REJECT): _S.REJECTED,  # Cancelled status, then error 201's reason
    (_S.REJECTED, _T.ACK): _S.WORKING,  # Inactive is not final: a held order comes back
    (_S.REJECTED, _T.PARTIAL_FILL): _S.PARTIALLY_FILLED,
    (_S.REJECTED, _T.FILL): _S.FILLED,
    (_S.REJECTED, _T.CANCEL): _S.REJECTED,  # error 201 comes with a Cancelled status
    (_S.REJECTED, _T.REJECT): _S.REJECTED,
    **{(_S.UNKNOWN, t): s for t, s in _EVIDENCE.items()},
    (_S.UNKNOWN, _T.LOST): _S.UNKNOWN,
    (_S.UNKNOWN, _T.NOT_FOUND): _S.MISSING,
    **{(_S.MISSING, t): s for t, s in _EVIDENCE.items()},
    (_S.MISSING, _T.NOT_FOUND): _S.MISSING,
}
OPEN_STATES = frozenset({_S.SENDING, _S.WORKING, _S.PARTIALLY_FILLED, _S.UNKNOWN})


class IllegalIntentTransition(Exception):
    """A trigger the table does not allow in the intent's state (ours: a bug; IB's: recorded)."""

    def __init__(self, state: IntentState, trigger: IntentTrigger, intent_id: str = "") -> None:
        self.state, self.trigger, self.intent_id = state, trigger, intent_id
        super().__init__(f"intent {intent_id or '?'} in state {state} does not accept {trigger!r}")


def next_intent_state(
    state: IntentState, trigger: IntentTrigger, intent_id: str = ""
) -> IntentState:
    """The state after ``trigger``. Raises IllegalIntentTransition when the table has no edge."""
    try:
        return INTENT_TRANSITIONS[state, trigger]
    except KeyError:
        raise IllegalIntentTransition(state, trigger, intent_id) from None


def intent_table_markdown() -> str:
    """The lifecycle table as Markdown, generated from ``INTENT_TRANSITIONS``."""
    rows = [f"| {s} | {t} | {n} |" for (s, t), n in INTENT_TRANSITIONS.items()]
    return "\n".join(["| state | trigger | next |", "|---|---|---|", *rows]) + "\n"


def report_trigger(report: OrderReport, quantity: Decimal) -> IntentTrigger:
    """The trigger an order status means for an intent of ``quantity``."""
    if report.status is BrokerOrderStatus.FILLED or (report.filled >= quantity > ZERO):
        return _T.FILL
    if report.status in (BrokerOrderStatus.CANCELLED, BrokerOrderStatus.API_CANCELLED):
        return _T.CANCEL
    if report.status is BrokerOrderStatus.INACTIVE:
        return _T.REJECT
    return _T.PARTIAL_FILL if report.filled > ZERO else _T.ACK


# ---------------------------------------------------------------------------------------------
# Ids: "ibp-<spec hash 8>-<ms since epoch:10><seq:2><random:4>", Crockford base32, sortable

_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FROM_B32 = str.maketrans(_B32, "0123456789abcdefghijklmnopqrstuv")
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)  # 10 bits -> two digits


class IntentIds:
    """Unique, sortable intent ids (29 characters) that fit IB's orderRef.

    Strictly increasing within a spec hash, across restarts too: :meth:`observe` every id
    already in the ledger first.  ``rng`` only makes the random tail reproducible in tests.
    """

    def __init__(self, spec_hash: str, rng: random.Random | None = None) -> None:
        self.prefix = f"ibp-{(spec_hash or '0' * 8)[:8]}-"
        # the tail only keeps ids of the same millisecond apart across processes: a generator
        # seeded from the OS once, instead of a system call per id
        self._rng = rng or random.Random(secrets.randbits(128))
        self._last = (-1, 0)

    def observe(self, intent_id: str) -> None:
        body = intent_id.removeprefix(self.prefix).translate(_FROM_B32)
        if intent_id.startswith(self.prefix) and len(body) == 16 and body.isalnum():
            self._last = max(self._last, (int(body[:10], 32), int(body[10:12], 32)))

    def next(self, now: datetime) -> str:
        ms = max(int(now.timestamp() * 1000), self._last[0])
        seq = self._last[1] + 1 if ms == self._last[0] else 0
        ms, seq = (ms + 1, 0) if seq >= 32 * 32 else (ms, seq)
        self._last = (ms, seq)
        tail = self._rng.getrandbits(20)
        # 80 bits, 16 digits: ms (10 digits), seq (2), tail (4), most significant first
        v, p = (ms << 30) | (seq << 20) | tail, _B32_PAIRS
        return (
            f"{self.prefix}{p[v >> 70 & 1023]}{p[v >> 60 & 1023]}{p[v >> 50 & 1023]}"
            f"{p[v >> 40 & 1023]}{p[v >> 30 & 1023]}{p[v >> 20 & 1023]}{p[v >> 10 & 1023]}"
            f"{p[v & 1023]}"
        )


# ---------------------------------------------------------------------------------------------
# The intent record and its ledger payloads


@dataclass(slots=True, kw_only=True)
class Intent:
    """An order the bot decided to send, and everything learnt about it since.

    Mutable inside the OMS; everyone else gets :meth:`snapshot` copies.
    """

    intent_id: str
    source: str
    symbol: str
    con_id: int
    side: Side
    quantity: Decimal
    order_type: str
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    tif: str = "DAY"
    state: IntentState = IntentState.PROPOSED
    order_id: int | None = None
    perm_id: int = 0
    broker_status: str = ""
    broker_filled: Decimal = ZERO
    broker_avg_price: Decimal | None = None
    fills: dict[str, ExecutionReport] = field(default_factory=dict)  # by execId base
    cancel_requested: bool = False

    def apply(self, trigger: IntentTrigger) -> IntentState:
        """Move along the table. Raises IllegalIntentTransition."""
        self.state = next_intent_state(self.state, trigger, self.intent_id)
        return self.state

    @property
    def exec_filled(self) -> Decimal:
        return sum((f.quantity for f in self.fills.values()), ZERO)

    @property
    def filled(self) -> Decimal:
        return max(self.exec_filled, self.broker_filled)

    @property
    def remaining(self) -> Decimal:
        return max(self.quantity - self.filled, ZERO)

    @property
    def avg_price(self) -> Decimal | None:
        quantity = self.exec_filled
        if not quantity:
            return self.broker_avg_price
        return sum((f.quantity * f.price for f in self.fills.values()), ZERO) / quantity

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def adopt(self, status: str, filled: Decimal, avg_price: Decimal | None) -> bool:
        """Take the broker's status unless it is older than the one known (filled is cumulative,
        a final status is not followed by another).  True if taken."""
        final = self.broker_status in ("Filled", "Cancelled", "ApiCancelled")
        newer = filled > self.broker_filled or (
            filled == self.broker_filled and status != self.broker_status and not final
        )
        if newer:
            self.broker_status, self.broker_filled, self.broker_avg_price = (
                status,
                filled,
                avg_price,
            )
        return newer

    def snapshot(self) -> Intent:
        return replace(self, fills=dict(self.fills))

    def order_request(self, contract: Contract) -> OrderRequest:
        side = self.side if type(self.side) is BrokerSide else BrokerSide(self.side.value)
        return OrderRequest(
            intent_id=self.intent_id, contract=contract, side=side,
            quantity=self.quantity, order_type=self.order_type, limit_price=self.limit_price,
            stop_price=self.stop_price, tif=self.tif,
        )  # fmt: skip


def encode(obj: object, names: Iterable[str] | None = None) -> dict[str, object]:
    """A dataclass's fields (all, or ``names``) as a ledger payload."""
    if not names:
        names = _FIELD_NAMES.get(type(obj)) or _field_names(obj)
    return {name: getattr(obj, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(obj: object) -> tuple[str, ...]:
    found = fields(obj)  # type: ignore[arg-type]  # any dataclass
    names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in found)
    return names


_HINTS: dict[object, dict[str, Any]] = {}


def _hints(cls: object) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def decode(cls: type[_D], payload: Mapping[str, JsonValue]) -> _D:
    """The dataclass ``cls`` from a payload :func:`encode` made (keys it lacks keep defaults)."""
    kwargs: dict[str, Any] = {}
    for name, hint in _hints(cls).items():
        if name in payload:
            kwargs[name] = decode_value(hint, payload[name])
    return cls(**kwargs)


def decode_value(hint: Any, raw: JsonValue) -> Any:
    """One payload value as the type ``hint`` names (``X | None`` decodes as ``X``)."""
    if raw is None:
        return None
    kinds = [k for k in get_args(hint) if k is not type(None)] or [hint]
    kind = kinds[0]
    if kind is datetime:
        return datetime.fromisoformat(str(raw))
    return kind(raw) if kind is not Decimal else Decimal(str(raw))


def exec_base(exec_id: str) -> str:
    """IB's correction of an execution repeats its id except the suffix after the last period."""
    return exec_id.rsplit(".", 1)[0] if exec_id.count(".") >= 2 else exec_id

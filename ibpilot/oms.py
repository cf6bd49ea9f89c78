"""The OMS: intents ledgered before the wire, broker reports, and reconciliation.

:meth:`Oms.submit` makes PROPOSAL, DECISION and INTENT durable together *before* the order is
handed to the broker (:meth:`~ibpilot.ledger.Ledger.stage`; they join the chain as soon as it
has left), then ORDER_SENT; status changes (ORDER_STATUS), fills (FILL) and commissions
(COMMISSION) follow.  A cancel that cannot be asked (the order still being sent, the link down)
is asked again once the order is sent and after each reconciliation (:meth:`Oms.retry_cancels`),
also after a restart.  The intent model (:class:`~ibpilot.intents.Intent`, its ids
and the lifecycle table :data:`~ibpilot.intents.INTENT_TRANSITIONS`) lives in
:mod:`ibpilot.intents` and is re-exported here; an edge missing from the table raises
:class:`IllegalIntentTransition` (from broker data it is recorded, not raised).

One intent is never sent twice: only ``APPROVED -> SENDING`` sends, an intent is APPROVED only
inside :meth:`Oms.submit`, and intents rebuilt from the ledger are never APPROVED.  An intent
left SENDING by a crash becomes UNKNOWN and :meth:`Oms.reconcile` resolves it from the broker's
open orders, completed orders and executions (matched by orderRef, then permId) or marks it
MISSING.  The ledger is the truth of what the bot decided; the broker of what the account is.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from ibpilot.broker.base import (
    Broker,
    BrokerError,
    BrokerOrderStatus,
    Contract,
    ExecutionReport,
    OrderReport,
    Side,
)
from ibpilot.gate import Decision, Proposal
from ibpilot.intents import (
    INTENT_TRANSITIONS,
    OPEN_STATES,
    ZERO,
    IllegalIntentTransition,
    Intent,
    IntentIds,
    IntentState,
    IntentTrigger,
    decode,
    decode_value,
    encode,
    exec_base,
    intent_table_markdown,
    next_intent_state,
    report_trigger,
)
from ibpilot.ledger import Entry, EntryKind, Ledger

__all__ = [  # the intent model is re-exported: `from ibpilot.oms import Intent` keeps working
    "INTENT_TRANSITIONS", "OPEN_STATES", "Clock", "ExecutionOutcome", "IllegalIntentTransition",
    "Intent", "IntentIds", "IntentState", "IntentTrigger", "Oms", "Reconciliation", "decode",
    "encode", "exec_base", "intent_table_markdown", "next_intent_state", "report_trigger",
]  # fmt: skip

Clock = Callable[[], datetime]
_K = EntryKind
_S, _T = IntentState, IntentTrigger


_INTENT_FIELDS = ("intent_id", "source", "symbol", "con_id", "side", "quantity", "order_type",
                  "limit_price", "stop_price", "tif", "state")  # fmt: skip


def _decision_payload(d: Decision, intent_id: str) -> dict[str, object]:
    reasons = [encode(r) for r in d.reasons]
    return encode(d, ("allowed", "halt", "flatten", "reducing")) | {
        "intent_id": intent_id,
        "reasons": reasons,
    }


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    """A new execution (or a late commission): whose it is, and the one it corrects, if any."""

    execution: ExecutionReport
    intent: Intent | None
    replaced: ExecutionReport | None = None
    commission_only: bool = False  # the commission of a fill reported before


@dataclass(slots=True)
class Reconciliation:
    """What one reconciliation found; each finding is also a RECONCILIATION entry."""

    reason: str
    matched: list[str] = field(default_factory=list)
    filled_while_away: dict[str, Decimal] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)
    unknown_orders: list[OrderReport] = field(default_factory=list)
    unknown_executions: list[ExecutionReport] = field(default_factory=list)
    findings: list[dict[str, object]] = field(default_factory=list)

    def note(self, finding: str, payload: Mapping[str, object]) -> None:
        self.findings.append({"finding": finding, **payload, "reason": self.reason})

    def summary(self) -> dict[str, object]:
        counts = {name: len(getattr(self, name)) for name in _COUNTED}
        return {"finding": "summary", **counts, "reason": self.reason}


_COUNTED = ("matched", "filled_while_away", "missing", "unconfirmed", "unknown_orders",
            "unknown_executions")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The OMS


class Oms:
    """Intents, ledgered before the wire; rebuilt from ``ledger`` on construction."""

    def __init__(
        self, ledger: Ledger, broker: Broker, *, spec_hash: str, clock: Clock,
        rng: random.Random | None = None,
    ) -> None:  # fmt: skip
        self._ledger, self._broker, self._clock, self.spec_hash = ledger, broker, clock, spec_hash
        self._ids = IntentIds(spec_hash, rng)
        self._intents: dict[str, Intent] = {}
        self._by_perm: dict[int, str] = {}
        self._execs: dict[str, ExecutionReport] = {}  # every execution seen, by execId base
        self._foreign: dict[tuple[int, int], OrderReport] = {}  # open orders that are not ours
        self._sent: list[datetime] = []  # when intents were sent, sorted (see recent_sends)
        self._in_flight: set[str] = set()
        self._cancel_wanted: dict[str, str] = {}  # intent id -> reason: asked, not reached
        self._open_ids: dict[str, None] = {}  # see _open
        self._indexed = 0  # len(_intents) when _open_ids was last brought up to date
        self._recover()
        self._sent.sort()
        self._reopened()

    # -- views --------------------------------------------------------------------------------

    def intent(self, intent_id: str) -> Intent | None:
        found = self._intents.get(intent_id)
        return None if found is None else found.snapshot()

    def intents(self, *, open_only: bool = False) -> list[Intent]:
        return [i.snapshot() for i in self._intents.values() if i.open or not open_only]

    def foreign_open_orders(self) -> list[OrderReport]:
        return list(self._foreign.values())

    def pending(self, *, include_cancelling: bool = True) -> tuple[dict[str, Decimal], ...]:
        """Remaining quantities of open intents by symbol: (BUY, SELL)."""
        buys: dict[str, Decimal] = {}
        sells: dict[str, Decimal] = {}
        for i in self._open():
            if include_cancelling or not i.cancel_requested:
                side = buys if i.side is Side.BUY else sells
                side[i.symbol] = side.get(i.symbol, ZERO) + i.remaining
        return buys, sells

    def recent_sends(self, now: datetime) -> tuple[datetime, ...]:
        """When intents were sent in the last minute (the gate's orders-per-minute rule)."""
        del self._sent[: bisect.bisect_right(self._sent, now - timedelta(seconds=60))]
        return tuple(self._sent)

    # -- the path to the broker ---------------------------------------------------------------

    def new_intent_id(self) -> str:
        return self._ids.next(self._clock())

    async def submit(
        self, proposal: Proposal, decision: Decision, contract: Contract | None
    ) -> Intent | None:
        """Ledger the proposal and decision; if allowed, the intent, then send it once.

        Ledger before wire: an allowed proposal's PROPOSAL, DECISION and INTENT are staged
        (:meth:`Ledger.stage`: durable when it returns) before the order is sent, and chained
        right after ``place`` returns or raises; a refusal is appended at once.  Returns a
        snapshot of the intent (SENDING; UNKNOWN when ``place`` raised, which reconciliation
        resolves: it is never re-sent), or None when refused.  Raises LedgerError when the
        ledger fails (before the wire: nothing is sent; after it, the staged records stay
        staged, chained by a later append or the ledger's next open), ValueError when an
        allowed proposal has no ``contract`` or carries an intent id already used.
        """
        ts = self._clock()
        intent_id = proposal.intent_id or self._ids.next(ts)
        if intent_id in self._intents:
            raise ValueError(f"intent id {intent_id} is taken: an intent is never sent twice")
        records: list[tuple[EntryKind, Mapping[str, object]]] = [
            (_K.PROPOSAL, encode(proposal) | {"intent_id": intent_id}),
            (_K.DECISION, _decision_payload(decision, intent_id)),
        ]
        if not decision.allowed:
            self._ledger.append_many(records, ts=ts, spec_hash=self.spec_hash)
            return None
        if contract is None:
            raise ValueError("an allowed proposal needs a resolved contract")
        intent = Intent(
            intent_id=intent_id, source=proposal.source, symbol=proposal.symbol,
            con_id=contract.con_id, side=proposal.side, quantity=proposal.quantity,
            order_type=proposal.order_type.value, limit_price=proposal.limit_price,
            stop_price=proposal.stop_price, tif=proposal.tif.value,
        )  # fmt: skip
        intent.apply(_T.APPROVE)
        intent.apply(_T.SEND)
        records.append((_K.INTENT, encode(intent, _INTENT_FIELDS)))
        self._ledger.stage(records, ts=ts, spec_hash=self.spec_hash)  # ledger before wire
        self._intents[intent_id] = intent
        self._open_ids[intent_id] = None  # the newest intent: last in both orders
        self._indexed += 1
        bisect.insort(self._sent, ts)
        self._in_flight.add(intent_id)
        try:
            order_id = await self._broker.place(intent.order_request(contract))
        except Exception as exc:  # whatever failed, the outcome is unknown
            self._transition(intent, _T.LOST, _K.ORDER_STATUS, {"error": _describe(exc)})
            return intent.snapshot()
        finally:
            self._in_flight.discard(intent_id)
            self._ledger.flush()  # chain what was staged (an append flushes it first anyway)
        intent.order_id = order_id
        self._append(_K.ORDER_SENT, {"intent_id": intent_id, "order_id": order_id})
        reason = self._cancel_wanted.get(intent_id)
        if reason is not None:  # a cancel was asked for while it was being sent
            await self.cancel(intent_id, reason)
        return intent.snapshot()

    async def cancel(self, intent_id: str, reason: str = "") -> bool:
        """Ask the broker once to cancel an open intent (CANCEL_SENT first). True if asked."""
        intent = self._intents.get(intent_id)
        if intent is None or not intent.open or intent.cancel_requested:
            return False
        intent.cancel_requested = True
        self._append(_K.CANCEL_SENT, {"intent_id": intent_id, "reason": reason})
        try:
            await self._broker.cancel(intent_id)
        except Exception as exc:  # not asked after all (still being sent, link down): asked
            # again once it is sent, after the next reconciliation, or by a later cancel
            intent.cancel_requested = False
            self._cancel_wanted[intent_id] = reason
            payload = {"intent_id": intent_id, "cancel_failed": _describe(exc), "reason": reason}
            self._append(_K.NOTE, payload)
        else:
            self._cancel_wanted.pop(intent_id, None)
        return True

    async def retry_cancels(self) -> list[str]:
        """Ask again for the cancels that could not be asked (the order was still being sent,
        the link was down) of intents still open; the ids asked for.  The engine calls it
        after each reconciliation; :meth:`submit` for its own intent once it is sent."""
        asked = []
        for intent_id, reason in list(self._cancel_wanted.items()):
            intent = self._intents.get(intent_id)
            if intent is None or not intent.open:
                del self._cancel_wanted[intent_id]
            elif intent_id not in self._in_flight and await self.cancel(intent_id, reason):
                asked.append(intent_id)
        return asked

    def cancels_wanted(self) -> list[str]:
        """Intents whose cancel could not be asked yet (see :meth:`retry_cancels`)."""
        return list(self._cancel_wanted)

    async def cancel_all(self, reason: str = "") -> list[str]:
        """Cancel every open intent; the ids asked for."""
        return [i.intent_id for i in self._open() if await self.cancel(i.intent_id, reason)]

    # -- what the broker reports --------------------------------------------------------------

    def on_order_report(self, report: OrderReport, *, reconciled: bool = False) -> Intent | None:
        """Record a status change (duplicates are not ledgered); None for orders not ours."""
        intent = self._match(report.intent_id, report.perm_id)
        if intent is None:
            key = (report.perm_id, report.order_id)
            if report.status in _OPEN_BROKER:
                self._foreign[key] = report
            else:
                self._foreign.pop(key, None)
            return None
        if report.perm_id and not intent.perm_id:
            intent.perm_id = report.perm_id
            self._by_perm[report.perm_id] = intent.intent_id
        trigger = report_trigger(report, intent.quantity)
        newer = intent.adopt(report.status, report.filled, report.avg_fill_price)
        if not newer and INTENT_TRANSITIONS.get((intent.state, trigger)) is intent.state:
            return intent.snapshot()  # a duplicate or stale status: IB sends them routinely
        payload = encode(report, _REPORT_FIELDS) | {"intent_id": intent.intent_id}
        self._transition(intent, trigger, _K.ORDER_STATUS, payload | {"reconciled": reconciled})
        return intent.snapshot()

    def on_execution(
        self, e: ExecutionReport, *, reconciled: bool = False
    ) -> ExecutionOutcome | None:
        """Record a fill, or the commission of one (COMMISSION); None for a duplicate."""
        base, intent = exec_base(e.exec_id), self._match(e.intent_id, e.perm_id)
        prior = self._execs.get(base)
        if prior is not None and prior.exec_id == e.exec_id:
            if e.commission is None or prior.commission is not None:
                return None  # a duplicate
            self._execs[base] = e
            if intent is not None and base in intent.fills:
                intent.fills[base] = e
                self._commission(intent, e)
            return ExecutionOutcome(e, intent and intent.snapshot(), None, commission_only=True)
        self._execs[base] = e
        if intent is None:
            return ExecutionOutcome(e, None, prior)
        intent.fills[base] = e
        if e.perm_id and not intent.perm_id:
            intent.perm_id = e.perm_id
            self._by_perm[e.perm_id] = intent.intent_id
        trigger = _T.FILL if intent.exec_filled >= intent.quantity else _T.PARTIAL_FILL
        payload = encode(e) | {"intent_id": intent.intent_id, "reconciled": reconciled}
        self._transition(intent, trigger, _K.FILL, payload | {"corrects": prior and prior.exec_id})
        if e.commission is not None:
            self._commission(intent, e)
        return ExecutionOutcome(e, intent.snapshot(), prior)

    def on_broker_error(self, error: BrokerError) -> Intent | None:
        """Record an IB error about one of our orders; a terminal one ends it."""
        intent = self._intents.get(error.intent_id)
        if intent is None:
            return None
        trigger = _ERROR_TRIGGERS.get(error.name, _T.REJECT if error.terminal else None)
        payload = {
            "intent_id": intent.intent_id,
            "error": encode(error, ("code", "name", "message")),
        }
        if trigger is None:
            self._append(_K.ORDER_STATUS, payload | {"state": intent.state})
        else:
            self._transition(intent, trigger, _K.ORDER_STATUS, payload)
        return intent.snapshot()

    # -- reconciliation -----------------------------------------------------------------------

    async def reconcile(self, reason: str) -> Reconciliation:
        """Fetch open orders, completed orders and executions; resolve intents; never sends.

        Raises what the broker raises (the engine tries again at the next reconnect).
        """
        open_orders = list(await self._broker.open_orders())
        completed = list(await self._broker.completed_orders())
        executions = list(await self._broker.executions())
        return self.reconcile_with(reason, open_orders, completed, executions)

    def reconcile_with(
        self, reason: str, open_orders: Sequence[OrderReport],
        completed_orders: Sequence[OrderReport], executions: Iterable[ExecutionReport],
    ) -> Reconciliation:  # fmt: skip
        """Reconcile against broker data already fetched (sans-IO), ledgering each finding."""
        found = Reconciliation(reason)
        for intent in self._open():
            if intent.state is _S.SENDING and intent.intent_id not in self._in_flight:
                found.unconfirmed.append(intent.intent_id)
                payload: dict[str, object] = {
                    "finding": "unconfirmed",
                    "intent_id": intent.intent_id,
                    "reason": reason,
                }
                self._transition(intent, _T.LOST, _K.RECONCILIATION, payload)
        for e in sorted(executions, key=lambda x: x.time):
            outcome = self.on_execution(e, reconciled=True)
            if outcome is None or outcome.commission_only:
                continue
            if outcome.intent is None:
                found.unknown_executions.append(e)
                found.note("unknown_execution", encode(e))
                continue
            away, intent_id = found.filled_while_away, outcome.intent.intent_id
            away[intent_id] = away.get(intent_id, ZERO) + e.quantity
        self._reconcile_orders(found, [*open_orders, *completed_orders])
        for intent_id, quantity in found.filled_while_away.items():
            payload = {"intent_id": intent_id, "quantity": quantity}
            found.note("filled_while_away", payload | {"state": self._intents[intent_id].state})
        for intent in self._open():
            if intent.intent_id not in {*found.matched, *self._in_flight}:
                found.missing.append(intent.intent_id)
                payload = {"finding": "missing", "intent_id": intent.intent_id, "reason": reason}
                self._transition(intent, _T.NOT_FOUND, _K.RECONCILIATION, payload)
        items = [(_K.RECONCILIATION, f) for f in [*found.findings, found.summary()]]
        self._ledger.append_many(items, ts=self._clock(), spec_hash=self.spec_hash)
        return found

    def _reconcile_orders(self, found: Reconciliation, reports: Sequence[OrderReport]) -> None:
        latest: dict[tuple[int, str, int], OrderReport] = {}
        for r in reports:  # completed orders come last and win over open ones
            latest[(r.perm_id, "", 0) if r.perm_id else (0, r.intent_id, r.order_id)] = r
        self._foreign.clear()
        for report in latest.values():
            intent = self._match(report.intent_id, report.perm_id)
            before = intent.state if intent is not None else None
            self.on_order_report(report, reconciled=True)
            if intent is None:
                found.unknown_orders.append(report)
                described = encode(report, ("order_id", "perm_id", "con_id", "side", "quantity"))
                found.note("unknown_order", described | {"order_ref": report.intent_id,
                                                         "status": report.status})  # fmt: skip
            else:
                found.matched.append(intent.intent_id)
                payload = {"intent_id": intent.intent_id, "before": before, "state": intent.state}
                found.note("matched", payload | {"filled": intent.filled})

    # -- internals ----------------------------------------------------------------------------

    def _open(self) -> list[Intent]:
        """The open intents, in the order they were made (as in ``_intents``).

        ``_open_ids`` holds every open intent (and maybe some that closed since), in that
        order, so this does not walk every intent ever made: an intent opens in ``submit``, or
        in ``_transition`` (``_reopened``), or was open when the ledger was replayed; an intent
        added to ``_intents`` anywhere else is caught by the count.
        """
        if len(self._intents) != self._indexed:
            self._reopened()
        found = []
        for intent_id in self._open_ids:
            intent = self._intents[intent_id]
            if intent.open:
                found.append(intent)
        if len(found) < len(self._open_ids):
            self._open_ids = dict.fromkeys(i.intent_id for i in found)
        return found

    def _reopened(self) -> None:
        """Rebuild ``_open_ids`` from every intent (at start; when a closed intent reopens)."""
        self._open_ids = dict.fromkeys(k for k, i in self._intents.items() if i.open)
        self._indexed = len(self._intents)

    def _match(self, intent_id: str, perm_id: int) -> Intent | None:
        intent = self._intents.get(intent_id) if intent_id else None
        if intent is None and perm_id in self._by_perm:
            intent = self._intents.get(self._by_perm[perm_id])
        return intent

    def _commission(self, intent: Intent, e: ExecutionReport) -> None:
        payload = {"intent_id": intent.intent_id, "exec_id": e.exec_id, "commission": e.commission}
        self._append(_K.COMMISSION, payload)

    def _append(self, kind: EntryKind, payload: Mapping[str, object]) -> Entry:
        return self._ledger.append(kind, payload, ts=self._clock(), spec_hash=self.spec_hash)

    def _transition(
        self, intent: Intent, trigger: IntentTrigger, kind: EntryKind, payload: Mapping[str, object]
    ) -> None:
        """Apply ``trigger`` and ledger ``payload``; an edge IB should not produce is recorded."""
        extra: dict[str, object] = {"trigger": trigger}
        try:
            intent.apply(trigger)
        except IllegalIntentTransition:
            extra["ignored"] = f"{trigger} is not a transition from {intent.state}"
        if intent.open and intent.intent_id not in self._open_ids:
            self._reopened()  # e.g. Inactive, then working again: rare
        self._append(kind, {**payload, **extra, "state": intent.state})

    def _recover(self) -> None:
        """Rebuild intents and the executions seen from the ledger (read only)."""
        kinds = (_K.INTENT, _K.ORDER_SENT, _K.ORDER_STATUS, _K.FILL, _K.COMMISSION,
                 _K.CANCEL_SENT, _K.RECONCILIATION, _K.NOTE)  # fmt: skip
        for entry in self._ledger.entries(kind=kinds):
            p = entry.payload
            if entry.kind is _K.INTENT:
                intent = decode(Intent, p)
                self._intents[intent.intent_id] = intent
                self._ids.observe(intent.intent_id)
                self._sent.append(entry.ts)
            elif entry.kind is _K.FILL:
                e = decode(ExecutionReport, p)
                self._execs[exec_base(e.exec_id)] = e
            found = self._intents.get(str(p.get("intent_id", "")))
            if found is not None and entry.kind is not _K.INTENT:
                _replay(found, entry)
                self._by_perm.setdefault(found.perm_id, found.intent_id)
                if entry.kind is _K.CANCEL_SENT:
                    self._cancel_wanted.pop(found.intent_id, None)
                elif entry.kind is _K.NOTE and "cancel_failed" in p:
                    self._cancel_wanted[found.intent_id] = str(p.get("reason", ""))
        self._by_perm.pop(0, None)
        for intent_id in [i for i in self._cancel_wanted if not self._intents[i].open]:
            del self._cancel_wanted[intent_id]


_OPEN_BROKER = frozenset({
    BrokerOrderStatus.PENDING_SUBMIT, BrokerOrderStatus.PRE_SUBMITTED,
    BrokerOrderStatus.SUBMITTED, BrokerOrderStatus.PENDING_CANCEL,
})  # fmt: skip
_REPORT_FIELDS = ("order_id", "perm_id", "status", "filled", "remaining", "avg_fill_price")
_ERROR_TRIGGERS: Mapping[str, IntentTrigger | None] = {
    "ORDER_CANCELLED": _T.CANCEL,  # 202
    "CANCEL_NOT_FOUND": _T.NOT_FOUND,  # 10147: IB does not know the order
    "CANCEL_REFUSED": None,  # 10148: already filled or cancelled; its status follows
}


def _replay(intent: Intent, entry: Entry) -> None:
    p = entry.payload
    if entry.kind is _K.ORDER_SENT:
        intent.order_id = int(str(p["order_id"]))
    elif entry.kind is _K.CANCEL_SENT:
        intent.cancel_requested = True
    elif entry.kind is _K.NOTE and "cancel_failed" in p:
        intent.cancel_requested = False
    elif entry.kind is _K.ORDER_STATUS and "status" in p:
        intent.perm_id = int(str(p["perm_id"])) or intent.perm_id
        avg = decode_value(Decimal | None, p.get("avg_fill_price"))
        intent.adopt(str(p["status"]), Decimal(str(p["filled"])), avg)
    elif entry.kind is _K.FILL:
        e = decode(ExecutionReport, p)
        intent.fills[exec_base(e.exec_id)] = e
        intent.perm_id = intent.perm_id or e.perm_id
    elif entry.kind is _K.COMMISSION and exec_base(str(p["exec_id"])) in intent.fills:
        base = exec_base(str(p["exec_id"]))
        intent.fills[base] = replace(intent.fills[base], commission=Decimal(str(p["commission"])))
    if "state" in p:
        intent.state = IntentState(str(p["state"]))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]

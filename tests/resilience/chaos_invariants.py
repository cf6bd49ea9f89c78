"""The fault campaign's invariant checker: the ledger against the simulator, after the fact.

Plain functions over what the campaign gathered (the ledger's entries, the simulator's
arrivals, orders, executions and account, the faults injected); no I/O.  Each check is a
:class:`Check` whose ``failures`` name the entries involved (ledger seqs, intent ids, exec
ids).  A check with ``todo`` set is a known gap of the runtime: reported with its failures,
not counted by :func:`failed` (see the TODO in its text).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ibpilot.ledger import Entry, EntryKind

from .chaos_evidence import LEDGER_READY, WINDOWED, FaultRecord, exercised, recovery
from .chaos_harness import SimTap

_K = EntryKind
CENT = Decimal("0.01")
OPEN_STATES = frozenset({"SENDING", "WORKING", "PARTIALLY_FILLED", "UNKNOWN"})
SIM_STATE = {
    "Filled": "FILLED",
    "Cancelled": "CANCELLED",
    "ApiCancelled": "CANCELLED",
    "Inactive": "REJECTED",
}
NO_TRACE_WHY = dict.fromkeys(
    ("silence_renewable", "silence_dead"),
    "quotes never stopped longer than the engine's stale bound plus its look interval",
)


@dataclass(slots=True)
class Check:
    name: str
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    todo: str = ""  # a known runtime gap: reported, not counted

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, text: str) -> None:
        self.failures.append(text)


def failed(checks: Iterable[Check]) -> list[Check]:
    """The checks that fail and count (known gaps excluded)."""
    return [c for c in checks if not c.ok and not c.todo]


def _show(e: Entry) -> str:
    p = {k: v for k, v in e.payload.items() if k not in ("traceback", "file", "config")}
    return f"#{e.seq} {e.ts:%m-%d %H:%M:%S} {e.kind.value} {p}"


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


# -- the ledger, indexed -----------------------------------------------------------------------


@dataclass(slots=True)
class Index:
    entries: Sequence[Entry]
    intents: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))
    sent: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))
    fills: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))
    commissions: dict[str, Entry] = field(default_factory=dict)
    state: dict[str, str] = field(default_factory=dict)  # intent -> its last ledgered state
    about: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def of(cls, entries: Sequence[Entry]) -> Index:
        ix = cls(entries)
        for e in entries:
            p = e.payload
            intent = str(p.get("intent_id") or "")
            if e.kind is _K.INTENT:
                ix.intents[intent].append(e)
            elif e.kind is _K.ORDER_SENT:
                ix.sent[intent].append(e)
            elif e.kind is _K.FILL:
                ix.fills[str(p["exec_id"])].append(e)
            elif e.kind is _K.COMMISSION:
                ix.commissions[str(p["exec_id"])] = e
            if intent:
                ix.about[intent].append(e)
                if "state" in p and e.kind is not _K.PROPOSAL:
                    ix.state[intent] = str(p["state"])
        return ix

    def symbol(self, intent: str) -> str:
        found = self.intents.get(intent)
        return str(found[0].payload["symbol"]) if found else "?"

    def resolution(self, intent: str) -> list[Entry]:
        """Ledgered evidence that the intent's send was unknown and reconciliation settled it."""
        return [
            e
            for e in self.about.get(intent, [])
            if (
                e.kind is _K.RECONCILIATION
                and e.payload.get("finding") in ("unconfirmed", "missing")
            )
            or (e.kind is _K.ORDER_STATUS and e.payload.get("trigger") == "lost")
        ]


# -- the checks --------------------------------------------------------------------------------


def check_no_double_send(ix: Index, tap: SimTap) -> Check:
    c = Check("no intent was sent twice")
    for intent, found in ix.intents.items():
        if len(found) > 1:
            c.fail(f"intent {intent}: {len(found)} INTENT entries: " + "; ".join(map(_show, found)))
    for intent, found in ix.sent.items():
        if len(found) > 1:
            c.fail(f"intent {intent}: {len(found)} ORDER_SENT: " + "; ".join(map(_show, found)))
        if intent not in ix.intents:
            c.fail(f"ORDER_SENT without an INTENT: {_show(found[0])}")
    arrived = Counter(a.order_ref for a in tap.arrivals if a.what == "place" and not a.dropped)
    for ref, count in arrived.items():
        if count > 1:
            ids = [a.order_id for a in tap.arrivals if a.order_ref == ref and a.what == "place"]
            c.fail(f"intent {ref} reached the simulator {count} times (order ids {ids})")
    refs: dict[int, set[str]] = defaultdict(set)
    for a in tap.arrivals:
        if a.what == "place" and not a.dropped:
            refs[a.order_id].add(a.order_ref)
    for order_id, carried in refs.items():
        if len(carried) > 1:
            c.fail(
                f"order id {order_id} was placed for intents {sorted(carried)}: an order id "
                "reused (the simulator took the later one as a modify or refused it)"
            )
    c.notes.append(f"{len(ix.intents)} intents, {sum(arrived.values())} placeOrders at the sim")
    return c


def check_sim_orders_ledgered(ix: Index, tap: SimTap) -> Check:
    c = Check("every order at the sim has one INTENT and one ORDER_SENT")
    by_ref = Counter(o.order_ref for o in tap.orders.values())
    resolved = 0
    for (order_id, perm_id), order in sorted(tap.orders.items()):
        ref = order.order_ref
        where = f"sim order {order_id} (perm {perm_id}, {order.status}, ref {ref!r})"
        if by_ref[ref] > 1:
            c.fail(f"{where}: {by_ref[ref]} sim orders carry this orderRef")
        if len(ix.intents.get(ref, [])) != 1:
            c.fail(f"{where}: {len(ix.intents.get(ref, []))} INTENT entries")
            continue
        sent = ix.sent.get(ref, [])
        if not sent:
            if ix.resolution(ref):
                resolved += 1
            else:
                c.fail(f"{where}: no ORDER_SENT and no reconciliation of the unknown send")
        elif len(sent) == 1 and int(str(sent[0].payload["order_id"])) != order_id:
            c.fail(f"{where}: ORDER_SENT says order id {sent[0].payload['order_id']}")
    c.notes.append(
        f"{len(tap.orders)} sim orders; {resolved} sent without ORDER_SENT (the bot "
        "died or the link broke mid-send) and settled by reconciliation"
    )
    return c


def check_sent_orders_arrived(ix: Index, tap: SimTap) -> Check:
    c = Check("every ORDER_SENT reached the sim or was resolved")
    arrived = {a.order_ref for a in tap.arrivals if a.what == "place" and not a.dropped}
    stored = {o.order_ref for o in tap.orders.values()}
    settled: Counter[str] = Counter()
    for intent, sent in ix.sent.items():
        state = ix.state.get(intent, "?")
        if intent in stored:
            continue
        if intent in arrived:  # refused on arrival (read-only 321, duplicate id 103, ...)
            if state in OPEN_STATES:
                c.fail(
                    f"intent {intent} was refused by the sim on arrival but the ledger "
                    f"leaves it {state}: " + "; ".join(map(_show, ix.about[intent][-4:]))
                )
            settled["refused on arrival"] += 1
        elif state in OPEN_STATES:
            c.fail(
                f"intent {intent}: ORDER_SENT {_show(sent[0])} never reached the sim and the "
                f"ledger leaves it {state}"
            )
        else:
            settled[f"lost on the wire, ledgered {state}"] += 1
    c.notes.extend(f"{n} {what}" for what, n in sorted(settled.items()))
    return c


def check_fills(ix: Index, tap: SimTap) -> Check:
    c = Check("every execution is a FILL with its commission")
    for exec_id, found in ix.fills.items():
        if len(found) > 1:
            c.fail(f"exec {exec_id}: {len(found)} FILL entries: " + "; ".join(map(_show, found)))
        if exec_id not in tap.executions:
            c.fail(f"FILL of an execution the sim does not have: {_show(found[0])}")
    for exec_id, ex in sorted(tap.executions.items(), key=lambda kv: kv[1].time):
        fills = ix.fills.get(exec_id)
        what = (
            f"sim exec {exec_id} ({ex.side} {ex.shares} {ex.symbol} @ {ex.price}, "
            f"intent {ex.order_ref}, sim time {ex.time})"
        )
        if not fills:
            c.fail(
                f"{what}: no FILL in the ledger (intent state {ix.state.get(ex.order_ref, '?')})"
            )
            continue
        p = fills[0].payload
        if p.get("intent_id") != ex.order_ref:
            c.fail(f"{what}: FILL names intent {p.get('intent_id')}")
        if _d(p["quantity"]) != ex.shares or _d(p["price"]) != ex.price:
            c.fail(f"{what}: FILL says {p['quantity']} @ {p['price']}")
        commission = _commission(ix, exec_id)
        if commission is None:
            c.fail(f"{what}: no commission in the ledger")
        elif commission.quantize(CENT) != ex.commission.quantize(CENT):
            c.fail(f"{what}: ledger commission {commission}, sim {ex.commission}")
    c.notes.append(f"{len(tap.executions)} executions at the sim, {len(ix.fills)} in the ledger")
    return c


def _commission(ix: Index, exec_id: str) -> Decimal | None:
    entry = ix.commissions.get(exec_id)
    if entry is not None:
        return _d(entry.payload["commission"])
    value = ix.fills[exec_id][0].payload.get("commission")
    return None if value is None else _d(value)


def ledger_book(ix: Index) -> tuple[dict[str, Decimal], Decimal]:
    """Positions (from the ledger's fills) and the cash they moved (less commissions)."""
    positions: dict[str, Decimal] = defaultdict(Decimal)
    flow = Decimal(0)
    for exec_id, found in ix.fills.items():
        p = found[0].payload
        signed = _d(p["quantity"]) * (1 if p["side"] == "BUY" else -1)
        positions[ix.symbol(str(p["intent_id"]))] += signed
        flow -= signed * _d(p["price"]) + (_commission(ix, exec_id) or Decimal(0))
    return {s: q for s, q in positions.items() if q}, flow


def check_book(ix: Index, tap: SimTap, stop_mismatches: Sequence[str]) -> Check:
    c = Check("positions and cash equal the sim's to the cent")
    positions, flow = ledger_book(ix)
    held = tap.positions()
    for symbol in sorted(set(positions) | set(held)):
        ours, theirs = positions.get(symbol, Decimal(0)), held.get(symbol, Decimal(0))
        if ours != theirs:
            c.fail(f"{symbol}: the ledger's fills sum to {ours}, the sim holds {theirs}")
    start, cash = tap.cash()
    if (start + flow).quantize(CENT) != cash.quantize(CENT):
        c.fail(
            f"cash: start {start} + ledger fills and commissions {flow} = {start + flow}, "
            f"the sim has {cash}"
        )
    c.failures.extend(stop_mismatches)
    c.notes.append(f"positions {dict(held)}; cash {cash.quantize(CENT)}")
    return c


def check_sequencing(ix: Index) -> Check:
    """No INTENT while halted, not connected, or before the reconciliation that follows a
    (re)start or reconnect (from the order of CONNECTION, RECONCILIATION, HALT, INTENT)."""
    c = Check("no order sent while halted, disconnected/1100 or unreconciled")
    state, reconciled, halted = "disconnected", False, False
    allowed_while_halted = 0
    last: Entry | None = None
    reducing = {
        str(e.payload["intent_id"]): bool(e.payload.get("reducing"))
        for e in ix.entries
        if e.kind is _K.DECISION
    }
    for e in ix.entries:
        p = e.payload
        if e.kind is _K.START:  # a halt outlives a restart
            state, reconciled, last = "starting", False, e
        elif e.kind is _K.CONNECTION:
            new = str(p.get("state"))
            if new != "connected" or state != "connected":
                reconciled = False
            state, last = new, e
        elif e.kind is _K.RECONCILIATION and p.get("finding") == "positions":
            reconciled = state == "connected"
        elif e.kind in (_K.HALT, _K.RESUME):
            halted = e.kind is _K.HALT
        elif e.kind is _K.INTENT:
            allowed_while_halted += halted and reducing.get(str(p["intent_id"]), False)
            why = [
                w
                for w, bad in (
                    ("not connected", state != "connected"),
                    ("not reconciled", not reconciled),
                    ("halted", halted and not reducing.get(str(p["intent_id"]))),
                )
                if bad
            ]
            if why:
                context = _show(last) if last else "no connection entry yet"
                c.fail(f"{', '.join(why)}: {_show(e)} (last: {context})")
    halts = sum(1 for e in ix.entries if e.kind is _K.HALT)
    c.notes.append(f"{halts} halts; {allowed_while_halted} reducing orders sent while halted")
    return c


def check_states_agree(ix: Index, tap: SimTap) -> Check:
    c = Check("each intent's final state agrees with its order at the sim")
    for order in tap.orders.values():
        want = SIM_STATE.get(order.status)
        have = ix.state.get(order.order_ref)
        if want is None:
            c.fail(
                f"sim order {order.order_id} ({order.order_ref}) still {order.status} at the end"
            )
        elif have != want:
            tail = "; ".join(map(_show, ix.about.get(order.order_ref, [])[-3:]))
            c.fail(
                f"intent {order.order_ref}: ledger {have}, sim {order.status} "
                f"(filled {order.filled}/{order.quantity}): {tail}"
            )
    return c


CANCEL_SLACK_S = 2  # simulated seconds: an order that ended this soon after a cancel request


def check_cancels(ix: Index, tap: SimTap) -> Check:
    """Every cancel the bot asked for (CANCEL_SENT) reached the gateway, unless the order had
    already ended by then: an order that works on after a cancel request the gateway never
    got (and then fills, or expires at the close) is a cancel lost.  A cancel that could not
    be asked (the order still being sent, the link down) is asked again once the order is sent
    and after the reconnect's reconciliation."""
    c = Check("every cancel the bot asked for reached the gateway")
    orders = {o.order_ref: o for o in tap.orders.values()}
    cancels = {a.order_id for a in tap.arrivals if a.what == "cancel" and not a.dropped}
    lost = 0
    for intent, about in ix.about.items():
        asked = next((e for e in about if e.kind is _K.CANCEL_SENT), None)
        order = orders.get(intent)
        if asked is None or order is None or order.order_id in cancels:
            continue
        ended = order.completed
        if ended is not None and ended <= asked.ts.timestamp() + CANCEL_SLACK_S:
            continue  # it had ended (or ended as the cancel was asked): nothing to cancel
        lost += 1
        notes = [e for e in about if e.kind in (_K.NOTE, _K.ORDER_SENT, _K.STOP)]
        c.fail(
            f"intent {intent}: cancel asked at {_show(asked)} never reached the gateway; "
            f"sim order {order.order_id} worked on and ended {order.status} "
            f"({order.filled}/{order.quantity}) at {ended}: " + "; ".join(map(_show, notes))
        )
    asked_total = sum(
        1 for about in ix.about.values() if any(e.kind is _K.CANCEL_SENT for e in about)
    )
    c.notes.append(f"{asked_total} cancels asked, {lost} lost")
    return c


# -- faults ------------------------------------------------------------------------------------


def check_faults_visible(
    ix: Index, tap: SimTap, faults: Sequence[FaultRecord], silent_s: float
) -> list[Check]:
    c = Check("every injected fault is visible in the ledger")
    gap = Check(
        "a slow gateway (delay) is visible in the ledger",
        todo="TODO(runtime): answers up to 1 s late leave no ledger entry: the keepalive acts "
        "only after keepalive_timeout_s (10 s); nothing measures the gateway's latency",
    )
    quiet: Counter[str] = Counter()
    for i, rec in enumerate(faults):
        target = gap if rec.kind == "delay" else c
        # a fault the harness waited for must show before the next one (or the day's end)
        nxt = faults[i + 1].seq_before if i + 1 < len(faults) else None
        found, wanted = recovery(rec, ix.entries, nxt if rec.kind in WINDOWED else None)
        if found is not None:
            continue
        if not exercised(rec, tap, silent_s):
            quiet[rec.kind] += 1
            continue
        target.fail(
            f"fault #{rec.n} {rec.kind} {rec.params} on {rec.day} (ledger after "
            f"#{rec.seq_before}): no {wanted}"
        )
    for kind, n in sorted(quiet.items()):
        why = NO_TRACE_WHY.get(kind, "no order met it")
        c.notes.append(f"{n} {kind} left no trace and could not have: {why}")
    return [c, gap]


def check_recovered(faults: Sequence[FaultRecord], bound: float) -> Check:
    c = Check(f"the bot recovered and quotes flowed again within {bound:g} s of every fault")
    for rec in faults:
        if rec.kind in LEDGER_READY and rec.ready_wall is None:
            c.fail(
                f"fault #{rec.n} {rec.kind} {rec.params} on {rec.day}: no recovery in the "
                f"ledger within {bound:g} s of its end (ledger after #{rec.seq_before})"
            )
        if rec.md_wall is None:
            c.fail(
                f"fault #{rec.n} {rec.kind} {rec.params} on {rec.day}: quotes did not reach "
                f"the strategy for every symbol within {bound:g} s of its end"
            )
    return c


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything the checks read."""

    entries: Sequence[Entry]
    tap: SimTap
    faults: Sequence[FaultRecord]
    verify: tuple[int, str]  # `ibpilot ledger verify`: exit code, output
    stop_mismatches: Sequence[str]  # day ends where the bot's STOP positions differ
    incidents: Sequence[str]  # unplanned bot exits, starts that never became ready
    bound: float
    silent_s: float  # the runtime's stale-data bound, in real seconds
    after_restarts: tuple[int, list[str]]  # short checks after each kill -9: (count, findings)


def check_all(inputs: Inputs) -> list[Check]:
    """Every invariant, in report order."""
    ix = Index.of(inputs.entries)
    verify = Check("`ibpilot ledger verify` exits 0")
    if inputs.verify[0] != 0:
        verify.fail(f"exit {inputs.verify[0]}: {inputs.verify[1][-1500:]}")
    runs = Check("the bot only stopped when the harness stopped it")
    runs.failures.extend(inputs.incidents)
    count, findings = inputs.after_restarts
    restarts = Check("after each kill -9 and restart: nothing sent twice, the chain verifies")
    restarts.failures.extend(findings)
    restarts.notes.append(f"{count} checked")
    return [
        check_no_double_send(ix, inputs.tap),
        check_sim_orders_ledgered(ix, inputs.tap),
        check_sent_orders_arrived(ix, inputs.tap),
        check_fills(ix, inputs.tap),
        check_book(ix, inputs.tap, inputs.stop_mismatches),
        check_sequencing(ix),
        check_states_agree(ix, inputs.tap),
        check_cancels(ix, inputs.tap),
        verify,
        *check_faults_visible(ix, inputs.tap, inputs.faults, inputs.silent_s),
        check_recovered(inputs.faults, inputs.bound),
        restarts,
        runs,
    ]

"""The OMS: the intent table, ledger before wire, IB's event oddities, and reconciliation.

Real parts: the MemoryLedger and the OMS; the broker is a hand-written recorder that checks,
at the moment of each send, that the intent is already in the ledger.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine import until

from ibpilot.broker.base import (
    BrokerError,
    BrokerOrderStatus,
    Contract,
    ExecutionReport,
    OrderReport,
    OrderRequest,
)
from ibpilot.broker.base import Side as BSide
from ibpilot.config import OrderType
from ibpilot.gate import Decision, Proposal, Reason, ReasonCode, Side, Source
from ibpilot.ledger import EntryKind, MemoryLedger
from ibpilot.oms import (
    INTENT_TRANSITIONS,
    OPEN_STATES,
    IllegalIntentTransition,
    Intent,
    IntentIds,
    IntentState,
    IntentTrigger,
    Oms,
    intent_table_markdown,
    next_intent_state,
)

D = Decimal
S, T = IntentState, IntentTrigger
K = EntryKind
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SPEC = "ab12cd34" + "0" * 56
AAPL = Contract(265598, "AAPL", "STK", "SMART", "USD")
ALLOW = Decision(allowed=True)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class RecordingBroker:
    """Records sends and cancels; fails the test if an intent is sent before it is ledgered."""

    def __init__(self, ledger: MemoryLedger) -> None:
        self.ledger = ledger
        self.placed: list[OrderRequest] = []
        self.cancelled: list[str] = []
        self.open: list[OrderReport] = []
        self.completed: list[OrderReport] = []
        self.execs: list[ExecutionReport] = []
        self.fail_place: Exception | None = None
        self.fail_cancel: Exception | None = None
        self.hold_place: asyncio.Event | None = None  # place() waits for it (a paced send)

    def _ledgered(self, intent_id: str) -> set[EntryKind]:
        return {e.kind for e in self.ledger.entries() if e.payload.get("intent_id") == intent_id}

    async def place(self, order: OrderRequest) -> int:
        assert K.INTENT in self._ledgered(order.intent_id), "sent before the intent was ledgered"
        self.placed.append(order)
        if self.hold_place is not None:
            await self.hold_place.wait()
        if self.fail_place is not None:
            raise self.fail_place
        return len(self.placed)

    async def cancel(self, intent_id: str) -> None:
        assert K.CANCEL_SENT in self._ledgered(intent_id)
        if self.fail_cancel is not None:
            raise self.fail_cancel
        self.cancelled.append(intent_id)

    async def open_orders(self) -> list[OrderReport]:
        return self.open

    async def completed_orders(self) -> list[OrderReport]:
        return self.completed

    async def executions(self, since: datetime | None = None) -> list[ExecutionReport]:
        return self.execs


def proposal(quantity: str = "100", side: Side = Side.BUY) -> Proposal:
    return Proposal(
        source=Source.STRATEGY, symbol="AAPL", side=side, quantity=D(quantity),
        order_type=OrderType.MKT,
    )  # fmt: skip


def report(
    intent_id: str, status: BrokerOrderStatus, filled: str = "0", quantity: str = "100",
    avg: str | None = None, perm_id: int = 7001,
) -> OrderReport:  # fmt: skip
    return OrderReport(
        intent_id, 1, perm_id, AAPL.con_id, BSide.BUY, D(quantity), D(filled),
        D(quantity) - D(filled), status, D(avg) if avg else None, NOW,
    )  # fmt: skip


def execution(
    intent_id: str, exec_id: str, quantity: str, price: str, commission: str | None = None,
    perm_id: int = 7001,
) -> ExecutionReport:  # fmt: skip
    return ExecutionReport(
        exec_id, intent_id, 1, perm_id, AAPL.con_id, BSide.BUY, D(quantity), D(price), NOW,
        D(commission) if commission else None,
    )  # fmt: skip


def kinds(ledger: MemoryLedger, intent_id: str | None = None) -> list[EntryKind]:
    return [
        e.kind for e in ledger.entries()
        if intent_id is None or e.payload.get("intent_id") == intent_id
    ]  # fmt: skip


def make(ledger: MemoryLedger | None = None) -> tuple[Oms, RecordingBroker, MemoryLedger, Clock]:
    ledger = ledger or MemoryLedger()
    broker, clock = RecordingBroker(ledger), Clock()
    oms = Oms(ledger, broker, spec_hash=SPEC, clock=clock, rng=random.Random(1))  # type: ignore[arg-type]
    return oms, broker, ledger, clock


async def sent(oms: Oms, quantity: str = "100") -> Intent:
    intent = await oms.submit(proposal(quantity), ALLOW, AAPL)
    assert intent is not None
    return intent


# ---------------------------------------------------------------------------------------------
# The table


def test_every_state_is_reachable_from_proposed() -> None:
    seen, todo = {S.PROPOSED}, deque([S.PROPOSED])
    while todo:
        state = todo.popleft()
        for (source, _), target in INTENT_TRANSITIONS.items():
            if source is state and target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == set(S)


def test_only_approved_sends_and_refused_is_final() -> None:
    assert [s for (s, t) in INTENT_TRANSITIONS if t is T.SEND] == [S.APPROVED]
    assert not [t for (s, t) in INTENT_TRANSITIONS if s is S.REFUSED]
    with pytest.raises(IllegalIntentTransition, match="does not accept"):
        next_intent_state(S.SENDING, T.SEND, "ibp-x")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(T)), max_size=30))
def test_any_trigger_sequence_follows_the_table_or_raises_the_named_error(
    triggers: list[IntentTrigger],
) -> None:
    state, sends = S.PROPOSED, 0
    for trigger in triggers:
        if (state, trigger) not in INTENT_TRANSITIONS:
            with pytest.raises(IllegalIntentTransition) as raised:
                next_intent_state(state, trigger)
            assert (raised.value.state, raised.value.trigger) == (state, trigger)
            continue
        after = next_intent_state(state, trigger)
        assert after is INTENT_TRANSITIONS[state, trigger]
        sends += trigger is T.SEND
        if state is S.FILLED:
            assert after is S.FILLED, "FILLED is final"
        state = after
    assert sends <= 1, "one intent is never sent twice"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([t for t in T if t not in (T.APPROVE, T.REFUSE, T.SEND)])))
def test_broker_evidence_never_leads_back_to_sending(triggers: list[IntentTrigger]) -> None:
    state = S.SENDING
    for trigger in triggers:
        state = INTENT_TRANSITIONS.get((state, trigger), state)
        assert state not in (S.PROPOSED, S.APPROVED, S.REFUSED)
        if trigger is T.FILL:
            assert state is S.FILLED


def test_the_markdown_table_lists_every_edge() -> None:
    text = intent_table_markdown()
    assert text.count("\n") == len(INTENT_TRANSITIONS) + 2
    assert "| CANCELLED | fill | FILLED |" in text


# ---------------------------------------------------------------------------------------------
# Ids


def test_intent_ids_are_unique_sortable_and_fit_orderref() -> None:
    ids = IntentIds(SPEC, random.Random(3))
    made = [ids.next(NOW) for _ in range(3000)]  # one instant: the sequence carries on
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(i.startswith("ibp-ab12cd34-") and len(i) == 29 for i in made)
    # the layout: ms since the epoch (10 digits), seq (2), random tail (4), Crockford base32
    assert made[:3] == [
        "ibp-ab12cd34-01KJQH0CC0007KNK",
        "ibp-ab12cd34-01KJQH0CC001JYVN",
        "ibp-ab12cd34-01KJQH0CC002HD99",
    ]


def test_intent_ids_keep_increasing_after_a_restart_with_an_earlier_clock() -> None:
    before = IntentIds(SPEC)
    last = [before.next(NOW) for _ in range(5)][-1]
    after = IntentIds(SPEC)
    after.observe(last)
    after.observe("ibp-otherspec-whatever")  # another spec's ids do not matter
    assert after.next(NOW - timedelta(hours=1)) > last


# ---------------------------------------------------------------------------------------------
# Ledger before wire


async def test_the_intent_is_ledgered_before_the_order_is_sent_and_sent_once() -> None:
    oms, broker, ledger, _ = make()
    intent = await sent(oms)
    assert [o.intent_id for o in broker.placed] == [intent.intent_id]
    assert kinds(ledger, intent.intent_id) == [K.PROPOSAL, K.DECISION, K.INTENT, K.ORDER_SENT]
    assert intent.state is S.SENDING
    assert oms.intent(intent.intent_id).order_id == 1  # type: ignore[union-attr]
    assert ledger.verify().ok


async def test_a_refused_proposal_is_ledgered_with_its_reasons_and_not_sent() -> None:
    oms, broker, ledger, _ = make()
    reason = Reason(ReasonCode.MAX_ORDER_QUANTITY, "quantity 500 is above 100", D(100), D(500))
    assert (
        await oms.submit(proposal("500"), Decision(allowed=False, reasons=(reason,)), AAPL) is None
    )
    assert broker.placed == []
    assert kinds(ledger) == [K.PROPOSAL, K.DECISION]
    decision = next(iter(ledger.entries(kind=K.DECISION))).payload
    assert decision["allowed"] is False
    assert decision["reasons"] == [
        {"code": "MAX_ORDER_QUANTITY", "message": "quantity 500 is above 100",
         "limit": "100", "actual": "500"}
    ]  # fmt: skip


async def test_a_send_that_raises_leaves_the_intent_unknown_never_resent() -> None:
    oms, broker, _ledger, _ = make()
    broker.fail_place = ConnectionError("socket closed")
    intent = await sent(oms)
    assert intent.state is S.UNKNOWN
    broker.fail_place = None
    broker.open = [report(intent.intent_id, BrokerOrderStatus.SUBMITTED)]
    found = await oms.reconcile("send failed")
    assert found.matched == [intent.intent_id]
    assert oms.intent(intent.intent_id).state is S.WORKING  # type: ignore[union-attr]
    assert len(broker.placed) == 1


async def test_cancel_is_ledgered_first_and_asked_once() -> None:
    oms, broker, _ledger, _ = make()
    intent = await sent(oms)
    assert await oms.cancel(intent.intent_id, "test")
    assert not await oms.cancel(intent.intent_id, "again")
    assert broker.cancelled == [intent.intent_id]
    oms.on_broker_error(
        BrokerError(202, "ORDER_CANCELLED", "Order Canceled", NOW, intent.intent_id, True)
    )
    assert oms.intent(intent.intent_id).state is S.CANCELLED  # type: ignore[union-attr]
    assert await oms.cancel_all() == []


async def test_a_cancel_that_could_not_be_asked_is_asked_again_later_even_after_a_restart() -> None:
    oms, broker, ledger, _ = make()
    intent = await sent(oms)
    broker.fail_cancel = ConnectionError("not connected")  # the link is down
    assert await oms.cancel(intent.intent_id, "first")
    assert broker.cancelled == []
    broker.fail_cancel = None
    assert await oms.cancel_all("again") == [intent.intent_id]  # not skipped as asked
    assert broker.cancelled == [intent.intent_id]
    broker.fail_cancel, broker.cancelled = ConnectionError("down"), []
    second = await sent(oms)
    assert await oms.cancel(second.intent_id)
    rebuilt, *_ = make(ledger)
    assert rebuilt.intent(second.intent_id).cancel_requested is False  # type: ignore[union-attr]


async def test_a_cancel_asked_while_the_order_is_being_sent_is_asked_once_it_is_sent() -> None:
    oms, broker, ledger, _ = make()
    broker.hold_place = asyncio.Event()
    sending = asyncio.create_task(oms.submit(proposal(), ALLOW, AAPL))
    await until(lambda: bool(broker.placed))  # place() waits: the token bucket, the spacing
    (intent,) = oms.intents(open_only=True)
    broker.fail_cancel = ValueError("not placed yet")  # IbkrBroker: ORDER_NOT_FOUND
    assert await oms.cancel_all("operator") == [intent.intent_id]
    assert oms.cancels_wanted() == [intent.intent_id]
    assert await oms.retry_cancels() == []  # not while it is being sent
    broker.fail_cancel = None
    broker.hold_place.set()
    await asyncio.wait_for(sending, 5)
    assert broker.cancelled == [intent.intent_id]
    assert oms.cancels_wanted() == []
    assert kinds(ledger, intent.intent_id) == [
        K.PROPOSAL, K.DECISION, K.INTENT, K.CANCEL_SENT, K.NOTE, K.ORDER_SENT, K.CANCEL_SENT,
    ]  # fmt: skip


async def test_a_cancel_the_link_lost_is_asked_again_by_retry_cancels_even_after_restart() -> None:
    oms, broker, ledger, _ = make()
    first, second, filled = await sent(oms), await sent(oms), await sent(oms)
    broker.fail_cancel = ConnectionError("not connected")
    assert await oms.cancel_all("operator") == [first.intent_id, second.intent_id, filled.intent_id]
    assert broker.cancelled == []
    assert await oms.retry_cancels() == [first.intent_id, second.intent_id, filled.intent_id]
    assert broker.cancelled == []  # still down: still wanted, nothing lost
    assert oms.cancels_wanted() == [first.intent_id, second.intent_id, filled.intent_id]
    oms.on_order_report(report(filled.intent_id, BrokerOrderStatus.FILLED, "100", perm_id=9))
    rebuilt, broker2, *_ = make(ledger)  # a restart: the wish survives in the ledger
    assert rebuilt.cancels_wanted() == [first.intent_id, second.intent_id]  # not the filled one
    assert await rebuilt.retry_cancels() == [first.intent_id, second.intent_id]
    assert broker2.cancelled == [first.intent_id, second.intent_id]
    assert rebuilt.cancels_wanted() == []
    assert await rebuilt.retry_cancels() == []  # asked once
    again, *_ = make(ledger)
    assert again.cancels_wanted() == []


# ---------------------------------------------------------------------------------------------
# IB's oddities


def _stream(intent_id: str, cancelled: bool) -> list[Any]:
    """One order's true events: two fills (with commission reports after) and its statuses."""
    last = report(intent_id, BrokerOrderStatus.FILLED, "100", avg="10.04")
    second = execution(intent_id, "0001.01.01", "40", "10.10")
    if cancelled:  # the cancel lands after a second, smaller fill: 70 of 100 filled
        last = report(intent_id, BrokerOrderStatus.CANCELLED, "70", avg="10.0142857")
        second = execution(intent_id, "0001.01.01", "10", "10.10")
    return [
        report(intent_id, BrokerOrderStatus.SUBMITTED),
        report(intent_id, BrokerOrderStatus.SUBMITTED, "60", avg="10.00"),
        execution(intent_id, "0001.00.01", "60", "10.00"),
        execution(intent_id, "0001.00.01", "60", "10.00", commission="1.00"),
        second,
        execution(intent_id, second.exec_id, str(second.quantity), "10.10", commission="1.00"),
        last,
    ]


@settings(max_examples=150, deadline=None)
@given(st.data(), st.booleans())
def test_any_ib_ordering_with_duplicates_ends_in_the_same_place(data: Any, cancelled: bool) -> None:
    oms, _, ledger, _ = make()
    intent = asyncio.run(sent(oms))
    events = _stream(intent.intent_id, cancelled)
    events += data.draw(st.lists(st.sampled_from(events), max_size=6), label="duplicates")
    for event in data.draw(st.permutations(events), label="order"):
        if isinstance(event, OrderReport):
            oms.on_order_report(event)
        else:
            oms.on_execution(event)
    final = oms.intent(intent.intent_id)
    assert final is not None
    assert final.state is (S.CANCELLED if cancelled else S.FILLED)
    assert final.filled == D(70 if cancelled else 100)
    assert final.avg_price == (D("10.10") + 6 * D("10.00")) / 7 if cancelled else D("10.04")
    fills = list(ledger.entries(kind=K.FILL))
    assert len(fills) == 2
    assert len(list(ledger.entries(kind=K.COMMISSION))) == 2
    assert not [e for e in ledger.entries() if "ignored" in e.payload]


async def test_a_fill_before_any_status_and_a_status_after_the_fill() -> None:
    oms, _, ledger, _ = make()
    intent = await sent(oms)
    oms.on_execution(execution(intent.intent_id, "e.1.01", "100", "10"))
    assert oms.intent(intent.intent_id).state is S.FILLED  # type: ignore[union-attr]
    oms.on_order_report(report(intent.intent_id, BrokerOrderStatus.SUBMITTED))
    oms.on_order_report(report(intent.intent_id, BrokerOrderStatus.FILLED, "100"))
    oms.on_order_report(report(intent.intent_id, BrokerOrderStatus.FILLED, "100"))  # duplicate
    assert oms.intent(intent.intent_id).state is S.FILLED  # type: ignore[union-attr]
    assert kinds(ledger, intent.intent_id).count(K.ORDER_STATUS) == 2


async def test_an_edge_ib_should_not_produce_is_recorded_not_raised() -> None:
    oms, _, ledger, _ = make()
    intent = await sent(oms)
    oms.on_order_report(report(intent.intent_id, BrokerOrderStatus.FILLED, "100"))
    oms.on_broker_error(BrokerError(201, "ORDER_REJECTED", "late", NOW, intent.intent_id, True))
    last = ledger.last()
    assert last is not None
    assert last.kind is K.ORDER_STATUS
    assert last.payload["ignored"] == "reject is not a transition from FILLED"
    assert oms.intent(intent.intent_id).state is S.FILLED  # type: ignore[union-attr]


async def test_an_execution_correction_replaces_the_fill() -> None:
    oms, _, ledger, _ = make()
    intent = await sent(oms)
    oms.on_execution(execution(intent.intent_id, "0000e1a.5f.01.01", "60", "10"))
    outcome = oms.on_execution(execution(intent.intent_id, "0000e1a.5f.01.02", "50", "10"))
    assert outcome is not None
    assert outcome.replaced is not None
    assert oms.intent(intent.intent_id).filled == 50  # type: ignore[union-attr]
    assert list(ledger.entries(kind=K.FILL))[-1].payload["corrects"] == "0000e1a.5f.01.01"


async def test_inactive_is_not_final_and_cancel_not_found_means_missing() -> None:
    oms, _, _, _ = make()
    held, lost = await sent(oms), await sent(oms)
    oms.on_order_report(report(held.intent_id, BrokerOrderStatus.INACTIVE))
    assert oms.intent(held.intent_id).state is S.REJECTED  # type: ignore[union-attr]
    oms.on_order_report(report(held.intent_id, BrokerOrderStatus.SUBMITTED))  # the locate came
    assert oms.intent(held.intent_id).state is S.WORKING  # type: ignore[union-attr]
    error = BrokerError(10147, "CANCEL_NOT_FOUND", "not found", NOW, lost.intent_id, True)
    oms.on_broker_error(error)
    assert oms.intent(lost.intent_id).state is S.MISSING  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# Recovery and reconciliation


async def test_the_oms_rebuilt_from_the_ledger_matches_the_original() -> None:
    oms, _, ledger, _ = make()
    a, b, c = await sent(oms), await sent(oms, "50"), await sent(oms)
    for event in _stream(a.intent_id, cancelled=False):
        oms.on_order_report(event) if isinstance(event, OrderReport) else oms.on_execution(event)
    oms.on_execution(execution(b.intent_id, "b.1.01", "20", "11", commission="1", perm_id=7002))
    await oms.cancel(c.intent_id)
    again, _, _, _ = make(ledger)
    for original in oms.intents():
        rebuilt = again.intent(original.intent_id)
        assert rebuilt == original
    duplicate = execution(b.intent_id, "b.1.01", "20", "11", commission="1", perm_id=7002)
    assert again.on_execution(duplicate) is None, "executions seen before a restart stay seen"


async def test_an_intent_left_sending_by_a_crash_is_matched_by_orderref_not_resent() -> None:
    oms, _broker, ledger, _ = make()
    intent = await sent(oms)
    # the crash: the process died after the INTENT entry; the broker got the order and filled it
    restarted, broker2, _, _ = make(ledger)
    broker2.completed = [report(intent.intent_id, BrokerOrderStatus.FILLED, "100", avg="10")]
    broker2.execs = [execution(intent.intent_id, "x.1.01", "100", "10", commission="1")]
    found = await restarted.reconcile("restart")
    assert found.unconfirmed == [intent.intent_id]
    assert found.matched == [intent.intent_id]
    assert found.filled_while_away == {intent.intent_id: D(100)}
    assert restarted.intent(intent.intent_id).state is S.FILLED  # type: ignore[union-attr]
    assert broker2.placed == []
    findings = [e.payload["finding"] for e in ledger.entries(kind=K.RECONCILIATION)]
    assert findings == ["unconfirmed", "matched", "filled_while_away", "summary"]


async def test_an_intent_the_broker_never_got_is_marked_missing_not_resent() -> None:
    oms, _, ledger, _ = make()
    intent = await sent(oms)
    restarted, broker2, _, _ = make(ledger)
    found = await restarted.reconcile("restart")
    assert found.missing == [intent.intent_id]
    assert restarted.intent(intent.intent_id).state is S.MISSING  # type: ignore[union-attr]
    assert broker2.placed == []
    assert not restarted.intents(open_only=True)


async def test_matching_falls_back_to_permid_and_unknown_orders_are_reported() -> None:
    oms, broker, ledger, _ = make()
    intent = await sent(oms)
    oms.on_order_report(report(intent.intent_id, BrokerOrderStatus.SUBMITTED, perm_id=4242))
    manual = OrderReport("", 0, 999, AAPL.con_id, BSide.SELL, D(5), D(0), D(5),
                         BrokerOrderStatus.SUBMITTED, None, NOW)  # fmt: skip
    broker.open = [report("", BrokerOrderStatus.SUBMITTED, "30", perm_id=4242), manual]
    found = await oms.reconcile("reconnect")
    assert found.matched == [intent.intent_id]
    assert oms.intent(intent.intent_id).state is S.PARTIALLY_FILLED  # type: ignore[union-attr]
    assert found.unknown_orders == [manual]
    assert oms.foreign_open_orders() == [manual]
    summary = list(ledger.entries(kind=K.RECONCILIATION))[-1].payload
    assert summary["finding"] == "summary"
    assert summary["unknown_orders"] == 1
    assert oms.pending() == ({"AAPL": D(70)}, {})


async def test_pending_and_recent_sends() -> None:
    oms, _, _, clock = make()
    await sent(oms)
    await oms.submit(proposal("30", Side.SELL), ALLOW, AAPL)
    assert oms.pending() == ({"AAPL": D(100)}, {"AAPL": D(30)})
    assert len(oms.recent_sends(clock.now)) == 2
    assert oms.recent_sends(clock.now + timedelta(seconds=61)) == ()
    assert {S.SENDING, S.WORKING, S.PARTIALLY_FILLED, S.UNKNOWN} == OPEN_STATES


def _pending_of(intents: list[Intent], *, include_cancelling: bool = True) -> tuple[dict, ...]:
    """What pending() means, from every intent ever made."""
    buys: dict[str, Decimal] = {}
    sells: dict[str, Decimal] = {}
    for i in intents:
        if i.open and (include_cancelling or not i.cancel_requested):
            side = buys if i.side is Side.BUY else sells
            side[i.symbol] = side.get(i.symbol, D(0)) + i.remaining
    return buys, sells


_STATUSES = [BrokerOrderStatus.SUBMITTED, BrokerOrderStatus.INACTIVE,
             BrokerOrderStatus.CANCELLED, BrokerOrderStatus.FILLED]  # fmt: skip
_EVENTS = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(["BUY", "SELL"]), st.integers(1, 50)),
    st.tuples(st.just("status"), st.integers(0, 7), st.sampled_from(_STATUSES)),
    st.tuples(st.just("fill"), st.integers(0, 7), st.integers(1, 50)),
    st.tuples(st.just("cancel"), st.integers(0, 7), st.just(0)),
    st.tuples(st.just("error"), st.integers(0, 7), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(events=st.lists(_EVENTS, max_size=40))
def test_open_intents_are_tracked_as_intents_open_and_close_and_reopen(
    events: list[tuple[str, Any, Any]],
) -> None:
    """pending() and the order of cancel_all() walk only the open intents: they must agree
    with every intent ever made, whatever IB reports (Inactive, then working again...)."""

    async def play() -> None:
        oms, _, ledger, clock = make()
        made: list[str] = []
        for n, (what, a, b) in enumerate(events):
            clock.now = NOW + timedelta(seconds=n)
            target = made[a % len(made)] if made and isinstance(a, int) else ""
            if what == "submit":
                intent = await oms.submit(proposal(str(b), Side(a)), ALLOW, AAPL)
                assert intent is not None
                made.append(intent.intent_id)
            elif what == "status" and target:
                known = oms.intent(target)
                assert known is not None
                filled = known.quantity if b is BrokerOrderStatus.FILLED else known.filled
                oms.on_order_report(report(target, b, str(filled), str(known.quantity), perm_id=0))
            elif what == "fill" and target:
                exec_id = f"e.{n}.01"
                oms.on_execution(execution(target, exec_id, str(b), "10", perm_id=0))
            elif what == "cancel" and target:
                await oms.cancel(target)
            elif what == "error" and target:
                oms.on_broker_error(BrokerError(201, "ORDER_REJECTED", "no", NOW, target, True))
            everything = oms.intents()
            assert oms.pending() == _pending_of(everything)
            assert oms.pending(include_cancelling=False) == _pending_of(
                everything, include_cancelling=False
            )
        again, _, _, _ = make(ledger)  # rebuilt from the ledger: the same open intents
        assert again.pending() == oms.pending()
        expected = [i.intent_id for i in oms.intents() if i.open and not i.cancel_requested]
        assert await oms.cancel_all("done") == expected

    asyncio.run(play())


async def test_a_commission_reported_after_its_fill_is_ledgered_once() -> None:
    oms, _, ledger, _ = make()
    intent = await sent(oms)
    first = oms.on_execution(execution(intent.intent_id, "c.1.01", "100", "10"))
    assert first is not None
    assert not first.commission_only
    late = oms.on_execution(execution(intent.intent_id, "c.1.01", "100", "10", commission="1.5"))
    assert late is not None
    assert late.commission_only
    assert oms.on_execution(execution(intent.intent_id, "c.1.01", "100", "10", "1.5")) is None
    [commission] = list(ledger.entries(kind=K.COMMISSION))
    assert commission.payload["commission"] == "1.5"
    again, _, _, _ = make(ledger)
    assert again.intent(intent.intent_id).fills["c.1"].commission == D("1.5")  # type: ignore[union-attr]


async def test_an_intent_id_is_never_reused() -> None:
    oms, broker, _, _ = make()
    intent = await sent(oms)
    reused = Proposal(
        source=Source.DASHBOARD, symbol="AAPL", side=Side.BUY, quantity=D(1),
        order_type=OrderType.MKT, intent_id=intent.intent_id,
    )  # fmt: skip
    with pytest.raises(ValueError, match="is taken"):
        await oms.submit(reused, ALLOW, AAPL)
    assert len(broker.placed) == 1

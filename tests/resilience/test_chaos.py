"""The short fault campaign: a few dozen faults of every kind against ``ibpilot start``.

The long one is ``bench/chaos.py --faults 1000``; both use the same harness and checker
(``chaos_campaign``, ``chaos_invariants``).  Bounded: at most 30 faults and 80 s of campaign.
The checker itself is tested on a planted ledger: it must name what is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest

from ibpilot.ledger import Entry, EntryKind, MemoryLedger

from .chaos_campaign import Campaign, CampaignConfig
from .chaos_faults import INJECTORS
from .chaos_harness import Arrival, SimExecution, SimOrder, SimTap
from .chaos_invariants import (
    Index,
    check_book,
    check_fills,
    check_no_double_send,
    check_sequencing,
    failed,
)
from .chaos_report import render

AFTERNOON = datetime.fromisoformat("2026-03-02T11:00:00-05:00")


@pytest.mark.timeout(240)
async def test_the_bot_survives_a_short_fault_campaign_with_every_invariant_holding(
    tmp_path: Path,
) -> None:
    config = CampaignConfig(seed=7, faults=30, wall_s=80, root=tmp_path, speed=400, start=AFTERNOON)
    outcome = await Campaign(config, print).run()
    report = render(outcome)
    print(report)
    assert len(outcome.faults) >= 20, report
    assert len({rec.kind for rec in outcome.faults}) >= len(INJECTORS) // 2, report
    assert not failed(outcome.checks), report


@dataclass(slots=True)
class FakeTap:
    """What the simulator "holds" in the checker's own tests."""

    arrivals: list[Arrival] = field(default_factory=list)
    executions: dict[str, SimExecution] = field(default_factory=dict)
    orders: dict[tuple[int, int], SimOrder] = field(default_factory=dict)
    held: dict[str, Decimal] = field(default_factory=dict)
    cash_now: Decimal = Decimal(1_000_000)

    def positions(self) -> dict[str, Decimal]:
        return self.held

    def cash(self) -> tuple[Decimal, Decimal]:
        return Decimal(1_000_000), self.cash_now


def _ledger_with(*records: tuple[EntryKind, Mapping[str, object]]) -> list[Entry]:
    ledger = MemoryLedger()
    for kind, payload in records:
        ledger.append(kind, payload, ts=datetime.fromisoformat("2026-03-02T15:00:00+00:00"))
    return list(ledger.entries())


def test_the_checker_names_a_double_send_a_lost_fill_and_an_order_sent_while_disconnected() -> None:
    k = EntryKind
    intent = {"intent_id": "A", "symbol": "AAPL", "side": "BUY", "quantity": "5"}
    entries = _ledger_with(
        (k.START, {}),
        (k.CONNECTION, {"state": "connected"}),
        (k.RECONCILIATION, {"finding": "positions"}),
        (k.INTENT, intent),
        (k.ORDER_SENT, {"intent_id": "A", "order_id": 7}),
        (k.CONNECTION, {"state": "disconnected"}),
        (k.INTENT, intent | {"intent_id": "B"}),
        (k.ORDER_SENT, {"intent_id": "B", "order_id": 8}),
    )
    now = time.time()
    tap = FakeTap(
        arrivals=[
            Arrival("place", 7, "A", now, now, False),
            Arrival("place", 9, "A", now, now, False),
        ],
        executions={
            "e1": SimExecution("e1", 7, "A", "AAPL", "BOT", Decimal(5), Decimal(200), Decimal(1), 0)
        },
        held={"AAPL": Decimal(5)},
        cash_now=Decimal(998_999),
    )
    sim = cast(SimTap, tap)
    ix = Index.of(entries)
    [twice] = check_no_double_send(ix, sim).failures
    assert "intent A reached the simulator 2 times (order ids [7, 9])" in twice
    [lost] = check_fills(ix, sim).failures
    assert "sim exec e1" in lost
    assert "no FILL in the ledger" in lost
    book = check_book(ix, sim, []).failures
    assert any("AAPL: the ledger's fills sum to 0, the sim holds 5" in f for f in book)
    [early] = check_sequencing(ix).failures
    assert early.startswith("not connected, not reconciled: #7 ")
    assert "'intent_id': 'B'" in early

"""The fault campaign's report: faults by kind, recoveries, times to resume, invariants."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence

from .chaos_campaign import Outcome
from .chaos_evidence import FaultRecord
from .chaos_invariants import Check, failed

LISTED = 12  # failures printed per check


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "      -"
    return f"{statistics.median(values):5.2f}/{max(values):5.2f}"


def _row(kind: str, recs: Sequence[FaultRecord]) -> str:
    ready = [r.ready_wall - r.end_wall for r in recs if r.ready_wall is not None]
    quotes = [r.md_wall - r.end_wall for r in recs if r.md_wall is not None]
    trade = [r.trade_s for r in recs if r.trade_s is not None]
    return (
        f"  {kind:<18}{len(recs):>6}{len(ready):>10}   {_spread(ready)}   "
        f"{_spread(quotes)}   {_spread(trade)}"
    )


def _check_lines(check: Check) -> list[str]:
    verdict = "PASS" if check.ok else ("KNOWN GAP" if check.todo else "FAIL")
    lines = [
        f"  [{verdict}] {check.name}" + (f" ({len(check.failures)})" if check.failures else "")
    ]
    lines += [f"      note: {n}" for n in check.notes]
    if check.todo:
        lines.append(f"      {check.todo}")
    lines += [f"      - {f[:900]}" for f in check.failures[:LISTED]]
    if len(check.failures) > LISTED:
        lines.append(f"      ... and {len(check.failures) - LISTED} more")
    return lines


def render(outcome: Outcome) -> str:
    """The report as text."""
    cfg = outcome.config
    by_kind: dict[str, list[FaultRecord]] = defaultdict(list)
    for rec in outcome.faults:
        by_kind[rec.kind].append(rec)
    days = outcome.days
    head = (
        f"fault campaign: seed {cfg.seed}, speed {cfg.speed:g}x, {len(outcome.faults)} faults "
        f"in {outcome.wall_s:.0f} s over {len(days)} simulated day(s) ({days[0]}..{days[-1]})"
    )
    counts = (
        f"bot starts {outcome.bot_starts}, ledger entries {outcome.entries}, intents "
        f"{outcome.intents}, sim executions {outcome.executions}, operator cancel-alls "
        f"{outcome.cancel_alls}, operator halts {outcome.halts}"
    )
    lines = [
        head,
        counts,
        "",
        "  kind               count     shown   ready s       quotes s      trade s",
        "  shown: the ledger showed the recovery, notice or error while the harness waited;",
        "  median/max real seconds from the fault's end to: ready (reconnected and reconciled,",
        "  or the notice), quotes (every symbol's reach the strategy), trade (the next intent)",
    ]
    lines += [_row(kind, recs) for kind, recs in sorted(by_kind.items())]
    lines.append(_row("all", outcome.faults))
    lines += ["", "invariants:"]
    for check in outcome.checks:
        lines += _check_lines(check)
    bad = failed(outcome.checks)
    gaps = sum(1 for c in outcome.checks if c.todo and not c.ok)
    verdict = "FAIL" if bad else "PASS"
    lines += ["", f"RESULT: {verdict} ({len(bad)} invariant(s) failed, {gaps} known gap(s))"]
    return "\n".join(lines)

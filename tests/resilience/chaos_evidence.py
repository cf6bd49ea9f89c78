"""What each injected fault must leave in the ledger, and the times to recover from it.

A fault is *recovered* when the ledger shows the bot back to trading: after a socket fault
(drop, restart, half-open, held client id, scheduled restart) a CONNECTION disconnected, then
connected, then the positions RECONCILIATION; after IB's 1100 the CONNECTION ib_lost, then
connected with 1101 (data lost) or 1102, then the RECONCILIATION; after ``kill -9`` a START,
then the RECONCILIATION.  A farm fault shows as the farm's MARKET_DATA notices (broken, ok),
a silenced feed as MARKET_DATA silent/stale entries for a silenced symbol, an injected
rejection or read-only API as the ORDER_STATUS that carries IB's error (when an order met it).
A delayed gateway is expected to show too (it does not yet: a known gap of the runtime).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ibpilot.ledger import Entry, EntryKind

from .chaos_harness import SimTap

_K = EntryKind
SOCKET_FAULTS = frozenset(
    {"drop", "restart", "restart_rollback", "half_open", "hold_client_id", "schedule_restart"}
)
IB_FAULTS = frozenset({"lost_kept", "lost_data_lost"})
KILL_FAULTS = frozenset({"kill9", "rollback_kill9"})
FARM_CODES = {"farm_market": (2103, 2104), "farm_hmds": (2105, 2106), "farm_secdef": (2157, 2158)}
SILENCE_FAULTS = frozenset({"silence_renewable", "silence_dead"})
LEDGER_READY = SOCKET_FAULTS | IB_FAULTS | KILL_FAULTS  # the harness waits for these recoveries
# evidence that must show before the next fault is injected (the harness waited for it)
WINDOWED = LEDGER_READY | SILENCE_FAULTS | frozenset(FARM_CODES)
Test = Callable[[Entry], bool]


@dataclass(slots=True)
class FaultRecord:
    """One injected fault, as the harness saw it (wall and simulated epoch seconds)."""

    n: int
    kind: str
    params: dict[str, Any]
    day: str
    seq_before: int  # the ledger's last seq when it was injected
    start_wall: float
    start_sim: float
    end_wall: float = 0.0
    end_sim: float = 0.0
    ready_wall: float | None = None  # the recovery the ledger shows, seen by the harness
    md_wall: float | None = None  # every symbol's quotes reached the strategy again
    trade_s: float | None = None  # real seconds from its end to the next INTENT


def _first(entries: Sequence[Entry], after: int, test: Test) -> Entry | None:
    """The first entry with a seq above ``after`` that passes ``test`` (entries in seq order)."""
    start = bisect_right(entries, after, key=lambda e: e.seq)
    return next((e for e in entries[start:] if test(e)), None)


def _connection(state: str, codes: tuple[int, ...] = ()) -> Test:
    def test(e: Entry) -> bool:
        p = e.payload
        return (
            e.kind is _K.CONNECTION
            and p.get("state") == state
            and (not codes or p.get("code") in codes)
        )

    return test


def _reconciled(e: Entry) -> bool:
    return e.kind is _K.RECONCILIATION and e.payload.get("finding") == "positions"


def _code(*codes: int) -> Test:
    return lambda e: e.kind is _K.MARKET_DATA and e.payload.get("code") in codes


def _error(text: str) -> Test:
    return lambda e: e.kind is _K.ORDER_STATUS and text in str(e.payload.get("error", ""))


def _chain(entries: Sequence[Entry], after: int, tests: Sequence[Test]) -> Entry | None:
    """The entry matching the last test, each test matched after the one before."""
    found: Entry | None = None
    for test in tests:
        found = _first(entries, after, test)
        if found is None:
            return None
        after = found.seq
    return found


def expected(rec: FaultRecord) -> tuple[list[Test], str]:
    """The entries ``rec`` must leave, in order, and their description."""
    reconciled: Test = _reconciled
    if rec.kind in SOCKET_FAULTS:
        tests = [_connection("disconnected"), _connection("connected"), reconciled]
        return tests, "CONNECTION disconnected, then connected, then RECONCILIATION"
    if rec.kind in IB_FAULTS:
        code = 1101 if rec.kind == "lost_data_lost" else 1102
        back = _connection("connected", (code,))

        def restored(e: Entry) -> bool:
            return back(e) and bool(e.payload.get("data_lost")) == (code == 1101)

        tests = [_connection("ib_lost", (1100,)), restored, reconciled]
        return tests, f"CONNECTION ib_lost 1100, then connected {code}, then RECONCILIATION"
    if rec.kind in KILL_FAULTS:
        return [lambda e: e.kind is _K.START, reconciled], "START, then RECONCILIATION"
    if rec.kind in FARM_CODES:
        down, up = FARM_CODES[rec.kind]
        return [_code(down), _code(up)], f"MARKET_DATA {down}, then {up}"
    if rec.kind in SILENCE_FAULTS:
        symbols = set(rec.params.get("symbols") or ())

        def silent(e: Entry) -> bool:
            p = e.payload
            return (
                e.kind is _K.MARKET_DATA
                and p.get("state") in ("silent", "stale")
                and (not symbols or p.get("symbol") in symbols)
            )

        return [silent], "MARKET_DATA silent or stale for a silenced symbol"
    if rec.kind == "reject_next":
        reason = str(rec.params["reason"])
        return [_error(reason)], f"ORDER_STATUS with IB 201 {reason!r}"
    if rec.kind == "read_only":
        return [_error("321")], "ORDER_STATUS with IB 321"
    return [lambda e: False], f"an entry about the {rec.kind}"


def recovery(
    rec: FaultRecord, entries: Sequence[Entry], before: int | None = None
) -> tuple[Entry | None, str]:
    """The entry that shows the bot recovered from ``rec`` (None: not (yet) in ``entries``,
    which must be in seq order; or not at or before seq ``before``), and what was looked for."""
    tests, wanted = expected(rec)
    found = _chain(entries, rec.seq_before, tests)
    if found is not None and before is not None and found.seq > before:
        return None, f"{wanted} before the next fault (found only at #{found.seq})"
    return found, wanted


def exercised(rec: FaultRecord, tap: SimTap, silent_s: float) -> bool:
    """Whether a fault that only shows on order traffic met any (read-only, reject-next), and
    whether a silenced feed kept the strategy without quotes longer than the engine's
    maintenance tick (1 wall second) plus its stale bound (``silent_s`` real seconds): a
    silence that met no subscription, or one renewed meanwhile, cannot be noticed."""
    if rec.kind in SILENCE_FAULTS:  # no quote longer than the engine's tick and stale bound
        return float(rec.params.get("quiet_s", 0.0)) > 1.0 + silent_s
    if rec.kind == "read_only":
        return any(a.read_only and rec.start_wall <= a.wall <= rec.end_wall for a in tap.arrivals)
    if rec.kind == "reject_next":  # an order the rejection could take (not refused first)
        return any(
            a.what == "place" and a.wall >= rec.start_wall and not (a.read_only or a.dropped)
            for a in tap.arrivals
        )
    return True


def resume_to_trade(
    rec: FaultRecord, entries: Sequence[Entry], speed: float, bound: float
) -> float | None:
    """Real seconds from the fault's end to the bot's next INTENT (the ledger's simulated
    times over ``speed``); None when none followed within ``bound`` real seconds (the day
    ended first)."""
    nxt = _first(
        entries, rec.seq_before, lambda e: e.kind is _K.INTENT and e.ts.timestamp() >= rec.end_sim
    )
    seconds = None if nxt is None else (nxt.ts.timestamp() - rec.end_sim) / speed
    return seconds if seconds is not None and seconds <= bound else None

"""The status view of ``ibpilot demo``: an engine status and a few numbers, rendered as text.

Pure code, no I/O: :class:`LedgerTally` is fed ledger entries (in seq order) and counts what
the bot did (orders sent, fills, refusals) and the average fill price of each open position;
:func:`render` draws the full view (for a terminal, redrawn in place by the caller) and
:func:`render_line` one compact line (for logs and pipes).  Per-symbol unrealised P&L is
valued against the average fill price; the totals are the engine's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from ibpilot.engine import DecisionRecord, EngineStatus
from ibpilot.ledger import Entry, EntryKind
from ibpilot.oms import exec_base

ZERO = Decimal(0)
EASTERN = ZoneInfo("America/New_York")
DECISIONS_SHOWN = 6
_GREEN, _RED, _BOLD, _DIM, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[1m", "\x1b[2m", "\x1b[0m"


@dataclass(frozen=True, slots=True)
class _Fill:
    symbol: str
    signed: Decimal  # bought > 0, sold < 0
    price: Decimal


@dataclass(slots=True)
class LedgerTally:
    """What the ledger says so far; :meth:`feed` it the entries after :attr:`seq`."""

    seq: int = 0  # the last entry seen
    orders_sent: int = 0
    fills: int = 0
    decisions: int = 0
    refused: int = 0
    _symbols: dict[str, str] = field(default_factory=dict)  # intent id -> symbol
    _fills: dict[str, _Fill] = field(default_factory=dict)  # by exec id base, in order

    def feed(self, entries: Iterable[Entry]) -> None:
        """Count ``entries`` (those with a seq at or below :attr:`seq` are skipped)."""
        for entry in entries:
            if entry.seq <= self.seq:
                continue
            self.seq = entry.seq
            payload = entry.payload
            if entry.kind is EntryKind.DECISION:
                self.decisions += 1
                self.refused += payload.get("allowed") is not True
            elif entry.kind is EntryKind.INTENT:
                self._symbols[str(payload["intent_id"])] = str(payload["symbol"])
            elif entry.kind is EntryKind.ORDER_SENT:
                self.orders_sent += 1
            elif entry.kind is EntryKind.FILL:
                self._fill(payload)

    def _fill(self, payload: Mapping[str, object]) -> None:
        symbol = self._symbols.get(str(payload.get("intent_id")))
        if symbol is None:
            return
        quantity, price = Decimal(str(payload["quantity"])), Decimal(str(payload["price"]))
        signed = quantity if payload.get("side") == "BUY" else -quantity
        key = exec_base(str(payload["exec_id"]))
        if key not in self._fills:
            self.fills += 1
        self._fills[key] = _Fill(symbol, signed, price)  # a correction replaces it in place

    def average_price(self, symbol: str) -> Decimal | None:
        """The average fill price of the open position in ``symbol`` (None when flat)."""
        held, basis = ZERO, ZERO
        for fill in self._fills.values():
            if fill.symbol != symbol:
                continue
            after = held + fill.signed
            if not held or (held > 0) == (fill.signed > 0):  # opening or adding
                basis = (basis * held + fill.price * fill.signed) / after if after else ZERO
            elif after and (after > 0) != (held > 0):  # crossed zero: the rest opened here
                basis = fill.price
            held = after
        return basis if held else None


class Phase(StrEnum):
    RUNNING = "Ctrl-C to stop"
    STOPPING = "stopping..."
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ViewInfo:
    """What the view shows besides the engine's status."""

    sim_time: datetime
    speed: float
    gateway: str  # host:port of the simulated gateway
    symbols: tuple[str, ...]
    elapsed: float  # real seconds since the start
    ledger: str  # where the ledger lives
    phase: Phase = Phase.RUNNING


def _money(value: Decimal | None, signed: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def _quantity(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color else text


def render_decision(record: DecisionRecord, *, color: bool = False) -> str:
    """One decision: simulated time (US/Eastern), source, side, quantity, symbol, verdict."""
    verdict = (
        _paint("allowed", _GREEN, color)
        if record.allowed
        else _paint("refused " + ", ".join(record.codes), _RED, color)
    )
    when = record.time.astimezone(EASTERN)
    order = f"{record.side} {_quantity(record.quantity)} {record.symbol}"
    return f"{when:%H:%M:%S}  {record.source:<8} {order:<14} {verdict}"


def _header(status: EngineStatus, info: ViewInfo, color: bool) -> list[str]:
    trading = str(status.trading_state)
    if status.halt_reason:
        trading += f" ({status.halt_reason})"
    title = _paint("ibpilot demo", _BOLD, color)
    when = f"{info.sim_time.astimezone(EASTERN):%Y-%m-%d %H:%M:%S} ET"
    first = f"{title}  simulated {when} ({info.speed:g}x)  real {info.elapsed:.0f} s  {info.phase}"
    link = f"connection {status.connection}   trading {trading}"
    spec = f"environment {status.environment}   spec hash {status.spec_hash[:12]}"
    return [
        first,
        f"gateway  {info.gateway} (simulated)   {link}",
        f"strategy {status.strategy}   {spec}",
    ]


def _positions(status: EngineStatus, info: ViewInfo, tally: LedgerTally) -> list[str]:
    lines = [f"{'symbol':<8}{'position':>10}{'mark':>12}{'avg price':>12}{'unrealised':>13}"]
    for symbol in info.symbols:
        held = status.positions.get(symbol, ZERO)
        mark = status.marks.get(symbol)
        average = tally.average_price(symbol) if held else None
        unrealised = held * (mark - average) if mark is not None and average is not None else None
        lines.append(
            f"{symbol:<8}{_quantity(held):>10}{_money(mark, signed=False):>12}"
            f"{_money(average, signed=False):>12}{_money(unrealised):>13}"
        )
    return lines


def render(
    status: EngineStatus,
    info: ViewInfo,
    tally: LedgerTally,
    *,
    color: bool = False,
    width: int = 100,
) -> str:
    """The full view, one line per row, each cut to ``width`` characters (ANSI not counted)."""
    total = status.realized_pnl + status.unrealized_pnl
    pnl = (
        f"realised {_money(status.realized_pnl)}  unrealised {_money(status.unrealized_pnl)}  "
        f"total {_money(total)} USD (after commissions)"
    )
    counts = (
        f"orders sent {tally.orders_sent}   fills {tally.fills}   open orders "
        f"{len(status.open_orders)}   decisions {tally.decisions} ({tally.refused} refused)   "
        f"strategy errors {status.strategy_errors}"
    )
    lines = [
        *_header(status, info, color),
        "",
        *_positions(status, info, tally),
        "",
        f"P&L today  {pnl}",
        counts,
        f"ledger     {tally.seq} entries in {info.ledger}",
        "",
        "last decisions of the gate (simulated time, US/Eastern):",
    ]
    shown: Sequence[DecisionRecord] = status.last_decisions[-DECISIONS_SHOWN:]
    lines += [f"  {render_decision(d, color=color)}" for d in shown] or ["  (none yet)"]
    return "\n".join(_cut(line, width) for line in lines)


def _cut(line: str, width: int) -> str:
    """``line`` shortened to ``width`` visible characters (escape sequences kept whole)."""
    visible, out, i = 0, [], 0
    while i < len(line):
        if line.startswith("\x1b[", i):
            end = line.index("m", i) + 1
            out.append(line[i:end])
            i = end
            continue
        if visible == width:
            out.append(_RESET if "\x1b[" in line else "")
            break
        out.append(line[i])
        visible, i = visible + 1, i + 1
    return "".join(out)


def render_line(status: EngineStatus, info: ViewInfo, tally: LedgerTally) -> str:
    """The view on one line: time, connection, trading state, positions, P&L, counts."""
    held = [f"{s} {_quantity(q)}" for s, q in sorted(status.positions.items()) if q]
    total = status.realized_pnl + status.unrealized_pnl
    return (
        f"[demo] {info.sim_time.astimezone(EASTERN):%H:%M} ET  {status.connection}  "
        f"{status.trading_state}  positions {', '.join(held) or 'flat'}  "
        f"P&L {_money(total)}  sent {tally.orders_sent} filled {tally.fills} "
        f"refused {tally.refused}  ledger {tally.seq}"
    )

"""``ibpilot demo``: the whole bot against the simulated gateway, with a live status view.

:func:`run_demo` starts a :class:`~ibpilot.sim.SimGateway` in-process on a free loopback
port, on an accelerated clock (60x: a simulated minute per real second) from a Monday's
09:30 US/Eastern; writes a demo ``adapter.json`` and strategy file (``sma_cross`` on AAPL,
MSFT and SPY, with a realistic mandate) into ``var/demo/``; opens a fresh SQLite ledger there;
and runs the :class:`~ibpilot.engine.Engine` with :class:`~ibpilot.broker.ibkr.IbkrBroker`
over the real TWS API socket.  The engine's clock is the simulated one, so the gate's
trading-hours and orders-per-minute rules live in simulated time.  One operator ticket that
breaks the mandate shows that every order, not only the strategy's, passes the gate.

Ctrl-C (or SIGTERM, or ``--duration``) stops it cleanly: open orders are cancelled (the
strategy's ``on_stop``), STOP is ledgered, the ledger is verified and closed, and a summary
is printed.  A second Ctrl-C leaves without waiting.  ``ibpilot demo --scripted`` runs
:mod:`ibpilot.demo_scripted` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from ibpilot._signals import on_stop_signals
from ibpilot.broker.ibkr import IbkrBroker
from ibpilot.config import load_adapter, load_strategy
from ibpilot.demo_view import (
    EASTERN,
    LedgerTally,
    Phase,
    ViewInfo,
    render,
    render_decision,
    render_line,
)
from ibpilot.engine import DecisionRecord, Engine, EngineStatus
from ibpilot.gate import Source
from ibpilot.ledger import DEFAULT_FILENAME, Ledger, LedgerError, open_ledger
from ibpilot.ledger_cli import render_report
from ibpilot.sim import SimGateway

DEMO_START = datetime.fromisoformat("2026-03-02T09:30:00-05:00")  # a Monday, at the open
DEMO_SPEED = 60.0  # one simulated minute per real second
DEMO_DIR = Path("var/demo")
DEMO_SYMBOLS = {"AAPL": "NASDAQ", "MSFT": "NASDAQ", "SPY": "ARCA"}  # symbol -> primary exchange
TICKET = ("AAPL", "BUY", Decimal(25))  # above max_order_quantity: the gate refuses it
REFRESH_S = 1.0  # the terminal view
LINE_EVERY_S = 5.0  # the compact line, when stdout is not a terminal
EXIT_OK, EXIT_ERROR, EXIT_INTEGRITY = 0, 1, 3


@dataclass(frozen=True, slots=True)
class DemoOptions:
    seed: int = 1
    speed: float = DEMO_SPEED
    duration: float | None = None  # real seconds; None: until Ctrl-C
    directory: Path = DEMO_DIR
    quiet_logs: bool = True  # keep library warnings from scribbling over the view


def demo_adapter(port: int) -> dict[str, object]:
    """The demo's ``adapter.json``: the simulated gateway on ``port``."""
    return {
        "adapter": "ibkr",
        "credentials": {"host": "127.0.0.1", "port": port, "client_id": 1},
        "trading_pair": "AAPL", "exchange": "SMART", "sec_type": "STK",
        "environment": "sim", "rate_limit_ms": 0,
    }  # fmt: skip


def demo_strategy() -> dict[str, object]:
    """The demo's strategy file: sma_cross, short averages so that it trades within seconds."""
    instruments = [
        {"symbol": s, "sec_type": "STK", "exchange": "SMART", "currency": "USD",
         "primary_exchange": p} for s, p in DEMO_SYMBOLS.items()
    ]  # fmt: skip
    mandate = {
        "allow_live": False, "allowed_symbols": list(DEMO_SYMBOLS), "allowed_sec_types": ["STK"],
        "allowed_order_types": ["MKT", "LMT"], "max_order_quantity": 10,
        "max_order_notional": 10000, "max_position": 10, "max_gross_exposure": 25000,
        "max_daily_loss": 500, "flatten_on_daily_loss": True, "max_orders_per_minute": 6,
        "trading_hours": {"start": "09:35", "end": "15:55", "time_zone": "US/Eastern"},
        "price_collar_pct": 1, "min_price": 5, "require_quote": True,
    }  # fmt: skip
    return {
        "name": "sma_cross demo (simulated gateway)", "strategy": "sma_cross",
        "params": {"fast": 3, "slow": 8, "quantity": 10}, "instruments": instruments,
        "bar_size": "1 min", "warmup": "1800 S", "on_stop": "cancel_open_orders",
        "mandate": mandate,
    }  # fmt: skip


def write_demo_files(directory: Path, port: int) -> tuple[Path, Path]:
    """Write adapter.json and the strategy file; remove the previous run's ledger."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob(f"{DEFAULT_FILENAME}*"):  # the -wal and -shm files too
        old.unlink()
    adapter, strategy = directory / "adapter.json", directory / "sma_cross_demo.json"
    adapter.write_text(json.dumps(demo_adapter(port), indent=2) + "\n", encoding="utf-8")
    strategy.write_text(json.dumps(demo_strategy(), indent=2) + "\n", encoding="utf-8")
    return adapter, strategy


def _say(text: str, out: TextIO | None = None) -> None:
    print(text, file=out or sys.stdout, flush=True)


class _Screen:
    """The view: redrawn in place on a terminal; otherwise a line every few seconds."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.tty = out, out.isatty()
        self._drawn = 0  # lines of the view currently on screen
        self._last_line = -math.inf
        self._seen: DecisionRecord | None = None

    def note(self, text: str) -> None:
        """A line above the view (the view is redrawn at the next update)."""
        self._erase()
        _say(text, self.out)

    def update(self, status: EngineStatus, info: ViewInfo, tally: LedgerTally) -> None:
        if self.tty:
            width = max(40, shutil.get_terminal_size().columns - 1)
            view = render(status, info, tally, color=True, width=width)
            self._erase()
            self.out.write("\x1b[?25l" + view + "\n")
            self.out.flush()
            self._drawn = view.count("\n") + 1
            return
        for record in self._new_decisions(status.last_decisions):
            _say(f"[decision] {render_decision(record)}", self.out)
        if info.elapsed - self._last_line >= LINE_EVERY_S:
            self._last_line = info.elapsed
            _say(render_line(status, info, tally), self.out)

    def final(self, status: EngineStatus, info: ViewInfo, tally: LedgerTally) -> None:
        """The last view, in full, then the cursor back."""
        self.update(status, info, tally)
        if self.tty:
            self.out.write("\x1b[?25h")
        else:
            _say(render(status, info, tally), self.out)
        self._drawn = 0

    def restore(self) -> None:
        if self.tty:
            self.out.write("\x1b[?25h")
            self.out.flush()

    def _erase(self) -> None:
        if self.tty and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _new_decisions(self, records: tuple[DecisionRecord, ...]) -> list[DecisionRecord]:
        start = 0
        for i in range(len(records) - 1, -1, -1):
            if records[i] is self._seen:
                start = i + 1
                break
        if records:
            self._seen = records[-1]
        return list(records[start:])


class _Signals:
    """SIGINT/SIGTERM: the first stops cleanly, the second cancels the run."""

    def __init__(self, run: asyncio.Task[None], screen: _Screen) -> None:
        self.stop = asyncio.Event()
        self._run, self._screen = run, screen
        self._remove = on_stop_signals(self._on_signal)

    def _on_signal(self, name: str) -> None:
        if self._run.done():
            return  # stopped already: the summary is on its way
        if not self.stop.is_set():
            self._screen.note(
                f"[demo] {name}: stopping (no new orders; open orders are cancelled); "
                "press Ctrl-C again to leave at once"
            )
            self.stop.set()
        else:
            self._screen.note(f"[demo] {name} again: leaving without waiting")
            self._run.cancel()

    def remove(self) -> None:
        self._remove()


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Library log lines would scribble over the view; the ledger records what matters."""
    loggers = [logging.getLogger(name) for name in ("ib_async", "ibpilot")]
    levels = [logger.level for logger in loggers]
    if enabled:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def run_demo(opts: DemoOptions) -> int:
    """Run the live demo until Ctrl-C or ``opts.duration``; returns the exit code
    (0; 1 when the engine failed; 3 when the ledger does not verify)."""
    gateway = SimGateway("127.0.0.1", 0, seed=opts.seed, speed=opts.speed, start=DEMO_START)
    with _quiet(opts.quiet_logs):
        async with gateway as gw:
            try:
                adapter_path, strategy_path = write_demo_files(opts.directory, gw.port)
                ledger = open_ledger(None, opts.directory)
            except (OSError, LedgerError) as exc:
                print(f"[demo] cannot prepare {opts.directory}: {exc}", file=sys.stderr)
                return EXIT_ERROR
            adapter, loaded = load_adapter(adapter_path), load_strategy(strategy_path)
            _say(
                f"[demo] simulated IB Gateway on 127.0.0.1:{gw.port} (seed {opts.seed}, "
                f"{opts.speed:g}x, from {DEMO_START:%Y-%m-%d %H:%M} US/Eastern); no IBKR account",
            )
            _say(f"[demo] adapter {adapter_path}; strategy {strategy_path}")
            _say(f"[demo] spec hash {loaded.spec_hash}")
            try:
                clock = gw.clock.now_dt  # the gate's hours and rates run on simulated time
                broker = IbkrBroker(adapter, clock=clock, file=str(adapter_path))
                engine = Engine(loaded, broker, ledger, clock, environment=adapter.environment)
                return await _Session(engine, broker, ledger, gw, opts).run()
            finally:
                ledger.close()


class _Session:
    def __init__(
        self, engine: Engine, broker: IbkrBroker, ledger: Ledger, gw: SimGateway, opts: DemoOptions
    ) -> None:
        self.engine, self.broker, self.ledger, self.gw, self.opts = engine, broker, ledger, gw, opts
        self.screen, self.tally = _Screen(sys.stdout), LedgerTally()
        self.symbols = tuple(i.symbol for i in engine.config.instruments)
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._ticket_sent = False

    def _info(self, phase: Phase = Phase.RUNNING) -> ViewInfo:
        return ViewInfo(
            sim_time=self.gw.clock.now_dt(), speed=self.gw.clock.speed,
            gateway=f"127.0.0.1:{self.gw.port}", symbols=self.symbols,
            elapsed=self._loop.time() - self._t0, phase=phase,
            ledger=str(self.opts.directory / DEFAULT_FILENAME),
        )  # fmt: skip

    def _refresh(self, phase: Phase = Phase.RUNNING) -> None:
        self.tally.feed(self.ledger.entries(after_seq=self.tally.seq))
        self.screen.update(self.engine.status(), self._info(phase), self.tally)

    async def run(self) -> int:
        run = asyncio.create_task(self.engine.run(), name="ibpilot-demo-engine")
        signals = _Signals(run, self.screen)
        try:
            reason = await self._watch(run, signals)
            self._refresh(Phase.STOPPING)
            await self.engine.stop(reason)
            await asyncio.wait({run})
            if run.cancelled():  # the engine could not disconnect: leave the gateway quietly
                with contextlib.suppress(Exception):
                    await self.broker.disconnect()
            self.tally.feed(self.ledger.entries(after_seq=self.tally.seq))
            self.screen.final(self.engine.status(), self._info(Phase.STOPPED), self.tally)
            return self._summary(reason, _failure(run))
        finally:
            signals.remove()
            self.screen.restore()

    async def _watch(self, run: asyncio.Task[None], signals: _Signals) -> str:
        """Refresh the view until the run ends, a signal, or the duration; returns why."""
        stop = asyncio.ensure_future(signals.stop.wait())
        duration = self.opts.duration
        try:
            while True:
                left = math.inf if duration is None else duration - (self._loop.time() - self._t0)
                if left <= 0:
                    return f"--duration {duration:g}"
                await asyncio.wait({run, stop}, timeout=min(REFRESH_S, left))
                if stop.done():
                    return "Ctrl-C"
                if run.done():
                    return "the engine ended"
                self._refresh()
                await self._maybe_ticket()
        finally:
            stop.cancel()

    async def _maybe_ticket(self) -> None:
        """Once quotes flow: an operator ticket above the mandate's limits, through the gate."""
        symbol, side, quantity = TICKET
        if self._ticket_sent or symbol not in self.engine.status().marks:
            return
        self._ticket_sent = True
        limit = self.engine.config.mandate.max_order_quantity
        self.screen.note(
            f"[demo] an operator ticket, {side} {quantity} {symbol} (max_order_quantity is "
            f"{limit}), takes the same path as the strategy's orders: the gate"
        )
        decision = await self.engine.submit_order(symbol, side, quantity, source=Source.CLI)
        if decision is not None:
            verdict = "allowed" if decision.allowed else "refused: " + ", ".join(decision.codes)
            self.screen.note(f"[demo] the gate {verdict} (ledgered as PROPOSAL + DECISION)")

    def _summary(self, reason: str, failure: str | None) -> int:
        say = self.screen.note
        status, tally, info = self.engine.status(), self.tally, self._info(Phase.STOPPED)
        held = ", ".join(f"{s} {q.normalize():f}" for s, q in sorted(status.positions.items()))
        total = status.realized_pnl + status.unrealized_pnl
        say(
            f"[demo] stopped ({reason}) after {info.elapsed:.0f} s; simulated "
            f"{DEMO_START:%H:%M} -> {info.sim_time.astimezone(EASTERN):%H:%M} US/Eastern"
        )
        if failure:
            say(f"[demo] {failure}")
        say(
            f"[demo] orders sent {tally.orders_sent}, fills {tally.fills}, decisions "
            f"{tally.decisions} ({tally.refused} refused), strategy errors "
            f"{status.strategy_errors}"
        )
        say(
            f"[demo] P&L today: realised {status.realized_pnl:+,.2f}, unrealised "
            f"{status.unrealized_pnl:+,.2f}, total {total:+,.2f} USD; "
            + (f"positions left open: {held} (on_stop cancels orders; positions stay)" if held
               else "flat at stop")
        )  # fmt: skip
        report = self.ledger.verify()
        say("[demo] ledger verify (in-process):")
        for line in render_report(report, self.ledger.ledger_id, info.ledger).splitlines():
            say(f"[demo]   {line}")
        command = _ibpilot_command()
        say(f"[demo] check it yourself: {command} ledger verify --ledger {info.ledger}")
        say(f"[demo] every entry:       {command} ledger show --ledger {info.ledger}")
        if not report.ok:
            return EXIT_INTEGRITY
        return EXIT_ERROR if failure else EXIT_OK


def _failure(run: asyncio.Task[None]) -> str | None:
    if run.cancelled():
        return "cancelled by a second Ctrl-C: no STOP entry, open orders left as they were"
    exc = run.exception()
    return None if exc is None else f"the engine failed: {type(exc).__name__}: {exc}"


def _ibpilot_command() -> str:
    if shutil.which("ibpilot"):
        return "ibpilot"
    local = Path(".venv/bin/ibpilot")
    return str(local) if local.exists() else f"{sys.executable} -m ibpilot"

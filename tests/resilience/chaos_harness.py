"""The fault campaign's parts: the files, the bot subprocess, and what the harness reads.

* :class:`Bot`: ``python -m ibpilot start --clock sim`` as a real subprocess (so that it can
  be ``kill -9``-ed), always on the same ledger, state directory and client id.
* :class:`LedgerTail`: the bot's ledger, read incrementally through ``open_ledger`` while
  the bot writes it (SQLite WAL: readers never block the writer).
* :class:`Heartbeat`: the strategy's heartbeat file (``chaos_strategy``): when quotes last
  reached the strategy, per symbol, in wall time.
* :class:`SimTap`: the simulator's side: every placeOrder/cancelOrder of the bot's client as
  it arrives (with an optional one-shot hook, to fault exactly while an order is on the wire),
  and the day's orders, executions and account, gathered before each overnight jump.

Everything listens on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

from ibpilot.ledger import (
    Entry,
    EntryKind,
    Ledger,
    LedgerConfigError,
    VerifyReport,
    open_ledger,
)
from ibpilot.sim import SimGateway

HERE = Path(__file__).resolve().parent
BOT_CLIENT = 1
SYMBOLS = ("AAPL", "MSFT", "SPY")
_K = EntryKind


def free_port_pair(attempts: int = 50) -> int:
    """A loopback port ``p`` with ``p + 1`` free too (``--clock sim`` reads the admin port
    at the gateway's port + 1)."""
    for _ in range(attempts):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free pair of loopback ports after {attempts} attempts")


@dataclass(frozen=True, slots=True)
class Files:
    """The bot's files, all under ``root``."""

    root: Path
    adapter: Path
    strategy: Path
    ledger: Path
    state: Path
    heartbeat: Path
    quiet: Path  # present: the strategy proposes nothing
    output: Path

    @classmethod
    def under(cls, root: Path) -> Files:
        names = ("adapter.json", "strategy.json", "ledger.sqlite", "state", "heartbeat.txt",
                 "quiet", "bot-output.txt")  # fmt: skip
        return cls(root, *(root / name for name in names))


def write_files(root: Path, port: int, seed: int, every_s: int) -> Files:
    """adapter.json (the sim, client 1, short connect timeout) and a generous strategy file."""
    files = Files.under(root)
    root.mkdir(parents=True, exist_ok=True)
    credentials = {"host": "127.0.0.1", "port": port, "client_id": BOT_CLIENT}
    adapter = {
        "adapter": "ibkr",
        "environment": "sim",
        "credentials": credentials,
        "connect_timeout_s": 2,
    }
    files.adapter.write_text(json.dumps(adapter))
    params = {
        "seed": seed,
        "every_s": every_s,
        "chance": 0.6,
        "max_quantity": 10,
        "max_position": 100,
        "heartbeat": str(files.heartbeat),
        "quiet": str(files.quiet),
    }
    mandate = {
        "allowed_symbols": list(SYMBOLS),
        "max_order_quantity": 100,
        "max_order_notional": 1_000_000,
        "max_position": 1000,
        "max_daily_loss": 1_000_000,
        "max_orders_per_minute": 1000,
    }
    doc = {
        "name": "chaos",
        "strategy": "chaos_strategy:Churn",
        "params": params,
        "bar_size": "1 min",
        "warmup": "1800 S",
        "on_stop": "cancel_open_orders",
        "instruments": [{"symbol": s} for s in SYMBOLS],
        "mandate": mandate,
    }
    files.strategy.write_text(json.dumps(doc, indent=2))
    return files


# -- the bot ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Bot:
    """``ibpilot start`` as a subprocess; output appended to ``files.output``."""

    files: Files
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    exits: list[tuple[int, str]] = field(default_factory=list)  # (code, why) of each exit

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        """Start it (same ledger, same state directory, same client id as every time)."""
        if self.running:
            raise RuntimeError("the bot is already running")
        path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
        argv = [
            "-m",
            "ibpilot",
            "start",
            "--config",
            str(self.files.strategy),
            "--adapter",
            str(self.files.adapter),
            "--ledger",
            str(self.files.ledger),
            "--dir",
            str(self.files.state),
            "--clock",
            "sim",
        ]
        with self.files.output.open("ab") as out:
            out.write(f"--- start {self.starts + 1} at {time.time():.3f}\n".encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *argv,
                env={**os.environ, "PYTHONPATH": path},
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    async def kill9(self) -> None:
        """SIGKILL: no STOP, no cancels, the socket closed by the kernel."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            code = await asyncio.wait_for(self.process.wait(), 10)
            self.exits.append((code, "kill -9"))

    async def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a clean stop); kill -9 after ``timeout`` s. The exit code (None: killed)."""
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            await self.kill9()
            self.exits.append((-9, f"SIGTERM not obeyed within {timeout:g} s"))
            return None
        self.exits.append((code, "SIGTERM"))
        return code

    def output_tail(self, chars: int = 1500) -> str:
        with contextlib.suppress(OSError):
            return self.files.output.read_text(errors="replace")[-chars:]
        return ""


# -- the ledger, the heartbeat ---------------------------------------------------------------------


class LedgerTail:
    """Every ledger entry so far, in seq order, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[Entry] = []
        self._ledger: Ledger | None = None

    @property
    def last_seq(self) -> int:
        return self.entries[-1].seq if self.entries else 0

    def refresh(self) -> list[Entry]:
        """Read what was appended since the last call; the new entries."""
        if self._ledger is None:
            try:
                self._ledger = open_ledger(str(self.path), self.path.parent, create=False)
            except LedgerConfigError:  # not created yet (or its tables not yet there)
                return []
        new = list(self._ledger.entries(after_seq=self.last_seq))
        self.entries.extend(new)
        return new

    def after(self, seq: int) -> list[Entry]:
        """Entries with a seq above ``seq`` (already read)."""
        return self.entries[seq:] if seq >= 0 else self.entries

    def verify(self) -> VerifyReport:
        """The chain and head record as stored now (the bot may be appending)."""
        if self._ledger is None:
            return VerifyReport(0, ())
        return self._ledger.verify()

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


class Heartbeat:
    """Wall times at which quotes reached the strategy, per symbol (the heartbeat file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.beats: dict[str, list[float]] = {}
        self._offset = 0

    def refresh(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].decode("ascii", "replace").splitlines():
            stamp, _, symbol = line.partition(" ")
            with contextlib.suppress(ValueError):
                self.beats.setdefault(symbol, []).append(float(stamp))

    def all_beat_after(self, moment: float, symbols: tuple[str, ...] = SYMBOLS) -> float | None:
        """The wall time by which every symbol had a quote after ``moment`` (None: not yet)."""
        latest = moment
        for symbol in symbols:
            beats = self.beats.get(symbol, [])
            index = bisect_right(beats, moment)
            if index == len(beats):
                return None
            latest = max(latest, beats[index])
        return latest

    def longest_silence(self, symbols: Iterable[str], start: float, end: float) -> float:
        """The longest stretch of [start, end] in which one of ``symbols`` had no quote."""
        longest = 0.0
        for symbol in symbols:
            beats = self.beats.get(symbol, [])
            inside = beats[bisect_right(beats, start) : bisect_right(beats, end)]
            edges = [start, *inside, end]
            longest = max(longest, *(b - a for a, b in pairwise(edges)))
        return longest


# -- the simulator's side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    """A placeOrder or cancelOrder of the bot's client, as the simulator received it."""

    what: str  # "place" or "cancel"
    order_id: int
    order_ref: str
    wall: float
    sim: float
    read_only: bool
    dropped: bool = False  # the harness discarded it (the gateway "crashed" on receipt)


@dataclass(frozen=True, slots=True)
class SimExecution:
    exec_id: str
    order_id: int
    order_ref: str
    symbol: str
    side: str  # BOT / SLD
    shares: Decimal
    price: Decimal
    commission: Decimal
    time: int


@dataclass(frozen=True, slots=True)
class SimOrder:
    order_id: int
    perm_id: int
    order_ref: str
    symbol: str
    status: str
    filled: Decimal
    quantity: Decimal
    completed: int | None  # simulated epoch second it was filled, cancelled or rejected


Hook = Callable[[Arrival], bool]  # returns True to discard the message (it never arrived)


class SimTap:
    """What the simulator received from and holds for the bot's client (see module doc)."""

    def __init__(self, gateway: SimGateway, client_id: int = BOT_CLIENT) -> None:
        self.gw, self.client_id = gateway, client_id
        self.arrivals: list[Arrival] = []
        self.executions: dict[str, SimExecution] = {}
        self.orders: dict[tuple[int, int], SimOrder] = {}  # (order_id, perm_id)
        self._hook: Hook | None = None
        desk = gateway.core.desk
        place, cancel = desk.place, desk.cancel

        def tapped_place(session: Any, req: Any) -> None:
            if not self._arrive(session, "place", req.order.order_id, req.order.order_ref):
                place(session, req)

        def tapped_cancel(session: Any, req: Any) -> None:
            if not self._arrive(session, "cancel", req.order_id, ""):
                cancel(session, req)

        desk.place = tapped_place  # type: ignore[method-assign]  # a tap on this instance
        desk.cancel = tapped_cancel  # type: ignore[method-assign]  # the same tap

    def arm(self, hook: Hook) -> None:
        """Call ``hook`` on the next arrival of the bot's client (once)."""
        self._hook = hook

    def disarm(self) -> None:
        self._hook = None

    def _arrive(self, session: Any, what: str, order_id: int, ref: str) -> bool:
        if session.client_id != self.client_id:
            return False
        core = self.gw.core
        arrival = Arrival(what, order_id, ref, time.time(), self.gw.clock.now(), core.read_only)
        hook, self._hook = self._hook, None
        dropped = hook(arrival) if hook is not None else False
        self.arrivals.append(replace(arrival, dropped=True) if dropped else arrival)
        return dropped

    def collect(self) -> None:
        """Gather today's executions and orders of the client (idempotent; call before the
        clock jumps to another day: the simulator reports only today's)."""
        engine, now = self.gw.core.desk.engine, self.gw.clock.epoch()
        for f in engine.executions(now, client_id=self.client_id):
            ex = f.execution
            self.executions[ex.exec_id] = SimExecution(
                ex.exec_id,
                ex.order_id,
                ex.order_ref,
                f.inst.symbol,
                ex.side,
                ex.shares,
                Decimal(repr(ex.price)),
                Decimal(repr(ex.commission)),
                ex.time,
            )
        for o in engine.open_orders() + engine.completed_orders(now):
            if o.spec.client_id == self.client_id:
                self.orders[(o.order_id, o.perm_id)] = SimOrder(
                    o.order_id,
                    o.perm_id,
                    o.spec.order_ref,
                    o.inst.symbol,
                    o.status.value,
                    o.filled,
                    o.spec.total_quantity,
                    o.completed_time,
                )

    def dump(self) -> dict[str, Any]:
        """What was gathered, as JSON-safe data (for re-checking a run by hand)."""
        start, cash = self.cash()
        return {
            "arrivals": [asdict(a) for a in self.arrivals],
            "executions": [_plain(asdict(x)) for x in self.executions.values()],
            "orders": [_plain(asdict(o)) for o in self.orders.values()],
            "positions": _plain(self.positions()),
            "cash": {"start": str(start), "now": str(cash)},
        }

    def open_orders(self) -> list[Any]:
        return [o for o in self.gw.core.desk.engine.open_orders() if o.client_id == self.client_id]

    def positions(self) -> dict[str, Decimal]:
        account = self.gw.core.desk.engine.account
        return {p.inst.symbol: p.quantity for p in account.positions() if p.quantity}

    def cash(self) -> tuple[Decimal, Decimal]:
        """(starting cash, cash now), USD."""
        account = self.gw.core.desk.engine.account
        return account.start_cash()["USD"], account.cash_balances()["USD"]


def _plain(value: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in value.items()}


async def until(check: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    """``check()``'s first truthy value within ``timeout`` s, else None (never raises)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(step)


def sim_time(gw: SimGateway) -> datetime:
    return gw.clock.now_dt()

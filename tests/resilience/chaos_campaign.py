"""The fault campaign: a bot trading through simulated days while the gateway misbehaves.

The simulator runs in this process (:class:`~ibpilot.sim.SimGateway`, accelerated, its admin
port at its port + 1 so that ``ibpilot start --clock sim`` follows its clock); the bot is a
real ``ibpilot start`` subprocess.  Each simulated day: start the bot, wait until it has
reconciled, inject faults at random moments (seeded) until the afternoon, then make the
strategy quiet, cancel what is open (the control endpoint), wait until the simulator holds
no open order of the bot and the ledger has every execution, stop the bot with SIGTERM,
compare its STOP positions with the simulator's, and jump the simulator's clock to the next
trading morning.  After each fault the harness waits (bounded) for the recovery the ledger
must show and for quotes to reach the strategy again.  Every loop is bounded in count and
in wall time.  The faults and how they are applied are in :mod:`chaos_faults`.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

from ibpilot.control import ControlError, send_command
from ibpilot.ledger import EntryKind
from ibpilot.sim import SimGateway
from ibpilot.sim.refdata import ContractQuery

from .chaos_evidence import (
    KILL_FAULTS,
    LEDGER_READY,
    SILENCE_FAULTS,
    FaultRecord,
    recovery,
    resume_to_trade,
)
from .chaos_faults import INJECTORS, pick
from .chaos_harness import (
    BOT_CLIENT,
    SYMBOLS,
    Bot,
    Heartbeat,
    LedgerTail,
    SimTap,
    free_port_pair,
    until,
    write_files,
)
from .chaos_invariants import Check, Index, Inputs, check_all, check_no_double_send

_K = EntryKind
Say = Callable[[str], None]
MONDAY = datetime.fromisoformat("2026-03-02T09:31:00-05:00")
STALE_DATA_S = 120.0  # the runtime's default stale-data bound (adapter stale_data_s), simulated
SETTLE_S = 0.5  # real seconds between making the strategy quiet and the day's cancel-all
NOTICE_S = 2.0  # how long to wait for a farm, silence or rejection fault to show


@dataclass(frozen=True, slots=True)
class CampaignConfig:
    seed: int
    faults: int  # injected faults, at most
    wall_s: float  # the campaign's wall time, at most (checks not included)
    root: Path
    speed: float = 300.0
    start: datetime = MONDAY
    every_s: int = 120  # the strategy's period per symbol (simulated seconds)
    gap_s: tuple[float, float] = (0.03, 0.3)  # real seconds between faults
    quiet_before_close: timedelta = timedelta(minutes=25)  # no faults after close - this
    recovery_bound_s: float = 45.0
    ready_bound_s: float = 60.0
    cancel_chance: float = 0.1  # per gap: the operator's cancel-all
    halt_chance: float = 0.05  # per gap: the operator halts, then resumes after a moment


@dataclass(slots=True)
class Outcome:
    config: CampaignConfig
    faults: list[FaultRecord]
    checks: list[Check]
    days: list[str]
    wall_s: float
    bot_starts: int
    entries: int
    intents: int
    executions: int
    cancel_alls: int
    halts: int
    incidents: list[str] = field(default_factory=list)
    sim: dict[str, object] = field(default_factory=dict)  # what the simulator held (SimTap.dump)


class Campaign:
    """One seeded campaign; :meth:`run` returns its :class:`Outcome`."""

    def __init__(self, config: CampaignConfig, say: Say = print) -> None:
        self.cfg, self.say = config, say
        self.rng = random.Random(config.seed)
        self.faults: list[FaultRecord] = []
        self.days: list[str] = []
        self.incidents: list[str] = []
        self.stop_mismatches: list[str] = []
        self.cancel_alls = 0
        self.halts = 0
        self._resume_owed = False  # a resume the bot has not acknowledged yet
        self.restart_checks = 0  # short checks after each kill -9 and restart
        self.restart_findings: list[str] = []
        self.deck = self.rng.sample(list(INJECTORS), len(INJECTORS))  # every kind once, first
        self._t0 = time.monotonic()

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> Outcome:
        cfg = self.cfg
        port = free_port_pair()
        gw = SimGateway(
            "127.0.0.1", port, seed=cfg.seed, speed=cfg.speed, start=cfg.start, admin_port=port + 1
        )
        async with gw:
            self.gw, self.tap = gw, SimTap(gw)
            self.files = write_files(cfg.root, port, cfg.seed, cfg.every_s)
            self.bot = Bot(self.files)
            self.ledger = LedgerTail(self.files.ledger)
            self.heartbeat = Heartbeat(self.files.heartbeat)
            try:
                await self._days()
            finally:
                if self.bot.running:
                    await self.bot.terminate()
                self.tap.collect()
            wall = time.monotonic() - self._t0
            verify = await _ledger_verify(self.files.ledger)
            self.ledger.refresh()
            self.ledger.close()
        inputs = Inputs(
            self.ledger.entries,
            self.tap,
            self.faults,
            verify,
            self.stop_mismatches,
            self.incidents,
            cfg.recovery_bound_s,
            STALE_DATA_S / cfg.speed,
            (self.restart_checks, self.restart_findings),
        )
        checks = check_all(inputs)
        for rec in self.faults:
            rec.trade_s = resume_to_trade(rec, self.ledger.entries, cfg.speed, cfg.recovery_bound_s)
        intents = sum(1 for e in self.ledger.entries if e.kind is _K.INTENT)
        return Outcome(
            cfg,
            self.faults,
            checks,
            self.days,
            wall,
            self.bot.starts,
            len(self.ledger.entries),
            intents,
            len(self.tap.executions),
            self.cancel_alls,
            self.halts,
            self.incidents,
            self.tap.dump(),
        )

    def _budget_left(self) -> bool:
        return len(self.faults) < self.cfg.faults and self.elapsed < self.cfg.wall_s

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    async def _days(self) -> None:
        for _ in range(60):  # simulated days, at most
            day = self.gw.clock.now_dt().astimezone(self.cfg.start.tzinfo).date()
            self.days.append(day.isoformat())
            self.say(
                f"[chaos] {day} {self.elapsed:6.1f} s: bot start #{self.bot.starts + 1}, "
                f"{len(self.faults)} faults so far"
            )
            if not await self._start_bot():
                return
            await self._trade(day)
            await self._close_day(day)
            if not self._budget_left():
                return
            await self._next_morning(day)

    # -- the bot ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        self.ledger.refresh()
        self.heartbeat.refresh()

    def _ready_after(self, seq: int) -> bool:
        self._refresh()
        entries = self.ledger.after(seq)
        start = next((e for e in entries if e.kind is _K.START), None)
        return start is not None and any(
            e.seq > start.seq
            and e.kind is _K.RECONCILIATION
            and e.payload.get("finding") == "positions"
            for e in entries
        )

    async def _start_bot(self) -> bool:
        """Start the bot and wait until it has reconciled; False if it never did (3 tries)."""
        for attempt in range(3):
            self._refresh()
            seq = self.ledger.last_seq
            await self.bot.start()
            if await until(partial(self._ready_after, seq), self.cfg.ready_bound_s, 0.1):
                return True
            self.incidents.append(
                f"bot start #{self.bot.starts} (try {attempt + 1}) not reconciled within "
                f"{self.cfg.ready_bound_s:g} s: {self.bot.output_tail()}"
            )
            await self.bot.kill9()
        return False

    async def _check_bot_alive(self) -> None:
        process = self.bot.process
        if process is not None and process.returncode is not None:
            self.incidents.append(
                f"the bot exited by itself with code {process.returncode} "
                f"at {self.gw.clock.now_dt():%m-%d %H:%M}: "
                f"{self.bot.output_tail()}"
            )
            await self._start_bot()

    async def control(self, cmd: str, **args: str) -> bool:
        """A control command to the running bot (``ibpilot halt`` ...); False if it failed."""
        try:
            await asyncio.wait_for(send_command(self.files.state, cmd, args), 10)
        except (ControlError, OSError, TimeoutError):
            return False
        return True

    # -- a trading day ---------------------------------------------------------------------------

    def _session(self, day: date) -> tuple[datetime, datetime] | None:
        [inst] = self.gw.refdata.resolve(ContractQuery(symbol="AAPL", sec_type="STK"), day)
        found = self.gw.refdata.session(inst, day)
        return None if found is None else (found.liquid_open, found.liquid_close)

    async def _trade(self, day: date) -> None:
        session = self._session(day)
        if session is None:
            return
        stop_at = session[1] - self.cfg.quiet_before_close
        for _ in range(self.cfg.faults):
            if not self._budget_left() or self.gw.clock.now_dt() >= stop_at:
                return
            await asyncio.sleep(self.rng.uniform(*self.cfg.gap_s))
            await self._check_bot_alive()
            if self.rng.random() < self.cfg.cancel_chance:
                self.cancel_alls += 1
                await self.control("cancel-all")
            if self.rng.random() < self.cfg.halt_chance:  # only reducing orders may pass
                self.halts += 1
                await self.control("halt", reason="chaos operator")
                await asyncio.sleep(self.rng.uniform(0.2, 0.8))
                self._resume_owed = True
            if self._resume_owed:  # a halt outlives a restart: resume until the bot has it
                self._resume_owed = not await self.control("resume")
            await self._one_fault(day)

    async def _one_fault(self, day: date) -> None:
        kind = pick(self.rng, self.deck)
        self._refresh()
        now = time.time()
        rec = FaultRecord(
            len(self.faults) + 1,
            kind,
            {},
            day.isoformat(),
            self.ledger.last_seq,
            now,
            self.gw.clock.now(),
        )
        self.faults.append(rec)
        try:
            await INJECTORS[kind](self, rec)
        except Exception as exc:  # a harness failure: noted, the faults undone, carry on
            self.incidents.append(f"fault #{rec.n} {kind}: the injector failed: {exc!r}")
            self._undo_faults()
        rec.end_wall, rec.end_sim = time.time(), self.gw.clock.now()
        if kind in SILENCE_FAULTS:  # how long the strategy really went without quotes
            self.heartbeat.refresh()
            symbols = rec.params.get("symbols", SYMBOLS)
            quiet = self.heartbeat.longest_silence(symbols, rec.start_wall, rec.end_wall)
            rec.params["quiet_s"] = round(quiet, 2)
        await self._await_recovery(rec)
        if kind in KILL_FAULTS:
            self._check_after_restart(rec)
        if len(self.faults) % 25 == 0:
            self.say(
                f"[chaos] {self.elapsed:6.1f} s: {len(self.faults)} faults, "
                f"{self.gw.clock.now_dt():%m-%d %H:%M} UTC, ledger #{self.ledger.last_seq}"
            )

    def _undo_faults(self) -> None:
        faults = self.gw.faults
        faults.half_open(False)
        faults.read_only(False)
        faults.delay(0)
        faults.unsilence()
        if not faults.connectivity_up:
            faults.connectivity_restored(False)
        for name, up in list(faults.farms_up.items()):
            if not up:
                faults.farm(name, True)
        faults.release_client_id(BOT_CLIENT)

    def _check_after_restart(self, rec: FaultRecord) -> None:
        """The short form after a kill -9 and restart: nothing sent twice, the chain verifies."""
        self._refresh()
        found = check_no_double_send(Index.of(self.ledger.entries), self.tap)
        report = self.ledger.verify()
        problems = found.failures + [f"ledger #{p.seq}: {p.what}" for p in report.problems]
        self.restart_findings += [f"after fault #{rec.n} {rec.kind}: {p}" for p in problems]
        self.restart_checks += 1

    async def _await_recovery(self, rec: FaultRecord) -> None:
        """Wait (bounded) for the ledger to show the recovery and for quotes to flow again."""
        bound = self.cfg.recovery_bound_s  # the link: back and reconciled
        if rec.kind not in LEDGER_READY:  # shows during the fault, or when an order meets it
            bound = 0.0 if rec.kind == "delay" else NOTICE_S

        def ready() -> bool:
            self._refresh()
            found, _ = recovery(rec, self.ledger.after(rec.seq_before))
            return found is not None

        if await until(ready, bound, 0.05):
            rec.ready_wall = time.time()

        def quoting() -> float | None:
            self._refresh()
            return self.heartbeat.all_beat_after(rec.end_wall, SYMBOLS)

        rec.md_wall = await until(quoting, self.cfg.recovery_bound_s, 0.05)

    # -- the end of a day -------------------------------------------------------------------------

    async def _close_day(self, day: date) -> None:
        """Quiet, cancel, wait for the sim and the ledger to agree, stop cleanly, compare."""
        self.files.quiet.touch()
        self._undo_faults()  # none should be left; a fault left on would spoil the next day
        await self._check_bot_alive()
        # let orders being sent reach the gateway first (a cancel-all racing a send is asked
        # again once the send is done; see check_cancels)
        await asyncio.sleep(SETTLE_S)
        await self.control("cancel-all")
        session = self._session(day)
        close = session[1].timestamp() + 120 if session else self.gw.clock.now()
        wait = max(5.0, (close - self.gw.clock.now()) / self.cfg.speed + 5)
        await until(lambda: not self.tap.open_orders(), wait, 0.1)
        self.tap.collect()

        def caught_up() -> bool:
            self._refresh()
            have = {str(e.payload["exec_id"]) for e in self.ledger.entries if e.kind is _K.FILL}
            return set(self.tap.executions) <= have

        await until(caught_up, 15, 0.1)
        seq = self.ledger.last_seq
        code = await self.bot.terminate()
        if code != 0:
            self.incidents.append(f"{day}: SIGTERM exit code {code}: {self.bot.output_tail()}")
        self._refresh()
        self.tap.collect()
        self._compare_stop(day, seq)
        self.files.quiet.unlink(missing_ok=True)

    def _compare_stop(self, day: date, seq: int) -> None:
        stop = next((e for e in self.ledger.after(seq) if e.kind is _K.STOP), None)
        held = self.tap.positions()
        if stop is None:
            self.stop_mismatches.append(f"{day}: no STOP entry after #{seq}")
            return
        raw = stop.payload.get("positions")
        listed = raw.items() if isinstance(raw, dict) else ()
        ours = {symbol: Decimal(str(q)) for symbol, q in listed if Decimal(str(q))}
        if ours != held:
            self.stop_mismatches.append(
                f"{day}: the bot stopped holding {ours} (STOP #{stop.seq}), the sim holds {held}"
            )
        if stop.payload.get("open_orders"):
            self.stop_mismatches.append(
                f"{day}: STOP #{stop.seq} lists open orders {stop.payload['open_orders']} while "
                f"the sim holds {len(self.tap.open_orders())} open order(s) of the bot"
            )

    async def _next_morning(self, day: date) -> None:
        for ahead in range(1, 8):
            nxt = day + timedelta(days=ahead)
            session = self._session(nxt)
            if session is not None:
                target = session[0] + timedelta(minutes=1)
                self.gw.clock.jump_to(target)
                await until(partial(self._matched_up_to, target.timestamp()), 30, 0.05)
                return
        raise RuntimeError(f"no trading day within a week after {day}")

    def _matched_up_to(self, epoch: float) -> bool:
        return (self.gw.core.desk.engine.time or 0) >= epoch - 1


async def _ledger_verify(path: Path) -> tuple[int, str]:
    """``python -m ibpilot ledger verify`` (a subprocess, as a user runs it)."""
    argv = ["-m", "ibpilot", "ledger", "verify", "--ledger", str(path)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 300)
    return process.returncode if process.returncode is not None else -1, out.decode()

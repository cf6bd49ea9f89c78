"""``ibpilot demo``: the bot on the simulated gateway, with its status view and its ledger.

Two tests run ``python -m ibpilot demo`` as a real subprocess in a temporary directory (so
``var/demo/`` lands there): one stops by ``--duration``, one by Ctrl-C (SIGINT).  The rest
check the pure parts of the status view.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from ibpilot.broker.base import ConnectionState
from ibpilot.config import Environment
from ibpilot.demo import demo_strategy
from ibpilot.demo_view import LedgerTally, Phase, ViewInfo, render, render_line
from ibpilot.engine import DecisionRecord, EngineStatus
from ibpilot.gate import TradingState
from ibpilot.ledger import EntryKind, MemoryLedger, open_ledger
from ibpilot.ledger_cli import run_ledger_command

SIM_DAY = "2026-03-02"


def _demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ibpilot", "demo", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _count(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in the output:\n{text}"
    return int(found.group(1))


def test_the_demo_trades_on_the_simulator_shows_its_status_and_its_ledger_verifies(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        _demo_command("--duration", "25"),
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=_env(), check=False,
    )  # fmt: skip
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, f"exit {done.returncode}\n{out}\n{err}"
    assert time.monotonic() - started < 60
    assert "Traceback" not in out + err
    # the status view: compact lines while running, the full view at the end
    assert re.search(r"\[demo\] 09:\d\d ET  connected  ACTIVE  positions ", out)
    assert "symbol    position        mark   avg price   unrealised" in out
    for symbol in ("AAPL", "MSFT", "SPY"):
        assert re.search(rf"^{symbol} +-?\d+ +[\d,]+\.\d\d ", out, re.MULTILINE), symbol
    assert "last decisions of the gate (simulated time, US/Eastern):" in out
    assert re.search(r"\[decision\] 09:\d\d:\d\d  strategy (BUY|SELL) 10 ", out)
    # the operator ticket is refused by the gate, in simulated time (before 09:35)
    assert re.search(r"cli +BUY 25 AAPL +refused MAX_ORDER_QUANTITY, MAX_POSITION", out)
    # the summary
    sent = _count(r"\[demo\] orders sent (\d+), fills", out)
    fills = _count(r"\[demo\] orders sent \d+, fills (\d+),", out)
    assert sent >= 1
    assert fills >= 1
    assert _count(r"decisions \d+ \((\d+) refused\)", out) >= 1
    assert "[demo] stopped (--duration 25)" in out
    assert re.search(r"\[demo\]   OK: \d+ entries, chain unbroken, head record matches", out)
    assert "ledger verify --ledger var/demo/ibpilot-ledger.sqlite" in out
    # the files and the ledger, checked from outside the demo
    demo_dir = tmp_path / "var" / "demo"
    assert (demo_dir / "adapter.json").is_file()
    assert (demo_dir / "sma_cross_demo.json").is_file()
    assert run_ledger_command(["verify"], directory=demo_dir) == 0
    with open_ledger(None, demo_dir, create=False) as ledger:
        entries = list(ledger.entries())
    kinds = [e.kind for e in entries]
    assert kinds[0] is EntryKind.START
    assert kinds[-1] is EntryKind.STOP
    assert kinds.count(EntryKind.ORDER_SENT) == sent
    assert kinds.count(EntryKind.FILL) == fills
    assert all(e.ts.astimezone(UTC).date().isoformat() == SIM_DAY for e in entries)


def test_ctrl_c_stops_the_demo_cleanly_without_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _demo_command(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 30
    for line in proc.stdout:  # the first status line: the engine is running
        seen.append(line)
        if line.startswith("[demo] 09:") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    try:
        rest, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    out = "".join(seen) + rest
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in out + err
    assert "[demo] SIGINT: stopping" in out
    assert "[demo] stopped (Ctrl-C)" in out
    assert "chain unbroken" in out
    with open_ledger(None, tmp_path / "var" / "demo", create=False) as ledger:
        last = ledger.last()
    assert last is not None
    assert last.kind is EntryKind.STOP
    assert last.payload["reason"] == "Ctrl-C"


def test_the_scripted_session_is_still_reachable(tmp_path: Path) -> None:
    done = subprocess.run(
        _demo_command("--scripted"),
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=_env(), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ib_async] connected: server version 178" in done.stdout
    assert done.stdout.rstrip().endswith("[demo] done")
    assert not (tmp_path / "var").exists()


# -- the pure parts ---------------------------------------------------------------------------

T0 = datetime(2026, 3, 2, 14, 40, tzinfo=UTC)


def _fill(ledger: MemoryLedger, intent: str, symbol: str, side: str, qty: int, price: str) -> None:
    n = len(list(ledger.entries())) + 1
    ledger.append(EntryKind.INTENT, {"intent_id": intent, "symbol": symbol}, ts=T0)
    ledger.append(EntryKind.ORDER_SENT, {"intent_id": intent, "order_id": n}, ts=T0)
    payload = {"intent_id": intent, "exec_id": f"0000e0d5.{n:08x}.01.01", "side": side,
               "quantity": Decimal(qty), "price": Decimal(price)}  # fmt: skip
    ledger.append(EntryKind.FILL, payload, ts=T0)


def test_the_tally_counts_and_averages_fills_like_the_engine() -> None:
    ledger, tally = MemoryLedger(), LedgerTally()
    ledger.append(EntryKind.DECISION, {"intent_id": "a", "allowed": True}, ts=T0)
    ledger.append(EntryKind.DECISION, {"intent_id": "r", "allowed": False}, ts=T0)
    _fill(ledger, "a", "AAPL", "BUY", 10, "100")
    _fill(ledger, "b", "AAPL", "BUY", 10, "110")
    tally.feed(ledger.entries())
    assert tally.average_price("AAPL") == Decimal(105)
    _fill(ledger, "c", "AAPL", "SELL", 5, "120")  # reducing keeps the average
    tally.feed(ledger.entries(after_seq=tally.seq))
    assert tally.average_price("AAPL") == Decimal(105)
    _fill(ledger, "d", "AAPL", "SELL", 25, "90")  # crosses zero: short 10 from 90
    _fill(ledger, "e", "MSFT", "BUY", 1, "400")
    tally.feed(ledger.entries())  # entries already counted are skipped
    assert tally.average_price("AAPL") == Decimal(90)
    assert tally.average_price("SPY") is None
    assert (tally.orders_sent, tally.fills, tally.decisions, tally.refused) == (5, 5, 2, 1)
    _fill(ledger, "f", "MSFT", "SELL", 1, "401")
    tally.feed(ledger.entries(after_seq=tally.seq))
    assert tally.average_price("MSFT") is None  # flat again
    assert tally.seq == len(list(ledger.entries()))


ALLOWED = DecisionRecord(T0, "strategy", "AAPL", "BUY", Decimal(10), True, ())
REFUSED = DecisionRecord(
    T0, "cli", "AAPL", "BUY", Decimal(25), False, ("MAX_ORDER_QUANTITY", "OUTSIDE_TRADING_HOURS")
)


def _status(**changes: object) -> EngineStatus:
    base = EngineStatus(
        running=True, environment=Environment.SIM, strategy="sma_cross", spec_hash="ab" * 32,
        connection=ConnectionState.CONNECTED, trading_state=TradingState.ACTIVE, halt_reason=None,
        positions={"AAPL": Decimal(10)}, marks={"AAPL": Decimal("212.50"), "SPY": Decimal(700)},
        realized_pnl=Decimal("-2.00"), unrealized_pnl=Decimal("5.00"), open_orders=(),
        last_decisions=(*[ALLOWED] * 7, REFUSED),
        strategy_errors=0, last_reconciliation=None,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]  # the test's own fields


def test_the_view_shows_positions_pnl_decisions_and_state() -> None:
    ledger, tally = MemoryLedger(), LedgerTally()
    _fill(ledger, "a", "AAPL", "BUY", 10, "212")
    tally.feed(ledger.entries())
    info = ViewInfo(
        sim_time=T0, speed=60, gateway="127.0.0.1:4102", symbols=("AAPL", "MSFT", "SPY"),
        elapsed=10, ledger="var/demo/ibpilot-ledger.sqlite",
    )  # fmt: skip
    text = render(_status(), info, tally)
    lines = text.splitlines()
    assert lines[0].startswith("ibpilot demo  simulated 2026-03-02 09:40:00 ET (60x)")
    assert lines[0].endswith(str(Phase.RUNNING))
    assert "connection connected   trading ACTIVE" in lines[1]
    assert "spec hash abababababab" in lines[2]
    assert "AAPL            10      212.50      212.00        +5.00" in lines
    assert "MSFT             0           -           -            -" in lines
    assert "P&L today  realised -2.00  unrealised +5.00  total +3.00 USD" in text
    assert "orders sent 1   fills 1   open orders 0" in text
    decisions = lines[lines.index("last decisions of the gate (simulated time, US/Eastern):") :]
    assert len(decisions) == 1 + 6
    assert decisions[-1] == (
        "  09:40:00  cli      BUY 25 AAPL    refused MAX_ORDER_QUANTITY, OUTSIDE_TRADING_HOURS"
    )
    assert "\x1b[" not in text
    narrow = render(_status(trading_state=TradingState.HALTED), info, tally, color=True, width=50)
    assert "\x1b[31mrefused" in narrow
    assert all(
        len(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)) <= 50 for line in narrow.split("\n")
    )
    line = render_line(_status(), info, tally)
    assert line.startswith("[demo] 09:40 ET  connected  ACTIVE  positions AAPL 10  P&L +3.00")


def test_the_demo_strategy_trades_the_three_symbols_inside_a_realistic_mandate() -> None:
    strategy = demo_strategy()
    mandate = strategy["mandate"]
    assert isinstance(mandate, dict)
    assert mandate["allowed_symbols"] == ["AAPL", "MSFT", "SPY"]
    assert mandate["trading_hours"] == {
        "start": "09:35", "end": "15:55", "time_zone": "US/Eastern",
    }  # fmt: skip
    assert mandate["allow_live"] is False

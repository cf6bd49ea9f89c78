"""``ibpilot start --clock sim`` follows an accelerated simulator's clock, so the exchange's
trading hours (and every time rule of the gate) are judged in simulated time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from datetime import datetime
from pathlib import Path

from ibpilot.ledger import EntryKind, open_ledger
from ibpilot.sim import SimGateway
from ibpilot.simclock import read_sim_clock

START = datetime.fromisoformat("2026-03-02T09:40:00-05:00")


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return int(port)
    raise RuntimeError("no free pair of loopback ports")


async def test_the_clock_follows_the_simulator() -> None:
    port = _free_port_pair()
    async with SimGateway("127.0.0.1", port, admin_port=port + 1, speed=60, start=START) as gw:
        clock = await read_sim_clock("127.0.0.1", port + 1)
        assert abs(clock().timestamp() - gw.clock.now()) < 1.0
        await asyncio.sleep(0.5)
        assert abs(clock().timestamp() - gw.clock.now()) < 1.0  # 30 simulated seconds later


EXAMPLE = json.loads((Path(__file__).parents[2] / "examples" / "sma_cross.json").read_text())


async def test_start_with_the_sim_clock_trades_inside_exchange_hours(tmp_path: Path) -> None:
    port = _free_port_pair()
    adapter = {
        "adapter": "ibkr", "credentials": {"host": "127.0.0.1", "port": port, "client_id": 1},
        "trading_pair": "AAPL", "exchange": "SMART", "sec_type": "STK", "environment": "sim",
        "rate_limit_ms": 0,
    }  # fmt: skip
    strategy = json.loads(json.dumps(EXAMPLE))
    strategy["params"] = {"fast": 2, "slow": 4, "quantity": 10}
    strategy["warmup"] = "1800 S"
    strategy["mandate"].pop("trading_hours")  # the exchange's liquid hours apply
    (tmp_path / "adapter.json").write_text(json.dumps(adapter))
    (tmp_path / "s.json").write_text(json.dumps(strategy))
    async with SimGateway("127.0.0.1", port, admin_port=port + 1, speed=120, start=START):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ibpilot", "start", "--config", "s.json", "--clock", "sim",
            "--dir", str(tmp_path / "state"), cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )  # fmt: skip
        try:
            await asyncio.sleep(12)  # 24 simulated minutes of 1-minute bars
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, out.decode()
    assert "Clock: the simulator's" in out.decode()
    ledger = open_ledger(None, tmp_path / "state")
    decisions = [e.payload for e in ledger.entries(kind=EntryKind.DECISION)]
    ledger.close()
    assert decisions, out.decode()
    assert any(d["allowed"] for d in decisions)
    assert not any(
        r["code"] == "OUTSIDE_TRADING_HOURS"
        for d in decisions
        for r in d["reasons"]  # type: ignore[union-attr]
    )

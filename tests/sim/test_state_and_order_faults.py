"""``--state FILE`` across simulator restarts, and the order faults (read-only, rejects)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from datetime import datetime
from pathlib import Path

import pytest
from ib_async import IB, Contract, LimitOrder, MarketOrder, Stock
from ibapi.contract import Contract as IbContract
from ibapi.order import Order as IbOrder
from ibapi_app import IbapiClient

from ibpilot.sim import SimGateway

OPEN = datetime.fromisoformat("2026-03-02T10:00:00-05:00")


async def _aapl(ib: IB) -> Contract:
    [c] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    assert isinstance(c, Contract)
    return c


async def _connect(port: int, client_id: int = 1) -> IB:
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=5, raiseSyncErrors=True)
    return ib


async def test_state_file_keeps_orders_executions_positions_and_ids(tmp_path: Path) -> None:
    state = tmp_path / "sim-state.json"
    async with SimGateway("127.0.0.1", 0, start=OPEN, seed=3, state_file=state) as gw:
        ib = await _connect(gw.port)
        aapl = await _aapl(ib)
        bought = ib.placeOrder(aapl, MarketOrder("BUY", 30, orderRef="keep-fill"))
        resting = ib.placeOrder(aapl, LimitOrder("BUY", 10, 1.00, orderRef="keep-open"))
        for _ in range(200):
            if bought.orderStatus.status == "Filled" and resting.orderStatus.status == "Submitted":
                break
            await asyncio.sleep(0.02)
        assert bought.orderStatus.status == "Filled"
        perm_id = resting.order.permId
        used = resting.order.orderId
        ib.disconnect()
    assert state.exists()

    async with SimGateway("127.0.0.1", 0, start=OPEN, seed=3, state_file=state) as gw2:
        assert gw2.restored
        assert gw2.clock.now() >= OPEN.timestamp()
        ib = await _connect(gw2.port)
        try:
            open_trades = ib.openTrades()
            assert [
                (t.order.orderRef, t.order.permId, t.orderStatus.status) for t in open_trades
            ] == [("keep-open", perm_id, "Submitted")]
            fills = await ib.reqExecutionsAsync()
            assert [(f.execution.orderRef, f.execution.shares) for f in fills] == [
                ("keep-fill", 30.0)
            ]
            # ib_async files commission reports on the fills of its start-up sync
            [synced] = ib.fills()
            assert synced.execution.execId == fills[0].execution.execId
            assert synced.commissionReport.commission == pytest.approx(1.0)
            [position] = ib.positions()
            assert (position.contract.conId, position.position) == (aapl.conId, 30.0)
            assert ib.client._reqIdSeq > used  # nextValidId never goes backwards
        finally:
            ib.disconnect()


async def test_a_damaged_state_file_is_refused_with_its_name(tmp_path: Path) -> None:
    state = tmp_path / "broken.json"
    state.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json: cannot read the simulator state"):
        SimGateway("127.0.0.1", 0, state_file=state)


async def test_ibpilot_sim_command_restores_state_after_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "cli-state.json"
    args = ["-m", "ibpilot", "sim", "--port", "0", "--admin-port", "0", "--seed", "5",
            "--start", "2026-03-02T10:00:00-05:00", "--state", str(state)]  # fmt: skip

    async def run_once() -> tuple[asyncio.subprocess.Process, int, list[str]]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert proc.stdout is not None
        lines: list[str] = []
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
            assert line, "ibpilot sim exited before listening"
            lines.append(line)
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                return proc, int(match.group(1)), lines

    proc, port, _ = await run_once()
    try:
        ib = await _connect(port)
        aapl = await _aapl(ib)
        trade = ib.placeOrder(aapl, LimitOrder("BUY", 5, 2.00, orderRef="cli-resting"))
        for _ in range(100):
            if trade.orderStatus.status == "Submitted":
                break
            await asyncio.sleep(0.02)
        ib.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0

    proc, port, _ = await run_once()
    try:
        assert proc.stdout is not None
        restored = (await asyncio.wait_for(proc.stdout.readline(), timeout=5)).decode()
        assert "restored orders, executions and the account" in restored
        ib = await _connect(port)
        assert [t.order.orderRef for t in ib.openTrades()] == ["cli-resting"]
        ib.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0


@pytest.mark.sim(start=OPEN)
async def test_read_only_api_refuses_orders_with_321(gateway: SimGateway, ib: IB) -> None:
    aapl = await _aapl(ib)
    gateway.faults.read_only(True)
    errors: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
    trade = ib.placeOrder(aapl, LimitOrder("BUY", 1, 100.0))
    for _ in range(100):
        if errors:
            break
        await asyncio.sleep(0.02)
    assert errors[0][:2] == (trade.order.orderId, 321)
    assert "Read-Only mode" in errors[0][2]
    assert gateway.core.desk.engine.open_orders() == []

    app = IbapiClient()
    await app.connect(gateway.port, client_id=2)
    try:
        (next_id,) = await app.wait_for("nextValidId")
        contract = IbContract()
        contract.conId, contract.exchange = aapl.conId, "SMART"
        order = IbOrder()
        order.action, order.orderType, order.totalQuantity, order.lmtPrice = "BUY", "LMT", 1, 100.0
        app.client.placeOrder(next_id, contract, order)
        text = await app.wait_error(next_id, 321)
        assert "Read-Only" in text
    finally:
        await app.disconnect()
    gateway.faults.read_only(False)
    again = ib.placeOrder(aapl, LimitOrder("BUY", 1, 100.0))
    for _ in range(100):
        if again.orderStatus.status == "Submitted":
            break
        await asyncio.sleep(0.02)
    assert again.orderStatus.status == "Submitted"


@pytest.mark.sim(start=OPEN)
async def test_reject_next_gives_error_201_with_the_reason(gateway: SimGateway, ib: IB) -> None:
    aapl = await _aapl(ib)
    gateway.faults.reject_next(1, "Exchange is closed.")
    errors: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
    rejected = ib.placeOrder(aapl, MarketOrder("BUY", 1))
    accepted = None
    for _ in range(100):
        if errors:
            break
        await asyncio.sleep(0.02)
    assert errors[0] == (
        rejected.order.orderId,
        201,
        "Order rejected - Reason: Exchange is closed.",
    )
    assert rejected.orderStatus.status in ("Inactive", "Cancelled")
    accepted = ib.placeOrder(aapl, MarketOrder("BUY", 1))
    for _ in range(100):
        if accepted.orderStatus.status == "Filled":
            break
        await asyncio.sleep(0.02)
    assert accepted.orderStatus.status == "Filled"  # only the next one was rejected

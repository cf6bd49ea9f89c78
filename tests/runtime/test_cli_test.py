"""``ibpilot test``: one line per check against the simulated gateway, exit codes, no traceback.

``ibpilot.cli.main`` runs in a worker thread (it runs its own event loop) while the simulator
serves on this test's loop; two tests run ``python -m ibpilot test`` as a real subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ibpilot import cli
from ibpilot.sim import SimGateway

OPEN = datetime.fromisoformat("2026-03-02T10:00:00-05:00")  # a Monday, market open
HEALTHY = [
    "Adapter: ibkr (adapter.json)",
    "Connection: OK (127.0.0.1:{port}, not a default TWS/IB Gateway port)",
    "Client ID: 1",
    "Account: paper (DU0000001)",
    "Server version: 178",
    "Rate limit: 50 messages/second (ibpilot paces at 40; orders at least 1000 ms apart)",
    "API mode: OK (read-write: orders can be placed)",
    "Market data farm: OK (usfarm)",
    "HMDS data farm: OK (ushmds)",
    "Sec-def data farm: OK (secdefnj)",
    "Trading pair: AAPL -> conId 265598, SMART/NASDAQ, USD, min tick 0.01",
    "Result: OK (all checks passed)",
]


def write_adapter(path: Path, port: int, **extra: Any) -> Path:
    data: dict[str, Any] = {
        "adapter": "ibkr",
        "credentials": {"host": "127.0.0.1", "port": port, "client_id": 1},
        "trading_pair": "AAPL",
        "exchange": "SMART",
        "sec_type": "STK",
        "environment": "sim",
        "rate_limit_ms": 1000,
    }
    data.update(extra)
    path.write_text(json.dumps(data))
    return path


async def run_test_command(
    capsys: pytest.CaptureFixture[str], adapter: str
) -> tuple[int, list[str], float]:
    """``ibpilot test --adapter ADAPTER`` in a thread: exit code, [ibpilot] lines, seconds."""
    capsys.readouterr()
    started = time.monotonic()
    code = await asyncio.wait_for(
        asyncio.to_thread(cli.main, ["test", "--adapter", adapter]), timeout=30
    )
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out.splitlines()
    assert all(line.startswith("[ibpilot] ") for line in out), out
    return code, [line.removeprefix("[ibpilot] ") for line in out], elapsed


def line_of(lines: list[str], check: str) -> str:
    [line] = [ln for ln in lines if ln.startswith(f"{check}: ")]
    return line


def assert_nothing_placed(gw: SimGateway) -> None:
    engine = gw.core.desk.engine
    assert engine.open_orders() == []
    assert engine.completed_orders(int(gw.clock.now())) == []
    assert engine.executions(int(gw.clock.now())) == []
    assert engine.max_order_id() == 0  # no placeOrder was ever accepted


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.sim(start=OPEN)
async def test_a_healthy_gateway_passes_every_check(
    gateway: SimGateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_adapter(tmp_path / "adapter.json", gateway.port)
    monkeypatch.chdir(tmp_path)  # the adapter NAME "ibkr" means ./adapter.json
    code, lines, elapsed = await run_test_command(capsys, "ibkr")
    assert lines == [line.format(port=gateway.port) for line in HEALTHY]
    assert code == 0
    assert elapsed < 5
    assert_nothing_placed(gateway)
    await asyncio.sleep(0.1)
    assert gateway.core.sessions == {}  # it disconnected


async def test_nothing_listening_is_connection_refused_naming_the_ports_product(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 4002)) == 0:
            pytest.skip("something listens on 127.0.0.1:4002 on this machine")
    path = write_adapter(tmp_path / "paper.json", 4002, environment="paper")
    code, lines, _ = await run_test_command(capsys, str(path))
    assert code == 1
    assert lines[0] == f"Adapter: ibkr ({path})"
    connection = line_of(lines, "Connection")
    assert connection.startswith("Connection: FAILED CONNECTION_REFUSED - 127.0.0.1:4002 refused")
    assert "IB Gateway (paper) normally listens on port 4002" in connection
    assert "Fix: Start TWS or IB Gateway" in connection
    assert lines[-1] == "Result: FAILED (Connection)"
    assert len(lines) == 3  # the checks that need a connection are not run


async def test_a_custom_port_with_nothing_listening_lists_the_default_ports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    code, lines, _ = await run_test_command(capsys, str(write_adapter(tmp_path / "a.json", port)))
    assert code == 1
    assert f"port {port} is not a default port (TWS 7496 live / 7497 paper" in lines[1]


async def test_client_id_in_use_fails_fast(
    gateway: SimGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.faults.hold_client_id(1)
    path = write_adapter(tmp_path / "a.json", gateway.port, connect_timeout_s=10)
    code, lines, elapsed = await run_test_command(capsys, str(path))
    assert code == 1
    assert elapsed < 3  # not the 10 s connect timeout
    assert line_of(lines, "Connection").startswith("Connection: OK")
    client = line_of(lines, "Client ID")
    assert client.startswith("Client ID: FAILED CLIENT_ID_IN_USE - client id 1 is already in use")
    assert "Fix: Set a unique credentials.client_id" in client
    assert lines[-1] == "Result: FAILED (Client ID)"


async def test_a_half_open_gateway_is_handshake_timeout(
    gateway: SimGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.faults.half_open(True)
    path = write_adapter(tmp_path / "a.json", gateway.port, connect_timeout_s=1)
    code, lines, elapsed = await run_test_command(capsys, str(path))
    assert code == 1
    assert 1 <= elapsed < 4
    connection = line_of(lines, "Connection")
    assert connection.startswith("Connection: FAILED HANDSHAKE_TIMEOUT - ")
    assert "accepted the connection but never answered the API handshake within 1 s" in connection
    assert "Trusted IPs" in connection


@pytest.mark.sim(start=OPEN)
async def test_a_read_only_gateway_is_permission_denied_without_placing_an_order(
    gateway: SimGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.faults.read_only(True)
    code, lines, _ = await run_test_command(
        capsys, str(write_adapter(tmp_path / "a.json", gateway.port))
    )
    assert code == 1
    mode = line_of(lines, "API mode")
    assert mode.startswith("API mode: FAILED PERMISSION_DENIED - IB 321: ")
    assert "Read-Only mode" in mode
    assert "Fix: Uncheck 'Read-Only API'" in mode
    assert line_of(lines, "Trading pair").startswith("Trading pair: AAPL -> conId 265598")
    assert lines[-1] == "Result: FAILED (API mode)"
    assert_nothing_placed(gateway)


async def test_a_live_config_against_a_paper_account_is_wrong_environment(
    gateway: SimGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_adapter(tmp_path / "a.json", gateway.port, environment="live")
    code, lines, _ = await run_test_command(capsys, str(path))
    assert code == 1
    assert line_of(lines, "Client ID") == "Client ID: 1"
    account = line_of(lines, "Account")
    assert account.startswith(
        "Account: FAILED WRONG_ENVIRONMENT - the gateway is logged into DU0000001"
    )
    assert lines[-1] == "Result: FAILED (Account)"


async def test_a_live_account_against_a_paper_config_is_wrong_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with SimGateway("127.0.0.1", 0, start=OPEN, account="U1234567") as gw:
        path = write_adapter(tmp_path / "a.json", gw.port, environment="paper")
        code, lines, _ = await run_test_command(capsys, str(path))
        assert_nothing_placed(gw)
    assert code == 1
    account = line_of(lines, "Account")
    assert account.startswith(
        "Account: FAILED WRONG_ENVIRONMENT - the gateway is logged into U1234567"
    )
    assert "nothing is sent until they do" in account


async def test_a_paper_config_on_a_live_port_is_refused_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_adapter(tmp_path / "a.json", 4001, environment="paper")
    code, lines, elapsed = await run_test_command(capsys, str(path))
    assert code == 1
    assert lines[1].startswith(
        'Connection: FAILED WRONG_ENVIRONMENT - environment "paper" but '
        "port 4001 is IB Gateway (live)"
    )
    assert elapsed < 2


@pytest.mark.sim(start=OPEN)
async def test_an_unknown_trading_pair_is_no_security_definition(
    gateway: SimGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_adapter(tmp_path / "a.json", gateway.port, trading_pair="NOSUCHSYM")
    code, lines, _ = await run_test_command(capsys, str(path))
    assert code == 1
    pair = line_of(lines, "Trading pair")
    assert pair.startswith(
        "Trading pair: FAILED NO_SECURITY_DEFINITION - the contract NOSUCHSYM STK SMART USD: IB 200"
    )
    assert line_of(lines, "API mode") == "API mode: OK (read-write: orders can be placed)"
    assert lines[-1] == "Result: FAILED (Trading pair)"


async def _run_module(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ibpilot",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_bad_adapter_file_lists_its_problems_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "adapter.json").write_text(
        '{"adapter": "ibkr", "credentials": {"port": "seven"}, "enviroment": "paper"}'
    )
    code, out, err = await _run_module("test", "--adapter", "ibkr", cwd=tmp_path)
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith(
        "[ibpilot] Adapter: FAILED CONFIG_INVALID - adapter.json has 3 problems"
    )
    assert (
        "[ibpilot]   adapter.json: $.credentials.port: expected an integer port 1-65535, "
        'found "seven"' in lines
    )
    assert any("did you mean 'environment'?" in line for line in lines)
    assert "Traceback" not in out + err
    code, out, err = await _run_module("test", "--adapter", "missing.json", cwd=tmp_path)
    assert code == 2
    assert "missing.json: file not found" in out
    assert "Traceback" not in out + err


@pytest.mark.sim(start=OPEN)
async def test_python_m_ibpilot_test_against_the_simulator(
    gateway: SimGateway, tmp_path: Path
) -> None:
    write_adapter(tmp_path / "adapter.json", gateway.port)
    code, out, err = await _run_module("test", "--adapter", "ibkr", cwd=tmp_path)
    assert code == 0, out + err
    assert out.splitlines() == [f"[ibpilot] {line.format(port=gateway.port)}" for line in HEALTHY]
    assert err == ""
    assert_nothing_placed(gateway)

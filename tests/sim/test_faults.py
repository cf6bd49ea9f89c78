"""Each fault, observed by real clients the way IB's own would be."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from datetime import timedelta

import pytest
from ib_async import IB, Contract, Stock
from ibapi_app import IbapiClient

from ibpilot.sim import SimGateway
from ibpilot.sim.faults import FaultError
from ibpilot.sim.protocol import API_PREFIX


async def _connect(gateway: SimGateway, client_id: int, timeout: float = 3) -> IB:
    client = IB()
    await client.connectAsync("127.0.0.1", gateway.port, clientId=client_id, timeout=timeout)
    return client


def _error_codes(ib: IB) -> list[int]:
    codes: list[int] = []
    ib.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    return codes


async def _eventually(check: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_drop_closes_every_socket_and_the_same_client_id_reconnects(
    gateway: SimGateway,
) -> None:
    first, second = await _connect(gateway, 1), await _connect(gateway, 2)
    app = IbapiClient()
    await app.connect(gateway.port, client_id=3)
    try:
        assert gateway.faults.drop_all() == 3
        await _eventually(lambda: not first.isConnected() and not second.isConnected())
        await app.wait_for("connectionClosed")
        await _eventually(lambda: not gateway.core.sessions)
        again = await _connect(gateway, 1)
        assert again.isConnected()
        again.disconnect()
    finally:
        await app.disconnect()


async def test_restart_refuses_connections_then_comes_back_with_ids_rolled_back(
    gateway: SimGateway,
) -> None:
    gateway.core.reserve_order_ids(40)
    client = await _connect(gateway, 1)
    restart = asyncio.create_task(gateway.faults.restart(down=1.0, rollback_ids=4))
    await _eventually(lambda: not client.isConnected())
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", gateway.port)
    await restart
    app = IbapiClient()
    await app.connect(gateway.port, client_id=1)
    try:
        (next_id,) = await app.wait_for("nextValidId")
        assert next_id == 37  # 41 before the restart: it went backwards, as IB has done
    finally:
        await app.disconnect()


@pytest.mark.sim(speed=10)
async def test_connectivity_lost_then_restored_with_data_kept(gateway: SimGateway) -> None:
    client = await _connect(gateway, 1)
    codes = _error_codes(client)
    [spy] = await client.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
    assert isinstance(spy, Contract)
    ticker = client.reqMktData(spy)
    await asyncio.sleep(0.3)
    gateway.faults.connectivity_lost()
    gateway.faults.connectivity_restored(data_lost=False)
    await _eventually(lambda: 1102 in codes)
    assert codes.index(1100) < codes.index(1102)
    assert client.isConnected()  # the socket stays up
    seen = ticker.volume
    await _eventually(lambda: ticker.volume != seen, timeout=5)  # data kept flowing
    client.disconnect()


@pytest.mark.sim(speed=10)
async def test_connectivity_restored_with_data_lost_ends_subscriptions(gateway: SimGateway) -> None:
    client = await _connect(gateway, 1)
    codes = _error_codes(client)
    [spy] = await client.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
    assert isinstance(spy, Contract)
    ticker = client.reqMktData(spy)
    await asyncio.sleep(0.3)
    gateway.faults.connectivity_lost()
    gateway.faults.connectivity_restored(data_lost=True)
    await _eventually(lambda: 1101 in codes)
    assert gateway.core.lines.in_use == 0
    await asyncio.sleep(0.2)
    frozen = (ticker.volume, ticker.bid, ticker.ask)
    await asyncio.sleep(0.6)  # 6 simulated seconds: no tick arrives any more
    assert (ticker.volume, ticker.bid, ticker.ask) == frozen
    again = client.reqMktData(spy, "", False, False)  # resubscribing works
    await _eventually(lambda: again.volume != frozen[0])
    client.disconnect()


@pytest.mark.parametrize(
    ("farm", "broken", "ok"), [("market", 2103, 2104), ("hmds", 2105, 2106), ("secdef", 2157, 2158)]
)
async def test_farm_broken_and_ok_notices(
    gateway: SimGateway, farm: str, broken: int, ok: int
) -> None:
    app = IbapiClient()
    await app.connect(gateway.port, client_id=4)
    try:
        await app.wait_for("nextValidId")
        await app.wait_error(-1, 2158)  # the last connect-time notice
        seen = len(app.errors())
        gateway.faults.farm(farm, ok=False)
        await app.wait_error(-1, broken)
        gateway.faults.farm(farm, ok=True)
        await app.wait_for("error", lambda a: a[2] == ok and len(app.errors()) > seen + 1)
        assert [code for _, code, _ in app.errors()[seen:]] == [broken, ok]
    finally:
        await app.disconnect()


async def test_half_open_gateway_accepts_and_never_answers(gateway: SimGateway) -> None:
    gateway.faults.half_open(True)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    payload = b"v157..178"
    writer.write(API_PREFIX + struct.pack(">I", len(payload)) + payload)
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), timeout=1.0)
    writer.close()
    client = IB()
    with pytest.raises((TimeoutError, asyncio.TimeoutError, ConnectionError)):
        await client.connectAsync("127.0.0.1", gateway.port, clientId=8, timeout=1.0)
    client.disconnect()
    gateway.faults.half_open(False)
    healthy = await _connect(gateway, 8)
    healthy.disconnect()


async def test_delay_slows_every_answer_and_keeps_their_order(gateway: SimGateway) -> None:
    client = await _connect(gateway, 1)
    gateway.faults.delay(400)
    started = time.monotonic()
    results = await asyncio.gather(
        client.reqCurrentTimeAsync(),
        client.reqContractDetailsAsync(Stock("AAPL", "SMART", "USD")),
    )
    elapsed = time.monotonic() - started
    assert elapsed >= 0.4
    assert results[1][0].contract is not None
    gateway.faults.delay(0)
    started = time.monotonic()
    await client.reqCurrentTimeAsync()
    assert time.monotonic() - started < 0.4
    client.disconnect()


async def test_a_stale_session_keeps_a_client_id_in_use_until_released(
    gateway: SimGateway,
) -> None:
    gateway.faults.hold_client_id(9)
    client = IB()
    codes = _error_codes(client)
    with pytest.raises((TimeoutError, asyncio.TimeoutError, ConnectionError)):
        await client.connectAsync("127.0.0.1", gateway.port, clientId=9, timeout=1.0)
    assert 326 in codes
    gateway.faults.release_client_id(9)
    again = await _connect(gateway, 9)
    assert again.isConnected()
    again.disconnect()


@pytest.mark.sim(speed=60)
async def test_scheduled_nightly_restart_at_a_simulated_time(gateway: SimGateway) -> None:
    client = await _connect(gateway, 1)
    at = gateway.clock.now_dt() + timedelta(seconds=30)  # half a real second away
    gateway.faults.schedule_restart(at, down=0.5)
    await _eventually(lambda: not client.isConnected(), timeout=3)
    assert gateway.clock.now() >= at.timestamp()
    await _eventually(lambda: gateway.listening, timeout=3)
    again = await _connect(gateway, 1)
    assert again.isConnected()
    again.disconnect()


async def test_admin_endpoint_drives_faults_and_reports_bad_arguments() -> None:
    async with SimGateway("127.0.0.1", 0, admin_port=0) as gw:
        assert gw.admin_port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.admin_port)

        async def ask(obj: object) -> dict[str, object]:
            writer.write(json.dumps(obj).encode() + b"\n")
            await writer.drain()
            reply = json.loads(await asyncio.wait_for(reader.readline(), timeout=3))
            assert isinstance(reply, dict)
            return reply

        assert (await ask({"cmd": "read-only", "args": {"on": True}}))["ok"] is True
        assert gw.core.read_only is True
        status = await ask({"cmd": "status"})
        assert status["read_only"] is True
        assert status["port"] == gw.port
        bad = await ask({"cmd": "delay", "args": {"ms": -5}})
        assert bad == {"ok": False, "error": "delay: 'ms' must be >= 0, got -5"}
        unknown = await ask({"cmd": "explode"})
        assert unknown["ok"] is False
        assert "unknown command 'explode'" in str(unknown["error"])
        assert (await ask({"cmd": "hold-client-id"}))["error"] == (
            "hold-client-id: missing argument 'client_id'"
        )
        writer.close()
    with pytest.raises(FaultError):
        gw.faults.farm("nosuchfarm", ok=True)


async def _ticks_within(ib: IB, ticker: object, seconds: float) -> int:
    """How many updates ``ticker`` gets in ``seconds`` of real time."""
    count = 0

    def on_update(t: object) -> None:
        nonlocal count
        count += 1

    ticker.updateEvent += on_update  # type: ignore[attr-defined]
    await asyncio.sleep(seconds)
    ticker.updateEvent -= on_update  # type: ignore[attr-defined]
    return count


@pytest.mark.sim(speed=60)
async def test_a_silenced_feed_stops_without_an_error_and_a_new_request_flows(
    gateway: SimGateway, ib: IB
) -> None:
    aapl = (await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD")))[0]
    old = ib.reqMktData(aapl)
    assert await _ticks_within(ib, old, 0.5) > 0
    errors: list[int] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append(code)
    assert gateway.faults.silence(["AAPL"], existing_only=True) == 1
    await asyncio.sleep(0.1)
    assert await _ticks_within(ib, old, 0.5) == 0  # a dead feed: no ticks, no error
    ib.cancelMktData(aapl)
    fresh = ib.reqMktData(aapl)
    assert await _ticks_within(ib, fresh, 0.5) > 0  # renewing the request cures it
    assert errors == []


@pytest.mark.sim(speed=60)
async def test_every_feed_silenced_stays_dead_for_new_requests_until_unsilenced(
    gateway: SimGateway, ib: IB
) -> None:
    aapl = (await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD")))[0]
    gateway.faults.silence(None, existing_only=False)
    ticker = ib.reqMktData(aapl)
    assert await _ticks_within(ib, ticker, 0.5) == 0
    with pytest.raises(FaultError, match="symbols"):
        gateway.faults.silence(["NOSUCHSYMBOL"])
    gateway.faults.unsilence()
    assert await _ticks_within(ib, ticker, 0.5) > 0


@pytest.mark.sim(speed=60)
async def test_live_data_stops_while_the_market_data_farm_is_broken(
    gateway: SimGateway, ib: IB
) -> None:
    aapl = (await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD")))[0]
    ticker = ib.reqMktData(aapl)
    assert await _ticks_within(ib, ticker, 0.5) > 0
    gateway.faults.farm("market", ok=False)
    await asyncio.sleep(0.1)
    assert await _ticks_within(ib, ticker, 0.5) == 0
    gateway.faults.farm("market", ok=True)
    assert await _ticks_within(ib, ticker, 0.5) > 0

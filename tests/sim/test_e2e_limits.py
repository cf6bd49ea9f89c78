"""IB's limits as real clients meet them: lines (101), history pacing (162),
duplicate client ids (326), the 50 messages/s rule (0, 100, close), and refused
API versions."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest
from ib_async import IB, Contract, Stock
from ibapi_app import IbapiClient

from ibpilot.sim import SimGateway
from ibpilot.sim.protocol import API_PREFIX, FrameReader, decode_payload, encode_message

PACING = "Historical Market Data Service error message:Historical data request pacing violation"


def _errors(ib: IB) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: found.append((req_id, code, text))
    return found


async def _stock(ib: IB, symbol: str) -> Contract:
    [c] = await ib.qualifyContractsAsync(Stock(symbol, "SMART", "USD"))
    assert isinstance(c, Contract)
    return c


@pytest.mark.sim(market_data_lines=3)
async def test_the_line_over_the_limit_gets_error_101_and_a_freed_line_is_reusable(
    ib: IB, gateway: SimGateway
) -> None:
    errors = _errors(ib)
    contracts = [await _stock(ib, s) for s in ("AAPL", "MSFT", "SPY", "QQQ")]
    tickers = [ib.reqMktData(c) for c in contracts]
    await asyncio.sleep(0.3)
    over = [(rid, code) for rid, code, _ in errors if code == 101]
    assert len(over) == 1
    assert tickers[3].bid != tickers[3].bid or tickers[3].bid <= 0  # QQQ never got data
    assert all(t.bid > 0 for t in tickers[:3])
    assert gateway.core.lines.in_use == 3

    ib.cancelMktData(contracts[0])
    await asyncio.sleep(0.1)
    assert gateway.core.lines.in_use == 2
    again = ib.reqMktData(contracts[3])
    await asyncio.sleep(0.3)
    assert again.bid > 0
    assert len([e for e in errors if e[1] == 101]) == 1


@pytest.mark.sim(market_data_lines=1)
async def test_real_time_bars_hold_a_line_too(ib: IB) -> None:
    errors = _errors(ib)
    spy = await _stock(ib, "SPY")
    ib.reqRealTimeBars(spy, 5, "TRADES", False)
    ib.reqMktData(await _stock(ib, "AAPL"))
    await asyncio.sleep(0.3)
    assert [code for _, code, _ in errors if code == 101] == [101]


async def _history(ib: IB, contract: Contract, duration: str) -> list[object]:
    return list(
        await ib.reqHistoricalDataAsync(
            contract,
            "20260227 12:00:00 US/Eastern",
            duration,
            "5 secs",
            "MIDPOINT",
            True,
            timeout=5,
        )
    )


async def test_identical_history_request_within_15_seconds_is_a_pacing_violation(ib: IB) -> None:
    errors = _errors(ib)
    spy = await _stock(ib, "SPY")
    assert await _history(ib, spy, "600 S")
    assert await _history(ib, spy, "600 S") == []
    assert [(code, text) for _, code, text in errors if code == 162] == [(162, PACING)]


async def test_six_requests_for_one_contract_within_2_seconds_is_a_pacing_violation(
    ib: IB,
) -> None:
    errors = _errors(ib)
    spy = await _stock(ib, "SPY")
    sizes = [len(await _history(ib, spy, f"{60 * n} S")) for n in range(1, 7)]
    assert all(sizes[:5])
    assert sizes[5] == 0
    assert [code for _, code, _ in errors if code == 162] == [162]
    # another contract is not affected by that burst
    assert await _history(ib, await _stock(ib, "QQQ"), "60 S")


async def test_more_than_60_requests_in_10_minutes_is_a_pacing_violation(ib: IB) -> None:
    errors = _errors(ib)
    symbols = ["AAPL", "MSFT", "SPY", "QQQ", "IWM", "TLT", "IEF", "GLD", "AMZN", "NVDA", "META",
               "TSLA", "JPM"]  # fmt: skip
    contracts = [await _stock(ib, s) for s in symbols]
    answered = 0
    for n in range(1, 6):  # 5 per contract: never 6 within 2 s for one contract
        for c in contracts:
            if await _history(ib, c, f"{30 * n} S"):
                answered += 1
            if answered + len([e for e in errors if e[1] == 162]) >= 61:
                break
    assert answered == 60
    assert [code for _, code, _ in errors if code == 162] == [162]


async def test_duplicate_client_id_gets_326_and_is_closed(ib: IB, gateway: SimGateway) -> None:
    second = IB()
    codes: list[int] = []
    second.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    with pytest.raises((TimeoutError, ConnectionError, asyncio.TimeoutError)):
        await second.connectAsync("127.0.0.1", gateway.port, clientId=1, timeout=1.5)
    assert 326 in codes
    assert not second.isConnected()
    assert ib.isConnected()  # the first connection is untouched
    assert await ib.reqCurrentTimeAsync()


async def test_duplicate_client_id_with_the_official_client(ib: IB, gateway: SimGateway) -> None:
    app = IbapiClient()
    await app.connect(gateway.port, client_id=1)
    try:
        text = await app.wait_error(-1, 326)
        assert "client id is already in use" in text
        await app.wait_for("connectionClosed")
    finally:
        await app.disconnect()


@pytest.mark.sim(message_rate=50, message_rate_max_violations=3)
async def test_fifty_messages_per_second_warning_then_error_100_then_closed(
    gateway: SimGateway,
) -> None:
    app = IbapiClient()  # IB's client does not throttle itself, unlike ib_async
    await app.connect(gateway.port, client_id=3)
    try:
        await app.wait_for("nextValidId")
        for _ in range(60):
            app.client.reqCurrentTime()
        await app.wait_for("connectionClosed", timeout=5)
        codes = [code for rid, code, _ in app.errors() if rid == -1 and code in (0, 100)]
        assert codes[0] == 0
        assert codes[1:] == [100, 100, 100]
        warning = next(text for _, code, text in app.errors() if code == 0)
        assert "Approaching max rate of 50 messages per second" in warning
        # what was within the limit was answered
        assert 40 <= len(app.calls("currentTime")) <= 52
    finally:
        await app.disconnect()


async def test_a_client_below_version_157_is_refused_with_a_clear_log_line(
    gateway: SimGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ibpilot.sim")
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    payload = b"v100..151"
    writer.write(API_PREFIX + struct.pack(">I", len(payload)) + payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=3)
    writer.close()
    assert data == b""  # closed without a reply
    assert any("speaks server versions 100..151" in r.getMessage() for r in caplog.records)


async def test_raw_client_sees_the_exact_handshake_reply(gateway: SimGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    payload = b"v157..178"
    writer.write(API_PREFIX + struct.pack(">I", len(payload)) + payload)
    writer.write(encode_message([71, 2, 9, ""]))
    await writer.drain()
    frames = FrameReader()
    messages: list[tuple[str, ...]] = []
    while len(messages) < 6:
        frames.feed(await asyncio.wait_for(reader.read(4096), timeout=3))
        while (p := frames.next_payload()) is not None:
            messages.append(decode_payload(p))
    writer.close()
    version, conn_time = messages[0]
    assert version == "178"
    assert conn_time.startswith("20260302 ")
    assert messages[1] == ("15", "1", "DU0000001")
    assert messages[2][:2] == ("9", "1")
    assert [m[3] for m in messages[3:6]] == ["2104", "2106", "2158"]

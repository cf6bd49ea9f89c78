"""The bot through IB's outages, end to end: ``ibpilot start`` (in-process, on the simulator's
accelerated clock) against the simulated gateway's faults over real sockets, alerts to a real
HTTP receiver on 127.0.0.1.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from test_start_e2e import (
    MONDAY_OPEN,
    Files,
    assert_ledger_matches_the_sim,
    bot_in_process,
    codes,
    exit_code,
    ibpilot_start,
    ledger_entries,
    open_window_now,
    order,
    sim_executions,
    sim_orders,
    verify_exit_code,
    wait_for,
    write_files,
)

from ibpilot.ledger import Entry, EntryKind
from ibpilot.runner import EXIT_OK
from ibpilot.sim import SimGateway

_K = EntryKind
# Tuesday 00:20 US/Eastern: inside IB's daily server reset (00:15-01:45 ET), market closed
IN_RESET_WINDOW = datetime.fromisoformat("2026-03-03T00:20:00-05:00")


def with_adapter(files: Files, **extra: Any) -> Files:
    adapter = json.loads(files.adapter.read_text())
    adapter.update(extra)
    files.adapter.write_text(json.dumps(adapter))
    return files


def market_data(files: Files, **match: Any) -> list[Entry]:
    return [
        e
        for e in ledger_entries(files.ledger, _K.MARKET_DATA)
        if all(e.payload.get(k) == v for k, v in match.items())
    ]


def alerts(files: Files, kind: str) -> list[Entry]:
    return [e for e in ledger_entries(files.ledger, _K.ALERT) if e.payload["kind"] == kind]


def reconciled(files: Files) -> bool:
    return any(e.payload.get("finding") == "summary" for e in ledger_entries(files.ledger))


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POSTed JSON body, answers 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook/s3cret"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        self.bodies.append(json.loads(await asyncio.wait_for(reader.readexactly(length), 5)))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def kinds(self) -> list[str]:
        return [str(body["alert"]["kind"]) for body in self.bodies]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.close()


# -- market data that goes silent ------------------------------------------------------------


@pytest.mark.sim(speed=60, start=MONDAY_OPEN)
async def test_a_dead_feed_is_resubscribed_and_flows_again(
    gateway: SimGateway, tmp_path: Path
) -> None:
    files = with_adapter(write_files(tmp_path, gateway.port, params={"steps": []}), stale_data_s=30)
    async with bot_in_process(gateway, files) as bot:
        await wait_for("the start-up reconciliation", lambda: reconciled(files))
        await asyncio.sleep(1.5)  # quotes flow: nothing is silent
        assert market_data(files) == []
        gateway.faults.silence(["AAPL"], existing_only=True)  # renewing the request cures it
        await wait_for("a resubscription", lambda: market_data(files, action="resubscribe"))
        await asyncio.sleep(3)  # 180 simulated seconds: six times the stale bound
        assert len(market_data(files, action="resubscribe")) == 1
        assert market_data(files, state="stale") == []
        assert await bot.stop() == EXIT_OK
    assert verify_exit_code(files.ledger) == 0


@pytest.mark.sim(speed=60, start=MONDAY_OPEN)
async def test_a_feed_that_stays_dead_is_reported_stale_and_its_recovery_noted(
    gateway: SimGateway, tmp_path: Path, receiver: Receiver
) -> None:
    files = write_files(tmp_path, gateway.port, params={"steps": []})
    with_adapter(files, stale_data_s=20, alerts={"webhook_url": receiver.url})
    async with bot_in_process(gateway, files) as bot:
        await wait_for("the start-up reconciliation", lambda: reconciled(files))
        gateway.faults.silence(["AAPL"], existing_only=False)  # new requests are dead too
        await wait_for("a stale report", lambda: market_data(files, state="stale"))
        assert len(market_data(files, action="resubscribe")) == 2  # tried twice first
        await wait_for("the webhook", lambda: "data_stale" in receiver.kinds())
        [body] = [b for b in receiver.bodies if b["alert"]["kind"] == "data_stale"]
        assert "AAPL" in body["text"]
        assert body["text"] == body["content"]
        gateway.faults.unsilence()
        await wait_for("the recovery", lambda: market_data(files, symbol="AAPL", state="flowing"))
        assert await bot.stop() == EXIT_OK
    assert len(alerts(files, "data_stale")) == 1


@pytest.mark.sim(speed=60, start=MONDAY_OPEN)
async def test_a_broken_market_data_farm_makes_quotes_stale_until_it_is_back(
    gateway: SimGateway, tmp_path: Path
) -> None:
    steps = [[order(quantity=1)], [order(quantity=1)]]
    files = write_files(tmp_path, gateway.port, params={"steps": steps, "delay_s": 0})
    async with bot_in_process(gateway, files) as bot:
        await wait_for("the first fill", lambda: ledger_entries(files.ledger, _K.FILL))
        gateway.faults.farm("market", ok=False)
        await wait_for("the farm notice", lambda: market_data(files, code=2103, ok=False))
        gateway.faults.farm("market", ok=True)
        await wait_for("the farm back", lambda: market_data(files, code=2104, ok=True))
        await wait_for("the second fill", lambda: len(ledger_entries(files.ledger, _K.FILL)) >= 2)
        assert await bot.stop() == EXIT_OK
    assert_ledger_matches_the_sim(files.ledger, gateway)


# -- IB's 1100 and reconnects: no order while the link is down or not reconciled --------------


@pytest.mark.sim(speed=60, start=MONDAY_OPEN)
async def test_no_order_leaves_during_1100_and_trading_resumes_after_reconciliation(
    gateway: SimGateway, tmp_path: Path
) -> None:
    params = {"steps": [[order(quantity=1)]], "repeat_s": 20}
    files = write_files(tmp_path, gateway.port, params=params, mandate={"max_position": 1000})
    async with bot_in_process(gateway, files) as bot:
        await wait_for("an order sent", lambda: ledger_entries(files.ledger, _K.ORDER_SENT))
        gateway.faults.connectivity_lost()
        await wait_for(
            "a refusal while IB is lost",
            lambda: [
                e
                for e in ledger_entries(files.ledger, _K.DECISION)
                if "CONNECTIVITY_LOST" in codes(e)
            ],
        )
        sent_during = len(ledger_entries(files.ledger, _K.ORDER_SENT))
        orders_at_sim = len(gateway.core.desk.engine.open_orders()) + len(
            gateway.core.desk.engine.executions(gateway.clock.epoch())
        )
        await asyncio.sleep(1)
        assert len(ledger_entries(files.ledger, _K.ORDER_SENT)) == sent_during
        gateway.faults.connectivity_restored(data_lost=True)
        await wait_for(
            "an order after the restore",
            lambda: len(ledger_entries(files.ledger, _K.ORDER_SENT)) > sent_during,
        )
        assert orders_at_sim >= 1
        assert await bot.stop() == EXIT_OK
    entries = ledger_entries(files.ledger)
    restored = max(
        i
        for i, e in enumerate(entries)
        if e.kind is _K.CONNECTION and e.payload.get("code") in (1101, 1102)
    )
    first_sent = next(i for i, e in enumerate(entries) if i > restored and e.kind is _K.ORDER_SENT)
    summaries = [
        i
        for i, e in enumerate(entries)
        if restored < i < first_sent and e.payload.get("finding") == "summary"
    ]
    assert summaries, "an order left after the restore before the reconciliation finished"
    assert_ledger_matches_the_sim(files.ledger, gateway)
    assert verify_exit_code(files.ledger) == 0


# -- outages against IB's schedule: alerts ---------------------------------------------------


@pytest.mark.sim(speed=60, start=MONDAY_OPEN)
async def test_an_outage_outside_ibs_windows_alerts_through_the_webhook(
    gateway: SimGateway, tmp_path: Path, receiver: Receiver
) -> None:
    files = write_files(tmp_path, gateway.port, params={"steps": []})
    hook = {"webhook_url": receiver.url, "connection_alert_after_s": 60}
    with_adapter(files, alerts=hook)
    async with bot_in_process(gateway, files) as bot:
        await wait_for("the start-up reconciliation", lambda: reconciled(files))
        restart = asyncio.create_task(gateway.faults.restart(down=2.5))
        await wait_for("the alert", lambda: "connection_not_restored" in receiver.kinds(), 10)
        await restart
        await wait_for("the reconnect", lambda: _outage_end(files))
        assert await bot.stop() == EXIT_OK
    [alert] = alerts(files, "connection_not_restored")
    assert alert.payload["severity"] == "critical"
    [down] = [
        e
        for e in ledger_entries(files.ledger, _K.CONNECTION)
        if e.payload["state"] == "disconnected"
    ][:1]
    assert down.payload["expected_window"] is None
    end = _outage_end(files)
    assert end is not None
    assert end.payload["expected_window"] is None
    assert float(str(end.payload["unexplained_s"])) >= 60


@pytest.mark.sim(speed=60, start=IN_RESET_WINDOW)
async def test_an_outage_inside_ibs_nightly_reset_is_waited_out_quietly(
    gateway: SimGateway, tmp_path: Path, receiver: Receiver
) -> None:
    files = write_files(tmp_path, gateway.port, params={"steps": []}, warmup="60 S")
    hook = {"webhook_url": receiver.url, "connection_alert_after_s": 60}
    with_adapter(files, alerts=hook)
    async with bot_in_process(gateway, files) as bot:
        await wait_for("the start-up reconciliation", lambda: reconciled(files))
        await gateway.faults.restart(down=2.5)  # 150 simulated seconds, inside the window
        await wait_for("the reconnect", lambda: _outage_end(files))
        assert await bot.stop() == EXIT_OK
    assert receiver.bodies == []
    assert alerts(files, "connection_not_restored") == []
    end = _outage_end(files)
    assert end is not None
    assert end.payload["expected_window"] == "IB daily server reset (North America)"
    assert float(str(end.payload["unexplained_s"])) == 0


def _outage_end(files: Files) -> Entry | None:
    ends = [e for e in ledger_entries(files.ledger, _K.CONNECTION) if "outage_s" in e.payload]
    return ends[0] if ends else None


# -- kill -9 of the bot ----------------------------------------------------------------------


@pytest.mark.sim(speed=1, start=MONDAY_OPEN)
async def test_kill_9_mid_trading_then_a_restart_loses_nothing_and_sends_nothing_twice(
    gateway: SimGateway, tmp_path: Path
) -> None:
    params = {"steps": [[order(quantity=1)]], "repeat_s": 0.3}
    mandate = {
        "max_position": 1000,
        "max_orders_per_minute": 600,
        "trading_hours": open_window_now(),
    }
    files = write_files(tmp_path, gateway.port, params=params, mandate=mandate)
    async with ibpilot_start(files) as first:
        await wait_for("orders", lambda: len(ledger_entries(files.ledger, _K.ORDER_SENT)) >= 4)
        first.send_signal(signal.SIGKILL)  # at whatever moment: maybe between INTENT and send
        await first.wait()
    before = len(ledger_entries(files.ledger, _K.INTENT))
    async with ibpilot_start(files) as second:
        await wait_for(
            "orders after the restart",
            lambda: len(ledger_entries(files.ledger, _K.ORDER_SENT)) >= before + 3,
        )
        second.send_signal(signal.SIGTERM)
        assert await exit_code(second, files) == EXIT_OK
    await asyncio.sleep(0.5)  # the last fills reach the ledger before STOP (drained)
    entries = ledger_entries(files.ledger)
    restart = max(i for i, e in enumerate(entries) if e.kind is _K.START)
    first_sent = next(i for i, e in enumerate(entries) if i > restart and e.kind is _K.ORDER_SENT)
    assert any(
        e.payload.get("finding") == "summary" and e.payload.get("reason") == "restart"
        for e in entries[restart:first_sent]
    ), "an order left the restarted bot before its reconciliation"
    # intents the killed bot wrote but may not have sent were resolved, never re-sent
    unconfirmed = [e for e in entries if e.payload.get("finding") == "unconfirmed"]
    sent = [str(e.payload["intent_id"]) for e in entries if e.kind is _K.ORDER_SENT]
    assert not {str(e.payload["intent_id"]) for e in unconfirmed} & set(sent[before:])
    assert_ledger_matches_the_sim_after_a_crash(files, gateway)
    assert verify_exit_code(files.ledger) == 0


def assert_ledger_matches_the_sim_after_a_crash(files: Files, gw: SimGateway) -> None:
    """As after a clean run, except that an intent the killed bot ledgered may lack its
    ORDER_SENT: then it is at the simulator exactly once or nowhere, never twice."""
    intents = [str(e.payload["intent_id"]) for e in ledger_entries(files.ledger, _K.INTENT)]
    sent = [str(e.payload["intent_id"]) for e in ledger_entries(files.ledger, _K.ORDER_SENT)]
    assert len(set(intents)) == len(intents), "an intent id was used twice"
    assert len(set(sent)) == len(sent), "an intent was sent twice"
    assert set(sent) <= set(intents)
    refs = Counter(o.spec.order_ref for o in sim_orders(gw))
    assert all(n == 1 for n in refs.values()), f"an orderRef reached the sim twice: {refs}"
    assert set(refs) <= set(intents), "the sim holds an order no intent explains"
    assert set(sent) <= set(refs), "a sent intent is not at the sim"
    assert len(set(intents) - set(refs)) <= 1  # at most the one the kill interrupted
    fills = {str(e.payload["exec_id"]) for e in ledger_entries(files.ledger, _K.FILL)}
    assert fills == {ex.exec_id for ex in sim_executions(gw)}, "a fill is missing"

"""Staged appends: entries durable before the wire, chained after it, recovered after a crash.

Real SQLite files under tmp_path, real processes (a child killed with SIGKILL), real stage
files (written by hand where a test needs one a dead process would leave).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import multiprocessing
import os
import random
import selectors
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibpilot.broker.base import Contract, OrderRequest
from ibpilot.config import OrderType
from ibpilot.gate import Decision, Proposal, Side, Source
from ibpilot.ledger import (
    Entry,
    EntryKind,
    Ledger,
    LedgerIntegrityError,
    MemoryLedger,
    SqlLedger,
    stage_batch,
)
from ibpilot.oms import IntentState, Oms

K = EntryKind
T0 = datetime(2026, 3, 2, 14, 25, tzinfo=UTC)
SPEC = "ab12cd34" + "0" * 56
AAPL = Contract(265598, "AAPL", "STK", "SMART", "USD")


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


def _stage_files(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("ledger.sqlite.staged-*"))


def _content(entries: list[Entry]) -> list[tuple[datetime, EntryKind, str, dict[str, object]]]:
    return [(e.ts, e.kind, e.spec_hash, dict(e.payload)) for e in entries]


def _write_stage_file(path: Path, *lines: bytes) -> None:
    path.write_bytes(b"".join(lines))
    path.chmod(0o600)


def _line(kind: EntryKind, payload: dict[str, object], ts: datetime = T0) -> bytes:
    return stage_batch([(kind, payload)], ts=ts, spec_hash=SPEC)[1]


# -- staging and flushing ---------------------------------------------------------------------


def test_staged_entries_join_the_chain_in_order_at_flush(tmp_path: Path) -> None:
    ledger, reader = SqlLedger(_url(tmp_path)), SqlLedger(_url(tmp_path))
    ledger.stage([(K.PROPOSAL, {"n": 1}), (K.DECISION, {"n": 2})], ts=T0, spec_hash=SPEC)
    ledger.stage([(K.INTENT, {"n": Decimal("3.10")})], ts=T0 + timedelta(seconds=1))
    [stage_file] = _stage_files(tmp_path)
    assert stage_file.stat().st_mode & 0o777 == 0o600
    assert stage_file.stat().st_size > 0
    assert list(reader.entries()) == []  # durable, not chained yet
    ledger.flush()
    entries = list(reader.entries())
    assert [(e.seq, e.kind, e.payload) for e in entries] == [
        (1, K.PROPOSAL, {"n": 1}),
        (2, K.DECISION, {"n": 2}),
        (3, K.INTENT, {"n": "3.10"}),
    ]
    assert [e.spec_hash for e in entries] == [SPEC, SPEC, ""]
    assert entries[2].ts == T0 + timedelta(seconds=1)
    assert reader.verify().ok
    assert stage_file.stat().st_size == 0
    ledger.flush()  # nothing staged: nothing to do
    assert len(list(reader.entries())) == 3
    ledger.close()
    reader.close()
    assert _stage_files(tmp_path) == []


def test_an_append_after_stage_chains_the_staged_entries_first(tmp_path: Path) -> None:
    with SqlLedger(_url(tmp_path)) as ledger:
        ledger.append(K.START, {}, ts=T0)
        ledger.stage([(K.PROPOSAL, {"i": 1}), (K.INTENT, {"i": 2})], ts=T0, spec_hash=SPEC)
        ledger.stage([(K.NOTE, {"i": 3})], ts=T0)
        appended = ledger.append_many([(K.ORDER_SENT, {"i": 4}), (K.NOTE, {"i": 5})], ts=T0)
        assert [e.seq for e in appended] == [5, 6]  # only what this call appended
        entries = list(ledger.entries())
        assert [(e.seq, e.payload.get("i")) for e in entries] == [
            (1, None), (2, 1), (3, 2), (4, 3), (5, 4), (6, 5)
        ]  # fmt: skip
        assert ledger.verify().ok
        assert _stage_files(tmp_path)[0].stat().st_size == 0


def test_close_chains_what_is_staged_and_removes_the_stage_file(tmp_path: Path) -> None:
    ledger = SqlLedger(_url(tmp_path))
    ledger.stage([(K.INTENT, {"id": "a"})], ts=T0)
    ledger.close()
    ledger.close()  # idempotent
    assert _stage_files(tmp_path) == []
    with SqlLedger(_url(tmp_path)) as reopened:
        assert [e.payload for e in reopened.entries()] == [{"id": "a"}]


def test_an_unstaged_ledger_makes_no_stage_file(tmp_path: Path) -> None:
    with SqlLedger(_url(tmp_path)) as ledger:
        ledger.append(K.NOTE, {}, ts=T0)
        ledger.stage([], ts=T0)
        ledger.flush()
        assert _stage_files(tmp_path) == []


@pytest.mark.parametrize(
    ("items", "ts", "spec_hash", "error"),
    [
        ([(K.NOTE, {"x": object()})], T0, "", TypeError),
        ([(K.NOTE, {1: "key"})], T0, "", TypeError),
        ([(K.NOTE, {"x": float("nan")})], T0, "", ValueError),
        ([(K.NOTE, {})], T0.replace(tzinfo=None), "", ValueError),
        ([(K.NOTE, {})], T0, "\n", ValueError),
        ([("NOT_A_KIND", {})], T0, "", ValueError),
    ],
)
def test_stage_refuses_what_append_many_refuses_and_writes_nothing(
    tmp_path: Path,
    items: list[tuple[EntryKind, dict[object, object]]],
    ts: datetime,
    spec_hash: str,
    error: type[Exception],
) -> None:
    with SqlLedger(_url(tmp_path)) as ledger:
        with pytest.raises(error):
            ledger.append_many(items, ts=ts, spec_hash=spec_hash)  # type: ignore[arg-type]
        with pytest.raises(error):
            ledger.stage(items, ts=ts, spec_hash=spec_hash)  # type: ignore[arg-type]
        assert _stage_files(tmp_path) == []
        ledger.stage([(K.NOTE, {"ok": True})], ts=T0)
        [stage_file] = _stage_files(tmp_path)
        size = stage_file.stat().st_size
        with pytest.raises(error):
            ledger.stage(items, ts=ts, spec_hash=spec_hash)  # type: ignore[arg-type]
        assert stage_file.stat().st_size == size
        ledger.flush()
        assert [e.payload for e in ledger.entries()] == [{"ok": True}]
        assert ledger.verify().ok


def test_threads_staging_and_appending_make_one_chain(tmp_path: Path) -> None:
    with SqlLedger(_url(tmp_path)) as ledger:

        def work(name: str) -> None:
            for i in range(50):
                if i % 2:
                    ledger.stage([(K.NOTE, {"w": name, "i": i})], ts=T0)
                else:
                    ledger.append(K.NOTE, {"w": name, "i": i}, ts=T0)

        threads = [threading.Thread(target=work, args=(n,)) for n in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ledger.flush()
        entries = list(ledger.entries())
        for name in "ab":
            assert [e.payload["i"] for e in entries if e.payload["w"] == name] == list(range(50))
        assert ledger.verify().ok


# -- recovery after a crash -------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timedelta
    from ibpilot.ledger import EntryKind as K, SqlLedger
    ledger = SqlLedger(sys.argv[1])
    t0 = datetime.fromisoformat(sys.argv[2])
    ledger.append(K.START, {}, ts=t0)
    ledger.stage([(K.PROPOSAL, {"i": 1}), (K.INTENT, {"i": 2})], ts=t0, spec_hash=sys.argv[3])
    ledger.stage([(K.NOTE, {"i": 3})], ts=t0 + timedelta(seconds=1))
    print("staged", flush=True)
    time.sleep(120)
    """
)


def _wait_for_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    deadline, received = time.monotonic() + timeout, b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in received and time.monotonic() < deadline:
            if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                received += chunk
    return received


def test_entries_staged_by_a_process_killed_with_sigkill_are_chained_at_the_next_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = _url(tmp_path)
    SqlLedger(url).close()
    child = subprocess.Popen(  # the child's own import time is part of the bound below
        [sys.executable, "-c", _CHILD, url, T0.isoformat(), SPEC],
        stdout=subprocess.PIPE,
    )
    try:
        received = _wait_for_line(child, timeout=60)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert child.stdout is not None
        child.stdout.close()
    assert received == b"staged\n", "the child did not stage in time"
    assert child.returncode == -signal.SIGKILL
    assert len(_stage_files(tmp_path)) == 1
    with caplog.at_level(logging.WARNING, logger="ibpilot.ledger"):
        ledger = SqlLedger(url)
    assert "recovered 3 staged ledger entries" in caplog.text
    assert _content(list(ledger.entries())) == [
        (T0, K.START, "", {}),
        (T0, K.PROPOSAL, SPEC, {"i": 1}),
        (T0, K.INTENT, SPEC, {"i": 2}),
        (T0 + timedelta(seconds=1), K.NOTE, "", {"i": 3}),
    ]
    assert ledger.verify().ok
    assert _stage_files(tmp_path) == []
    ledger.close()


def test_recovery_skips_what_the_dead_owner_committed_before_emptying_its_file(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    with SqlLedger(url) as ledger:
        ledger.append(K.INTENT, {"id": "committed"}, ts=T0, spec_hash=SPEC)
        ledger.append(K.NOTE, {"after": True}, ts=T0)
    _write_stage_file(
        tmp_path / "ledger.sqlite.staged-0badcafe",
        _line(K.INTENT, {"id": "committed"}),
        _line(K.INTENT, {"id": "not committed"}),
    )
    with SqlLedger(url) as ledger:
        assert [e.payload for e in ledger.entries()] == [
            {"id": "committed"}, {"after": True}, {"id": "not committed"}
        ]  # fmt: skip
        assert ledger.verify().ok
    assert _stage_files(tmp_path) == []


def test_an_entry_staged_twice_is_recovered_as_often_as_the_chain_lacks_it(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    with SqlLedger(url) as ledger:
        ledger.append(K.NOTE, {"same": 1}, ts=T0, spec_hash=SPEC)
    same = _line(K.NOTE, {"same": 1})
    _write_stage_file(tmp_path / "ledger.sqlite.staged-00000001", same, same, same)
    with SqlLedger(url) as ledger:
        assert [e.payload for e in ledger.entries()] == [{"same": 1}] * 3


def test_stage_files_are_recovered_oldest_first(tmp_path: Path) -> None:
    url = _url(tmp_path)
    SqlLedger(url).close()
    older, newer = (
        tmp_path / "ledger.sqlite.staged-ffffffff",
        tmp_path / "ledger.sqlite.staged-00000000",
    )
    _write_stage_file(older, _line(K.NOTE, {"file": "older"}))
    _write_stage_file(newer, _line(K.NOTE, {"file": "newer"}))
    os.utime(older, (time.time() - 60, time.time() - 60))
    with SqlLedger(url) as ledger:
        assert [e.payload["file"] for e in ledger.entries()] == ["older", "newer"]


def test_a_torn_last_line_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = _url(tmp_path)
    SqlLedger(url).close()
    torn = _line(K.INTENT, {"i": 3})[:-9]
    _write_stage_file(
        tmp_path / "ledger.sqlite.staged-12345678",
        _line(K.PROPOSAL, {"i": 1}),
        _line(K.INTENT, {"i": 2}),
        torn,
    )
    with caplog.at_level(logging.WARNING, logger="ibpilot.ledger"):
        ledger = SqlLedger(url)
    assert "dropped the last line of stage file" in caplog.text
    assert "ledger.sqlite.staged-12345678" in caplog.text
    assert [e.payload for e in ledger.entries()] == [{"i": 1}, {"i": 2}]
    assert ledger.verify().ok
    assert _stage_files(tmp_path) == []
    ledger.close()


def test_a_damaged_line_in_the_middle_refuses_the_open_and_names_the_file(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    SqlLedger(url).close()
    stage_file = tmp_path / "ledger.sqlite.staged-deadbeef"
    _write_stage_file(stage_file, _line(K.NOTE, {"i": 1}), b"\x00garbage\n", _line(K.NOTE, {}))
    with pytest.raises(LedgerIntegrityError, match=r"ledger\.sqlite\.staged-deadbeef line 2"):
        SqlLedger(url)
    assert stage_file.exists()  # kept for inspection
    stage_file.rename(tmp_path / "moved-away")
    with SqlLedger(url) as ledger:
        assert list(ledger.entries()) == []  # nothing of it was appended


def test_a_live_owners_stage_file_is_left_alone(tmp_path: Path) -> None:
    url = _url(tmp_path)
    owner = SqlLedger(url)
    owner.stage([(K.INTENT, {"id": "in flight"})], ts=T0)
    [stage_file] = _stage_files(tmp_path)
    with SqlLedger(url) as other:  # a second opener: the owner's lock is held
        assert list(other.entries()) == []
        assert stage_file.exists()
        owner.flush()
        assert [e.payload for e in other.entries()] == [{"id": "in flight"}]
    owner.close()


def test_a_stage_file_locked_by_another_open_file_is_left_alone(tmp_path: Path) -> None:
    url = _url(tmp_path)
    SqlLedger(url).close()
    stage_file = tmp_path / "ledger.sqlite.staged-abcdef01"
    _write_stage_file(stage_file, _line(K.NOTE, {"i": 1}))
    fd = os.open(stage_file, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with SqlLedger(url) as ledger:
            assert list(ledger.entries()) == []
        assert stage_file.exists()
    finally:
        os.close(fd)  # the owner dies
    with SqlLedger(url) as ledger:
        assert [e.payload for e in ledger.entries()] == [{"i": 1}]
    assert not stage_file.exists()


def test_a_reader_that_cannot_write_leaves_stage_files_alone(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write a read-only file")
    url = _url(tmp_path)
    SqlLedger(url).close()
    stage_file = tmp_path / "ledger.sqlite.staged-abcdef02"
    _write_stage_file(stage_file, _line(K.NOTE, {"i": 1}))
    database = tmp_path / "ledger.sqlite"
    database.chmod(0o400)
    try:
        with SqlLedger(url, create=False) as reader:
            assert list(reader.entries()) == []
        assert stage_file.exists()
    finally:
        database.chmod(0o600)


def _stage_worker(url: str, name: str, count: int, ready: threading.Barrier) -> None:
    ledger = SqlLedger(url)
    ready.wait(60)
    for i in range(count):
        payload = {"writer": name, "i": i}
        if i % 3 == 2:
            ledger.append(K.NOTE, payload, ts=T0)
        else:
            ledger.stage([(K.NOTE, payload)], ts=T0)
            if i % 5 == 0:
                ledger.flush()
        time.sleep(0.001)
    ledger.close()


def test_two_processes_staging_make_one_unbroken_chain(tmp_path: Path) -> None:
    url = _url(tmp_path)
    SqlLedger(url).close()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(2)
    count = 100
    workers = [ctx.Process(target=_stage_worker, args=(url, n, count, ready)) for n in "ab"]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    with SqlLedger(url) as ledger:
        entries = list(ledger.entries())
        for name in "ab":
            mine = [e.payload["i"] for e in entries if e.payload["writer"] == name]
            assert mine == list(range(count))
        assert ledger.verify().ok
    assert _stage_files(tmp_path) == []


# -- any interleaving -------------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("stage"), st.integers(1, 3)),
        st.tuples(st.just("append"), st.integers(0, 3)),
        st.tuples(st.just("flush"), st.just(0)),
    ),
    max_size=20,
)


def _run(ledger: Ledger, ops: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """Apply ``ops``; the (op index, item index) of every entry, in call order."""
    expected: list[tuple[int, int]] = []
    for n, (op, size) in enumerate(ops):
        items = [(K.NOTE, {"op": n, "item": j}) for j in range(size)]
        ts = T0 + timedelta(seconds=n)
        if op == "stage":
            ledger.stage(items, ts=ts, spec_hash=SPEC)
        elif op == "append":
            ledger.append_many(items, ts=ts)
        else:
            ledger.flush()
        expected += [(n, j) for j in range(size) if op != "flush"]
    return expected


@settings(max_examples=50, deadline=None)
@given(ops=operations)
def test_any_interleaving_of_stage_append_and_flush_ends_in_call_order(
    ops: list[tuple[str, int]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        with SqlLedger(_url(Path(directory))) as ledger:
            expected = _run(ledger, ops)
            ledger.flush()
            stored = list(ledger.entries())
            assert ledger.verify().ok
        memory = MemoryLedger()
        assert _run(memory, ops) == expected
        order = [(e.payload["op"], e.payload["item"]) for e in stored]
        assert order == expected
        assert [e.seq for e in stored] == list(range(1, len(expected) + 1))
        assert _content(stored) == _content(list(memory.entries()))
        assert memory.verify().ok


# -- the OMS: ledger before wire --------------------------------------------------------------


class WireBroker:
    """Checks at each send that the intent is durable in the stage file and not yet chained;
    then returns an order id or raises ``fail``."""

    def __init__(self, ledger: SqlLedger, directory: Path) -> None:
        self.ledger, self.directory = ledger, directory
        self.fail: BaseException | None = None
        self.placed: list[OrderRequest] = []

    async def place(self, order: OrderRequest) -> int:
        staged = b"".join(p.read_bytes() for p in _stage_files(self.directory))
        assert f'"intent_id":"{order.intent_id}"'.encode() in staged, "sent before staged"
        assert list(self.ledger.entries()) == []  # chaining comes after the wire
        self.placed.append(order)
        if self.fail is not None:
            raise self.fail
        return 41


def _oms(tmp_path: Path) -> tuple[Oms, WireBroker, SqlLedger]:
    ledger = SqlLedger(_url(tmp_path))
    broker = WireBroker(ledger, tmp_path)
    oms = Oms(ledger, broker, spec_hash=SPEC, clock=lambda: T0, rng=random.Random(1))  # type: ignore[arg-type]
    return oms, broker, ledger


def _proposal() -> Proposal:
    return Proposal(
        source=Source.STRATEGY, symbol="AAPL", side=Side.BUY, quantity=Decimal(100),
        order_type=OrderType.MKT,
    )  # fmt: skip


async def test_an_order_sent_has_its_records_chained_right_after_the_send(
    tmp_path: Path,
) -> None:
    oms, broker, ledger = _oms(tmp_path)
    intent = await oms.submit(_proposal(), Decision(allowed=True), AAPL)
    assert intent is not None
    assert len(broker.placed) == 1
    kinds = [e.kind for e in ledger.entries()]
    assert kinds == [K.PROPOSAL, K.DECISION, K.INTENT, K.ORDER_SENT]
    assert ledger.verify().ok
    assert _stage_files(tmp_path)[0].stat().st_size == 0
    ledger.close()


@pytest.mark.parametrize("fail", [ConnectionError("socket closed"), asyncio.CancelledError()])
async def test_when_place_raises_the_proposal_decision_and_intent_are_still_chained(
    tmp_path: Path, fail: BaseException
) -> None:
    oms, broker, ledger = _oms(tmp_path)
    broker.fail = fail
    if isinstance(fail, Exception):
        intent = await oms.submit(_proposal(), Decision(allowed=True), AAPL)
        assert intent is not None
        assert intent.state is IntentState.UNKNOWN
    else:
        with pytest.raises(asyncio.CancelledError):
            await oms.submit(_proposal(), Decision(allowed=True), AAPL)
    kinds = [e.kind for e in ledger.entries()]
    assert kinds[:3] == [K.PROPOSAL, K.DECISION, K.INTENT]
    assert kinds[3:] == ([K.ORDER_STATUS] if isinstance(fail, Exception) else [])
    assert ledger.verify().ok
    ledger.close()
    assert _stage_files(tmp_path) == []


async def test_a_refusal_is_appended_at_once_without_a_stage_file(tmp_path: Path) -> None:
    oms, broker, ledger = _oms(tmp_path)
    assert await oms.submit(_proposal(), Decision(allowed=False), None) is None
    assert [e.kind for e in ledger.entries()] == [K.PROPOSAL, K.DECISION]
    assert broker.placed == []
    assert _stage_files(tmp_path) == []
    ledger.close()

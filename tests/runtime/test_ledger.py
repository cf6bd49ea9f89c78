"""The ledger on every backend: exact read-back, durability, tamper detection, concurrent
writers, and the ``ibpilot ledger`` commands.

PostgreSQL is a real server: ``export IBPILOT_TEST_PG_URL="$(scripts/pg-test-server.sh)"``.
Without it these tests skip locally and FAIL when ``CI`` is set. Each test gets a fresh
PostgreSQL schema; tampering goes around the ledger's triggers the way an attacker with the
right privileges would (dropping them in SQLite, ``session_replication_role`` as superuser in
PostgreSQL).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import multiprocessing
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from ibpilot.ledger import (
    DEFAULT_FILENAME,
    GENESIS_HASH,
    Entry,
    EntryKind,
    Ledger,
    LedgerConfigError,
    LedgerIntegrityError,
    LedgerUnavailable,
    MemoryLedger,
    SqlLedger,
    StoredRow,
    canonical_json,
    entry_hash,
    open_ledger,
    resolve_ledger_url,
    verify_chain,
)
from ibpilot.ledger_cli import (
    CSV_COLUMNS,
    EXIT_ERROR,
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_USAGE,
    export_csv,
    read_csv,
    run_ledger_command,
    show_entries,
)

T0 = datetime(2026, 3, 2, 14, 25, tzinfo=UTC)
ENTRIES = "ibpilot_ledger_entries"
META = "ibpilot_ledger_meta"
SPEC = "5f" * 32


def _pg_base_url() -> str:
    url = os.environ.get("IBPILOT_TEST_PG_URL")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(
            "IBPILOT_TEST_PG_URL is not set: CI must test the ledger against a real PostgreSQL. "
            'Run: export IBPILOT_TEST_PG_URL="$(scripts/pg-test-server.sh)"',
            pytrace=False,
        )
    pytest.skip('no PostgreSQL: export IBPILOT_TEST_PG_URL="$(scripts/pg-test-server.sh)"')


@dataclass
class Site:
    """Where one test's ledger lives. ``open()`` again reopens the same ledger."""

    backend: str
    url: str = ""
    memory: MemoryLedger | None = None
    opened: list[Ledger] = field(default_factory=list)

    def open(self, *, create: bool = True) -> Ledger:
        if self.memory is not None:
            return self.memory
        ledger = SqlLedger(self.url, create=create)
        self.opened.append(ledger)
        return ledger

    def tamper(self, *statements: str) -> None:
        """Run raw SQL around the ledger's API and its guards, as an attacker would."""
        engine = sa.create_engine(self.url)
        try:
            with engine.begin() as conn:
                if self.backend == "postgresql":
                    conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
                else:
                    triggers = conn.exec_driver_sql(
                        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                    ).scalars()
                    for name in list(triggers):
                        conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
                for statement in statements:
                    conn.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def close(self) -> None:
        for ledger in self.opened:
            ledger.close()


@contextmanager
def make_site(backend: str, directory: Path) -> Iterator[Site]:
    if backend == "memory":
        yield Site("memory", memory=MemoryLedger())
        return
    if backend == "sqlite":
        site = Site("sqlite", url=f"sqlite:///{directory / DEFAULT_FILENAME}")
        try:
            yield site
        finally:
            site.close()
        return
    base = sa.make_url(_pg_base_url())
    schema = f"ledger_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    site = Site("postgresql", url=url.render_as_string(hide_password=False))
    try:
        yield site
    finally:
        site.close()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    with make_site(request.param, tmp_path) as s:
        yield s


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    with make_site(request.param, tmp_path) as s:
        yield s


def _fill(ledger: Ledger, count: int) -> list[Entry]:
    return [
        ledger.append(
            EntryKind.FILL if i % 2 else EntryKind.INTENT,
            {"n": i, "qty": Decimal(i) / 4},
            ts=T0 + timedelta(seconds=i),
            spec_hash=SPEC,
        )
        for i in range(1, count + 1)
    ]


PAYLOAD = {
    "intent_id": "a1b2c3",
    "limit_price": Decimal("187.10"),
    "qty": Decimal("100"),
    "tiny": Decimal("1E-12"),
    "text": "Zürich ☃ 東京 \U0001f680 \u05e9\u05dc\u05d5\u05dd tab\tnul\x00",
    "nested": {"reasons": ["price collar", "max notional"], "ok": False, "none": None},
    "big": 2**70,
    "float": 0.1,
    "kind": EntryKind.FILL,
    "when": datetime(2026, 3, 2, 9, 30, tzinfo=timezone(timedelta(hours=-5))),
}
STORED = {
    "intent_id": "a1b2c3",
    "limit_price": "187.10",
    "qty": "100",
    "tiny": "1E-12",
    "text": PAYLOAD["text"],
    "nested": {"reasons": ["price collar", "max notional"], "ok": False, "none": None},
    "big": 2**70,
    "float": 0.1,
    "kind": "FILL",
    "when": "2026-03-02T14:30:00.000000+00:00",
}


# -- appending and reading --------------------------------------------------------------------


def test_entries_read_back_exactly_as_appended(site: Site) -> None:
    ledger = site.open()
    local = datetime(2026, 3, 2, 9, 25, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    first = ledger.append(EntryKind.CONFIG_LOADED, {"path": "adapter.json"}, ts=local)
    second = ledger.append(EntryKind.DECISION, PAYLOAD, ts=T0, spec_hash=SPEC)

    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert first.ts == T0 + timedelta(microseconds=123456)
    assert first.ts.tzinfo is UTC
    assert second.payload == STORED
    assert list(ledger.entries()) == [first, second]
    assert ledger.last() == second
    reopened = site.open()
    assert list(reopened.entries()) == [first, second]
    assert reopened.ledger_id == ledger.ledger_id


def test_staged_entries_read_back_exactly_after_flush(site: Site) -> None:
    ledger = site.open()
    ledger.append(EntryKind.START, {}, ts=T0)
    ledger.stage(
        [(EntryKind.PROPOSAL, PAYLOAD), (EntryKind.INTENT, {"n": 1})], ts=T0, spec_hash=SPEC
    )
    ledger.stage([(EntryKind.NOTE, {"n": 2})], ts=T0 + timedelta(seconds=1))
    ledger.flush()
    entries = list(site.open().entries())
    assert [(e.seq, e.kind) for e in entries] == [
        (1, EntryKind.START), (2, EntryKind.PROPOSAL), (3, EntryKind.INTENT), (4, EntryKind.NOTE)
    ]  # fmt: skip
    assert entries[1].payload == STORED
    assert [e.spec_hash for e in entries] == ["", SPEC, SPEC, ""]
    assert entries[3].ts == T0 + timedelta(seconds=1)
    assert ledger.verify().ok


def test_an_empty_ledger_has_no_entries_and_verifies(site: Site) -> None:
    ledger = site.open()
    assert ledger.last() is None
    assert list(ledger.entries()) == []
    report = ledger.verify()
    assert report.ok
    assert (report.checked, report.last.seq, report.last.hash) == (0, 0, GENESIS_HASH)


def test_append_many_chains_its_entries_in_one_go(site: Site) -> None:
    ledger = site.open()
    _fill(ledger, 2)
    batch = ledger.append_many(
        [(EntryKind.PROPOSAL, {"n": 1}), (EntryKind.DECISION, {"allowed": True}),
         (EntryKind.INTENT, {"intent_id": "x"})],
        ts=T0, spec_hash=SPEC,
    )  # fmt: skip
    assert [e.seq for e in batch] == [3, 4, 5]
    assert [e.prev_hash for e in batch[1:]] == [e.hash for e in batch[:-1]]
    assert list(ledger.entries(after_seq=2)) == batch
    assert ledger.append_many([], ts=T0) == []
    assert ledger.verify().ok


def test_a_bad_payload_appends_nothing(site: Site) -> None:
    ledger = site.open()
    _fill(ledger, 1)
    with pytest.raises(TypeError, match="cannot store a object"):
        ledger.append_many([(EntryKind.NOTE, {"a": 1}), (EntryKind.NOTE, {"b": object()})], ts=T0)
    with pytest.raises(ValueError, match="not JSON compliant"):
        ledger.append(EntryKind.NOTE, {"x": float("nan")}, ts=T0)
    with pytest.raises(TypeError, match="keys must be strings"):
        ledger.append(EntryKind.NOTE, {"x": {1: 2}}, ts=T0)
    with pytest.raises(ValueError, match="UTC offset"):
        ledger.append(EntryKind.NOTE, {}, ts=datetime(2026, 3, 2, 9, 30))  # noqa: DTZ001
    assert [e.seq for e in ledger.entries()] == [1]
    assert ledger.verify().ok


def test_entries_filter_by_time_kind_and_seq_across_pages(site: Site) -> None:
    ledger = site.open()
    kinds = [EntryKind.PROPOSAL, EntryKind.DECISION, EntryKind.ORDER_SENT, EntryKind.FILL]
    for i in range(5):  # 2,500 entries: more than one page of the SQL backend
        ledger.append_many(
            [(kinds[j % 4], {"i": i * 500 + j}) for j in range(500)],
            ts=T0 + timedelta(hours=i),
        )
    assert [e.seq for e in ledger.entries()] == list(range(1, 2501))
    recent = list(ledger.entries(since=T0 + timedelta(hours=3)))
    assert [e.seq for e in recent] == list(range(1501, 2501))
    fills = list(ledger.entries(kind={EntryKind.FILL}))
    assert len(fills) == 625
    assert all(e.kind is EntryKind.FILL for e in fills)
    assert list(ledger.entries(kind=EntryKind.FILL)) == fills
    both = list(ledger.entries(since=T0 + timedelta(hours=4), kind={EntryKind.FILL}))
    assert [e.seq for e in both] == list(range(2004, 2501, 4))
    assert [e.seq for e in ledger.entries(after_seq=2498)] == [2499, 2500]
    local_since = (T0 + timedelta(hours=4)).astimezone(timezone(timedelta(hours=-5)))
    assert len(list(ledger.entries(since=local_since))) == 500


def test_a_ledger_survives_close_and_reopen(sql_site: Site) -> None:
    ledger = sql_site.open()
    written = _fill(ledger, 3)
    ledger.close()
    again = sql_site.open(create=False)
    assert list(again.entries()) == written
    later = again.append(EntryKind.STOP, {}, ts=T0 + timedelta(days=1))
    assert (later.seq, later.prev_hash) == (4, written[-1].hash)
    assert again.verify().ok


# -- verification -----------------------------------------------------------------------------


def test_verify_passes_a_clean_chain(site: Site) -> None:
    ledger = site.open()
    entries = _fill(ledger, 10)
    report = ledger.verify()
    assert report.ok
    assert report.checked == 10
    assert report.last == entries[-1].head


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("payload", '{"n":3,"qty":"1000"}'),
        ("kind", "HALT"),
        ("ts", "2026-03-02T14:25:04.000000+00:00"),
        ("spec_hash", "0" * 64),
    ],
)
def test_verify_detects_an_edited_field(sql_site: Site, column: str, value: str) -> None:
    ledger = sql_site.open()
    _fill(ledger, 6)
    sql_site.tamper(f"UPDATE {ENTRIES} SET {column} = '{value}' WHERE seq = 3")
    report = ledger.verify()
    assert not report.ok
    assert [p.seq for p in report.problems] == [3]
    assert "edited" in report.problems[0].what


def test_verify_detects_a_deleted_entry(sql_site: Site) -> None:
    ledger = sql_site.open()
    _fill(ledger, 6)
    sql_site.tamper(f"DELETE FROM {ENTRIES} WHERE seq = 3")
    report = ledger.verify()
    assert not report.ok
    assert report.checked == 5
    assert "entry 3 was removed" in report.problems[0].what
    assert {p.seq for p in report.problems} == {3, 4}


def test_verify_detects_two_swapped_entries(sql_site: Site) -> None:
    ledger = sql_site.open()
    _fill(ledger, 6)
    sql_site.tamper(
        f"UPDATE {ENTRIES} SET seq = -3 WHERE seq = 3",
        f"UPDATE {ENTRIES} SET seq = 3 WHERE seq = 4",
        f"UPDATE {ENTRIES} SET seq = 4 WHERE seq = -3",
    )
    report = ledger.verify()
    assert not report.ok
    assert {p.seq for p in report.problems} == {3, 4, 5}


def test_verify_detects_an_edited_hash(sql_site: Site) -> None:
    ledger = sql_site.open()
    _fill(ledger, 6)
    sql_site.tamper(f"UPDATE {ENTRIES} SET hash = '{'a' * 64}' WHERE seq = 3")
    report = ledger.verify()
    assert [p.seq for p in report.problems] == [3, 4]


def test_verify_detects_a_removed_tail_through_the_head_record(sql_site: Site) -> None:
    ledger = sql_site.open()
    entries = _fill(ledger, 6)
    sql_site.tamper(f"DELETE FROM {ENTRIES} WHERE seq >= 5")
    report = ledger.verify()
    assert not report.ok
    assert report.checked == 4
    assert "removed from the end" in report.problems[0].what
    with pytest.raises(LedgerIntegrityError, match="refusing to append"):
        ledger.append(EntryKind.NOTE, {}, ts=T0)
    assert run_ledger_command(["verify", "--ledger", sql_site.url], stdout=io.StringIO()) == 3
    assert entries[3].hash == report.last.hash


def test_a_removed_tail_with_a_rewritten_head_record_is_not_detected(sql_site: Site) -> None:
    """The documented limit: whoever rewrites the head record too can cut the tail unseen."""
    ledger = sql_site.open()
    entries = _fill(ledger, 6)
    sql_site.tamper(
        f"DELETE FROM {ENTRIES} WHERE seq >= 5",
        f"UPDATE {META} SET value = '4:{entries[3].hash}' WHERE key = 'head'",
    )
    assert ledger.verify().ok  # only an external copy of the head hash would tell


def test_verify_reports_a_missing_head_record(sql_site: Site) -> None:
    ledger = sql_site.open()
    _fill(ledger, 2)
    sql_site.tamper(f"DELETE FROM {META} WHERE key = 'head'")
    report = ledger.verify()
    assert [(p.seq, p.what) for p in report.problems] == [
        (0, "the head record is missing or malformed")
    ]
    with pytest.raises(LedgerIntegrityError, match=r"refusing to append.*\(none\)"):
        ledger.append(EntryKind.NOTE, {}, ts=T0)


def test_appending_refuses_a_ledger_whose_entries_were_all_removed(sql_site: Site) -> None:
    ledger = sql_site.open()
    _fill(ledger, 2)
    sql_site.tamper(f"DELETE FROM {ENTRIES}")
    with pytest.raises(LedgerIntegrityError, match=r"last entry \(seq 0\).*names \(2\)"):
        ledger.append(EntryKind.NOTE, {}, ts=T0)


def test_the_database_refuses_updates_and_deletes(sql_site: Site) -> None:
    ledger = sql_site.open()
    _fill(ledger, 3)
    assert isinstance(ledger, SqlLedger)
    for statement in (
        f"UPDATE {ENTRIES} SET payload = '{{}}' WHERE seq = 2",
        f"DELETE FROM {ENTRIES} WHERE seq = 3",
        f"DELETE FROM {META} WHERE key = 'head'",
        f"UPDATE {META} SET value = 'x' WHERE key = 'ledger_id'",
    ):
        refused = pytest.raises(sa.exc.DBAPIError, match=r"append-only|cannot change")
        with refused, ledger.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert ledger.verify().ok
    assert ledger.verify().checked == 3


# -- concurrency ------------------------------------------------------------------------------


def _append_worker(url: str, name: str, count: int, ready: threading.Barrier) -> None:
    ledger = SqlLedger(url)
    ready.wait(60)  # both processes connected: now race
    for i in range(count):
        ledger.append(EntryKind.NOTE, {"writer": name, "i": i}, ts=T0 + timedelta(seconds=i))
        # A bot does other work between appends. (In a tight loop SQLite's unfair write lock
        # lets one process starve the other, which is slow but never forks the chain.)
        time.sleep(0.001)
    ledger.close()


def test_two_processes_appending_make_one_unbroken_chain(sql_site: Site) -> None:
    sql_site.open().close()  # created up front: the race under test is appending
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(2)
    count = 200
    workers = [
        ctx.Process(target=_append_worker, args=(sql_site.url, name, count, ready))
        for name in ("a", "b")
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    ledger = sql_site.open()
    entries = list(ledger.entries())
    assert [e.seq for e in entries] == list(range(1, 2 * count + 1))
    for name in ("a", "b"):
        mine = [e.payload["i"] for e in entries if e.payload["writer"] == name]
        assert mine == list(range(count))
    writers = [e.payload["writer"] for e in entries]
    switches = sum(a != b for a, b in itertools.pairwise(writers))
    assert switches >= 2, "the two writers did not overlap: the test raced nothing"
    assert ledger.verify().ok


# -- properties -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False)
)
payloads = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        json_scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    ),
    max_size=5,
)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
timestamps = st.datetimes(  # hypothesis takes naive bounds and adds the zones itself
    min_value=datetime(2000, 1, 2),  # noqa: DTZ001
    max_value=datetime(2099, 12, 30),  # noqa: DTZ001
    timezones=offsets,
)
appends = st.lists(
    st.tuples(st.sampled_from(EntryKind), payloads, timestamps, st.text("0123456789abcdef")),
    max_size=8,
)


Draft = tuple[EntryKind, dict[str, object], datetime, str]


def _append_all(ledger: Ledger, drafts: list[Draft]) -> list[Entry]:
    return [ledger.append(k, p, ts=ts, spec_hash=sh) for k, p, ts, sh in drafts]


def _appends_read_back_and_verify(backend: str, drafts: list[Draft]) -> None:
    with tempfile.TemporaryDirectory() as tmp, make_site(backend, Path(tmp)) as s:
        ledger = s.open()
        written = _append_all(ledger, drafts)
        assert list(s.open().entries()) == written
        for entry, (_, payload, ts, _) in zip(written, drafts, strict=True):
            assert canonical_json(entry.payload) == canonical_json(payload)
            assert entry.ts == ts
        report = ledger.verify()
        assert report.ok, report.problems
        assert report.checked == len(drafts)


@settings(max_examples=200, deadline=None)
@given(drafts=appends)
def test_any_sequence_of_appends_reads_back_and_verifies_in_memory(drafts: list[Draft]) -> None:
    _appends_read_back_and_verify("memory", drafts)


@settings(max_examples=25, deadline=None)
@given(drafts=appends)
def test_any_sequence_of_appends_reads_back_and_verifies_in_sqlite(drafts: list[Draft]) -> None:
    _appends_read_back_and_verify("sqlite", drafts)


@settings(max_examples=10, deadline=None)
@given(drafts=appends)
def test_any_sequence_of_appends_reads_back_and_verifies_in_postgresql(
    drafts: list[Draft],
) -> None:
    _appends_read_back_and_verify("postgresql", drafts)


def _mutations(row: StoredRow) -> st.SearchStrategy[StoredRow]:
    texts = st.text(max_size=70)
    plausible_ts = timestamps.map(lambda t: t.astimezone(UTC).isoformat(timespec="microseconds"))
    plausible_payload = payloads.map(canonical_json)
    hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
    changes = {
        "seq": st.integers(min_value=-3, max_value=12),
        "ts": texts | plausible_ts | st.just(row.ts.replace("+00:00", "Z")),
        "kind": texts | st.sampled_from([k.value for k in EntryKind]),
        "spec_hash": texts,
        "payload": texts | plausible_payload | st.just(" " + row.payload),
        "prev_hash": hexes | texts,
        "hash": hexes | texts,
    }
    return st.sampled_from(sorted(changes)).flatmap(
        lambda name: (
            changes[name]
            .filter(lambda v: v != getattr(row, name))
            .map(lambda v: replace(row, **{name: v}))
        )
    )


@settings(max_examples=300, deadline=None)
@given(data=st.data(), drafts=appends.filter(bool))
def test_any_single_field_mutation_of_any_entry_is_detected(
    data: st.DataObject, drafts: list[Draft]
) -> None:
    ledger = MemoryLedger()
    rows = [e.to_row() for e in _append_all(ledger, drafts)]
    head = ledger.verify().last
    index = data.draw(st.integers(min_value=0, max_value=len(rows) - 1))
    rows[index] = data.draw(_mutations(rows[index]))
    stored_order = sorted(rows, key=lambda r: r.seq)  # what ORDER BY seq would return
    assert not verify_chain(stored_order, head).ok
    assert not verify_chain(stored_order).ok  # even without the head record


def _reference_json(value: object) -> str:
    """The canonical JSON the module docstring documents, written out with json.dumps."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


@settings(max_examples=200, deadline=None)
@given(drafts=appends.filter(bool))
def test_stored_payloads_and_hashes_are_the_documented_json_and_sha256(
    drafts: list[Draft],
) -> None:
    for row in (e.to_row() for e in _append_all(MemoryLedger(), drafts)):
        assert row.payload == _reference_json(json.loads(row.payload))
        fields = [row.seq, row.ts, row.kind, row.spec_hash, row.payload, row.prev_hash]
        material = _reference_json(["ibpilot-ledger/1", *fields]).encode("ascii")
        assert row.hash == hashlib.sha256(material).hexdigest()


@settings(max_examples=200, deadline=None)
@given(seq=st.integers(), texts=st.lists(st.text(), min_size=5, max_size=5))
def test_any_stored_strings_hash_as_the_documented_json(seq: int, texts: list[str]) -> None:
    material = _reference_json(["ibpilot-ledger/1", seq, *texts]).encode("ascii")
    assert entry_hash(seq, *texts) == hashlib.sha256(material).hexdigest()


def test_the_chain_is_the_one_earlier_versions_wrote() -> None:
    """Hashes written by ibpilot before the canonical JSON was sped up (commit 68a3daf)."""
    ledger = MemoryLedger()
    first = ledger.append(EntryKind.NOTE, PAYLOAD, ts=T0, spec_hash=SPEC)
    batch = ledger.append_many(
        [
            (EntryKind.PROPOSAL, {"n": 1, "q": Decimal("0.5")}),
            (EntryKind.DECISION, {"allowed": True, "reasons": []}),
            (EntryKind.INTENT, {}),
        ],
        ts=T0 + timedelta(microseconds=1),
    )
    assert [e.hash for e in [first, *batch]] == [
        "ce7caf20c786442bc096cc85f5169a70121d7b948a576100dfd00c2383ec6569",
        "9d3329fe0ebcad61324a05a06e715c5ab90b0914f536a941c20a19ee972cd2a8",
        "c2d74d2951d84556d31ebc511d7be00fa74a02c2e72c2f02fa73a3a1935989c6",
        "499295b5d020ab96cfe5be641338b89fd9a7f8cdb76786a9688bb17d9bdffbc9",
    ]


def test_the_hash_covers_the_documented_fields() -> None:
    ledger = MemoryLedger()
    entry = ledger.append(EntryKind.NOTE, {"b": Decimal("1.0"), "a": "é"}, ts=T0, spec_hash=SPEC)
    payload = '{"a":"\\u00e9","b":"1.0"}'
    assert entry.to_row().payload == payload
    assert entry.hash == entry_hash(
        1, "2026-03-02T14:25:00.000000+00:00", "NOTE", SPEC, payload, GENESIS_HASH
    )


# -- the commands -----------------------------------------------------------------------------


def _cli(*argv: str, directory: Path | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_ledger_command(list(argv), directory=directory, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _day(ledger: Ledger) -> None:
    steps: list[tuple[EntryKind, dict[str, object]]] = [
        (EntryKind.START, {"version": "0.1.0"}),
        (EntryKind.PROPOSAL, {"symbol": "AAPL", "action": "BUY", "quantity": Decimal(10)}),
        (EntryKind.DECISION, {"allowed": False, "reasons": ["outside trading hours"]}),
        (EntryKind.PROPOSAL, {"symbol": "AAPL", "action": "BUY", "quantity": Decimal(10)}),
        (EntryKind.DECISION, {"allowed": True, "reasons": []}),
        (EntryKind.ORDER_SENT, {"intent_id": "i-2", "order_id": 7, "limit_price": "187.10"}),
        (EntryKind.FILL, {"intent_id": "i-2", "exec_id": "0001f4e8.01", "price": "187.05"}),
    ]
    for i, (kind, payload) in enumerate(steps):
        ledger.append(kind, payload, ts=T0 + timedelta(minutes=i), spec_hash=SPEC)


def test_show_prints_one_line_per_entry_filtered_by_time_and_kind(sql_site: Site) -> None:
    _day(sql_site.open())
    code, out, err = _cli("show", "--ledger", sql_site.url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 7
    assert lines[5].split()[:3] == ["6", "2026-03-02T14:30:00.000000Z", "ORDER_SENT"]
    assert "intent_id=i-2 order_id=7 limit_price=187.10" in lines[5]
    assert 'reasons=["outside trading hours"]' in lines[2]

    code, out, _ = _cli("show", "--ledger", sql_site.url, "--kind", "decision", "--kind", "FILL")
    assert [line.split()[0] for line in out.splitlines()] == ["3", "5", "7"]
    code, out, _ = _cli("show", "--ledger", sql_site.url, "--since", "2026-03-02T09:29:00-05:00")
    assert [line.split()[0] for line in out.splitlines()] == ["5", "6", "7"]
    code, out, _ = _cli("show", "--ledger", sql_site.url, "--since", "2026-03-03")
    assert (code, out) == (0, "")


def test_show_entries_on_memory() -> None:
    ledger = MemoryLedger()
    _day(ledger)
    lines = list(show_entries(ledger, T0 + timedelta(minutes=2), [EntryKind.DECISION]))
    assert len(lines) == 2
    assert "allowed=false" in lines[0]


def test_show_never_prints_control_characters_raw() -> None:
    ledger = MemoryLedger()
    ledger.append(EntryKind.NOTE, {"message": "\x1b[2Jgone", "nested": ["\x9b1m"]}, ts=T0)
    (line,) = show_entries(ledger)
    assert line.isprintable()
    assert 'message="\\u001b[2Jgone"' in line


def test_export_csv_round_trips_and_verifies_on_its_own(sql_site: Site, tmp_path: Path) -> None:
    ledger = sql_site.open()
    _day(ledger)
    ledger.append(EntryKind.NOTE, {"text": 'comma, "quote"\nnew line ☃'}, ts=T0)
    target = tmp_path / "ledger.csv"
    assert _cli("export", "--csv", "--output", str(target), "--ledger", sql_site.url)[0] == 0
    with target.open(newline="", encoding="utf-8") as f:
        rows = list(read_csv(f))
    assert rows == [e.to_row() for e in ledger.entries()]
    report = verify_chain(rows)
    assert (report.ok, report.checked, report.last) == (True, 8, ledger.verify().last)
    rows[3] = replace(rows[3], payload=rows[3].payload.replace("10", "1000"))
    assert [p.seq for p in verify_chain(rows).problems] == [4]

    code, out, _ = _cli("export", "--csv", "--ledger", sql_site.url)
    assert code == 0
    assert out.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert list(read_csv(io.StringIO(out))) == [e.to_row() for e in ledger.entries()]


def test_export_csv_of_an_empty_ledger_is_a_header() -> None:
    out = io.StringIO()
    assert export_csv(MemoryLedger(), out) == 0
    assert out.getvalue() == ",".join(CSV_COLUMNS) + "\r\n"


def test_verify_command_exit_codes(sql_site: Site) -> None:
    _day(sql_site.open())
    code, out, _ = _cli("verify", "--ledger", sql_site.url)
    assert code == EXIT_OK
    assert "OK: 7 entries" in out
    sql_site.tamper(f"UPDATE {ENTRIES} SET payload = '{{\"allowed\":true}}' WHERE seq = 3")
    code, out, _ = _cli("verify", "--ledger", sql_site.url)
    assert code == EXIT_INTEGRITY
    assert "INTEGRITY VIOLATION: 1 problems in 7 entries" in out
    assert "seq 3: hash does not match" in out


def test_commands_use_the_default_file_in_the_directory(tmp_path: Path) -> None:
    with open_ledger(None, tmp_path) as ledger:
        _day(ledger)
    assert (tmp_path / DEFAULT_FILENAME).exists()
    assert _cli("verify", directory=tmp_path)[0] == EXIT_OK
    assert _cli("show", "--ledger", DEFAULT_FILENAME, directory=tmp_path)[1].count("\n") == 7


@pytest.mark.parametrize(
    "argv",
    [
        ["show", "--kind", "NOPE"],
        ["show", "--since", "2026-03-02T09:30:00"],
        ["export"],
        ["frobnicate"],
        [],
        ["verify", "--ledger", "mysql://u@h/db"],
        ["verify", "--ledger", "missing.sqlite"],
    ],
)
def test_usage_and_configuration_errors_exit_2(tmp_path: Path, argv: list[str]) -> None:
    code, _, err = _cli(*argv, directory=tmp_path)
    assert code == EXIT_USAGE
    assert "Traceback" not in err
    assert err.strip()
    assert not (tmp_path / "missing.sqlite").exists()


def test_an_unreachable_database_exits_1_with_one_line() -> None:
    code, _, err = _cli("verify", "--ledger", "postgresql://bot:s3cret@127.0.0.1:1/ledger")
    assert code == EXIT_ERROR
    assert err.count("\n") == 1
    assert "s3cret" not in err
    assert "127.0.0.1" in err


# -- opening ----------------------------------------------------------------------------------


def test_ledger_settings_resolve_to_urls(tmp_path: Path) -> None:
    assert resolve_ledger_url(None, tmp_path) == f"sqlite:///{tmp_path / DEFAULT_FILENAME}"
    assert resolve_ledger_url("x.db", tmp_path) == f"sqlite:///{tmp_path / 'x.db'}"
    assert (
        resolve_ledger_url(str(tmp_path), Path("/")) == f"sqlite:///{tmp_path / DEFAULT_FILENAME}"
    )
    assert resolve_ledger_url("sqlite:////a/b.sqlite", tmp_path) == "sqlite:////a/b.sqlite"
    for scheme in ("postgresql", "postgres", "postgresql+psycopg", "POSTGRESQL"):
        assert resolve_ledger_url(f"{scheme}://u@h:5/db", tmp_path) == (
            "postgresql+psycopg://u@h:5/db"
        )
    for bad in ("sqlite://", "sqlite:///:memory:", "mysql://u@h/db", "postgresql+psycopg2://h/d"):
        with pytest.raises(LedgerConfigError):
            open_ledger(bad, tmp_path)


def test_a_file_that_is_not_a_ledger_is_refused_and_left_alone(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    with pytest.raises(LedgerConfigError, match="is not an ibpilot ledger"):
        open_ledger(str(text), tmp_path)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE prices (symbol TEXT, price REAL)")
    conn.close()
    with pytest.raises(LedgerConfigError, match="is not an ibpilot ledger"):
        open_ledger(str(other), tmp_path)
    with sqlite3.connect(other) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()
    assert text.read_text() == "not a database\n" * 100


def test_a_ledger_from_a_newer_ibpilot_is_refused(sql_site: Site) -> None:
    sql_site.open().close()
    sql_site.tamper(f"UPDATE {META} SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LedgerConfigError, match="schema 99, newer"):
        sql_site.open()


def test_opening_without_create_needs_an_existing_ledger(sql_site: Site) -> None:
    with pytest.raises(LedgerConfigError, match="no ledger at"):
        sql_site.open(create=False)
    sql_site.open().close()
    assert sql_site.open(create=False).verify().ok


def test_an_unreachable_postgresql_is_one_line() -> None:
    with pytest.raises(LedgerUnavailable) as caught:
        open_ledger("postgresql://bot:s3cret@127.0.0.1:1/trading", Path())
    message = str(caught.value)
    assert "\n" not in message
    assert "s3cret" not in message
    assert "postgresql+psycopg://bot:***@127.0.0.1:1/trading" in message


def _synchronous(ledger: Ledger) -> tuple[str, int]:
    assert isinstance(ledger, SqlLedger)
    with ledger.engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        level = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    ledger.close()
    return str(mode), int(level or 0)


def test_sqlite_ledgers_are_wal_with_normal_sync_unless_the_url_asks_for_full(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert _synchronous(open_ledger(None, tmp_path)) == ("wal", 1)  # NORMAL
    assert _synchronous(open_ledger(f"{url}?sync=normal", tmp_path)) == ("wal", 1)
    full = open_ledger(f"{url}?sync=FULL", tmp_path)
    assert isinstance(full, SqlLedger)
    assert (full.sqlite_sync, full.location) == ("full", f"{url}?sync=FULL")
    full.append(EntryKind.NOTE, {}, ts=T0)
    assert _synchronous(full) == ("wal", 2)  # FULL, on the appending connection too
    assert open_ledger(url, tmp_path, create=False).verify().checked == 1


def test_a_sync_setting_sqlite_does_not_have_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    for bad in ("off", "extra"):
        with pytest.raises(LedgerConfigError, match=r"sync=.* is not one of normal, full"):
            open_ledger(f"{url}?sync={bad}", tmp_path)
    with pytest.raises(LedgerConfigError, match="more than once"):
        open_ledger(f"{url}?sync=full&sync=normal", tmp_path)
    with pytest.raises(LedgerConfigError, match="setting of SQLite ledgers"):
        open_ledger("postgresql://bot@127.0.0.1:1/trading?sync=normal", tmp_path)
    assert not (tmp_path / "x.sqlite").exists()


_WRITER = """
import sys
from datetime import UTC, datetime
from ibpilot.ledger import EntryKind, SqlLedger

ledger = SqlLedger(sys.argv[1])
count = int(sys.argv[2])
for i in range(count or 100_000):
    entry = ledger.append(EntryKind.NOTE, {"i": i, "pid": 0}, ts=datetime.now(UTC))
    print(entry.seq, entry.hash, flush=True)  # after the append returned
print("waiting", flush=True)
sys.stdin.read()  # until killed: nothing runs after the last append
"""


def _killed_writer(url: str, count: int, lines: int) -> list[tuple[int, str]]:
    """A process appending ``count`` entries (0: up to 100,000), killed with SIGKILL once it
    has reported ``lines`` appends; the (seq, hash) of every append it reported returned."""
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, url, str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
    )  # fmt: skip
    assert writer.stdout is not None
    reported: list[tuple[int, str]] = []
    deadline, received = time.monotonic() + 60, b""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(writer.stdout, selectors.EVENT_READ)
            while len(reported) < lines and time.monotonic() < deadline:
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                chunk = os.read(writer.stdout.fileno(), 65536)
                *complete, received = (received + chunk).split(b"\n")
                for line in complete[: lines - len(reported)]:
                    seq, digest = line.decode().split()
                    reported.append((int(seq), digest))
                if not chunk or b"waiting" in received:
                    break
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        writer.stdout.close()
        assert writer.stdin is not None
        writer.stdin.close()
    assert writer.returncode == -signal.SIGKILL
    assert len(reported) == lines, "the writer did not report its appends in time"
    return reported


def test_with_normal_sync_every_append_that_returned_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    url = f"sqlite:///{path}?sync=normal"
    SqlLedger(url).close()  # created up front: what is under test is appending
    # killed while idle right after its last append, then while appending in a loop
    reported = _killed_writer(url, 40, 40)
    assert Path(f"{path}-wal").stat().st_size > 0  # the commits are in the WAL, not merged
    reported += _killed_writer(url, 0, 300)
    ledger = SqlLedger(url, create=False)
    stored = {e.seq: e.hash for e in ledger.entries()}
    assert {seq: stored.get(seq) for seq, _ in reported} == dict(reported)
    assert [seq for seq, _ in reported] == list(range(1, 341))
    report = ledger.verify()
    assert report.ok, report.problems
    assert report.checked >= 340
    ledger.append(EntryKind.NOTE, {"after": "restart"}, ts=T0)  # the chain goes on
    assert ledger.verify().ok
    ledger.close()


def test_postgresql_commits_are_synchronous_even_if_the_server_says_otherwise() -> None:
    url = sa.make_url(_pg_base_url()).update_query_dict({"options": "-csynchronous_commit=off"})
    with make_site("postgresql", Path()) as s:
        schema_url = sa.make_url(s.url)
        options = f"{schema_url.query['options']} {url.query['options']}"
        ledger = SqlLedger(schema_url.update_query_dict({"options": options}))
        with ledger.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        ledger.close()

"""Cost of a durable ledger append: the runtime pays it before every order ("ledger before wire").

Run: ``.venv/bin/python bench/ledger_append.py [--count N] [--dir DIR] [--pg URL]``.
SQLite is measured in ``DIR`` (default ``var/bench``: a real disk, not tmpfs, or fsync is
free and the numbers lie), in WAL mode with ``?sync=normal`` (the default: no fsync per
commit) and ``?sync=full`` (an fsync per commit). PostgreSQL is measured if ``--pg``
or ``IBPILOT_TEST_PG_URL`` names one (``scripts/pg-test-server.sh`` starts one), in a
throwaway schema. Each append is one transaction: lock the head, check it, insert, move the
head, commit (with ``sync=full``, fsync). Also measured: ``append_many`` of 3 entries
(proposal, decision, intent in one transaction) and the in-memory backend for reference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from ibpilot.ledger import EntryKind, Ledger, MemoryLedger, SqlLedger

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
SPEC = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def intent(i: int) -> dict[str, object]:
    return {
        "intent_id": f"01J{i:023d}",
        "symbol": "AAPL",
        "con_id": 265598,
        "action": "BUY",
        "quantity": Decimal(100),
        "order_type": "LMT",
        "limit_price": Decimal("187.10"),
        "tif": "DAY",
        "account": "DU0000001",
        "reasons": [],
    }


def measure(label: str, count: int, step: Callable[[int], object], per_call: int = 1) -> None:
    step(-1)  # warm: connection, statement cache
    latencies = []
    start = time.perf_counter()
    for i in range(count):
        t = time.perf_counter_ns()
        step(i)
        latencies.append((time.perf_counter_ns() - t) / 1e3)
    elapsed = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{label:<34} {count * per_call / elapsed:9.0f} entries/s   "
        f"p50 {cuts[49]:8.0f} us   p99 {cuts[98]:8.0f} us   max {max(latencies):8.0f} us"
    )


def run(label: str, ledger: Ledger, count: int) -> None:
    def one(i: int) -> object:
        ts = T0 + timedelta(seconds=i)
        return ledger.append(EntryKind.INTENT, intent(i), ts=ts, spec_hash=SPEC)

    def three(i: int) -> object:
        decision = {"allowed": True, "reasons": []}
        batch = [(EntryKind.PROPOSAL, intent(i)), (EntryKind.DECISION, decision)]
        batch.append((EntryKind.INTENT, intent(i)))
        return ledger.append_many(batch, ts=T0 + timedelta(seconds=i), spec_hash=SPEC)

    measure(f"{label} append", count, one)
    measure(f"{label} append_many(3)", count // 2, three, per_call=3)
    started = time.perf_counter()
    report = ledger.verify()
    assert report.ok, report.problems
    took = time.perf_counter() - started
    print(f"{label + ' verify':<34} {report.checked / took:9.0f} entries/s   ({report.checked})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--pg", default=os.environ.get("IBPILOT_TEST_PG_URL"))
    args = parser.parse_args()

    run("memory", MemoryLedger(), args.count)

    directory = args.dir / f"ledger-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    try:
        for sync in ("normal", "full"):
            path = directory.absolute() / f"bench-{sync}.sqlite"
            with SqlLedger(f"sqlite:///{path}?sync={sync}") as ledger:
                run(f"sqlite sync={sync}", ledger, args.count)
    finally:
        shutil.rmtree(directory)

    if not args.pg:
        print("postgresql: skipped (no --pg and no IBPILOT_TEST_PG_URL)")
        return
    base = sa.make_url(args.pg)
    schema = f"ledger_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        with SqlLedger(url) as ledger:
            run("postgresql", ledger, args.count)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


if __name__ == "__main__":
    main()

"""The SQL backend of the ledger: SQLAlchemy Core over SQLite (WAL) or PostgreSQL (psycopg 3).

Appending, in one transaction: lock the head record (PostgreSQL ``SELECT ... FOR UPDATE``;
SQLite ``BEGIN IMMEDIATE``, which takes the database's write lock), check that the last entry
is the one the head record names, insert the new entries, move the head record, commit.  On
SQLite these statements go straight to the driver on a connection kept for appending (the
same SQL SQLAlchemy would send, without its per-statement work, which costs more than the
commit itself when the commit is not fsynced); reads and schema work go through SQLAlchemy. Two
processes appending to one ledger therefore queue behind each other and never fork the chain;
the primary key on ``seq`` is the backstop. SQLite runs in WAL mode and waits up to 30 s for
the write lock; that lock is not fair, so a process appending in a tight loop can hold off
another one for a while (a bot appends between network round trips, so in practice writers
interleave; use PostgreSQL for several busy writers).

Staged entries (:meth:`SqlLedger.stage`, what the OMS records before the wire): on SQLite they
are written, one ``os.write`` per batch, to a stage file next to the database
(``<database>.staged-<8 hex>``, one per open ledger, locked while it is open; see
:mod:`ibpilot._ledger_stage`) and chained in the transaction of the next append, flush or
close, before what that appends. A clean close removes the file; the next ledger opened on
the database after a crash appends, in order, the entries the file holds that the chain does
not, then removes it. On PostgreSQL stage is append_many.

The schema, the SQLite durability setting (the URL's ``sync``) and the triggers that refuse
changes to entries: see :mod:`ibpilot._ledger_schema`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import cast

import psycopg
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import PoolProxiedConnection

from ibpilot._ledger_schema import (
    _PG_SCHEMA_LOCK,
    _ROW_COLUMNS,
    DEFAULT_SQLITE_SYNC,
    ENTRIES_TABLE,
    META_TABLE,
    MIGRATIONS,
    SCHEMA_VERSION,
    SYNC_PARAMETER,
    SqliteSync,
    _checked_head,
    _entries,
    _head_text,
    _make_engine,
    _meta,
    _parse_head,
    _parse_url,
    _row_tuple,
    _row_values,
    _sqlite_sync,
    _stored,
)
from ibpilot._ledger_stage import Orphan, StageFile, claim_orphan, orphan_candidates
from ibpilot.ledger import (
    ChainHead,
    Entry,
    EntryKind,
    LedgerBase,
    LedgerConfigError,
    LedgerError,
    LedgerIntegrityError,
    LedgerUnavailable,
    Problem,
    StagedBatch,
    VerifyReport,
    canonical_json,
    format_ts,
    kind_filter,
    seal_rows,
    stage_batch,
    verify_chain,
)

__all__ = [
    "DEFAULT_SQLITE_SYNC",
    "ENTRIES_TABLE",
    "META_TABLE",
    "SCHEMA_VERSION",
    "SYNC_PARAMETER",
    "SqlLedger",
    "SqliteSync",
]

PAGE_SIZE = 1000

log = logging.getLogger("ibpilot.ledger")

# What one SQLite write transaction chains: entries, their ts and spec hash.
_Batch = tuple[Sequence[tuple[EntryKind, Mapping[str, object]]], datetime, str]


# The SQLite append, straight to the driver (see the module docstring).
_SQLITE_LAST = f"SELECT seq, hash FROM {ENTRIES_TABLE} ORDER BY seq DESC LIMIT 1"
_SQLITE_HEAD = (  # the head record, and the last entry (NULLs when there is none)
    f"SELECT (SELECT value FROM {META_TABLE} WHERE key = 'head'), last.seq, last.hash "
    f"FROM (SELECT 1) LEFT JOIN ({_SQLITE_LAST}) AS last"
)
_SQLITE_INSERT = (
    f"INSERT INTO {ENTRIES_TABLE} (seq, ts, kind, spec_hash, payload, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_MOVE_HEAD = f"UPDATE {META_TABLE} SET value = ? WHERE key = 'head'"
_SQLITE_COUNT_SAME = (  # through the ts index
    f"SELECT count(*) FROM {ENTRIES_TABLE} "
    "WHERE ts = ? AND kind = ? AND spec_hash = ? AND payload = ?"
)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- the backend ------------------------------------------------------------------------------


class SqlLedger(LedgerBase):
    """The ledger in SQLite (a file) or PostgreSQL, through SQLAlchemy Core.

    ``SqlLedger("sqlite:////abs/path/ibpilot-ledger.sqlite")`` (``?sync=full`` for an fsync
    at every commit; the default is ``normal``: see :mod:`ibpilot._ledger_schema`) or
    ``SqlLedger("postgresql+psycopg://bot@db.example:5432/trading")``. With ``create`` (the
    default) an empty database or missing SQLite file becomes a new ledger and an older schema
    is migrated; without it, only an existing, current ledger opens. Raises LedgerConfigError
    (bad URL, no ledger, not an ibpilot ledger, a newer schema) or LedgerUnavailable.
    """

    def __init__(self, url: str | URL, *, create: bool = True) -> None:
        given = _parse_url(url)
        self._location = given.render_as_string(hide_password=True)
        self._sqlite = given.get_backend_name() == "sqlite"
        self._sync: SqliteSync | None = None
        if self._sqlite:
            self._sync = _sqlite_sync(given)
        elif SYNC_PARAMETER in given.query:
            raise LedgerConfigError(
                f"{SYNC_PARAMETER}= is a setting of SQLite ledgers; PostgreSQL commits are "
                "always synchronous (synchronous_commit on)"
            )
        self._url = given.difference_update_query([SYNC_PARAMETER])
        self._database = Path(self._url.database or "").absolute()  # SQLite: the file
        if self._sqlite:
            self._check_sqlite_path(create)
        self._engine = _make_engine(self._url, self._sync or DEFAULT_SQLITE_SYNC)
        self._writer: PoolProxiedConnection | None = None  # SQLite: the appending connection
        self._write_lock = threading.Lock()  # the writer, the stage file and what is staged
        self._stage: StageFile | None = None  # SQLite: made at the first stage()
        self._staged: list[StagedBatch] = []  # in the stage file, not yet in the chain
        try:
            with self._errors("open the ledger"):
                self._ledger_id = self._open_schema(create)
            if self._sqlite:
                self._recover_staged()
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def ledger_id(self) -> str:
        return self._ledger_id

    @property
    def location(self) -> str:
        return self._location

    @property
    def sqlite_sync(self) -> SqliteSync | None:
        """SQLite's durability setting (see :mod:`ibpilot._ledger_schema`); None on PostgreSQL."""
        return self._sync

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tools and tests; writes must go through append)."""
        return self._engine

    def append_many(
        self,
        items: Iterable[tuple[EntryKind, Mapping[str, object]]],
        *,
        ts: datetime,
        spec_hash: str = "",
    ) -> list[Entry]:
        items = list(items)
        if self._sqlite:  # what is staged first, in the same transaction
            with self._write_lock:
                return self._sqlite_commit([(items, ts, spec_hash)] if items else [])
        if not items:
            return []
        with self._errors("append to the ledger"), self._transaction(write=True) as conn:
            head = self._locked_head(conn)
            sealed = seal_rows(head, items, ts=ts, spec_hash=spec_hash)
            conn.execute(sa.insert(_entries), [_row_values(row) for _, row in sealed])
            moved = _head_text(sealed[-1][0].head)
            conn.execute(sa.update(_meta).where(_meta.c.key == "head").values(value=moved))
        return [entry for entry, _ in sealed]

    def stage(
        self,
        items: Iterable[tuple[EntryKind, Mapping[str, object]]],
        *,
        ts: datetime,
        spec_hash: str = "",
    ) -> None:
        """SQLite: one write to this object's stage file (see the module docstring), chained
        at the next append, flush or close. PostgreSQL: append_many. Raises TypeError or
        ValueError (nothing written) as append_many does, LedgerUnavailable if the write fails.
        """
        if not self._sqlite:
            super().stage(items, ts=ts, spec_hash=spec_hash)
            return
        items = list(items)
        if not items:
            return
        batch, line = stage_batch(items, ts=ts, spec_hash=spec_hash)
        with self._write_lock:
            try:
                if self._stage is None:
                    full = self._sync is SqliteSync.FULL
                    self._stage = StageFile.create(self._database, fsync=full)
                self._stage.write(line)
            except OSError as e:
                raise LedgerUnavailable(
                    f"cannot stage ledger entries next to {self._database}: {e.strerror or e}"
                ) from e
            self._staged.append(batch)

    def flush(self) -> None:
        """Chain and store what was staged, in one transaction (nothing to do when nothing
        is). On failure it stays staged, and the error is raised as append_many raises it."""
        if self._sqlite:
            with self._write_lock:
                self._sqlite_commit([])

    def entries(
        self,
        since: datetime | None = None,
        kind: Iterable[EntryKind] | EntryKind | None = None,
        after_seq: int = 0,
    ) -> Iterator[Entry]:
        kinds = kind_filter(kind)
        conditions: list[sa.ColumnElement[bool]] = []
        if since is not None:
            conditions.append(_entries.c.ts >= format_ts(since))
        if kinds is not None:
            conditions.append(_entries.c.kind.in_(sorted(k.value for k in kinds)))
        cursor = after_seq
        while True:  # pages, each its own short read, so a slow consumer holds no snapshot
            query = (
                sa.select(*_ROW_COLUMNS)
                .where(_entries.c.seq > cursor, *conditions)
                .order_by(_entries.c.seq)
                .limit(PAGE_SIZE)
            )
            with self._errors("read the ledger"), self._transaction() as conn:
                page = [_stored(r) for r in conn.execute(query)]
            for row in page:
                yield row.parse()
            if len(page) < PAGE_SIZE:
                return
            cursor = page[-1].seq

    def last(self) -> Entry | None:
        query = sa.select(*_ROW_COLUMNS).order_by(_entries.c.seq.desc()).limit(1)
        with self._errors("read the ledger"), self._transaction() as conn:
            row = conn.execute(query).first()
        return None if row is None else _stored(row).parse()

    def verify(self) -> VerifyReport:
        with self._errors("verify the ledger"), self._transaction(snapshot=True) as conn:
            text = conn.execute(sa.select(_meta.c.value).where(_meta.c.key == "head")).scalar()
            head = _parse_head(text)
            result = conn.execution_options(yield_per=PAGE_SIZE).execute(
                sa.select(*_ROW_COLUMNS).order_by(_entries.c.seq)
            )
            report = verify_chain((_stored(r) for r in result), head)
        if head is None:
            missing = Problem(0, "the head record is missing or malformed")
            problems = (*report.problems, missing)
            return VerifyReport(report.checked, problems, report.last, report.truncated)
        return report

    def close(self) -> None:
        """Chain what is staged (if that fails, its stage file stays for the next open to
        recover, with a warning), remove the stage file and release connections."""
        with self._write_lock:
            try:
                if self._sqlite:
                    self._sqlite_commit([])
            except LedgerError as e:
                where = self._stage.path if self._stage else "?"
                log.warning("closing the ledger with entries left staged in %s: %s", where, e)
            stage, self._stage = self._stage, None
            self._staged.clear()  # still in the stage file, if the commit failed
            try:
                if stage is not None:
                    stage.close()
            finally:
                writer, self._writer = self._writer, None
                if writer is not None:
                    writer.close()  # back to the pool, which dispose() closes
                self._engine.dispose()

    # -- internals ----------------------------------------------------------------------------

    def _sqlite_commit(self, batches: Sequence[_Batch]) -> list[Entry]:
        """Chain what is staged, then ``batches``, in one write transaction; empty the stage
        file after the commit. The caller holds the write lock. The entries of ``batches``."""
        staged = [(b.items, b.ts, b.spec_hash) for b in self._staged]
        if not staged and not batches:
            return []
        with self._errors("append to the ledger"), self._sqlite_append() as raw:
            sealed = _sqlite_insert(raw, [*staged, *batches])
        stage = self._stage
        if staged:
            self._staged.clear()
        if staged and stage is not None:
            try:
                stage.clear()
            except OSError as e:  # committed: a recovery finds them in the chain and skips them
                log.warning("cannot empty the stage file %s: %s", stage.path, e)
        return sealed[sum(len(items) for items, _, _ in staged) :]

    def _recover_staged(self) -> None:
        """Chain what dead processes staged for this ledger and remove their stage files."""
        database = self._database
        writable = os.access(database, os.W_OK) and os.access(database.parent, os.W_OK)
        if not writable:
            return  # a reader that cannot write leaves them to the next writer
        try:
            candidates = orphan_candidates(database)
        except OSError as e:
            raise LedgerUnavailable(f"cannot look for stage files next to {database}: {e}") from e
        for path in candidates:
            try:
                orphan = claim_orphan(path)
            except PermissionError as e:  # another user's: theirs to recover
                log.warning("cannot recover staged ledger entries from %s: %s", path, e)
                continue
            except OSError as e:
                raise LedgerUnavailable(f"cannot recover the stage file {path}: {e}") from e
            if orphan is not None:
                self._recover(orphan)

    def _recover(self, orphan: Orphan) -> None:
        try:
            action = "recover staged entries into the ledger"
            with self._errors(action), self._write_lock, self._sqlite_append() as raw:
                missing = _not_in_chain(raw, orphan.batches)
                _sqlite_insert(raw, missing)
        except BaseException:
            orphan.release()
            raise
        try:
            orphan.discard()
        except OSError as e:  # committed: the next recovery finds them in the chain
            log.warning("cannot remove the recovered stage file %s: %s", orphan.path, e)
        staged = sum(len(b.items) for b in orphan.batches)
        if staged:
            added = sum(len(items) for items, _, _ in missing)
            log.warning(
                "recovered %d staged ledger entries from %s, left by a process that died "
                "(%d were already in the chain)",
                added,
                orphan.path,
                staged - added,
            )

    def _check_sqlite_path(self, create: bool) -> None:
        database = self._url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            raise LedgerConfigError("the SQLite ledger URL must name a file: sqlite:///path")
        path = Path(database)
        if path.is_dir():
            raise LedgerConfigError(f"{path} is a directory, not a ledger file")
        if not path.exists():
            if not create:
                raise LedgerConfigError(f"no ledger at {path}")
            if not path.parent.is_dir():
                raise LedgerConfigError(
                    f"cannot create a ledger in {path.parent}: no such directory"
                )

    @contextmanager
    def _transaction(self, *, write: bool = False, snapshot: bool = False) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            if write and self._sqlite:
                conn.execution_options(ibpilot_sqlite_begin="IMMEDIATE")
            elif snapshot and not self._sqlite:
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _sqlite_append(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT) on the appending connection. The
        caller holds the write lock."""
        if self._writer is None:
            self._writer = self._engine.raw_connection()  # the connect listener ran
        raw = cast(sqlite3.Connection, self._writer.driver_connection)
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield raw
            raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                with suppress(sqlite3.Error):  # the first error is the one to report
                    raw.execute("ROLLBACK")
            raise

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except LedgerError:
            raise
        except (exc.SQLAlchemyError, sqlite3.Error, psycopg.Error) as e:
            raise self._translate(e, action) from e

    def _translate(self, error: Exception, action: str) -> LedgerError:
        orig = error.orig if isinstance(error, exc.DBAPIError) else error
        detail = _first_line(orig if orig is not None else error)
        where = self._location
        if self._sqlite and "file is not a database" in detail:
            return LedgerConfigError(f"{self._url.database} is not an ibpilot ledger ({detail})")
        if isinstance(error, exc.OperationalError | exc.InterfaceError | sqlite3.OperationalError):
            return LedgerUnavailable(f"cannot {action} at {where}: {detail}")
        if isinstance(error, exc.IntegrityError | sqlite3.IntegrityError):
            return LedgerIntegrityError(f"cannot {action} at {where}: {detail}")
        return LedgerError(f"cannot {action} at {where}: {detail}")

    def _open_schema(self, create: bool) -> str:
        with self._transaction() as conn:
            version, ledger_id = self._schema_state(conn, create)
        if version == SCHEMA_VERSION:
            return ledger_id
        with self._transaction(write=True) as conn:  # create or migrate, one process at a time
            if not self._sqlite:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_SCHEMA_LOCK)))
            version, _ = self._schema_state(conn, create)
            for migrate in MIGRATIONS[version:]:
                migrate(conn)
            conn.execute(
                sa.update(_meta)
                .where(_meta.c.key == "schema_version")
                .values(value=str(SCHEMA_VERSION))
            )
            version, ledger_id = self._schema_state(conn, create)
        return ledger_id

    def _schema_state(self, conn: Connection, create: bool) -> tuple[int, str]:
        """(schema version, ledger id) of what is there; (0, "") for an empty database."""
        tables = set(sa.inspect(conn).get_table_names())
        if META_TABLE not in tables:
            if ENTRIES_TABLE in tables or (self._sqlite and tables):
                raise LedgerConfigError(f"{self._location} is not an ibpilot ledger")
            if not create:
                raise LedgerConfigError(f"no ledger at {self._location}")
            return 0, ""
        values = {str(k): str(v) for k, v in conn.execute(sa.select(_meta.c.key, _meta.c.value))}
        try:
            version, ledger_id = int(values["schema_version"]), values["ledger_id"]
        except (KeyError, ValueError):
            raise LedgerConfigError(f"{self._location} is not an ibpilot ledger") from None
        if version > SCHEMA_VERSION:
            raise LedgerConfigError(
                f"the ledger at {self._location} has schema {version}, newer than this "
                f"ibpilot understands ({SCHEMA_VERSION}): upgrade ibpilot"
            )
        if version < SCHEMA_VERSION and not create:
            raise LedgerConfigError(
                f"the ledger at {self._location} has an older schema ({version}); "
                "open it once with ibpilot running the bot to migrate it"
            )
        return version, str(ledger_id)

    def _locked_head(self, conn: Connection) -> ChainHead:
        text = conn.execute(
            sa.select(_meta.c.value).where(_meta.c.key == "head").with_for_update()
        ).scalar()
        last = conn.execute(
            sa.select(_entries.c.seq, _entries.c.hash).order_by(_entries.c.seq.desc()).limit(1)
        ).first()
        return _checked_head(text, last)


def _sqlite_insert(raw: sqlite3.Connection, batches: Sequence[_Batch]) -> list[Entry]:
    """Chain ``batches`` after the checked head, inside the caller's write transaction."""
    text, seq, digest = raw.execute(_SQLITE_HEAD).fetchone()
    head = _checked_head(text, None if seq is None else (seq, digest))
    entries: list[Entry] = []
    rows: list[tuple[object, ...]] = []
    for items, ts, spec_hash in batches:
        for entry, row in seal_rows(head, items, ts=ts, spec_hash=spec_hash):
            entries.append(entry)
            rows.append(_row_tuple(row))
            head = entry.head
    if rows:
        raw.executemany(_SQLITE_INSERT, rows)
        raw.execute(_SQLITE_MOVE_HEAD, (_head_text(head),))
    return entries


def _not_in_chain(raw: sqlite3.Connection, batches: Sequence[StagedBatch]) -> list[_Batch]:
    """The staged entries the chain does not hold yet (their owner died after committing them
    but before emptying its stage file, or before committing them). An entry staged n times
    that the chain holds m times is missing n - m times."""
    present: dict[tuple[str, ...], int] = {}
    seen: dict[tuple[str, ...], int] = {}
    missing: list[_Batch] = []
    for batch in batches:
        stamp = format_ts(batch.ts)
        items: list[tuple[EntryKind, Mapping[str, object]]] = []
        for kind, payload in batch.items:
            key = (stamp, kind.value, batch.spec_hash, canonical_json(payload))
            if key not in present:
                present[key] = raw.execute(_SQLITE_COUNT_SAME, key).fetchone()[0]
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > present[key]:
                items.append((kind, payload))
        if items:
            missing.append((items, batch.ts, batch.spec_hash))
    return missing

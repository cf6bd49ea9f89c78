"""The SQL ledger's schema and connections: tables, migrations, guards, URLs, engines.

Schema (created and migrated by code; ``schema_version`` in the meta table)::

    ibpilot_ledger_meta     key TEXT PRIMARY KEY, value TEXT
                            rows: ledger_id (UUID), schema_version, head ("<seq>:<hash>")
    ibpilot_ledger_entries  seq PRIMARY KEY, ts, kind, spec_hash, payload, prev_hash, hash
                            (every column as text except seq; indexes on ts and kind)

SQLite durability: the ``sync`` query parameter of the URL (``sqlite:///path?sync=full``)
    ``normal`` (the default): ``synchronous=NORMAL``.  A commit has written its pages to the
    WAL file, in the operating system, when it returns; it is not fsynced (checkpoints are).
    The entry survives the bot crashing or being killed (``kill -9``); a power loss or a
    kernel crash can lose the last commits (the file stays consistent: they are rolled back
    whole).  It is the default because surviving the bot's own death is what "ledger before
    wire" promises, and for what a power loss could take the broker is the second record: the
    order carries the intent id in orderRef and reconciliation lists it (an unknown order)
    after the restart.  An fsync costs 0.3 to 2 ms per commit on common disks and VMs, and the
    proposal, decision and intent are made durable before every order.
    ``full``: ``synchronous=FULL``, an fsync at every commit: the entry is on the disk when
    the append returns and survives a power loss too, at that cost before every order.

    Staged entries are exactly as durable: the stage file's write is in the operating system
    when stage returns (``normal``) or fdatasynced (``full``). Staging costs one write (about
    35 us) before the order instead of the write transaction and the chaining (hundreds of us
    on a cold CPU), which follow the order.  A write torn by a power loss can only be the last
    line of a stage file; recovery drops it with a warning (its order may have left: the
    reconciliation after the restart finds it by orderRef).

PostgreSQL connections raise ``synchronous_commit`` to ``on`` if the server has it ``off``.

Triggers refuse UPDATE and DELETE of entries (and TRUNCATE on PostgreSQL), DELETE of meta rows
and changes to the ledger id. They stop accidents, not an adversary: the owner of the tables or
a superuser can drop or disable them (PostgreSQL: ``ALTER TABLE ... DISABLE TRIGGER``,
``session_replication_role``), and anyone who can write a SQLite file can do anything to it.
For a real barrier on PostgreSQL, create the ledger with an administrative role and let the
bot's role have only SELECT and INSERT on the entries and SELECT and UPDATE on the meta table.
``verify()`` is the guarantee either way.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from ibpilot.ledger import (
    EMPTY_HEAD,
    ChainHead,
    LedgerConfigError,
    LedgerIntegrityError,
    LedgerUnavailable,
    StoredRow,
)

__all__ = [
    "DEFAULT_SQLITE_SYNC",
    "ENTRIES_TABLE",
    "META_TABLE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SYNC_PARAMETER",
    "SqliteSync",
]

ENTRIES_TABLE = "ibpilot_ledger_entries"
META_TABLE = "ibpilot_ledger_meta"
SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10
# pg_advisory_xact_lock key serialising schema creation/migration (ASCII "ibpilotL").
_PG_SCHEMA_LOCK = 0x6962_7069_6C6F_744C
SYNC_PARAMETER = "sync"  # sqlite:///path?sync=full


class SqliteSync(StrEnum):
    """How a SQLite commit is made durable (the URL's ``sync``; see the module docstring)."""

    NORMAL = "normal"  # in the WAL file when the commit returns: survives kill -9
    FULL = "full"  # fsynced when the commit returns: survives a power loss


DEFAULT_SQLITE_SYNC = SqliteSync.NORMAL


def _tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    meta = sa.Table(
        META_TABLE,
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    entries = sa.Table(
        ENTRIES_TABLE,
        metadata,
        # INTEGER PRIMARY KEY is SQLite's rowid: no second index for seq.
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        # Byte order on PostgreSQL too: the fixed-width UTC text then sorts by time.
        sa.Column(
            "ts",
            sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql"),
            nullable=False,
            index=True,
        ),
        sa.Column("kind", sa.String(64), nullable=False, index=True),
        sa.Column("spec_hash", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    return meta, entries


# The current schema. A migration that changes it must freeze the old shape in its own function.
_metadata = sa.MetaData()
_meta, _entries = _tables(_metadata)
_ROW_COLUMNS = (
    _entries.c.seq,
    _entries.c.ts,
    _entries.c.kind,
    _entries.c.spec_hash,
    _entries.c.payload,
    _entries.c.prev_hash,
    _entries.c.hash,
)

_SQLITE_GUARDS = [
    f"""CREATE TRIGGER {ENTRIES_TABLE}_no_update BEFORE UPDATE ON {ENTRIES_TABLE}
    BEGIN SELECT RAISE(ABORT, 'the ibpilot ledger is append-only: UPDATE refused'); END""",
    f"""CREATE TRIGGER {ENTRIES_TABLE}_no_delete BEFORE DELETE ON {ENTRIES_TABLE}
    BEGIN SELECT RAISE(ABORT, 'the ibpilot ledger is append-only: DELETE refused'); END""",
    f"""CREATE TRIGGER {META_TABLE}_no_delete BEFORE DELETE ON {META_TABLE}
    BEGIN SELECT RAISE(ABORT, 'the ibpilot ledger is append-only: DELETE refused'); END""",
    f"""CREATE TRIGGER {META_TABLE}_fixed_id BEFORE UPDATE ON {META_TABLE}
    WHEN OLD.key = 'ledger_id' OR NEW.key <> OLD.key
    BEGIN SELECT RAISE(ABORT, 'the ibpilot ledger id cannot change'); END""",
]
_PG_GUARDS = [
    """CREATE OR REPLACE FUNCTION ibpilot_ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING MESSAGE =
            'the ibpilot ledger is append-only: ' || TG_OP || ' on ' || TG_TABLE_NAME || ' refused';
    END $$""",
    f"""CREATE TRIGGER {ENTRIES_TABLE}_append_only BEFORE UPDATE OR DELETE ON {ENTRIES_TABLE}
    FOR EACH ROW EXECUTE FUNCTION ibpilot_ledger_refuse()""",
    f"""CREATE TRIGGER {ENTRIES_TABLE}_no_truncate BEFORE TRUNCATE ON {ENTRIES_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION ibpilot_ledger_refuse()""",
    f"""CREATE TRIGGER {META_TABLE}_no_delete BEFORE DELETE ON {META_TABLE}
    FOR EACH ROW EXECUTE FUNCTION ibpilot_ledger_refuse()""",
    f"""CREATE TRIGGER {META_TABLE}_no_truncate BEFORE TRUNCATE ON {META_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION ibpilot_ledger_refuse()""",
    f"""CREATE TRIGGER {META_TABLE}_fixed_id BEFORE UPDATE ON {META_TABLE}
    FOR EACH ROW WHEN (OLD.key = 'ledger_id' OR NEW.key <> OLD.key)
    EXECUTE FUNCTION ibpilot_ledger_refuse()""",
]


def _migrate_to_1(conn: Connection) -> None:
    metadata = sa.MetaData()
    meta, _ = _tables(metadata)  # version 1 is the current shape
    metadata.create_all(conn)
    guards = _PG_GUARDS if conn.dialect.name == "postgresql" else _SQLITE_GUARDS
    for ddl in guards:
        conn.exec_driver_sql(ddl)
    conn.execute(
        sa.insert(meta),
        [
            {"key": "ledger_id", "value": str(uuid.uuid4())},
            {"key": "schema_version", "value": "0"},
            {"key": "head", "value": _head_text(EMPTY_HEAD)},
        ],
    )


# MIGRATIONS[n - 1] takes schema n - 1 to n, inside the caller's transaction.
MIGRATIONS: list[Callable[[Connection], None]] = [_migrate_to_1]
SCHEMA_VERSION = len(MIGRATIONS)


def _head_text(head: ChainHead) -> str:
    return f"{head.seq}:{head.hash}"


def _parse_head(text: str | None) -> ChainHead | None:
    if text is None:
        return None
    seq, _, digest = text.partition(":")
    try:
        return ChainHead(int(seq), digest)
    except ValueError:
        return None


def _checked_head(text: str | None, last: Sequence[Any] | None) -> ChainHead:
    """The head to append after: the last entry, if it is the one the head record names."""
    head = _parse_head(text)
    stored = EMPTY_HEAD if last is None else ChainHead(int(last[0]), str(last[1]))
    if head != stored:
        raise LedgerIntegrityError(
            f"refusing to append: the last entry (seq {stored.seq}) is not the one the "
            f"head record names ({head.seq if head else 'none'}); run ibpilot ledger verify"
        )
    return stored


# -- per-dialect connection set-up ------------------------------------------------------------


def _sqlite_on_connect(sync: SqliteSync) -> Callable[[DBAPIConnection, ConnectionPoolEntry], None]:
    pragma = f"PRAGMA synchronous={sync.value.upper()}"

    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        conn = cast(sqlite3.Connection, dbapi_connection)
        conn.isolation_level = None  # the driver's BEGIN handling is off: see _sqlite_on_begin
        query = "SELECT name FROM sqlite_master WHERE type='table'"
        tables = {name for (name,) in conn.execute(query)}
        if tables and META_TABLE not in tables:
            return  # someone else's database: leave it as it is; opening it will refuse it
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() != "wal":
            raise LedgerUnavailable(f"SQLite refused write-ahead logging (journal mode {mode})")
        conn.execute(pragma)
        conn.execute("PRAGMA fullfsync=ON")  # macOS: flush the drive's cache too (else no-op)

    return on_connect


def _sqlite_on_begin(conn: Connection) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two appenders queue instead of
    # both reading the same head; readers use a plain BEGIN (a snapshot in WAL mode).
    mode = conn.get_execution_options().get("ibpilot_sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _pg_on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    conn = cast("psycopg.Connection[Any]", dbapi_connection)
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        row = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()
        if row is not None and row[0] == "off":
            conn.execute("SET synchronous_commit TO on")
    finally:
        conn.autocommit = autocommit


def _parse_url(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError):
        raise LedgerConfigError("the ledger URL is not a valid database URL") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if (backend, driver) not in (("sqlite", "pysqlite"), ("postgresql", "psycopg")):
        raise LedgerConfigError(
            f"unsupported ledger database {parsed.drivername!r}: use sqlite:///path "
            "or postgresql+psycopg://user@host:port/database"
        )
    return parsed


def _sqlite_sync(url: URL) -> SqliteSync:
    """The ``sync`` query parameter of a SQLite URL (see the module docstring)."""
    value = url.query.get(SYNC_PARAMETER, DEFAULT_SQLITE_SYNC.value)
    choices = ", ".join(s.value for s in SqliteSync)
    if not isinstance(value, str):
        raise LedgerConfigError(f"the ledger URL sets {SYNC_PARAMETER} more than once")
    try:
        return SqliteSync(value.lower())
    except ValueError:
        raise LedgerConfigError(
            f"the ledger URL's {SYNC_PARAMETER}={value!r:.40} is not one of {choices}"
        ) from None


def _make_engine(url: URL, sync: SqliteSync) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_on_connect(sync))
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    event.listen(engine, "connect", _pg_on_connect)
    return engine


# -- the backend ------------------------------------------------------------------------------


# -- rows --------------------------------------------------------------------------------------


def _row_values(row: StoredRow) -> dict[str, object]:
    return {
        "seq": row.seq,
        "ts": row.ts,
        "kind": row.kind,
        "spec_hash": row.spec_hash,
        "payload": row.payload,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def _row_tuple(row: StoredRow) -> tuple[object, ...]:
    return (row.seq, row.ts, row.kind, row.spec_hash, row.payload, row.prev_hash, row.hash)


def _stored(row: Sequence[Any]) -> StoredRow:
    seq, ts, kind, spec_hash, payload, prev_hash, digest = row
    return StoredRow(
        int(seq), str(ts), str(kind), str(spec_hash), str(payload), str(prev_hash), str(digest)
    )

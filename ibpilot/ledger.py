"""The ledger: the append-only, hash-chained record of what the bot decided and did.

One source of truth for the bot's own actions (DESIGN.md): configuration loaded, spec hash,
connection events, every proposal with the gate's decision and reasons (refusals too), every
intent, order sent, status change, fill and commission, reconciliations, halts and kill-switch
actions. "Ledger before wire": :meth:`Ledger.append` returns only once the entry is durable
(committed; PostgreSQL with ``synchronous_commit`` on; SQLite in WAL mode, by default with
``synchronous=NORMAL``: the commit is in the WAL file, safe from a crash or ``kill -9`` of the
bot though not from a power loss, and ``sqlite:///path?sync=full`` fsyncs every commit; see
:mod:`ibpilot._ledger_schema` for why), so the runtime records the intent and the gate's
decision first and sends the order after (:meth:`Ledger.stage` makes them durable at once
and chains them right after the order has left).

Entries
    ``seq`` (1, 2, 3, ... without gaps), ``ts`` (the caller's clock, UTC, microseconds; the
    ledger never reads a clock), ``kind`` (:class:`EntryKind`), ``spec_hash``, ``payload`` (a
    JSON object; ``Decimal`` is stored as its string, so ``Decimal("1.10")`` reads back as
    ``"1.10"``), ``prev_hash`` and ``hash``.

The chain (format ``ibpilot-ledger/1``)
    ``hash = sha256(json([FORMAT, seq, ts, kind, spec_hash, payload, prev_hash]))`` in hex,
    where ``ts`` is ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``, ``payload`` is the canonical JSON
    text of the payload (keys sorted, no spaces, ASCII only, no NaN) and the outer JSON array
    is written the same way. The first entry's ``prev_hash`` is :data:`GENESIS_HASH` (64
    zeros). :func:`verify_chain` recomputes every hash over the strings exactly as stored, so
    an export (``ibpilot ledger export --csv``) can be checked by anyone with this paragraph.

What verification detects, and what it cannot
    Any edited field (payload, kind, ts, spec_hash, seq, either hash), any entry removed from
    the middle, inserted or reordered. A chain alone cannot tell that entries were cut from
    the end, so the store also keeps a *head record* (last seq and hash), updated in the same
    transaction as each append: a removed tail is detected unless the same person also edits
    the head record. Someone who can rewrite the database can rewrite the chain from any
    point onwards (recomputing every hash) and the head record with it; no self-contained
    store can detect that. Copy the head hash that ``ibpilot ledger verify`` prints somewhere
    else (a ticket, an e-mail) to anchor the ledger up to that point. Database triggers refuse
    UPDATE and DELETE of entries (see ``ibpilot._ledger_schema``), but a table owner or
    superuser can disable them: :meth:`Ledger.verify` is the guarantee, the triggers only
    stop accidents.

Backends
    :class:`MemoryLedger` (backtests) and ``SqlLedger`` (SQLAlchemy Core; SQLite by default,
    PostgreSQL by URL; imported lazily so that backtests do not load SQLAlchemy). Use
    :func:`open_ledger` to get one from a user's setting.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeAlias

if TYPE_CHECKING:
    from ibpilot._ledger_sql import SqlLedger

__all__ = [
    "DEFAULT_FILENAME",
    "GENESIS_HASH",
    "ChainHead",
    "Entry",
    "EntryKind",
    "JsonValue",
    "Ledger",
    "LedgerConfigError",
    "LedgerError",
    "LedgerIntegrityError",
    "LedgerUnavailable",
    "MemoryLedger",
    "Problem",
    "SqlLedger",
    "StagedBatch",
    "StoredRow",
    "VerifyReport",
    "canonical_json",
    "entry_hash",
    "format_ts",
    "open_ledger",
    "parse_staged_line",
    "resolve_ledger_url",
    "seal",
    "stage_batch",
    "verify_chain",
]

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None

HASH_FORMAT = "ibpilot-ledger/1"
GENESIS_HASH = "0" * 64
DEFAULT_FILENAME = "ibpilot-ledger.sqlite"
MAX_PROBLEMS = 1000


class LedgerError(Exception):
    """The ledger cannot do what was asked. The message is one line, meant for a human."""


class LedgerConfigError(LedgerError):
    """The ledger's location is wrong: a bad URL, no ledger there, or not an ibpilot ledger."""


class LedgerUnavailable(LedgerError):
    """The database cannot be reached or failed the operation; it may be temporary."""


class LedgerIntegrityError(LedgerError):
    """The stored chain is damaged; ``ibpilot ledger verify`` says where."""


class EntryKind(StrEnum):
    """What an entry records. Values are stored; never rename one, only add."""

    START = "START"
    STOP = "STOP"
    CONFIG_LOADED = "CONFIG_LOADED"
    SPEC_HASH = "SPEC_HASH"
    CONNECTION = "CONNECTION"
    PROPOSAL = "PROPOSAL"
    DECISION = "DECISION"
    INTENT = "INTENT"
    ORDER_SENT = "ORDER_SENT"
    CANCEL_SENT = "CANCEL_SENT"
    ORDER_STATUS = "ORDER_STATUS"
    FILL = "FILL"
    COMMISSION = "COMMISSION"
    RECONCILIATION = "RECONCILIATION"
    HALT = "HALT"
    RESUME = "RESUME"
    KILL_SWITCH = "KILL_SWITCH"
    MANDATE_INTEGRITY_VIOLATION = "MANDATE_INTEGRITY_VIOLATION"
    STRATEGY_ERROR = "STRATEGY_ERROR"
    NOTE = "NOTE"
    MARKET_DATA = "MARKET_DATA"  # a feed fell silent, was renewed, recovered; farm notices
    ALERT = "ALERT"  # an alert raised to the operator (log and webhook)
    PNL = "PNL"  # the day's P&L book after a fill: a restart on the same day resumes from it


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The end of a chain: the last seq and its hash ``(0, GENESIS_HASH)`` when empty."""

    seq: int
    hash: str


EMPTY_HEAD = ChainHead(0, GENESIS_HASH)


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One entry exactly as stored: the strings the hash covers (and the CSV export's row)."""

    seq: int
    ts: str
    kind: str
    spec_hash: str
    payload: str
    prev_hash: str
    hash: str

    def parse(self) -> Entry:
        """The entry this row stores. Raises LedgerIntegrityError if a field is malformed."""
        try:
            payload = json.loads(self.payload)
            kind = EntryKind(self.kind)
            ts = datetime.fromisoformat(self.ts)
        except ValueError as e:
            raise LedgerIntegrityError(f"entry {self.seq} is malformed: {e}") from None
        if not isinstance(payload, dict) or ts.tzinfo is None:
            raise LedgerIntegrityError(f"entry {self.seq} is malformed: run ibpilot ledger verify")
        return Entry(
            self.seq, ts.astimezone(UTC), kind, self.spec_hash, payload, self.prev_hash, self.hash
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry. ``payload`` is the normalised JSON object (Decimals are strings);
    it is the entry's own copy, to be treated as read-only."""

    seq: int
    ts: datetime
    kind: EntryKind
    spec_hash: str
    payload: dict[str, JsonValue] = field(hash=False)
    prev_hash: str
    hash: str

    @property
    def head(self) -> ChainHead:
        return ChainHead(self.seq, self.hash)

    def to_row(self) -> StoredRow:
        return StoredRow(
            self.seq,
            format_ts(self.ts),
            self.kind.value,
            self.spec_hash,
            _dumps(self.payload),
            self.prev_hash,
            self.hash,
        )


@dataclass(frozen=True, slots=True)
class Problem:
    """One integrity problem: the seq it concerns (0: the ledger as a whole) and what is wrong."""

    seq: int
    what: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of verifying a chain. ``last`` is the last entry seen (the head to anchor)."""

    checked: int
    problems: tuple[Problem, ...]
    last: ChainHead = EMPTY_HEAD
    truncated: bool = False  # more than MAX_PROBLEMS problems; only the first are listed

    @property
    def ok(self) -> bool:
        return not self.problems


# -- canonical forms and hashing (sans-IO) ----------------------------------------------------


def format_ts(ts: datetime) -> str:
    """The stored form of a timestamp: UTC, microseconds. Raises ValueError if ``ts`` is naive."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"ledger timestamps must carry a UTC offset, got naive {ts!r}")
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


_Convert: TypeAlias = Callable[[Any], JsonValue]


def _converter(kind: type) -> _Convert | None:
    """How a value of type ``kind`` becomes a plain JSON value (None: it is one already)."""
    if kind in (type(None), bool, str, int, float):
        return None
    if issubclass(kind, str):
        return str  # a StrEnum becomes its value
    if issubclass(kind, numbers.Integral):  # IntEnum, numpy integers
        return int
    if issubclass(kind, numbers.Real):  # numpy floats; NaN is refused when dumped
        return float
    if issubclass(kind, datetime):
        return format_ts
    if issubclass(kind, Decimal | uuid.UUID | date):
        return str  # Decimal("1.10") -> "1.10", exactly
    if issubclass(kind, Enum):
        return _enum_value
    if issubclass(kind, Mapping):
        return _normalise_object
    if issubclass(kind, list | tuple):
        return _normalise_list
    return _refuse


def _enum_value(value: Enum) -> JsonValue:
    return _normalise(value.value)


def _normalise_list(value: list[object] | tuple[object, ...]) -> list[JsonValue]:
    return [_normalise(item) for item in value]


def _refuse(value: object) -> JsonValue:
    raise TypeError(f"cannot store a {type(value).__name__} in a ledger payload: {value!r:.80}")


def _first_sight(value: object) -> JsonValue:
    """Normalise a value of a type not met before, and remember how for that type."""
    convert = _CONVERTERS[type(value)] = _converter(type(value))
    return value if convert is None else convert(value)  # type: ignore[return-value]  # None: already plain JSON


# type -> its converter, filled as types are met: every value is one dict look-up away
_CONVERTERS: dict[type, _Convert | None] = {}


def _normalise(value: object) -> JsonValue:
    """Plain JSON values; containers are copied, so the entry never aliases the caller's."""
    convert = _CONVERTERS.get(type(value), _first_sight)
    return value if convert is None else convert(value)  # type: ignore[return-value]  # None: already plain JSON


def _normalise_object(value: Mapping[Any, object]) -> dict[str, JsonValue]:
    out: dict[str, Any] = {}  # JsonValue; _normalise inlined: this runs for every payload
    converters = _CONVERTERS
    for key, item in value.items():
        if type(key) is not str and not isinstance(key, str):
            raise TypeError(f"ledger payload keys must be strings, got {key!r:.80}")
        convert = converters.get(type(item), _first_sight)
        # str(key): a StrEnum becomes its value
        out[key if type(key) is str else str(key)] = item if convert is None else convert(item)
    return out


# json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False),
# with the encoder made once (normalised values have no cycles to check for).
_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, check_circular=False
).encode
_quote = json.encoder.encode_basestring_ascii  # a string as that encoder writes it
_HASH_PREFIX = f"[{_quote(HASH_FORMAT)},"


def canonical_json(payload: Mapping[str, object]) -> str:
    """The stored text of a payload. Raises TypeError/ValueError for what JSON cannot hold."""
    return _dumps(_normalise_object(payload))


def entry_hash(seq: int, ts: str, kind: str, spec_hash: str, payload: str, prev_hash: str) -> str:
    """SHA-256 (hex) over the stored strings of an entry; see the module docstring."""
    usual = type(seq) is int and type(ts) is type(kind) is type(spec_hash) is str
    if usual and type(payload) is type(prev_hash) is str:  # the same text, written directly
        material = (
            f"{_HASH_PREFIX}{seq},{_quote(ts)},{_quote(kind)},{_quote(spec_hash)},"
            f"{_quote(payload)},{_quote(prev_hash)}]"
        )
    else:
        material = _dumps([HASH_FORMAT, seq, ts, kind, spec_hash, payload, prev_hash])
    return hashlib.sha256(material.encode("ascii")).hexdigest()


def seal(
    head: ChainHead,
    kind: EntryKind,
    payload: Mapping[str, object],
    *,
    ts: datetime,
    spec_hash: str = "",
) -> Entry:
    """The entry that follows ``head``. Raises TypeError/ValueError for a bad payload or ts."""
    return _seal(head, [(kind, payload)], ts, spec_hash, None)[0]


def seal_many(
    head: ChainHead,
    items: Iterable[tuple[EntryKind, Mapping[str, object]]],
    *,
    ts: datetime,
    spec_hash: str = "",
) -> list[Entry]:
    """Entries that follow ``head``, chained to each other, all stamped ``ts``."""
    return _seal(head, items, ts, spec_hash, None)


def seal_rows(
    head: ChainHead,
    items: Iterable[tuple[EntryKind, Mapping[str, object]]],
    *,
    ts: datetime,
    spec_hash: str = "",
) -> list[tuple[Entry, StoredRow]]:
    """:func:`seal_many`, each entry with its stored row (the texts are made once)."""
    rows: list[StoredRow] = []
    return list(zip(_seal(head, items, ts, spec_hash, rows), rows, strict=True))


def _seal(
    head: ChainHead,
    items: Iterable[tuple[EntryKind, Mapping[str, object]]],
    ts: datetime,
    spec_hash: str,
    rows: list[StoredRow] | None,
) -> list[Entry]:
    out: list[Entry] = []
    stamp: tuple[str, datetime] | None = None
    seq, prev = head.seq, head.hash
    for given, payload in items:
        kind = given if type(given) is EntryKind else EntryKind(given)
        if stamp is None:  # checked once, at the first entry
            _check_spec_hash(spec_hash)
        normalised = _normalise_object(payload)
        text = _dumps(normalised)
        if stamp is None:
            stamp = (format_ts(ts), ts.astimezone(UTC))
        seq, kind_text = seq + 1, str(kind)  # a StrEnum's str() is its value
        digest = entry_hash(seq, stamp[0], kind_text, spec_hash, text, prev)
        out.append(Entry(seq, stamp[1], kind, spec_hash, normalised, prev, digest))
        if rows is not None:
            rows.append(StoredRow(seq, stamp[0], kind_text, spec_hash, text, prev, digest))
        prev = digest
    return out


@dataclass(frozen=True, slots=True)
class StagedBatch:
    """Entries staged together (:meth:`Ledger.stage`): normalised and durable, not yet
    chained. They join the chain as :func:`seal_many` of ``items`` at ``ts``."""

    ts: datetime
    spec_hash: str
    items: tuple[tuple[EntryKind, dict[str, JsonValue]], ...]


def stage_batch(
    items: Iterable[tuple[EntryKind, Mapping[str, object]]],
    *,
    ts: datetime,
    spec_hash: str = "",
) -> tuple[StagedBatch, bytes]:
    """A batch to stage and its line in a stage file (ASCII, ending in a newline).

    The line is the canonical JSON of ``[ts, spec_hash, [[kind, payload], ...]]``: one line
    per batch, so a torn write loses a whole batch, never part of one. Raises
    TypeError/ValueError exactly as :meth:`Ledger.append_many` does for the same items.
    """
    _check_spec_hash(spec_hash)
    normalised = tuple(
        (kind if type(kind) is EntryKind else EntryKind(kind), _normalise_object(payload))
        for kind, payload in items
    )
    stamp = format_ts(ts)
    line = _dumps([stamp, spec_hash, [[kind.value, payload] for kind, payload in normalised]])
    return StagedBatch(ts.astimezone(UTC), spec_hash, normalised), f"{line}\n".encode("ascii")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _strict_json(line: bytes) -> tuple[Any, Any, list[Any]]:
    """``[ts, spec_hash, [[kind, payload], ...]]`` from a stage-file line, unchecked inside."""
    value = json.loads(line, parse_constant=_refuse_constant)
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[2], list)):
        raise TypeError("not [ts, spec_hash, entries]")
    return value[0], value[1], value[2]


def parse_staged_line(line: bytes) -> StagedBatch:
    """The batch a stage-file line holds. Raises ValueError if it is not one."""
    try:
        stamp, spec_hash, items = _strict_json(line)
        ts = datetime.fromisoformat(stamp)
        parsed = tuple((EntryKind(kind), payload) for kind, payload in items)
    except (TypeError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"not a staged batch: {e}") from None
    if format_ts(ts) != stamp or not isinstance(spec_hash, str) or not parsed:
        raise ValueError("not a staged batch: bad timestamp, spec hash or no entries")
    if not all(isinstance(payload, dict) for _, payload in parsed):
        raise ValueError("not a staged batch: a payload is not a JSON object")
    _check_spec_hash(spec_hash)
    return StagedBatch(ts.astimezone(UTC), spec_hash, parsed)


def _check_spec_hash(spec_hash: str) -> None:
    if len(spec_hash) > 128 or not (spec_hash.isascii() and spec_hash.isprintable()):
        raise ValueError(
            f"a spec hash is up to 128 printable ASCII characters, got {spec_hash!r:.80}"
        )


# -- verification (sans-IO) -------------------------------------------------------------------

_KINDS = frozenset(k.value for k in EntryKind)


def _malformations(row: StoredRow) -> Iterator[str]:
    if row.kind not in _KINDS:
        yield f"unknown kind {row.kind!r:.40}"
    try:
        if format_ts(datetime.fromisoformat(row.ts)) != row.ts:
            yield f"timestamp {row.ts!r:.40} is not in the stored form"
    except ValueError:
        yield f"timestamp {row.ts!r:.40} is not an ISO date-time with an offset"
    try:
        payload = json.loads(row.payload)
        if not isinstance(payload, dict) or _dumps(payload) != row.payload:
            yield "payload is not a canonical JSON object"
    except ValueError:
        yield "payload is not JSON"


class _ChainChecker:
    def __init__(self, max_problems: int) -> None:
        self.last = EMPTY_HEAD
        self.checked = 0
        self.problems: list[Problem] = []
        self.truncated = False
        self._max = max_problems

    def problem(self, seq: int, what: str) -> None:
        if len(self.problems) < self._max:
            self.problems.append(Problem(seq, what))
        else:
            self.truncated = True

    def check(self, row: StoredRow) -> None:
        self.checked += 1
        expected = self.last.seq + 1
        if row.seq < expected:
            self.problem(row.seq, f"out of order: seq {row.seq} comes after seq {self.last.seq}")
        elif row.seq > expected:
            missing = str(expected) if row.seq == expected + 1 else f"{expected}..{row.seq - 1}"
            self.problem(expected, f"missing: entry {missing} was removed")
        if row.prev_hash != self.last.hash:
            self.problem(
                row.seq,
                "prev_hash does not match the entry before it: an entry was removed, "
                "inserted or reordered, or a hash was edited",
            )
        computed = entry_hash(row.seq, row.ts, row.kind, row.spec_hash, row.payload, row.prev_hash)
        if computed != row.hash:
            self.problem(row.seq, "hash does not match the entry's content: the entry was edited")
        for what in _malformations(row):
            self.problem(row.seq, what)
        self.last = ChainHead(row.seq, row.hash)

    def check_head(self, head: ChainHead) -> None:
        if head == self.last:
            return
        if head.seq > self.last.seq:
            self.problem(
                self.last.seq + 1,
                f"the head record says the ledger ends at seq {head.seq} but it ends at "
                f"seq {self.last.seq}: entries were removed from the end",
            )
        else:
            self.problem(
                head.seq,
                f"the head record (seq {head.seq}, {head.hash[:12]}) does not match the last "
                f"entry (seq {self.last.seq}, {self.last.hash[:12]})",
            )


def verify_chain(
    rows: Iterable[StoredRow],
    head: ChainHead | None = None,
    *,
    max_problems: int = MAX_PROBLEMS,
) -> VerifyReport:
    """Check rows (in stored seq order) against the chain rules and, if given, the head record.

    ``head=None`` means there is no head record to compare with (an export, for example), so a
    removed tail cannot be seen. Never raises for bad data: every finding is a Problem.
    """
    checker = _ChainChecker(max_problems)
    for row in rows:
        checker.check(row)
    if head is not None:
        checker.check_head(head)
    return VerifyReport(checker.checked, tuple(checker.problems), checker.last, checker.truncated)


def _matches(entry: Entry, since: datetime | None, kinds: frozenset[EntryKind] | None) -> bool:
    if since is not None and entry.ts < since:
        return False
    return kinds is None or entry.kind in kinds


def kind_filter(kind: Iterable[EntryKind] | EntryKind | None) -> frozenset[EntryKind] | None:
    """Normalise the ``kind`` argument of :meth:`Ledger.entries` (a single kind is allowed)."""
    if kind is None:
        return None
    if isinstance(kind, str):
        return frozenset({EntryKind(kind)})
    return frozenset(EntryKind(k) for k in kind)


# -- the interface and the in-memory backend --------------------------------------------------


class Ledger(Protocol):
    """Storage of the chain. Backends: MemoryLedger, SqlLedger. Passed in, never global.

    Every method may raise LedgerError (LedgerUnavailable when the database fails,
    LedgerIntegrityError when the stored chain is damaged where the operation needs it).
    """

    @property
    def ledger_id(self) -> str:
        """A UUID made when the ledger was created."""
        ...

    @property
    def location(self) -> str:
        """Where it lives, for messages (passwords masked)."""
        ...

    def append(
        self,
        kind: EntryKind,
        payload: Mapping[str, object],
        *,
        ts: datetime,
        spec_hash: str = "",
    ) -> Entry:
        """Add one entry; durable when this returns. TypeError/ValueError for a bad payload/ts."""
        ...

    def append_many(
        self,
        items: Iterable[tuple[EntryKind, Mapping[str, object]]],
        *,
        ts: datetime,
        spec_hash: str = "",
    ) -> list[Entry]:
        """Add several entries in one transaction (all or none), all stamped ``ts``.

        For what must land together, e.g. the proposal, the gate's decision and the intent
        just before the order is sent.
        """
        ...

    def stage(
        self,
        items: Iterable[tuple[EntryKind, Mapping[str, object]]],
        *,
        ts: datetime,
        spec_hash: str = "",
    ) -> None:
        """Make entries durable now and chain them later: for what must be durable before the
        wire, without the chaining and the transaction on that path.

        The entries are durable when this returns (they survive the process being killed;
        with SQLite ``?sync=full`` a power loss too); they join the chain, in order and
        together, at the next append, append_many, flush or close of this ledger, or, if the
        process dies first, when the ledger is next opened. TypeError/ValueError for a bad
        payload/ts/spec hash, raised before anything is written.
        """
        ...

    def flush(self) -> None:
        """Chain and store what was staged (nothing to do when nothing is)."""
        ...

    def entries(
        self,
        since: datetime | None = None,
        kind: Iterable[EntryKind] | EntryKind | None = None,
        after_seq: int = 0,
    ) -> Iterator[Entry]:
        """Entries in seq order with ``ts >= since``, of the given kinds, after ``after_seq``."""
        ...

    def last(self) -> Entry | None:
        """The newest entry, or None when the ledger is empty."""
        ...

    def verify(self) -> VerifyReport:
        """Check the whole chain and the head record; findings are Problems, not exceptions."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...


class LedgerBase(ABC):
    """What every backend shares: one append is a batch of one; a ledger is a context
    manager that closes itself."""

    @abstractmethod
    def append_many(
        self,
        items: Iterable[tuple[EntryKind, Mapping[str, object]]],
        *,
        ts: datetime,
        spec_hash: str = "",
    ) -> list[Entry]:
        """Append entries in one transaction; durable when it returns."""

    @abstractmethod
    def close(self) -> None:
        """Release the backend."""

    def append(
        self,
        kind: EntryKind,
        payload: Mapping[str, object],
        *,
        ts: datetime,
        spec_hash: str = "",
    ) -> Entry:
        """Append one entry; durable when it returns."""
        return self.append_many([(kind, payload)], ts=ts, spec_hash=spec_hash)[0]

    def stage(
        self,
        items: Iterable[tuple[EntryKind, Mapping[str, object]]],
        *,
        ts: datetime,
        spec_hash: str = "",
    ) -> None:
        """Make entries durable; this default appends them at once (chained already)."""
        self.append_many(items, ts=ts, spec_hash=spec_hash)

    def flush(self) -> None:  # noqa: B027  (a no-op by design: the default stage appends)
        """Chain what was staged; nothing is left staged by the default :meth:`stage`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MemoryLedger(LedgerBase):
    """The ledger in a list, for backtests and tests; same chaining and verification."""

    def __init__(self, ledger_id: str | None = None) -> None:
        self._ledger_id = ledger_id or str(uuid.uuid4())
        self._entries: list[Entry] = []
        self._lock = threading.Lock()

    @property
    def ledger_id(self) -> str:
        return self._ledger_id

    @property
    def location(self) -> str:
        return "memory"

    def append_many(
        self,
        items: Iterable[tuple[EntryKind, Mapping[str, object]]],
        *,
        ts: datetime,
        spec_hash: str = "",
    ) -> list[Entry]:
        with self._lock:
            head = self._entries[-1].head if self._entries else EMPTY_HEAD
            new = seal_many(head, items, ts=ts, spec_hash=spec_hash)
            self._entries.extend(new)
        return new

    def entries(
        self,
        since: datetime | None = None,
        kind: Iterable[EntryKind] | EntryKind | None = None,
        after_seq: int = 0,
    ) -> Iterator[Entry]:
        kinds = kind_filter(kind)
        with self._lock:
            snapshot = self._entries[max(after_seq, 0) :]
        return (e for e in snapshot if _matches(e, since, kinds))

    def last(self) -> Entry | None:
        with self._lock:
            return self._entries[-1] if self._entries else None

    def verify(self) -> VerifyReport:
        with self._lock:
            rows = [e.to_row() for e in self._entries]
            head = self._entries[-1].head if self._entries else EMPTY_HEAD
        return verify_chain(rows, head)

    def close(self) -> None:
        pass


# -- locating a ledger ------------------------------------------------------------------------

_PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def resolve_ledger_url(url_or_path: str | None, directory: Path) -> str:
    """The SQLAlchemy URL for a user's ledger setting.

    ``None`` or empty: ``ibpilot-ledger.sqlite`` in ``directory``. A path (relative to
    ``directory``; a directory gets the default file name): that SQLite file.
    ``sqlite:///path`` (with ``?sync=full`` or ``?sync=normal``, the default: see
    :mod:`ibpilot._ledger_schema`); ``postgresql://``, ``postgres://`` and
    ``postgresql+psycopg://`` URLs (psycopg 3 is the driver). Raises LedgerConfigError for
    anything else.
    """
    if not url_or_path:
        return f"sqlite:///{(directory / DEFAULT_FILENAME).absolute()}"
    if "://" not in url_or_path:
        path = directory / Path(url_or_path).expanduser()
        if path.is_dir():
            path = path / DEFAULT_FILENAME
        return f"sqlite:///{path.absolute()}"
    scheme, rest = url_or_path.split("://", 1)
    scheme = scheme.lower()
    if scheme in ("sqlite", "sqlite+pysqlite"):
        if not rest.startswith("/") or rest in ("/", "/:memory:"):
            raise LedgerConfigError(
                f"the SQLite ledger URL {url_or_path!r} names no file: use sqlite:///path/to/file"
            )
        return url_or_path
    if scheme in _PG_SCHEMES:
        return f"postgresql+psycopg://{rest}"
    shown = scheme if len(scheme) < 30 else scheme[:30] + "..."
    raise LedgerConfigError(
        f"unsupported ledger URL scheme {shown!r}: use a file path, sqlite:///path "
        "or postgresql://user@host:port/database"
    )


def open_ledger(url_or_path: str | None, directory: Path, *, create: bool = True) -> Ledger:
    """Open (and with ``create``, create or migrate) the ledger a user's setting names.

    Raises LedgerConfigError (bad URL, no ledger there with ``create=False``, a file or
    database that is not an ibpilot ledger, a ledger from a newer ibpilot) or
    LedgerUnavailable (the database cannot be reached). Messages are one line.
    """
    from ibpilot._ledger_sql import SqlLedger  # noqa: PLC0415  (keeps SQLAlchemy out of backtests)

    return SqlLedger(resolve_ledger_url(url_or_path, directory), create=create)


def __getattr__(name: str) -> object:
    # ``from ibpilot.ledger import SqlLedger`` without importing SQLAlchemy for everyone else.
    if name == "SqlLedger":
        from ibpilot._ledger_sql import SqlLedger  # noqa: PLC0415

        return SqlLedger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""``ibpilot ledger``: show, verify and export the ledger.

::

    ibpilot ledger show   [--since ISO] [--kind K ...] [--ledger URL]
    ibpilot ledger verify [--ledger URL]
    ibpilot ledger export --csv [--output FILE] [--ledger URL]

``--ledger`` takes a file path, ``sqlite:///path`` or ``postgresql://user@host:port/db``
(put the password in ``~/.pgpass`` or ``PGPASSWORD`` rather than on the command line); by
default it is ``ibpilot-ledger.sqlite`` in the current directory. These commands never create
a ledger.

Exit codes: 0 ok; 1 any other error (for example the database cannot be reached); 2 usage or
configuration (bad arguments, bad URL, no ledger there, not an ibpilot ledger); 3 integrity
violation (``verify`` found an edited, removed or reordered entry, or ``show``/``export`` met a
damaged entry). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TextIO

from ibpilot.ledger import (
    Entry,
    EntryKind,
    JsonValue,
    Ledger,
    LedgerConfigError,
    LedgerError,
    LedgerIntegrityError,
    StoredRow,
    VerifyReport,
    open_ledger,
)

__all__ = [
    "CSV_COLUMNS",
    "EXIT_ERROR",
    "EXIT_INTEGRITY",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "export_csv",
    "format_entry",
    "read_csv",
    "render_report",
    "run_ledger_command",
    "show_entries",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3

CSV_COLUMNS = ("seq", "ts", "kind", "spec_hash", "payload", "prev_hash", "hash")
# Payload fields shown first on a `show` line, when present.
_KEY_FIELDS = (
    "intent_id", "order_id", "perm_id", "exec_id", "symbol", "con_id", "action", "side",
    "quantity", "qty", "order_type", "limit_price", "price", "status", "allowed", "reasons",
    "reason", "state", "event", "message",
)  # fmt: skip
_MAX_FIELDS_WIDTH = 160
_MAX_PROBLEM_LINES = 50


# -- the functions behind the sub-commands ----------------------------------------------------


def _format_value(value: JsonValue) -> str:
    plain = isinstance(value, str) and value.isprintable() and value
    if plain and not any(c.isspace() or c in "=\"'" for c in str(value)):
        return str(value)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if not text.isprintable():  # control characters from a broker message: never raw to a tty
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text


def format_entry(entry: Entry) -> str:
    """One human line: seq, time (UTC), kind, short hash, key payload fields first."""
    keys = [k for k in _KEY_FIELDS if k in entry.payload]
    keys += sorted(k for k in entry.payload if k not in _KEY_FIELDS)
    fields = " ".join(f"{k}={_format_value(entry.payload[k])}" for k in keys)
    if len(fields) > _MAX_FIELDS_WIDTH:
        fields = fields[: _MAX_FIELDS_WIDTH - 3] + "..."
    ts = entry.ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return f"{entry.seq:>7}  {ts}  {entry.kind.value:<18} {entry.hash[:12]}  {fields}".rstrip()


def show_entries(
    ledger: Ledger,
    since: datetime | None = None,
    kinds: Iterable[EntryKind] | None = None,
) -> Iterator[str]:
    """Lines for ``ibpilot ledger show``, oldest first. Raises LedgerError."""
    for entry in ledger.entries(since=since, kind=None if kinds is None else set(kinds)):
        yield format_entry(entry)


def export_csv(ledger: Ledger, out: TextIO) -> int:
    """Write every entry as CSV (header row; columns CSV_COLUMNS, payload as canonical JSON).

    The columns are the stored strings the hashes cover, so :func:`read_csv` and
    ``ibpilot.ledger.verify_chain`` can check the export on their own. Returns the number of
    entries written. Raises LedgerError; OSError from ``out``.
    """
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for entry in ledger.entries():
        row = entry.to_row()
        writer.writerow(
            (row.seq, row.ts, row.kind, row.spec_hash, row.payload, row.prev_hash, row.hash)
        )
        count += 1
    return count


def read_csv(source: TextIO) -> Iterator[StoredRow]:
    """The rows of an export made by :func:`export_csv`. Raises ValueError if it is not one."""
    reader = csv.reader(source)
    header = next(reader, None)
    if header is None or tuple(header) != CSV_COLUMNS:
        raise ValueError(
            f"not an ibpilot ledger export: the header must be {','.join(CSV_COLUMNS)}"
        )
    for line, fields in enumerate(reader, start=2):
        if len(fields) != len(CSV_COLUMNS):
            raise ValueError(f"line {line}: expected {len(CSV_COLUMNS)} fields, got {len(fields)}")
        seq, ts, kind, spec_hash, payload, prev_hash, digest = fields
        yield StoredRow(int(seq), ts, kind, spec_hash, payload, prev_hash, digest)


def render_report(report: VerifyReport, ledger_id: str, location: str) -> str:
    """The text ``ibpilot ledger verify`` prints."""
    lines = [f"ledger {ledger_id} at {location}"]
    if report.ok:
        lines.append(f"OK: {report.checked} entries, chain unbroken, head record matches")
        lines.append(f"head: seq {report.last.seq} hash {report.last.hash}")
        lines.append("(keep the head hash elsewhere to anchor the ledger up to this entry)")
        return "\n".join(lines)
    count = f"{len(report.problems)}{'+' if report.truncated else ''}"
    lines.append(f"INTEGRITY VIOLATION: {count} problems in {report.checked} entries")
    for problem in report.problems[:_MAX_PROBLEM_LINES]:
        where = "ledger" if problem.seq == 0 else f"seq {problem.seq}"
        lines.append(f"  {where}: {problem.what}")
    if len(report.problems) > _MAX_PROBLEM_LINES or report.truncated:
        lines.append(f"  ... and more ({count} in all)")
    return "\n".join(lines)


# -- argument parsing -------------------------------------------------------------------------


def _kind(text: str) -> EntryKind:
    name = text.strip().upper().replace("-", "_")
    try:
        return EntryKind(name)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown entry kind {text!r}; kinds: {', '.join(k.value for k in EntryKind)}"
        ) from None


def _since(text: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date (2026-03-02, midnight UTC) or an ISO date-time with a UTC offset "
            f"(2026-03-02T09:30:00-05:00 or ...Z), got {text!r}"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add one, e.g. Z or -05:00")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``ibpilot ledger ...`` (the lead's cli.py can mount it as a sub-parser)."""
    parser = argparse.ArgumentParser(
        prog="ibpilot ledger",
        description="Show, verify and export the ledger of what the bot decided and did.",
        epilog="exit codes: 0 ok, 1 error, 2 usage or configuration, 3 integrity violation",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ledger_help = (
        "file path, sqlite:///path or postgresql://user@host:port/db "
        "(default: ibpilot-ledger.sqlite in the current directory)"
    )
    show = sub.add_parser("show", help="print entries, one line each, oldest first")
    show.add_argument("--since", type=_since, help="only entries at or after this time")
    show.add_argument(
        "--kind", type=_kind, action="append", metavar="KIND", help="only this kind (repeatable)"
    )
    verify = sub.add_parser("verify", help="check the hash chain; exit 3 if it is broken")
    export = sub.add_parser("export", help="write every entry as CSV")
    export.add_argument("--csv", action="store_true", required=True, help="CSV format")
    export.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    for p in (show, verify, export):
        p.add_argument("--ledger", metavar="URL", help=ledger_help)
    return parser


def run_ledger_command(
    argv: Sequence[str],
    *,
    directory: Path | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``ibpilot ledger <argv>``; returns the exit code (see the module docstring)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = build_parser().parse_args(list(argv))
    except SystemExit as e:  # argparse has printed usage or help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        ledger = open_ledger(args.ledger, directory or Path.cwd(), create=False)
        try:
            return _run(args, ledger, out)
        finally:
            ledger.close()
    except LedgerError as e:
        print(f"ibpilot ledger: error: {e}", file=err)
        return _exit_code(e)
    except OSError as e:
        print(f"ibpilot ledger: error: {e.strerror or e} ({e.filename or 'output'})", file=err)
        return EXIT_ERROR


def _exit_code(error: LedgerError) -> int:
    if isinstance(error, LedgerIntegrityError):
        return EXIT_INTEGRITY
    if isinstance(error, LedgerConfigError):
        return EXIT_USAGE
    return EXIT_ERROR


def _run(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    if args.command == "show":
        for line in show_entries(ledger, args.since, args.kind):
            print(line, file=out)
        return EXIT_OK
    if args.command == "verify":
        report = ledger.verify()
        print(render_report(report, ledger.ledger_id, ledger.location), file=out)
        return EXIT_OK if report.ok else EXIT_INTEGRITY
    if args.output is None:
        export_csv(ledger, out)
        return EXIT_OK
    with args.output.open("w", newline="", encoding="utf-8") as f:
        export_csv(ledger, f)
    return EXIT_OK

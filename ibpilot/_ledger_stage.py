"""Stage files: ledger entries made durable before the wire and chained after it.

A SQLite ledger at ``PATH`` stages (:meth:`ibpilot.ledger.Ledger.stage`) into
``PATH.staged-<8 hex>``: one file per open ledger object, made at its first stage with mode
0600 and held under an exclusive ``flock`` for the object's lifetime, so a stage file whose
lock can be taken has a dead owner. A new file is made under another name
(``PATH.staging-<hex>``) and linked to its own once locked: every ``.staged-`` file is locked
from birth, and a recovering process never takes one that is being born. Each stage is one
``os.write`` of one line per batch (:func:`ibpilot.ledger.stage_batch`), with an
``fdatasync`` when the ledger's sync is ``full``; the file is emptied once its entries are
committed to the chain and removed when the ledger closes empty. After a crash the next
process opening the ledger claims the file (:func:`claim_orphan`) and appends what it holds
that the chain does not.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from ibpilot.ledger import LedgerIntegrityError, StagedBatch, parse_staged_line

__all__ = ["STAGED_INFIX", "Orphan", "StageFile", "claim_orphan", "orphan_candidates"]

log = logging.getLogger("ibpilot.ledger")

STAGED_INFIX = ".staged-"
_BIRTH_INFIX = ".staging-"
_CREATE_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_LOCK = fcntl.LOCK_EX | fcntl.LOCK_NB


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StageFile:
    """This process's stage file for one ledger object. Not thread-safe: the ledger's write
    lock guards it. Every method raises OSError when the file system fails."""

    def __init__(self, path: Path, fd: int, *, fsync: bool) -> None:
        self.path = path
        self._fd = fd
        self._fsync = fsync
        self._size = 0

    @classmethod
    def create(cls, database: Path, *, fsync: bool) -> StageFile:
        """A new, empty, locked stage file next to ``database``."""
        token = secrets.token_hex(4)
        birth = database.with_name(f"{database.name}{_BIRTH_INFIX}{token}")
        path = database.with_name(f"{database.name}{STAGED_INFIX}{token}")
        fd = os.open(birth, _CREATE_FLAGS, 0o600)
        try:
            fcntl.flock(fd, _LOCK)  # nobody else knows the name yet: cannot block
            os.link(birth, path)  # unlike rename, never replaces a file (1 in 4 billion)
            birth.unlink()
            if fsync:
                _fsync_directory(path.parent)
        except BaseException:
            os.close(fd)
            with suppress(OSError):
                birth.unlink()
            raise
        return cls(path, fd, fsync=fsync)

    def write(self, blob: bytes) -> None:
        """Append ``blob`` (whole lines) in one write; durable as the ledger's sync says when
        this returns. On failure the file is cut back to what it held before."""
        view, done = memoryview(blob), 0
        try:
            while done < len(blob):  # a short write continues where it stopped
                done += os.write(self._fd, view[done:])
            if self._fsync:
                os.fdatasync(self._fd)
        except BaseException:
            with suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(blob)

    def clear(self) -> None:
        """Empty the file: its entries are in the chain."""
        os.ftruncate(self._fd, 0)
        self._size = 0

    def close(self) -> None:
        """Release the file: removed if empty, else left (locked no more) for recovery."""
        try:
            if self._size == 0:
                self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:  # an empty file left behind: the next open removes it
            log.warning("cannot remove the stage file %s: %s", self.path, e)
        finally:
            os.close(self._fd)


@dataclass(slots=True)
class Orphan:
    """A dead owner's stage file, locked by this process, and the batches it holds."""

    path: Path
    fd: int
    batches: list[StagedBatch]

    def discard(self) -> None:
        """Remove the file (its entries are in the chain) and release it."""
        try:
            with suppress(FileNotFoundError):
                self.path.unlink()
        finally:
            self.release()

    def release(self) -> None:
        """Release the file, leaving it for a later recovery."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def orphan_candidates(database: Path) -> list[Path]:
    """The stage files next to ``database``, oldest first (by modification time)."""
    prefix = f"{database.name}{STAGED_INFIX}"
    found: list[tuple[float, str, Path]] = []
    with os.scandir(database.parent) as listing:
        for item in listing:
            if item.name.startswith(prefix):
                with suppress(FileNotFoundError):  # its owner closed it meanwhile
                    found.append((item.stat().st_mtime, item.name, Path(item.path)))
    return [path for _, _, path in sorted(found)]


def claim_orphan(path: Path) -> Orphan | None:
    """Lock and read a stage file whose owner is dead; None if it is alive or gone.

    Raises LedgerIntegrityError (the file released) when a line other than the last is not a
    staged batch; a bad last line is a torn write (a power loss) and is dropped with a warning.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, _LOCK)
    except BlockingIOError:  # its owner is alive
        os.close(fd)
        return None
    orphan = Orphan(path, fd, [])
    try:
        if not _still_named(path, fd):  # its owner or another recovery removed it
            orphan.release()
            return None
        orphan.batches = _parse(path, _read_all(fd))
    except BaseException:
        orphan.release()
        raise
    return orphan


def _still_named(path: Path, fd: int) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(path: Path, data: bytes) -> list[StagedBatch]:
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the file ends with a newline, as every complete write does
    batches: list[StagedBatch] = []
    for number, line in enumerate(lines, 1):
        try:
            batches.append(parse_staged_line(line))
        except ValueError as e:
            if number < len(lines):
                raise LedgerIntegrityError(
                    f"stage file {path} line {number} is not a staged batch ({e}); "
                    "move the file away to open the ledger, and keep it for inspection"
                ) from None
            log.warning(
                "dropped the last line of stage file %s: a write torn by a power loss (%s)",
                path,
                e,
            )
    return batches

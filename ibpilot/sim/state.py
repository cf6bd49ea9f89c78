"""``--state FILE``: the gateway's orders, executions, account and order-id counter
survive a restart of the simulator process, as they survive a restart of IB Gateway.

The file is JSON, written atomically (a temporary file renamed over the old one, after
fsync) whenever orders or fills changed, at most once a second, and on shutdown.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ibpilot.sim.matching import OrderEngine

if TYPE_CHECKING:
    from ibpilot.sim.core import GatewayCore

STATE_VERSION = 1


class StateFileError(ValueError):
    """The state file cannot be read back: it names the file and what is wrong."""


def snapshot(core: GatewayCore) -> dict[str, Any]:
    """Everything that must outlive the process, as JSON-safe data."""
    return {
        "version": STATE_VERSION,
        "account": core.config.account,
        "saved_at": datetime.now(UTC).isoformat(),
        "simulated_time": core.clock.now(),
        "next_order_id": core.next_order_id(),
        "engine": core.desk.engine.to_dict(),
    }


def save(core: GatewayCore, path: Path) -> None:
    """Write the state atomically: a crash mid-write leaves the previous file intact."""
    data = json.dumps(snapshot(core), separators=(",", ":"), sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(core: GatewayCore, path: Path) -> bool:
    """Restore from ``path`` if it exists; returns whether anything was restored.

    The simulated clock resumes from the saved time when that is later than its start
    (the gateway's clock never runs backwards).  Raises StateFileError.
    """
    if not path.exists():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateFileError(f"{path}: cannot read the simulator state: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise StateFileError(
            f"{path}: not an ibpilot simulator state file (expected version {STATE_VERSION})"
        )
    if data.get("account") != core.config.account:
        raise StateFileError(
            f"{path}: holds account {data.get('account')!r}, but this gateway serves "
            f"{core.config.account!r} (pass --account {data.get('account')} or another file)"
        )
    try:
        engine = OrderEngine.from_dict(data["engine"], core.refdata, core.market)
        next_id = int(data["next_order_id"])
        saved_time = float(data["simulated_time"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StateFileError(f"{path}: damaged simulator state: {exc}") from None
    core.desk.engine = engine
    core.reserve_order_ids(next_id - 1)
    if saved_time > core.clock.now():
        core.clock.jump_to(datetime.fromtimestamp(saved_time, UTC))
    return True

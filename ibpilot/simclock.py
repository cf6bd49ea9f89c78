"""Follow an accelerated ``ibpilot sim``'s clock from another process.

The simulator's admin endpoint reports its simulated time and speed; from one reading
the simulated now is ``sim_then + (wall_now - wall_then) * speed``, which is what the
simulator itself computes.  Used by ``ibpilot start --clock sim`` so that the gate's
trading hours and order-rate rules, and the ledger's timestamps, use simulated time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime


class SimClockError(Exception):
    """The simulator's clock could not be read; the message says why and what to do."""


async def read_sim_clock(host: str, admin_port: int) -> Callable[[], datetime]:
    """A clock following the simulator whose admin endpoint is ``host:admin_port``."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, admin_port), timeout=5
        )
    except (OSError, TimeoutError):
        raise SimClockError(
            f"--clock sim: no simulator admin endpoint on {host}:{admin_port} (it listens on "
            "the simulator's port + 1 unless `ibpilot sim --admin-port` moved it)"
        ) from None
    try:
        wall_before = time.time()
        writer.write(b'{"cmd": "status"}\n')
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=5)
        wall_after = time.time()
    finally:
        writer.close()
    try:
        status = json.loads(line)
        sim_then = datetime.fromisoformat(status["simulated_time"]).timestamp()
        speed = float(status["speed"])
    except (ValueError, KeyError, TypeError):
        raise SimClockError(
            f"--clock sim: {host}:{admin_port} is not an ibpilot simulator"
        ) from None
    wall_then = (wall_before + wall_after) / 2

    def now() -> datetime:
        return datetime.fromtimestamp(sim_then + (time.time() - wall_then) * speed, UTC)

    return now

"""What IB does to a connection, on demand.

``gateway.faults`` (a :class:`Faults`) injects, from Python or through the admin
endpoint (``ibpilot sim-ctl``):

- ``drop_all()``: every client socket closes at once;
- ``restart(down, rollback_ids)``: the gateway process restarts: sockets close,
  connections are refused for ``down`` seconds, then it listens again with its
  state kept (optionally with nextValidId rolled back, as IB has been seen to do);
- ``connectivity_lost()`` / ``connectivity_restored(data_lost)``: IB's 1100, then 1101
  (market-data subscriptions lost) or 1102 (kept), sockets stay up;
- ``farm(name, ok)``: market data (2103/2104; live data stops meanwhile), HMDS
  (2105/2106), sec-def (2157/2158);
- ``silence(symbols, existing_only)`` / ``unsilence()``: live data stops with no error and the
  subscriptions kept (a dead feed); ``existing_only``: a new subscription gets data again;
- ``read_only(on)``; ``reject_next(count, reason)``; ``delay(ms)``;
- ``half_open(on)``: new connections are accepted and never answered;
- ``hold_client_id(id)`` / ``release_client_id(id)``: a stale session keeps an id in use;
- ``schedule_restart(at, down, rollback_ids)``: a nightly restart at a simulated time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ibpilot.sim.server import SimGateway

log = logging.getLogger("ibpilot.sim")

CONNECTIVITY_LOST = (1100, "Connectivity between IB and Trader Workstation has been lost.")
RESTORED_DATA_LOST = (1101, "Connectivity between IB and TWS has been restored- data lost.")
RESTORED_DATA_KEPT = (
    1102,
    "Connectivity between IB and Trader Workstation has been restored - data maintained.",
)

FARMS: dict[str, tuple[tuple[int, str], tuple[int, str]]] = {
    "market": (
        (2103, "Market data farm connection is broken:usfarm"),
        (2104, "Market data farm connection is OK:usfarm"),
    ),
    "hmds": (
        (2105, "HMDS data farm connection is broken:ushmds"),
        (2106, "HMDS data farm connection is OK:ushmds"),
    ),
    "secdef": (
        (2157, "Sec-def data farm connection is broken:secdefnj"),
        (2158, "Sec-def data farm connection is OK:secdefnj"),
    ),
}


class FaultError(ValueError):
    """A fault command with a bad argument; the message says which and what was expected."""


@dataclass(frozen=True, slots=True)
class ScheduledRestart:
    at: float  # simulated epoch seconds
    down: float  # real seconds refusing connections
    rollback_ids: int


class Faults:
    """Fault injection for one gateway."""

    def __init__(self, gateway: SimGateway) -> None:
        self._gw = gateway
        self.delay_ms = 0
        self.half_open_on = False
        self.connectivity_up = True
        self.farms_up: dict[str, bool] = dict.fromkeys(FARMS, True)
        self.scheduled: list[ScheduledRestart] = []
        self.restarting = False
        self._tasks: set[asyncio.Task[None]] = set()

    # --- sockets ----------------------------------------------------------------
    def drop_all(self) -> int:
        """Close every client socket; returns how many were open."""
        count = self._gw.connection_count
        self._gw.drop_all_clients()
        log.warning("fault: dropped %d client socket(s)", count)
        return count

    async def restart(self, down: float = 5.0, rollback_ids: int = 0) -> None:
        """Restart the gateway: close all, refuse connections for ``down`` s, come back."""
        if down < 0:
            raise FaultError(f"restart: 'down' must be >= 0 seconds, got {down}")
        if rollback_ids < 0:
            raise FaultError(f"restart: 'rollback_ids' must be >= 0, got {rollback_ids}")
        self.restarting = True
        try:
            log.warning("fault: gateway restart, refusing connections for %.1f s", down)
            await self._gw.stop_listening()
            self._gw.drop_all_clients()
            self._gw.core.release_all_sessions()
            await asyncio.sleep(down)
            if rollback_ids:
                self._gw.core.roll_back_order_ids(rollback_ids)
            self.connectivity_up = True
            self.farms_up = dict.fromkeys(FARMS, True)
            self._gw.core.market_farm_up = True
            await self._gw.start_listening()
            log.warning("fault: gateway is back on port %d", self._gw.port)
        finally:
            self.restarting = False

    def start_restart(self, down: float = 5.0, rollback_ids: int = 0) -> None:
        """Begin a restart in the background (for callers that cannot await it)."""
        task = asyncio.get_running_loop().create_task(self.restart(down, rollback_ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def schedule_restart(self, at: datetime, down: float = 5.0, rollback_ids: int = 0) -> None:
        """Restart when the simulated clock reaches ``at`` (a nightly restart)."""
        if at.tzinfo is None:
            raise FaultError("schedule_restart: 'at' must carry a time zone")
        self.scheduled.append(ScheduledRestart(at.timestamp(), down, rollback_ids))
        self.scheduled.sort(key=lambda s: s.at)

    def due(self, now: float) -> None:
        """Start any scheduled restart whose time has come (called by the feed loop)."""
        while self.scheduled and self.scheduled[0].at <= now and not self.restarting:
            job = self.scheduled.pop(0)
            when = datetime.fromtimestamp(job.at, UTC).isoformat()
            log.warning("fault: scheduled restart at simulated %s", when)
            self.start_restart(job.down, job.rollback_ids)

    def half_open(self, on: bool = True) -> None:
        """New connections are accepted and then never answered (a wedged gateway)."""
        self.half_open_on = on

    def delay(self, ms: int) -> None:
        """Delay every message the gateway sends by ``ms`` milliseconds (order kept)."""
        if ms < 0:
            raise FaultError(f"delay: 'ms' must be >= 0, got {ms}")
        self.delay_ms = ms

    def hold_client_id(self, client_id: int) -> None:
        """A stale session keeps ``client_id`` in use: connects with it get error 326."""
        self._gw.core.hold_client_id(client_id)

    def release_client_id(self, client_id: int) -> None:
        """End the stale session holding ``client_id``."""
        self._gw.core.release_client_id(client_id)

    # --- IB-side connectivity, sockets kept ------------------------------------------
    def connectivity_lost(self) -> None:
        """IB 1100 to every client: the gateway lost IB; the API sockets stay up."""
        self.connectivity_up = False
        self._broadcast(*CONNECTIVITY_LOST)

    def connectivity_restored(self, data_lost: bool = False) -> None:
        """1101 (market-data subscriptions dropped) or 1102 (kept) to every client."""
        self.connectivity_up = True
        if data_lost:
            self._gw.core.feed.drop_all_market_data()
            self._broadcast(*RESTORED_DATA_LOST)
        else:
            self._broadcast(*RESTORED_DATA_KEPT)

    def farm(self, name: str, ok: bool) -> None:
        """A data farm goes down (2103/2105/2157) or comes back (2104/2106/2158)."""
        if name not in FARMS:
            raise FaultError(f"farm: 'name' must be one of {sorted(FARMS)}, got {name!r}")
        self.farms_up[name] = ok
        if name == "market":
            self._gw.core.market_farm_up = ok
        code, text = FARMS[name][1 if ok else 0]
        self._broadcast(code, text)

    def silence(self, symbols: list[str] | None = None, existing_only: bool = True) -> int:
        """Live data of ``symbols`` (None: all) stops with no error, the subscriptions kept;
        with ``existing_only`` a new subscription gets data again.  Returns how many
        subscriptions went silent.  Raises FaultError for a symbol the simulator lacks."""
        from ibpilot.sim.refdata import ContractQuery  # noqa: PLC0415 (only here)

        con_ids = None
        if symbols is not None:
            today = self._gw.clock.now_dt().date()
            found = {
                s: self._gw.core.refdata.resolve(ContractQuery(symbol=s), today) for s in symbols
            }
            unknown = sorted(s for s, insts in found.items() if not insts)
            if unknown:
                raise FaultError(f"silence: 'symbols' has symbols the simulator lacks: {unknown}")
            con_ids = frozenset(i.con_id for insts in found.values() for i in insts)
        count = self._gw.core.feed.silence(con_ids, existing_only)
        log.warning("fault: %d market-data subscriptions silenced", count)
        return count

    def unsilence(self) -> None:
        """Every silenced feed flows again."""
        self._gw.core.feed.unsilence()

    # --- orders (handled by the order engine) --------------------------------------
    def read_only(self, on: bool = True) -> None:
        """Read-only API: placing, modifying and cancelling orders get error 321."""
        self._gw.core.read_only = on

    def reject_next(self, count: int = 1, reason: str = "Simulated rejection") -> None:
        """The next ``count`` orders are rejected with error 201 and ``reason``."""
        if count < 0:
            raise FaultError(f"reject_next: 'count' must be >= 0, got {count}")
        self._gw.core.reject_next(count, reason)

    def _broadcast(self, code: int, text: str) -> None:
        for session in list(self._gw.core.sessions.values()):
            session.error(-1, code, text)

    # --- the admin endpoint's dispatcher -----------------------------------------
    async def command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run one fault by name with keyword arguments (the admin protocol)."""
        handlers: dict[str, Callable[[], Any]] = {
            "drop": lambda: {"dropped": self.drop_all()},
            "restart": lambda: self.start_restart(
                float(args.get("down", 5.0)), int(args.get("rollback_ids", 0))
            ),
            "lost": self.connectivity_lost,
            "restored": lambda: self.connectivity_restored(bool(args.get("data_lost", False))),
            "farm": lambda: self.farm(str(args.get("name", "")), bool(args.get("ok", False))),
            "silence": lambda: {
                "silenced": self.silence(
                    _symbols(args.get("symbols")), bool(args.get("existing_only", True))
                )
            },
            "unsilence": self.unsilence,
            "read-only": lambda: self.read_only(bool(args.get("on", True))),
            "reject-next": lambda: self.reject_next(
                int(args.get("count", 1)), str(args.get("reason", "Simulated rejection"))
            ),
            "delay": lambda: self.delay(int(args.get("ms", 0))),
            "half-open": lambda: self.half_open(bool(args.get("on", True))),
            "hold-client-id": lambda: self.hold_client_id(int(args["client_id"])),
            "release-client-id": lambda: self.release_client_id(int(args["client_id"])),
            "schedule-restart": lambda: self.schedule_restart(
                datetime.fromisoformat(str(args["at"])),
                float(args.get("down", 5.0)),
                int(args.get("rollback_ids", 0)),
            ),
            "status": self.status,
        }
        handler = handlers.get(name)
        if handler is None:
            raise FaultError(f"unknown command {name!r}; expected one of {sorted(handlers)}")
        try:
            result = handler()
        except KeyError as exc:
            raise FaultError(f"{name}: missing argument {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FaultError):
                raise
            raise FaultError(f"{name}: {exc}") from None
        return result if isinstance(result, dict) else {"ok": True}

    def status(self) -> dict[str, Any]:
        """The gateway's state as the admin endpoint reports it."""
        core = self._gw.core
        return {
            "port": self._gw.port if self._gw.listening else None,
            "listening": self._gw.listening,
            "clients": sorted(core.sessions),
            "held_client_ids": sorted(core.held_client_ids),
            "simulated_time": self._gw.clock.now_dt().isoformat(),
            "speed": self._gw.clock.speed,
            "connectivity_up": self.connectivity_up,
            "farms_up": dict(self.farms_up),
            "read_only": core.read_only,
            "delay_ms": self.delay_ms,
            "half_open": self.half_open_on,
            "market_data_lines_in_use": core.lines.in_use,
            "next_order_id": core.next_order_id(),
            "scheduled_restarts": [
                datetime.fromtimestamp(s.at, UTC).isoformat() for s in self.scheduled
            ],
        }


def _symbols(value: object) -> list[str] | None:
    """``symbols`` as sim-ctl sends it ("AAPL,MSFT") or as JSON (a list); None: all."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(value)
    raise FaultError(f"silence: 'symbols' must be a list or AAPL,MSFT text, got {value!r}")

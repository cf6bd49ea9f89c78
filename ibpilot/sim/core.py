"""The gateway's shared state, independent of sockets.

One :class:`GatewayCore` per simulated gateway: the clock, reference data, the
price model, the accounts and their order-id counters, the limits that IB
enforces across a user's clients, and the registry of connected clients.  The
asyncio server (``server.py``) is a thin shell that feeds it bytes and time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from ibpilot.sim.clock import SimClock
from ibpilot.sim.limits import HistoricalPacing, LineBudget
from ibpilot.sim.market import MarketModel
from ibpilot.sim.refdata import RefData

if TYPE_CHECKING:
    from ibpilot.sim.feed import MarketFeed
    from ibpilot.sim.session import ClientSession
    from ibpilot.sim.trading import TradingDesk

log = logging.getLogger("ibpilot.sim")

MAX_CLIENTS = 32  # IB: up to 32 API clients per TWS/Gateway session


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything a simulated gateway can be told at start."""

    host: str = "127.0.0.1"
    port: int = 4102
    seed: int = 1
    account: str = "DU0000001"
    market_data_lines: int = 100
    message_rate: int = 50  # messages per second per client
    message_rate_warn_at: int | None = None  # default: 90% of the limit
    message_rate_max_violations: int = 3  # error 100s before the socket is closed
    max_clients: int = MAX_CLIENTS
    farm_notices: tuple[int, ...] = (2104, 2106, 2158)
    pacing_max_bar_seconds: int = 30
    starting_cash: Decimal = Decimal(1_000_000)
    extra_refdata: tuple[str, ...] = field(default_factory=tuple)


class ClientIdInUse(Exception):
    """A client connected with a client id another live connection holds (IB 326)."""


class TooManyClients(Exception):
    """The gateway already serves its maximum number of API clients."""


class GatewayCore:
    """State shared by every client of one simulated gateway."""

    def __init__(
        self,
        config: SimConfig,
        clock: SimClock,
        refdata: RefData,
        market: MarketModel,
        real_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from ibpilot.sim.feed import MarketFeed  # noqa: PLC0415 (feed imports core)
        from ibpilot.sim.trading import TradingDesk  # noqa: PLC0415 (it imports feed)

        self.config = config
        self.clock = clock
        self.real_clock = real_clock  # real seconds, for IB's API-traffic limits
        self.refdata = refdata
        self.market = market
        self.accounts: list[str] = [config.account]
        self._next_order_id: dict[str, int] = {config.account: 1}
        self.lines = LineBudget(config.market_data_lines)
        self.pacer = HistoricalPacing(max_bar_seconds=config.pacing_max_bar_seconds)
        self.sessions: dict[int, ClientSession] = {}
        self.held_client_ids: set[int] = set()  # stale sessions (a fault)
        self.feed: MarketFeed = MarketFeed(self)
        self.desk: TradingDesk = TradingDesk(self, config.starting_cash)
        self.market_farm_up = True  # while the market-data farm is broken, live data stops

    def advance(self, now: float) -> None:
        """Step everything that runs on the simulated clock up to ``now``."""
        self.feed.advance(now)
        self.desk.advance(now)

    @property
    def read_only(self) -> bool:
        """IB's "Read-Only API" setting: orders cannot be placed, modified or cancelled."""
        return self.desk.engine.read_only

    @read_only.setter
    def read_only(self, on: bool) -> None:
        self.desk.engine.read_only = on

    # --- clients -----------------------------------------------------------------
    def register(self, session: ClientSession) -> None:
        """Admit a client; raises ClientIdInUse or TooManyClients."""
        if session.client_id in self.sessions or session.client_id in self.held_client_ids:
            raise ClientIdInUse(session.client_id)
        if len(self.sessions) >= self.config.max_clients:
            raise TooManyClients(len(self.sessions))
        self.sessions[session.client_id] = session

    def unregister(self, session: ClientSession) -> None:
        """Forget a client and release everything it held."""
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        self.feed.drop_client(session)
        self.desk.drop_client(session)

    def release_all_sessions(self) -> None:
        """Forget every client at once (the gateway process went away)."""
        for session in list(self.sessions.values()):
            session.closed = True
            self.unregister(session)

    def reject_next(self, count: int, reason: str) -> None:
        """The next ``count`` orders placed are rejected (error 201) with ``reason``."""
        self.desk.engine.reject_next(count, reason)

    def hold_client_id(self, client_id: int) -> None:
        """A stale session keeps ``client_id`` in use until released."""
        self.held_client_ids.add(client_id)

    def release_client_id(self, client_id: int) -> None:
        """End a stale session."""
        self.held_client_ids.discard(client_id)

    # --- order ids ----------------------------------------------------------------
    def next_order_id(self, account: str | None = None) -> int:
        """The next valid order id of an account; never goes backwards."""
        return self._next_order_id[account or self.accounts[0]]

    def roll_back_order_ids(self, count: int, account: str | None = None) -> None:
        """Move nextValidId back by ``count`` (IB has been seen to after a restart)."""
        key = account or self.accounts[0]
        self._next_order_id[key] = max(1, self._next_order_id[key] - count)

    def reserve_order_ids(self, used: int, account: str | None = None) -> None:
        """Note that ``used`` was taken: the next valid id moves past it."""
        key = account or self.accounts[0]
        self._next_order_id[key] = max(self._next_order_id[key], used + 1)

"""The one interface the runtime talks to: a broker, live (IB) or simulated in-process.

The engine, the OMS and the dashboard see only these types.  Money, prices and
quantities that can reach the ledger are Decimals; times are UTC-aware datetimes.
The broker never decides anything: it connects, reports, and does what the OMS
asks, carrying the OMS's intent id in IB's ``orderRef`` so orders can be matched
to intents after any reconnect or restart.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypeAlias

from ibpilot.errors import CatalogueEntry


class ConnectionState(enum.StrEnum):
    """The broker link as the runtime sees it."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    IB_LOST = "ib_lost"  # socket up, IB unreachable (1100)
    RECONNECTING = "reconnecting"


@dataclass(frozen=True, slots=True)
class ContractRef:
    """What a user names: a symbol and IB's qualifiers (con_id wins when given)."""

    symbol: str
    sec_type: str = "STK"
    exchange: str = "SMART"
    currency: str = "USD"
    primary_exchange: str = ""
    last_trade_date_or_contract_month: str = ""
    strike: Decimal | None = None
    right: str = ""
    multiplier: str = ""
    con_id: int = 0


@dataclass(frozen=True, slots=True)
class Contract:
    """A contract the broker resolved (IB's contract details, the fields we use)."""

    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    primary_exchange: str = ""
    local_symbol: str = ""
    min_tick: Decimal = Decimal("0.01")
    multiplier: Decimal = Decimal(1)
    time_zone: str = "US/Eastern"
    long_name: str = ""
    # The exchange's liquid (regular) hours as UTC [open, close) pairs, and the stretch of time
    # they account for (IB's contract details describe about a week; None: not known at all).
    liquid_hours: tuple[tuple[datetime, datetime], ...] = ()
    liquid_hours_known: tuple[datetime, datetime] | None = None

    def liquid_sessions(self, now: datetime) -> tuple[tuple[datetime, datetime], ...] | None:
        """The liquid hours if they are known at ``now`` (an empty tuple: closed around
        ``now``), else None: outside the stretch IB described, the hours are unknown."""
        known = self.liquid_hours_known
        if known is None or not known[0] <= now < known[1]:
            return None
        return self.liquid_hours


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the broker learned at connect."""

    accounts: tuple[str, ...]
    server_version: int
    host: str
    port: int
    client_id: int
    connected_at: datetime


@dataclass(frozen=True, slots=True)
class Quote:
    con_id: int
    time: datetime
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Bar:
    con_id: int
    time: datetime  # bar start
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order the OMS wants sent; ``intent_id`` travels in IB's orderRef."""

    intent_id: str
    contract: Contract
    side: Side
    quantity: Decimal
    order_type: str = "MKT"  # IB's spelling: MKT, LMT, STP, STP LMT, MOC, LOC, MIT, LIT
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    tif: str = "DAY"
    outside_rth: bool = False


class BrokerOrderStatus(enum.StrEnum):
    """IB's order states (wire strings), as the broker reports them."""

    PENDING_SUBMIT = "PendingSubmit"
    PRE_SUBMITTED = "PreSubmitted"
    SUBMITTED = "Submitted"
    PENDING_CANCEL = "PendingCancel"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    API_CANCELLED = "ApiCancelled"
    INACTIVE = "Inactive"


@dataclass(frozen=True, slots=True)
class OrderReport:
    """The broker's view of one order (openOrder/orderStatus, or a completed order)."""

    intent_id: str  # orderRef ("" for orders not placed by ibpilot)
    order_id: int
    perm_id: int
    con_id: int
    side: Side
    quantity: Decimal
    filled: Decimal
    remaining: Decimal
    status: BrokerOrderStatus
    avg_fill_price: Decimal | None
    time: datetime


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """One fill (execDetails), with its commission when known (commissionReport)."""

    exec_id: str
    intent_id: str
    order_id: int
    perm_id: int
    con_id: int
    side: Side
    quantity: Decimal
    price: Decimal
    time: datetime
    commission: Decimal | None = None
    realized_pnl: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Position:
    con_id: int
    symbol: str
    quantity: Decimal
    avg_cost: Decimal


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    account: str
    net_liquidation: Decimal
    cash: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    buying_power: Decimal


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """The link changed state; ``code``/``name`` from IB's message when there was one."""

    state: ConnectionState
    time: datetime
    code: int | None = None
    name: str = ""  # the catalogue's name, e.g. CONNECTIVITY_LOST
    message: str = ""
    data_lost: bool = False  # 1101: market-data subscriptions must be renewed


@dataclass(frozen=True, slots=True)
class BrokerError:
    """An IB error mapped to the catalogue (errors.py); ``intent_id`` when about an order."""

    code: int
    name: str
    message: str
    time: datetime
    intent_id: str = ""
    terminal: bool = False  # ends the order or request it is about


BrokerEvent: TypeAlias = Quote | Bar | OrderReport | ExecutionReport | ConnectionEvent | BrokerError


def _render(entry: CatalogueEntry, detail: str) -> str:
    detail = detail.strip().rstrip(".")
    lead = f"{entry.name} - {detail}. " if detail else f"{entry.name} - "
    return f"{lead}{entry.cause} Fix: {entry.fix}"


class BrokerConnectError(Exception):
    """Connecting failed: ``entry`` is the catalogue's name, cause and fix; ``detail`` says more.

    ``info`` is set when the API handshake itself succeeded (e.g. WRONG_ENVIRONMENT: the gateway
    answered, but for the wrong account); the connection is closed again either way.
    ``str()`` is one line: ``NAME - detail. cause Fix: fix``.
    """

    def __init__(
        self, entry: CatalogueEntry, detail: str, info: ConnectionInfo | None = None
    ) -> None:
        self.entry = entry
        self.detail = detail
        self.info = info
        super().__init__(_render(entry, detail))


class BrokerRequestError(Exception):
    """One request failed (no such contract, ambiguous, pacing, not connected...); the link lives.

    ``code`` is IB's error code when IB answered with one.  ``str()`` is one line, as for
    :class:`BrokerConnectError`.
    """

    def __init__(self, entry: CatalogueEntry, detail: str, code: int | None = None) -> None:
        self.entry = entry
        self.detail = detail
        self.code = code
        super().__init__(_render(entry, detail))


class Broker(Protocol):
    """What the runtime needs from a broker; IB's adapter and the paper broker implement it."""

    async def connect(self) -> ConnectionInfo:
        """Connect (raises BrokerConnectError naming the catalogue entry on failure)."""
        ...

    async def disconnect(self) -> None: ...

    def events(self) -> AsyncIterator[BrokerEvent]:
        """Every event from now on, in order, until disconnect."""
        ...

    async def resolve(self, ref: ContractRef) -> Contract:
        """One contract (raises BrokerRequestError NO_SECURITY_DEFINITION / ambiguous)."""
        ...

    async def history(
        self, contract: Contract, *, end: datetime | None, duration: str, bar_size: str,
        what_to_show: str = "TRADES", use_rth: bool = True,
    ) -> list[Bar]:  # fmt: skip
        """Historical bars, paced so IB never refuses them."""
        ...

    async def subscribe(self, contract: Contract) -> None:
        """Stream quotes (and 5-second bars) of a contract."""
        ...

    async def unsubscribe(self, contract: Contract) -> None: ...

    async def place(self, order: OrderRequest) -> int:
        """Send an order; returns IB's order id.  Never called twice for one intent."""
        ...

    def reserve_order_ids(self, up_to: int) -> None:
        """Never use an order id at or below ``up_to`` (used before, per the ledger)."""
        ...

    async def cancel(self, intent_id: str) -> None: ...

    async def open_orders(self) -> Sequence[OrderReport]:
        """Every open order of this account (reqAllOpenOrders), for reconciliation."""
        ...

    async def completed_orders(self) -> Sequence[OrderReport]: ...

    async def executions(self, since: datetime | None = None) -> Sequence[ExecutionReport]: ...

    async def positions(self) -> Sequence[Position]: ...

    async def account(self) -> AccountSnapshot: ...

"""What the engine shows of itself: :class:`EngineStatus`, a snapshot for the CLI and the
dashboard, and :class:`DecisionRecord`, one gate decision in it.  Plain frozen records, built by
:meth:`ibpilot.engine.Engine.status` (and importable from :mod:`ibpilot.engine`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ibpilot.broker.base import ConnectionState
from ibpilot.config import Environment
from ibpilot.gate import LinkState, TradingState
from ibpilot.oms import Intent, Reconciliation


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One gate decision, for the status view."""

    time: datetime
    source: str
    symbol: str
    side: str
    quantity: Decimal
    allowed: bool
    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """A snapshot for the CLI and the dashboard."""

    running: bool
    environment: Environment
    strategy: str
    spec_hash: str
    connection: ConnectionState
    trading_state: TradingState
    halt_reason: str | None
    positions: Mapping[str, Decimal]
    marks: Mapping[str, Decimal]
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    open_orders: tuple[Intent, ...]
    last_decisions: tuple[DecisionRecord, ...]
    strategy_errors: int
    last_reconciliation: Reconciliation | None
    link: LinkState = LinkState.UP  # as the gate sees it: up, ib_lost, disconnected, reconciling
    down_since: datetime | None = None  # the current outage's start
    stale_symbols: tuple[str, ...] = ()  # reported silent while their market is open
    farms_down: tuple[int, ...] = ()  # IB's broken-farm codes in force (2103, 2105, 2157)
    alerts: Mapping[str, int] | None = None  # the notifier's counters

"""``ibpilot test``: check an ``adapter.json`` against the gateway it names, one line per check.

::

    [ibpilot] Adapter: ibkr (adapter.json)
    [ibpilot] Connection: OK (IB Gateway (paper) on 127.0.0.1:4002)
    [ibpilot] Client ID: 1
    [ibpilot] Account: paper (DU0000001)
    [ibpilot] Server version: 178
    [ibpilot] Rate limit: 50 messages/second (ibpilot paces at 40; orders at least 1000 ms apart)
    [ibpilot] API mode: OK (read-write: orders can be placed)
    [ibpilot] Market data farm: OK (usfarm)
    [ibpilot] HMDS data farm: OK (ushmds)
    [ibpilot] Sec-def data farm: OK (secdefnj)
    [ibpilot] Trading pair: AAPL -> conId 265598, SMART/NASDAQ, USD, min tick 0.01
    [ibpilot] Result: OK (all checks passed)

A failed check reads ``<Check>: FAILED <NAME> - <what exactly>. <cause> Fix: <fix>`` with the
catalogue's name, cause and fix; the checks that depend on it are not run.  Exit status: 0 when
every check passed, 1 when one failed, 2 when adapter.json itself is invalid.

It never places an order.  Read-only mode is detected with a cancel of an order id that was
never used (IB answers 321 in read-only mode, 10147 "not found" otherwise): nothing can be
cancelled by it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ibpilot.broker.base import (
    BrokerConnectError,
    BrokerRequestError,
    ConnectionInfo,
    Contract,
    ContractRef,
)
from ibpilot.broker.ibkr import FarmKind, FarmState, FarmStatus, IbkrBroker
from ibpilot.config import AdapterConfig, ConfigError, account_kind, load_adapter, port_product
from ibpilot.errors import ErrorName, by_name

log = logging.getLogger("ibpilot.diagnose")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
IB_MESSAGE_LIMIT = 50  # messages per second per client, IB's rule
Write = Callable[[str], None]

_FARM_LABELS = {
    FarmKind.MARKET: "Market data farm",
    FarmKind.HMDS: "HMDS data farm",
    FarmKind.SECDEF: "Sec-def data farm",
}


def adapter_path(value: str) -> Path:
    """``--adapter``: the adapter name "ibkr" means ./adapter.json; anything else is a path."""
    return Path("adapter.json") if value == "ibkr" else Path(value)


def _failed(name: ErrorName, detail: str) -> str:
    """``FAILED NAME - detail. cause Fix: fix`` from the catalogue."""
    entry = by_name(name)
    return f"FAILED {entry.name} - {detail}. {entry.cause} Fix: {entry.fix}"


class _Report:
    def __init__(self, write: Write) -> None:
        self._write = write
        self.failures: list[str] = []

    def line(self, check: str, text: str) -> None:
        self._write(f"{check}: {text}")

    def fail(self, check: str, error: BrokerConnectError | BrokerRequestError) -> None:
        self.failures.append(check)
        self._write(f"{check}: FAILED {error}")


async def run_test(value: str, write: Write) -> int:
    """Run every check for the adapter named by ``value``; returns the exit status."""
    path = adapter_path(value)
    try:
        adapter = load_adapter(path)
    except ConfigError as exc:
        count = len(exc.problems)
        detail = f"{path} has {count} problem{'s' if count != 1 else ''}"
        write(f"Adapter: {_failed(ErrorName.CONFIG_INVALID, detail)}")
        for problem in exc.problems:
            write(f"  {problem}")
        return EXIT_CONFIG
    write(f"Adapter: {adapter.adapter} ({path})")
    report = _Report(write)
    broker = IbkrBroker(adapter, file=str(path), max_reconnect_attempts=0)
    try:
        info = await _connect(broker, adapter, report)
        if info is not None:
            await _checks(broker, adapter, info, report)
    except Exception as exc:  # a bug of ours: one line for the user, the traceback with -v
        log.debug("ibpilot test failed unexpectedly", exc_info=True)
        report.failures.append("internal error")
        write(f"Internal error: {type(exc).__name__}: {exc} (please report it; -v shows details)")
    finally:
        await broker.disconnect()
    if report.failures:
        write(f"Result: FAILED ({', '.join(report.failures)})")
        return EXIT_FAILED
    write("Result: OK (all checks passed)")
    return EXIT_OK


def _where(adapter: AdapterConfig) -> str:
    host, port = adapter.credentials.host, adapter.credentials.port
    product = port_product(port)
    if product == "unknown":
        return f"{host}:{port}, not a default TWS/IB Gateway port"
    return f"{product} on {host}:{port}"


async def _connect(
    broker: IbkrBroker, adapter: AdapterConfig, report: _Report
) -> ConnectionInfo | None:
    client_id = str(adapter.credentials.client_id)
    try:
        info = await broker.connect()
    except BrokerConnectError as exc:
        name = exc.entry.name
        if name is ErrorName.CLIENT_ID_IN_USE:  # the gateway answered, then refused the id
            report.line("Connection", f"OK ({_where(adapter)})")
            report.fail("Client ID", exc)
        elif name is ErrorName.WRONG_ENVIRONMENT and exc.info is not None:
            report.line("Connection", f"OK ({_where(adapter)})")
            report.line("Client ID", client_id)
            report.fail("Account", exc)
        else:
            report.fail("Connection", exc)
        return None
    report.line("Connection", f"OK ({_where(adapter)})")
    report.line("Client ID", client_id)
    return info


async def _checks(
    broker: IbkrBroker, adapter: AdapterConfig, info: ConnectionInfo, report: _Report
) -> None:
    accounts = info.accounts
    kinds = sorted({account_kind(a).value for a in accounts})
    used = adapter.account or accounts[0]
    listed = ", ".join(accounts) + (f"; orders go to {used}" if len(accounts) > 1 else "")
    report.line("Account", f"{'/'.join(kinds)} ({listed})")
    report.line("Server version", str(info.server_version))
    spacing = adapter.rate_limit_ms
    orders = f"orders at least {spacing} ms apart" if spacing else "no extra spacing between orders"
    report.line(
        "Rate limit",
        f"{IB_MESSAGE_LIMIT} messages/second "
        f"(ibpilot paces at {broker.messages_per_second:g}; {orders})",
    )
    try:
        await broker.check_write_access()
        report.line("API mode", "OK (read-write: orders can be placed)")
    except BrokerRequestError as exc:
        report.fail("API mode", exc)
    contract: Contract | BrokerRequestError | None = None
    if adapter.trading_pair:
        try:
            contract = await broker.resolve(_ref(adapter))
        except BrokerRequestError as exc:
            contract = exc
    _farm_lines(broker.farms, report)
    if contract is None:
        report.line("Trading pair", 'not configured (add "trading_pair" to check an instrument)')
    elif isinstance(contract, BrokerRequestError):
        report.fail("Trading pair", contract)
    else:
        report.line("Trading pair", f"{adapter.trading_pair} -> {_contract_text(contract)}")


def _ref(adapter: AdapterConfig) -> ContractRef:
    return ContractRef(
        symbol=adapter.trading_pair or "",
        sec_type=adapter.sec_type.value,
        exchange=adapter.exchange,
        currency=adapter.currency,
        primary_exchange=adapter.primary_exchange or "",
        last_trade_date_or_contract_month=adapter.last_trade_date_or_contract_month or "",
        strike=adapter.strike,
        right=adapter.right.value if adapter.right else "",
        multiplier=str(adapter.multiplier) if adapter.multiplier else "",
    )


def _contract_text(c: Contract) -> str:
    venue = f"{c.exchange}/{c.primary_exchange}" if c.primary_exchange else c.exchange
    extra = f", multiplier {c.multiplier}" if c.multiplier != 1 else ""
    return f"conId {c.con_id}, {venue}, {c.currency}, min tick {c.min_tick}{extra}"


def _farm_lines(farms: tuple[FarmStatus, ...], report: _Report) -> None:
    for kind, label in _FARM_LABELS.items():
        mine = [f for f in farms if f.kind is kind]
        if not mine:
            report.line(label, "not reported (IB Gateway connects its farms on first use)")
            continue
        broken = [f for f in mine if f.state is FarmState.BROKEN]
        if broken:
            names = ", ".join(f"{f.farm} (IB {f.code})" for f in broken)
            report.fail(
                label, BrokerRequestError(by_name(ErrorName.MARKET_DATA_FARM), f"broken: {names}")
            )
            continue
        parts = [
            f.farm if f.state is FarmState.OK else f"{f.farm}: {_STATE_TEXT[f.state]}" for f in mine
        ]
        report.line(label, f"OK ({', '.join(parts)})")


_STATE_TEXT = {
    FarmState.INACTIVE: "inactive, available on demand",
    FarmState.CONNECTING: "connecting",
}

"""``ibpilot start``: load, check, connect, trade, and stop cleanly.

The runner is the shell around the engine: it validates both files, prints the spec
hash, enforces the live-trading rule (three agreeing signals: ``environment: "live"``
in the adapter, ``allow_live`` in the mandate, ``--live --confirm-account <id>`` on the
command line, with the connected account equal to that id), opens the ledger, serves
the local control endpoint, watches the strategy file for changes (a change halts new
orders, records MANDATE_INTEGRITY_VIOLATION with both hashes and exits with its own
code), and turns SIGINT/SIGTERM into a clean stop.

The gate's trading hours come from the exchange: every contract the engine resolves brings
its liquid hours (IB's contract details, about a week of them), and the runner re-resolves a
contract before they run out.  Outside the stretch IB described the hours are unknown, so the
mandate's ``trading_hours`` alone decide then (and with none, the gate refuses).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from ibpilot._signals import on_stop_signals
from ibpilot.alerts import Notifier
from ibpilot.broker.base import (
    Broker,
    BrokerConnectError,
    BrokerRequestError,
    Contract,
    ContractRef,
)
from ibpilot.config import (
    AdapterConfig,
    ConfigError,
    Environment,
    LoadedStrategy,
    load_adapter,
    load_strategy,
    spec_hash_of_file,
)
from ibpilot.control import ControlError, ControlServer
from ibpilot.engine import Engine, EngineStatus, Watchdogs
from ibpilot.errors import ErrorName, by_name
from ibpilot.gate import Sessions
from ibpilot.ib_schedule import IbSchedule
from ibpilot.ledger import Ledger, LedgerError, open_ledger
from ibpilot.strategies import StrategyLoadError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_INTEGRITY = 4  # MANDATE_INTEGRITY_VIOLATION: the strategy file changed while running
EXIT_LIVE_REFUSED = 5  # live trading without all three agreeing signals
EXIT_CONNECT = 6  # the gateway could not be reached or is the wrong one

WATCH_SECONDS = 1.0
HOURS_REFRESH_SECONDS = 3600.0  # how often to look for liquid hours about to run out
HOURS_MARGIN = timedelta(days=2)  # re-resolve a contract this long before its hours run out

Say = Callable[[str], None]
Clock = Callable[[], datetime]


class StartError(Exception):
    """Start refused before any order could be sent; ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class StartOptions:
    config: Path
    adapter: Path
    ledger: str | None
    directory: Path
    live: bool = False
    confirm_account: str | None = None


def check_live(adapter: AdapterConfig, loaded: LoadedStrategy, opts: StartOptions) -> None:
    """Live needs all three signals; anything less refuses before connecting."""
    wants_live = adapter.environment is Environment.LIVE
    refused = by_name(ErrorName.LIVE_NOT_CONFIRMED)
    if opts.live and not wants_live:
        raise StartError(
            f"--live was given but {opts.adapter} says environment "
            f'{adapter.environment.value!r}: set "environment": "live" to trade live',
            EXIT_LIVE_REFUSED,
        )
    if not wants_live:
        return
    missing = []
    if not loaded.config.mandate.allow_live:
        missing.append(f'"allow_live": true in the mandate of {opts.config}')
    if not opts.live:
        missing.append("--live on the command line")
    if not opts.confirm_account:
        missing.append("--confirm-account <the live account id>")
    if missing:
        raise StartError(
            f"{refused.name}: {adapter.environment.value} trading needs " + ", ".join(missing)
            + f". {refused.fix}",
            EXIT_LIVE_REFUSED,
        )  # fmt: skip


def with_confirmed_account(adapter: AdapterConfig, opts: StartOptions) -> AdapterConfig:
    """The adapter the broker uses: a typed-back live account must be the connected one."""
    if opts.confirm_account and adapter.account and adapter.account != opts.confirm_account:
        raise StartError(
            f"--confirm-account {opts.confirm_account} differs from the account "
            f"{adapter.account} in {opts.adapter}",
            EXIT_LIVE_REFUSED,
        )
    if opts.confirm_account:
        return adapter.model_copy(update={"account": opts.confirm_account})
    return adapter


def load_files(opts: StartOptions) -> tuple[AdapterConfig, LoadedStrategy]:
    """Both files, validated; raises StartError with every problem on its own line."""
    try:
        adapter = load_adapter(opts.adapter)
        loaded = load_strategy(opts.config)
    except ConfigError as exc:
        raise StartError(str(exc), EXIT_CONFIG) from None
    return adapter, loaded


class EngineControl:
    """The control endpoint's view of the engine (JSON-safe answers)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def status(self) -> Mapping[str, Any]:
        return status_dict(self._engine.status())

    async def halt(self, reason: str) -> Mapping[str, Any]:
        await self._engine.halt(reason)
        return status_dict(self._engine.status())

    async def resume(self) -> Mapping[str, Any]:
        await self._engine.resume()
        return status_dict(self._engine.status())

    async def cancel_all(self) -> Mapping[str, Any]:
        return {"cancel_requested": await self._engine.cancel_all()}

    async def flatten(self) -> Mapping[str, Any]:
        decisions = await self._engine.flatten()
        return {
            "proposals": [
                {"allowed": d.allowed, "reasons": [str(r.code) for r in d.reasons]}
                for d in decisions
            ]
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def status_dict(status: EngineStatus) -> dict[str, Any]:
    """An engine status as plain JSON data."""
    return {
        "running": status.running,
        "environment": str(status.environment),
        "strategy": status.strategy,
        "spec_hash": status.spec_hash,
        "connection": str(status.connection),
        "trading_state": str(status.trading_state),
        "halt_reason": status.halt_reason,
        "positions": _plain(status.positions),
        "marks": _plain(status.marks),
        "realized_pnl": str(status.realized_pnl),
        "unrealized_pnl": str(status.unrealized_pnl),
        "open_orders": [i.intent_id for i in status.open_orders],
        "last_decisions": [_plain(asdict(d)) for d in status.last_decisions],
        "strategy_errors": status.strategy_errors,
        "link": str(status.link),
        "down_since": _plain(status.down_since),
        "stale_symbols": list(status.stale_symbols),
        "farms_down": list(status.farms_down),
        "alerts": _plain(status.alerts),
    }


class LiquidHours:
    """The gate's ``sessions``: each symbol's liquid hours, from the contract last resolved."""

    def __init__(self) -> None:
        self._found: dict[str, tuple[ContractRef, Contract]] = {}

    def learn(self, ref: ContractRef, contract: Contract) -> None:
        """Note a contract resolved for ``ref.symbol`` (the engine's and the gate's key)."""
        self._found[ref.symbol] = (ref, contract)

    def __call__(self, symbol: str, now: datetime) -> Sessions | None:
        """The liquid hours of ``symbol`` known at ``now``; None when unknown."""
        found = self._found.get(symbol)
        return None if found is None else found[1].liquid_sessions(now)

    def running_out(self, now: datetime, margin: timedelta = HOURS_MARGIN) -> list[ContractRef]:
        """The queries to resolve again: their hours end within ``margin`` of ``now``
        (contracts for which IB gave no hours at all are not asked again)."""
        out = []
        for ref, contract in self._found.values():
            known = contract.liquid_hours_known
            if known is not None and known[1] <= now + margin:
                out.append(ref)
        return out


class HoursBroker:
    """The broker, noting the liquid hours of every contract it resolves; all else passes."""

    def __init__(self, broker: Broker, hours: LiquidHours) -> None:
        self._broker, self._hours = broker, hours

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    async def resolve(self, ref: ContractRef) -> Contract:
        """The broker's resolve (raises what it raises); its liquid hours are noted."""
        contract = await self._broker.resolve(ref)
        self._hours.learn(ref, contract)
        return contract


async def refresh_hours(
    broker: HoursBroker, hours: LiquidHours, clock: Clock, every: float = HOURS_REFRESH_SECONDS
) -> None:
    """Forever, every ``every`` seconds: resolve contracts again whose liquid hours run out."""
    while True:
        await asyncio.sleep(every)
        for ref in hours.running_out(clock()):
            with contextlib.suppress(BrokerRequestError):  # not connected: try again later
                await broker.resolve(ref)


@dataclass(slots=True)
class _Watch:
    violated: bool = False


async def watch_spec(engine: Engine, path: Path, expected: str, say: Say, seen: _Watch) -> None:
    """Poll the strategy file; on any change halt, ledger the violation, stop."""
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        try:
            found = spec_hash_of_file(path)
        except (ConfigError, OSError):
            found = "unreadable"
        if found != expected:
            entry = by_name(ErrorName.MANDATE_INTEGRITY_VIOLATION)
            say(
                f"[ibpilot] {entry.name}: {path} changed while running "
                f"(spec hash {expected[:12]} -> {found[:12]}); new orders halted. {entry.fix}"
            )
            seen.violated = True
            await engine.integrity_violation(found)
            return


def watchdogs(adapter: AdapterConfig, notifier: Notifier) -> Watchdogs:
    """The engine's watchdogs as adapter.json sets them."""
    alerts = adapter.alerts
    return Watchdogs(
        notifier=notifier,
        schedule=IbSchedule.from_settings(alerts.schedule),
        stale_data_after=timedelta(seconds=adapter.stale_data_s),
        connection_alert_after=timedelta(seconds=float(alerts.connection_alert_after_s)),
    )


def _engine(
    opts: StartOptions, loaded: LoadedStrategy, broker: Broker, ledger: Ledger,
    adapter: AdapterConfig, clock: Clock, hours: LiquidHours, notifier: Notifier,
) -> Engine:  # fmt: skip
    try:
        return Engine(
            loaded, broker, ledger, clock, environment=adapter.environment, sessions=hours,
            watchdogs=watchdogs(adapter, notifier),
        )  # fmt: skip
    except StrategyLoadError as exc:
        ledger.close()
        raise StartError(f"{opts.config}: {exc}", EXIT_CONFIG) from None


def _on_signals(engine: Engine, on_stop: str, say: Say) -> Callable[[], None]:
    """SIGINT/SIGTERM stop the engine cleanly; returns what removes the handlers again."""
    loop = asyncio.get_running_loop()
    stopper: set[asyncio.Task[None]] = set()

    def on_signal(name: str) -> None:
        say(f"[ibpilot] {name}: stopping (no new orders; {on_stop})")
        stopper.add(loop.create_task(engine.stop(name)))

    return on_stop_signals(on_signal)


def _confirm_hint(exc: Exception, opts: StartOptions) -> str:
    """What to do when the typed-back live account is not the gateway's ("" otherwise)."""
    info = exc.info if isinstance(exc, BrokerConnectError) else None
    typed = opts.confirm_account
    if info is None or not typed or typed in info.accounts:
        return ""
    return (
        f"--confirm-account {typed} is not the account the gateway is logged into "
        f"({', '.join(info.accounts)}); nothing was sent. Type back the account id "
        "TWS or IB Gateway shows."
    )


async def _stop_when(stop: asyncio.Event, engine: Engine) -> None:
    await stop.wait()
    await engine.stop("stop requested")


async def run(
    opts: StartOptions, make_broker: Callable[[AdapterConfig], Broker], say: Say, *,
    clock: Clock | None = None, stop: asyncio.Event | None = None,
) -> int:  # fmt: skip
    """Start the bot and run it until stopped; returns the exit code.

    ``clock`` (default: the wall clock, UTC) is the engine's and the gate's time, e.g. an
    accelerated simulator's; setting ``stop`` stops the bot as SIGTERM does.  Raises
    StartError (its ``code`` is the exit code) when the bot refuses to start.
    """
    now = clock or (lambda: datetime.now(UTC))
    adapter, loaded = load_files(opts)
    check_live(adapter, loaded, opts)
    adapter = with_confirmed_account(adapter, opts)
    say(f"[ibpilot] Strategy: {loaded.config.name} ({loaded.config.strategy}) from {opts.config}")
    say(f"[ibpilot] Spec hash: {loaded.spec_hash}")
    try:
        opts.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        ledger = open_ledger(opts.ledger, opts.directory)
    except OSError as exc:
        raise StartError(f"state directory {opts.directory}: {exc.strerror}", EXIT_CONFIG) from None
    except LedgerError as exc:
        raise StartError(f"ledger: {exc}", EXIT_CONFIG) from None
    say(f"[ibpilot] Ledger: {ledger.location}")
    hours = LiquidHours()
    broker = HoursBroker(make_broker(adapter), hours)
    notifier = Notifier(adapter.alerts, loaded.config.name, now)
    engine = _engine(opts, loaded, broker, ledger, adapter, now, hours, notifier)
    control = ControlServer(EngineControl(engine), opts.directory)
    try:
        await control.start()
    except ControlError as exc:
        ledger.close()
        raise StartError(str(exc), EXIT_CONFIG) from None
    await notifier.start()
    say(f"[ibpilot] Control: ibpilot status --dir {opts.directory}")
    seen = _Watch()
    tasks = [
        asyncio.create_task(watch_spec(engine, opts.config, loaded.spec_hash, say, seen)),
        asyncio.create_task(refresh_hours(broker, hours, now)),
    ]
    if stop is not None:
        tasks.append(asyncio.create_task(_stop_when(stop, engine)))
    remove_handlers = _on_signals(engine, loaded.config.on_stop.value, say)
    try:
        await engine.run()
    except (BrokerConnectError, BrokerRequestError) as exc:
        say(f"[ibpilot] {exc}")
        if hint := _confirm_hint(exc, opts):
            say(f"[ibpilot] {hint}")
        return EXIT_CONNECT
    finally:
        remove_handlers()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await control.stop()
        await notifier.close()
        ledger.close()
    if seen.violated:
        return EXIT_INTEGRITY
    say("[ibpilot] stopped; ledger closed")
    return EXIT_OK


def _as_broker(broker: HoursBroker) -> Broker:  # mypy checks HoursBroker against the protocol
    return broker

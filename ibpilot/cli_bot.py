"""The bot's sub-commands: ``start`` and the controls of a running bot
(``status``, ``halt``, ``resume``, ``cancel-all``, ``flatten``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ibpilot.runner import StartOptions

DEFAULT_DIR = Path(".ibpilot")  # the bot's state: ledger, control socket and token
CONTROL_COMMANDS = {
    "status": "show the running bot's positions, P&L, orders, decisions and state",
    "halt": "stop new orders (orders that reduce a position still pass the gate)",
    "resume": "allow new orders again after a halt",
    "cancel-all": "cancel every open order of the bot",
    "flatten": "cancel open orders and close every position, through the gate",
}


def add_bot_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``start`` and the control commands."""
    start = sub.add_parser(
        "start", help="run a strategy file against the gateway adapter.json names"
    )
    start.add_argument("--config", type=Path, required=True, help="the strategy file (JSON)")
    start.add_argument(
        "--adapter", type=Path, default=Path("adapter.json"), help="default ./adapter.json"
    )
    start.add_argument(
        "--ledger",
        default=None,
        metavar="URL",
        help="sqlite:///path or postgresql://...; default: SQLite in --dir",
    )
    start.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="the bot's state directory (.ibpilot)"
    )
    start.add_argument("--live", action="store_true", help="confirm live trading (see README)")
    start.add_argument(
        "--confirm-account", metavar="ID", default=None, help="the live account id, typed back"
    )
    start.add_argument(
        "--clock",
        choices=("wall", "sim"),
        default="wall",
        help="the engine's time: the wall clock (default), or the clock of an accelerated "
        "`ibpilot sim` read through its admin port (its port + 1)",
    )
    for name, text in CONTROL_COMMANDS.items():
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--dir", type=Path, default=DEFAULT_DIR, help="the bot's state directory (.ibpilot)"
        )
        if name == "halt":
            p.add_argument("--reason", default="operator halt", help="recorded in the ledger")


def run_bot_command(args: argparse.Namespace) -> int | None:
    """Run ``start`` or a control command; None when ``args`` is none of them."""
    if args.command == "start":
        return _start(args)
    if args.command in CONTROL_COMMANDS:
        return asyncio.run(_control(args))
    return None


def _say(line: str) -> None:
    print(line, flush=True)


def _start(args: argparse.Namespace) -> int:
    from ibpilot.runner import StartError, StartOptions  # noqa: PLC0415 (ib_async is heavy)

    opts = StartOptions(
        config=args.config,
        adapter=args.adapter,
        ledger=args.ledger,
        directory=args.dir,
        live=args.live,
        confirm_account=args.confirm_account,
    )
    try:
        return asyncio.run(_run_start(opts, follow_sim=args.clock == "sim"))
    except StartError as exc:
        for line in str(exc).splitlines():
            print(f"[ibpilot] {line}", file=sys.stderr)
        return exc.code


async def _run_start(opts: StartOptions, follow_sim: bool) -> int:
    from ibpilot.broker.ibkr import IbkrBroker  # noqa: PLC0415
    from ibpilot.config import ConfigError, load_adapter  # noqa: PLC0415
    from ibpilot.runner import EXIT_CONFIG, StartError, run  # noqa: PLC0415
    from ibpilot.simclock import SimClockError, read_sim_clock  # noqa: PLC0415

    clock = None
    if follow_sim:
        try:
            adapter = load_adapter(opts.adapter)
            clock = await read_sim_clock(adapter.credentials.host, adapter.credentials.port + 1)
        except (ConfigError, SimClockError) as exc:
            raise StartError(str(exc), EXIT_CONFIG) from None
        _say(f"[ibpilot] Clock: the simulator's, now {clock():%Y-%m-%d %H:%M:%S} UTC")
    return await run(opts, IbkrBroker, _say, clock=clock)


async def _control(args: argparse.Namespace) -> int:
    from ibpilot.control import ControlError, send_command  # noqa: PLC0415

    payload = {"reason": args.reason} if args.command == "halt" else {}
    try:
        result = await send_command(args.dir, args.command, payload)
    except ControlError as exc:
        print(f"ibpilot {args.command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0

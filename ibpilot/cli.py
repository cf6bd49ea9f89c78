"""ibpilot: run trading strategies on Interactive Brokers safely, with a simulated IB Gateway.

Sub-commands: ``sim`` (the simulated gateway, in the foreground), ``sim-ctl`` (its
faults), ``ledger`` (show, verify, export), ``demo`` (the bot on a simulator, live status),
``test`` (check adapter.json against its gateway, one line per check).
User mistakes end with a one-line error naming what was wrong and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ibpilot import __version__
from ibpilot._signals import on_stop_signals
from ibpilot.cli_bot import add_bot_commands, run_bot_command
from ibpilot.sim.protocol import MAX_SERVER_VERSION, MIN_CLIENT_VERSION

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_RUNTIME = 1

SIM_CTL_COMMANDS = (
    "status", "drop", "restart", "lost", "restored", "farm", "read-only", "reject-next",
    "delay", "half-open", "hold-client-id", "release-client-id", "schedule-restart",
    "silence", "unsilence",
)  # fmt: skip


class UserError(Exception):
    """A mistake the user must fix; printed as one line, exit code 2."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return value


def _start_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected an ISO date-time with a UTC offset, e.g. 2026-03-02T09:25:00-05:00, "
            f"got {text!r}"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"the start time {text!r} has no UTC offset; add one, e.g. -05:00 or Z"
        )
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="ibpilot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ibpilot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser("sim", help="run the simulated IB Gateway in the foreground")
    _add_sim_options(sim)

    ctl = sub.add_parser(
        "sim-ctl",
        help="inject a fault into a running `ibpilot sim` (through its loopback admin port)",
        description="Commands: " + ", ".join(SIM_CTL_COMMANDS) + ". Arguments are key=value, "
        "e.g. `ibpilot sim-ctl restart down=10 rollback_ids=3`.",
    )
    ctl.add_argument("--host", default="127.0.0.1", help="admin address (default 127.0.0.1)")
    ctl.add_argument("--port", type=_port, default=4103, help="admin port (default 4103)")
    ctl.add_argument("name", metavar="COMMAND", choices=SIM_CTL_COMMANDS, help="the fault")
    ctl.add_argument("args", nargs="*", metavar="KEY=VALUE", help="the fault's arguments")

    sub.add_parser(
        "ledger",
        help="show, verify or export the decision ledger (ibpilot ledger --help)",
        add_help=False,
    )

    demo = sub.add_parser(
        "demo",
        help="run sma_cross on the simulated gateway with a live status view (no IBKR account)",
        description="Start a simulated IB Gateway in-process, run the bot on it (sma_cross on "
        "AAPL, MSFT and SPY; files and ledger in var/demo/) and show its status until Ctrl-C.",
    )
    demo.add_argument("--seed", type=int, default=1, help="price model seed (default 1)")
    demo.add_argument(
        "--speed",
        type=_positive_float,
        default=60.0,
        help="simulated seconds per real second (default 60: a minute per second)",
    )
    demo.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="stop by itself after SECONDS real seconds (default: run until Ctrl-C)",
    )
    demo.add_argument(
        "--scripted",
        action="store_true",
        help="instead: a short scripted ib_async session against the simulator",
    )

    test = sub.add_parser(
        "test",
        help="check adapter.json against the gateway it names, one line per check "
        "(never places an order)",
    )
    test.add_argument(
        "--adapter",
        default="ibkr",
        metavar="NAME|PATH",
        help='"ibkr" (the default) reads ./adapter.json; any other value is a path',
    )
    add_bot_commands(sub)
    return parser


def _add_sim_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=4102, help="port to listen on (default 4102)")
    p.add_argument("--seed", type=int, default=1, help="price model seed (default 1)")
    p.add_argument(
        "--speed", type=_positive_float, default=1.0, help="simulated seconds per real second"
    )
    p.add_argument(
        "--start",
        type=_start_time,
        default=None,
        help="simulated start time, ISO with offset (default: now)",
    )
    p.add_argument("--account", default="DU0000001", help="account id (default DU0000001)")
    p.add_argument(
        "--market-data-lines",
        type=_non_negative_int,
        default=100,
        help="market-data lines before error 101 (default 100)",
    )
    p.add_argument(
        "--admin-port",
        type=_port,
        default=None,
        help="loopback port of the fault-injection endpoint for sim-ctl (default: port + 1)",
    )
    p.add_argument(
        "--state",
        type=Path,
        default=None,
        help="keep orders, executions, the account and order ids in FILE across restarts",
    )
    p.add_argument(
        "--refdata",
        type=Path,
        action="append",
        default=[],
        help="extra instruments file (JSON, same shape as the shipped one); repeatable",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "ledger":  # its own parser: ibpilot ledger --help
        from ibpilot.ledger_cli import run_ledger_command  # noqa: PLC0415 (SQLAlchemy)

        return run_ledger_command(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "sim":
            return asyncio.run(_run_sim(args))
        if args.command == "sim-ctl":
            return asyncio.run(_sim_ctl(args))
        if args.command == "demo":
            return _run_demo(args)
        if args.command == "test":
            return _run_test(args)
        code = run_bot_command(args)
        if code is not None:
            return code
    except UserError as exc:
        print(f"ibpilot: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE  # pragma: no cover (parser.error exits)


def _run_demo(args: argparse.Namespace) -> int:
    if args.scripted:
        from ibpilot.demo_scripted import run_scripted  # noqa: PLC0415 (imports ib_async)

        return asyncio.run(run_scripted(seed=args.seed))
    from ibpilot.demo import DemoOptions, run_demo  # noqa: PLC0415 (imports ib_async)

    options = DemoOptions(
        seed=args.seed, speed=args.speed, duration=args.duration, quiet_logs=not args.verbose
    )
    return asyncio.run(run_demo(options))


def _run_test(args: argparse.Namespace) -> int:
    from ibpilot.diagnose import run_test  # noqa: PLC0415 (imports ib_async)

    quiet = [logging.getLogger(name) for name in ("ib_async", "ibpilot.broker")]
    levels = [logger.level for logger in quiet]
    if not args.verbose:  # every failure is reported on its check's line
        for logger in quiet:
            logger.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(run_test(args.adapter, lambda line: print(f"[ibpilot] {line}")))
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


async def _run_sim(args: argparse.Namespace) -> int:
    from ibpilot.sim import SimGateway  # noqa: PLC0415 (keep `ibpilot --help` fast)

    logging.getLogger("ibpilot.sim").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        gateway = SimGateway(
            args.host,
            args.port,
            seed=args.seed,
            speed=args.speed,
            start=args.start,
            account=args.account,
            market_data_lines=args.market_data_lines,
            refdata_files=tuple(args.refdata),
            admin_port=_admin_port(args),
            state_file=args.state,
        )
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    try:
        await gateway.start()
    except OSError as exc:
        raise UserError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from None
    print(
        f"ibpilot sim: listening on {args.host}:{gateway.port} "
        f"(TWS API server versions {MIN_CLIENT_VERSION}..{MAX_SERVER_VERSION}; "
        f"account {args.account}; seed {args.seed}; speed {args.speed:g}x; "
        f"simulated time {gateway.clock.now_dt():%Y-%m-%d %H:%M:%S} UTC; "
        f"sim-ctl on 127.0.0.1:{gateway.admin_port})",
        flush=True,
    )
    if gateway.restored:
        print(f"ibpilot sim: restored orders, executions and the account from {args.state}")
    stop = asyncio.Event()
    remove = on_stop_signals(lambda _name: stop.set())
    try:
        await stop.wait()
    finally:
        remove()
        await gateway.stop()
        print("ibpilot sim: stopped", flush=True)
    return EXIT_OK


def _admin_port(args: argparse.Namespace) -> int:
    if args.admin_port is not None:
        return int(args.admin_port)
    return 0 if args.port == 0 else int(args.port) + 1


def _parse_value(text: str) -> object:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


async def _sim_ctl(args: argparse.Namespace) -> int:
    payload: dict[str, object] = {}
    for item in args.args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"argument {item!r} is not KEY=VALUE (e.g. down=10)")
        payload[key] = _parse_value(value)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(args.host, args.port), timeout=5
        )
    except (OSError, TimeoutError):
        raise UserError(
            f"no simulator admin endpoint on {args.host}:{args.port} (is `ibpilot sim` running? "
            "its admin port is its own port + 1 unless --admin-port says otherwise)"
        ) from None
    try:
        writer.write(json.dumps({"cmd": args.name, "args": payload}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=30)
    finally:
        writer.close()
    reply = json.loads(line or b"{}")
    if not reply.get("ok"):
        print(f"ibpilot sim-ctl: {reply.get('error', 'no answer')}", file=sys.stderr)
        return EXIT_RUNTIME
    reply.pop("ok")
    print(json.dumps(reply, indent=2) if reply else "ok")
    return EXIT_OK

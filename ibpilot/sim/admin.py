"""The simulator's admin endpoint: fault injection for ``ibpilot sim-ctl``.

A loopback TCP service speaking one JSON object per line each way::

    -> {"cmd": "restart", "args": {"down": 10, "rollback_ids": 4}}
    <- {"ok": true}
    -> {"cmd": "bogus"}
    <- {"ok": false, "error": "unknown command 'bogus'; expected one of [...]"}

It binds only to loopback addresses: it can break every client of the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ibpilot.sim.faults import Faults

log = logging.getLogger("ibpilot.sim")

MAX_LINE = 64 * 1024


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminServer:
    """Serves fault commands for one gateway on a loopback port."""

    def __init__(self, faults: Faults, host: str, port: int) -> None:
        if not _is_loopback(host):
            host = "127.0.0.1"  # never expose the fault switchboard beyond this machine
        self._faults = faults
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port bound."""
        if self._server is None:
            raise RuntimeError("the admin endpoint is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen."""
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=MAX_LINE
        )

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await self._handle(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.warning("admin connection ended: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        from ibpilot.sim.faults import FaultError  # noqa: PLC0415 (faults imports server types)

        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": f"expected one JSON object per line: {exc.msg}"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'expected {"cmd": "<name>", "args": {...}}'}
        args = request.get("args") or {}
        if not isinstance(args, dict):
            return {"ok": False, "error": "'args' must be a JSON object"}
        try:
            result = await self._faults.command(request["cmd"], args)
        except FaultError as exc:
            return {"ok": False, "error": str(exc)}
        log.info("admin: %s %s", request["cmd"], args)
        return {"ok": True, **result}

"""The running bot's local control endpoint: ``ibpilot status|halt|resume|cancel-all|flatten``.

A Unix socket in the bot's state directory (``<dir>/control.sock``), reachable only
by the user who runs the bot: the directory is created 0700, the socket 0600, and
every request must carry the token kept in ``<dir>/control.token`` (0600), written
fresh at each start.  One JSON object per line each way::

    -> {"token": "...", "cmd": "halt", "args": {"reason": "manual"}}
    <- {"ok": true, "result": {...}}

The endpoint only relays: every command is carried out by the engine, and orders
that ``flatten`` produces go through the mandate gate like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

SOCKET_NAME = "control.sock"
TOKEN_NAME = "control.token"
MAX_LINE = 64 * 1024
COMMANDS = ("status", "halt", "resume", "cancel-all", "flatten")


class ControlError(Exception):
    """The control endpoint cannot be reached or refused a request; says why and what to do."""


class ControlTarget(Protocol):
    """What the running bot offers its operator."""

    async def status(self) -> Mapping[str, Any]: ...

    async def halt(self, reason: str) -> Mapping[str, Any]: ...

    async def resume(self) -> Mapping[str, Any]: ...

    async def cancel_all(self) -> Mapping[str, Any]: ...

    async def flatten(self) -> Mapping[str, Any]: ...


def _private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        directory.chmod(0o700)


class ControlServer:
    """Serves control commands for one running bot."""

    def __init__(self, target: ControlTarget, directory: Path) -> None:
        self._target = target
        self.directory = directory
        self.socket_path = directory / SOCKET_NAME
        self.token_path = directory / TOKEN_NAME
        self._token = ""
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Write a fresh token and listen (refuses if another bot is listening there)."""
        _private_dir(self.directory)
        if self.socket_path.exists():
            if await _is_listening(self.socket_path):
                raise ControlError(
                    f"another ibpilot is already running with state directory {self.directory} "
                    f"({self.socket_path} answers); stop it or use another --dir"
                )
            self.socket_path.unlink()
        self._token = secrets.token_urlsafe(32)
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self._token + "\n")
        self.token_path.chmod(0o600)
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.socket_path), limit=MAX_LINE
        )
        self.socket_path.chmod(0o600)

    async def stop(self) -> None:
        """Stop listening and remove the socket and the token."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.socket_path.unlink(missing_ok=True)
        self.token_path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            reply = await self._handle(line)
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            return {"ok": False, "error": "expected one JSON object per line"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "expected a JSON object"}
        token = request.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token, self._token):
            return {"ok": False, "error": "bad token: read it from " + str(self.token_path)}
        cmd = request.get("cmd")
        args = request.get("args") or {}
        actions: dict[str, Callable[[], Awaitable[Mapping[str, Any]]]] = {
            "status": self._target.status,
            "halt": lambda: self._target.halt(str(args.get("reason") or "operator halt")),
            "resume": self._target.resume,
            "cancel-all": self._target.cancel_all,
            "flatten": self._target.flatten,
        }
        action = actions.get(str(cmd))
        if action is None:
            return {"ok": False, "error": f"unknown command {cmd!r}; expected one of {COMMANDS}"}
        result = await action()
        return {"ok": True, "result": dict(result)}


async def _is_listening(path: Path) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    writer.close()
    return True


async def send_command(
    directory: Path, cmd: str, args: Mapping[str, Any] | None = None, wait: float = 30.0
) -> dict[str, Any]:
    """Send one command to the bot running with state directory ``directory``.

    Raises ControlError when no bot runs there, the token cannot be read, or the bot
    refused the request.
    """
    socket_path, token_path = directory / SOCKET_NAME, directory / TOKEN_NAME
    try:
        token = token_path.read_text().strip()
    except FileNotFoundError:
        raise ControlError(
            f"no running ibpilot found in {directory} (no {TOKEN_NAME}); start one with "
            "`ibpilot start`, or pass the bot's --dir"
        ) from None
    except PermissionError:
        raise ControlError(
            f"cannot read {token_path}: only the user running the bot may control it"
        ) from None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(socket_path), limit=MAX_LINE), timeout=5
        )
    except (OSError, TimeoutError):
        raise ControlError(
            f"the bot's control socket {socket_path} does not answer: the bot is not running "
            "(a stale token file is left from a crash)"
        ) from None
    try:
        request = {"token": token, "cmd": cmd, "args": dict(args or {})}
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=wait)
    finally:
        writer.close()
    reply = json.loads(line or b"{}")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "the bot gave no answer")))
    result = reply.get("result", {})
    return result if isinstance(result, dict) else {"result": result}

"""The local control endpoint: only the bot's user, with its token, reaches the engine."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ibpilot.control import ControlError, ControlServer, send_command


class Bot:
    """A stand-in engine recording what the operator asked for."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.halted = False

    async def status(self) -> Mapping[str, Any]:
        return {"trading_state": "HALTED" if self.halted else "ACTIVE"}

    async def halt(self, reason: str) -> Mapping[str, Any]:
        self.calls.append(f"halt:{reason}")
        self.halted = True
        return {"trading_state": "HALTED"}

    async def resume(self) -> Mapping[str, Any]:
        self.calls.append("resume")
        self.halted = False
        return {"trading_state": "ACTIVE"}

    async def cancel_all(self) -> Mapping[str, Any]:
        self.calls.append("cancel-all")
        return {"cancelled": 2}

    async def flatten(self) -> Mapping[str, Any]:
        self.calls.append("flatten")
        return {"proposals": 1}


async def test_commands_reach_the_bot_and_files_are_private(tmp_path: Path) -> None:
    bot = Bot()
    server = ControlServer(bot, tmp_path / "state")
    await server.start()
    try:
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
        assert stat.S_IMODE(server.token_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(server.socket_path.stat().st_mode) == 0o600
        assert await send_command(tmp_path / "state", "status") == {"trading_state": "ACTIVE"}
        await send_command(tmp_path / "state", "halt", {"reason": "news"})
        assert (await send_command(tmp_path / "state", "status"))["trading_state"] == "HALTED"
        await send_command(tmp_path / "state", "cancel-all")
        await send_command(tmp_path / "state", "flatten")
        await send_command(tmp_path / "state", "resume")
        assert bot.calls == ["halt:news", "cancel-all", "flatten", "resume"]
        with pytest.raises(ControlError, match="unknown command 'explode'"):
            await send_command(tmp_path / "state", "explode")
    finally:
        await server.stop()
    assert not server.socket_path.exists()
    assert not server.token_path.exists()


async def test_a_wrong_token_is_refused_and_nothing_happens(tmp_path: Path) -> None:
    bot = Bot()
    server = ControlServer(bot, tmp_path)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(server.socket_path))
        writer.write(json.dumps({"token": "guess", "cmd": "flatten"}).encode() + b"\n")
        reply = json.loads(await reader.readline())
        writer.close()
        assert reply["ok"] is False
        assert "bad token" in reply["error"]
        assert bot.calls == []
    finally:
        await server.stop()


async def test_no_bot_running_says_so(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="no running ibpilot found"):
        await send_command(tmp_path, "status")
    (tmp_path / "control.token").write_text("stale\n")
    with pytest.raises(ControlError, match="does not answer"):
        await send_command(tmp_path, "status")


async def test_a_second_bot_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = ControlServer(Bot(), tmp_path)
    await first.start()
    try:
        with pytest.raises(ControlError, match="another ibpilot is already running"):
            await ControlServer(Bot(), tmp_path).start()
    finally:
        await first.stop()

"""IB's official Python client (``ibapi``) driven from async tests.

``ibapi`` is thread-based: ``EClient.connect`` blocks on the socket and ``run``
dispatches messages on a reader thread.  :class:`IbapiClient` runs both off the
event loop (the simulator lives on it) and records every wrapper callback so a
test can wait for one and assert its decoded values.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from ibapi.client import EClient
from ibapi.wrapper import EWrapper

Call = tuple[str, tuple[Any, ...]]


class RecordingWrapper(EWrapper):  # type: ignore[misc]
    """Records every EWrapper callback as (method name, args)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.lock = threading.Lock()

    def __getattribute__(self, name: str) -> Any:
        attr = object.__getattribute__(self, name)
        if not name.startswith("_") and callable(attr) and hasattr(EWrapper, name):
            calls = object.__getattribute__(self, "calls")
            lock = object.__getattribute__(self, "lock")

            def record(*args: Any) -> None:
                with lock:
                    calls.append((name, args))

            return record
        return attr

    def snapshot(self) -> list[Call]:
        with self.lock:
            return list(self.calls)


class IbapiClient:
    """An official-client connection to the simulator."""

    def __init__(self) -> None:
        self.wrapper = RecordingWrapper()
        self.client = EClient(self.wrapper)
        self._thread: threading.Thread | None = None

    async def connect(self, port: int, client_id: int, host: str = "127.0.0.1") -> None:
        await asyncio.to_thread(self.client.connect, host, port, client_id)
        if not self.client.serverVersion():
            raise ConnectionError(f"ibapi could not connect to {host}:{port}")
        # even if the gateway already closed (e.g. error 326), run() delivers what it sent
        self._thread = threading.Thread(target=self.client.run, daemon=True, name="ibapi-reader")
        self._thread.start()

    async def disconnect(self) -> None:
        """Close the socket first, so that ``run`` drains what already arrived and stops.

        ``EClient.disconnect`` resets the server version to None at once; a reader thread
        still holding queued messages (a stream in flight) then dies on ``None >= int``.
        With only the socket closed, ``run`` finishes the queue and disconnects itself.
        """
        conn = self.client.conn
        if self._thread is not None and conn is not None:
            await asyncio.to_thread(conn.disconnect)
            await asyncio.to_thread(self._thread.join, 5)
        if self.client.isConnected():
            await asyncio.to_thread(self.client.disconnect)

    def calls(self, name: str | None = None) -> list[Call]:
        """Callbacks so far, optionally only those of one method."""
        return [c for c in self.wrapper.snapshot() if name is None or c[0] == name]

    def errors(self, req_id: int | None = None) -> list[tuple[int, int, str]]:
        """(reqId, code, text) of every error callback (farm notices included)."""
        found = []
        for _, args in self.calls("error"):
            rid, _time, code, text = args[0], args[1], args[2], args[3]
            if req_id is None or rid == req_id:
                found.append((rid, code, text))
        return found

    async def wait_for(
        self,
        name: str,
        pred: Callable[[tuple[Any, ...]], bool] = lambda a: True,
        timeout: float = 5,
    ) -> tuple[Any, ...]:
        """Wait for a callback ``name`` whose args satisfy ``pred``; returns its args."""
        deadline = time.monotonic() + timeout
        while True:
            for call_name, args in self.wrapper.snapshot():
                if call_name == name and pred(args):
                    return args
            if time.monotonic() > deadline:
                seen = sorted({c[0] for c in self.wrapper.snapshot()})
                raise TimeoutError(f"no {name} callback within {timeout}s; saw {seen}")
            await asyncio.sleep(0.01)

    async def wait_error(self, req_id: int, code: int, timeout: float = 5) -> str:
        """Wait for error ``code`` on ``req_id``; returns its text."""
        args = await self.wait_for("error", lambda a: a[0] == req_id and a[2] == code, timeout)
        return str(args[3])

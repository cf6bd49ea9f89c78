"""The IB adapter's plain parts: connection lifecycle table, event fan-out, farms, backoff.

No sockets and no clocks in here; the adapter (``ibkr.py``) feeds them what happened.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ibpilot.broker.base import BrokerEvent, ConnectionState


class Trigger(enum.StrEnum):
    """What moves the connection from one state to another."""

    CONNECT = "connect"  # connect() called
    READY = "ready"  # handshake, environment check and start-up sync done
    FAILED = "failed"  # a connect attempt failed
    SOCKET_CLOSED = "socket_closed"  # the API socket closed under us
    RETRY = "retry"  # the supervisor starts a reconnect attempt
    IB_LOST = "ib_lost"  # 1100 / 2110: the gateway lost IB, the socket stays up
    IB_RESTORED = "ib_restored"  # 1101 / 1102
    GIVE_UP = "give_up"  # the supervisor stops (wrong environment, attempts exhausted)
    CLOSE = "close"  # disconnect() called


_S, _T = ConnectionState, Trigger

TRANSITIONS: dict[tuple[ConnectionState, Trigger], ConnectionState] = {
    (_S.DISCONNECTED, _T.CONNECT): _S.CONNECTING,
    (_S.CONNECTING, _T.READY): _S.CONNECTED,
    (_S.CONNECTING, _T.FAILED): _S.DISCONNECTED,
    (_S.CONNECTED, _T.SOCKET_CLOSED): _S.DISCONNECTED,
    (_S.IB_LOST, _T.SOCKET_CLOSED): _S.DISCONNECTED,
    (_S.DISCONNECTED, _T.RETRY): _S.RECONNECTING,
    (_S.RECONNECTING, _T.RETRY): _S.RECONNECTING,
    (_S.RECONNECTING, _T.FAILED): _S.RECONNECTING,
    (_S.RECONNECTING, _T.READY): _S.CONNECTED,
    (_S.RECONNECTING, _T.GIVE_UP): _S.DISCONNECTED,
    (_S.DISCONNECTED, _T.GIVE_UP): _S.DISCONNECTED,
    (_S.CONNECTED, _T.IB_LOST): _S.IB_LOST,
    (_S.IB_LOST, _T.IB_LOST): _S.IB_LOST,  # IB repeats 1100 during a reset
    (_S.IB_LOST, _T.IB_RESTORED): _S.CONNECTED,
    (_S.CONNECTED, _T.IB_RESTORED): _S.CONNECTED,  # 1101 without a 1100 first
    **{(state, _T.CLOSE): _S.DISCONNECTED for state in ConnectionState},
}


class IllegalTransition(Exception):
    """A trigger that cannot happen in the current state (a bug of ours, or a late message)."""

    def __init__(self, state: ConnectionState, trigger: Trigger) -> None:
        self.state, self.trigger = state, trigger
        super().__init__(f"connection: {trigger} is not possible while {state}")


def next_state(state: ConnectionState, trigger: Trigger) -> ConnectionState:
    """The state after ``trigger``; raises IllegalTransition for a pair not in the table."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise IllegalTransition(state, trigger) from None


# --- event fan-out --------------------------------------------------------------------------


class EventStream:
    """One consumer's view of the broker's events: everything published after it was made."""

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[BrokerEvent | None] = asyncio.Queue()
        self._done = False

    def __aiter__(self) -> AsyncIterator[BrokerEvent]:
        return self

    async def __anext__(self) -> BrokerEvent:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            self.close()
            raise StopAsyncIteration
        return item

    def put(self, item: BrokerEvent | None) -> None:
        self._queue.put_nowait(item)

    def close(self) -> None:
        """Stop receiving events (also done when the broker disconnects)."""
        self._done = True
        self._hub.discard(self)

    def pending(self) -> int:
        """Events queued and not yet read."""
        return self._queue.qsize()


class EventHub:
    """Publishes every event to every open stream, in order (queues are unbounded)."""

    def __init__(self) -> None:
        self._streams: list[EventStream] = []

    def stream(self) -> EventStream:
        out = EventStream(self)
        self._streams.append(out)
        return out

    def discard(self, stream: EventStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    def publish(self, event: BrokerEvent) -> None:
        for stream in self._streams:
            stream.put(event)

    def close(self) -> None:
        """End every open stream (their iterators stop after the events already queued)."""
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.put(None)


# --- data farms -------------------------------------------------------------------------------


class FarmKind(enum.StrEnum):
    MARKET = "market data"
    HMDS = "HMDS data"
    SECDEF = "sec-def data"


class FarmState(enum.StrEnum):
    OK = "ok"
    BROKEN = "broken"
    INACTIVE = "inactive"  # idle, "available upon demand"
    CONNECTING = "connecting"


FARM_CODES: dict[int, tuple[FarmKind, FarmState]] = {
    2103: (FarmKind.MARKET, FarmState.BROKEN),
    2104: (FarmKind.MARKET, FarmState.OK),
    2105: (FarmKind.HMDS, FarmState.BROKEN),
    2106: (FarmKind.HMDS, FarmState.OK),
    2107: (FarmKind.HMDS, FarmState.INACTIVE),
    2108: (FarmKind.MARKET, FarmState.INACTIVE),
    2119: (FarmKind.MARKET, FarmState.CONNECTING),
    2157: (FarmKind.SECDEF, FarmState.BROKEN),
    2158: (FarmKind.SECDEF, FarmState.OK),
}


@dataclass(frozen=True, slots=True)
class FarmStatus:
    """The last notice IB sent about one farm (e.g. usfarm)."""

    kind: FarmKind
    farm: str
    state: FarmState
    code: int


def farm_status(code: int, text: str) -> FarmStatus | None:
    """The farm notice in IB's message, or None when ``code`` is not a farm code.

    IB names the farm after a colon ("...is OK:usfarm") or, for the inactive notices, after
    the last full stop ("...upon demand.ushmds").
    """
    known = FARM_CODES.get(code)
    if known is None:
        return None
    kind, state = known
    text = text.strip()
    name = text.rsplit(":", 1)[-1] if ":" in text else text.rsplit(".", 1)[-1]
    return FarmStatus(kind, name.strip() or "?", state, code)


# --- reconnect backoff ------------------------------------------------------------------------


class Backoff:
    """Exponential backoff with jitter: attempt n waits ``min(cap, base * 2**(n-1))``, less a
    random fraction (at most ``jitter``) so that many clients do not retry in step."""

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 30.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base} cap={cap}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.base, self.cap, self.jitter = base, cap, jitter
        self._rng = rng if rng is not None else random.Random()

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * 2 ** min(max(attempt, 1) - 1, 30))
        return float(ceiling * (1 - self.jitter * self._rng.random()))

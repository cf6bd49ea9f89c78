"""The asyncio shell of the simulated gateway: sockets in, :class:`GatewayCore` inside.

``SimGateway`` is an async context manager::

    async with SimGateway(port=0, seed=7, speed=60) as gw:
        ib = IB(); await ib.connectAsync("127.0.0.1", gw.port, clientId=1)

Each TCP connection gets a :class:`_Connection` (an ``asyncio.Protocol``) that
runs the sans-IO framer, negotiates the server version, admits the client id and
hands typed requests to its :class:`ClientSession`.  One background task moves
the market feed along the simulated clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType

from ibpilot.sim import outbound as out
from ibpilot.sim import state
from ibpilot.sim.admin import AdminServer
from ibpilot.sim.clock import SimClock
from ibpilot.sim.core import ClientIdInUse, GatewayCore, SimConfig, TooManyClients
from ibpilot.sim.faults import Faults
from ibpilot.sim.limits import MessageRate, RateVerdict
from ibpilot.sim.market import MarketModel
from ibpilot.sim.order_wire import OrderParser, OrderRequest, order_parsers
from ibpilot.sim.protocol import (
    MAX_SERVER_VERSION,
    MIN_CLIENT_VERSION,
    Field,
    FieldError,
    FieldReader,
    Handshake,
    Message,
    ProtocolError,
    ServerFramer,
    encode_message,
    handshake_reply,
    negotiate,
)
from ibpilot.sim.refdata import RefData
from ibpilot.sim.requests import Request, StartApi, parse_request, request_name
from ibpilot.sim.session import ClientSession

log = logging.getLogger("ibpilot.sim")

FEED_INTERVAL = 0.05  # real seconds between market-feed steps

# Sees every framed message the gateway sends after the handshake reply:
# (the connection's negotiated server version, the message's bytes).
WireTap = Callable[[int, bytes], None]
# Sees every framed message the gateway receives after the handshake, before it is parsed:
# (the connection's negotiated server version, the message).  Off unless given (benchmarks).
RequestTap = Callable[[int, Message], None]


class SimGateway:
    """A simulated IB Gateway listening on a TCP port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4102,
        *,
        seed: int = 1,
        speed: float = 1.0,
        start: datetime | None = None,
        account: str = "DU0000001",
        market_data_lines: int = 100,
        message_rate: int = 50,
        message_rate_max_violations: int = 3,
        refdata_files: tuple[Path, ...] = (),
        admin_port: int | None = None,
        state_file: Path | None = None,
        wire_tap: WireTap | None = None,
        request_tap: RequestTap | None = None,
    ) -> None:
        self.config = SimConfig(
            host=host,
            port=port,
            seed=seed,
            account=account,
            market_data_lines=market_data_lines,
            message_rate=message_rate,
            message_rate_max_violations=message_rate_max_violations,
        )
        self.clock = SimClock(start=start, speed=speed)
        self.refdata = RefData.load(refdata_files)
        self.market = MarketModel(self.refdata, seed)
        self.core = GatewayCore(self.config, self.clock, self.refdata, self.market)
        self.state_file = state_file
        self.restored = state.load(self.core, state_file) if state_file is not None else False
        self._saved_at = 0.0
        self.faults = Faults(self)
        self.wire_tap = wire_tap
        self.request_tap = request_tap
        self.admin_port_requested = admin_port
        self._admin: AdminServer | None = None
        self._server: asyncio.Server | None = None
        self._bound_port: int | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self._connections: set[_Connection] = set()

    @property
    def port(self) -> int:
        """The port bound at start (useful with ``port=0``); kept across restarts."""
        if self._bound_port is None:
            raise RuntimeError("the gateway has not started")
        return self._bound_port

    @property
    def host(self) -> str:
        """The address listened on."""
        return self.config.host

    @property
    def listening(self) -> bool:
        """Whether connections are accepted right now (false during a restart)."""
        return self._server is not None

    @property
    def connection_count(self) -> int:
        """Open client sockets."""
        return len(self._connections)

    @property
    def admin_port(self) -> int | None:
        """The admin endpoint's port, when one was asked for."""
        return self._admin.port if self._admin is not None else None

    async def start(self) -> None:
        """Start listening, the admin endpoint if asked, and stepping the market feed."""
        await self.start_listening()
        if self.admin_port_requested is not None:
            self._admin = AdminServer(self.faults, self.config.host, self.admin_port_requested)
            await self._admin.start()
        self._feed_task = asyncio.create_task(self._run_feed(), name="ibpilot-sim-feed")
        log.info(
            "ibpilot sim listening on %s:%d (server versions %d..%d, account %s)",
            self.config.host,
            self.port,
            MIN_CLIENT_VERSION,
            MAX_SERVER_VERSION,
            self.config.account,
        )

    async def start_listening(self) -> None:
        """Accept connections (again, on the same port after a restart)."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        port = self._bound_port if self._bound_port is not None else self.config.port
        self._server = await loop.create_server(
            lambda: _Connection(self), self.config.host, port, reuse_address=True
        )
        self._bound_port = int(self._server.sockets[0].getsockname()[1])

    async def stop_listening(self) -> None:
        """Refuse new connections (existing sockets are not touched)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()

    async def stop(self) -> None:
        """Close every client and stop listening."""
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed_task
            self._feed_task = None
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None
        await self.stop_listening()
        self.drop_all_clients()
        self.save_state()

    def save_state(self) -> None:
        """Write ``--state FILE`` now (no-op without one)."""
        if self.state_file is not None:
            state.save(self.core, self.state_file)
            self.core.desk.changed = False
            self._saved_at = time.monotonic()

    async def __aenter__(self) -> SimGateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def drop_all_clients(self) -> None:
        """Close every client socket at once (as a gateway crash does)."""
        for conn in list(self._connections):
            conn.abort()

    async def _run_feed(self) -> None:
        while True:
            await asyncio.sleep(FEED_INTERVAL)
            now = self.clock.now()
            try:
                self.faults.due(now)
                if self.listening:
                    self.core.advance(now)
                if self.core.desk.changed and time.monotonic() - self._saved_at >= 1.0:
                    self.save_state()
            except Exception:  # a bug in one step must not stop the gateway
                log.exception("market feed step failed")

    def _tap(self, server_version: int, data: bytes) -> None:
        if self.wire_tap is not None:
            self.wire_tap(server_version, data)


class _Connection(asyncio.Protocol):
    """One client socket."""

    def __init__(self, gateway: SimGateway) -> None:
        self.gateway = gateway
        self.framer = ServerFramer()
        self.transport: asyncio.Transport | None = None
        self.server_version = 0
        self.session: ClientSession | None = None
        self.peer = "?"
        self.wedged = False  # half-open fault: accepted, never answered
        self.order_parsers: dict[int, OrderParser] = {}
        self._delayed: deque[tuple[float, bytes]] = deque()
        self._flush: asyncio.TimerHandle | None = None
        cfg = gateway.config
        self.rate = MessageRate(
            cfg.message_rate, cfg.message_rate_warn_at, cfg.message_rate_max_violations
        )

    # --- asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.gateway._connections.add(self)
        if self.gateway.faults.half_open_on:
            self.wedged = True
            log.warning("fault: half-open, %s accepted and left unanswered", self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway._connections.discard(self)
        if self._flush is not None:
            self._flush.cancel()
        if self.session is not None:
            self.session.closed = True
            self.gateway.core.unregister(self.session)
            log.info("client %d disconnected (%s)", self.session.client_id, self.peer)

    def data_received(self, data: bytes) -> None:
        if self.wedged:
            return
        self.framer.receive_data(data)
        try:
            for event in self.framer.events():
                if self.transport is None or self.transport.is_closing():
                    return
                if isinstance(event, Handshake):
                    self._on_handshake(event)
                else:
                    self._on_message(event)
        except ProtocolError as exc:
            log.warning("closing %s: protocol error: %s", self.peer, exc)
            self.close()

    # --- output ---------------------------------------------------------------
    def send(self, fields: list[Field]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        data = encode_message(fields)
        self.gateway._tap(self.server_version, data)
        delay = self.gateway.faults.delay_ms / 1000
        if delay <= 0 and not self._delayed:
            transport.write(data)
            return
        loop = asyncio.get_running_loop()
        self._delayed.append((loop.time() + delay, data))
        if self._flush is None:
            self._flush = loop.call_at(self._delayed[0][0], self._flush_delayed)

    def _flush_delayed(self) -> None:
        """Write the delayed messages that are due, in order; re-arm for the rest."""
        self._flush = None
        loop = asyncio.get_running_loop()
        while self._delayed and self._delayed[0][0] <= loop.time():
            _, data = self._delayed.popleft()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)
        if self._delayed:
            self._flush = loop.call_at(self._delayed[0][0], self._flush_delayed)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Drop the socket at once, unsent data included (a crash, not a goodbye)."""
        if self.transport is not None:
            self.transport.abort()

    # --- protocol steps -----------------------------------------------------------
    def _on_handshake(self, hs: Handshake) -> None:
        version = negotiate(hs.min_version, hs.max_version)
        if version is None:
            log.warning(
                "refusing %s: it speaks server versions %d..%d; this gateway speaks %d..%d "
                "(upgrade the client to TWS API 10.x or ib_async 2.x)",
                self.peer,
                hs.min_version,
                hs.max_version,
                MIN_CLIENT_VERSION,
                MAX_SERVER_VERSION,
            )
            self.close()
            return
        self.server_version = version
        self.order_parsers = order_parsers(version)
        now = self.gateway.clock.now_dt().astimezone()
        stamp = now.strftime("%Y%m%d %H:%M:%S ") + (now.tzname() or "UTC")
        assert self.transport is not None
        self.transport.write(handshake_reply(version, stamp))

    def _on_message(self, message: Message) -> None:
        if self.server_version == 0:
            raise ProtocolError("message before the version handshake")
        if self.gateway.request_tap is not None:
            self.gateway.request_tap(self.server_version, message)
        if not self._within_rate(message):
            return
        try:
            parse_order = self.order_parsers.get(message.msg_id)
            request: Request | OrderRequest
            if parse_order is not None:
                request = parse_order(FieldReader(request_name(message.msg_id), message.fields))
            else:
                request = parse_request(message)
        except FieldError as exc:
            log.warning("client %s sent a malformed %s: %s", self.peer, exc.message, exc)
            self._send_error(-1, 320, f"Error reading request: {exc}")
            return
        if self.session is None:
            if isinstance(request, StartApi):
                self._start_api(request)
            else:
                log.warning(
                    "%s sent %s before startApi; dropped (as TWS does)", self.peer, message.msg_id
                )
            return
        self.session.handle(request)

    def _within_rate(self, message: Message) -> bool:
        decision = self.rate.on_message(time.monotonic())
        verdict = decision.verdict
        limit = self.rate.limit
        if verdict is RateVerdict.WARN:
            self._send_error(
                -1,
                0,
                f"Warning: Approaching max rate of {limit} messages per second ({decision.count})",
            )
        elif verdict in (RateVerdict.VIOLATION, RateVerdict.DISCONNECT):
            self._send_error(
                -1,
                100,
                f"Max rate of messages per second has been exceeded:max={limit} "
                f"rec={decision.count} (1)",
            )
            if verdict is RateVerdict.DISCONNECT:
                log.warning(
                    "client %s exceeded %d msg/s repeatedly; disconnecting", self.peer, limit
                )
                self.close()
                return False
        return True

    def _send_error(self, req_id: int, code: int, text: str) -> None:
        self.send(out.error(req_id, code, text, self.server_version or MAX_SERVER_VERSION))

    def _start_api(self, request: StartApi) -> None:
        core = self.gateway.core
        session = ClientSession(core, request.client_id, self.server_version, self.send)
        try:
            core.register(session)
        except ClientIdInUse:
            log.warning("client id %d already in use; refusing %s", request.client_id, self.peer)
            self._send_error(
                -1,
                326,
                "Unable to connect as the client id is already in use. "
                "Retry with a unique client id.",
            )
            self.close()
            return
        except TooManyClients:
            log.warning(
                "refusing %s: %d clients connected already", self.peer, core.config.max_clients
            )
            self._send_error(-1, 502, "Maximum number of API clients reached (32).")
            self.close()
            return
        self.session = session
        log.info("client %d connected from %s at server version %d",
                 request.client_id, self.peer, self.server_version)  # fmt: skip
        session.welcome()

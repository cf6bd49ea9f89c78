"""The IB adapter: the :class:`~ibpilot.broker.base.Broker` interface over ib_async.

Only ib_async's ``*Async`` API is used, inside the caller's event loop (never
``util.startLoop``, ``patchAsyncio`` or the blocking wrappers).

Connecting fails fast and diagnosed (:class:`BrokerConnectError` naming the catalogue entry):
a refused port names the product that normally listens there, error 326 fails at once (ib_async
alone waits its whole timeout), a socket that opens but never answers is HANDSHAKE_TIMEOUT, and
the managed accounts are checked against ``adapter.json`` (WRONG_ENVIRONMENT) before any other
request is sent.  The port alone is checked before the socket is even opened.

The supervisor keeps the link: when the socket closes (gateway restart, nightly restart, drop)
it emits DISCONNECTED, reconnects with exponential backoff and jitter (RECONNECTING per
attempt), re-binds this client's open orders, renews every market-data subscription and emits
CONNECTED.  IB's 1100 gives IB_LOST (new orders are refused until 1101/1102); 1101 renews the
subscriptions and gives CONNECTED with ``data_lost``; 1102 gives CONNECTED.  A gateway that
comes back logged into another environment is not used: WRONG_ENVIRONMENT, and the supervisor
stops.

Every other IB message becomes a :class:`BrokerError` with the catalogue's name; ``terminal``
follows the catalogue, not ib_async (which marks orders Cancelled on 462, 404, 10147...), and
order reports never repeat ib_async's made-up statuses.  Fills are reported twice when IB sends
the commission separately (as it does): first the ExecutionReport without commission, then
the same ``exec_id`` again with it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import ib_async

from ibpilot.broker import _ibkr_convert as cv
from ibpilot.broker._ibkr_connect import bounded, handshake, startup_sync
from ibpilot.broker._ibkr_market import MarketData
from ibpilot.broker._ibkr_orders import OrderDesk
from ibpilot.broker._ibkr_state import (
    Backoff,
    EventHub,
    EventStream,
    FarmKind,
    FarmState,
    FarmStatus,
    IllegalTransition,
    Trigger,
    farm_status,
    next_state,
)
from ibpilot.broker.base import (
    AccountSnapshot,
    Bar,
    Broker,
    BrokerConnectError,
    BrokerError,
    BrokerEvent,
    BrokerRequestError,
    ConnectionEvent,
    ConnectionInfo,
    ConnectionState,
    Contract,
    ContractRef,
    ExecutionReport,
    OrderReport,
    OrderRequest,
    Position,
)
from ibpilot.config import AdapterConfig, check_environment
from ibpilot.errors import ErrorName, by_name, lookup
from ibpilot.pacing import TokenBucket

__all__ = [
    "Backoff",
    "BrokerConnectError",
    "BrokerRequestError",
    "FarmKind",
    "FarmState",
    "FarmStatus",
    "IbkrBroker",
]

log = logging.getLogger("ibpilot.broker.ibkr")

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

_CONNECTIVITY = {
    1100: Trigger.IB_LOST,
    2110: Trigger.IB_LOST,
    1101: Trigger.IB_RESTORED,
    1102: Trigger.IB_RESTORED,
}
_PROBE_OK = {10147, 135}  # a cancel of an unknown order was validated: orders are allowed


def _utc_now() -> datetime:
    return datetime.now(UTC)


class IbkrBroker:
    """The Broker interface over ib_async for one ``adapter.json``; see the module doc."""

    def __init__(
        self,
        adapter: AdapterConfig,
        *,
        clock: Clock = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        backoff: Backoff | None = None,
        max_reconnect_attempts: int | None = None,
        request_timeout: float = 30.0,
        history_max_wait: float = 660.0,
        market_data_lines: int = 100,
        messages_per_second: float = 40.0,
        file: str = "adapter.json",
    ) -> None:
        """``clock`` stamps events (UTC); ``monotonic`` and ``sleep`` drive pacing and backoff;
        ``max_reconnect_attempts`` None retries forever (delays are capped by ``backoff``);
        ``history_max_wait`` bounds how long a history request waits for IB's pacing rules
        (beyond it: PACING_VIOLATION at once); ``file`` names adapter.json in messages."""
        self.adapter = adapter
        self._clock, self._monotonic, self._sleep = clock, monotonic, sleep
        self._backoff = backoff or Backoff()
        self._max_attempts = max_reconnect_attempts
        self._timeout = request_timeout
        self._file = file
        self._ib = ib_async.IB()
        self._ib.RaiseRequestErrors = True
        self._hub = EventHub()
        self._state = ConnectionState.DISCONNECTED
        self._info: ConnectionInfo | None = None
        self._account = ""
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._close_reason: tuple[ErrorName, str] | None = None
        # a small burst: no 1-second window ever holds more than rate + burst messages (49 of
        # IB's 50 at the default); a full-second burst on top of the rate could reach 90
        burst = max(1, int(messages_per_second // 10))
        self._bucket = TokenBucket(rate=messages_per_second, burst=burst)
        self._renewal: asyncio.Task[None] | None = None
        self._quiet_req_ids: set[int] = set()
        self._probes: dict[int, asyncio.Future[tuple[int, str]]] = {}
        self._farms: dict[tuple[str, str], FarmStatus] = {}
        self._market = MarketData(
            self._ib,
            self._spend,
            self._publish,
            clock,
            monotonic,
            sleep,
            lines=market_data_lines,
            history_max_wait=history_max_wait,
            request_timeout=request_timeout,
            quiet=self._quiet_req_ids,
        )
        self._orders = OrderDesk(
            self._ib,
            self._spend,
            self._publish,
            clock,
            monotonic,
            sleep,
            spacing_ms=adapter.rate_limit_ms,
            request_timeout=request_timeout,
        )
        self._ib.errorEvent += self._on_error
        self._ib.disconnectedEvent += self._on_socket_closed

    # --- state ------------------------------------------------------------------------------
    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def info(self) -> ConnectionInfo | None:
        """What the last successful connect learned (None before)."""
        return self._info

    @property
    def farms(self) -> tuple[FarmStatus, ...]:
        """The last notice per data farm (2103-2158), in the order the farms were first named."""
        return tuple(self._farms.values())

    @property
    def messages_per_second(self) -> float:
        """The outbound pace ibpilot keeps (IB allows 50 messages per second)."""
        return self._bucket.rate

    @property
    def ib(self) -> ib_async.IB:
        """The ib_async client underneath (read its state; do not send through it)."""
        return self._ib

    def _move(self, trigger: Trigger) -> bool | None:
        """Apply ``trigger``: True when the state changed, None when the table does not allow
        it in this state (a late message: logged and ignored)."""
        try:
            new = next_state(self._state, trigger)
        except IllegalTransition as exc:
            log.warning("%s; ignored", exc)
            return None
        changed, self._state = new is not self._state, new
        return changed

    def _publish(self, event: BrokerEvent) -> None:
        self._hub.publish(event)

    def _announce(self, trigger: Trigger, **fields: Any) -> None:
        if self._move(trigger) is not None:
            self._publish(ConnectionEvent(state=self._state, time=self._clock(), **fields))

    def events(self) -> EventStream:
        """Every event from now on, in order, until :meth:`disconnect` (call ``close()`` on the
        stream to stop receiving earlier)."""
        return self._hub.stream()

    # --- connecting -------------------------------------------------------------------------
    async def connect(self) -> ConnectionInfo:
        """Connect, check the environment, sync.  Raises BrokerConnectError (see module doc)."""
        if self._state is not ConnectionState.DISCONNECTED:
            raise RuntimeError(f"connect() while {self._state}")
        self._closing = False
        self._move(Trigger.CONNECT)
        try:
            info = await self._open()
        except BaseException:
            self._move(Trigger.FAILED)
            raise
        self._announce(Trigger.READY)
        self._start_keepalive()
        return info

    async def _open(self) -> ConnectionInfo:
        adapter = self.adapter
        creds, timeout = adapter.credentials, adapter.connect_timeout_s
        port_problems = check_environment(adapter, None, file=self._file)
        if port_problems:
            detail = "; ".join(p.message for p in port_problems)
            raise BrokerConnectError(by_name(ErrorName.WRONG_ENVIRONMENT), detail)
        ib = self._ib
        client_id = await self._handshake_any_id(creds.host, creds.port, timeout)
        accounts = tuple(ib.client.getAccounts())
        info = ConnectionInfo(
            accounts=accounts,
            server_version=ib.client.serverVersion(),
            host=creds.host,
            port=creds.port,
            client_id=client_id,
            connected_at=self._clock(),
        )
        problems = check_environment(adapter, ",".join(accounts), file=self._file)
        if problems:
            ib.disconnect()
            detail = "; ".join(p.message for p in problems)
            raise BrokerConnectError(by_name(ErrorName.WRONG_ENVIRONMENT), detail, info)
        self._account = adapter.account or accounts[0]
        try:
            await self._spend(min(4, self._bucket.burst))  # the start-up sync's requests
            await startup_sync(ib, self._account, timeout)
        except BaseException:
            ib.disconnect()
            raise
        # IB has been seen to roll nextValidId back after a restart: never reuse an order id
        cv.raw_client(ib).updateReqId(self._orders.highest_order_id + 1)
        self._info = info
        return info

    async def _handshake_any_id(self, host: str, port: int, limit: float) -> int:
        """The handshake with ``client_id``; while IB says it is in use (326, a stale session),
        retry it for ``client_id_wait_s``, then try ``fallback_client_id``.  Returns the id."""
        creds, ib = self.adapter.credentials, self._ib
        deadline = self._monotonic() + self.adapter.client_id_wait_s
        while True:
            try:
                await handshake(ib, host, port, creds.client_id, limit)
            except BrokerConnectError as exc:
                if exc.entry.name is not ErrorName.CLIENT_ID_IN_USE:
                    raise
                last = exc
            else:
                return creds.client_id
            if self._monotonic() >= deadline:
                break
            await self._sleep(min(2.0, max(0.1, deadline - self._monotonic())))
        fallback = creds.fallback_client_id
        if fallback is None:
            choice = (
                f"{last.detail}; waited {self.adapter.client_id_wait_s:g} s (client_id_wait_s) "
                "and no credentials.fallback_client_id is set"
            )
            raise BrokerConnectError(last.entry, choice) from None
        log.warning("client id %d is in use; connecting as fallback %d", creds.client_id, fallback)
        await handshake(ib, host, port, fallback, limit)
        return fallback

    async def disconnect(self) -> None:
        """Close the link, stop reconnecting and end every event stream."""
        self._closing = True
        self._stop_keepalive()
        if self._renewal is not None:
            self._renewal.cancel()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        self._ib.disconnect()
        self._market.forget_all()
        if self._state is not ConnectionState.DISCONNECTED:
            self._announce(
                Trigger.CLOSE,
                name=ErrorName.CONNECTION_CLOSED.value,
                message="disconnected by ibpilot",
            )
        self._hub.close()

    def _on_socket_closed(self) -> None:
        reason, self._close_reason = self._close_reason, None
        if self._closing or self._state not in (ConnectionState.CONNECTED, ConnectionState.IB_LOST):
            return
        self._stop_keepalive()
        name, message = reason or (ErrorName.CONNECTION_CLOSED, "")
        self._announce(
            Trigger.SOCKET_CLOSED, name=name.value, message=message or by_name(name).cause
        )
        self._market.socket_closed()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._reconnect(), name="ibpilot-ibkr-reconnect"
        )

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closing:
            attempt += 1
            if self._max_attempts is not None and attempt > self._max_attempts:
                self._give_up(f"no connection after {self._max_attempts} attempts")
                return
            delay = self._backoff.delay(attempt)
            self._announce(Trigger.RETRY, message=f"attempt {attempt} in {delay:.2f} s")
            await self._sleep(delay)
            try:
                await self._open()
            except BrokerConnectError as exc:
                log.warning("reconnect attempt %d failed: %s", attempt, exc)
                if exc.entry.name is ErrorName.WRONG_ENVIRONMENT:  # never trade on it
                    self._publish(self._error(0, exc.entry.name, str(exc), terminal=True))
                    self._give_up(str(exc))
                    return
                continue
            except Exception as exc:  # the supervisor must outlive any one failed attempt
                log.warning("reconnect attempt %d failed: %r", attempt, exc)
                continue
            if not self._ib.client.isReady():  # closed again meanwhile
                continue
            # orders (after the runtime's reconciliation) need not wait for every market-data
            # subscription to be renewed: renewing goes on behind CONNECTED, paced
            self._announce(Trigger.READY, message=f"reconnected after {attempt} attempt(s)")
            self._start_keepalive()
            self._renew_in_background(socket_was_closed=True)
            return

    def _renew_in_background(self, *, socket_was_closed: bool) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
        renew = self._market.renew(socket_was_closed=socket_was_closed)
        self._renewal = asyncio.get_running_loop().create_task(
            _logged(renew, "renewing market data"), name="ibpilot-ibkr-renew"
        )

    # --- keepalive ------------------------------------------------------------------------------
    def _start_keepalive(self) -> None:
        self._stop_keepalive()
        if self.adapter.keepalive_s > 0:
            loop = asyncio.get_running_loop()
            self._keepalive = loop.create_task(self._keep_alive(), name="ibpilot-ibkr-keepalive")

    def _stop_keepalive(self) -> None:
        task, self._keepalive = self._keepalive, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _keep_alive(self) -> None:
        """reqCurrentTime every ``keepalive_s``; no answer within ``keepalive_timeout_s`` means
        the gateway is hung or the socket half-open (a TCP peer that vanished sends no FIN):
        close the socket, which starts the reconnect."""
        every, limit = self.adapter.keepalive_s, self.adapter.keepalive_timeout_s
        while not self._closing:
            await asyncio.sleep(every)  # wall time, whatever sleep paces requests
            if self._state not in (ConnectionState.CONNECTED, ConnectionState.IB_LOST):
                return
            try:
                await self._spend()
                await asyncio.wait_for(self._ib.reqCurrentTimeAsync(), limit)
            except TimeoutError:
                detail = f"no answer to the keepalive (reqCurrentTime) within {limit:g} s"
                log.warning("%s: closing the socket to reconnect", detail)
                self._close_reason = (ErrorName.GATEWAY_UNRESPONSIVE, detail)
                self._ib.disconnect()  # emits disconnectedEvent: _on_socket_closed reconnects
                return
            except ConnectionError:
                return  # the socket closed meanwhile; _on_socket_closed handles it

    def _give_up(self, reason: str) -> None:
        self._announce(
            Trigger.GIVE_UP,
            name=ErrorName.CONNECTION_CLOSED.value,
            message=f"reconnecting stopped: {reason}",
        )

    # --- IB's messages ----------------------------------------------------------------------
    def _error(
        self, code: int, name: ErrorName, text: str, *, intent_id: str = "", terminal: bool = False
    ) -> BrokerError:
        return BrokerError(code, name.value, text, self._clock(), intent_id, terminal)

    def _on_error(self, req_id: int, code: int, text: str, contract: Any) -> None:
        probe = self._probes.pop(req_id, None)
        if probe is not None:
            if not probe.done():
                probe.set_result((code, text))
            return
        if req_id in self._quiet_req_ids:
            self._quiet_req_ids.discard(req_id)
            return
        trigger = _CONNECTIVITY.get(code)
        if trigger is not None:
            self._on_connectivity(code, text, trigger)
            return
        farm = farm_status(code, text)
        if farm is not None:
            self._farms[(farm.kind.value, farm.farm)] = farm
        entry = lookup(code, text)
        intent = self._orders.intent_of(req_id)
        self._publish(self._error(code, entry.name, text, intent_id=intent, terminal=entry.ends()))

    def _on_connectivity(self, code: int, text: str, trigger: Trigger) -> None:
        name = lookup(code, text).name.value
        if self._state not in (ConnectionState.CONNECTED, ConnectionState.IB_LOST):
            log.info("IB %d while %s; ignored", code, self._state)
            return
        if trigger is Trigger.IB_LOST:
            if self._move(trigger):
                self._publish(
                    ConnectionEvent(ConnectionState.IB_LOST, self._clock(), code, name, text)
                )
            return
        data_lost = code == 1101
        asyncio.get_running_loop().create_task(self._restored(code, name, text, data_lost))

    async def _restored(self, code: int, name: str, text: str, data_lost: bool) -> None:
        self._announce(Trigger.IB_RESTORED, code=code, name=name, message=text, data_lost=data_lost)
        if data_lost:  # 1101: IB dropped every subscription; renewed behind CONNECTED
            self._renew_in_background(socket_was_closed=False)

    # --- requests ---------------------------------------------------------------------------
    def _require_connected(self, *, for_order: bool = False) -> None:
        if self._state is ConnectionState.IB_LOST and for_order:
            raise BrokerRequestError(
                by_name(ErrorName.CONNECTIVITY_LOST), "new orders wait until IB's 1101/1102"
            )
        if self._state not in (ConnectionState.CONNECTED, ConnectionState.IB_LOST):
            raise BrokerRequestError(by_name(ErrorName.NOT_CONNECTED), f"the link is {self._state}")

    async def _spend(self, cost: float = 1.0) -> None:
        """Wait until the outbound token bucket allows ``cost`` messages, then take them."""
        while True:
            wait = self._bucket.delay(self._monotonic(), cost)
            if wait <= 0:
                self._bucket.take(self._monotonic(), cost)
                return
            await self._sleep(wait)

    def reserve_order_ids(self, up_to: int) -> None:
        """Never use an order id at or below ``up_to`` (ids the ledger shows were used; IB has
        been seen to roll nextValidId back after a gateway restart)."""
        self._orders.order_id_floor = max(self._orders.order_id_floor, up_to)
        if self._ib.client.isReady():
            cv.raw_client(self._ib).updateReqId(self._orders.highest_order_id + 1)

    async def resolve(self, ref: ContractRef) -> Contract:
        """One contract.  Raises BrokerRequestError NO_SECURITY_DEFINITION or AMBIGUOUS_CONTRACT
        (listing the candidates), or NOT_CONNECTED."""
        self._require_connected()
        await self._spend()
        query = cv.ib_contract_of_ref(ref)
        what = f"the contract {cv.ref_text(ref)}"
        details = await bounded(
            lambda: self._ib.reqContractDetailsAsync(query), what, self._timeout
        )
        if not details:
            raise BrokerRequestError(by_name(ErrorName.NO_SECURITY_DEFINITION), f"IB has no {what}")
        contracts = [cv.contract_of(d) for d in details]
        if len(contracts) > 1:
            listed = "; ".join(cv.describe(c) for c in contracts[:10])
            more = f" and {len(contracts) - 10} more" if len(contracts) > 10 else ""
            detail = f"{what} matches {len(contracts)} contracts: {listed}{more}"
            raise BrokerRequestError(by_name(ErrorName.AMBIGUOUS_CONTRACT), detail)
        return contracts[0]

    async def history(
        self,
        contract: Contract,
        *,
        end: datetime | None,
        duration: str,
        bar_size: str,
        what_to_show: str = "TRADES",
        use_rth: bool = True,
    ) -> list[Bar]:
        """Historical bars, paced by IB's rules (waits up to ``history_max_wait``).  Raises
        BrokerRequestError (PACING_VIOLATION when the wait would be longer, IB's errors)."""
        self._require_connected()
        return await self._market.history(contract, end, duration, bar_size, what_to_show, use_rth)

    async def subscribe(self, contract: Contract) -> None:
        """Quotes and 5-second bars; renewed after reconnects and 1101 (while reconnecting,
        the subscription is kept and starts when the link is back).  Raises
        BrokerRequestError MAX_TICKERS when the line budget is used up, NOT_CONNECTED when
        there is no link and none is being restored."""
        if self._supervisor is None or self._supervisor.done() or self._closing:
            self._require_connected()
        await self._market.subscribe(contract)

    async def unsubscribe(self, contract: Contract) -> None:
        self._require_connected()
        await self._market.unsubscribe(contract)

    async def place(self, order: OrderRequest) -> int:
        """Send ``order`` with orderRef = intent id; returns IB's order id.

        Orders are spaced at least ``rate_limit_ms`` apart (cancels are not: they reduce risk)
        and every message goes through the 40/s token bucket (burst 4: never 45 in a second).
        Raises BrokerRequestError NOT_CONNECTED, or CONNECTIVITY_LOST while IB is unreachable
        (1100); ValueError when the intent was already placed through this broker.
        """

        def still_allowed() -> None:
            self._require_connected(for_order=True)

        still_allowed()
        return await self._orders.place(order, self._account, still_allowed)

    async def cancel(self, intent_id: str) -> None:
        """Ask IB to cancel the order carrying ``intent_id`` (its outcome arrives as events).
        Raises BrokerRequestError ORDER_NOT_FOUND when this client knows no such order."""
        self._require_connected()
        await self._orders.cancel(intent_id)

    async def check_write_access(self, answer_within: float = 5.0) -> None:
        """Probe whether the API accepts order messages, without placing an order.

        Sends cancelOrder for a fresh order id that was never used (so nothing can be
        cancelled): IB answers 10147 "not found" when orders are allowed, 321 in read-only
        mode.  Raises BrokerRequestError PERMISSION_DENIED (read-only, or no answer: TWS may be
        asking to confirm write access), or the catalogue's entry for any other answer.
        """
        self._require_connected()
        await self._spend()
        order_id = int(self._ib.client.getReqId())
        probe: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._probes[order_id] = probe
        cv.raw_client(self._ib).cancelOrder(order_id, "")
        try:
            code, text = await asyncio.wait_for(probe, answer_within)
        except TimeoutError:
            detail = (
                f"no answer within {answer_within:g} s to a cancel of unused order id "
                f"{order_id} (TWS may be showing a write-access confirmation dialog)"
            )
            raise BrokerRequestError(by_name(ErrorName.PERMISSION_DENIED), detail) from None
        finally:
            self._probes.pop(order_id, None)
        if code in _PROBE_OK:
            return
        entry = lookup(code, text)
        raise BrokerRequestError(entry, f"IB {code}: {text}", code)

    async def open_orders(self) -> Sequence[OrderReport]:
        """Every open order of the account (reqAllOpenOrders)."""
        self._require_connected()
        return await self._orders.open_orders()

    async def completed_orders(self) -> Sequence[OrderReport]:
        """Today's filled, cancelled and rejected orders (reqCompletedOrders, API and manual)."""
        self._require_connected()
        return await self._orders.completed_orders()

    async def executions(self, since: datetime | None = None) -> Sequence[ExecutionReport]:
        """Fills IB still reports (up to a week), at or after ``since``, with commissions when
        known."""
        self._require_connected()
        return await self._orders.executions(since)

    async def positions(self) -> Sequence[Position]:
        """Non-zero positions of the connected account (reqPositions)."""
        self._require_connected()
        await self._spend()
        items = await bounded(self._ib.reqPositionsAsync, "reqPositions", self._timeout)
        return [cv.position_of(p) for p in items if p.account == self._account and p.position]

    async def account(self) -> AccountSnapshot:
        """The connected account's values (reqAccountUpdates), in its base currency."""
        self._require_connected()
        values = self._ib.accountValues(self._account)
        if not any(v.tag == "NetLiquidation" for v in values):
            await self._spend()
            request = functools.partial(self._ib.reqAccountUpdatesAsync, self._account)
            await bounded(request, "reqAccountUpdates", self._timeout)
            values = self._ib.accountValues(self._account)
        return cv.account_snapshot(self._account, values)


async def _logged(work: Awaitable[None], what: str) -> None:
    """Run background ``work``; a failure is logged (the next reconnect or 1101 tries again)."""
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("%s failed: %r", what, exc)


def _conforms(broker: IbkrBroker) -> Broker:  # mypy checks IbkrBroker against the protocol
    return broker

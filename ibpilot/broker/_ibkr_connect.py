"""Opening an API session with ib_async, failing fast with a diagnosis.

``IB.connectAsync`` does the handshake and the start-up sync in one call, waits its whole
timeout after error 326 (the gateway has already closed the socket), and reports a half-open
gateway and a refused port alike as ``TimeoutError``/``ConnectionRefusedError``.  Here the
steps are separate:

1. :func:`handshake`: socket, version handshake and startApi, raced against error 326 and the
   socket closing; the timeout is attributed to the stage that did not answer;
2. the caller checks the managed accounts (WRONG_ENVIRONMENT) before any other request;
3. :func:`startup_sync`: the same requests as ib_async's sync (positions, open orders of this
   client, account updates, then executions), concurrently, each bounded; a timeout is logged,
   not fatal (IB is known to leave some unanswered, e.g. in read-only mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ib_async

from ibpilot.broker._ibkr_convert import raw_client
from ibpilot.broker.base import BrokerConnectError, BrokerRequestError
from ibpilot.config import port_product
from ibpilot.errors import ErrorName, by_name, lookup

log = logging.getLogger("ibpilot.broker.ibkr")
_T = TypeVar("_T")

DEFAULT_PORTS = "TWS 7496 live / 7497 paper, IB Gateway 4001 live / 4002 paper, ibpilot sim 4102"


def where(host: str, port: int) -> str:
    """What normally listens on ``port``, as a clause: "IB Gateway (paper) normally listens
    on port 4002" or "port 5000 is not a default port (...)"."""
    product = port_product(port)
    if product == "unknown":
        return f"port {port} is not a default port ({DEFAULT_PORTS})"
    return f"{product} normally listens on port {port}"


def _fail(name: ErrorName, detail: str) -> BrokerConnectError:
    return BrokerConnectError(by_name(name), detail)


async def handshake(ib: ib_async.IB, host: str, port: int, client_id: int, limit: float) -> None:
    """Open the socket and complete IB's handshake and startApi (managedAccounts + nextValidId).

    Raises BrokerConnectError: CONNECTION_REFUSED (nothing listens, or no TCP answer),
    CLIENT_ID_IN_USE (error 326, at once), CONNECTION_CLOSED (the peer closed the socket),
    HANDSHAKE_TIMEOUT (the socket opened but the API never answered within ``limit`` s).
    """
    loop = asyncio.get_running_loop()
    failed: asyncio.Future[tuple[int, str]] = loop.create_future()

    def on_error(req_id: int, code: int, text: str, contract: Any) -> None:
        if code in (326, 502) and not failed.done():
            failed.set_result((code, text))

    def on_closed(message: str) -> None:
        if not failed.done():
            failed.set_result((0, message or "the peer closed the connection"))

    ib.wrapper.clientId = client_id  # ib_async keys this client's orders by it
    ib.errorEvent += on_error
    ib.client.conn.disconnected += on_closed
    task = asyncio.ensure_future(raw_client(ib).connectAsync(host, port, client_id, None))
    try:
        done, _ = await asyncio.wait(
            {task, failed}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            _raise_for(task, host, port)
            return
        if failed.done():
            code, text = failed.result()
            raise _refused_by_peer(code, text, host, port, client_id)
        raise _timed_out(ib, host, port, limit)
    finally:
        ib.errorEvent -= on_error
        ib.client.conn.disconnected -= on_closed
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if not failed.done():
            failed.cancel()


def _raise_for(task: asyncio.Future[None], host: str, port: int) -> None:
    exc = task.exception()
    if exc is None:
        return
    if isinstance(exc, ConnectionRefusedError):
        detail = f"{host}:{port} refused the connection; {where(host, port)}"
        raise _fail(ErrorName.CONNECTION_REFUSED, detail) from None
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        detail = f"cannot reach {host}:{port} ({reason}); {where(host, port)}"
        raise _fail(ErrorName.CONNECTION_REFUSED, detail) from None
    raise exc


def _refused_by_peer(
    code: int, text: str, host: str, port: int, client_id: int
) -> BrokerConnectError:
    if code == 326:
        detail = f"client id {client_id} is already in use on {host}:{port} (IB 326: {text})"
        return _fail(ErrorName.CLIENT_ID_IN_USE, detail)
    if code == 502:
        return _fail(ErrorName.CONNECTION_REFUSED, f"{host}:{port} refused the API client: {text}")
    detail = f"{host}:{port} closed the connection during the API handshake ({text})"
    return _fail(ErrorName.CONNECTION_CLOSED, detail)


def _timed_out(ib: ib_async.IB, host: str, port: int, timeout: float) -> BrokerConnectError:
    if ib.client.conn.transport is None:
        detail = f"no TCP answer from {host}:{port} within {timeout:g} s; {where(host, port)}"
        return _fail(ErrorName.CONNECTION_REFUSED, detail)
    version = ib.client.serverVersion()
    if version:
        detail = (
            f"{host}:{port} answered the handshake (server version {version}) but not startApi "
            f"(no account list and next order id) within {timeout:g} s"
        )
    else:
        detail = (
            f"{host}:{port} accepted the connection but never answered the API handshake "
            f"within {timeout:g} s"
        )
    return _fail(ErrorName.HANDSHAKE_TIMEOUT, detail)


async def startup_sync(ib: ib_async.IB, account: str, limit: float) -> list[str]:
    """ib_async's start-up requests, each bounded by ``limit`` s; the names that timed out.

    Raises BrokerConnectError(CONNECTION_CLOSED) when the socket closed meanwhile.
    """
    requests: dict[str, Any] = {
        "positions": ib.reqPositionsAsync(),
        "open orders": ib.reqOpenOrdersAsync(),
        "account updates": ib.reqAccountUpdatesAsync(account),
    }
    results = await asyncio.gather(
        *(asyncio.wait_for(r, limit) for r in requests.values()), return_exceptions=True
    )
    missing = [name for name, r in zip(requests, results, strict=True) if isinstance(r, Exception)]
    if ib.client.isReady():
        try:  # after the open orders, so that fills find their orders
            await asyncio.wait_for(ib.reqExecutionsAsync(), limit)
        except (TimeoutError, ConnectionError, ib_async.RequestError):
            missing.append("executions")
    if not ib.client.isReady():
        host, port = ib.client.host, ib.client.port
        raise _fail(
            ErrorName.CONNECTION_CLOSED,
            f"{host}:{port} closed the connection during the start-up sync",
        )
    for name in missing:
        log.warning("start-up sync: the %s request got no complete answer in %g s", name, limit)
    return missing


async def bounded(request: Callable[[], Awaitable[_T]], what: str, limit: float) -> _T:
    """The answer to ``request()`` (an ib_async request, made here) within ``limit`` s.

    Raises BrokerRequestError: SERVER_ERROR (no answer), NOT_CONNECTED (the socket was closed
    when the request was made, or closed meanwhile), or IB's error as catalogued.
    """
    try:
        return await asyncio.wait_for(request(), limit)
    except TimeoutError:
        detail = f"no answer to {what} within {limit:g} s"
        raise BrokerRequestError(by_name(ErrorName.SERVER_ERROR), detail) from None
    except ConnectionError as exc:
        detail = f"{what}: the link closed ({exc})"
        raise BrokerRequestError(by_name(ErrorName.NOT_CONNECTED), detail) from None
    except ib_async.RequestError as exc:
        detail = f"{what}: IB {exc.code}: {exc.message}"
        raise BrokerRequestError(lookup(exc.code, exc.message), detail, exc.code) from None

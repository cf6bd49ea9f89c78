"""The error catalogue: every IB code the runtime can meet, and ibpilot's own failures.

Each :class:`CatalogueEntry` has a NAME users see, a one-line CAUSE and a one-line FIX, a
:class:`Severity`, and whether it ends the order or request it answers (:class:`Terminality`,
after the "Reaction" column of IB's code table in the reference notes: 462 and 404, for
instance, leave the order live).  :func:`lookup` maps ``(code, text)`` to an entry; a few
codes (0, 162, 200, 321, 322) mean different things depending on IB's text.  Unknown codes
map to ``UNKNOWN_IB_ERROR`` naming the code.  Pure data and functions; no I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar


class Severity(StrEnum):
    """How loud an entry is: info is logged, warning shown, error fails a request, fatal stops."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    FATAL = "fatal"


class Terminality(StrEnum):
    """Whether an entry ends the order or request it answers."""

    TERMINAL = "terminal"  # the order or request is finished
    NOT_TERMINAL = "not_terminal"  # the order or request lives on (warning, hold, advisory)
    NEW_ONLY = "new_only"  # ends a new order; a refused modify leaves the original order live


class ErrorName(StrEnum):
    """The names users see: in logs, the CLI, the dashboard and the ledger."""

    # connection
    CONNECTION_REFUSED = "CONNECTION_REFUSED"
    CLIENT_ID_IN_USE = "CLIENT_ID_IN_USE"
    HANDSHAKE_TIMEOUT = "HANDSHAKE_TIMEOUT"
    CONNECTION_CLOSED = "CONNECTION_CLOSED"
    NOT_CONNECTED = "NOT_CONNECTED"
    GATEWAY_UNRESPONSIVE = "GATEWAY_UNRESPONSIVE"
    SOCKET_PORT_RESET = "SOCKET_PORT_RESET"
    CONNECTIVITY_LOST = "CONNECTIVITY_LOST"
    CONNECTIVITY_RESTORED_DATA_LOST = "CONNECTIVITY_RESTORED_DATA_LOST"
    CONNECTIVITY_RESTORED_DATA_KEPT = "CONNECTIVITY_RESTORED_DATA_KEPT"
    COMPETING_SESSION = "COMPETING_SESSION"
    # permissions and validation
    PERMISSION_DENIED = "PERMISSION_DENIED"
    REQUEST_INVALID = "REQUEST_INVALID"
    SERVER_ERROR = "SERVER_ERROR"
    NO_TRADING_PERMISSION = "NO_TRADING_PERMISSION"
    # pacing and limits
    PACING_WARNING = "PACING_WARNING"
    PACING_VIOLATION = "PACING_VIOLATION"
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    MAX_TICKERS = "MAX_TICKERS"
    MAX_MARKET_DEPTH = "MAX_MARKET_DEPTH"
    DUPLICATE_TICKER_ID = "DUPLICATE_TICKER_ID"
    REQUEST_NOT_FOUND = "REQUEST_NOT_FOUND"
    # contracts and market data
    NO_SECURITY_DEFINITION = "NO_SECURITY_DEFINITION"
    AMBIGUOUS_CONTRACT = "AMBIGUOUS_CONTRACT"
    NO_MARKET_DATA_PERMISSION = "NO_MARKET_DATA_PERMISSION"
    DELAYED_DATA = "DELAYED_DATA"
    PARTIAL_MARKET_DATA = "PARTIAL_MARKET_DATA"
    MARKET_DATA_FARM = "MARKET_DATA_FARM"
    MARKET_DATA_FARM_OK = "MARKET_DATA_FARM_OK"
    HISTORICAL_NO_DATA = "HISTORICAL_NO_DATA"
    HISTORICAL_CANCELLED = "HISTORICAL_CANCELLED"
    HISTORICAL_BAD_REQUEST = "HISTORICAL_BAD_REQUEST"
    HISTORICAL_ERROR = "HISTORICAL_ERROR"
    HISTORICAL_INFO = "HISTORICAL_INFO"
    BUST_EVENT = "BUST_EVENT"
    # orders
    ORDER_REJECTED = "ORDER_REJECTED"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    ORDER_WARNING = "ORDER_WARNING"
    DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"
    PRICE_INCREMENT = "PRICE_INCREMENT"
    MODIFY_REFUSED = "MODIFY_REFUSED"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    CANCEL_NOT_FOUND = "CANCEL_NOT_FOUND"
    CANCEL_REFUSED = "CANCEL_REFUSED"
    SHORT_LOCATE = "SHORT_LOCATE"
    ORDER_SIZE_ZERO = "ORDER_SIZE_ZERO"
    # account
    ACCOUNT_UPDATES_UNSUBSCRIBED = "ACCOUNT_UPDATES_UNSUBSCRIBED"
    ACCOUNT_ALERT = "ACCOUNT_ALERT"
    # ibpilot's own
    WRONG_ENVIRONMENT = "WRONG_ENVIRONMENT"
    MANDATE_INTEGRITY_VIOLATION = "MANDATE_INTEGRITY_VIOLATION"
    CONFIG_INVALID = "CONFIG_INVALID"
    LIVE_NOT_CONFIRMED = "LIVE_NOT_CONFIRMED"
    GATE_REFUSED = "GATE_REFUSED"
    LEDGER_INTEGRITY_VIOLATION = "LEDGER_INTEGRITY_VIOLATION"
    STRATEGY_ERROR = "STRATEGY_ERROR"
    UNKNOWN_IB_ERROR = "UNKNOWN_IB_ERROR"


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One named failure: what users see, and how the runtime reacts."""

    name: ErrorName
    severity: Severity
    terminal: Terminality
    codes: tuple[int, ...]  # IB codes that map here (some only for matching texts)
    cause: str
    fix: str

    def ends(self, *, modify: bool = False) -> bool:
        """True if the entry finishes the order/request it answers (``modify``: it answered one)."""
        if self.terminal is Terminality.NEW_ONLY:
            return not modify
        return self.terminal is Terminality.TERMINAL

    def render(self, code: int | None = None, text: str = "") -> str:
        """One line for users: ``NAME (IB code: text): cause Fix: fix``."""
        origin = ""
        if code is not None:
            origin = f" (IB {code}: {text.strip()})" if text.strip() else f" (IB {code})"
        return f"{self.name}{origin}: {self.cause} Fix: {self.fix}"


_S, _T = Severity, Terminality
_N = ErrorName


def _e(name: ErrorName, sev: Severity, term: Terminality, codes: tuple[int, ...], cause: str,
       fix: str) -> CatalogueEntry:  # fmt: skip
    return CatalogueEntry(name, sev, term, codes, cause, fix)


_ENTRIES: tuple[CatalogueEntry, ...] = (
    _e(_N.CONNECTION_REFUSED, _S.ERROR, _T.TERMINAL, (502,),
       "Nothing accepts connections on the configured host and port: TWS/IB Gateway is not "
       "running, listens on another port, or its API is disabled.",
       "Start TWS or IB Gateway, enable 'ActiveX and Socket Clients' in Global Configuration -> "
       "API -> Settings, and check credentials.port (7497/4002 paper, 7496/4001 live)."),
    _e(_N.CLIENT_ID_IN_USE, _S.ERROR, _T.TERMINAL, (326,),
       "Another API connection, or a stale one from an earlier run, already uses this client_id.",
       "Set a unique credentials.client_id in adapter.json or close the other connection (a "
       "stale one clears when the gateway restarts)."),
    _e(_N.HANDSHAKE_TIMEOUT, _S.ERROR, _T.TERMINAL, (),
       "The socket opened but the API handshake never completed: a half-open gateway "
       "(restarting or waiting for 2FA), the API disabled, or this host not in Trusted IPs.",
       "Look at the gateway window for a login, 2FA or 'accept incoming connection' prompt, add "
       "127.0.0.1 to Trusted IPs, or restart the gateway."),
    _e(_N.CONNECTION_CLOSED, _S.ERROR, _T.TERMINAL, (507,),
       "TWS/Gateway closed the API socket (restart, client-id clash or too many messages).",
       "Nothing: ibpilot reconnects with backoff and reconciles; if it repeats, read the "
       "gateway log and check client_id."),
    _e(_N.GATEWAY_UNRESPONSIVE, _S.ERROR, _T.TERMINAL, (),
       "The socket is open but the gateway stopped answering (no reply to the keepalive): it "
       "is hung, or the connection is half-open after a network or host failure.",
       "Nothing: ibpilot closes the socket and reconnects; if it repeats, check the gateway "
       "host (CPU, memory, a modal dialog) and the network path."),
    _e(_N.NOT_CONNECTED, _S.ERROR, _T.TERMINAL, (504,),
       "A request was made while the API socket was not connected.",
       "Wait for the reconnect; ibpilot refuses new orders until the connection is back."),
    _e(_N.SOCKET_PORT_RESET, _S.ERROR, _T.TERMINAL, (1300,),
       "The API socket port was changed in TWS/Gateway settings and this connection was dropped.",
       "Set credentials.port in adapter.json to the port named in IB's message and restart."),
    _e(_N.CONNECTIVITY_LOST, _S.ERROR, _T.NOT_TERMINAL, (1100, 2110),
       "TWS/Gateway lost its link to IB's servers (nightly reset, network or a competing "
       "login); the API socket stays up.",
       "Nothing: new orders pause until 1101/1102; outside IB's reset windows check the "
       "gateway host's network."),
    _e(_N.CONNECTIVITY_RESTORED_DATA_LOST, _S.WARNING, _T.NOT_TERMINAL, (1101,),
       "TWS/Gateway is reconnected to IB but its market-data subscriptions were lost.",
       "Nothing: ibpilot re-subscribes market data and reconciles orders, fills and positions."),
    _e(_N.CONNECTIVITY_RESTORED_DATA_KEPT, _S.INFO, _T.NOT_TERMINAL, (1102,),
       "TWS/Gateway is reconnected to IB and market-data subscriptions were kept.",
       "Nothing: ibpilot resumes and reconciles orders and executions."),
    _e(_N.COMPETING_SESSION, _S.ERROR, _T.NOT_TERMINAL, (10197,),
       "Another session of the same IB user (e.g. the live login while this paper one runs) "
       "took the market data.",
       "Log the other session out (TWS, mobile, Client Portal) or give the bot its own user."),
    _e(_N.PERMISSION_DENIED, _S.FATAL, _T.TERMINAL, (321,),
       "The API is in Read-Only mode: orders cannot be placed, modified or cancelled.",
       "Uncheck 'Read-Only API' in Global Configuration -> API -> Settings (Docker: "
       "READ_ONLY_API=no) and restart the bot."),
    _e(_N.REQUEST_INVALID, _S.ERROR, _T.NEW_ONLY, (321,),
       "IB could not validate the request (e.g. an invalid account code).",
       "Read IB's text and check the account and order fields; a refused modify leaves the "
       "original order live."),
    _e(_N.SERVER_ERROR, _S.ERROR, _T.TERMINAL, (320, 322),
       "IB failed to process the request.",
       "Retry later; if it persists, read IB's text and check the request's fields."),
    _e(_N.NO_TRADING_PERMISSION, _S.ERROR, _T.TERMINAL, (203, 460),
       "The account has no trading permission for this instrument, or it is not allowed there.",
       "Add the permission in Client Portal (Settings -> Trading Permissions) or remove the "
       "instrument from the strategy."),
    _e(_N.PACING_WARNING, _S.WARNING, _T.NOT_TERMINAL, (0,),
       "The client is approaching IB's limit of 50 messages per second.",
       "Nothing if it is rare; otherwise raise rate_limit_ms, IB disconnects clients that "
       "keep exceeding it."),
    _e(_N.PACING_VIOLATION, _S.WARNING, _T.TERMINAL, (100, 162),
       "IB's pacing rules were broken: more than 50 messages/s (100) or too many historical "
       "requests in a short time (162).",
       "Back off (historical data: up to 10 minutes); keep ibpilot's pacer settings at their "
       "defaults."),
    _e(_N.TOO_MANY_REQUESTS, _S.ERROR, _T.TERMINAL, (322,),
       "More than 50 historical-data requests were open at the same time.",
       "Request less at once; ibpilot's history pacer keeps below IB's limits by default."),
    _e(_N.MAX_TICKERS, _S.ERROR, _T.TERMINAL, (101,),
       "All market-data lines are in use (100 by default, shared with TWS windows).",
       "Subscribe to fewer instruments, close TWS watchlists, or buy more lines (Quote Booster)."),
    _e(_N.MAX_MARKET_DEPTH, _S.ERROR, _T.TERMINAL, (309,),
       "The account's limit of simultaneous market-depth subscriptions was reached.",
       "Cancel unused depth subscriptions; the limit grows with market-data lines."),
    _e(_N.DUPLICATE_TICKER_ID, _S.ERROR, _T.TERMINAL, (102, 322),
       "A request reused a request id that is still active (often after a gateway restart).",
       "Restart the bot; if it repeats, report it: ibpilot should never reuse a live id."),
    _e(_N.REQUEST_NOT_FOUND, _S.INFO, _T.NOT_TERMINAL, (300, 366),
       "A cancel named a request IB had already finished: a harmless race.",
       "Nothing."),
    _e(_N.NO_SECURITY_DEFINITION, _S.ERROR, _T.TERMINAL, (200,),
       "IB has no contract matching the symbol, sec_type, exchange, currency and qualifiers.",
       "Check the instrument in the strategy file; futures and options need the contract "
       "month (and strike and right)."),
    _e(_N.AMBIGUOUS_CONTRACT, _S.ERROR, _T.TERMINAL, (200,),
       "The contract description matches several contracts.",
       "Add primary_exchange, currency or other qualifiers to the instrument."),
    _e(_N.NO_MARKET_DATA_PERMISSION, _S.ERROR, _T.TERMINAL, (354, 10089, 10168),
       "The account has no (API) market-data subscription for this instrument and delayed "
       "data is not in use.",
       "Subscribe in Client Portal (Settings -> Market Data Subscriptions) or use delayed data."),
    _e(_N.DELAYED_DATA, _S.WARNING, _T.NOT_TERMINAL, (10167,),
       "No live market-data subscription: IB sends delayed data on this request instead.",
       "Nothing for testing; subscribe to live data before trading on these prices."),
    _e(_N.PARTIAL_MARKET_DATA, _S.WARNING, _T.NOT_TERMINAL, (10090,),
       "Part of the requested market data (some generic ticks) is not subscribed.",
       "Nothing: other ticks keep flowing; subscribe if the missing ticks are needed."),
    _e(_N.MARKET_DATA_FARM, _S.WARNING, _T.NOT_TERMINAL, (2103, 2105, 2157),
       "TWS/Gateway lost its link to an IB data farm (quotes 2103, history 2105, contract "
       "definitions 2157); usually IB's nightly reset.",
       "Nothing: it reconnects by itself and quotes count as stale until then; if it lasts, "
       "check the internet connection."),
    _e(_N.MARKET_DATA_FARM_OK, _S.INFO, _T.NOT_TERMINAL,
       (2104, 2106, 2107, 2108, 2119, 2158),
       "An IB data farm link is OK, connecting, or idle but available on demand.",
       "Nothing."),
    _e(_N.HISTORICAL_NO_DATA, _S.INFO, _T.TERMINAL, (162,),
       "IB has no historical data for this instrument and period (HMDS returned no data).",
       "Nothing: it is an empty result; check the period, bar size and whatToShow if data "
       "was expected."),
    _e(_N.HISTORICAL_CANCELLED, _S.INFO, _T.TERMINAL, (162,),
       "The historical-data query was cancelled (by the client or by IB).",
       "Nothing if ibpilot cancelled it; otherwise retry later."),
    _e(_N.HISTORICAL_BAD_REQUEST, _S.ERROR, _T.TERMINAL, (162,),
       "The historical-data request is not valid (e.g. a bar size not allowed for the duration).",
       "Use a bar size IB allows for the duration (e.g. '1 D' with '1 min' to '1 day')."),
    _e(_N.HISTORICAL_ERROR, _S.ERROR, _T.TERMINAL, (162,),
       "IB's historical data service failed the request.",
       "Read IB's text; retry later."),
    _e(_N.HISTORICAL_INFO, _S.INFO, _T.NOT_TERMINAL, (165,),
       "An informational message from IB's historical data service.",
       "Nothing."),
    _e(_N.BUST_EVENT, _S.WARNING, _T.NOT_TERMINAL, (10225,),
       "IB broke off real-time bars (a bust event).",
       "Nothing: ibpilot re-subscribes the real-time bars."),
    _e(_N.ORDER_REJECTED, _S.ERROR, _T.TERMINAL, (201,),
       "IB rejected the order; its reason follows in IB's text.",
       "Read the reason (size, exchange closed, account, permissions) and correct the order "
       "or the strategy."),
    _e(_N.ORDER_CANCELLED, _S.WARNING, _T.TERMINAL, (202,),
       "The order was cancelled, at our request or by IB (e.g. price too far through the "
       "market).",
       "Nothing if ibpilot asked for it; otherwise read IB's reason."),
    _e(_N.ORDER_WARNING, _S.WARNING, _T.NOT_TERMINAL, (399,),
       "IB accepted the order with a warning (e.g. held until the session opens).",
       "Nothing: the order stays live."),
    _e(_N.DUPLICATE_ORDER_ID, _S.ERROR, _T.TERMINAL, (103,),
       "An order id not above an earlier one from this client was used.",
       "Nothing: ibpilot re-syncs order ids with IB; if it repeats, report it."),
    _e(_N.PRICE_INCREMENT, _S.ERROR, _T.NEW_ONLY, (110,),
       "The price does not conform to the contract's minimum price variation (tick).",
       "Round limit and stop prices to the contract's minimum tick."),
    _e(_N.MODIFY_REFUSED, _S.WARNING, _T.NOT_TERMINAL, (104, 105, 462),
       "A modification was refused (time in force 462, a fixed field 105, or already filled "
       "104); the original order is unchanged.",
       "Modify only price and quantity, or cancel and place a new order; ibpilot re-reads "
       "open orders."),
    _e(_N.ORDER_NOT_FOUND, _S.WARNING, _T.TERMINAL, (135,),
       "A cancel or modify named an order id IB does not know.",
       "Nothing: ibpilot reconciles its orders with the broker's."),
    _e(_N.CANCEL_NOT_FOUND, _S.WARNING, _T.TERMINAL, (10147,),
       "The order to cancel is unknown to IB: it never arrived, is already gone, or its id is 0.",
       "Nothing: ibpilot resolves the cancel at once and reconciles whether it was placed."),
    _e(_N.CANCEL_REFUSED, _S.WARNING, _T.NOT_TERMINAL, (161, 10148),
       "The order cannot be cancelled now: it is filled, cancelled or being cancelled.",
       "Nothing: ibpilot adopts the reported state and reconciles executions."),
    _e(_N.SHORT_LOCATE, _S.WARNING, _T.NOT_TERMINAL, (404,),
       "Shares are not available to borrow yet; IB holds the short order while it locates them.",
       "Nothing: the order stays live; cancel it if a held short is not wanted."),
    _e(_N.ORDER_SIZE_ZERO, _S.ERROR, _T.TERMINAL, (434,),
       "An order with quantity zero reached IB.",
       "Report it: the gate refuses zero quantities before sending."),
    _e(_N.ACCOUNT_UPDATES_UNSUBSCRIBED, _S.WARNING, _T.NOT_TERMINAL, (2100,),
       "Another client requested account updates and this one was unsubscribed.",
       "Nothing: ibpilot re-subscribes; avoid tools that request account updates concurrently."),
    _e(_N.ACCOUNT_ALERT, _S.WARNING, _T.NOT_TERMINAL, (2148,),
       "IB sent an account alert (e.g. a margin warning).",
       "Read IB's text and review the account in TWS or Client Portal."),
    _e(_N.WRONG_ENVIRONMENT, _S.FATAL, _T.TERMINAL, (),
       "The port or account does not match the environment asked for (e.g. paper config on a "
       "live port, or a live U... account when paper was asked).",
       "Make environment, port and account in adapter.json agree; nothing is sent until they do."),
    _e(_N.MANDATE_INTEGRITY_VIOLATION, _S.FATAL, _T.TERMINAL, (),
       "The strategy file changed on disk while the bot was running: its spec hash differs.",
       "Stop the bot, review the change, and restart so the new spec hash is recorded."),
    _e(_N.CONFIG_INVALID, _S.FATAL, _T.TERMINAL, (),
       "adapter.json or the strategy file is invalid; each problem is listed with its JSON path.",
       "Fix each listed key and start again."),
    _e(_N.LIVE_NOT_CONFIRMED, _S.FATAL, _T.TERMINAL, (),
       "Live trading needs environment 'live', mandate.allow_live true and --live with the "
       "account id typed back; one is missing or disagrees.",
       "Give all three signals, or run on paper."),
    _e(_N.GATE_REFUSED, _S.WARNING, _T.TERMINAL, (),
       "The mandate gate refused the order; every failed rule is recorded in the ledger.",
       "Nothing if intended; otherwise change the strategy or the mandate's limits."),
    _e(_N.LEDGER_INTEGRITY_VIOLATION, _S.FATAL, _T.TERMINAL, (),
       "The ledger's hash chain does not verify: an entry was altered, removed or reordered.",
       "Stop the bot, find the first entry that fails to verify, restore the ledger from a "
       "backup."),
    _e(_N.STRATEGY_ERROR, _S.ERROR, _T.NOT_TERMINAL, (),
       "The strategy's code raised an exception in one of its hooks.",
       "Read the recorded traceback and fix the strategy; the bot continued or halted by policy."),
    _e(_N.UNKNOWN_IB_ERROR, _S.ERROR, _T.NOT_TERMINAL, (),
       "IB sent an error code that is not in ibpilot's catalogue.",
       "Read IB's text and reconcile; report the code so it can be catalogued."),
)  # fmt: skip

# Codes whose meaning depends on IB's text: (lower-case fragment, name), first match wins.
_BY_TEXT: dict[int, tuple[tuple[tuple[str, ErrorName], ...], ErrorName]] = {
    0: ((("approaching max rate", _N.PACING_WARNING),), _N.UNKNOWN_IB_ERROR),
    162: (
        (
            ("pacing violation", _N.PACING_VIOLATION),
            ("no data", _N.HISTORICAL_NO_DATA),
            ("cancelled", _N.HISTORICAL_CANCELLED),
            ("canceled", _N.HISTORICAL_CANCELLED),
            ("invalid step", _N.HISTORICAL_BAD_REQUEST),
            ("bar size", _N.HISTORICAL_BAD_REQUEST),
            ("duration", _N.HISTORICAL_BAD_REQUEST),
        ),
        _N.HISTORICAL_ERROR,
    ),
    200: ((("ambiguous", _N.AMBIGUOUS_CONTRACT),), _N.NO_SECURITY_DEFINITION),
    321: (
        (("read-only", _N.PERMISSION_DENIED), ("read only", _N.PERMISSION_DENIED)),
        _N.REQUEST_INVALID,
    ),
    322: (
        (("duplicate ticker", _N.DUPLICATE_TICKER_ID), ("simultaneous", _N.TOO_MANY_REQUESTS)),
        _N.SERVER_ERROR,
    ),
}


def _index() -> tuple[dict[ErrorName, CatalogueEntry], dict[int, ErrorName]]:
    by_name: dict[ErrorName, CatalogueEntry] = {}
    by_code: dict[int, ErrorName] = {}
    for entry in _ENTRIES:
        if entry.name in by_name:
            raise AssertionError(f"catalogue lists {entry.name} twice")
        by_name[entry.name] = entry
        for code in entry.codes:
            if code in _BY_TEXT:
                continue
            if code in by_code:
                raise AssertionError(f"IB code {code} maps to {by_code[code]} and {entry.name}")
            by_code[code] = entry.name
    missing = set(ErrorName) - set(by_name)
    if missing:
        raise AssertionError(f"names without a catalogue entry: {sorted(missing)}")
    return by_name, by_code


_BY_NAME, _BY_CODE = _index()


class Catalogue:
    """The catalogue as a namespace: ``Catalogue.entries``, ``Catalogue.lookup(code, text)``."""

    entries: ClassVar[tuple[CatalogueEntry, ...]] = _ENTRIES

    @staticmethod
    def lookup(code: int, text: str = "") -> CatalogueEntry:
        """The entry for IB error ``code`` (``text`` splits codes with several meanings).

        Never raises: an unknown code gives ``UNKNOWN_IB_ERROR`` whose cause names the code.
        """
        name = _name_for(code, text)
        entry = _BY_NAME[name]
        if name is ErrorName.UNKNOWN_IB_ERROR:
            cause = f"IB error {code} is not in ibpilot's catalogue."
            return dataclasses.replace(entry, codes=(code,), cause=cause)
        return entry

    @staticmethod
    def by_name(name: str) -> CatalogueEntry:
        """The entry called ``name``; raises KeyError naming it when there is none."""
        try:
            return _BY_NAME[ErrorName(name)]
        except ValueError:
            raise KeyError(f"no catalogue entry named {name!r}") from None


def _name_for(code: int, text: str) -> ErrorName:
    split = _BY_TEXT.get(code)
    if split is None:
        return _BY_CODE.get(code, ErrorName.UNKNOWN_IB_ERROR)
    rules, default = split
    lowered = text.lower()
    for fragment, name in rules:
        if fragment in lowered:
            return name
    return default


def lookup(code: int, text: str = "") -> CatalogueEntry:
    """The entry for IB error ``code``; see :meth:`Catalogue.lookup`. Never raises."""
    return Catalogue.lookup(code, text)


def by_name(name: str) -> CatalogueEntry:
    """The entry called ``name``; raises KeyError when there is none."""
    return Catalogue.by_name(name)


def troubleshooting_markdown() -> str:
    """The troubleshooting table (Error, IB codes, Severity, Cause, Fix) as Markdown."""
    lines = [
        "| Error | IB codes | Severity | Cause | Fix |",
        "|---|---|---|---|---|",
    ]
    for entry in _ENTRIES:
        codes = ", ".join(str(code) for code in entry.codes) or "-"
        cells = (f"`{entry.name}`", codes, str(entry.severity), entry.cause, entry.fix)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"

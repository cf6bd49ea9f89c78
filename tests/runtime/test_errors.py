"""The error catalogue: every IB code the runtime meets has a named entry with cause and fix."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ibpilot.errors import (
    Catalogue,
    CatalogueEntry,
    ErrorName,
    Severity,
    Terminality,
    by_name,
    lookup,
    troubleshooting_markdown,
)

# Every code of the table "Error and warning codes a runtime must handle" (ib_rules.md 2.3)
# and of the list that follows it, with an IB text as seen in the wild.
TABLE: dict[int, str] = {
    100: "Max rate of messages per second has been exceeded.",
    101: "Max number of tickers has been reached.",
    102: "Duplicate ticker ID.",
    103: "Duplicate order ID.",
    104: "Can't modify a filled order.",
    105: "Order being modified does not match original order.",
    110: "The price does not conform to the minimum price variation for this contract.",
    135: "Can't find order with ID = 12",
    161: "Cancel attempted when order is not in a cancellable state. Order permId = 7",
    162: "Historical Market Data Service error message:Historical data request pacing violation",
    165: "Historical market Data Service query message.",
    200: "No security definition has been found for the request.",
    201: "Order rejected - Reason: Exchange is closed.",
    202: "Order Canceled - reason:",
    203: "The security AAPL is not available or allowed for this account.",
    321: "Error validating request:-'bh' : cause - The API interface is currently in Read-Only",
    322: "Error processing request.-'bO' : cause - Duplicate ticker id",
    326: "Unable to connect as the client id is already in use. Retry with a unique client id.",
    354: "Requested market data is not subscribed.Delayed market data is available.",
    366: "No historical data query found for ticker id:5",
    399: "Order Message: BUY 1 SPY ARCA Warning: your order will not be placed at the exchange",
    404: "Shares for this order are not immediately available for short sale.",
    434: "The order size cannot be zero.",
    462: "Order modify failed. Cannot change to the new Time in Force.DAY",
    502: "Couldn't connect to TWS.",
    504: "Not connected.",
    507: "Bad Message Length",
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and TWS has been restored- data lost.",
    1102: "Connectivity between IB and TWS has been restored- data maintained.",
    1300: "TWS socket port has been reset and this connection is being dropped. 7499",
    2100: "New account data requested from TWS. API client has been unsubscribed.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2107: "A historical data farm connection has become inactive",
    2108: "A market data farm connection has become inactive",
    2110: "Connectivity between TWS and server is broken. It will be restored automatically.",
    2119: "Market data farm is connecting:usfarm",
    2157: "Sec-def data farm connection is broken:secdefnj",
    2158: "Sec-def data farm connection is OK:secdefnj",
    10089: "Requested market data requires additional subscription for API.",
    10090: "Part of requested market data is not subscribed.",
    10147: "OrderId 53 that needs to be cancelled is not found.",
    10148: "OrderId 53 that needs to be cancelled cannot be cancelled, state: Filled.",
    10167: "Requested market data is not subscribed. Displaying delayed market data.",
    10168: "Requested market data is not subscribed. Delayed market data is not enabled.",
    10197: "No market data during competing session",
    10225: "Bust event occurred, current subscription is deactivated.",
    2148: "Margin warning",
    460: "No trading permissions.",
    300: "Can't find EId with tickerId:5",
    309: "Max number (3) of market depth requests has been reached",
}

E = ErrorName


@pytest.mark.parametrize(("code", "text"), sorted(TABLE.items()))
def test_every_code_of_the_table_maps_to_a_named_entry(code: int, text: str) -> None:
    entry = lookup(code, text)
    assert entry.name is not E.UNKNOWN_IB_ERROR
    assert code in entry.codes
    for line in (entry.cause, entry.fix):
        assert line.strip()
        assert "\n" not in line


@pytest.mark.parametrize(
    ("code", "text", "name"),
    [
        (502, "", E.CONNECTION_REFUSED),
        (326, "", E.CLIENT_ID_IN_USE),
        (321, TABLE[321], E.PERMISSION_DENIED),
        (2103, "", E.MARKET_DATA_FARM),
        (2105, "", E.MARKET_DATA_FARM),
        (2157, "", E.MARKET_DATA_FARM),
        (2104, "", E.MARKET_DATA_FARM_OK),
        (2106, "", E.MARKET_DATA_FARM_OK),
        (2158, "", E.MARKET_DATA_FARM_OK),
        (100, "", E.PACING_VIOLATION),
        (101, "", E.MAX_TICKERS),
        (200, "", E.NO_SECURITY_DEFINITION),
        (201, "", E.ORDER_REJECTED),
        (202, "", E.ORDER_CANCELLED),
        (103, "", E.DUPLICATE_ORDER_ID),
        (110, "", E.PRICE_INCREMENT),
        (1100, "", E.CONNECTIVITY_LOST),
        (2110, "", E.CONNECTIVITY_LOST),
        (1101, "", E.CONNECTIVITY_RESTORED_DATA_LOST),
        (1102, "", E.CONNECTIVITY_RESTORED_DATA_KEPT),
        (504, "", E.NOT_CONNECTED),
        (1300, "", E.SOCKET_PORT_RESET),
        (10197, "", E.COMPETING_SESSION),
        (354, "", E.NO_MARKET_DATA_PERMISSION),
        (10089, "", E.NO_MARKET_DATA_PERMISSION),
        (10168, "", E.NO_MARKET_DATA_PERMISSION),
        (10167, "", E.DELAYED_DATA),
        (10147, "", E.CANCEL_NOT_FOUND),
        (10148, "", E.CANCEL_REFUSED),
        (462, "", E.MODIFY_REFUSED),
        (105, "", E.MODIFY_REFUSED),
        (104, "", E.MODIFY_REFUSED),
        (404, "", E.SHORT_LOCATE),
        (434, "", E.ORDER_SIZE_ZERO),
        (102, "", E.DUPLICATE_TICKER_ID),
        (322, TABLE[322], E.DUPLICATE_TICKER_ID),
        (320, "", E.SERVER_ERROR),
        (322, "Error processing request: something else", E.SERVER_ERROR),
    ],
)
def test_codes_map_to_the_names_users_know(code: int, text: str, name: ErrorName) -> None:
    assert lookup(code, text).name is name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (TABLE[162], E.PACING_VIOLATION),
        (
            "HMDS error message:HMDS query returned no data: EUR.USD@IDEALPRO Ask",
            E.HISTORICAL_NO_DATA,
        ),
        (
            "Historical Market Data Service error message:API historical data query cancelled: 28",
            E.HISTORICAL_CANCELLED,
        ),
        ("Historical Market Data Service error message:invalid step", E.HISTORICAL_BAD_REQUEST),
        ("Historical Market Data Service error message:something new", E.HISTORICAL_ERROR),
        ("", E.HISTORICAL_ERROR),
    ],
)
def test_162_is_split_by_its_text(text: str, name: ErrorName) -> None:
    assert lookup(162, text).name is name
    assert lookup(162, text.upper()).name is name


def test_texts_split_read_only_ambiguous_contracts_and_concurrency() -> None:
    assert lookup(321, "Error validating request.-'cq' : cause - Invalid account code").name is (
        E.REQUEST_INVALID
    )
    ambiguous = "The contract description specified for SPY is ambiguous"
    assert lookup(200, ambiguous).name is E.AMBIGUOUS_CONTRACT
    many = "Error processing request:Only 50 simultaneous API historical data requests allowed."
    assert lookup(322, many).name is E.TOO_MANY_REQUESTS
    approaching = "Warning: Approaching max rate of 50 messages per second (44)"
    assert lookup(0, approaching).name is E.PACING_WARNING


def test_unknown_codes_name_the_code() -> None:
    entry = lookup(987654, "whatever")
    assert entry.name is E.UNKNOWN_IB_ERROR
    assert "987654" in entry.cause
    assert entry.codes == (987654,)
    assert lookup(0, "something else").name is E.UNKNOWN_IB_ERROR
    assert "987654" in entry.render(987654, "whatever")


@given(st.integers(), st.text())
def test_lookup_never_raises(code: int, text: str) -> None:
    entry = lookup(code, text)
    assert isinstance(entry, CatalogueEntry)
    assert entry.cause
    assert entry.fix


def test_terminality_follows_the_reaction_column() -> None:
    for code in (462, 404, 105, 399, 10167, 10090, 1100, 2103, 10148, 161):
        entry = lookup(code, TABLE.get(code, ""))
        assert not entry.ends(), code
        assert not entry.ends(modify=True), code
    for code in (201, 202, 200, 103, 10147, 354, 10168, 101):
        assert lookup(code, TABLE[code]).ends(), code
    for code in (110, 321):  # a modify refused this way leaves the original order live
        entry = lookup(code, "Invalid account code" if code == 321 else "")
        assert entry.terminal is Terminality.NEW_ONLY
        assert entry.ends()
        assert not entry.ends(modify=True)
    assert lookup(162, "returned no data").ends()


def test_severities() -> None:
    assert lookup(321, TABLE[321]).severity is Severity.FATAL
    assert lookup(2104).severity is Severity.INFO
    assert lookup(2103).severity is Severity.WARNING
    assert by_name("WRONG_ENVIRONMENT").severity is Severity.FATAL
    assert by_name("MANDATE_INTEGRITY_VIOLATION").severity is Severity.FATAL


def test_every_name_has_exactly_one_entry_with_cause_and_fix() -> None:
    names = [entry.name for entry in Catalogue.entries]
    assert sorted(names) == sorted(ErrorName)
    for entry in Catalogue.entries:
        assert by_name(entry.name) is entry
        assert Catalogue.by_name(str(entry.name)) is entry
        assert entry.cause.endswith(".")
        assert entry.fix.endswith(".")
        assert len(entry.cause) <= 200
        assert len(entry.fix) <= 200


def test_runtime_side_entries_exist() -> None:
    for name in (
        "HANDSHAKE_TIMEOUT",
        "WRONG_ENVIRONMENT",
        "MANDATE_INTEGRITY_VIOLATION",
        "CONFIG_INVALID",
        "LIVE_NOT_CONFIRMED",
        "GATE_REFUSED",
        "LEDGER_INTEGRITY_VIOLATION",
        "STRATEGY_ERROR",
    ):
        assert by_name(name).codes == ()
    with pytest.raises(KeyError, match="NOPE"):
        by_name("NOPE")


def test_troubleshooting_markdown_has_a_row_per_entry() -> None:
    table = troubleshooting_markdown()
    lines = table.strip().splitlines()
    assert lines[0] == "| Error | IB codes | Severity | Cause | Fix |"
    assert len(lines) == len(Catalogue.entries) + 2
    for line, entry in zip(lines[2:], Catalogue.entries, strict=True):
        assert line.startswith(f"| `{entry.name}` |")
        assert line.count(" | ") == 4
    for seed_name in ("CONNECTION_REFUSED", "CLIENT_ID_IN_USE", "PERMISSION_DENIED"):
        assert f"`{seed_name}`" in table


def test_render_is_one_line_with_name_code_and_fix() -> None:
    line = lookup(326).render(326, "Unable to connect as the client id is already in use.")
    assert line.startswith("CLIENT_ID_IN_USE (IB 326: Unable to connect")
    assert "Fix: " in line
    assert "\n" not in line
    assert by_name("GATE_REFUSED").render().startswith("GATE_REFUSED: ")

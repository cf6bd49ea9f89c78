"""Order messages, two-ended: the real clients encode, we parse; we encode, they decode.

Request side: ib_async's ``Client.placeOrder`` and IB's ``EClient.placeOrder`` write a
catalogue of orders into a recording connection; ``order_wire`` must read every field
back (nothing left over) into the OrderSpec that was sent.

Response side: every encoder of ``order_messages`` at every server version 157..178
goes through both real decoders (``wirecheck``) with zero problems, and the decoded
wrapper calls carry what was encoded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ib_async import ComboLeg, Contract, DeltaNeutralContract, Order, TagValue
from ib_async.client import Client
from ib_async.order import OrderComboLeg, OrderCondition
from ibapi import order_condition as ib_conditions
from ibapi.client import EClient
from ibapi.contract import ComboLeg as IbComboLeg
from ibapi.contract import Contract as IbContract
from ibapi.contract import DeltaNeutralContract as IbDeltaNeutralContract
from ibapi.order import Order as IbOrder
from ibapi.order import OrderComboLeg as IbOrderComboLeg
from ibapi.order_cancel import OrderCancel
from ibapi.tag_value import TagValue as IbTagValue
from ibapi.wrapper import EWrapper
from wirecheck import Decoded, WireChecker

from ibpilot.sim import order_messages as om
from ibpilot.sim.order_wire import (
    CancelOrder,
    PlaceOrder,
    ReqGlobalCancel,
    order_parsers,
    parse_place_order,
)
from ibpilot.sim.orders import Execution, OrderSpec, OrderStatus, OrderType, TimeInForce
from ibpilot.sim.protocol import (
    UNSET_DOUBLE,
    UNSET_INTEGER,
    Field,
    FieldError,
    FieldReader,
    decode_payload,
    encode_payload,
)

ALL_VERSIONS = tuple(range(157, 179))
REQUEST_VERSIONS = (157, 158, 163, 166, 169, 170, 176, 177, 178)
EPOCH = int(datetime(2026, 3, 2, 14, 31, 5, tzinfo=UTC).timestamp())  # 09:31:05 US/Eastern

AAPL: dict[str, Any] = {
    "conId": 265598, "symbol": "AAPL", "secType": "STK", "exchange": "SMART",
    "primaryExchange": "NASDAQ", "currency": "USD",
}  # fmt: skip
AAPL_CALL: dict[str, Any] = {
    "symbol": "AAPL", "secType": "OPT", "lastTradeDateOrContractMonth": "20260320",
    "strike": 180.0, "right": "C", "multiplier": "100", "exchange": "SMART", "currency": "USD",
}  # fmt: skip
SPY_BAG: dict[str, Any] = {
    "symbol": "SPY",
    "secType": "BAG",
    "exchange": "SMART",
    "currency": "USD",
}
ATS: dict[str, Any] = {**AAPL, "exchange": "IBKRATS"}

# (condition type, attributes by ib_async's names); conjunction "a" = and, "o" = or
CONDITIONS: tuple[tuple[int, dict[str, Any]], ...] = (
    (1, {"conjunction": "a", "isMore": True, "price": 190.5, "conId": 265598, "exch": "SMART",
         "triggerMethod": 2}),
    (3, {"conjunction": "o", "isMore": False, "time": "20260302 15:00:00 US/Eastern"}),
    (4, {"conjunction": "a", "isMore": False, "percent": 30}),
    (5, {"conjunction": "a", "secType": "STK", "exch": "SMART", "symbol": "MSFT"}),
    (6, {"conjunction": "a", "isMore": True, "volume": 100000, "conId": 272093, "exch": "SMART"}),
    (7, {"conjunction": "a", "isMore": True, "changePercent": 2.5, "conId": 756733,
         "exch": "SMART"}),
)  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One order, described once by IB's field names, built for both clients."""

    name: str
    order: dict[str, Any]
    contract: dict[str, Any] = field(default_factory=lambda: AAPL)
    algo_params: tuple[tuple[str, str], ...] = ()
    conditions: tuple[tuple[int, dict[str, Any]], ...] = ()
    combo_legs: tuple[tuple[int, int, str, str], ...] = ()
    order_combo_leg_prices: tuple[float, ...] = ()
    smart_combo_params: tuple[tuple[str, str], ...] = ()
    delta_neutral_contract: tuple[int, float, float] | None = None
    min_version: int = 157


def _o(action: str, qty: float | str, order_type: str, **more: Any) -> dict[str, Any]:
    return {"action": action, "totalQuantity": qty, "orderType": order_type, **more}


CASES = (
    Case("MKT DAY", _o("BUY", 100, "MKT", tif="DAY")),
    Case(
        "LMT GTC outsideRth orderRef account",
        _o(
            "SELL",
            50,
            "LMT",
            lmtPrice=181.25,
            tif="GTC",
            outsideRth=True,
            orderRef="strat-1:7f3a",
            account="DU1234567",
        ),
    ),
    Case("STP IOC", _o("SELL", 10, "STP", auxPrice=170.0, tif="IOC")),
    Case("STP LMT", _o("BUY", 10, "STP LMT", lmtPrice=181.0, auxPrice=180.5)),
    Case("TRAIL amount", _o("SELL", 100, "TRAIL", auxPrice=1.5, trailStopPrice=178.0)),
    Case("TRAIL percent", _o("SELL", 100, "TRAIL", trailingPercent=2.0)),
    Case(
        "TRAIL LIMIT",
        _o("SELL", 100, "TRAIL LIMIT", auxPrice=1.0, trailStopPrice=179.0, lmtPriceOffset=0.1),
    ),
    Case("MOC", _o("BUY", 100, "MOC")),
    Case("LOC", _o("BUY", 100, "LOC", lmtPrice=180.0)),
    Case("MIT", _o("BUY", 100, "MIT", auxPrice=175.0)),
    Case("LIT", _o("SELL", 100, "LIT", lmtPrice=185.0, auxPrice=184.5)),
    Case("MIDPRICE", _o("BUY", 100, "MIDPRICE", lmtPrice=181.0)),
    Case("LMT OPG", _o("BUY", 100, "LMT", lmtPrice=180.0, tif="OPG")),
    Case(
        "bracket child: parentId, transmit=False, OCA",
        _o(
            "SELL",
            100,
            "STP",
            auxPrice=175.0,
            parentId=41,
            transmit=False,
            ocaGroup="oca-41",
            ocaType=1,
        ),
    ),
    Case("fractional quantity", _o("BUY", "0.5", "MKT")),
    Case(
        "good after / good till",
        _o(
            "BUY",
            100,
            "LMT",
            lmtPrice=180.0,
            tif="GTD",
            goodAfterTime="20260302 09:35:00 US/Eastern",
            goodTillDate="20260310 16:00:00 US/Eastern",
        ),
    ),
    Case("whatIf", _o("BUY", 100, "LMT", lmtPrice=180.0, whatIf=True)),
    Case(
        "BAG combo",
        _o("BUY", 1, "LMT", lmtPrice=0.55),
        contract=SPY_BAG,
        combo_legs=((756733, 1, "BUY", "SMART"), (756734, 2, "SELL", "SMART")),
        order_combo_leg_prices=(0.25, UNSET_DOUBLE),
        smart_combo_params=(("NonGuaranteed", "1"),),
    ),
    Case(
        "algo with params",
        _o("BUY", 1000, "LMT", lmtPrice=180.0, algoStrategy="Vwap"),
        algo_params=(
            ("maxPctVol", "0.1"),
            ("startTime", "09:45:00 US/Eastern"),
            ("allowPastEndTime", "1"),
        ),
    ),
    Case(
        "conditions, all six types",
        _o("BUY", 100, "LMT", lmtPrice=180.0, conditionsIgnoreRth=True),
        conditions=CONDITIONS,
    ),
    Case(
        "VOL with delta-neutral order and contract",
        _o(
            "BUY",
            1,
            "VOL",
            volatility=25.5,
            volatilityType=2,
            deltaNeutralOrderType="MKT",
            deltaNeutralConId=265598,
            continuousUpdate=True,
            referencePriceType=1,
        ),
        contract=AAPL_CALL,
        delta_neutral_contract=(265598, 0.5, 180.25),
    ),
    Case(
        "scale",
        _o(
            "BUY",
            1000,
            "LMT",
            lmtPrice=180.0,
            scaleInitLevelSize=200,
            scaleSubsLevelSize=100,
            scalePriceIncrement=0.05,
            scaleAutoReset=True,
            scaleProfitOffset=0.5,
        ),
    ),
    Case("hedge", _o("SELL", 100, "MKT", parentId=77, hedgeType="D", hedgeParam="0.5")),
    Case(
        "PEG BENCH",
        _o(
            "BUY",
            100,
            "PEG BENCH",
            referenceContractId=756733,
            peggedChangeAmount=0.1,
            referenceChangeAmount=0.2,
            referenceExchangeId="SMART",
        ),
    ),
    Case(
        "PEG MID offsets",
        _o("BUY", 100, "PEG MID", lmtPrice=181.0, midOffsetAtWhole=0.01, midOffsetAtHalf=0.005),
        contract=ATS,
        min_version=170,
    ),
    Case(
        "PEG BEST up to mid, IBKRATS minTradeQty",
        _o(
            "BUY",
            100,
            "PEG BEST",
            lmtPrice=181.0,
            minTradeQty=100,
            minCompeteSize=100,
            competeAgainstBestOffset=math.inf,
            midOffsetAtWhole=0.02,
            midOffsetAtHalf=0.01,
        ),
        contract=ATS,
        min_version=170,
    ),
)

CASE = {case.name: case for case in CASES}

# OrderSpec attribute for each modelled IB field, and its value when the client sent none.
MODELLED: dict[str, tuple[str, Any]] = {
    "action": ("action", ""),
    "totalQuantity": ("total_quantity", Decimal(0)),
    "orderType": ("order_type", ""),
    "lmtPrice": ("lmt_price", None),
    "auxPrice": ("aux_price", None),
    "tif": ("tif", "DAY"),
    "outsideRth": ("outside_rth", False),
    "orderRef": ("order_ref", ""),
    "account": ("account", ""),
    "transmit": ("transmit", True),
    "parentId": ("parent_id", 0),
    "ocaGroup": ("oca_group", ""),
    "ocaType": ("oca_type", 0),
    "trailingPercent": ("trailing_percent", None),
    "trailStopPrice": ("trail_stop_price", None),
    "lmtPriceOffset": ("lmt_price_offset", None),
    "goodAfterTime": ("good_after_time", ""),
    "goodTillDate": ("good_till_date", ""),
    "whatIf": ("what_if", False),
}


# --- capturing what the real clients send -------------------------------------------------


class _AsyncCapture(Client):
    """ib_async's Client, "connected" at a server version, recording instead of sending."""

    def __init__(self, server_version: int) -> None:
        super().__init__(None)  # type: ignore[no-untyped-call]  # unannotated in ib_async
        self.connState = Client.CONNECTED
        self._serverVersion = server_version
        self.sent: list[tuple[str, ...]] = []

    def sendMsg(self, msg: str) -> None:
        self.sent.append(tuple(msg.split("\0")[:-1]))


class _RecordingConnection:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def isConnected(self) -> bool:
        return True

    def sendMsg(self, msg: bytes) -> None:
        self.sent.append(msg)


class _FailOnError(EWrapper):  # type: ignore[misc]
    def error(self, *args: Any) -> None:
        raise AssertionError(f"ibapi refused to send: {args}")


def _ibapi_client(server_version: int) -> tuple[EClient, _RecordingConnection]:
    client = EClient(_FailOnError())
    conn = _RecordingConnection()
    client.conn = conn
    client.serverVersion_ = server_version
    client.setConnState(EClient.CONNECTED)
    return client, conn


def _ibapi_fields(conn: _RecordingConnection) -> tuple[str, ...]:
    (frame,) = conn.sent
    return decode_payload(frame[4:])


def _async_contract(case: Case) -> Contract:
    contract = Contract(**case.contract)
    contract.comboLegs = [ComboLeg(c, r, a, e) for c, r, a, e in case.combo_legs]
    if case.delta_neutral_contract:
        contract.deltaNeutralContract = DeltaNeutralContract(*case.delta_neutral_contract)
    return contract


def _async_order(case: Case) -> Order:
    order = Order(**{**case.order, "totalQuantity": float(case.order["totalQuantity"])})
    order.algoParams = [TagValue(t, v) for t, v in case.algo_params]
    order.smartComboRoutingParams = [TagValue(t, v) for t, v in case.smart_combo_params]
    order.orderComboLegs = [OrderComboLeg(price) for price in case.order_combo_leg_prices]
    for kind, attrs in case.conditions:
        condition_class = OrderCondition.createClass(kind)  # type: ignore[no-untyped-call]
        order.conditions.append(condition_class(kind, **attrs))
    return order


def _ibapi_contract(case: Case) -> IbContract:
    contract = IbContract()
    for name, value in case.contract.items():
        setattr(contract, name, value)
    legs = []
    for con_id, ratio, action, exchange in case.combo_legs:
        leg = IbComboLeg()
        leg.conId, leg.ratio, leg.action, leg.exchange = con_id, ratio, action, exchange
        legs.append(leg)
    contract.comboLegs = legs
    if case.delta_neutral_contract:
        dnc = IbDeltaNeutralContract()
        dnc.conId, dnc.delta, dnc.price = case.delta_neutral_contract
        contract.deltaNeutralContract = dnc
    return contract


def _ibapi_order(case: Case) -> IbOrder:
    order = IbOrder()
    for name, value in case.order.items():
        setattr(order, name, value)
    order.totalQuantity = Decimal(str(case.order["totalQuantity"]))
    order.algoParams = [IbTagValue(t, v) for t, v in case.algo_params]
    order.smartComboRoutingParams = [IbTagValue(t, v) for t, v in case.smart_combo_params]
    order.orderComboLegs = []
    for price in case.order_combo_leg_prices:
        leg = IbOrderComboLeg()
        leg.price = price
        order.orderComboLegs.append(leg)
    order.conditions = [_ibapi_condition(kind, attrs) for kind, attrs in case.conditions]
    return order


def _ibapi_condition(kind: int, attrs: dict[str, Any]) -> Any:
    condition = ib_conditions.Create(kind)
    for name, value in attrs.items():
        if name == "conjunction":
            condition.isConjunctionConnection = value == "a"
        else:
            setattr(condition, "exchange" if name == "exch" else name, value)
    return condition


def _sent_by_ib_async(case: Case, server_version: int) -> tuple[str, ...]:
    client = _AsyncCapture(server_version)
    client.placeOrder(42, _async_contract(case), _async_order(case))  # type: ignore[no-untyped-call]
    (fields,) = client.sent
    return fields


def _sent_by_ibapi(case: Case, server_version: int) -> tuple[str, ...]:
    client, conn = _ibapi_client(server_version)
    client.placeOrder(42, _ibapi_contract(case), _ibapi_order(case))
    return _ibapi_fields(conn)


SENDERS: dict[str, Callable[[Case, int], tuple[str, ...]]] = {
    "ib_async": _sent_by_ib_async,
    "ibapi": _sent_by_ibapi,
}


def _parse(fields: tuple[str, ...], server_version: int) -> PlaceOrder:
    assert fields[0] == "3"
    reader = FieldReader("placeOrder", fields)
    request = parse_place_order(reader, server_version)
    assert reader.remaining == 0
    return request


def _cases_at(versions: tuple[int, ...]) -> Iterator[Any]:
    for case in CASES:
        for sv in versions:
            if sv >= case.min_version:
                yield pytest.param(case, sv, id=f"{case.name}@{sv}")


# --- request side ---------------------------------------------------------------------


@pytest.mark.parametrize("client", list(SENDERS))
@pytest.mark.parametrize(("case", "sv"), list(_cases_at(REQUEST_VERSIONS)))
def test_place_order_from_both_clients_parses_to_what_was_sent(
    client: str, case: Case, sv: int
) -> None:
    request = _parse(SENDERS[client](case, sv), sv)

    spec = request.order
    assert spec.order_id == 42
    assert spec.client_id == 0  # bound by the session
    for ib_name, (attr, unset) in MODELLED.items():
        sent = case.order.get(ib_name, unset)
        if ib_name == "totalQuantity":
            sent = Decimal(str(sent))
        assert getattr(spec, attr) == sent, ib_name
    contract = request.contract
    assert (contract.symbol, contract.sec_type, contract.exchange) == (
        case.contract["symbol"],
        case.contract["secType"],
        case.contract["exchange"],
    )
    assert contract.strike == case.contract.get("strike", 0.0)
    assert contract.con_id == case.contract.get("conId", 0)


@pytest.mark.parametrize(("case", "sv"), list(_cases_at((163, 170, 178))))
def test_both_clients_parse_to_the_same_order(case: Case, sv: int) -> None:
    from_async = _parse(_sent_by_ib_async(case, sv), sv)
    from_ibapi = _parse(_sent_by_ibapi(case, sv), sv)

    assert from_async == from_ibapi
    differing = {
        k
        for k in from_async.order.raw.keys() | from_ibapi.order.raw.keys()
        if from_async.order.raw.get(k) != from_ibapi.order.raw.get(k)
    }
    # Only the clients' own defaults differ: ib_async's openClose "O", its
    # usePriceMgmtAlgo False (ibapi: unset) and displaySize 0 (ibapi: unset).
    assert differing <= {"openClose", "usePriceMgmtAlgo", "displaySize"}


def test_repeated_groups_are_kept_by_ib_names() -> None:
    bag = _parse(_sent_by_ibapi(CASE["BAG combo"], 178), 178).order.raw
    assert bag["comboLegsCount"] == "2"
    assert [bag[f"comboLegs.1.{n}"] for n in ("conId", "ratio", "action", "exchange")] == [
        "756734", "2", "SELL", "SMART",
    ]  # fmt: skip
    assert [bag["orderComboLegs.0.price"], bag["orderComboLegs.1.price"]] == ["0.25", ""]
    assert (bag["smartComboRoutingParams.0.tag"], bag["smartComboRoutingParams.0.value"]) == (
        "NonGuaranteed",
        "1",
    )

    conditions = _parse(_sent_by_ib_async(CASE["conditions, all six types"], 178), 178).order.raw
    assert conditions["conditionsCount"] == "6"
    assert conditions["conditions.0.conditionType"] == "1"
    assert conditions["conditions.0.price"] == "190.5"
    assert conditions["conditions.1.time"] == "20260302 15:00:00 US/Eastern"
    assert conditions["conditions.1.conjunction"] == "o"
    assert conditions["conditionsIgnoreRth"] == "1"

    algo = _parse(_sent_by_ib_async(CASE["algo with params"], 178), 178).order.raw
    assert algo["algoStrategy"] == "Vwap"
    assert algo["algoParams.2.tag"] == "allowPastEndTime"


def test_ibapi_unset_sentinels_read_as_unset() -> None:
    raw = _parse(_sent_by_ibapi(CASE["MKT DAY"], 178), 178).order.raw
    # ibapi writes 2147483647 / 1.7976931348623157e+308 where ib_async writes "".
    assert raw["duration"] == raw["postToAts"] == raw["triggerPrice"] == raw["cashQty"] == ""


@pytest.mark.parametrize("sv", [163, 168, 169, 178])
def test_cancel_order_and_global_cancel_from_both_clients(sv: int) -> None:
    parsers = order_parsers(sv)
    async_client = _AsyncCapture(sv)
    cancel_time = "20260302 10:00:00 US/Eastern" if sv >= 169 else ""
    async_client.cancelOrder(7, cancel_time)  # type: ignore[no-untyped-call]
    async_client.reqGlobalCancel()  # type: ignore[no-untyped-call]
    ib_client, conn = _ibapi_client(sv)
    cancel = OrderCancel()
    if sv >= 169:
        cancel.manualOrderCancelTime = "20260302 10:00:00 US/Eastern"
    ib_client.cancelOrder(7, cancel)
    from_ibapi = _ibapi_fields(conn)
    conn.sent.clear()
    ib_client.reqGlobalCancel(OrderCancel())
    global_from_ibapi = _ibapi_fields(conn)

    expected = CancelOrder(7, "20260302 10:00:00 US/Eastern" if sv >= 169 else "")
    for fields in (async_client.sent[0], from_ibapi):
        assert parsers[4](FieldReader("cancelOrder", fields)) == expected
    for fields in (async_client.sent[1], global_from_ibapi):
        assert parsers[58](FieldReader("reqGlobalCancel", fields)) == ReqGlobalCancel()


def test_place_order_with_a_field_left_over_is_refused() -> None:
    fields = (*_sent_by_ib_async(CASE["LMT GTC outsideRth orderRef account"], 178), "surplus")
    with pytest.raises(FieldError, match="end of message"):
        _parse(fields, 178)


@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: c.name)
def test_place_order_needs_the_negotiated_server_version(case: Case) -> None:
    """Read at the wrong version, the layout shifts; not every shift leaves a field over
    (an algoStrategy of "0" swallows one), so the parser must be built per version."""
    fields = _sent_by_ib_async(case, 176)  # carries faProfile, gone from 177
    try:
        misread = _parse(fields, 177)
    except FieldError:
        return
    assert misread != _parse(fields, 176)


def test_place_order_with_an_unknown_condition_type_names_the_field() -> None:
    fields = list(_sent_by_ib_async(CASE["conditions, all six types"], 178))
    index = fields.index("190.5") - 3  # conditionType of the price condition
    assert fields[index] == "1"
    fields[index] = "2"
    with pytest.raises(FieldError, match=r"conditions\.0\.conditionType"):
        _parse(tuple(fields), 178)


def test_truncated_place_order_names_the_missing_field() -> None:
    fields = _sent_by_ib_async(CASE["MKT DAY"], 178)[:20]
    with pytest.raises(FieldError, match="end of message"):
        _parse(fields, 178)


# --- response side: the real decoders ------------------------------------------------------

_CHECKERS: dict[int, WireChecker] = {}


def _checker(sv: int) -> WireChecker:
    if sv not in _CHECKERS:
        checker = WireChecker(sv)
        # ib_async's execDetails converts the time to wrapper.defaultTimezone; wirecheck's
        # recording wrapper has none (it would answer with a recorder function).
        checker._async_wrapper.defaultTimezone = UTC  # type: ignore[attr-defined]
        _CHECKERS[sv] = checker
    return _CHECKERS[sv]


def _decode(fields: list[Field], sv: int) -> Decoded:
    wire = decode_payload(encode_payload(fields))
    decoded = _checker(sv).check_fields(wire)
    assert decoded.problems == []
    assert len(decoded.async_calls) == 1
    assert len(decoded.ibapi_calls) == 1
    return decoded


def _only_call(calls: list[tuple[str, tuple[Any, ...]]], name: str) -> tuple[Any, ...]:
    ((called, args),) = calls
    assert called == name
    return args


def _unset(value: Any) -> Any:
    return None if value in (UNSET_DOUBLE, UNSET_INTEGER) else value


CONTRACT = om.WireContract(
    265598, "AAPL", "STK", exchange="SMART", primary_exchange="NASDAQ", currency="USD",
    local_symbol="AAPL", trading_class="NMS",
)  # fmt: skip
SPEC = OrderSpec(
    order_id=5, client_id=3, action="BUY", total_quantity=Decimal(100), order_type="LMT",
    lmt_price=180.5, tif="GTC", outside_rth=True, order_ref="strat-1:7f3a", account="DU1234567",
)  # fmt: skip
FILL = Execution(
    exec_id="0000e0d5.67a0b2c1.01.01", order_id=5, client_id=3, perm_id=1001, con_id=265598,
    account="DU1234567", time=EPOCH, side="BOT", shares=Decimal(40), price=180.45,
    cum_qty=Decimal(40), avg_price=180.45, order_ref="strat-1:7f3a", exchange="ISLAND",
    commission=1.0, commission_currency="USD", realized_pnl=None,
)  # fmt: skip


@pytest.mark.parametrize("sv", ALL_VERSIONS)
def test_open_order_decodes_in_both_clients(sv: int) -> None:
    fields = om.open_order(SPEC, CONTRACT, 1001, om.OrderState(OrderStatus.SUBMITTED), sv)
    decoded = _decode(fields, sv)

    order_id, contract, order, state = _only_call(decoded.async_calls, "openOrder")
    assert (order_id, contract.conId, contract.exchange) == (5, 265598, "SMART")
    assert (order.orderType, order.lmtPrice, order.orderRef, order.permId) == (
        "LMT", 180.5, "strat-1:7f3a", 1001,
    )  # fmt: skip
    assert (order.clientId, order.tif, order.outsideRth, order.totalQuantity) == (
        3, "GTC", True, 100.0,
    )  # fmt: skip
    assert order.deltaNeutralOrderType == "None"  # as real TWS sends it
    assert state.status == "Submitted"
    ib_order_id, _, ib_order, ib_state = _only_call(decoded.ibapi_calls, "openOrder")
    assert (ib_order_id, ib_order.permId, ib_order.totalQuantity) == (5, 1001, Decimal(100))
    assert ib_state.status == "Submitted"
    assert ib_state.commissionAndFees == UNSET_DOUBLE


def test_open_order_has_the_real_tws_length() -> None:
    state = om.OrderState("Submitted")
    assert len(om.open_order(SPEC, CONTRACT, 1, state, 178)) == 135
    assert len(om.open_order(SPEC, CONTRACT, 1, state, 176)) == 136  # faProfile
    assert len(om.completed_order(SPEC, CONTRACT, 1, "Filled", Decimal(1), EPOCH, "", 178)) == 100


@pytest.mark.parametrize("sv", [157, 158, 159])
def test_duration_is_sent_from_158_and_both_clients_decode_it(sv: int) -> None:
    spec = dataclasses.replace(SPEC, raw={"duration": "30"})
    decoded = _decode(om.open_order(spec, CONTRACT, 1, om.OrderState("Submitted"), sv), sv)
    order = _only_call(decoded.async_calls, "openOrder")[2]
    ib_order = _only_call(decoded.ibapi_calls, "openOrder")[2]
    # IB's client reads duration from 158, ib_async from 159 (at 158 it ignores the field).
    assert ib_order.duration == (30 if sv >= 158 else UNSET_INTEGER)
    assert order.duration == (30 if sv >= 159 else UNSET_INTEGER)


def test_what_if_open_order_carries_margins_both_clients_read() -> None:
    state = om.OrderState(
        "PreSubmitted", init_margin_before=1000.0, maint_margin_before=900.0,
        equity_with_loan_before=50000.0, init_margin_change=4512.5, maint_margin_change=4100.0,
        equity_with_loan_change=-1.0, init_margin_after=5512.5, maint_margin_after=5000.0,
        equity_with_loan_after=49999.0, commission=1.0, min_commission=1.0, max_commission=2.5,
        commission_currency="USD",
    )  # fmt: skip
    spec = dataclasses.replace(SPEC, what_if=True)
    decoded = _decode(om.open_order(spec, CONTRACT, 0, state, 178), 178)

    order, async_state = _only_call(decoded.async_calls, "openOrder")[2:]
    assert order.whatIf is True
    assert float(async_state.initMarginChange) == 4512.5  # what ib_async's whatIfOrder checks
    assert async_state.maxCommission == 2.5
    ib_state = _only_call(decoded.ibapi_calls, "openOrder")[3]
    assert (ib_state.equityWithLoanAfter, ib_state.commissionAndFees) == ("49999.0", 1.0)


@pytest.mark.parametrize(("case", "sv"), list(_cases_at((157, 163, 170, 176, 178))))
def test_every_catalogue_order_echoes_back_through_open_order(case: Case, sv: int) -> None:
    """ib_async encodes, we parse, we encode openOrder, both clients decode the same order."""
    spec = dataclasses.replace(_parse(_sent_by_ib_async(case, sv), sv).order, client_id=9)
    contract = om.WireContract.from_spec(_parse(_sent_by_ib_async(case, sv), sv).contract)
    decoded = _decode(om.open_order(spec, contract, 555, om.OrderState("PreSubmitted"), sv), sv)

    sent = _async_order(case)
    received = _only_call(decoded.async_calls, "openOrder")[2]
    for name in case.order.keys() - {"transmit", "totalQuantity"}:
        if name in ("minTradeQty", "minCompeteSize", "midOffsetAtWhole", "midOffsetAtHalf"):
            continue  # read by ib_async at >= 170 only; checked below
        assert getattr(received, name) == getattr(sent, name), name
    assert received.totalQuantity == float(case.order["totalQuantity"])
    assert received.algoParams == sent.algoParams
    assert received.conditions == sent.conditions
    assert received.orderComboLegs == sent.orderComboLegs
    assert received.smartComboRoutingParams == sent.smartComboRoutingParams
    received_contract = _only_call(decoded.async_calls, "openOrder")[1]
    assert received_contract.comboLegs == _async_contract(case).comboLegs
    assert received_contract.deltaNeutralContract == _async_contract(case).deltaNeutralContract
    if sv >= 170:
        for name in ("minTradeQty", "minCompeteSize", "midOffsetAtWhole", "midOffsetAtHalf"):
            assert getattr(received, name) == getattr(sent, name), name
    ib_order = _only_call(decoded.ibapi_calls, "openOrder")[2]
    assert [(c.type(), c.isConjunctionConnection) for c in ib_order.conditions] == [
        (kind, attrs["conjunction"] == "a") for kind, attrs in case.conditions
    ]
    assert [(t.tag, t.value) for t in ib_order.algoParams or []] == list(case.algo_params)


@pytest.mark.parametrize("sv", ALL_VERSIONS)
def test_completed_order_decodes_in_both_clients(sv: int) -> None:
    fields = om.completed_order(
        SPEC, CONTRACT, 1001, "Filled", Decimal(100), EPOCH, "Filled Size: 100", sv,
        parent_perm_id=77,
    )  # fmt: skip
    decoded = _decode(fields, sv)

    contract, order, state = _only_call(decoded.async_calls, "completedOrder")
    assert (contract.symbol, order.orderType, order.lmtPrice, order.permId) == (
        "AAPL", "LMT", 180.5, 1001,
    )  # fmt: skip
    assert (order.orderRef, order.filledQuantity, order.parentPermId) == ("strat-1:7f3a", 100, 77)
    assert (state.status, state.completedStatus) == ("Filled", "Filled Size: 100")
    assert state.completedTime == "20260302 09:31:05 US/Eastern"
    _, ib_order, ib_state = _only_call(decoded.ibapi_calls, "completedOrder")
    assert (ib_order.permId, ib_order.filledQuantity) == (1001, Decimal(100))
    assert ib_state.completedTime == "20260302 09:31:05 US/Eastern"


@pytest.mark.parametrize("sv", ALL_VERSIONS)
def test_order_status_decodes_in_both_clients(sv: int) -> None:
    fields = om.order_status(
        5, OrderStatus.SUBMITTED, Decimal(40), Decimal(60), 180.45, 1001, 0, 180.45, 3
    )
    decoded = _decode(fields, sv)
    assert _only_call(decoded.async_calls, "orderStatus") == (
        5, "Submitted", 40.0, 60.0, 180.45, 1001, 0, 180.45, 3, "", 0.0,
    )  # fmt: skip
    ib_args = _only_call(decoded.ibapi_calls, "orderStatus")
    assert ib_args[:4] == (5, "Submitted", Decimal(40), Decimal(60))


@pytest.mark.parametrize("sv", ALL_VERSIONS)
def test_exec_details_and_commission_decode_in_both_clients(sv: int) -> None:
    decoded = _decode(om.exec_details(7, FILL, CONTRACT, sv, last_liquidity=2), sv)

    req_id, contract, execution = _only_call(decoded.async_calls, "execDetails")
    assert (req_id, contract.conId, contract.exchange) == (7, 265598, "ISLAND")
    assert execution.time == datetime(2026, 3, 2, 14, 31, 5, tzinfo=UTC)
    assert (execution.execId, execution.orderRef, execution.shares, execution.price) == (
        FILL.exec_id, "strat-1:7f3a", 40.0, 180.45,
    )  # fmt: skip
    assert (execution.permId, execution.clientId, execution.lastLiquidity) == (1001, 3, 2)
    ib_req_id, _, ib_execution = _only_call(decoded.ibapi_calls, "execDetails")
    assert (ib_req_id, ib_execution.orderId, ib_execution.cumQty) == (7, 5, Decimal(40))
    assert ib_execution.time == "20260302 09:31:05 US/Eastern"

    decoded = _decode(om.commission_report(FILL), sv)
    (report,) = _only_call(decoded.async_calls, "commissionReport")
    assert (report.execId, report.commission, report.realizedPNL) == (
        FILL.exec_id, 1.0, UNSET_DOUBLE,
    )  # fmt: skip
    (ib_report,) = _only_call(decoded.ibapi_calls, "commissionAndFeesReport")
    assert (ib_report.currency, ib_report.realizedPNL) == ("USD", UNSET_DOUBLE)


@pytest.mark.parametrize("sv", ALL_VERSIONS)
def test_position_and_portfolio_decode_in_both_clients(sv: int) -> None:
    decoded = _decode(om.position("DU1234567", CONTRACT, Decimal("12.5"), 179.9), sv)
    account, contract, pos, cost = _only_call(decoded.async_calls, "position")
    assert (account, contract.exchange, pos, cost) == ("DU1234567", "SMART", 12.5, 179.9)
    assert _only_call(decoded.ibapi_calls, "position")[2] == Decimal("12.5")

    fields = om.portfolio_value(CONTRACT, Decimal(-3), 181.0, -543.0, 179.9, -3.3, 0.0, "DU1")
    decoded = _decode(fields, sv)
    args = _only_call(decoded.async_calls, "updatePortfolio")
    assert args[0].primaryExchange == "NASDAQ"
    assert args[1:] == (-3.0, 181.0, -543.0, 179.9, -3.3, 0.0, "DU1")
    assert _only_call(decoded.ibapi_calls, "updatePortfolio")[1] == Decimal(-3)


@pytest.mark.parametrize("sv", ALL_VERSIONS)
def test_account_messages_decode_in_both_clients(sv: int) -> None:
    expectations: list[tuple[list[Field], str, tuple[Any, ...]]] = [
        (
            om.account_value("NetLiquidation", "100000.00", "USD", "DU1"),
            "updateAccountValue",
            ("NetLiquidation", "100000.00", "USD", "DU1"),
        ),
        (om.account_update_time("09:31"), "updateAccountTime", ("09:31",)),
        (
            om.account_summary(4, "DU1", "BuyingPower", "400000.00", "USD"),
            "accountSummary",
            (4, "DU1", "BuyingPower", "400000.00", "USD"),
        ),
        (
            om.account_update_multi(5, "DU1", "", "CashBalance", "1000.00", "USD"),
            "accountUpdateMulti",
            (5, "DU1", "", "CashBalance", "1000.00", "USD"),
        ),
        (om.order_bound(1001, 0, 17), "orderBound", (1001, 0, 17)),
    ]
    for fields, name, args in expectations:
        decoded = _decode(fields, sv)
        assert _only_call(decoded.async_calls, name) == args
        assert _only_call(decoded.ibapi_calls, name) == args


@pytest.mark.parametrize("sv", ALL_VERSIONS)
def test_pnl_messages_decode_in_both_clients(sv: int) -> None:
    decoded = _decode(om.pnl(8, 120.5, -30.0, None), sv)
    assert _only_call(decoded.async_calls, "pnl") == (8, 120.5, -30.0, UNSET_DOUBLE)
    assert _only_call(decoded.ibapi_calls, "pnl") == (8, 120.5, -30.0, UNSET_DOUBLE)

    decoded = _decode(om.pnl_single(9, Decimal(100), 12.0, 5.0, 0.0, 18100.0), sv)
    assert _only_call(decoded.async_calls, "pnlSingle") == (9, 100.0, 12.0, 5.0, 0.0, 18100.0)
    ib_args = _only_call(decoded.ibapi_calls, "pnlSingle")
    assert ib_args == (9, Decimal(100), 12.0, 5.0, 0.0, 18100.0)


def test_ib_time_is_tws_local_time_with_its_zone() -> None:
    assert om.ib_time(EPOCH) == "20260302 09:31:05 US/Eastern"
    summer = int(datetime(2026, 7, 1, 13, 30, tzinfo=UTC).timestamp())
    assert om.ib_time(summer) == "20260701 09:30:00 US/Eastern"


# --- property: any modelled order survives openOrder / completedOrder in both clients ------

ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=24)
prices = st.none() | st.floats(min_value=0.0001, max_value=1e6, allow_nan=False)
ids = st.integers(min_value=0, max_value=2**31 - 2)


@st.composite
def order_specs(draw: st.DrawFn) -> OrderSpec:
    return OrderSpec(
        order_id=draw(ids),
        client_id=draw(ids),
        action=draw(st.sampled_from(["BUY", "SELL", "SSHORT"])),
        total_quantity=draw(
            st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**7), places=4)
        ),
        order_type=draw(st.sampled_from([t.value for t in OrderType])),
        lmt_price=draw(prices),
        aux_price=draw(prices),
        tif=draw(st.sampled_from([t.value for t in TimeInForce])),
        outside_rth=draw(st.booleans()),
        order_ref=draw(ascii_text),
        account=draw(ascii_text),
        parent_id=draw(ids),
        oca_group=draw(ascii_text),
        oca_type=draw(st.integers(min_value=0, max_value=3)),
        trailing_percent=draw(prices),
        trail_stop_price=draw(prices),
        lmt_price_offset=draw(prices),
        good_after_time=draw(ascii_text),
        good_till_date=draw(ascii_text),
        what_if=draw(st.booleans()),
    )


def _modelled_as_decoded(order: Any) -> dict[str, Any]:
    """The modelled fields of a decoded Order (either client), unset as None."""
    return {
        "action": order.action,
        "total_quantity": Decimal(str(order.totalQuantity)),
        "order_type": order.orderType,
        "lmt_price": _unset(order.lmtPrice),
        "aux_price": _unset(order.auxPrice),
        "tif": order.tif,
        "outside_rth": order.outsideRth,
        "order_ref": order.orderRef,
        "account": order.account,
        "parent_id": order.parentId,
        "oca_group": order.ocaGroup,
        "oca_type": order.ocaType,
        "trailing_percent": _unset(order.trailingPercent),
        "trail_stop_price": _unset(order.trailStopPrice),
        "lmt_price_offset": _unset(order.lmtPriceOffset),
        "good_after_time": order.goodAfterTime,
        "good_till_date": order.goodTillDate,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=order_specs(), sv=st.sampled_from(ALL_VERSIONS), perm_id=ids)
def test_any_order_spec_survives_open_and_completed_order(
    spec: OrderSpec, sv: int, perm_id: int
) -> None:
    expected = {name: getattr(spec, name) for name in _modelled_as_decoded(Order())}
    decoded = _decode(om.open_order(spec, CONTRACT, perm_id, om.OrderState("Submitted"), sv), sv)
    for calls in (decoded.async_calls, decoded.ibapi_calls):
        order_id, _, order, _ = _only_call(calls, "openOrder")
        assert _modelled_as_decoded(order) == expected
        assert (order_id, order.clientId, order.permId) == (spec.order_id, spec.client_id, perm_id)
        assert order.whatIf == spec.what_if

    fields = om.completed_order(spec, CONTRACT, perm_id, "Cancelled", Decimal(0), EPOCH, "", sv)
    decoded = _decode(fields, sv)
    for calls in (decoded.async_calls, decoded.ibapi_calls):
        _, order, state = _only_call(calls, "completedOrder")
        # completedOrder carries no parentId (only parentPermId)
        assert _modelled_as_decoded(order) == {**expected, "parent_id": 0}
        assert (order.permId, state.status) == (perm_id, "Cancelled")

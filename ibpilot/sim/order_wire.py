"""The order requests, sans-IO: placeOrder, cancelOrder and reqGlobalCancel.

Layouts are those ib_async 2.x (``Client.placeOrder``) and IB's official client
(``EClient.placeOrder``) send at server versions 157..178; the two differ only in
how they write "no value" (ib_async ``""``, IB's client the Java sentinels
``2147483647`` / ``1.7976931348623157e+308``), and both read as unset here.

placeOrder's layout depends on the negotiated server version (faProfile below 177,
duration from 158, ...), so its parser is built per version: :func:`order_parsers`.

:func:`parse_place_order` reads the fields the simulator models into an
:class:`~ibpilot.sim.orders.OrderSpec` and keeps every other field in
``OrderSpec.raw`` under IB's field name, normalised (unset is ``""``, booleans
``"0"``/``"1"``, numbers in Python's shortest form), so that openOrder and
completedOrder (:mod:`ibpilot.sim.order_messages`) can echo them.  Repeated
groups are kept as ``<group>Count`` plus ``<group>.<i>.<field>``, e.g.
``comboLegsCount``, ``comboLegs.0.conId``, ``algoParams.1.value``,
``conditions.0.conditionType``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, TypeAlias

from ibpilot.sim.orders import OrderSpec
from ibpilot.sim.protocol import FieldError, FieldReader
from ibpilot.sim.requests import ContractSpec, Out, read_contract

# Server-version gates, by the names IB's client gives them.
SV_DURATION = 158
SV_POST_TO_ATS = 160
SV_AUTO_CANCEL_PARENT = 162
SV_ADVANCED_ORDER_REJECT = 166
SV_MANUAL_ORDER_TIME = 169
SV_PEGBEST_PEGMID_OFFSETS = 170
SV_FA_PROFILE_DESUPPORT = 177
SV_PENDING_PRICE_REVISION = 178

PEG_BENCH_TYPES = frozenset({"PEG BENCH", "PEGBENCH"})
PEG_BEST_TYPES = frozenset({"PEG BEST", "PEGBEST"})
PEG_MID_TYPES = frozenset({"PEG MID", "PEGMID"})
INFINITY_TEXT = "Infinity"  # what both decoders read as +inf (ibapi's INFINITY_STR)
_UNSET_DECIMAL = Decimal(2**127 - 1)  # ibapi's UNSET_DECIMAL (an order without a quantity)

Kind: TypeAlias = Literal["s", "b", "i", "I", "f", "F", "d"]
"""How a field is read and echoed.

``s`` text; ``b`` boolean; ``d`` decimal; ``i``/``f`` integer/float echoed as ``""``
when unset (the decoders read ``""`` as unset there); ``I``/``F`` integer/float
echoed as IB's sentinel when unset (IB's decoder reads ``""`` as 0 there).
"""

# name: (kind, what openOrder/completedOrder send when the client never sent it)
FIELD_KINDS: dict[str, tuple[Kind, str]] = {
    # modelled in OrderSpec (kinds used for reading only)
    "action": ("s", ""),
    "totalQuantity": ("d", "0"),
    "orderType": ("s", ""),
    "lmtPrice": ("f", ""),
    "auxPrice": ("f", ""),
    "tif": ("s", ""),
    "ocaGroup": ("s", ""),
    "account": ("s", ""),
    "orderRef": ("s", ""),
    "transmit": ("b", "1"),
    "parentId": ("i", "0"),
    "outsideRth": ("b", "0"),
    "goodAfterTime": ("s", ""),
    "goodTillDate": ("s", ""),
    "ocaType": ("i", "0"),
    "trailStopPrice": ("f", ""),
    "trailingPercent": ("f", ""),
    "whatIf": ("b", "0"),
    "lmtPriceOffset": ("f", ""),
    # kept in OrderSpec.raw
    "secIdType": ("s", ""),
    "secId": ("s", ""),
    "openClose": ("s", ""),
    "origin": ("i", "0"),
    "blockOrder": ("b", "0"),
    "sweepToFill": ("b", "0"),
    "displaySize": ("i", ""),
    "triggerMethod": ("i", "0"),
    "hidden": ("b", "0"),
    "sharesAllocation": ("s", ""),
    "discretionaryAmt": ("f", "0"),
    "faGroup": ("s", ""),
    "faMethod": ("s", ""),
    "faPercentage": ("s", ""),
    "faProfile": ("s", ""),
    "modelCode": ("s", ""),
    "shortSaleSlot": ("i", "0"),
    "designatedLocation": ("s", ""),
    "exemptCode": ("i", "-1"),
    "rule80A": ("s", ""),
    "settlingFirm": ("s", ""),
    "allOrNone": ("b", "0"),
    "minQty": ("i", ""),
    "percentOffset": ("f", ""),
    "eTradeOnly": ("b", "0"),
    "firmQuoteOnly": ("b", "0"),
    "nbboPriceCap": ("f", ""),
    "auctionStrategy": ("i", "0"),
    "startingPrice": ("f", ""),
    "stockRefPrice": ("f", ""),
    "delta": ("f", ""),
    "stockRangeLower": ("f", ""),
    "stockRangeUpper": ("f", ""),
    "overridePercentageConstraints": ("b", "0"),
    "volatility": ("f", ""),
    "volatilityType": ("I", ""),
    "deltaNeutralOrderType": ("s", ""),
    "deltaNeutralAuxPrice": ("f", ""),
    "deltaNeutralConId": ("i", "0"),
    "deltaNeutralSettlingFirm": ("s", ""),
    "deltaNeutralClearingAccount": ("s", ""),
    "deltaNeutralClearingIntent": ("s", ""),
    "deltaNeutralOpenClose": ("s", ""),
    "deltaNeutralShortSale": ("b", "0"),
    "deltaNeutralShortSaleSlot": ("i", "0"),
    "deltaNeutralDesignatedLocation": ("s", ""),
    "continuousUpdate": ("b", "0"),
    "referencePriceType": ("I", ""),
    "scaleInitLevelSize": ("i", ""),
    "scaleSubsLevelSize": ("i", ""),
    "scalePriceIncrement": ("f", ""),
    "scalePriceAdjustValue": ("f", ""),
    "scalePriceAdjustInterval": ("i", ""),
    "scaleProfitOffset": ("f", ""),
    "scaleAutoReset": ("b", "0"),
    "scaleInitPosition": ("i", ""),
    "scaleInitFillQty": ("i", ""),
    "scaleRandomPercent": ("b", "0"),
    "scaleTable": ("s", ""),
    "activeStartTime": ("s", ""),
    "activeStopTime": ("s", ""),
    "hedgeType": ("s", ""),
    "hedgeParam": ("s", ""),
    "optOutSmartRouting": ("b", "0"),
    "clearingAccount": ("s", ""),
    "clearingIntent": ("s", ""),
    "notHeld": ("b", "0"),
    "deltaNeutralContractPresent": ("b", "0"),
    "deltaNeutralContract.conId": ("i", "0"),
    "deltaNeutralContract.delta": ("f", "0"),
    "deltaNeutralContract.price": ("f", "0"),
    "algoStrategy": ("s", ""),
    "algoId": ("s", ""),
    "orderMiscOptions": ("s", ""),
    "solicited": ("b", "0"),
    "randomizeSize": ("b", "0"),
    "randomizePrice": ("b", "0"),
    "referenceContractId": ("i", "0"),
    "isPeggedChangeAmountDecrease": ("b", "0"),
    "peggedChangeAmount": ("f", "0"),
    "referenceChangeAmount": ("f", "0"),
    "referenceExchangeId": ("s", ""),
    "conditionsIgnoreRth": ("b", "0"),
    "conditionsCancelOrder": ("b", "0"),
    "adjustedOrderType": ("s", ""),
    "triggerPrice": ("F", ""),
    "adjustedStopPrice": ("F", ""),
    "adjustedStopLimitPrice": ("F", ""),
    "adjustedTrailingAmount": ("F", ""),
    "adjustableTrailingUnit": ("i", "0"),
    "extOperator": ("s", ""),
    "softDollarTier.name": ("s", ""),
    "softDollarTier.value": ("s", ""),
    "cashQty": ("F", ""),
    "mifid2DecisionMaker": ("s", ""),
    "mifid2DecisionAlgo": ("s", ""),
    "mifid2ExecutionTrader": ("s", ""),
    "mifid2ExecutionAlgo": ("s", ""),
    "dontUseAutoPriceForHedge": ("b", "0"),
    "isOmsContainer": ("b", "0"),
    "discretionaryUpToLimitPrice": ("b", "0"),
    "usePriceMgmtAlgo": ("i", ""),  # unset / 0 / 1
    "duration": ("i", ""),
    "postToAts": ("i", ""),
    "autoCancelParent": ("b", "0"),
    "advancedErrorOverride": ("s", ""),
    "manualOrderTime": ("s", ""),
    "minTradeQty": ("i", ""),
    "minCompeteSize": ("i", ""),
    "competeAgainstBestOffset": ("f", ""),
    "midOffsetAtWhole": ("f", ""),
    "midOffsetAtHalf": ("f", ""),
    # sent by the gateway only (openOrder / completedOrder)
    "basisPoints": ("f", ""),
    "basisPointsType": ("i", ""),
    "comboLegsDescrip": ("s", ""),
    "softDollarTier.displayName": ("s", ""),
    "autoCancelDate": ("s", ""),
    "refFuturesConId": ("i", "0"),
    "shareholder": ("s", ""),
    "imbalanceOnly": ("b", "0"),
    "routeMarketableToBbo": ("b", "0"),
}

GroupLayout: TypeAlias = tuple[tuple[str, Kind], ...]

COMBO_LEG: GroupLayout = (
    ("conId", "i"),
    ("ratio", "i"),
    ("action", "s"),
    ("exchange", "s"),
    ("openClose", "i"),
    ("shortSaleSlot", "i"),
    ("designatedLocation", "s"),
    ("exemptCode", "i"),
)
ORDER_COMBO_LEG: GroupLayout = (("price", "f"),)
TAG_VALUE: GroupLayout = (("tag", "s"), ("value", "s"))

# Order conditions by type: the fields after the type, as both clients send them.
_OPERATOR: GroupLayout = (("conjunction", "s"), ("isMore", "b"))
_ON_CONTRACT: GroupLayout = (("conId", "i"), ("exchange", "s"))
CONDITION_LAYOUTS: dict[int, GroupLayout] = {
    1: (*_OPERATOR, ("price", "f"), *_ON_CONTRACT, ("triggerMethod", "i")),  # price
    3: (*_OPERATOR, ("time", "s")),  # time
    4: (*_OPERATOR, ("percent", "i")),  # margin cushion
    5: (("conjunction", "s"), ("secType", "s"), ("exchange", "s"), ("symbol", "s")),  # execution
    6: (*_OPERATOR, ("volume", "i"), *_ON_CONTRACT),  # volume
    7: (*_OPERATOR, ("changePercent", "f"), *_ON_CONTRACT),  # percent change
}

# Fields modelled in OrderSpec: read from the wire, not kept in ``raw``.
_MODELLED = frozenset(
    {
        "action", "totalQuantity", "orderType", "lmtPrice", "auxPrice", "tif", "ocaGroup",
        "account", "orderRef", "transmit", "parentId", "outsideRth", "goodAfterTime",
        "goodTillDate", "ocaType", "trailStopPrice", "trailingPercent", "whatIf",
        "lmtPriceOffset", "sharesAllocation",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """A placeOrder request.

    ``order.client_id`` is 0: the message does not carry it; the session binds the
    order to its client (``dataclasses.replace(order, client_id=...)``).
    """

    order: OrderSpec
    contract: ContractSpec


@dataclass(frozen=True, slots=True)
class CancelOrder:
    order_id: int
    manual_order_cancel_time: str = ""


@dataclass(frozen=True, slots=True)
class ReqGlobalCancel:
    """Cancel every open order of every client (reqGlobalCancel)."""


OrderRequest: TypeAlias = PlaceOrder | CancelOrder | ReqGlobalCancel
OrderParser: TypeAlias = Callable[[FieldReader], OrderRequest]


def order_parsers(server_version: int) -> dict[int, OrderParser]:
    """The order request parsers for one negotiated server version, by message id."""

    def place(r: FieldReader) -> OrderRequest:
        return parse_place_order(r, server_version)

    def cancel(r: FieldReader) -> OrderRequest:
        return parse_cancel_order(r, server_version)

    return {
        Out.PLACE_ORDER: place,
        Out.CANCEL_ORDER: cancel,
        Out.REQ_GLOBAL_CANCEL: parse_global_cancel,
    }


def parse_cancel_order(r: FieldReader, server_version: int) -> CancelOrder:
    """cancelOrder (v1): orderId, plus manualOrderCancelTime from server version 169."""
    r.integer("version")
    order_id = r.integer("orderId")
    cancel_time = r.text("manualOrderCancelTime") if server_version >= SV_MANUAL_ORDER_TIME else ""
    _expect_end(r)
    return CancelOrder(order_id, cancel_time)


def parse_global_cancel(r: FieldReader) -> ReqGlobalCancel:
    """reqGlobalCancel (v1): nothing beyond the version below server version 192."""
    r.integer("version")
    _expect_end(r)
    return ReqGlobalCancel()


def parse_place_order(r: FieldReader, server_version: int) -> PlaceOrder:
    """Read a whole placeOrder (no version field at these server versions).

    An empty TIF reads as ``DAY`` (IB's default) and ibapi's unset quantity as 0.
    Raises FieldError naming the first field that cannot be read, an unknown order
    condition type, or fields left over after the layout of ``server_version``.
    """
    order_id = r.integer("orderId")
    contract = read_contract(r)
    p = _Parse(r)
    _read_head(p, contract)
    _read_middle(p, server_version)
    _read_tail(p, contract, server_version)
    _expect_end(r)
    return PlaceOrder(_order_spec(order_id, p.raw), contract)


# --- placeOrder, in wire order ---------------------------------------------------


def _read_head(p: _Parse, contract: ContractSpec) -> None:
    p.read(
        "secIdType", "secId", "action", "totalQuantity", "orderType", "lmtPrice", "auxPrice",
        "tif", "ocaGroup", "account", "openClose", "origin", "orderRef", "transmit",
        "parentId", "blockOrder", "sweepToFill", "displaySize", "triggerMethod", "outsideRth",
        "hidden",
    )  # fmt: skip
    if contract.sec_type == "BAG":
        p.read_group("comboLegs", COMBO_LEG)
        p.read_group("orderComboLegs", ORDER_COMBO_LEG)
        p.read_group("smartComboRoutingParams", TAG_VALUE)


def _read_middle(p: _Parse, server_version: int) -> None:
    p.read(
        "sharesAllocation", "discretionaryAmt", "goodAfterTime", "goodTillDate", "faGroup",
        "faMethod", "faPercentage",
    )  # fmt: skip
    if server_version < SV_FA_PROFILE_DESUPPORT:
        p.read("faProfile")
    p.read(
        "modelCode", "shortSaleSlot", "designatedLocation", "exemptCode", "ocaType", "rule80A",
        "settlingFirm", "allOrNone", "minQty", "percentOffset", "eTradeOnly", "firmQuoteOnly",
        "nbboPriceCap", "auctionStrategy", "startingPrice", "stockRefPrice", "delta",
        "stockRangeLower", "stockRangeUpper", "overridePercentageConstraints", "volatility",
        "volatilityType", "deltaNeutralOrderType", "deltaNeutralAuxPrice",
    )  # fmt: skip
    if p.raw["deltaNeutralOrderType"]:
        p.read(
            "deltaNeutralConId", "deltaNeutralSettlingFirm", "deltaNeutralClearingAccount",
            "deltaNeutralClearingIntent", "deltaNeutralOpenClose", "deltaNeutralShortSale",
            "deltaNeutralShortSaleSlot", "deltaNeutralDesignatedLocation",
        )  # fmt: skip
    p.read(
        "continuousUpdate", "referencePriceType", "trailStopPrice", "trailingPercent",
        "scaleInitLevelSize", "scaleSubsLevelSize", "scalePriceIncrement",
    )  # fmt: skip
    if scale_fields_follow(p.raw["scalePriceIncrement"]):
        p.read(
            "scalePriceAdjustValue", "scalePriceAdjustInterval", "scaleProfitOffset",
            "scaleAutoReset", "scaleInitPosition", "scaleInitFillQty", "scaleRandomPercent",
        )  # fmt: skip
    p.read("scaleTable", "activeStartTime", "activeStopTime", "hedgeType")
    if p.raw["hedgeType"]:
        p.read("hedgeParam")
    p.read(
        "optOutSmartRouting", "clearingAccount", "clearingIntent", "notHeld",
        "deltaNeutralContractPresent",
    )  # fmt: skip
    if p.raw["deltaNeutralContractPresent"] == "1":
        p.read(
            "deltaNeutralContract.conId", "deltaNeutralContract.delta",
            "deltaNeutralContract.price",
        )  # fmt: skip
    p.read("algoStrategy")
    if p.raw["algoStrategy"]:
        p.read_group("algoParams", TAG_VALUE)


def _read_tail(p: _Parse, contract: ContractSpec, server_version: int) -> None:
    p.read("algoId", "whatIf", "orderMiscOptions", "solicited", "randomizeSize", "randomizePrice")
    if p.raw["orderType"] in PEG_BENCH_TYPES:
        p.read(
            "referenceContractId", "isPeggedChangeAmountDecrease", "peggedChangeAmount",
            "referenceChangeAmount", "referenceExchangeId",
        )  # fmt: skip
    p.read_conditions()
    p.read(
        "adjustedOrderType", "triggerPrice", "lmtPriceOffset", "adjustedStopPrice",
        "adjustedStopLimitPrice", "adjustedTrailingAmount", "adjustableTrailingUnit",
        "extOperator", "softDollarTier.name", "softDollarTier.value", "cashQty",
        "mifid2DecisionMaker", "mifid2DecisionAlgo", "mifid2ExecutionTrader",
        "mifid2ExecutionAlgo", "dontUseAutoPriceForHedge", "isOmsContainer",
        "discretionaryUpToLimitPrice", "usePriceMgmtAlgo",
    )  # fmt: skip
    for gate, name in _GATED_TAIL:
        if server_version >= gate:
            p.read(name)
    if server_version >= SV_PEGBEST_PEGMID_OFFSETS:
        _read_peg_offsets(p, contract)


_GATED_TAIL = (
    (SV_DURATION, "duration"),
    (SV_POST_TO_ATS, "postToAts"),
    (SV_AUTO_CANCEL_PARENT, "autoCancelParent"),
    (SV_ADVANCED_ORDER_REJECT, "advancedErrorOverride"),
    (SV_MANUAL_ORDER_TIME, "manualOrderTime"),
)


def _read_peg_offsets(p: _Parse, contract: ContractSpec) -> None:
    if contract.exchange == "IBKRATS":
        p.read("minTradeQty")
    order_type = p.raw["orderType"]
    if order_type in PEG_BEST_TYPES:
        p.read("minCompeteSize", "competeAgainstBestOffset")
        if p.raw["competeAgainstBestOffset"] == INFINITY_TEXT:  # "up to mid"
            p.read("midOffsetAtWhole", "midOffsetAtHalf")
    elif order_type in PEG_MID_TYPES:
        p.read("midOffsetAtWhole", "midOffsetAtHalf")


def scale_fields_follow(increment: str) -> bool:
    """Whether the 7 scale fields follow scalePriceIncrement (0 < increment < unset)."""
    value = float_or_none(increment)
    return value is not None and 0 < value < math.inf


# --- reading helpers ----------------------------------------------------------------


class _Parse:
    """Reads named fields into ``raw`` as normalised text."""

    def __init__(self, r: FieldReader) -> None:
        self.r = r
        self.raw: dict[str, str] = {}

    def read(self, *names: str) -> None:
        for name in names:
            self.raw[name] = _read_as(self.r, name, FIELD_KINDS[name][0])

    def read_group(self, prefix: str, layout: GroupLayout) -> None:
        count = self._count(f"{prefix}Count")
        for i in range(count):
            for name, kind in layout:
                key = f"{prefix}.{i}.{name}"
                self.raw[key] = _read_as(self.r, key, kind)

    def read_conditions(self) -> None:
        count = self._count("conditionsCount")
        for i in range(count):
            key = f"conditions.{i}.conditionType"
            cond_type = self.r.integer(key)
            layout = CONDITION_LAYOUTS.get(cond_type)
            if layout is None:
                raise FieldError(
                    self.r.message, key, "a condition type (1, 3, 4, 5, 6, 7)", str(cond_type)
                )
            self.raw[key] = str(cond_type)
            for name, kind in layout:
                field_key = f"conditions.{i}.{name}"
                self.raw[field_key] = _read_as(self.r, field_key, kind)
        if count:
            self.read("conditionsIgnoreRth", "conditionsCancelOrder")

    def _count(self, name: str) -> int:
        count = self.r.integer(name)
        if count < 0:
            raise FieldError(self.r.message, name, "a count >= 0", str(count))
        self.raw[name] = str(count)
        return count


def _read_as(r: FieldReader, name: str, kind: Kind) -> str:
    if kind == "s":
        return r.text(name)
    if kind == "b":
        return "1" if r.flag(name) else "0"
    if kind in ("i", "I"):
        integer = r.opt_int(name)
        return "" if integer is None else str(integer)
    if kind == "d":
        quantity = r.decimal(name)
        return "" if quantity is None else str(quantity)
    number = r.opt_number(name)
    return "" if number is None else float_text(number)


def float_text(value: float) -> str:
    """A float as both decoders read it back exactly (``Infinity`` for +inf)."""
    if math.isinf(value):
        return INFINITY_TEXT if value > 0 else "-" + INFINITY_TEXT
    return repr(value)


def float_or_none(text: str) -> float | None:
    """Inverse of :func:`float_text`; ``""`` is None."""
    return float(text) if text else None


def _expect_end(r: FieldReader) -> None:
    if r.remaining:
        raise FieldError(r.message, "end of message", "no further field", f"{r.remaining} more")


def _order_spec(order_id: int, raw: dict[str, str]) -> OrderSpec:
    quantity = Decimal(raw["totalQuantity"] or 0)
    if quantity == _UNSET_DECIMAL:
        quantity = Decimal(0)
    return OrderSpec(
        order_id=order_id,
        client_id=0,
        action=raw["action"],
        total_quantity=quantity,
        order_type=raw["orderType"],
        lmt_price=float_or_none(raw["lmtPrice"]),
        aux_price=float_or_none(raw["auxPrice"]),
        tif=raw["tif"] or "DAY",  # IB's default for an empty TIF
        outside_rth=raw["outsideRth"] == "1",
        order_ref=raw["orderRef"],
        account=raw["account"],
        transmit=raw["transmit"] == "1",
        parent_id=int(raw["parentId"] or 0),
        oca_group=raw["ocaGroup"],
        oca_type=int(raw["ocaType"] or 0),
        trailing_percent=float_or_none(raw["trailingPercent"]),
        trail_stop_price=float_or_none(raw["trailStopPrice"]),
        lmt_price_offset=float_or_none(raw["lmtPriceOffset"]),
        good_after_time=raw["goodAfterTime"],
        good_till_date=raw["goodTillDate"],
        what_if=raw["whatIf"] == "1",
        raw={k: v for k, v in raw.items() if k not in _MODELLED},
    )


def group_count(raw: dict[str, str], prefix: str) -> int:
    """How many items a repeated group in ``OrderSpec.raw`` holds."""
    return int(raw.get(f"{prefix}Count") or 0)


def group_items(raw: dict[str, str], prefix: str, names: Sequence[str]) -> list[list[str]]:
    """The items of a repeated group in ``OrderSpec.raw``, each as its field values."""
    return [
        [raw.get(f"{prefix}.{i}.{name}", "") for name in names]
        for i in range(group_count(raw, prefix))
    ]

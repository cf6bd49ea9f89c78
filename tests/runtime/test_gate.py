"""The mandate gate: one test per rule (at the limit, just over it), and its properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibpilot.config import Environment, Mandate, OrderType, SecType
from ibpilot.gate import (
    TRADING_TRANSITIONS,
    Decision,
    GateState,
    IllegalTransition,
    LinkState,
    Proposal,
    Quote,
    ReasonCode,
    Side,
    Source,
    TradingState,
    TradingTrigger,
    daily_loss_breached,
    decide,
    is_reducing,
    next_trading_state,
    trading_state_markdown,
)

D = Decimal
RC = ReasonCode
# Monday 2 March 2026, 10:00 US/Eastern (EST, UTC-5).
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
QUOTE = Quote(bid=D("99.95"), ask=D("100.05"), last=D("100"), time=NOW)

BASE_MANDATE: dict[str, Any] = {
    "allowed_symbols": ["AAPL"],
    "max_order_quantity": 100,
    "max_order_notional": 1_000_000,
    "max_position": 1000,
    "max_daily_loss": 1000,
    "max_orders_per_minute": 5,
    "trading_hours": {"start": "09:35", "end": "15:55", "time_zone": "US/Eastern"},
}


def mandate(**changes: Any) -> Mandate:
    return Mandate.model_validate(BASE_MANDATE | changes)


def state(**changes: Any) -> GateState:
    values: dict[str, Any] = {
        "now": NOW,
        "environment": Environment.PAPER,
        "quotes": {"AAPL": QUOTE},
    }
    return GateState(**(values | changes))


def order(quantity: str | int | Decimal = 10, **changes: Any) -> Proposal:
    values: dict[str, Any] = {
        "source": Source.STRATEGY,
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": D(quantity),
        "order_type": OrderType.MKT,
    }
    return Proposal(**(values | changes))


def limit(price: str, quantity: str | int = 10, **changes: Any) -> Proposal:
    return order(quantity, order_type=OrderType.LMT, limit_price=D(price), **changes)


def only(decision: Decision, code: ReasonCode) -> tuple[Decimal | None, Decimal | None]:
    assert not decision.allowed
    assert decision.codes == (code,)
    reason = decision.reasons[0]
    assert reason.message
    return reason.limit, reason.actual


def test_a_plain_order_inside_every_limit_is_allowed() -> None:
    decision = decide(order(), mandate(), state())
    assert decision == Decision(allowed=True)


# --- one test per rule ------------------------------------------------------------------------


def test_max_order_quantity_allows_the_limit_and_refuses_one_more() -> None:
    assert decide(order(100), mandate(), state()).allowed
    assert only(decide(order(101), mandate(), state()), RC.MAX_ORDER_QUANTITY) == (D(100), D(101))


def test_max_order_notional_uses_the_limit_price() -> None:
    m = mandate(max_order_notional=1000)
    assert decide(limit("100", 10), m, state()).allowed
    lim, actual = only(decide(limit("100.01", 10), m, state()), RC.MAX_ORDER_NOTIONAL)
    assert (lim, actual) == (D(1000), D("1000.10"))


def test_max_order_notional_values_market_orders_at_the_touch_and_counts_the_multiplier() -> None:
    m = mandate(max_order_notional=D("1000.5"), allowed_sec_types=["STK", "OPT"])
    assert decide(order(10), m, state()).allowed  # 10 x ask 100.05
    assert decide(order(10, side=Side.SELL), m, state()).allowed  # 10 x bid 99.95
    assert not decide(order(11, side=Side.SELL), m, state()).allowed
    option = order(1, sec_type=SecType.OPT, multiplier=D(100), order_type=OrderType.LMT)
    option = replace(option, limit_price=D("10.005"))
    assert decide(option, m, state()).allowed  # 1 x 10.005 x 100
    option = replace(option, limit_price=D("10.006"))
    assert only(decide(option, m, state()), RC.MAX_ORDER_NOTIONAL)[1] == D("1000.600")


def test_max_order_notional_falls_back_to_the_last_price_then_refuses_without_any() -> None:
    m = mandate(max_order_notional=1000, require_quote=False)
    last_only = state(quotes={"AAPL": Quote(last=D(100))})
    assert decide(order(10), m, last_only).allowed
    assert only(decide(order(11), m, last_only), RC.MAX_ORDER_NOTIONAL)[1] == D(1100)
    assert only(decide(order(10), m, state(quotes={})), RC.NO_QUOTE) == (None, None)


def test_max_position_counts_the_position_and_open_orders_on_the_same_side() -> None:
    s = state(
        positions={"AAPL": D(900)}, pending_buys={"AAPL": D(50)}, pending_sells={"AAPL": D(7)}
    )
    assert decide(order(50), mandate(), s).allowed
    assert only(decide(order(51), mandate(), s), RC.MAX_POSITION) == (D(1000), D(1001))
    short = state(positions={"AAPL": D(-950)})
    assert decide(order(50, side=Side.SELL), mandate(), short).allowed
    assert only(decide(order(51, side=Side.SELL), mandate(), short), RC.MAX_POSITION)[1] == D(1001)


def test_max_gross_exposure_adds_every_held_symbol_at_its_mark() -> None:
    s = state(positions={"MSFT": D(10)}, marks={"MSFT": D(200)}, multipliers={"MSFT": D(1)})
    m = mandate(max_gross_exposure=3000)
    assert decide(limit("100", 10), m, s).allowed  # 10 x 200 + 10 x 100
    lim, actual = only(decide(limit("100.01", 10), m, s), RC.MAX_GROSS_EXPOSURE)
    assert (lim, actual) == (D(3000), D("3000.10"))


def test_max_gross_exposure_refuses_when_a_held_symbol_has_no_price() -> None:
    s = state(positions={"MSFT": D(10)})
    decision = decide(limit("100"), mandate(max_gross_exposure=10**6), s)
    assert only(decision, RC.NO_QUOTE) == (None, None)
    assert "MSFT" in decision.reasons[0].message


def test_max_daily_loss_allows_the_limit_and_halts_just_over_it() -> None:
    at_limit = state(realized_pnl=D(-600), unrealized_pnl=D(-400))
    decision = decide(order(), mandate(), at_limit)
    assert decision.allowed
    assert not decision.halt
    over = state(realized_pnl=D(-600), unrealized_pnl=D("-400.01"))
    decision = decide(order(), mandate(), over)
    assert only(decision, RC.MAX_DAILY_LOSS) == (D(1000), D("1000.01"))
    assert decision.halt
    assert not decision.flatten
    assert decide(order(), mandate(flatten_on_daily_loss=True), over).flatten
    assert daily_loss_breached(mandate(), over)
    assert not daily_loss_breached(mandate(), at_limit)


def test_max_orders_per_minute_counts_the_60_seconds_before_now() -> None:
    recent = tuple(NOW - timedelta(seconds=s) for s in (1, 10, 30, 59))
    assert decide(order(), mandate(), state(recent_orders=recent)).allowed  # the 5th
    full = (*recent, NOW - timedelta(seconds=59, microseconds=999_999))
    lim, actual = only(
        decide(order(), mandate(), state(recent_orders=full)), RC.MAX_ORDERS_PER_MINUTE
    )
    assert (lim, actual) == (D(5), D(6))
    aged = (*recent, NOW - timedelta(seconds=60))  # exactly a minute ago: no longer counts
    assert decide(order(), mandate(), state(recent_orders=aged)).allowed


def test_max_orders_per_minute_defaults_to_10_on_live_and_30_elsewhere() -> None:
    m = mandate(max_orders_per_minute=None, allow_live=True)
    assert m.orders_per_minute(Environment.LIVE) == 10
    assert m.orders_per_minute(Environment.PAPER) == m.orders_per_minute(Environment.SIM) == 30
    ten = tuple(NOW - timedelta(seconds=1) for _ in range(10))
    assert decide(order(), m, state(recent_orders=ten)).allowed
    live = state(recent_orders=ten, environment=Environment.LIVE)
    assert only(decide(order(), m, live), RC.MAX_ORDERS_PER_MINUTE) == (D(10), D(11))


@pytest.mark.parametrize(
    ("utc", "allowed"),
    [
        ("2026-03-02T14:35:00", True),  # 09:35 EST, the start is inside
        ("2026-03-02T14:34:59", False),
        ("2026-03-02T20:54:59", True),
        ("2026-03-02T20:55:00", False),  # 15:55 EST, the end is outside
        ("2026-07-06T13:35:00", True),  # 09:35 EDT: summer time moves the window
        ("2026-07-06T14:34:00", True),
        ("2026-07-06T13:34:00", False),
        ("2026-03-07T15:00:00", False),  # Saturday
    ],
)
def test_trading_hours_window_is_in_the_mandates_time_zone(utc: str, allowed: bool) -> None:
    now = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    quote = replace(QUOTE, time=now)
    decision = decide(order(), mandate(), state(now=now, quotes={"AAPL": quote}))
    assert decision.allowed is allowed
    if not allowed:
        only(decision, RC.OUTSIDE_TRADING_HOURS)


def test_trading_hours_also_need_the_exchanges_liquid_hours_when_known() -> None:
    open_, close = NOW - timedelta(hours=1), NOW + timedelta(hours=1)
    assert decide(order(), mandate(), state(sessions={"AAPL": ((open_, close),)})).allowed
    closed = state(sessions={"AAPL": ((open_, NOW),)})  # closes at now: [open, close)
    only(decide(order(), mandate(), closed), RC.OUTSIDE_TRADING_HOURS)
    exchange_only = mandate(trading_hours=None)
    assert decide(order(), exchange_only, state(sessions={"AAPL": ((open_, close),)})).allowed
    decision = decide(order(), exchange_only, state())
    assert "no trading hours known" in decision.reasons[0].message
    only(decision, RC.OUTSIDE_TRADING_HOURS)


def test_trading_hours_may_wrap_midnight() -> None:
    overnight = mandate(trading_hours={"start": "18:00", "end": "04:00", "days": ["SUN", "MON"]})
    sunday_night = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # Sunday 22:00 EST
    monday_early = datetime(2026, 3, 2, 8, 59, tzinfo=UTC)  # Monday 03:59 EST, opened Sunday
    tuesday_early = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)  # Wednesday 03:00, opened Tuesday
    for now, allowed in ((sunday_night, True), (monday_early, True), (tuesday_early, False)):
        s = state(now=now, quotes={"AAPL": replace(QUOTE, time=now)})
        assert decide(order(), overnight, s).allowed is allowed


def test_price_collar_measures_the_limit_from_the_midpoint() -> None:
    m = mandate(price_collar_pct=1)
    assert decide(limit("101"), m, state()).allowed  # mid 100: exactly 1 %
    assert decide(limit("99"), m, state()).allowed
    lim, actual = only(decide(limit("101.01"), m, state()), RC.PRICE_COLLAR)
    assert lim == D(1)
    assert actual == D("1.01")


def test_price_collar_measures_a_market_order_at_the_touch() -> None:
    wide = state(quotes={"AAPL": Quote(bid=D(98), ask=D(102), time=NOW)})
    assert decide(order(), mandate(price_collar_pct=2), wide).allowed  # 102 vs mid 100
    lim, actual = only(decide(order(), mandate(price_collar_pct=D("1.99")), wide), RC.PRICE_COLLAR)
    assert (lim, actual) == (D("1.99"), D(2))


def test_price_collar_leaves_stop_orders_alone() -> None:
    m = mandate(price_collar_pct=1, allowed_order_types=["STP"])
    stop = order(side=Side.SELL, order_type=OrderType.STP, stop_price=D(50))
    assert decide(stop, m, state()).allowed


def test_min_price_allows_the_minimum_and_refuses_below() -> None:
    m = mandate(min_price=100)
    assert decide(limit("100"), m, state()).allowed
    assert only(decide(limit("99.99"), m, state()), RC.MIN_PRICE) == (D(100), D("99.99"))


@pytest.mark.parametrize(
    "quote",
    [
        None,
        replace(QUOTE, stale=True),
        Quote(last=D(100), time=NOW),  # one-sided: no midpoint
        Quote(bid=D(100), time=NOW),
    ],
)
def test_require_quote_refuses_without_a_current_two_sided_quote(quote: Quote | None) -> None:
    s = state(quotes={} if quote is None else {"AAPL": quote})
    assert only(decide(limit("100"), mandate(), s), RC.NO_QUOTE) == (None, None)
    assert decide(limit("100"), mandate(require_quote=False), s).allowed


def test_max_quote_age_makes_old_quotes_count_as_missing() -> None:
    m = mandate(max_quote_age_s=5)
    fresh = state(quotes={"AAPL": replace(QUOTE, time=NOW - timedelta(seconds=5))})
    old = state(quotes={"AAPL": replace(QUOTE, time=NOW - timedelta(seconds=5, microseconds=1))})
    assert decide(order(), m, fresh).allowed
    only(decide(limit("100"), m, old), RC.NO_QUOTE)
    only(decide(limit("100"), m, state(quotes={"AAPL": replace(QUOTE, time=None)})), RC.NO_QUOTE)


def test_symbol_sec_type_and_order_type_must_be_allowed() -> None:
    msft = order(symbol="MSFT")
    s = state(quotes={"MSFT": QUOTE})
    assert "'MSFT'" in decide(msft, mandate(), s).reasons[0].message
    only(decide(msft, mandate(), s), RC.SYMBOL_NOT_ALLOWED)
    only(decide(order(sec_type=SecType.FUT), mandate(), state()), RC.SEC_TYPE_NOT_ALLOWED)
    stop = order(order_type=OrderType.STP, stop_price=D(101))
    only(decide(stop, mandate(), state()), RC.ORDER_TYPE_NOT_ALLOWED)


@pytest.mark.parametrize(
    ("order_type", "limit_price", "stop_price", "words"),
    [
        (OrderType.LMT, None, None, "needs limit"),
        (OrderType.MKT, D(100), None, "takes no limit"),
        (OrderType.STP, None, None, "needs stop"),
        (OrderType.STP_LMT, D(100), None, "needs stop"),
        (OrderType.MKT, None, D(100), "takes no stop"),
    ],
)
def test_order_fields_must_fit_the_order_type(
    order_type: OrderType, limit_price: Decimal | None, stop_price: Decimal | None, words: str
) -> None:
    m = mandate(allowed_order_types=list(OrderType))
    p = order(order_type=order_type, limit_price=limit_price, stop_price=stop_price)
    decision = decide(p, m, state())
    assert RC.INVALID_ORDER in decision.codes
    assert not decision.allowed
    assert words in decision.reasons[decision.codes.index(RC.INVALID_ORDER)].message


def test_live_needs_the_mandate_to_allow_it() -> None:
    live = state(environment=Environment.LIVE)
    only(decide(order(), mandate(), live), RC.LIVE_NOT_ALLOWED)
    assert decide(order(), mandate(allow_live=True), live).allowed
    sell = order(side=Side.SELL, source=Source.KILL)
    only(decide(sell, mandate(), replace(live, positions={"AAPL": D(10)})), RC.LIVE_NOT_ALLOWED)


def test_halted_refuses_opening_orders_and_allows_reducing_ones() -> None:
    halted = state(
        trading_state=TradingState.HALTED, halt_reason="kill switch", positions={"AAPL": D(10)}
    )
    decision = decide(order(), mandate(), halted)
    only(decision, RC.HALTED)
    assert "kill switch" in decision.reasons[0].message
    assert decide(order(10, side=Side.SELL), mandate(), halted).allowed
    assert not decide(order(11, side=Side.SELL), mandate(), halted).allowed  # crosses zero


def test_reducing_state_refuses_opening_orders_with_its_own_code() -> None:
    reducing = state(trading_state=TradingState.REDUCING, positions={"AAPL": D(-10)})
    only(decide(order(11), mandate(), reducing), RC.REDUCE_ONLY)
    assert decide(order(10), mandate(), reducing).allowed


def test_reducing_orders_skip_size_position_exposure_and_loss_limits() -> None:
    # A manual trade left a position far above every limit, and the day's loss is breached.
    s = state(
        positions={"AAPL": D(5000)},
        realized_pnl=D(-5000),
        marks={"AAPL": D(100)},
        trading_state=TradingState.HALTED,
    )
    m = mandate(max_gross_exposure=1, max_order_notional=1, min_price=1000)
    decision = decide(order(5000, side=Side.SELL), m, s)
    assert decision.allowed
    assert decision.reducing
    assert decision.halt
    assert not decide(order(5001, side=Side.SELL), m, s).allowed


def test_open_sell_orders_count_when_deciding_whether_a_sell_reduces() -> None:
    s = state(positions={"AAPL": D(100)}, pending_sells={"AAPL": D(80)})
    assert is_reducing(order(20, side=Side.SELL), s)
    assert not is_reducing(order(21, side=Side.SELL), s)
    assert not is_reducing(order(1), s)


def test_emergency_orders_pass_without_quote_hours_or_rate() -> None:
    busy = tuple(NOW for _ in range(50))
    night = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    s = state(now=night, positions={"AAPL": D(10)}, quotes={}, recent_orders=busy)
    kill = order(10, side=Side.SELL, source=Source.KILL)
    assert decide(kill, mandate(price_collar_pct=1), s).allowed
    as_strategy = decide(replace(kill, source=Source.STRATEGY), mandate(), s)
    assert set(as_strategy.codes) == {
        RC.NO_QUOTE,
        RC.MAX_ORDERS_PER_MINUTE,
        RC.OUTSIDE_TRADING_HOURS,
    }
    wide = state(positions={"AAPL": D(10)}, quotes={"AAPL": Quote(bid=D(50), ask=D(150), time=NOW)})
    only(decide(kill, mandate(price_collar_pct=1), wide), RC.PRICE_COLLAR)


def test_proposal_and_state_refuse_malformed_values() -> None:
    for bad in (D(0), D(-1), D("NaN"), D("Infinity")):
        with pytest.raises(ValueError, match="quantity"):
            order(bad)
    with pytest.raises(ValueError, match="limit_price"):
        limit("0")
    with pytest.raises(ValueError, match="timezone-aware"):
        GateState(now=datetime(2026, 3, 2, 15, 0), environment=Environment.PAPER)  # noqa: DTZ001


# --- trading state table ----------------------------------------------------------------------


def test_trading_state_table() -> None:
    assert next_trading_state(TradingState.ACTIVE, TradingTrigger.HALT) is TradingState.HALTED
    assert next_trading_state(TradingState.HALTED, TradingTrigger.HALT) is TradingState.HALTED
    assert next_trading_state(TradingState.HALTED, TradingTrigger.RESUME) is TradingState.ACTIVE
    assert (
        next_trading_state(TradingState.ACTIVE, TradingTrigger.REDUCE_ONLY) is TradingState.REDUCING
    )
    for state_, trigger in ((TradingState.ACTIVE, TradingTrigger.RESUME),
                            (TradingState.HALTED, TradingTrigger.REDUCE_ONLY)):  # fmt: skip
        with pytest.raises(IllegalTransition, match=str(state_)):
            next_trading_state(state_, trigger)
    table = trading_state_markdown()
    assert table.count("\n") == len(TRADING_TRANSITIONS) + 2
    every_state_can_halt = {s for (s, t) in TRADING_TRANSITIONS if t is TradingTrigger.HALT}
    assert every_state_can_halt == set(TradingState)


# --- properties -------------------------------------------------------------------------------

prices = st.decimals(min_value=D("0.01"), max_value=D(1000), places=2)
quantities = st.decimals(min_value=D(1), max_value=D(2000), places=0)
positions = st.decimals(min_value=D(-2000), max_value=D(2000), places=0)


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    kind = draw(st.sampled_from([OrderType.MKT, OrderType.LMT]))
    return Proposal(
        source=draw(st.sampled_from(Source)),
        symbol=draw(st.sampled_from(["AAPL", "MSFT"])),
        side=draw(st.sampled_from(Side)),
        quantity=draw(quantities),
        order_type=kind,
        limit_price=draw(prices) if kind is OrderType.LMT else None,
    )


@st.composite
def states(draw: st.DrawFn) -> GateState:
    now = NOW + timedelta(minutes=draw(st.integers(-600, 600)))
    quote = draw(
        st.none() | st.builds(Quote, bid=prices, ask=prices, last=prices, time=st.just(now))
    )
    return GateState(
        now=now,
        environment=draw(st.sampled_from(Environment)),
        trading_state=draw(st.sampled_from(TradingState)),
        positions={"AAPL": draw(positions), "MSFT": draw(positions)},
        pending_buys={"AAPL": draw(quantities)} if draw(st.booleans()) else {},
        pending_sells={"AAPL": draw(quantities)} if draw(st.booleans()) else {},
        quotes={"AAPL": quote} if quote else {},
        marks={"MSFT": draw(prices)},
        realized_pnl=draw(st.decimals(min_value=-5000, max_value=5000, places=2)),
        unrealized_pnl=draw(st.decimals(min_value=-5000, max_value=5000, places=2)),
        recent_orders=tuple(now - timedelta(seconds=s) for s in draw(st.lists(st.integers(0, 90)))),
    )


small_limits = st.fixed_dictionaries(
    {
        "max_order_quantity": st.integers(1, 50),
        "max_order_notional": st.integers(1, 500),
        "max_position": st.integers(1, 50),
        "max_gross_exposure": st.integers(1, 500),
        "max_daily_loss": st.integers(1, 100),
        "min_price": st.integers(1, 2000),
    }
)


@settings(max_examples=200)
@given(proposals(), states(), small_limits)
def test_decisions_are_deterministic(p: Proposal, s: GateState, limits: dict[str, int]) -> None:
    m = mandate(**limits, price_collar_pct=5, allowed_symbols=["AAPL", "MSFT"])
    first = decide(p, m, s)
    assert decide(p, m, s) == first
    assert decide(replace(p), m.model_copy(), replace(s)) == first
    assert first.allowed is (not first.reasons)
    assert len(set(first.reasons)) == len(first.reasons)


# Each violation breaks exactly one rule of a base case that passes all of them.
VIOLATIONS: dict[ReasonCode, tuple[str, dict[str, Any]]] = {
    RC.LIVE_NOT_ALLOWED: ("state", {"environment": Environment.LIVE}),
    RC.HALTED: ("state", {"trading_state": TradingState.HALTED}),
    RC.CONNECTIVITY_LOST: ("state", {"link": LinkState.IB_LOST}),
    RC.SYMBOL_NOT_ALLOWED: ("mandate", {"allowed_symbols": ["MSFT"]}),
    RC.SEC_TYPE_NOT_ALLOWED: ("mandate", {"allowed_sec_types": ["FUT"]}),
    RC.ORDER_TYPE_NOT_ALLOWED: ("mandate", {"allowed_order_types": ["MKT"]}),
    RC.NO_QUOTE: ("state", {"quotes": {}}),
    RC.MIN_PRICE: ("mandate", {"min_price": 1000}),
    RC.PRICE_COLLAR: ("proposal", {"limit_price": D(120)}),
    RC.MAX_ORDER_QUANTITY: ("mandate", {"max_order_quantity": 5}),
    RC.MAX_ORDER_NOTIONAL: ("mandate", {"max_order_notional": 500}),
    RC.MAX_POSITION: ("mandate", {"max_position": 5}),
    RC.MAX_GROSS_EXPOSURE: ("mandate", {"max_gross_exposure": 500}),
    RC.MAX_DAILY_LOSS: ("state", {"realized_pnl": D(-2000)}),
    RC.MAX_ORDERS_PER_MINUTE: ("state", {"recent_orders": (NOW,) * 5}),
    RC.OUTSIDE_TRADING_HOURS: ("mandate", {"trading_hours": {"start": "12:00", "end": "13:00"}}),
}


@settings(max_examples=300)
@given(st.sets(st.sampled_from(sorted(VIOLATIONS))))
def test_every_violated_rule_is_reported_and_nothing_else(broken: set[ReasonCode]) -> None:
    parts: dict[str, dict[str, Any]] = {
        "mandate": {"price_collar_pct": 5, "min_price": 1, "max_gross_exposure": 10**7},
        "state": {},
        "proposal": {},
    }
    for code in broken:
        where, change = VIOLATIONS[code]
        parts[where] |= change
    proposal = order(
        10, **({"order_type": OrderType.LMT, "limit_price": D(100)} | parts["proposal"])
    )
    decision = decide(proposal, mandate(**parts["mandate"]), state(**parts["state"]))
    expected = set(broken)
    if RC.NO_QUOTE in broken:
        expected.discard(RC.PRICE_COLLAR)  # without a quote the collar cannot be measured
    assert set(decision.codes) == expected
    assert len(decision.codes) == len(expected)
    assert decision.allowed is (not expected)


@pytest.mark.parametrize(
    ("link", "code"),
    [
        (LinkState.IB_LOST, RC.CONNECTIVITY_LOST),
        (LinkState.DISCONNECTED, RC.CONNECTIVITY_LOST),
        (LinkState.RECONCILING, RC.NOT_RECONCILED),
    ],
)
def test_no_order_passes_while_the_link_is_down_or_unreconciled(
    link: LinkState, code: ReasonCode
) -> None:
    held = state(positions={"AAPL": D(10)}, link=link)
    opening = decide(order(5), mandate(), held)
    flatten = decide(order(10, side=Side.SELL, source=Source.FLATTEN), mandate(), held)
    assert only(opening, code) == (None, None)
    assert flatten.reducing
    assert flatten.codes == (code,)
    assert decide(order(5), mandate(), replace(held, link=LinkState.UP)).allowed


@st.composite
def reducing_cases(draw: st.DrawFn) -> tuple[Proposal, GateState]:
    size = draw(st.decimals(min_value=D(1), max_value=D(10_000), places=0))
    pending = draw(st.decimals(min_value=D(0), max_value=size - 1, places=0))
    quantity = draw(st.decimals(min_value=D(1), max_value=size - pending, places=0))
    long = draw(st.booleans())
    side = Side.SELL if long else Side.BUY
    book: dict[str, Any] = {"pending_sells" if long else "pending_buys": {"AAPL": pending}}
    s = draw(states())
    s = replace(s, positions={"AAPL": size if long else -size, "MSFT": D(5000)}, **book)
    p = replace(draw(proposals()), symbol="AAPL", side=side, quantity=quantity)
    return p, replace(s, realized_pnl=draw(st.decimals(min_value=-(10**6), max_value=0, places=2)))


@settings(max_examples=300)
@given(reducing_cases(), small_limits)
def test_reducing_is_never_refused_for_position_exposure_loss_or_halt(
    case: tuple[Proposal, GateState], limits: dict[str, int]
) -> None:
    p, s = case
    decision = decide(p, mandate(**limits, allowed_symbols=["AAPL", "MSFT"]), s)
    assert decision.reducing
    never = {RC.MAX_POSITION, RC.MAX_GROSS_EXPOSURE, RC.MAX_DAILY_LOSS, RC.HALTED, RC.REDUCE_ONLY}
    assert not never & set(decision.codes)


@settings(max_examples=300)
@given(proposals(), states())
def test_halted_refuses_every_proposal_that_does_not_reduce(p: Proposal, s: GateState) -> None:
    s = replace(s, trading_state=TradingState.HALTED)
    decision = decide(p, mandate(allowed_symbols=["AAPL", "MSFT"]), s)
    if not is_reducing(p, s):
        assert not decision.allowed
        assert RC.HALTED in decision.codes
    else:
        assert RC.HALTED not in decision.codes

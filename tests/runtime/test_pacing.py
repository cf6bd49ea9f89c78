"""The runtime's pacing keeps it inside IB's limits, checked against the simulator's
server-side view of the same rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibpilot.pacing import HistoricalKey, HistoricalPacer, LineBudget, TokenBucket
from ibpilot.sim.limits import HistoricalPacing, MessageRate, RateVerdict


@given(st.lists(st.floats(min_value=0, max_value=0.2), min_size=1, max_size=300))
def test_a_client_that_waits_as_the_bucket_says_never_exceeds_50_per_second(
    gaps: list[float],
) -> None:
    bucket = TokenBucket(rate=45, burst=45)
    server = MessageRate(limit=50)
    now = 0.0
    for gap in gaps:
        now += gap
        now += bucket.delay(now)
        assert bucket.take(now)
        assert server.on_message(now).verdict in (RateVerdict.OK, RateVerdict.WARN)


def test_bucket_refuses_when_empty_and_says_how_long() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    assert bucket.take(0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.0)
    assert bucket.delay(0.0) == pytest.approx(0.1)
    assert bucket.take(0.1)
    with pytest.raises(ValueError, match="exceeds the burst"):
        bucket.delay(0.2, cost=3)


keys = st.builds(
    HistoricalKey,
    contract=st.sampled_from([265598, 756733, 320227571]),
    exchange=st.just("SMART"),
    what_to_show=st.sampled_from(["TRADES", "MIDPOINT", "BID_ASK"]),
    identity=st.sampled_from(["1800 S", "3600 S", "1 D", "2 D"]),
)


@settings(max_examples=200)
@given(st.lists(st.tuples(keys, st.floats(min_value=0, max_value=5)), max_size=120))
def test_a_paced_client_never_triggers_the_servers_error_162(
    requests: list[tuple[HistoricalKey, float]],
) -> None:
    client = HistoricalPacer()
    server = HistoricalPacing(max_bar_seconds=30)
    now = 0.0
    for key, gap in requests:
        now += gap
        now += client.delay(key, now)
        client.sent(key, now)
        client.done()
        assert not server.violates(key, bar_seconds=5, now=now)


def test_each_historical_rule_makes_the_client_wait() -> None:
    pacer = HistoricalPacer()
    key = HistoricalKey(1, "SMART", "TRADES", "a")
    pacer.sent(key, 0.0)
    pacer.done()
    assert pacer.delay(key, 1.0) == pytest.approx(14.05)  # identical within 15 s (+ margin)
    for i in range(4):
        pacer.sent(HistoricalKey(1, "SMART", "TRADES", i), 0.5)
        pacer.done()
    assert pacer.delay(HistoricalKey(1, "SMART", "TRADES", "new"), 1.0) == pytest.approx(1.05)
    assert pacer.delay(HistoricalKey(2, "SMART", "TRADES", "new"), 1.0) == 0.0
    busy = HistoricalPacer(max_open=1)
    busy.sent(key, 0.0)
    assert busy.delay(HistoricalKey(3, "SMART", "TRADES", "x"), 100.0) == float("inf")
    busy.done()
    assert busy.delay(HistoricalKey(3, "SMART", "TRADES", "x"), 100.0) == 0.0


def test_sixty_in_ten_minutes() -> None:
    pacer = HistoricalPacer()
    for i in range(60):
        pacer.sent(HistoricalKey(i, "SMART", "TRADES", i), float(i))
        pacer.done()
    assert pacer.delay(HistoricalKey(99, "SMART", "TRADES", 0), 60.0) == pytest.approx(540.05)


def test_line_budget() -> None:
    lines = LineBudget(2)
    assert lines.acquire("a")
    assert lines.acquire("a")  # the same holder keeps its line
    assert lines.acquire("b")
    assert not lines.acquire("c")
    lines.release("a")
    assert lines.acquire("c")
    assert lines.in_use == 2

"""The watchdogs' rules (ibpilot/watch.py), sans-IO, with hypothesis driving event sequences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibpilot.ib_schedule import IbSchedule
from ibpilot.watch import DataAction, DataWatch, OutageAction, OutageWatch

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 US/Eastern
STALE = timedelta(seconds=60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_silent_feed_is_resubscribed_twice_then_reported_once() -> None:
    watch = DataWatch(STALE, resubscribe_attempts=2)
    watch.subscribed("AAPL", at(0))
    assert watch.due(at(60), {"AAPL"}) == []  # the bound is inclusive
    assert watch.due(at(61), {"AAPL"}) == [("AAPL", DataAction.RESUBSCRIBE)]
    watch.seen("AAPL", at(61))  # a lone snapshot answering the renewed request
    assert watch.due(at(122), {"AAPL"}) == [("AAPL", DataAction.RESUBSCRIBE)]
    assert watch.due(at(183), {"AAPL"}) == [("AAPL", DataAction.REPORT)]
    assert watch.stale("AAPL")
    assert watch.due(at(1000), {"AAPL"}) == []  # reported once
    assert watch.seen("AAPL", at(1001)) is True  # recovered
    assert not watch.stale("AAPL")


def test_a_closed_market_is_never_silent() -> None:
    watch = DataWatch(STALE)
    watch.subscribed("AAPL", at(0))
    assert watch.due(at(10_000), set()) == []
    assert watch.due(at(10_030), {"AAPL"}) == []  # timed from the open, not from the last tick


def test_a_feed_that_flows_again_after_a_resubscription_gets_its_attempts_back() -> None:
    watch = DataWatch(STALE, resubscribe_attempts=1)
    watch.subscribed("AAPL", at(0))
    assert watch.due(at(61), {"AAPL"}) == [("AAPL", DataAction.RESUBSCRIBE)]
    for second in range(62, 200, 10):  # it flows for more than a whole bound
        watch.seen("AAPL", at(second))
        assert watch.due(at(second), {"AAPL"}) == []
    assert watch.due(at(253), {"AAPL"}) == [("AAPL", DataAction.RESUBSCRIBE)]


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(1, 300), st.booleans(), st.booleans()), max_size=60),
    st.integers(0, 3),
)
def test_the_watch_acts_only_on_real_silence_and_within_its_bounds(
    steps: list[tuple[int, bool, bool]], attempts: int
) -> None:
    watch = DataWatch(STALE, resubscribe_attempts=attempts)
    watch.subscribed("AAPL", at(0))
    now, last_tick, renewals_in_a_row, reported = 0, 0, 0, False
    renewed: int | None = None
    for gap, ticks, market_open in steps:
        now += gap
        if ticks:
            watch.seen("AAPL", at(now))
            last_tick, reported = now, False
        actions = [a for _, a in watch.due(at(now), {"AAPL"} if market_open else set())]
        if not market_open:
            renewals_in_a_row, renewed = 0, None
            last_tick = now
        if not market_open or now - last_tick <= 60:
            assert actions == []  # a closed market or a recent tick is never acted on
            if renewed is not None and now - renewed > 60:  # flowed a whole bound since
                renewals_in_a_row, renewed = 0, None
        for action in actions:
            if action is DataAction.RESUBSCRIBE:
                renewals_in_a_row += 1
                assert renewals_in_a_row <= attempts
                last_tick = renewed = now  # the silence is timed afresh from the renewal
            else:
                assert not reported  # reported once until data flows again
                assert renewals_in_a_row == attempts
                reported = True
        assert watch.stale("AAPL") is reported


@pytest.mark.parametrize("resubscribe_attempts", [-1])
def test_bad_settings_are_refused(resubscribe_attempts: int) -> None:
    with pytest.raises(ValueError, match="resubscribe_attempts"):
        DataWatch(STALE, resubscribe_attempts)
    with pytest.raises(ValueError, match="stale_after"):
        DataWatch(timedelta(0))


# -- outages ---------------------------------------------------------------------------------

RESET = datetime.fromisoformat("2026-03-03T00:20:00-05:00")  # Tuesday, in the NA reset window


def test_an_outage_outside_the_windows_is_reported_after_the_threshold_once() -> None:
    watch = OutageWatch(IbSchedule.for_region(), timedelta(minutes=5))
    watch.connected(at(0))
    assert watch.disconnected(at(10)) is None
    assert watch.due(at(10 + 300)) == []
    assert watch.due(at(10 + 301)) == [OutageAction.NOT_RESTORED]
    assert watch.due(at(10 + 900)) == []
    end = watch.connected(at(1000))
    assert end is not None
    assert end.expected_window is None
    assert end.unexplained == timedelta(seconds=990)


def test_an_outage_inside_the_nightly_reset_counts_only_after_the_window() -> None:
    watch = OutageWatch(IbSchedule.for_region(), timedelta(minutes=5))
    watch.connected(RESET - timedelta(hours=1))
    window = watch.disconnected(RESET)
    assert window is not None
    assert window.end == datetime.fromisoformat("2026-03-03T01:45:00-05:00")
    assert watch.due(window.end + timedelta(minutes=4)) == []  # an hour and a half, quietly
    assert watch.due(window.end + timedelta(minutes=6)) == [OutageAction.NOT_RESTORED]


def test_a_weekend_outage_past_sundays_token_invalidation_asks_for_a_relogin() -> None:
    watch = OutageWatch(IbSchedule.for_region(), timedelta(hours=100))
    friday = datetime.fromisoformat("2026-03-06T16:00:00-05:00")
    watch.connected(friday)
    watch.disconnected(friday + timedelta(hours=1))
    sunday = datetime.fromisoformat("2026-03-08T01:30:00-05:00")  # after 01:00 ET
    assert watch.due(sunday - timedelta(hours=1)) == []
    assert watch.due(sunday) == [OutageAction.RELOGIN_NEEDED]
    assert watch.due(sunday + timedelta(hours=1)) == []

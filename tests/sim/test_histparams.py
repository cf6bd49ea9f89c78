"""reqHistoricalData parameters: IB's spellings, IB's refusals, the window, IB's bar dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from ib_async import util

from ibpilot.sim.histparams import (
    BAR_SIZE_TEXT,
    END_FORMAT_TEXT,
    BarUnit,
    Duration,
    DurationUnit,
    HistoryRequestError,
    check_step,
    format_bar_time,
    format_time,
    parse_bar_size,
    parse_duration,
    parse_end,
    validate,
    window,
)
from ibpilot.sim.refdata import Instrument, ModelParams, Session

NY = ZoneInfo("US/Eastern")
LEGAL = (
    "1 secs", "5 secs", "10 secs", "15 secs", "30 secs", "1 min", "2 mins", "3 mins", "5 mins",
    "10 mins", "15 mins", "20 mins", "30 mins", "1 hour", "2 hours", "3 hours", "4 hours",
    "8 hours", "1 day", "1 week", "1 month", "1W", "1M",
)  # fmt: skip


class StockCalendar:
    """US equity sessions 04:00-20:00 ET (liquid 09:30-16:00) on weekdays but 2024-07-04."""

    def session(self, inst: Instrument, day: date) -> Session | None:
        if day.weekday() >= 5 or day == date(2024, 7, 4):
            return None

        def at(h: int, m: int) -> datetime:
            return datetime(day.year, day.month, day.day, h, m, tzinfo=NY).astimezone(UTC)

        return Session(day, at(4, 0), at(20, 0), at(9, 30), at(16, 0))

    def sessions_between(self, inst: Instrument, start: datetime, end: datetime) -> list[Session]:
        out = []
        d = start.date() - timedelta(days=1)
        while d <= end.date() + timedelta(days=1):
            s = self.session(inst, d)
            if s is not None and s.close > start and s.open < end:
                out.append(s)
            d += timedelta(days=1)
        return out

    def by_con_id(self, con_id: int) -> Instrument | None:
        return None


CAL = StockCalendar()
AAPL = Instrument(265598, "AAPL", "STK", "SMART", "USD", model=ModelParams(price=180.0))
EUR = Instrument(12087792, "EUR", "CASH", "IDEALPRO", "USD", min_tick=0.00005, calendar="fx")
SPX = Instrument(416904, "SPX", "IND", "CBOE", "USD", calendar="us_index")


def et(y: int, mo: int, d: int, *hms: int) -> int:
    """Epoch of a US/Eastern wall-clock time."""
    h, mi, s = (*hms, 0, 0, 0)[:3]
    return int(datetime(y, mo, d, h, mi, s, tzinfo=NY).timestamp())


# ----- bar sizes --------------------------------------------------------------------------
@pytest.mark.parametrize("text", LEGAL)
def test_every_legal_bar_size_parses(text: str) -> None:
    bar = parse_bar_size(text)
    assert bar.intraday == (bar.unit is BarUnit.SECOND)
    assert bar.nominal_seconds > 0


def test_bar_sizes_have_their_lengths() -> None:
    assert parse_bar_size("1 secs").seconds == 1
    assert parse_bar_size("20 mins").seconds == 1200
    assert parse_bar_size("8 hours").seconds == 28_800
    assert parse_bar_size("1W").unit is parse_bar_size("1 week").unit is BarUnit.WEEK
    assert parse_bar_size("1M").unit is BarUnit.MONTH
    assert parse_bar_size("1 day").seconds == 0


@pytest.mark.parametrize("text", ["1 sec", "7 mins", "1 hours", "60 mins", "1 D", "", "1 Y"])
def test_illegal_bar_sizes_get_ibs_321(text: str) -> None:
    with pytest.raises(HistoryRequestError) as info:
        parse_bar_size(text)
    assert info.value.code == 321
    assert info.value.message.endswith(BAR_SIZE_TEXT)
    assert "Legal ones are: 1 secs, 5 secs" in info.value.message


# ----- durations --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "count", "unit"),
    [("60 S", 60, "S"), ("1 D", 1, "D"), ("2 W", 2, "W"), ("1 M", 1, "M"), ("10 Y", 10, "Y"),
     ("86400 S", 86_400, "S"), ("365 D", 365, "D"), (" 3 D ", 3, "D")],
)  # fmt: skip
def test_durations_parse(text: str, count: int, unit: str) -> None:
    assert parse_duration(text) == Duration(count, DurationUnit(unit))
    assert parse_duration(text).text == f"{count} {unit}"


@pytest.mark.parametrize("text", ["1D", "1 d", "0 D", "-1 D", "1.5 D", "1 H", "D", ""])
def test_malformed_durations_get_321(text: str) -> None:
    with pytest.raises(HistoryRequestError) as info:
        parse_duration(text)
    assert info.value.code == 321


def test_long_durations_must_change_unit_as_ib_says() -> None:
    with pytest.raises(HistoryRequestError, match="longer than 86400 seconds") as info:
        parse_duration("86401 S")
    assert info.value.code == 321
    with pytest.raises(HistoryRequestError) as info:
        parse_duration("366 D")
    assert info.value.message == (
        "Error validating request.-'bK' : cause - Historical data requests for durations "
        "longer than 365 days must be made in years."
    )
    with pytest.raises(HistoryRequestError):
        parse_duration("53 W")


# ----- end date/time ----------------------------------------------------------------------
NOW = et(2024, 3, 5, 11, 22, 33)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", NOW),
        ("20240305 10:00:00", et(2024, 3, 5, 10)),
        ("20240305 10:00:00 US/Eastern", et(2024, 3, 5, 10)),
        ("20240305 10:00:00 America/New_York", et(2024, 3, 5, 10)),
        ("20240305 15:00:00 UTC", et(2024, 3, 5, 10)),
        ("20240305 16:00:00 Europe/London", et(2024, 3, 5, 11)),
        ("20240305 09:00:00 CST", et(2024, 3, 5, 10)),
        ("20240305-15:00:00", et(2024, 3, 5, 10)),
        ("20240305", et(2024, 3, 6)),
        ("09:30:00", et(2024, 3, 5, 9, 30)),
        ("14:30:00 UTC", et(2024, 3, 5, 9, 30)),
        ("20240310 03:00:00 US/Eastern", int(datetime(2024, 3, 10, 7, tzinfo=UTC).timestamp())),
        ("20240710 12:00:00", int(datetime(2024, 7, 10, 16, tzinfo=UTC).timestamp())),
    ],
)
def test_end_date_times_parse_in_the_right_zone(text: str, expected: int) -> None:
    assert parse_end(text, "US/Eastern", NOW) == expected


@pytest.mark.parametrize(
    "text",
    ["2024-03-05 10:00:00", "20240305 10:00", "20240230 10:00:00", "20240305 25:00:00",
     "20240305 10:00:00 Mars/Olympus", "20240305  10:00:00", "yesterday", "20240305 10:00:00 x y"],
)  # fmt: skip
def test_bad_end_date_times_get_ibs_10314(text: str) -> None:
    with pytest.raises(HistoryRequestError) as info:
        parse_end(text, "US/Eastern", NOW)
    assert (info.value.code, info.value.message) == (10314, END_FORMAT_TEXT)


ZONES = st.sampled_from(["US/Eastern", "US/Central", "Europe/London", "Asia/Tokyo", "UTC"])
EPOCHS = st.integers(min_value=et(2020, 1, 1), max_value=et(2030, 12, 31))


def ambiguous(epoch: int, tz: str) -> bool:
    """True during a fall-back hour, when the wall-clock time names two instants."""
    local = datetime.fromtimestamp(epoch, ZoneInfo(tz)).replace(tzinfo=None)
    a, b = (local.replace(tzinfo=ZoneInfo(tz), fold=f).utcoffset() for f in (0, 1))
    return a != b


@given(epoch=EPOCHS, tz=ZONES)
def test_formatted_times_parse_back_to_the_same_second(epoch: int, tz: str) -> None:
    assume(not ambiguous(epoch, tz))
    text = format_time(epoch, tz)
    assert parse_end(text, "UTC", 0) == epoch
    parsed = util.parseIBDatetime(text)
    assert isinstance(parsed, datetime)
    assert int(parsed.timestamp()) == epoch


@given(epoch=EPOCHS)
def test_epoch_bar_dates_parse_in_ib_async(epoch: int) -> None:
    text = format_bar_time(epoch, "US/Eastern", 2)
    assert text == str(epoch)
    assert util.parseIBDatetime(text) == datetime.fromtimestamp(epoch, UTC)


def test_bar_dates_look_like_ibs() -> None:
    assert format_bar_time(et(2026, 3, 2, 9, 30), "US/Eastern", 1) == "20260302 09:30:00 US/Eastern"
    assert format_bar_time(date(2026, 3, 2), "US/Eastern", 1) == "20260302"
    assert format_bar_time(date(2026, 3, 2), "US/Eastern", 2) == "20260302"
    assert util.parseIBDatetime("20260302") == date(2026, 3, 2)
    summer = format_bar_time(et(2024, 7, 1, 9, 30), "US/Central", 1)
    assert summer == "20240701 08:30:00 US/Central"  # CDT, UTC-5


# ----- validation -------------------------------------------------------------------------
def check(
    *,
    inst: Instrument = AAPL,
    bar: str = "1 min",
    dur: str = "1 D",
    what: str = "TRADES",
    end: str = "",
    fmt: int = 1,
    live: bool = False,
) -> None:
    validate(
        inst, parse_bar_size(bar), parse_duration(dur), what,
        end_text=end, format_date=fmt, keep_up_to_date=live,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("bar", "dur"),
    [("1 secs", "1800 S"), ("1 secs", "2000 S"), ("5 secs", "3600 S"), ("10 secs", "14400 S"),
     ("30 secs", "1 D"), ("1 min", "1 D"), ("1 min", "1 W"), ("1 min", "1 M"),
     ("5 mins", "1 Y"), ("1 hour", "1 Y"), ("1 day", "10 Y"), ("1 week", "2 Y"),
     ("1 month", "1 M"), ("8 hours", "28800 S"), ("1 day", "1 D")],
)  # fmt: skip
def test_valid_steps_pass(bar: str, dur: str) -> None:
    check(bar=bar, dur=dur)


@pytest.mark.parametrize(
    ("bar", "dur"),
    [("1 secs", "1 D"), ("1 secs", "2001 S"), ("5 secs", "1 D"), ("30 secs", "2 D"),
     ("1 min", "2 M"), ("1 min", "1 Y"), ("8 hours", "2 Y"), ("1 hour", "60 S"),
     ("1 day", "3600 S"), ("1 week", "1 D"), ("1 month", "3 W")],
)  # fmt: skip
def test_invalid_steps_get_162(bar: str, dur: str) -> None:
    with pytest.raises(HistoryRequestError) as info:
        check(bar=bar, dur=dur)
    assert info.value.code == 162
    assert info.value.message.startswith(
        "Historical Market Data Service error message:invalid step: "
    )


def test_the_step_error_names_the_bar_length() -> None:
    with pytest.raises(HistoryRequestError) as info:
        check_step(parse_bar_size("1 secs"), parse_duration("1 D"))
    assert info.value.message.endswith("invalid step: 1")


def test_data_ib_does_not_have_gets_162() -> None:
    for inst, what in ((EUR, "TRADES"), (SPX, "MIDPOINT"), (SPX, "BID"), (AAPL, "BID_ASK")):
        with pytest.raises(HistoryRequestError) as info:
            check(inst=inst, what=what)
        assert info.value.code == 162
        assert f"No data of type {what} is available" in info.value.message
    check(inst=EUR, what="MIDPOINT")
    check(inst=SPX, what="TRADES")


def test_nonsense_requests_get_321() -> None:
    cases = [
        ({"what": "PRICES"}, "whatToShow 'PRICES' is invalid"),
        ({"fmt": 0}, "Date formatting selection of 0 rejected"),
        ({"live": True, "end": "20240305 10:00:00"}, "End date not supported with live updates"),
        ({"live": True, "bar": "1 secs", "dur": "60 S"}, "Bar size not supported"),
    ]
    for kwargs, text in cases:
        with pytest.raises(HistoryRequestError, match=text) as info:
            check(**kwargs)  # type: ignore[arg-type]
        assert info.value.code == 321
    check(live=True, bar="5 secs", dur="3600 S")


# ----- the request window -----------------------------------------------------------------
def test_one_day_is_the_last_session() -> None:
    tuesday_noon = et(2024, 3, 5, 12)
    w = window(AAPL, CAL, tuesday_noon, parse_duration("1 D"), use_rth=True)
    assert (w.start, w.end, w.first_day, w.last_day) == (
        et(2024, 3, 5, 9, 30), tuesday_noon, date(2024, 3, 5), date(2024, 3, 5),
    )  # fmt: skip
    assert window(AAPL, CAL, tuesday_noon, parse_duration("1 D"), False).start == et(2024, 3, 5, 4)
    saturday = et(2024, 3, 9, 12)
    w = window(AAPL, CAL, saturday, parse_duration("1 D"), True)
    assert (w.start, w.first_day) == (et(2024, 3, 8, 9, 30), date(2024, 3, 8))
    before_open = et(2024, 3, 5, 8)  # premarket: with RTH today has no data yet
    assert window(AAPL, CAL, before_open, parse_duration("1 D"), True).start == et(
        2024, 3, 4, 9, 30
    )
    assert window(AAPL, CAL, before_open, parse_duration("1 D"), False).start == et(2024, 3, 5, 4)


def test_n_days_are_n_sessions_skipping_weekends_and_holidays() -> None:
    w = window(AAPL, CAL, et(2024, 3, 11, 10), parse_duration("2 D"), True)
    assert (w.start, w.first_day, w.last_day) == (
        et(2024, 3, 8, 9, 30), date(2024, 3, 8), date(2024, 3, 11),
    )  # fmt: skip
    w = window(AAPL, CAL, et(2024, 7, 5, 17), parse_duration("2 D"), True)
    assert w.first_day == date(2024, 7, 3)  # the 4th of July has no session
    w = window(AAPL, CAL, et(2024, 3, 8, 17), parse_duration("5 D"), True)
    assert (w.first_day, w.last_day) == (date(2024, 3, 4), date(2024, 3, 8))


def test_seconds_count_trading_time_back_over_closed_periods() -> None:
    w = window(AAPL, CAL, et(2024, 3, 5, 11), parse_duration("1800 S"), True)
    assert w.start == et(2024, 3, 5, 10, 30)
    w = window(AAPL, CAL, et(2024, 3, 5, 9, 45), parse_duration("3600 S"), True)
    assert w.start == et(2024, 3, 4, 15, 15)  # 15 minutes today, 45 yesterday
    w = window(AAPL, CAL, et(2024, 3, 11, 4, 30), parse_duration("3600 S"), False)
    assert w.start == et(2024, 3, 8, 19, 30)  # over the weekend
    assert (w.first_day, w.last_day) == (date(2024, 3, 8), date(2024, 3, 11))


def test_weeks_months_and_years_are_calendar_time_in_local_wall_clock() -> None:
    end = et(2024, 3, 20, 10)
    assert window(AAPL, CAL, end, parse_duration("2 W"), True).start == et(2024, 3, 6, 10)
    assert window(AAPL, CAL, end, parse_duration("1 M"), True).start == et(2024, 2, 20, 10)
    assert window(AAPL, CAL, et(2024, 3, 31, 12), parse_duration("1 M"), True).start == et(
        2024, 2, 29, 12
    )
    assert window(AAPL, CAL, et(2024, 2, 29, 12), parse_duration("1 Y"), True).start == et(
        2023, 2, 28, 12
    )
    w = window(AAPL, CAL, et(2024, 1, 15, 12), parse_duration("3 M"), True)
    assert w.start == et(2023, 10, 15, 12)
    assert w.first_day == date(2023, 10, 16)


def test_calendar_windows_keep_the_wall_clock_across_dst() -> None:
    end = et(2024, 3, 12, 10)  # EDT; two weeks earlier was EST
    start = window(AAPL, CAL, end, parse_duration("2 W"), True).start
    assert datetime.fromtimestamp(start, NY).hour == 10
    assert end - start == 14 * 86_400 - 3600

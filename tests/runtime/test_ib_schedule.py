"""IB's expected windows and the weekly re-login: 2026 dates (DST days included) and properties.

2026 DST changes: US 8 March (02:00 EST -> 03:00 EDT) and 1 November (02:00 EDT -> 01:00 EST);
Europe 29 March and 25 October (01:00 UTC); Hong Kong has none.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ibpilot.config import ScheduleSettings
from ibpilot.ib_schedule import (
    ALL_DAYS,
    IbSchedule,
    RecurringWindow,
    Region,
    Window,
    WindowKind,
)

NA = IbSchedule()
ET = ZoneInfo("US/Eastern")
SUN, MON, TUE, WED, THU, FRI, SAT = 6, 0, 1, 2, 3, 4, 5


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def span(window: Window | None) -> tuple[str, str, WindowKind] | None:
    if window is None:
        return None
    return (f"{window.start:%Y-%m-%d %H:%M}", f"{window.end:%Y-%m-%d %H:%M}", window.kind)


# --- concrete dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Monday 2 March, EST: 00:15-01:45 ET is 05:15-06:45 UTC
        ("2026-03-02 05:14:59", None),
        ("2026-03-02 05:15", ("2026-03-02 05:15", "2026-03-02 06:45", WindowKind.SERVER_RESET)),
        ("2026-03-02 06:44:59", ("2026-03-02 05:15", "2026-03-02 06:45", WindowKind.SERVER_RESET)),
        ("2026-03-02 06:45", None),
        # Sunday 8 March, the spring-forward day: the reset ends before the 02:00 jump (EST)
        ("2026-03-08 06:00", ("2026-03-08 05:15", "2026-03-08 06:45", WindowKind.SERVER_RESET)),
        # Monday 9 March, EDT: 04:15-05:45 UTC
        ("2026-03-09 04:15", ("2026-03-09 04:15", "2026-03-09 05:45", WindowKind.SERVER_RESET)),
        ("2026-03-09 05:50", None),
        # Sunday 1 November, fall-back: 00:15 EDT to the last 01:45 (EST), 2.5 hours
        ("2026-11-01 04:15", ("2026-11-01 04:15", "2026-11-01 06:45", WindowKind.SERVER_RESET)),
        ("2026-11-01 06:30", ("2026-11-01 04:15", "2026-11-01 06:45", WindowKind.SERVER_RESET)),
        # the weekend maintenance, Friday 23:00 to Saturday 03:00 ET, in EST and in EDT
        ("2026-03-07 04:00", ("2026-03-07 04:00", "2026-03-07 08:00", WindowKind.MAINTENANCE)),
        ("2026-03-07 05:30", ("2026-03-07 04:00", "2026-03-07 08:00", WindowKind.MAINTENANCE)),
        ("2026-10-31 03:00", ("2026-10-31 03:00", "2026-10-31 07:00", WindowKind.MAINTENANCE)),
        ("2026-03-07 12:00", None),  # Saturday daytime
    ],
)
def test_north_american_windows_on_2026_dates(
    now: str, expected: tuple[str, str, WindowKind] | None
) -> None:
    assert span(NA.window_at(utc(now))) == expected


def test_saturday_has_no_daily_reset_so_the_next_window_is_sunday() -> None:
    window = NA.next_window(utc("2026-03-07 12:00"))
    assert span(window) == ("2026-03-08 05:15", "2026-03-08 06:45", WindowKind.SERVER_RESET)
    assert window is not None
    assert window.name == "IB daily server reset (North America)"


def test_the_next_window_after_a_friday_reset_is_the_weekend_maintenance() -> None:
    window = NA.next_window(utc("2026-03-06 12:00"))
    assert span(window) == ("2026-03-07 04:00", "2026-03-07 08:00", WindowKind.MAINTENANCE)


@pytest.mark.parametrize(
    ("region", "now", "expected"),
    [
        # Europe 06:25-07:45 CET/CEST: Friday 27 March in CET, Sunday 29 March in CEST
        (Region.EU, "2026-03-27 05:30", ("2026-03-27 05:25", "2026-03-27 06:45")),
        (Region.EU, "2026-03-29 04:30", ("2026-03-29 04:25", "2026-03-29 05:45")),
        (Region.EU, "2026-10-25 05:30", ("2026-10-25 05:25", "2026-10-25 06:45")),
        # Hong Kong (UTC+8, no DST): 04:45-06:05 and 20:15-21:15 HKT
        (Region.ASIA, "2026-03-01 21:00", ("2026-03-01 20:45", "2026-03-01 22:05")),
        (Region.ASIA, "2026-03-02 12:30", ("2026-03-02 12:15", "2026-03-02 13:15")),
    ],
)
def test_other_regions(region: Region, now: str, expected: tuple[str, str]) -> None:
    window = IbSchedule.for_region(region).window_at(utc(now))
    assert span(window) == (*expected, WindowKind.SERVER_RESET)


def test_the_gateway_restart_window_lasts_the_grace_period() -> None:
    schedule = IbSchedule.for_region(gateway_restart=time(23, 45))
    # Monday 2 March 23:45 EST is 04:45 UTC on the 3rd; the default grace is 2 minutes
    expected = ("2026-03-03 04:45", "2026-03-03 04:47", WindowKind.GATEWAY_RESTART)
    assert span(schedule.window_at(utc("2026-03-03 04:46"))) == expected
    assert schedule.window_at(utc("2026-03-03 04:47")) is None


def test_a_restart_time_skipped_by_the_spring_jump_happens_at_the_jump() -> None:
    schedule = IbSchedule.for_region(
        gateway_restart=time(2, 30), gateway_grace=timedelta(minutes=5)
    )
    window = schedule.next_window(utc("2026-03-08 06:50"))
    assert window is not None
    assert window.start == utc("2026-03-08 07:00")  # 03:00 EDT, the first instant after 02:00 EST


def test_overlapping_windows_report_the_one_ending_last() -> None:
    schedule = IbSchedule.for_region(gateway_restart=time(23, 30), gateway_grace=timedelta(hours=1))
    # Friday 6 March 23:40 EST: the Gateway restart (to 00:30) inside the maintenance (to 03:00)
    assert span(schedule.window_at(utc("2026-03-07 04:40"))) == (
        "2026-03-07 04:00", "2026-03-07 08:00", WindowKind.MAINTENANCE,
    )  # fmt: skip


def test_a_custom_window_crossing_midnight() -> None:
    # the schedule IB published until 2024: 23:45-00:45 ET, Saturday to Thursday
    old = RecurringWindow(
        "old reset", WindowKind.SERVER_RESET, frozenset({SAT, SUN, MON, TUE, WED, THU}),
        time(23, 45), time(0, 45),
    )  # fmt: skip
    schedule = IbSchedule((old,))
    # Sunday 1 March 00:30 EST belongs to Saturday's window
    assert span(schedule.window_at(utc("2026-03-01 05:30"))) == (
        "2026-03-01 04:45", "2026-03-01 05:45", WindowKind.SERVER_RESET,
    )  # fmt: skip
    assert schedule.window_at(utc("2026-03-07 05:30")) is None  # Friday's night: not listed


@pytest.mark.parametrize(
    ("last_login", "now", "due"),
    [
        ("2026-03-07 12:00", "2026-03-08 05:59:59", False),  # Sunday 8 March 01:00 EST = 06:00Z
        ("2026-03-07 12:00", "2026-03-08 06:00", True),
        ("2026-03-08 06:00", "2026-03-14 12:00", False),  # a login at the instant counts
        ("2026-03-08 06:30", "2026-03-15 04:59", False),  # 15 March 01:00 EDT = 05:00Z
        ("2026-03-08 06:30", "2026-03-15 05:00", True),
        ("2026-10-31 12:00", "2026-11-01 05:00", True),  # fall-back: the first 01:00 (EDT)
        ("2026-11-01 05:30", "2026-11-08 05:59", False),  # 8 November 01:00 EST = 06:00Z
        ("2026-02-01 12:00", "2026-03-01 12:00", True),
        ("2026-03-09 12:00", "2026-03-08 12:00", False),  # now before the login
    ],
)
def test_relogin_due_after_sunday_01_00_eastern(last_login: str, now: str, due: bool) -> None:
    assert NA.relogin_due(utc(last_login), utc(now)) is due


def test_next_token_invalidation() -> None:
    assert NA.next_token_invalidation(utc("2026-03-08 05:59")) == utc("2026-03-08 06:00")
    assert NA.next_token_invalidation(utc("2026-03-08 06:00")) == utc("2026-03-15 05:00")
    assert IbSchedule(token_invalidation=None).next_token_invalidation(utc("2026-03-08")) is None
    assert not IbSchedule(token_invalidation=None).relogin_due(utc("2026-01-01"), utc("2026-06-01"))


def test_unexplained_downtime_does_not_count_an_expected_window() -> None:
    # down at 00:20 EST Monday 2 March, inside the reset (ends 06:45 UTC)
    assert NA.unexplained_downtime(utc("2026-03-02 05:20"), utc("2026-03-02 06:40")) == timedelta()
    downtime = NA.unexplained_downtime(utc("2026-03-02 05:20"), utc("2026-03-02 06:50"))
    assert downtime == timedelta(minutes=5)
    # down at 10:00 EST, no window: the whole outage counts
    downtime = NA.unexplained_downtime(utc("2026-03-02 15:00"), utc("2026-03-02 15:07"))
    assert downtime == timedelta(minutes=7)
    # down for ten days: only the time since the last window ended counts
    downtime = NA.unexplained_downtime(utc("2026-02-20 15:00"), utc("2026-03-02 07:45"))
    assert downtime == timedelta(hours=1)


def test_the_schedule_from_adapter_settings() -> None:
    settings = ScheduleSettings.model_validate(
        {"region": "eu", "gateway_restart_time": "23:45", "gateway_time_zone": "Europe/London",
         "gateway_restart_grace_s": 60}
    )  # fmt: skip
    schedule = IbSchedule.from_settings(settings)
    assert [w.kind for w in schedule.windows] == [
        WindowKind.SERVER_RESET, WindowKind.MAINTENANCE, WindowKind.GATEWAY_RESTART,
    ]  # fmt: skip
    # 23:45 London (GMT) on Monday 2 March
    assert span(schedule.window_at(utc("2026-03-02 23:45:30"))) == (
        "2026-03-02 23:45", "2026-03-02 23:46", WindowKind.GATEWAY_RESTART,
    )  # fmt: skip


def test_aware_inputs_in_any_zone_give_utc_outputs() -> None:
    eastern = datetime(2026, 3, 2, 0, 30, tzinfo=timezone(timedelta(hours=-5)))
    window = NA.window_at(eastern)
    assert window is not None
    assert window.start.tzinfo is UTC
    assert window.covers(eastern)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: NA.window_at(datetime(2026, 3, 2)), "now"),  # noqa: DTZ001 (the point)
        (lambda: NA.next_window(datetime(2026, 3, 2)), "now"),  # noqa: DTZ001
        (lambda: NA.relogin_due(datetime(2026, 3, 2), utc("2026-03-09")), "last_login"),  # noqa: DTZ001
        (lambda: NA.relogin_due(utc("2026-03-02"), datetime(2026, 3, 9)), "now"),  # noqa: DTZ001
        (lambda: NA.unexplained_downtime(datetime(2026, 3, 2), utc("2026-03-09")), "down_since"),  # noqa: DTZ001
    ],
)
def test_naive_datetimes_raise_naming_the_argument(call: object, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a timezone-aware datetime"):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": frozenset()}, "days must be weekday numbers"),
        ({"days": frozenset({7})}, "days must be weekday numbers"),
        ({"end": time(0, 15)}, "end must differ from start"),
        ({"end": timedelta(0)}, "a duration must be > 0"),
        ({"end": timedelta(hours=7)}, "a duration must be > 0"),
        ({"time_zone": "Mars/Olympus"}, "time_zone must be an IANA time zone"),
        ({"start": time(0, 15, tzinfo=UTC)}, "must be naive local times"),
    ],
)
def test_a_bad_window_is_refused(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "name": "w", "kind": WindowKind.SERVER_RESET, "days": ALL_DAYS,
        "start": time(0, 15), "end": time(1, 45),
    }  # fmt: skip
    with pytest.raises(ValueError, match=message):
        RecurringWindow(**(fields | kwargs))  # type: ignore[arg-type]


# --- properties -------------------------------------------------------------------------------

ZONES = ["US/Eastern", "Europe/Berlin", "Asia/Hong_Kong", "Australia/Sydney", "Australia/Lord_Howe"]


def _transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """The instants in ``year`` at which ``zone``'s offset changes (to the second)."""
    found, moment = [], datetime(year, 1, 1, tzinfo=UTC)
    while moment.year == year:
        later = moment + timedelta(hours=1)
        if moment.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
            low, high = int(moment.timestamp()), int(later.timestamp())
            while low < high:
                middle = (low + high) // 2
                offset = datetime.fromtimestamp(middle, zone).utcoffset()
                low, high = (middle + 1, high) if offset == moment.astimezone(zone).utcoffset() \
                    else (low, middle)  # fmt: skip
            found.append(datetime.fromtimestamp(low, UTC))
        moment = later
    return found


TRANSITIONS = {name: _transitions(ZoneInfo(name), 2026) for name in ZONES}
instants = st.one_of(
    # hypothesis takes naive bounds and attaches the zone itself
    st.datetimes(datetime(2024, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC)),  # noqa: DTZ001
    st.builds(
        lambda at, seconds: at + timedelta(seconds=seconds),
        st.sampled_from([t for jumps in TRANSITIONS.values() for t in jumps]),
        st.integers(-2 * 86400, 2 * 86400),
    ),
)  # fmt: skip
times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 45, 59]))


@st.composite
def windows_near_a_jump(draw: st.DrawFn) -> tuple[RecurringWindow, datetime]:
    """A window whose start and end are often wall times around a DST jump, and an instant
    within hours of that jump (or anywhere)."""
    name = draw(st.sampled_from(ZONES))
    zone, jumps = ZoneInfo(name), TRANSITIONS[name]
    jump = draw(st.sampled_from(jumps)) if jumps else datetime(2026, 3, 8, 7, tzinfo=UTC)
    walls = [(jump + timedelta(seconds=s)).astimezone(zone) for s in (-1, 0)]
    near = st.builds(
        lambda wall, minutes: (wall + timedelta(minutes=minutes)).time().replace(second=0),
        st.sampled_from(walls), st.integers(-90, 90),
    )  # fmt: skip
    start, end = draw(st.one_of(near, times)), draw(st.one_of(near, times))
    assume(start != end)
    weekday = walls[0].weekday()
    days = draw(st.frozensets(st.integers(0, 6))) | {weekday, (weekday - 1) % 7}
    moment = draw(
        st.one_of(
            st.integers(-6 * 3600, 6 * 3600).map(lambda s: jump + timedelta(seconds=s)),
            st.integers(-6 * 60, 6 * 60).map(lambda m: jump + timedelta(minutes=m * 5)),
            instants,
        )
    )
    return RecurringWindow("w", WindowKind.SERVER_RESET, days, start, end, name), moment


def _ambiguous(moment: datetime, zone: ZoneInfo) -> bool:
    local = moment.astimezone(zone)
    return local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset()


def _wall_clock_covers(spec: RecurringWindow, moment: datetime) -> bool:
    """The oracle, on wall-clock time alone: is the local time within an occurrence?"""
    assert isinstance(spec.end, time)
    wall = moment.astimezone(ZoneInfo(spec.time_zone)).replace(tzinfo=None)
    for day in (wall.date() - timedelta(days=1), wall.date()):
        end_day = day if spec.start < spec.end else day + timedelta(days=1)
        start, end = datetime.combine(day, spec.start), datetime.combine(end_day, spec.end)
        if day.weekday() in spec.days and start <= wall < end:
            return True
    return False


@settings(max_examples=500, deadline=None)
@given(case=windows_near_a_jump())
def test_a_window_covers_exactly_the_instants_whose_wall_time_is_in_it(
    case: tuple[RecurringWindow, datetime],
) -> None:
    spec, moment = case
    window = IbSchedule((spec,), None).window_at(moment)
    if _wall_clock_covers(spec, moment):
        assert window is not None  # in a repeated hour too: both readings are covered
    elif not _ambiguous(moment, ZoneInfo(spec.time_zone)):
        assert window is None
    if window is not None:
        assert window.start <= moment < window.end
        assert window.start.tzinfo is UTC
        assert window.end.tzinfo is UTC


def _shows_or_jumps(moment: datetime, zone: ZoneInfo, at: time) -> bool:
    """``moment``'s wall time is ``at``, or the clock jumps at ``moment`` over ``at``."""
    if moment.astimezone(zone).time() == at:
        return True
    before = (moment - timedelta(seconds=1)).astimezone(zone)
    return before.utcoffset() != moment.astimezone(zone).utcoffset()


@settings(max_examples=500, deadline=None)
@given(case=windows_near_a_jump())
def test_occurrences_start_and_end_at_their_wall_times_across_dst(
    case: tuple[RecurringWindow, datetime],
) -> None:
    spec, moment = case
    zone = ZoneInfo(spec.time_zone)
    window = IbSchedule((spec,), None).next_window(moment)
    assert window is not None
    assert isinstance(spec.end, time)
    assert _shows_or_jumps(window.start, zone, spec.start)
    assert _shows_or_jumps(window.end, zone, spec.end)
    # the start is the first instant showing its time, the end the last one
    assert window.start.astimezone(zone).fold == 0
    assert not _ambiguous(window.end, zone) or window.end.astimezone(zone).fold == 1
    assert timedelta(0) < window.end - window.start < timedelta(hours=27)


@settings(max_examples=200, deadline=None)
@given(
    moment=instants,
    restart=st.one_of(st.none(), times),
    region=st.sampled_from(Region),
    grace=st.integers(1, 3600),
)
def test_window_at_and_next_window_agree(
    moment: datetime, restart: time | None, region: Region, grace: int
) -> None:
    schedule = IbSchedule.for_region(
        region, gateway_restart=restart, gateway_grace=timedelta(seconds=grace)
    )
    current, upcoming = schedule.window_at(moment), schedule.next_window(moment)
    if current is not None:
        assert current.covers(moment)
        assert current.end > moment
    assert upcoming is not None
    assert upcoming.start > moment
    assert upcoming.start - moment <= timedelta(days=7)
    # nothing starts between now and the next window
    between = schedule.windows_between(moment, upcoming.start)
    assert all(window.start <= moment for window in between)
    assert (current is not None) == any(window.covers(moment) for window in between)
    assert schedule.window_at(upcoming.start) is not None


def _invalidations(low: datetime, high: datetime) -> list[datetime]:
    """Sunday 01:00 US/Eastern, the first time the clock shows it, from ``low`` to ``high``."""
    first, last = low.astimezone(ET).date() - timedelta(days=8), high.astimezone(ET).date()
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [
        datetime.combine(day, time(1), tzinfo=ET).astimezone(UTC)
        for day in days
        if day.weekday() == SUN
    ]


@settings(max_examples=300, deadline=None)
@given(login=instants, after=st.integers(0, 30 * 86400))
def test_relogin_is_due_exactly_when_an_invalidation_passed(login: datetime, after: int) -> None:
    now = login + timedelta(seconds=after)
    expected = any(login < at <= now for at in _invalidations(login, now))
    assert NA.relogin_due(login, now) is expected
    assert NA.relogin_due(login, login) is False
    nxt = NA.next_token_invalidation(login)
    assert nxt is not None
    assert NA.relogin_due(login, nxt)
    assert not NA.relogin_due(login, nxt - timedelta(microseconds=1))


@given(a=instants, b=st.integers(0, 20 * 86400), c=st.integers(0, 20 * 86400))
def test_relogin_due_over_a_span_is_due_over_one_of_its_halves(a: datetime, b: int, c: int) -> None:
    middle, end = a + timedelta(seconds=b), a + timedelta(seconds=b + c)
    assert NA.relogin_due(a, end) == (NA.relogin_due(a, middle) or NA.relogin_due(middle, end))


def test_every_window_of_a_week_is_found_in_order() -> None:
    week = NA.windows_between(utc("2026-03-02"), utc("2026-03-09"))
    starts = [w.start for w in week]
    assert starts == sorted(starts)
    assert [w.start.astimezone(ET).date() for w in week if w.kind is WindowKind.SERVER_RESET] == [
        date(2026, 3, day) for day in (2, 3, 4, 5, 6, 8)
    ]

"""Business calendar arithmetic against due times worked out by hand.

Unless a test sets its own, the calendar is Mon-Fri 08:00-16:00 Europe/Warsaw with
Polish public holidays. Winter time is UTC+1 and summer time UTC+2. In 2026 the clocks
go forward on 29 March and back on 25 October.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maildesk.business_calendar import (
    AROUND_THE_CLOCK,
    BusinessCalendar,
    WorkingInterval,
    parse_dates,
    parse_weekday,
    parse_working_hours,
    validate_calendar,
    validate_working_hours,
)
from maildesk.i18n import current_language, set_language

WARSAW = ZoneInfo("Europe/Warsaw")
OFFICE = BusinessCalendar()
HOUR = timedelta(hours=1)

ALL_WEEK = BusinessCalendar(weekly_hours=((WorkingInterval(time(8), time(16)),),) * 7)
ALL_DAY_EVERY_DAY = BusinessCalendar(
    weekly_hours=((WorkingInterval(time(0), time(0)),),) * 7, holiday_country=None
)


@pytest.fixture(autouse=True)
def english_messages():
    previous = current_language()
    set_language("en")
    yield
    set_language(previous)


def warsaw(year, month, day, hour=0, minute=0, fold=0):
    return datetime(year, month, day, hour, minute, tzinfo=WARSAW, fold=fold)


# Weekends and working hours


def test_add_within_one_day():
    due = OFFICE.add_business_time(warsaw(2026, 2, 2, 9), 2 * HOUR)

    assert due == warsaw(2026, 2, 2, 11)


def test_add_ending_at_closing_time():
    due = OFFICE.add_business_time(warsaw(2026, 2, 6, 14), 2 * HOUR)

    assert due == warsaw(2026, 2, 6, 16)


def test_add_over_weekend():
    due = OFFICE.add_business_time(warsaw(2026, 2, 6, 15), 2 * HOUR)

    assert due == warsaw(2026, 2, 9, 9)


def test_add_from_before_opening():
    due = OFFICE.add_business_time(warsaw(2026, 2, 2, 7), HOUR)

    assert due == warsaw(2026, 2, 2, 9)


def test_add_from_friday_evening():
    due = OFFICE.add_business_time(warsaw(2026, 2, 6, 18, 30), HOUR)

    assert due == warsaw(2026, 2, 9, 9)


def test_add_from_saturday():
    due = OFFICE.add_business_time(warsaw(2026, 2, 7, 12), 30 * timedelta(minutes=1))

    assert due == warsaw(2026, 2, 9, 8, 30)


def test_add_zero_returns_start():
    start = warsaw(2026, 2, 7, 12)

    assert OFFICE.add_business_time(start, timedelta(0)) == start


def test_add_result_is_in_utc():
    due = OFFICE.add_business_time(warsaw(2026, 2, 2, 9), HOUR)

    assert due.tzinfo == UTC
    assert due == datetime(2026, 2, 2, 9, tzinfo=UTC)


def test_add_with_lunch_break():
    calendar = BusinessCalendar(weekly_hours={0: parse_working_hours("08:00-12:00, 13:00-17:00")})

    due = calendar.add_business_time(warsaw(2026, 2, 2, 11), 2 * HOUR)

    assert due == warsaw(2026, 2, 2, 14)


def test_add_many_weeks():
    # 200 h = 25 working days of 8 h: 2 February to 6 March 2026, no holidays between.
    due = OFFICE.add_business_time(warsaw(2026, 2, 2, 8), 200 * HOUR)

    assert due == warsaw(2026, 3, 6, 16)


def test_add_many_weeks_over_dst_and_easter():
    # 25 working days from 16 March 2026, Easter Monday 6 April closed: 20 April 16:00.
    due = OFFICE.add_business_time(warsaw(2026, 3, 16, 8), 200 * HOUR)

    assert due == warsaw(2026, 4, 20, 16)
    assert due == datetime(2026, 4, 20, 14, tzinfo=UTC)


def test_add_a_year_of_business_days():
    # 2026 has 261 weekdays, 8 of them public holidays (1 and 6 January, 6 April,
    # 1 May, 4 June, 11 November, 24 and 25 December): 253 working days.
    due = OFFICE.add_business_time(warsaw(2026, 1, 1), 253 * 8 * HOUR)

    assert due == warsaw(2026, 12, 31, 16)


def test_add_negative_duration_rejected():
    with pytest.raises(ValueError, match="negative"):
        OFFICE.add_business_time(warsaw(2026, 2, 2, 9), -HOUR)


def test_add_naive_start_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        OFFICE.add_business_time(datetime(2026, 2, 2, 9), HOUR)


# Polish public holidays


@pytest.mark.parametrize(
    ("start", "due"),
    [
        pytest.param(warsaw(2026, 11, 10, 15), warsaw(2026, 11, 12, 9), id="11-november"),
        pytest.param(warsaw(2026, 4, 30, 15), warsaw(2026, 5, 4, 9), id="1-may-friday"),
        pytest.param(warsaw(2027, 4, 30, 15), warsaw(2027, 5, 4, 9), id="3-may-2027-monday"),
        pytest.param(warsaw(2025, 12, 31, 15), warsaw(2026, 1, 2, 9), id="1-january-year-end"),
        pytest.param(warsaw(2026, 1, 5, 15), warsaw(2026, 1, 7, 9), id="6-january"),
        pytest.param(warsaw(2026, 12, 23, 15), warsaw(2026, 12, 28, 9), id="24-26-december"),
        pytest.param(warsaw(2026, 12, 31, 15), warsaw(2027, 1, 4, 9), id="year-end-2026"),
        pytest.param(warsaw(2026, 4, 3, 15), warsaw(2026, 4, 7, 9), id="easter-monday-2026"),
        pytest.param(warsaw(2026, 6, 3, 15), warsaw(2026, 6, 5, 9), id="corpus-christi-2026"),
        pytest.param(warsaw(2027, 3, 26, 15), warsaw(2027, 3, 30, 9), id="easter-monday-2027"),
        pytest.param(warsaw(2027, 5, 26, 15), warsaw(2027, 5, 28, 9), id="corpus-christi-2027"),
    ],
)
def test_add_skips_polish_holiday(start, due):
    assert OFFICE.add_business_time(start, 2 * HOUR) == due


def test_add_from_holiday_starts_next_working_day():
    due = OFFICE.add_business_time(warsaw(2026, 11, 11, 10), HOUR)

    assert due == warsaw(2026, 11, 12, 9)


def test_add_over_christmas_eve_2025():
    # 24 December is a public holiday in Poland from 2025.
    due = OFFICE.add_business_time(warsaw(2025, 12, 23, 15), 2 * HOUR)

    assert due == warsaw(2025, 12, 29, 9)


@pytest.mark.parametrize(
    "day",
    [
        pytest.param(date(2026, 4, 5), id="easter-sunday-2026"),
        pytest.param(date(2026, 5, 24), id="pentecost-2026"),
        pytest.param(date(2026, 5, 3), id="3-may-2026-sunday"),
        pytest.param(date(2026, 8, 15), id="assumption-2026-saturday"),
        pytest.param(date(2026, 11, 1), id="all-saints-2026-sunday"),
        pytest.param(date(2027, 3, 28), id="easter-sunday-2027"),
        pytest.param(date(2027, 5, 16), id="pentecost-2027"),
    ],
)
def test_is_open_false_on_weekend_holiday_with_weekend_hours(day):
    assert not ALL_WEEK.is_open(datetime.combine(day, time(10), tzinfo=WARSAW))


def test_is_open_on_ordinary_sunday_with_weekend_hours():
    assert ALL_WEEK.is_open(warsaw(2026, 4, 12, 10))


def test_is_public_holiday_christmas_eve_2026():
    assert OFFICE.is_public_holiday(date(2026, 12, 24))


def test_holiday_country_none_keeps_holidays_open():
    calendar = BusinessCalendar(holiday_country=None)

    assert calendar.is_open(warsaw(2026, 11, 11, 10))


# Configured exceptions


def test_closed_day_is_skipped():
    calendar = BusinessCalendar(closed_days=parse_dates(["2026-11-10"]))

    due = calendar.add_business_time(warsaw(2026, 11, 9, 15), 2 * HOUR)

    assert due == warsaw(2026, 11, 12, 9)


def test_working_saturday_uses_weekday_hours():
    calendar = BusinessCalendar(working_days=parse_dates(["2026-11-14"]))

    due = calendar.add_business_time(warsaw(2026, 11, 13, 15), 2 * HOUR)

    assert due == warsaw(2026, 11, 14, 9)


def test_working_saturday_uses_extra_day_hours():
    calendar = BusinessCalendar(
        working_days=frozenset({date(2026, 11, 14)}),
        extra_day_hours=parse_working_hours("10:00-14:00"),
    )

    due = calendar.add_business_time(warsaw(2026, 11, 13, 15), 2 * HOUR)

    assert due == warsaw(2026, 11, 14, 11)


def test_working_day_overrides_public_holiday():
    calendar = BusinessCalendar(working_days=frozenset({date(2026, 11, 11)}))

    assert calendar.is_open(warsaw(2026, 11, 11, 10))


# Daylight-saving time, business hours


def test_add_over_spring_dst_business_hours():
    due = OFFICE.add_business_time(warsaw(2026, 3, 27, 15), 2 * HOUR)

    assert due == warsaw(2026, 3, 30, 9)
    assert due == datetime(2026, 3, 30, 7, tzinfo=UTC)


def test_add_over_autumn_dst_business_hours():
    due = OFFICE.add_business_time(warsaw(2026, 10, 23, 15), 2 * HOUR)

    assert due == warsaw(2026, 10, 26, 9)
    assert due == datetime(2026, 10, 26, 8, tzinfo=UTC)


def test_between_over_spring_dst_business_hours():
    spent = OFFICE.business_time_between(warsaw(2026, 3, 27, 15), warsaw(2026, 3, 30, 9))

    assert spent == 2 * HOUR


def test_all_day_spring_sunday_has_23_hours():
    spent = ALL_DAY_EVERY_DAY.business_time_between(warsaw(2026, 3, 29), warsaw(2026, 3, 30))

    assert spent == 23 * HOUR


def test_all_day_autumn_sunday_has_25_hours():
    spent = ALL_DAY_EVERY_DAY.business_time_between(warsaw(2026, 10, 25), warsaw(2026, 10, 26))

    assert spent == 25 * HOUR


def test_night_shift_over_spring_dst():
    # 00:00-06:00 on 29 March 2026 is five real hours: 02:00-03:00 does not exist.
    calendar = BusinessCalendar(weekly_hours={6: (WorkingInterval(time(0), time(6)),)})

    spent = calendar.business_time_between(warsaw(2026, 3, 29), warsaw(2026, 3, 29, 12))
    due = calendar.add_business_time(warsaw(2026, 3, 29, 1), 2 * HOUR)

    assert spent == 5 * HOUR
    assert due == warsaw(2026, 3, 29, 4)


def test_hours_ending_in_skipped_hour_end_at_the_jump():
    # 01:00-02:30 on 29 March 2026 ends when the clocks jump from 02:00 to 03:00.
    calendar = BusinessCalendar(weekly_hours={6: parse_working_hours("01:00-02:30, 02:45-05:00")})

    spent = calendar.business_time_between(warsaw(2026, 3, 29), warsaw(2026, 3, 29, 12))
    opening = calendar.next_open(warsaw(2026, 3, 29, 3))

    assert spent == 3 * HOUR
    assert opening == datetime(2026, 3, 29, 1, tzinfo=UTC)


def test_night_shift_over_autumn_dst():
    # 00:00-06:00 on 25 October 2026 is seven real hours: 02:00-03:00 happens twice.
    calendar = BusinessCalendar(weekly_hours={6: (WorkingInterval(time(0), time(6)),)})

    spent = calendar.business_time_between(warsaw(2026, 10, 25), warsaw(2026, 10, 25, 12))
    due = calendar.add_business_time(warsaw(2026, 10, 25, 1, 30), HOUR)

    assert spent == 7 * HOUR
    assert due == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert due.astimezone(WARSAW).utcoffset() == 2 * HOUR


# Daylight-saving time, 24x7


def test_24x7_one_hour_over_spring_dst_is_one_real_hour():
    due = AROUND_THE_CLOCK.add_business_time(warsaw(2026, 3, 29, 1, 30), HOUR)

    assert due == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert due.astimezone(WARSAW).hour == 3


def test_24x7_one_hour_over_autumn_dst_is_one_real_hour():
    due = AROUND_THE_CLOCK.add_business_time(warsaw(2026, 10, 25, 2, 30, fold=0), HOUR)

    assert due == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert due.astimezone(WARSAW).hour == 2
    assert due.astimezone(WARSAW).utcoffset() == HOUR


def test_24x7_between_over_spring_dst():
    spent = AROUND_THE_CLOCK.business_time_between(warsaw(2026, 3, 29, 1), warsaw(2026, 3, 29, 4))

    assert spent == 2 * HOUR


def test_24x7_thirty_days_over_spring_dst():
    due = AROUND_THE_CLOCK.add_business_time(warsaw(2026, 3, 1), timedelta(days=30))

    assert due == warsaw(2026, 3, 31, 1)


def test_24x7_open_on_holiday():
    assert AROUND_THE_CLOCK.is_open(warsaw(2026, 12, 25, 3))


# business_time_between, is_open, next_open


def test_between_over_weekend_and_holiday():
    # Tue 10 Nov 2026 15:00 to Thu 12 Nov 09:00, 11 November closed.
    spent = OFFICE.business_time_between(warsaw(2026, 11, 10, 15), warsaw(2026, 11, 12, 9))

    assert spent == 2 * HOUR


def test_between_many_weeks():
    spent = OFFICE.business_time_between(warsaw(2026, 3, 16, 8), warsaw(2026, 4, 20, 16))

    assert spent == 200 * HOUR


def test_between_swapped_is_negative():
    spent = OFFICE.business_time_between(warsaw(2026, 2, 2, 11), warsaw(2026, 2, 2, 9))

    assert spent == -2 * HOUR


def test_between_in_closed_time_is_zero():
    spent = OFFICE.business_time_between(warsaw(2026, 2, 7, 9), warsaw(2026, 2, 8, 20))

    assert spent == timedelta(0)


def test_between_naive_rejected():
    with pytest.raises(ValueError, match="later must be a timezone-aware"):
        OFFICE.business_time_between(warsaw(2026, 2, 2, 9), datetime(2026, 2, 2, 11))


def test_is_open_includes_opening_time():
    assert OFFICE.is_open(warsaw(2026, 2, 2, 8))


def test_is_open_excludes_closing_time():
    assert not OFFICE.is_open(warsaw(2026, 2, 2, 16))


def test_is_open_naive_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        OFFICE.is_open(datetime(2026, 2, 2, 9))


def test_next_open_when_open_returns_same_instant():
    assert OFFICE.next_open(warsaw(2026, 2, 2, 10, 15)) == warsaw(2026, 2, 2, 10, 15)


def test_next_open_from_closing_time():
    assert OFFICE.next_open(warsaw(2026, 2, 6, 16)) == warsaw(2026, 2, 9, 8)


def test_next_open_over_christmas():
    assert OFFICE.next_open(warsaw(2026, 12, 23, 17)) == warsaw(2026, 12, 28, 8)


def test_next_open_24x7_returns_same_instant():
    assert AROUND_THE_CLOCK.next_open(warsaw(2026, 12, 25, 3)) == warsaw(2026, 12, 25, 3)


# Parsing and validation


def test_parse_working_hours_two_intervals():
    intervals = parse_working_hours("08:00-12:00, 13:00-17:00")

    assert intervals == (
        WorkingInterval(time(8), time(12)),
        WorkingInterval(time(13), time(17)),
    )


def test_parse_working_hours_until_midnight():
    assert parse_working_hours("20:00-24:00") == (WorkingInterval(time(20), time(0)),)


def test_parse_working_hours_closed():
    assert parse_working_hours("closed") == ()


def test_parse_working_hours_invalid():
    with pytest.raises(ValueError) as raised:
        parse_working_hours("8-16")

    assert str(raised.value) == "invalid working hours '8-16': write them as HH:MM-HH:MM"


def test_parse_weekday_short_and_long():
    assert parse_weekday("Mon") == 0
    assert parse_weekday("sunday") == 6


def test_parse_weekday_unknown():
    with pytest.raises(ValueError, match="unknown weekday 'pon'"):
        parse_weekday("pon")


def test_parse_dates_invalid():
    with pytest.raises(ValueError, match="invalid date '2026-13-01': write it as YYYY-MM-DD"):
        parse_dates(["2026-13-01"])


def test_validate_working_hours_reversed():
    problems = validate_working_hours("monday", parse_working_hours("16:00-08:00"))

    assert problems == ["working hours 16:00-08:00 on monday end before they start"]


def test_validate_working_hours_overlap():
    problems = validate_working_hours("friday", parse_working_hours("08:00-12:00, 11:00-15:00"))

    assert problems == ["working hours 08:00-12:00 and 11:00-15:00 on friday overlap"]


def test_validate_calendar_default_is_valid():
    assert validate_calendar(OFFICE) == []


def test_calendar_unknown_time_zone_rejected():
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Warszawa'"):
        BusinessCalendar(timezone="Europe/Warszawa")


def test_calendar_unknown_holiday_country_rejected():
    with pytest.raises(ValueError, match="unknown holiday country 'XX'"):
        BusinessCalendar(holiday_country="XX")


def test_calendar_without_any_hours_rejected():
    with pytest.raises(ValueError, match="no working hours on any weekday"):
        BusinessCalendar(weekly_hours=((),) * 7)


def test_calendar_without_hours_allowed_when_always_open():
    calendar = BusinessCalendar(weekly_hours=((),) * 7, always_open=True)

    assert calendar.is_open(warsaw(2026, 2, 7, 3))


def test_calendar_day_both_closed_and_working_rejected():
    day = date(2026, 11, 14)

    with pytest.raises(ValueError, match="2026-11-14 is listed both as a closed day"):
        BusinessCalendar(closed_days=frozenset({day}), working_days=frozenset({day}))


def test_calendar_is_hashable():
    assert hash(BusinessCalendar()) == hash(BusinessCalendar())


# Properties over random instants, 2025-2028, including both DST changes of each year

NIGHT_SHIFT_SUNDAYS = BusinessCalendar(
    weekly_hours={
        0: parse_working_hours("08:00-12:00, 13:00-16:00"),
        6: parse_working_hours("00:00-06:00, 22:00-24:00"),
    }
)
CALENDARS = [OFFICE, ALL_WEEK, ALL_DAY_EVERY_DAY, NIGHT_SHIFT_SUNDAYS, AROUND_THE_CLOCK]

instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(hours=600))
calendars = st.sampled_from(CALENDARS)
property_settings = settings(max_examples=300, deadline=None)


@property_settings
@given(calendars, instants, durations)
def test_add_then_between_round_trip(calendar, start, duration):
    due = calendar.add_business_time(start, duration)

    assert calendar.business_time_between(start, due) == duration


@property_settings
@given(calendars, instants, durations)
def test_add_returns_earliest_instant(calendar, start, duration):
    due = calendar.add_business_time(start, duration)
    just_before = due - timedelta(microseconds=1)

    assert calendar.business_time_between(start, just_before) < duration


@property_settings
@given(calendars, instants, instants, instants)
def test_between_is_additive(calendar, first, second, third):
    first, second, third = sorted((first, second, third))

    whole = calendar.business_time_between(first, third)
    parts = calendar.business_time_between(first, second)
    parts += calendar.business_time_between(second, third)

    assert whole == parts


@property_settings
@given(calendars, instants)
def test_next_open_is_open_and_nothing_before(calendar, moment):
    opening = calendar.next_open(moment)

    assert calendar.is_open(opening)
    assert calendar.business_time_between(moment, opening) == timedelta(0)

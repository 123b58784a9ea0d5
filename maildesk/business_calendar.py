"""The business calendar that SLA targets count in: working hours, time zone, closed days.

Working hours are wall-clock hours in the calendar's time zone, so 08:00-16:00 stays
08:00-16:00 local time across daylight-saving changes. Durations are real elapsed time:
a working day of 00:00-24:00 lasts 23 hours on the last Sunday of March in Warsaw.
Every instant that goes in must be timezone-aware. Instants come back in UTC, because
Python's ``==`` between zones is always false for a local time in the repeated autumn
hour (PEP 495). Convert with ``calendar.zone`` for display.

The module is named ``business_calendar`` so that it cannot shadow the standard
library's ``calendar`` (which ``imaplib`` imports) when ``maildesk/`` is on sys.path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maildesk import holidaycache
from maildesk.i18n import _

logger = logging.getLogger(__name__)

DEFAULT_TIMEZONE = "Europe/Warsaw"
DEFAULT_HOLIDAY_COUNTRY = "PL"

WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Midnight as an interval end means the end of the day (24:00).
END_OF_DAY = time(0)

_ZERO = timedelta(0)
_ONE_DAY = timedelta(days=1)

# A calendar that passed validation has open time in every week except on closed days,
# so a search that finds none for this many days past them has a bug, not a long wait.
_MAX_CLOSED_RUN_DAYS = 400
# Dates whose open periods a calendar keeps: a year and a half of daily targets.
_PERIOD_CACHE_DAYS = 550


@dataclass(frozen=True, order=True)
class WorkingInterval:
    """One stretch of working hours in a day, in wall-clock time. An ``end`` of 00:00 is 24:00."""

    start: time
    end: time

    def __str__(self) -> str:
        end = "24:00" if self.end == END_OF_DAY else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end}"


def _default_weekly_hours() -> tuple[tuple[WorkingInterval, ...], ...]:
    office = (WorkingInterval(time(8), time(16)),)
    return (office,) * 5 + ((), ())


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours per weekday, public holidays and configured exceptions, in one zone.

    ``weekly_hours`` has seven entries, Monday first. A mapping from weekday number
    (0 is Monday) is accepted and normalised. A date in ``closed_days`` is closed even
    on a working weekday. A date in ``working_days`` is open even on a public holiday
    or a weekend. It gets the hours of its weekday, or ``extra_day_hours`` when that
    weekday has none (default: the hours of the first weekday that has some).
    ``always_open`` (24x7) ignores hours, holidays and closed days.
    ``holiday_country`` is an ISO 3166 code for the ``holidays`` package, or None.
    """

    timezone: str = DEFAULT_TIMEZONE
    weekly_hours: tuple[tuple[WorkingInterval, ...], ...] = field(
        default_factory=_default_weekly_hours
    )
    holiday_country: str | None = DEFAULT_HOLIDAY_COUNTRY
    closed_days: frozenset[date] = frozenset()
    working_days: frozenset[date] = frozenset()
    extra_day_hours: tuple[WorkingInterval, ...] | None = None
    always_open: bool = False
    # The open periods of each local date already asked for: every new ticket's targets
    # start from today, so the same few dates are converted again and again.
    _period_cache: dict[date, tuple[tuple[datetime, datetime], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        weekly = self.weekly_hours
        if isinstance(weekly, Mapping):
            weekly = tuple(weekly.get(day, ()) for day in range(7))
        object.__setattr__(self, "weekly_hours", tuple(tuple(sorted(day)) for day in weekly))
        object.__setattr__(self, "closed_days", frozenset(self.closed_days))
        object.__setattr__(self, "working_days", frozenset(self.working_days))
        if self.extra_day_hours is not None:
            object.__setattr__(self, "extra_day_hours", tuple(sorted(self.extra_day_hours)))

        problems = validate_calendar(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def hours_on(self, day: date) -> tuple[WorkingInterval, ...]:
        """Return the working hours of one local date after holidays and exceptions."""
        if self.always_open:
            return (WorkingInterval(time(0), END_OF_DAY),)
        if day in self.closed_days:
            return ()

        weekday_hours = self.weekly_hours[day.weekday()]
        if day in self.working_days:
            return weekday_hours or self._extra_day_hours()
        if self.is_public_holiday(day):
            return ()
        return weekday_hours

    def is_public_holiday(self, day: date) -> bool:
        if self.holiday_country is None:
            return False
        return day in public_holidays(self.holiday_country, day.year)

    def is_open(self, moment: datetime) -> bool:
        """Tell whether ``moment`` falls in working hours (intervals include their start)."""
        moment = _to_utc(moment, "moment")
        if self.always_open:
            return True

        local_day = moment.astimezone(self.zone).date()
        return any(start <= moment < end for start, end in self._periods(local_day))

    def next_open(self, moment: datetime) -> datetime:
        """Return ``moment`` if the desk is open then, else the start of the next open period."""
        moment = _to_utc(moment, "moment")
        if self.always_open:
            return moment

        for start, end in self._periods_from(moment):
            if end > moment:
                return max(start, moment)
        raise AssertionError("unreachable: _periods_from never ends")

    def add_business_time(self, start: datetime, duration: timedelta) -> datetime:
        """Return the instant at which ``duration`` of open time has passed since ``start``.

        A target that ends exactly at closing time is due at closing time, not at the next
        opening. A zero duration returns ``start`` itself, even outside working hours.
        """
        start = _to_utc(start, "start")
        if duration < _ZERO:
            raise ValueError(f"duration must not be negative, got {duration}")
        if duration == _ZERO:
            return start
        if self.always_open:
            return start + duration

        remaining = duration
        for period_start, period_end in self._periods_from(start):
            if period_end <= start:
                continue

            counted_from = max(period_start, start)
            available = period_end - counted_from
            if remaining <= available:
                return counted_from + remaining
            remaining -= available
        raise AssertionError("unreachable: _periods_from never ends")

    def business_time_between(self, earlier: datetime, later: datetime) -> timedelta:
        """Return the open time from ``earlier`` to ``later``, negative when they are swapped."""
        earlier = _to_utc(earlier, "earlier")
        later = _to_utc(later, "later")
        if later < earlier:
            return -self.business_time_between(later, earlier)
        if self.always_open:
            return later - earlier

        total = _ZERO
        day = earlier.astimezone(self.zone).date()
        last_day = later.astimezone(self.zone).date()
        while day <= last_day:
            for period_start, period_end in self._periods(day):
                overlap = min(period_end, later) - max(period_start, earlier)
                if overlap > _ZERO:
                    total += overlap
            day += _ONE_DAY
        return total

    def _extra_day_hours(self) -> tuple[WorkingInterval, ...]:
        if self.extra_day_hours is not None:
            return self.extra_day_hours
        return next((hours for hours in self.weekly_hours if hours), ())

    def _periods(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """Return the open periods of one local date as UTC instants, in order."""
        cached = self._period_cache.get(day)
        if cached is None:
            if len(self._period_cache) >= _PERIOD_CACHE_DAYS:
                self._period_cache.clear()
            cached = self._period_cache[day] = tuple(self._compute_periods(day))
        return cached

    def _compute_periods(self, day: date) -> list[tuple[datetime, datetime]]:
        periods = []
        for interval in self.hours_on(day):
            start = _wall_clock_to_utc(day, interval.start, self.zone)
            if interval.end == END_OF_DAY:
                end = _wall_clock_to_utc(day + _ONE_DAY, END_OF_DAY, self.zone)
            else:
                end = _wall_clock_to_utc(day, interval.end, self.zone)

            # An interval inside the skipped spring-forward hour can come out empty.
            if end > start:
                periods.append((start, end))
        return periods

    def _periods_from(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Yield open periods day by day from the local date of ``moment``, without end.

        Closed days cost one lookup each, so long targets skip whole days at a time.
        """
        day = moment.astimezone(self.zone).date()
        closed_run = 0
        max_closed_run = _MAX_CLOSED_RUN_DAYS + len(self.closed_days)
        while True:
            periods = self._periods(day)
            if periods:
                closed_run = 0
                yield from periods
            else:
                closed_run += 1
                if closed_run > max_closed_run:
                    raise RuntimeError(
                        f"no working hours in {closed_run} days after {day}: check the calendar"
                    )
            day += _ONE_DAY


def _to_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{name} must be a timezone-aware datetime, got naive {moment.isoformat()}"
        )
    return moment.astimezone(UTC)


def _wall_clock_to_utc(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """Return the instant at which the wall clock of ``zone`` first shows ``clock`` on ``day``.

    A time repeated in autumn means its first occurrence. A time skipped in spring
    (02:30 in Warsaw) means the moment the clocks jump, because from then on they
    show a later time.
    """
    local = datetime.combine(day, clock, tzinfo=zone)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    return _offset_change_between(local.replace(fold=1).astimezone(UTC), instant, zone)


def _offset_change_between(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """Return the first whole second in (before, after] with the UTC offset that ``after`` has."""
    target_offset = after.astimezone(zone).utcoffset()
    low, high = before, after
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) // 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == target_offset:
            high = middle
        else:
            low = middle
    return high


@cache
def public_holidays(country: str, year: int) -> frozenset[date]:
    """Return the public holidays of one country and year, loaded on first use and kept."""
    return holidaycache.public_holidays(country, year)


def parse_weekday(name: str) -> int:
    """Return the weekday number (0 is Monday) of an English name or its first three letters."""
    key = name.strip().lower()
    for number, weekday in enumerate(WEEKDAY_NAMES):
        if key in (weekday, weekday[:3]):
            return number
    raise ValueError(
        _("unknown weekday {name!r}: use monday to sunday or mon to sun").format(name=name)
    )


def parse_working_hours(text: str) -> tuple[WorkingInterval, ...]:
    """Parse ``"08:00-16:00"`` or ``"08:00-12:00, 13:00-17:00"``, where ``24:00`` ends a day.

    An empty string or ``closed`` means no working hours. Raises ValueError whose
    message names the bad part.
    """
    text = text.strip()
    if text.lower() in ("", "closed"):
        return ()

    intervals = []
    for part in text.split(","):
        start_text, separator, end_text = part.strip().partition("-")
        try:
            if not separator:
                raise ValueError(part)
            start = time.fromisoformat(start_text.strip())
            end_text = end_text.strip()
            end = END_OF_DAY if end_text == "24:00" else time.fromisoformat(end_text)
        except ValueError:
            raise ValueError(
                _("invalid working hours {part!r}: write them as HH:MM-HH:MM").format(
                    part=part.strip()
                )
            ) from None
        intervals.append(WorkingInterval(start, end))
    return tuple(intervals)


def validate_working_hours(day_name: str, intervals: Sequence[WorkingInterval]) -> list[str]:
    """Return the problems of one day's working hours: reversed, zoned or overlapping."""
    problems = []
    for interval in intervals:
        if interval.start.tzinfo is not None or interval.end.tzinfo is not None:
            problems.append(
                _(
                    "working hours {interval} on {day} carry a time zone: "
                    "set the calendar's time zone instead"
                ).format(interval=interval, day=day_name)
            )
        elif interval.end != END_OF_DAY and interval.end <= interval.start:
            problems.append(
                _("working hours {interval} on {day} end before they start").format(
                    interval=interval, day=day_name
                )
            )

    ordered = sorted(intervals)
    for previous, current in zip(ordered, ordered[1:], strict=False):
        if previous.end == END_OF_DAY or current.start < previous.end:
            problems.append(
                _("working hours {first} and {second} on {day} overlap").format(
                    first=previous, second=current, day=day_name
                )
            )
    return problems


def validate_calendar(calendar: BusinessCalendar) -> list[str]:
    """Return every problem of a calendar's settings as a plain sentence, [] when valid."""
    problems = []
    try:
        ZoneInfo(calendar.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(
            _("unknown time zone {zone!r}: use an IANA name such as Europe/Warsaw").format(
                zone=calendar.timezone
            )
        )

    if calendar.holiday_country is not None and not _is_known_country(calendar.holiday_country):
        problems.append(
            _("unknown holiday country {country!r}: use an ISO 3166 code such as PL").format(
                country=calendar.holiday_country
            )
        )

    if len(calendar.weekly_hours) != 7:
        problems.append(
            _("working hours need 7 weekdays, got {count}").format(count=len(calendar.weekly_hours))
        )
        return problems

    for name, intervals in zip(WEEKDAY_NAMES, calendar.weekly_hours, strict=True):
        problems.extend(validate_working_hours(name, intervals))
    if calendar.extra_day_hours is not None:
        problems.extend(validate_working_hours("extra_day_hours", calendar.extra_day_hours))

    if not calendar.always_open and not any(calendar.weekly_hours):
        problems.append(_("no working hours on any weekday: add some or set always_open"))

    for day in sorted(calendar.closed_days & calendar.working_days):
        problems.append(
            _("{day} is listed both as a closed day and as a working day").format(day=day)
        )
    return problems


def _is_known_country(country: str) -> bool:
    return country in holidaycache.country_codes()


def parse_dates(values: Iterable[str | date]) -> frozenset[date]:
    """Parse ISO dates (``2026-11-13``) for ``closed_days`` and ``working_days``."""
    days = set()
    for value in values:
        if isinstance(value, date) and not isinstance(value, datetime):
            days.add(value)
            continue
        try:
            days.add(date.fromisoformat(str(value).strip()))
        except ValueError:
            raise ValueError(
                _("invalid date {value!r}: write it as YYYY-MM-DD").format(value=value)
            ) from None
    return frozenset(days)


# Open at every hour, holidays included, so it needs no holiday country.
AROUND_THE_CLOCK = BusinessCalendar(always_open=True, holiday_country=None)

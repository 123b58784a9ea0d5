"""Priority matrix, SLA policies and the SLA clock against due times worked out by hand.

Business hours are Mon-Fri 08:00-16:00 Europe/Warsaw with Polish public holidays. In
November 2026, Monday is the 9th and Wednesday 11 November is a public holiday.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maildesk.business_calendar import AROUND_THE_CLOCK, BusinessCalendar
from maildesk.i18n import current_language, set_language
from maildesk.sla import (
    DEFAULT_PRIORITY_MATRIX,
    ClockState,
    PriorityMatrix,
    SlaClock,
    SlaPolicy,
    SlaPolicySet,
    SlaTarget,
    default_policies,
    validate_policies,
    validate_policy,
    validate_priority_matrix,
)

WARSAW = ZoneInfo("Europe/Warsaw")
OFFICE = BusinessCalendar()
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)

P1 = SlaPolicy(1, 30 * MINUTE, 4 * HOUR, AROUND_THE_CLOCK)
P2 = SlaPolicy(2, HOUR, 8 * HOUR, OFFICE)
P3 = SlaPolicy(3, 4 * HOUR, 16 * HOUR, OFFICE)
P4_LONG = SlaPolicy(4, 8 * HOUR, 200 * HOUR, OFFICE)

FIRST = SlaTarget.FIRST_RESPONSE
RESOLUTION = SlaTarget.RESOLUTION


@pytest.fixture(autouse=True)
def english_messages():
    previous = current_language()
    set_language("en")
    yield
    set_language(previous)


def warsaw(year, month, day, hour=0, minute=0):
    return datetime(year, month, day, hour, minute, tzinfo=WARSAW)


def started_p3():
    return SlaClock(P3).start(warsaw(2026, 11, 9, 10))


# Priority matrix


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [
        ("high", "high", 1),
        ("high", "medium", 2),
        ("medium", "high", 2),
        ("high", "low", 3),
        ("medium", "medium", 3),
        ("low", "high", 3),
        ("medium", "low", 4),
        ("low", "medium", 4),
        ("low", "low", 4),
    ],
)
def test_priority_default_matrix(impact, urgency, priority):
    assert PriorityMatrix().priority(impact, urgency) == priority


def test_priority_custom_matrix():
    cells = {level: dict(row) for level, row in DEFAULT_PRIORITY_MATRIX.items()}
    cells["low"]["high"] = 2

    assert PriorityMatrix(cells).priority("low", "high") == 2


def test_priority_unknown_impact_rejected():
    with pytest.raises(ValueError, match="unknown impact 'critical': use high, medium or low"):
        PriorityMatrix().priority("critical", "high")


def test_priority_unknown_urgency_rejected():
    with pytest.raises(ValueError, match="unknown urgency 'asap': use high, medium or low"):
        PriorityMatrix().priority("high", "asap")


def test_validate_matrix_default_is_valid():
    assert validate_priority_matrix(DEFAULT_PRIORITY_MATRIX) == []


def test_validate_matrix_out_of_range():
    cells = {level: dict(row) for level, row in DEFAULT_PRIORITY_MATRIX.items()}
    cells["high"]["low"] = 5

    problems = validate_priority_matrix(cells)

    assert problems == ["invalid priority 5 for impact=high, urgency=low: use 1 to 4"]


def test_validate_matrix_non_integers():
    cells = {level: dict(row) for level, row in DEFAULT_PRIORITY_MATRIX.items()}
    cells["medium"]["medium"] = "3"
    cells["low"]["low"] = True

    problems = validate_priority_matrix(cells)

    assert problems == [
        "invalid priority '3' for impact=medium, urgency=medium: use 1 to 4",
        "invalid priority True for impact=low, urgency=low: use 1 to 4",
    ]


def test_validate_matrix_missing_cells():
    cells = {
        "high": {"high": 1, "medium": 2, "low": 3},
        "medium": {"high": 2, "low": 4},
    }

    problems = validate_priority_matrix(cells)

    assert problems == [
        "missing priority for impact=medium, urgency=medium",
        "missing priority for impact=low, urgency=high",
        "missing priority for impact=low, urgency=medium",
        "missing priority for impact=low, urgency=low",
    ]


def test_validate_matrix_unknown_names():
    cells = {level: dict(row) for level, row in DEFAULT_PRIORITY_MATRIX.items()}
    cells["critical"] = {"high": 1}
    cells["high"]["urgent"] = 1

    problems = validate_priority_matrix(cells)

    assert problems == [
        "unknown impact 'critical' in the priority matrix: use high, medium or low",
        "unknown urgency 'urgent' for impact=high: use high, medium or low",
    ]


def test_validate_matrix_not_a_mapping():
    problems = validate_priority_matrix([1, 2, 3])

    assert problems == ["the priority matrix must map each impact to urgencies and priorities"]


def test_validate_matrix_row_not_a_mapping():
    cells = {level: dict(row) for level, row in DEFAULT_PRIORITY_MATRIX.items()}
    cells["low"] = 4

    problems = validate_priority_matrix(cells)

    assert problems == ["the priorities for impact=low must map each urgency to a priority"]


def test_priority_matrix_invalid_rejected():
    with pytest.raises(ValueError, match="missing priority for impact=high, urgency=high"):
        PriorityMatrix({"high": {"medium": 2, "low": 3}, "medium": {}, "low": {}})


def test_priority_matrix_copies_cells():
    cells = {level: dict(row) for level, row in DEFAULT_PRIORITY_MATRIX.items()}
    matrix = PriorityMatrix(cells)

    cells["high"]["high"] = 4

    assert matrix.priority("high", "high") == 1


# Policies


def test_policy_default_name():
    policy = SlaPolicy(2, HOUR, 8 * HOUR, group="network", ticket_type="incident")

    assert policy.name == "P2 group=network type=incident"


def test_policy_invalid_values_listed():
    with pytest.raises(ValueError) as raised:
        SlaPolicy(7, 9 * HOUR, timedelta(0), warning_share=1.5)

    problems = str(raised.value).split("; ")

    assert problems == [
        "invalid priority 7 in SLA policy P7: use 1 to 4",
        "the resolution target of SLA policy P7 must be positive, got 0m",
        "the first response target 9h of SLA policy P7 is longer than its "
        "resolution target 0m",
        "invalid warning share 1.5 in SLA policy P7: use a number between 0 and 1, such as 0.75",
    ]


def test_validate_policy_valid():
    assert validate_policy(P3) == []


def test_policy_invalid_rejected():
    with pytest.raises(ValueError, match="the first response target of SLA policy P2 must be"):
        SlaPolicy(2, timedelta(0), 8 * HOUR)


def test_validate_policies_duplicate_and_missing():
    policies = [P1, P2, P3, SlaPolicy(3, 2 * HOUR, 16 * HOUR)]

    problems = validate_policies(policies)

    assert problems == [
        "more than one SLA policy for P3: keep one",
        "missing SLA policy for priority 4 without group or type",
    ]


def test_policy_set_invalid_rejected():
    with pytest.raises(ValueError, match="missing SLA policy for priority 4"):
        SlaPolicySet((P1, P2, P3))


def test_select_most_specific_policy():
    network = SlaPolicy(3, 2 * HOUR, 8 * HOUR, group="network")
    requests = SlaPolicy(3, 8 * HOUR, 40 * HOUR, ticket_type="request")
    network_requests = SlaPolicy(3, 4 * HOUR, 24 * HOUR, group="network", ticket_type="request")
    policies = SlaPolicySet((P1, P2, P3, P4_LONG, network, requests, network_requests))

    assert policies.select(3) is P3
    assert policies.select(3, group="desktop") is P3
    assert policies.select(3, group="network") is network
    assert policies.select(3, ticket_type="request") is requests
    assert policies.select(3, group="network", ticket_type="incident") is network
    assert policies.select(3, group="network", ticket_type="request") is network_requests
    assert policies.select(1, group="network") is P1


def test_default_policies_p1_around_the_clock():
    policies = default_policies()

    assert policies.select(1).calendar.always_open
    assert not policies.select(2).calendar.always_open


# Clock: due times and warnings


def test_clock_not_started_has_no_due_times():
    clock = SlaClock(P3)

    assert clock.first_response_due is None
    assert clock.resolution_due is None
    assert not clock.is_breached(warsaw(2030, 1, 1))


def test_clock_due_times_over_holiday():
    clock = started_p3()

    assert clock.first_response_due == warsaw(2026, 11, 9, 14)
    assert clock.resolution_due == warsaw(2026, 11, 12, 10)


def test_clock_warning_times():
    clock = started_p3()

    assert clock.warning_at(FIRST) == warsaw(2026, 11, 9, 13)
    assert clock.warning_at(RESOLUTION) == warsaw(2026, 11, 10, 14)
    assert clock.warning_at(RESOLUTION, share=0.5) == warsaw(2026, 11, 10, 10)


def test_clock_start_on_saturday():
    clock = SlaClock(P3).start(warsaw(2026, 11, 7, 10))

    assert clock.first_response_due == warsaw(2026, 11, 9, 12)


def test_clock_start_on_holiday():
    clock = SlaClock(P3).start(warsaw(2026, 11, 11, 10))

    assert clock.first_response_due == warsaw(2026, 11, 12, 12)
    assert clock.resolution_due == warsaw(2026, 11, 13, 16)


def test_clock_target_of_many_weeks():
    clock = SlaClock(P4_LONG).start(warsaw(2026, 3, 16, 8))

    assert clock.resolution_due == datetime(2026, 4, 20, 14, tzinfo=UTC)


def test_clock_p1_over_spring_dst():
    clock = SlaClock(P1).start(warsaw(2026, 3, 29, 1, 30))

    assert clock.first_response_due == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert clock.resolution_due == datetime(2026, 3, 29, 4, 30, tzinfo=UTC)


def test_clock_p2_over_autumn_dst():
    clock = SlaClock(P2).start(warsaw(2026, 10, 23, 15))

    assert clock.first_response_due == warsaw(2026, 10, 23, 16)
    assert clock.resolution_due == datetime(2026, 10, 26, 14, tzinfo=UTC)


# Clock: breaches


def test_clock_breach_is_strictly_after_due():
    clock = started_p3()

    assert not clock.is_breached(warsaw(2026, 11, 9, 14), FIRST)
    assert clock.is_breached(warsaw(2026, 11, 9, 14, 1), FIRST)
    assert not clock.is_breached(warsaw(2026, 11, 9, 14, 1), RESOLUTION)
    assert clock.is_breached(warsaw(2026, 11, 9, 14, 1))


def test_clock_response_in_time_is_never_breached():
    clock = started_p3().respond(warsaw(2026, 11, 9, 11))

    assert not clock.is_breached(warsaw(2026, 11, 20, 9), FIRST)
    assert clock.warning_at(FIRST) is None
    assert clock.first_response_due == warsaw(2026, 11, 9, 14)


def test_clock_late_response_stays_breached():
    clock = started_p3().respond(warsaw(2026, 11, 9, 15))

    assert not clock.is_breached(warsaw(2026, 11, 9, 13), FIRST)
    assert clock.is_breached(warsaw(2026, 11, 9, 15), FIRST)
    assert clock.is_breached(warsaw(2026, 11, 20, 9), FIRST)


def test_clock_second_response_changes_nothing():
    clock = started_p3().respond(warsaw(2026, 11, 9, 11))

    assert clock.respond(warsaw(2026, 11, 9, 12)) is clock


# Clock: pause and resume


def test_clock_paused_has_no_due_times():
    clock = started_p3().pause(warsaw(2026, 11, 9, 12))

    assert clock.state is ClockState.PAUSED
    assert clock.first_response_due is None
    assert clock.resolution_due is None
    assert clock.warning_at(RESOLUTION) is None
    assert not clock.is_breached(warsaw(2026, 12, 31, 12))


def test_clock_resume_moves_due_times_out():
    # Paused Mon 12:00 to Tue 10:00: 4 h on Monday and 2 h on Tuesday are left out.
    clock = started_p3().pause(warsaw(2026, 11, 9, 12)).resume(warsaw(2026, 11, 10, 10))

    assert clock.first_response_due == warsaw(2026, 11, 10, 12)
    assert clock.resolution_due == warsaw(2026, 11, 12, 16)
    assert clock.excluded == 6 * HOUR
    assert clock.elapsed(warsaw(2026, 11, 10, 11)) == 3 * HOUR


def test_clock_pause_in_closed_time_changes_nothing():
    clock = started_p3().pause(warsaw(2026, 11, 9, 17)).resume(warsaw(2026, 11, 10, 7))

    assert clock.resolution_due == warsaw(2026, 11, 12, 10)
    assert clock.excluded == timedelta(0)


def test_clock_pause_after_breach_stays_breached():
    clock = started_p3().pause(warsaw(2026, 11, 9, 15))

    assert clock.first_response_due == warsaw(2026, 11, 9, 14)
    assert clock.is_breached(warsaw(2026, 11, 9, 15, 30), FIRST)
    assert clock.resolution_due is None


def test_clock_pause_over_year_end():
    # Started Wed 23 Dec 2026 15:00; 2 h counted before the pause on Mon 28 Dec 09:00.
    # Left out until Mon 4 Jan 2027 09:00: 7 + 8 + 8 + 8 + 1 = 32 h (1 January closed).
    clock = (
        SlaClock(P3)
        .start(warsaw(2026, 12, 23, 15))
        .pause(warsaw(2026, 12, 28, 9))
        .resume(warsaw(2027, 1, 4, 9))
    )

    assert clock.first_response_due == warsaw(2027, 1, 4, 11)
    assert clock.resolution_due == warsaw(2027, 1, 5, 15)
    assert clock.excluded == 32 * HOUR


def test_clock_due_before_pause_over_christmas():
    clock = SlaClock(P3).start(warsaw(2026, 12, 23, 15))

    assert clock.first_response_due == warsaw(2026, 12, 28, 11)
    assert clock.resolution_due == warsaw(2026, 12, 29, 15)


def test_clock_week_long_pause_in_long_target():
    # 200 h from Mon 16 March 2026 with the week of 23 March paused: Mon 27 April 16:00.
    clock = (
        SlaClock(P4_LONG)
        .start(warsaw(2026, 3, 16, 8))
        .pause(warsaw(2026, 3, 23, 8))
        .resume(warsaw(2026, 3, 30, 8))
    )

    assert clock.resolution_due == warsaw(2026, 4, 27, 16)
    assert clock.excluded == 40 * HOUR


# Clock: priority change


def test_clock_replan_to_p2_counts_from_start():
    clock = started_p3().replan(P2, warsaw(2026, 11, 9, 11))

    assert clock.policy is P2
    assert clock.first_response_due == warsaw(2026, 11, 9, 11)
    assert clock.resolution_due == warsaw(2026, 11, 10, 10)


def test_clock_replan_to_p1_can_breach_at_once():
    clock = started_p3().replan(P1, warsaw(2026, 11, 9, 11))

    assert clock.first_response_due == warsaw(2026, 11, 9, 10, 30)
    assert clock.resolution_due == warsaw(2026, 11, 9, 14)
    assert clock.is_breached(warsaw(2026, 11, 9, 11), FIRST)


def test_clock_replan_keeps_pause_excluded_in_new_calendar():
    # The pause from Mon 12:00 to Tue 10:00 is 22 h around the clock.
    paused = started_p3().pause(warsaw(2026, 11, 9, 12)).resume(warsaw(2026, 11, 10, 10))

    to_p1 = paused.replan(P1, warsaw(2026, 11, 10, 11))
    to_p2 = paused.replan(P2, warsaw(2026, 11, 10, 11))

    assert to_p1.resolution_due == warsaw(2026, 11, 10, 12)
    assert to_p1.excluded == 22 * HOUR
    assert to_p2.first_response_due == warsaw(2026, 11, 9, 11)
    assert to_p2.resolution_due == warsaw(2026, 11, 10, 16)


def test_clock_replan_while_paused():
    clock = started_p3().pause(warsaw(2026, 11, 9, 12)).replan(P2, warsaw(2026, 11, 9, 13))

    assert clock.state is ClockState.PAUSED
    assert clock.first_response_due == warsaw(2026, 11, 9, 11)
    assert clock.resolution_due is None


# Clock: resolve and reopen


def test_clock_resolve_stops_both_targets():
    clock = started_p3().resolve(warsaw(2026, 11, 9, 12))

    assert clock.responded_at == warsaw(2026, 11, 9, 12)
    assert clock.resolution_due == warsaw(2026, 11, 12, 10)
    assert not clock.is_breached(warsaw(2026, 12, 31, 12))


def test_clock_reopen_leaves_resolved_time_out():
    clock = started_p3().resolve(warsaw(2026, 11, 9, 12)).reopen(warsaw(2026, 11, 10, 10))

    assert clock.state is ClockState.RUNNING
    assert clock.resolved_at is None
    assert clock.resolution_due == warsaw(2026, 11, 12, 16)


def test_clock_resolve_while_paused():
    clock = started_p3().pause(warsaw(2026, 11, 9, 12)).resolve(warsaw(2026, 11, 10, 10))
    reopened = clock.reopen(warsaw(2026, 11, 10, 12))

    assert clock.stopped_since == warsaw(2026, 11, 9, 12)
    assert reopened.resolution_due == warsaw(2026, 11, 13, 10)


def test_clock_resolved_while_paused_not_breached():
    # Paused Mon 9 Nov 12:00 with 2 h counted, resolved a week later without resuming.
    clock = started_p3().pause(warsaw(2026, 11, 9, 12)).resolve(warsaw(2026, 11, 16, 12))

    assert clock.resolution_due == warsaw(2026, 11, 12, 10)
    assert not clock.is_breached(warsaw(2026, 11, 20, 12), RESOLUTION)
    assert not clock.is_breached(warsaw(2026, 11, 20, 12), FIRST)


def test_clock_resolved_while_paused_after_breach():
    clock = started_p3().pause(warsaw(2026, 11, 9, 15)).resolve(warsaw(2026, 11, 16, 12))

    assert clock.is_breached(warsaw(2026, 11, 20, 12), FIRST)
    assert not clock.is_breached(warsaw(2026, 11, 20, 12), RESOLUTION)


def test_clock_respond_while_paused():
    clock = (
        started_p3()
        .pause(warsaw(2026, 11, 9, 12))
        .respond(warsaw(2026, 11, 9, 13))
        .resume(warsaw(2026, 11, 10, 10))
    )

    assert clock.first_response_due == warsaw(2026, 11, 10, 12)
    assert not clock.is_breached(warsaw(2026, 11, 10, 15), FIRST)


# Clock: audit trail and storage


def test_clock_history_records_each_transition():
    clock = (
        started_p3()
        .pause(warsaw(2026, 11, 9, 12))
        .resume(warsaw(2026, 11, 10, 10))
        .replan(P2, warsaw(2026, 11, 10, 11))
    )

    kinds = [transition.kind for transition in clock.history]
    replan = clock.history[-1]

    assert kinds == ["start", "pause", "resume", "replan"]
    assert clock.history[1].resolution_due is None
    assert clock.history[2].resolution_due == warsaw(2026, 11, 12, 16)
    assert replan.previous_policy == "P3"
    assert replan.policy == "P2"
    assert replan.resolution_due == warsaw(2026, 11, 10, 16)
    assert clock.last_transition is replan


def test_transition_as_dict():
    transition = started_p3().history[0]

    assert transition.as_dict() == {
        "kind": "start",
        "at": "2026-11-09T10:00:00+01:00",
        "policy": "P3",
        "priority": 3,
        "first_response_due": "2026-11-09T13:00:00+00:00",
        "resolution_due": "2026-11-12T09:00:00+00:00",
        "excluded_seconds": 0,
        "previous_policy": None,
    }


def test_clock_state_round_trip():
    clock = (
        started_p3()
        .respond(warsaw(2026, 11, 9, 11))
        .pause(warsaw(2026, 11, 9, 12))
        .resume(warsaw(2026, 11, 10, 10))
        .pause(warsaw(2026, 11, 10, 11))
    )

    restored = SlaClock.from_state(P3, clock.to_state())

    assert restored.to_state() == clock.to_state()
    assert restored.state is ClockState.PAUSED
    assert restored.responded_at == warsaw(2026, 11, 9, 11)
    assert restored.history == ()
    assert restored.resume(warsaw(2026, 11, 10, 12)).resolution_due == warsaw(2026, 11, 13, 9)


# Clock: invalid transitions


def test_clock_pause_before_start_rejected():
    with pytest.raises(ValueError, match="cannot pause an SLA clock that is not_started"):
        SlaClock(P3).pause(warsaw(2026, 11, 9, 10))


def test_clock_resume_while_running_rejected():
    with pytest.raises(ValueError, match="cannot resume an SLA clock that is running"):
        started_p3().resume(warsaw(2026, 11, 9, 11))


def test_clock_start_twice_rejected():
    with pytest.raises(ValueError, match="cannot start an SLA clock that is running"):
        started_p3().start(warsaw(2026, 11, 9, 11))


def test_clock_transition_back_in_time_rejected():
    with pytest.raises(ValueError, match="before the last SLA transition"):
        started_p3().pause(warsaw(2026, 11, 9, 9))


def test_restored_clock_rejects_earlier_transition():
    clock = started_p3().pause(warsaw(2026, 11, 9, 12))
    restored = SlaClock.from_state(P3, clock.to_state())

    with pytest.raises(ValueError, match="before the last SLA transition"):
        restored.resume(warsaw(2026, 11, 9, 11))


def test_clock_naive_time_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        started_p3().is_breached(datetime(2026, 11, 9, 12))


def test_clock_transitions_do_not_mutate():
    clock = started_p3()

    clock.pause(warsaw(2026, 11, 9, 12))

    assert clock.state is ClockState.RUNNING
    assert len(clock.history) == 1


# Clock: properties over random pauses


# The pause starts at a share of the time up to the resolution due time. Drawing offsets
# of days and discarding those past a one-hour P1 due time made the test flaky.
pause_shares = st.floats(min_value=0, max_value=1, exclude_max=True)
pause_lengths = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20))
policies = st.sampled_from([P1, P2, P3, P4_LONG])


@settings(max_examples=200, deadline=None)
@given(policies, pause_shares, pause_lengths)
def test_resume_moves_due_by_paused_open_time(policy, pause_share, pause_length):
    calendar = policy.calendar
    start = warsaw(2026, 3, 20, 9)
    running = SlaClock(policy).start(start)
    due_before = running.resolution_due
    # Rounding to microseconds may carry a share just below 1 onto the due time itself.
    pause_at = min(start + (due_before - start) * pause_share,
                   due_before - timedelta(microseconds=1))
    resume_at = pause_at + pause_length

    resumed = running.pause(pause_at).resume(resume_at)
    paused_open_time = calendar.business_time_between(pause_at, resume_at)

    assert resumed.resolution_due == calendar.add_business_time(due_before, paused_open_time)
    assert resumed.excluded == paused_open_time

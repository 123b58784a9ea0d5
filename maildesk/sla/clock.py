"""The SLA clock of one ticket: start, pause, resume, re-plan and the due times that follow.

Each transition returns a new clock and appends an ``SlaTransition`` to its history, so
the caller can store that entry as an audit event. A breach is then explained by the
sequence of transitions and the due times each one produced.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from maildesk.sla.policy import SlaPolicy, SlaTarget

logger = logging.getLogger(__name__)


class ClockState(StrEnum):
    """Whether an SLA clock counts: not yet, now, paused for the user, or stopped by resolution."""

    NOT_STARTED = "not_started"
    RUNNING = "running"
    PAUSED = "paused"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class SlaTransition:
    """One change of an SLA clock and the due times that followed from it, for the audit trail.

    ``kind`` is the name of the ``SlaClock`` method: start, pause, resume, respond,
    resolve, reopen or replan. ``excluded`` is the open time left out of the count so
    far (finished pauses, and time between resolution and reopening), measured in the
    policy's calendar.
    """

    kind: str
    at: datetime
    policy: str
    priority: int
    first_response_due: datetime | None
    resolution_due: datetime | None
    excluded: timedelta
    previous_policy: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the transition as JSON-ready values: ISO 8601 instants, seconds."""
        return {
            "kind": self.kind,
            "at": self.at.isoformat(),
            "policy": self.policy,
            "priority": self.priority,
            "first_response_due": _iso(self.first_response_due),
            "resolution_due": _iso(self.resolution_due),
            "excluded_seconds": int(self.excluded.total_seconds()),
            "previous_policy": self.previous_policy,
        }


@dataclass(frozen=True)
class SlaClock:
    """The SLA clock of one ticket; every transition returns a new clock.

    ``stopped_spans`` are the finished stretches in which the clock stood still (waiting
    for the user, or resolved until reopened), and ``stopped_since`` starts the current
    one. Due times count from ``started_at`` in ``policy.calendar`` and leave those
    stretches out, so a new policy re-plans from the original start.
    """

    policy: SlaPolicy
    state: ClockState = ClockState.NOT_STARTED
    started_at: datetime | None = None
    stopped_since: datetime | None = None
    stopped_spans: tuple[tuple[datetime, datetime], ...] = ()
    responded_at: datetime | None = None
    resolved_at: datetime | None = None
    history: tuple[SlaTransition, ...] = ()

    # Transitions

    def start(self, at: datetime) -> SlaClock:
        """Start counting, normally when the ticket is created."""
        self._check_transition("start", at, (ClockState.NOT_STARTED,))
        return self._record("start", at, state=ClockState.RUNNING, started_at=at)

    def pause(self, at: datetime) -> SlaClock:
        """Stop the clock while the ticket waits for the user."""
        self._check_transition("pause", at, (ClockState.RUNNING,))
        return self._record("pause", at, state=ClockState.PAUSED, stopped_since=at)

    def resume(self, at: datetime) -> SlaClock:
        """Restart the clock; due times move out by the open time spent paused."""
        self._check_transition("resume", at, (ClockState.PAUSED,))
        return self._record("resume", at, **self._restart_fields(at))

    def respond(self, at: datetime) -> SlaClock:
        """Record the first response to the requester; later responses change nothing."""
        self._check_transition("respond", at, (ClockState.RUNNING, ClockState.PAUSED))
        if self.responded_at is not None:
            return self
        return self._record("respond", at, responded_at=at)

    def resolve(self, at: datetime) -> SlaClock:
        """Stop both targets; the resolution notice also counts as a first response."""
        self._check_transition("resolve", at, (ClockState.RUNNING, ClockState.PAUSED))
        return self._record(
            "resolve",
            at,
            state=ClockState.RESOLVED,
            stopped_since=self.stopped_since or at,
            responded_at=self.responded_at or at,
            resolved_at=at,
        )

    def reopen(self, at: datetime) -> SlaClock:
        """Restart a resolved clock, leaving the time spent resolved out of the count."""
        self._check_transition("reopen", at, (ClockState.RESOLVED,))
        return self._record("reopen", at, resolved_at=None, **self._restart_fields(at))

    def replan(self, new_policy: SlaPolicy, at: datetime) -> SlaClock:
        """Switch to another policy (a new priority); due times count from the original start."""
        allowed = (ClockState.RUNNING, ClockState.PAUSED, ClockState.RESOLVED)
        self._check_transition("replan", at, allowed)
        return self._record("replan", at, previous_policy=self.policy.name, policy=new_policy)

    # Due times and breaches

    @property
    def first_response_due(self) -> datetime | None:
        """Return when the first response is due; None before start or while paused early."""
        return self.due(SlaTarget.FIRST_RESPONSE)

    @property
    def resolution_due(self) -> datetime | None:
        """Return when resolution is due; None before start or while paused early."""
        return self.due(SlaTarget.RESOLUTION)

    def due(self, target: SlaTarget) -> datetime | None:
        """Return the instant at which ``target`` is used up, in UTC.

        While paused it is None unless the target ran out before the pause began,
        because the end of the pause is not known. A resolved clock returns the due
        time it would have had if counting had gone on where it stopped.
        """
        return self._instant_after(self.policy.target(target))

    def warning_at(self, target: SlaTarget, share: float | None = None) -> datetime | None:
        """Return when ``share`` (default: the policy's) of ``target`` is used up.

        None when the target is already met or the clock is not running towards it.
        """
        if self._met_at(target) is not None:
            return None
        share = self.policy.warning_share if share is None else share
        if not 0 < share <= 1:
            raise ValueError(f"warning share must be in (0, 1], got {share!r}")
        return self._instant_after(self.policy.target(target) * share)

    def is_breached(self, at: datetime, target: SlaTarget | None = None) -> bool:
        """Tell whether ``target`` (default: either) was missed as seen at ``at``."""
        _require_aware(at)
        targets = (target,) if target is not None else tuple(SlaTarget)
        return any(self._is_target_breached(at, one) for one in targets)

    def elapsed(self, at: datetime) -> timedelta:
        """Return the open time counted against the targets from the start until ``at``."""
        _require_aware(at)
        if self.started_at is None or at <= self.started_at:
            return timedelta(0)
        calendar = self.policy.calendar

        counted = calendar.business_time_between(self.started_at, at)
        for span_start, span_end in self._spans(include_open=True):
            if span_start >= at:
                break
            counted -= calendar.business_time_between(span_start, min(span_end or at, at))
        return counted

    @property
    def excluded(self) -> timedelta:
        """Return the open time in finished stops, in the policy's calendar."""
        calendar = self.policy.calendar
        return sum(
            (calendar.business_time_between(start, end) for start, end in self.stopped_spans),
            timedelta(0),
        )

    @property
    def last_transition(self) -> SlaTransition | None:
        return self.history[-1] if self.history else None

    # Storage

    def to_state(self) -> dict[str, Any]:
        """Return the clock without policy and history as JSON-ready values (ISO 8601)."""
        return {
            "state": self.state.value,
            "started_at": _iso(self.started_at),
            "stopped_since": _iso(self.stopped_since),
            "stopped_spans": [
                [start.isoformat(), end.isoformat()] for start, end in self.stopped_spans
            ],
            "responded_at": _iso(self.responded_at),
            "resolved_at": _iso(self.resolved_at),
        }

    @classmethod
    def from_state(cls, policy: SlaPolicy, state: Mapping[str, Any]) -> SlaClock:
        """Rebuild a clock stored by ``to_state`` under the policy that applies now."""
        return cls(
            policy=policy,
            state=ClockState(state["state"]),
            started_at=_parse_instant(state.get("started_at")),
            stopped_since=_parse_instant(state.get("stopped_since")),
            stopped_spans=tuple(
                (datetime.fromisoformat(start), datetime.fromisoformat(end))
                for start, end in state.get("stopped_spans", ())
            ),
            responded_at=_parse_instant(state.get("responded_at")),
            resolved_at=_parse_instant(state.get("resolved_at")),
        )

    # Helpers

    def _check_transition(self, kind: str, at: datetime, allowed: tuple[ClockState, ...]) -> None:
        _require_aware(at)
        if self.state not in allowed:
            raise ValueError(f"cannot {kind} an SLA clock that is {self.state.value}")
        last_change_at = self._last_change_at()
        if last_change_at is not None and at < last_change_at:
            raise ValueError(
                f"cannot {kind} at {at.isoformat()}: before the last SLA transition "
                f"at {last_change_at.isoformat()}"
            )

    def _restart_fields(self, at: datetime) -> dict[str, Any]:
        assert self.stopped_since is not None
        return {
            "state": ClockState.RUNNING,
            "stopped_since": None,
            "stopped_spans": (*self.stopped_spans, (self.stopped_since, at)),
        }

    def _record(
        self, kind: str, at: datetime, previous_policy: str | None = None, **changes: Any
    ) -> SlaClock:
        clock = replace(self, **changes)
        transition = SlaTransition(
            kind=kind,
            at=at,
            policy=clock.policy.name,
            priority=clock.policy.priority,
            first_response_due=clock.first_response_due,
            resolution_due=clock.resolution_due,
            excluded=clock.excluded,
            previous_policy=previous_policy,
        )
        logger.debug("SLA clock %s at %s under %s", kind, at.isoformat(), clock.policy.name)
        return replace(clock, history=(*clock.history, transition))

    def _spans(self, include_open: bool) -> list[tuple[datetime, datetime | None]]:
        spans: list[tuple[datetime, datetime | None]] = list(self.stopped_spans)
        if include_open and self.stopped_since is not None:
            spans.append((self.stopped_since, None))
        return spans

    def _instant_after(self, duration: timedelta) -> datetime | None:
        """Return when ``duration`` of counted time has passed since the start, skipping stops.

        The open stop of a paused clock ends the walk with None unless the duration runs
        out before it. The open stop of a resolved clock is ignored, as if counting went on.
        """
        if self.started_at is None:
            return None
        calendar = self.policy.calendar

        remaining = duration
        cursor = self.started_at
        for span_start, span_end in self._spans(include_open=self.state is ClockState.PAUSED):
            reached = calendar.add_business_time(cursor, remaining)
            if reached <= span_start:
                return reached

            remaining -= calendar.business_time_between(cursor, span_start)
            if span_end is None:
                return None
            cursor = span_end
        return calendar.add_business_time(cursor, remaining)

    def _met_at(self, target: SlaTarget) -> datetime | None:
        return self.responded_at if target is SlaTarget.FIRST_RESPONSE else self.resolved_at

    def _is_target_breached(self, at: datetime, target: SlaTarget) -> bool:
        due = self.due(target)
        if due is None:
            return False

        # A ticket resolved while paused stopped counting when the pause began.
        measured_at = at
        met_at = self._met_at(target)
        if met_at is not None:
            measured_at = min(measured_at, met_at)
        if self.state is ClockState.RESOLVED and self.stopped_since is not None:
            measured_at = min(measured_at, self.stopped_since)
        return measured_at > due

    def _last_change_at(self) -> datetime | None:
        """Return the latest instant the clock recorded, from history or stored state."""
        instants = [self.started_at, self.stopped_since, self.responded_at, self.resolved_at]
        if self.stopped_spans:
            instants.append(self.stopped_spans[-1][1])
        if self.history:
            instants.append(self.history[-1].at)
        known = [instant for instant in instants if instant is not None]
        return max(known) if known else None


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"SLA times must be timezone-aware, got naive {moment.isoformat()}")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _parse_instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)

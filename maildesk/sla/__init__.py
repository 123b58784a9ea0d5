"""ITIL priority, SLA policies and the SLA clock of one ticket, as pure values.

The config loader builds ``PriorityMatrix`` and ``SlaPolicy`` values and reports the
problems that the ``validate_*`` functions return. The ticket code keeps an ``SlaClock``
per ticket, stores ``to_state()`` with the ticket and each new ``history`` entry as an
audit event. Time is counted in the policy's ``BusinessCalendar``.
"""

from maildesk.sla.clock import ClockState, SlaClock, SlaTransition
from maildesk.sla.policy import (
    DEFAULT_WARNING_SHARE,
    SlaPolicy,
    SlaPolicySet,
    SlaTarget,
    default_policies,
    validate_policies,
    validate_policy,
)
from maildesk.sla.priority import (
    DEFAULT_PRIORITY_MATRIX,
    LEVELS,
    PRIORITIES,
    PriorityMatrix,
    validate_priority_matrix,
)

__all__ = [
    "DEFAULT_PRIORITY_MATRIX",
    "DEFAULT_WARNING_SHARE",
    "LEVELS",
    "PRIORITIES",
    "ClockState",
    "PriorityMatrix",
    "SlaClock",
    "SlaPolicy",
    "SlaPolicySet",
    "SlaTarget",
    "SlaTransition",
    "default_policies",
    "validate_policies",
    "validate_policy",
    "validate_priority_matrix",
]

"""The ITIL priority matrix: impact x urgency -> priority 1 (critical) to 4 (low)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from maildesk.i18n import _

LEVELS = ("high", "medium", "low")
PRIORITIES = (1, 2, 3, 4)

DEFAULT_PRIORITY_MATRIX: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "high": MappingProxyType({"high": 1, "medium": 2, "low": 3}),
        "medium": MappingProxyType({"high": 2, "medium": 3, "low": 4}),
        "low": MappingProxyType({"high": 3, "medium": 4, "low": 4}),
    }
)


def validate_priority_matrix(matrix: object) -> list[str]:
    """Return the problems of a matrix given as impact -> urgency -> priority, [] if none.

    Every one of the nine cells must be present and hold an integer from 1 to 4.
    """
    if not isinstance(matrix, Mapping):
        return [_("the priority matrix must map each impact to urgencies and priorities")]

    problems = []
    for impact in matrix:
        if impact not in LEVELS:
            problems.append(
                _(
                    "unknown impact {impact!r} in the priority matrix: use high, medium or low"
                ).format(impact=impact)
            )

    for impact in LEVELS:
        row = matrix.get(impact)
        if row is None:
            problems.extend(_missing_cell(impact, urgency) for urgency in LEVELS)
            continue
        if not isinstance(row, Mapping):
            problems.append(
                _("the priorities for impact={impact} must map each urgency to a priority").format(
                    impact=impact
                )
            )
            continue

        for urgency in row:
            if urgency not in LEVELS:
                problems.append(
                    _(
                        "unknown urgency {urgency!r} for impact={impact}: use high, medium or low"
                    ).format(urgency=urgency, impact=impact)
                )
        for urgency in LEVELS:
            if urgency not in row:
                problems.append(_missing_cell(impact, urgency))
            elif not is_priority(row[urgency]):
                problems.append(
                    _(
                        "invalid priority {value!r} for impact={impact}, urgency={urgency}: "
                        "use 1 to 4"
                    ).format(value=row[urgency], impact=impact, urgency=urgency)
                )
    return problems


def _missing_cell(impact: str, urgency: str) -> str:
    return _("missing priority for impact={impact}, urgency={urgency}").format(
        impact=impact, urgency=urgency
    )


def is_priority(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in PRIORITIES


@dataclass(frozen=True)
class PriorityMatrix:
    """The ITIL impact x urgency table; ``cells`` maps impact to urgency to priority 1-4."""

    cells: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: DEFAULT_PRIORITY_MATRIX)

    def __post_init__(self) -> None:
        problems = validate_priority_matrix(self.cells)
        if problems:
            raise ValueError("; ".join(problems))

        # A read-only copy, so that changing the configuration dict later changes nothing.
        frozen = {impact: MappingProxyType(dict(row)) for impact, row in self.cells.items()}
        object.__setattr__(self, "cells", MappingProxyType(frozen))

    def priority(self, impact: str, urgency: str) -> int:
        """Return the priority for an impact and urgency, each ``high``, ``medium`` or ``low``."""
        if impact not in LEVELS:
            raise ValueError(
                _("unknown impact {impact!r}: use high, medium or low").format(impact=impact)
            )
        if urgency not in LEVELS:
            raise ValueError(
                _("unknown urgency {urgency!r}: use high, medium or low").format(urgency=urgency)
            )
        return self.cells[impact][urgency]

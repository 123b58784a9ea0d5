"""Reply and forward prefixes in the languages a Polish service desk receives."""

from __future__ import annotations

import re

# Re, Odp, Odp., ODP, AW, WG, SV, VS, Fwd, Fw, PD, TR, RV, Antw, Doorst, optionally with a
# counter (Re[2]:, Re^2:) or in brackets ([Fwd: ...]).
_PREFIX = re.compile(
    r"^\s*(?:\[\s*)?(?:re|odp\.?|aw|wg|sv|vs|fwd?|pd|tr|rv|antw|doorst|vb|r)"
    r"\s*(?:\[\d+\]|\^\d+|\(\d+\))?\s*:\s*",
    re.IGNORECASE,
)


def strip_reply_prefixes(subject: str) -> str:
    """Remove stacked reply/forward prefixes (``RE: Odp.: AW: ...``) from the start."""
    previous = None
    while previous != subject:
        previous = subject
        subject = _PREFIX.sub("", subject, count=1)
    return subject.strip()

"""Reply and forward prefixes in the languages a Polish service desk receives."""

from __future__ import annotations

import re

# Re, Odp, Odp., ODP, AW, WG, SV, VS, Fwd, Fw, PD, TR, RV, Antw, Doorst, VB, R, optionally
# with a counter (Re[2]:, Re^2:, Re(2):). The colon may be the full-width one.
_PREFIX_WORDS = r"(?:re|odp\.?|aw|wg|sv|vs|fwd?|pd|tr|rv|antw|doorst|vb|r)"
_COUNTER = r"(?:\s*(?:\[\d+\]|\^\d+|\(\d+\)))?"
_PREFIX = re.compile(rf"^\s*{_PREFIX_WORDS}{_COUNTER}\s*[:：]\s*", re.IGNORECASE)
# "[Fwd: Subject]": a forward wrapped in brackets by older clients.
_BRACKETED = re.compile(rf"^\s*\[\s*{_PREFIX_WORDS}{_COUNTER}\s*[:：]\s*(.*)\]\s*$", re.IGNORECASE)
# A leading tag such as "[#20460]", "[SD#123]" or "[list-name]": prefixes after it are
# stripped too, the tag itself stays.
_LEADING_TAG = re.compile(r"^\s*(\[[^\[\]]{1,64}\])\s*")
_FORWARD = re.compile(r"^\s*\[?\s*(?:fwd?|pd|wg|tr|rv|doorst|vb)\s*[:：]", re.IGNORECASE)


def _strip_prefixes(subject: str) -> str:
    previous = None
    while previous != subject:
        previous = subject
        bracketed = _BRACKETED.match(subject)
        if bracketed:
            subject = bracketed.group(1)
        subject = _PREFIX.sub("", subject, count=1)
    return subject


def strip_reply_prefixes(subject: str) -> str:
    """Remove stacked reply/forward prefixes (``RE: Odp.: AW: ...``) from the start.

    A ticket or list tag stays where it is, and prefixes right after a leading tag are
    removed as well: ``RE: [#20460] AW: Laptop`` becomes ``[#20460] Laptop``.
    """
    subject = _strip_prefixes(subject)
    tag = _LEADING_TAG.match(subject)
    if tag:
        rest = _strip_prefixes(subject[tag.end() :])
        subject = f"{tag.group(1)} {rest}" if rest.strip() else tag.group(1)
    return subject.strip()


def is_forward(subject: str) -> bool:
    """Tell whether the outermost prefix marks a forward (``Fwd:``, ``PD:``, ``WG:``...)."""
    return bool(_FORWARD.match(subject))


def is_reply(subject: str) -> bool:
    """Tell whether the outermost prefix marks a reply (``RE:``, ``Odp:``, ``AW:``...)."""
    return bool(_PREFIX.match(subject) or _BRACKETED.match(subject)) and not is_forward(subject)

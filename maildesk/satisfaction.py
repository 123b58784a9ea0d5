"""The requester's reaction to a resolution: a rating from 1 to 5, or a short thanks.

The resolution notice requests a digit from 1 to 5. A reply that carries only that
rating is stored on the ticket and does not reopen it; neither does a reply made only
of thanks, greetings and a signature, or one with no new text at all. Only the new
text of a reply (``reply_text``, quotes removed) is judged, because the quoted notice
itself invites the user to reopen the ticket.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from maildesk import models
from maildesk.i18n import _
from maildesk.models import to_utc

logger = logging.getLogger(__name__)

RATING_SCALE = (1, 2, 3, 4, 5)

# "5", "5/5", "Ocena: 4", "moja ocena to 5", "rating: 3 out of 5", "4 gwiazdki".
_RATING_LINE = re.compile(
    r"^\W*(?:(?:moja\s+)?ocena(?:\s+to)?|oceniam(?:\s+na)?|daję|(?:my\s+)?rating(?:\s+is)?"
    r"|score|i\s+rate(?:\s+it)?)?\W*([1-5])\s*(?:/\s*5|na\s+5|out\s+of\s+5|z\s+5"
    r"|gwiazd\w*|stars?|pkt|punkt\w*)?\W*$",
    re.IGNORECASE,
)

# Words that turn a thanks into a new problem: "dziękuję, ale nadal nie działa".
_NEGATIONS = frozenset({
    "nie", "nadal", "wciąż", "dalej", "znowu", "znów", "ponownie", "ale", "jednak",
    "niestety", "problem", "błąd", "not", "no", "still", "again", "but", "however",
    "unfortunately", "doesn't", "does", "isn't", "error", "issue",
})

# Lines from which on the rest of a reply is a signature.
_CLOSINGS = (
    "pozdrawiam", "z poważaniem", "z wyrazami szacunku", "serdeczności", "pozdrowienia",
    "regards", "best regards", "kind regards", "best", "cheers", "thanks", "dzięki",
    "sent from my", "wysłane z", "wysłano z", "--",
)
_SIGNATURE_LINES = 6
_SHORT_REPLY_CHARACTERS = 400


def _content_lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def _without_signature(lines: list[str], requester_name: str = "") -> list[str]:
    """Drop a closing greeting and what follows it, and lines that only name the sender."""
    kept: list[str] = []
    for index, line in enumerate(lines):
        lowered = line.lower().rstrip(",.!")
        if line.startswith("--") or (
                len(lines) - index <= _SIGNATURE_LINES and kept
                and any(lowered.startswith(closing) for closing in _CLOSINGS)
                and len(lowered.split()) <= 4):
            # The closing line itself may still carry thanks ("Dzięki, Jan").
            kept.append(line)
            break
        kept.append(line)
    name = requester_name.strip().lower()
    return [line for line in kept
            if not name or line.lower().strip(",.! ") not in (name, *name.split())]


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def is_short_thanks(reply_text: str, phrases: tuple[str, ...], requester_name: str = ""
                    ) -> bool:
    """Tell whether the new text of a reply only thanks or confirms (or is empty).

    Every word must belong to a phrase in ``phrases`` (after the signature and the
    sender's own name are dropped), and no question or negation may appear.

    NOTE: a signature that does not follow a closing greeting (a job title, a phone
    number) counts as new text, so such a thanks reopens the ticket. That errs on the
    side of a human looking at it again.
    """
    lines = _without_signature(_content_lines(reply_text), requester_name)
    text = " ".join(lines)
    if not text:
        return True
    if len(text) > _SHORT_REPLY_CHARACTERS or "?" in text:
        return False

    words = _words(text)
    if any(word in _NEGATIONS for word in words):
        return False

    remaining = " " + " ".join(words) + " "
    for phrase in sorted(phrases, key=len, reverse=True):
        phrase_words = " ".join(_words(phrase))
        if phrase_words:
            remaining = remaining.replace(f" {phrase_words} ", " ")
            # A phrase repeated back to back ("dzięki dzięki") needs a second pass.
            remaining = remaining.replace(f" {phrase_words} ", " ")
    leftover = [word for word in remaining.split() if not _is_filler(word, requester_name)]
    return not leftover


def _is_filler(word: str, requester_name: str) -> bool:
    """Tell whether a word carries no request: intensifiers, particles, the sender's name."""
    if word in {"bardzo", "wszystko", "już", "i", "a", "za", "pomoc", "so", "very", "much",
                "lot", "for", "the", "help", "your", "you", "and", "all", "pani",
                "panu", "panie", "państwu", "wam", "ci", "now", "teraz"}:
        return True
    return word in _words(requester_name)


def parse_rating(reply_text: str, requester_name: str = "",
                 thanks_phrases: tuple[str, ...] = ()) -> int | None:
    """Return the rating 1-5 a reply gives, or None.

    The first line of new text must hold only the rating ("5", "Ocena: 4", "3/5"), and
    anything after it may only thank, in the desk's ``thanks_phrases`` or a few fixed
    words, so "5 minut temu znowu padło" is no rating.
    """
    lines = _without_signature(_content_lines(reply_text), requester_name)
    if not lines:
        return None
    match = _RATING_LINE.match(lines[0])
    if match is None:
        return None
    rest = "\n".join(lines[1:])
    if rest and not is_short_thanks(rest, (*_REST_PHRASES, *thanks_phrases), requester_name):
        return None
    return int(match.group(1))


def record_rating(ticket: models.Ticket, rating: int, actor: str, at: datetime,
                  message_id: str | None = None) -> bool:
    """Store the rating on the ticket with an audit event; return False when unchanged."""
    if rating not in RATING_SCALE:
        raise ValueError(f"a rating must be 1 to 5, got {rating!r}")
    before = ticket.satisfaction
    if before == rating:
        return False

    from maildesk.tickets import record_event

    ticket.satisfaction = rating
    ticket.satisfaction_at = to_utc(at)
    ticket.save(only=[models.Ticket.satisfaction, models.Ticket.satisfaction_at])
    record_event(ticket, actor, "satisfaction_rated", {"message_id": message_id},
                 before=before, after=rating)
    logger.info(_("ticket {number}: rated {rating} of 5 by {actor}").format(
        number=ticket.id, rating=rating, actor=actor))
    return True


# Phrases accepted after a rating line, whatever the configured thanks list holds.
_REST_PHRASES = (
    "dziękuję", "dziękuję bardzo", "dzięki", "pozdrawiam", "thank you", "thanks",
    "regards", "ok", "super", "great",
)

"""The requester's reaction to a resolution: a rating from 1 to 5, or a short thanks.

The resolution notice requests a digit from 1 to 5. A reply that carries only that
rating is stored on the ticket and does not reopen it; neither does a reply made only
of thanks, greetings and a signature, or one with no new text at all. Only the new
text of a reply (``reply_text``, quotes removed) is judged, because the quoted notice
itself invites the user to reopen the ticket.

A reply is read in three steps. The signature goes first: a ``--`` line and everything
below it, mail app footers that end the text ("Wysłane z iPhone’a", checked by
``maildesk.quotes.is_mobile_footer``), the lines below a closing greeting or from a line
with the sender's full name down, unless they hold a negation or a question, lines that
are the sender's name, and a last line that signs it ("Kasia" or "Kasia Z." from
Katarzyna Zając). A capitalised last line that does not match the sender's name stays
("Jeszcze Outlook" below a "5"), because it may be the complaint. The rest splits into
parts at line ends, sentence ends, commas and dashes. A rating is exactly one part such
as "5", "Ocena: 4", "5/5" or "Oceniam na 5.", and every other part must be a thanks or a
greeting.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from maildesk import models
from maildesk.i18n import _
from maildesk.models import to_utc
from maildesk.quotes import is_mobile_footer

logger = logging.getLogger(__name__)

RATING_SCALE = (1, 2, 3, 4, 5)

# One part of a reply that is only a rating: "5", "5/5", "Ocena: 4", "moja ocena to 5",
# "Oceniam na 5.", "rating: 3 out of 5", "I rate it 4", "4 gwiazdki".
_RATING_PART = re.compile(
    r"^\W*(?:(?:moja\s+)?ocena(?:\s+to)?|oceniam(?:\s+(?:was|obsługę|pomoc))?(?:\s+na)?"
    r"|daję|(?:my\s+)?rating(?:\s+is)?|score|i(?:'d|\s+would)?\s+rate(?:\s+(?:it|you|this))?)?"
    r"\W*([1-5])\s*(?:/\s*5|na\s+5|out\s+of\s+5|z\s+5|gwiazd\w*|stars?|pkt|punkt\w*)?\W*$",
    re.IGNORECASE,
)
# Break points between the parts of one line: after a sentence, at a comma, at a dash.
_PART_BREAK = re.compile(r"(?<=[.!;])\s+|,\s+|\s+[-–—]\s+")

# Words that turn a thanks into a new problem: "dziękuję, ale nadal nie działa".
_NEGATIONS = frozenset({
    "nie", "nadal", "wciąż", "dalej", "znowu", "znów", "ponownie", "ale", "jednak",
    "niestety", "problem", "błąd", "not", "no", "still", "again", "but", "however",
    "unfortunately", "doesn't", "does", "isn't", "error", "issue",
})

# Words that open a follow-up ("Teraz Teams", "Jeszcze Outlook", "Now Teams"): never a
# name, and never part of the signature below a closing greeting.
_FOLLOW_UP_WORDS = frozenset({
    "teraz", "jeszcze", "też", "także", "również", "tylko", "now", "also", "only", "btw",
    "ps",
})
# Things a short complaint names ("Monitor" below "Dziękuję", from Monika): never a name.
_DESK_WORDS = frozenset({
    "drukarka", "skaner", "monitor", "komputer", "laptop", "telefon", "internet", "sieć",
    "poczta", "serwer", "hasło", "konto", "system", "program", "aplikacja", "kamera",
    "myszka", "klawiatura", "outlook", "teams", "excel", "word", "windows", "wifi",
    "printer", "scanner", "computer", "phone", "network", "password", "account", "server",
    "mail", "email",
})
_NOT_NAME_WORDS = _NEGATIONS | _FOLLOW_UP_WORDS | _DESK_WORDS

# Closing greetings: the lines below one are the signature.
_CLOSINGS = (
    "pozdrawiam", "z poważaniem", "z wyrazami szacunku", "serdeczności", "pozdrowienia",
    "regards", "best regards", "kind regards", "best", "cheers", "thanks", "dzięki",
)
_SIGNATURE_LINES = 6
# A signature block that opens with the sender's full name has at most this many lines
# in all: the name, title, department, company, address, two phone numbers, web site.
_NAMED_SIGNATURE_LINES = 9
_SHORT_REPLY_CHARACTERS = 400
# A first name or nickname is at most this long ("Małgorzata", "Bartłomiej").
_NAME_CHARACTERS = 20
# Dashes and tildes people put before a sign-off ("— Kasia", "~Tomek").
_SIGN_OFF_MARKS = "-–—~ "
# The line that opens a signature block (RFC 3676 writes "-- ", clients often drop the space).
_SIGNATURE_SEPARATOR = re.compile(r"^--\s*$")
_ADDRESS_DOMAIN = re.compile(r"@\S*")


def _content_lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def _without_signature(lines: list[str], requester_name: str = "") -> list[str]:
    """Drop the signature: a ``--`` block, trailing footers, a closing's tail, the sender's name."""
    for index, line in enumerate(lines):
        if _SIGNATURE_SEPARATOR.match(line):
            lines = lines[:index]
            break
    while lines and is_mobile_footer(lines[-1]):
        lines = lines[:-1]

    full_name = frozenset(_name_words(requester_name))
    kept: list[str] = []
    for index, line in enumerate(lines):
        near_end = len(lines) - index <= _SIGNATURE_LINES
        opens_signature = (len(lines) - index <= _NAMED_SIGNATURE_LINES and kept
                           and _is_full_name(line, full_name)
                           and _is_signature(lines[index + 1:]))
        if opens_signature:
            # Outlook and Apple Mail add a signature block without "--" below the text,
            # and it opens with the sender's full name ("Jan Kowalski" or "Kowalski Jan").
            break
        kept.append(line)
        is_closing = (near_end and len(kept) > 1
                      and _is_closing(line) and _is_signature(lines[index + 1:]))
        if is_closing:
            # The closing line itself stays, because it may carry thanks ("Dzięki, Jan").
            break

    name = requester_name.strip().lower()
    kept = [line for line in kept
            if not name or line.lower().strip(",.! ") not in (name, *name.split())]
    return _without_sign_off(kept, requester_name)


def _is_full_name(line: str, full_name: frozenset[str]) -> bool:
    """Tell whether a line is the sender's display name of two or more words, in any order."""
    return len(full_name) > 1 and frozenset(_words(line)) == full_name


def _is_closing(line: str) -> bool:
    lowered = line.lower().rstrip(",.!")
    return (any(lowered.startswith(closing) for closing in _CLOSINGS)
            and len(lowered.split()) <= 4)


def _is_signature(lines: list[str]) -> bool:
    """Tell whether the lines below a closing greeting may be a signature.

    A question, a negation or a word that opens a new request ("Jeszcze Outlook") is
    new text, and that text stays even below "Pozdrawiam".
    """
    text = " ".join(lines)
    return "?" not in text and not any(
        word in _NEGATIONS or word in _FOLLOW_UP_WORDS for word in _words(text))


def _without_sign_off(lines: list[str], requester_name: str) -> list[str]:
    """Drop the sender's first name or nickname that ends the text.

    The last line goes when it signs the sender's name and other text stays above it.
    Words after the last comma go when a closing greeting comes before them ("Dzięki,
    Kasia") or when they sign the sender's name ("Dziękuję, Kasia" from Katarzyna). A
    name on a line below a closing greeting needs no match, because those lines are
    already gone.
    """
    if len(lines) > 1 and _is_senders_name(lines[-1], requester_name):
        return lines[:-1]
    if lines:
        head, comma, tail = lines[-1].rpartition(",")
        closed = _is_closing(_PART_BREAK.split(head.strip())[-1]) and _looks_like_name(tail)
        if comma and head.strip() and (closed or _is_senders_name(tail, requester_name)):
            return [*lines[:-1], head.strip()]
    return lines


def _is_senders_name(text: str, requester_name: str) -> bool:
    """Tell whether a text signs the sender's display name: "Kasia", "Kasia Z.", "Tomek W.".

    The first word must start with the same two letters as a word of the display name,
    because a nickname keeps them ("Kasia" and "Kate" for "Katarzyna", "Tomek" for
    "Tomasz"). A second word must be a word of the display name or its initial.

    NOTE: a capitalised word that shares its first two letters with the sender's name
    passes too, so "5" above "Kabel" from Katarzyna counts as a rating. Nicknames
    that start otherwise ("Gosia" for "Małgorzata", "Bob" for "Robert") are not
    dropped, so such a reply reopens the ticket.
    """
    if not _looks_like_name(text):
        return False
    name_words = [word for word in _name_words(requester_name) if len(word) > 1]
    words = [word.casefold() for word in text.strip(_SIGN_OFF_MARKS).split()]
    if not any(word[:2] == words[0][:2] for word in name_words):
        return False
    if len(words) == 1:
        return True
    second = words[1].rstrip(".")
    return any(word == second or (len(second) == 1 and word[0] == second)
               for word in name_words)


def _looks_like_name(text: str) -> bool:
    """Tell whether a text is one or two capitalised words: "Kasia", "Tomek W.", "Anna-Maria"."""
    words = text.strip(_SIGN_OFF_MARKS).split()
    if not 1 <= len(words) <= 2 or not _is_name_word(words[0]):
        return False
    return len(words) == 1 or _is_name_word(words[1]) or _is_initial(words[1])


def _is_name_word(word: str) -> bool:
    lowered = word.lower()
    if len(word) > _NAME_CHARACTERS or lowered in _NOT_NAME_WORDS:
        return False
    return all(part.isalpha() and part[0].isupper() and part[1:].islower()
               for part in word.split("-"))


def _is_initial(word: str) -> bool:
    return len(word) == 2 and word[0].isalpha() and word[0].isupper() and word[1] == "."


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def _name_words(requester_name: str) -> list[str]:
    """Return the lower-case words of a display name, without an address's domain.

    A display name may be an address ("katarzyna.zajac@example.org"): its local part
    names the sender, its domain does not.
    """
    return _words(_ADDRESS_DOMAIN.sub(" ", requester_name))


def is_short_thanks(reply_text: str, phrases: tuple[str, ...], requester_name: str = ""
                    ) -> bool:
    """Tell whether the new text of a reply only thanks or confirms (or is empty).

    Every word must belong to a phrase in ``phrases`` (after the signature and the
    sender's own name are dropped), and no question or negation may appear.

    NOTE: a signature that neither follows a closing greeting nor opens with the sender's
    full name (a job title, a phone number) counts as new text, so such a thanks reopens
    the ticket. That errs on the side of a human looking at it again.
    """
    lines = _without_signature(_content_lines(reply_text), requester_name)
    return _only_thanks(lines, phrases, requester_name)


def _only_thanks(lines: list[str], phrases: tuple[str, ...], requester_name: str) -> bool:
    """Tell whether signature-free lines contain nothing but the ``phrases`` and filler words."""
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
    return word in _name_words(requester_name)


def parse_rating(reply_text: str, requester_name: str = "",
                 thanks_phrases: tuple[str, ...] = ()) -> int | None:
    """Return the rating 1-5 a reply gives, or None.

    Without its signature the reply must split into exactly one rating part and parts
    that only thank, in the desk's ``thanks_phrases`` or a few fixed words. So
    "Dzięki, 5/5!" is a rating, and "5 minut temu znowu padło" or "mam 2 drukarki i
    obie nie działają" is none.
    """
    lines = _without_signature(_content_lines(reply_text), requester_name)
    parts = [part for line in lines for part in _PART_BREAK.split(line) if part.strip()]
    ratings = [(index, match) for index, part in enumerate(parts)
               if "?" not in part and (match := _RATING_PART.match(part)) is not None]
    if len(ratings) != 1:
        return None

    index, match = ratings[0]
    rest = parts[:index] + parts[index + 1:]
    if not _only_thanks(rest, (*_REST_PHRASES, *thanks_phrases), requester_name):
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


# Phrases accepted beside a rating, whatever the configured thanks list holds. The
# rating's own label may stand apart from the digit: "Ocena - 5".
_REST_PHRASES = (
    "dziękuję", "dziękuję bardzo", "dzięki", "pozdrawiam", "dzień dobry", "witam",
    "wszystko działa", "działa", "thank you", "thanks", "regards", "hello", "hi",
    "it works", "ok", "super", "great", "moja ocena", "ocena", "my rating", "rating",
)

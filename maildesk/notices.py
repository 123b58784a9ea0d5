"""Recognise the notices that companies' mail servers and signatures add to every mail.

Polish companies end their mail with a confidentiality notice ("Niniejsza wiadomość jest
poufna..."), the company data that the Commercial Companies Code requires in business
mail (art. 206 KSH: registry court, KRS number, NIP and share capital), the information
clause of the GDPR (RODO) and a plea not to print the mail, often also in English. None
of it is what the sender wrote this time, so the reply text leaves it out.

A notice is recognised by its opening words and the terms it contains. A
confidentiality notice opens with words such as "Niniejsza wiadomość" or "This e-mail"
and speaks of confidentiality and of the addressee, the GDPR clause names the processing
of personal data, the plea not to print names the environment, and company data gives
the share capital together with the KRS number or registry court. So "Ta wiadomość jest
pilna." or "Zanim wydrukujesz, wybierz drukarkę PR-214." at the end of a mail stays text.

A notice speaks for a company to any reader: it asks no question and has no "I". A
user who reports a misdirected mail ("Ta wiadomość jest poufna i nie była przeznaczona
dla mnie. Co mam z nią zrobić?") or an agent who warns the user ("Ta informacja jest
poufna i przeznaczona tylko dla Pana") uses the same words, so a question mark or a
first-person singular pronoun keeps the text, and only a role noun (adresat, odbiorca,
recipient) counts as the addressee.
"""

from __future__ import annotations

import re

# Opening words of a notice, at the start of its paragraph or of a line inside the last
# paragraph (a signature and the notice below it without a blank line).
_CONFIDENTIAL_OPENING = re.compile(
    r"^[\W_]*(?:"
    r"niniejsz[aey] (?:wiadomoś|e-?mail|korespondencj|informacj)"
    r"|ta (?:wiadomoś|korespondencj|informacj)|wiadomość ta\b"
    r"|(?:treść|zawartość) (?:tej|niniejszej) (?:wiadomości|korespondencji)"
    r"|informacj[ae] (?:zawart[ae] )?w (?:tej|niniejszej) (?:wiadomości|korespondencji)"
    r"|(?:klauzula|informacja o) poufności"
    r"|je(?:ż|ś)eli (?:nie jest|otrzymał)|jeśli (?:nie jest|otrzymał)"
    r"|this (?:e-?mail|message|communication|transmission)\b"
    r"|the (?:information|content)s? (?:contained )?in this\b"
    r"|confidential(?:ity)? notice\b|disclaimer\b|if you (?:are not|have received)\b"
    r")",
    re.IGNORECASE,
)
_PRIVACY_OPENING = re.compile(
    r"^[\W_]*(?:administratorem (?:\S+ ){0,3}danych osobowych|zgodnie z (?:art\. 13 |rodo\b)"
    r"|klauzula informacyjna|informujemy, że administratorem)",
    re.IGNORECASE,
)
_PRINT_OPENING = re.compile(
    r"^[\W_]*(?:(?:zanim|nim|przed) wydruk|pomyśl o środowisku|(?:dbaj|zadbaj) o środowisko"
    r"|please consider the environment|think before you print|save a tree)",
    re.IGNORECASE,
)
# Terms each kind of notice contains between its opening and its end. The openings alone
# also start sentences of requests and agents' replies ("Ta wiadomość jest pilna",
# "Zanim wydrukujesz, wybierz drukarkę PR-214"), which contain none of these terms.
_CONFIDENTIAL = re.compile(r"poufn|zastrzeżon|tajemnic|confidential|privileged", re.IGNORECASE)
# The addressee as a role. "Przeznaczona dla" and "intended for" also name a person in
# the sender's own words ("przeznaczona tylko dla Pana").
_ADDRESSEE = re.compile(r"adresat|odbiorc|zaadresowan|recipient|addressee|addressed",
                        re.IGNORECASE)
# A person's own voice: a question, or "I" in Polish or English, which no notice has. The
# question mark must end a word, because a link in a notice may contain a query string.
_PERSONAL = re.compile(
    r"\?(?=\s|$)"
    r"|(?i:\b(?:ja|mnie|mi|mną|mój|moja|moje|mojego|mojej|moją|moim|moich|moimi)\b)"
    r"|\bI\b|(?i:\b(?:me|my|mine)\b)"
)
_PRIVACY = re.compile(r"rodo\b|gdpr|rozporządzeni|przetwarza|processing", re.IGNORECASE)
_ENVIRONMENT = re.compile(r"środowisk|ekolog|drzew|environment|tree", re.IGNORECASE)
# The data art. 206 KSH requires: share capital with the KRS number or registry court.
_SHARE_CAPITAL = re.compile(r"kapita(?:ł|l|łem|le) zakładow|kapitale zakładowym", re.IGNORECASE)
_REGISTRY = re.compile(r"\bKRS\b|sąd(?:zie)? rejonow|krajow(?:ego|ym) rejestr", re.IGNORECASE)
# The line that opens the company data names the seat: "ACME Sp. z o.o. z siedzibą w ...".
_SEAT = re.compile(r"\bz siedzibą\b", re.IGNORECASE)

# The longest notice of the tests (Polish and English, wrapped at 72 characters) takes
# 12 lines. This bound is a guess that leaves room for longer ones.
_MAX_NOTICE_LINES = 40

# (opening, terms): a line that matches the opening starts a notice when every term is
# found between it and the end of the paragraph.
_NOTICES: tuple[tuple[re.Pattern[str], tuple[re.Pattern[str], ...]], ...] = (
    (_CONFIDENTIAL_OPENING, (_CONFIDENTIAL, _ADDRESSEE)),
    (_PRIVACY_OPENING, (_PRIVACY,)),
    (_PRINT_OPENING, (_ENVIRONMENT,)),
)
_TERMS = (_CONFIDENTIAL, _ADDRESSEE, _PRIVACY, _ENVIRONMENT, _SHARE_CAPITAL, _REGISTRY)
# Fixed pieces of text that each term's every match contains, in lower case: plain
# substring tests on the lower-cased paragraph rule out a notice before any pattern runs,
# and almost every paragraph is ruled out so.
_PIECES = {
    _CONFIDENTIAL: ("poufn", "zastrzeżon", "tajemnic", "confidential", "privileged"),
    _ADDRESSEE: ("adresat", "odbiorc", "zaadresowan", "recipient", "addressee", "addressed"),
    _PRIVACY: ("rodo", "gdpr", "rozporządzeni", "przetwarza", "processing"),
    _ENVIRONMENT: ("środowisk", "ekolog", "drzew", "environment", "tree"),
    _SHARE_CAPITAL: ("zakładow",),
    _REGISTRY: ("krs", "rejonow", "rejestr"),
}


def cut_notices(lines: list[str]) -> list[str]:
    """Return ``lines`` without the notices at their end; blank lines at the end go too.

    Paragraphs are judged from the last one up. A notice may also start inside the last
    paragraph kept, below a signature without a blank line between them. Only the last
    ``_MAX_NOTICE_LINES`` lines of a paragraph are read, so a notice must start there.
    """
    end = _trimmed_end(lines, len(lines))
    while end:
        start = end
        while start > max(0, end - _MAX_NOTICE_LINES) and lines[start - 1].strip():
            start -= 1
        notice = _notice_start(lines[start:end])
        if notice is None:
            break
        end = _trimmed_end(lines, start + notice)
        if notice or (start and lines[start - 1].strip()):
            break  # the notice began inside a paragraph: the lines above it are text
    return lines[:end]


def _trimmed_end(lines: list[str], end: int) -> int:
    while end and not lines[end - 1].strip():
        end -= 1
    return end


def _notice_start(paragraph: list[str]) -> int | None:
    """Return the index of the line where a notice starts that runs to the paragraph's end.

    Returns None when the paragraph has no such notice.
    """
    if not _may_hold_notice(paragraph):
        return None

    # found_below[index][term] is True when the term occurs in paragraph[index:].
    found_below = [dict.fromkeys(_TERMS, False) for _ in range(len(paragraph) + 1)]
    for index in range(len(paragraph) - 1, -1, -1):
        below = found_below[index + 1]
        found_below[index] = {term: below[term] or bool(term.search(paragraph[index]))
                              for term in _TERMS}

    # personal_below[index] is True when paragraph[index:] has a question or an "I". It is
    # read only for a line that opens a notice, so most mails never build it.
    personal_below: list[bool] = []
    for index, line in enumerate(paragraph):
        found = found_below[index]
        for opening, terms in _NOTICES:
            if not (opening.match(line) and all(found[term] for term in terms)):
                continue
            if not personal_below:
                personal_below = _found_below(paragraph, _PERSONAL)
            if not personal_below[index]:
                return index
        is_company_data = any(pattern.search(line)
                              for pattern in (_SEAT, _SHARE_CAPITAL, _REGISTRY))
        if is_company_data and found[_SHARE_CAPITAL] and found[_REGISTRY]:
            return index
    return None


def _found_below(paragraph: list[str], pattern: re.Pattern[str]) -> list[bool]:
    """Return, for each index, whether ``pattern`` occurs in ``paragraph[index:]``."""
    found = [False] * (len(paragraph) + 1)
    for index in range(len(paragraph) - 1, -1, -1):
        found[index] = found[index + 1] or bool(pattern.search(paragraph[index]))
    return found


def _may_hold_notice(paragraph: list[str]) -> bool:
    """Tell whether the paragraph has every term of some kind of notice, by ``_PIECES``.

    False is certain; True leaves the decision to the patterns.
    """
    text = "\n".join(paragraph).lower()
    present = {term: any(piece in text for piece in pieces)
               for term, pieces in _PIECES.items()}
    return (any(all(present[term] for term in terms) for _opening, terms in _NOTICES)
            or (present[_SHARE_CAPITAL] and present[_REGISTRY]))

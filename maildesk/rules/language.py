"""A cheap guess of the language a mail is written in: Polish or English.

The guess only has to choose between the desk's two languages, so counting Polish
letters and frequent short words is enough. It is not a general language detector.
"""

from __future__ import annotations

import re

from maildesk.i18n import normalize_language
from maildesk.parse import ParsedMessage

# Sources of a detected language, as returned by detect_language().
SOURCE_HEADER = "header"
SOURCE_TEXT = "text"
SOURCE_NONE = "none"

_SAMPLE_CHARACTERS = 4000
_WORD = re.compile(r"[^\W\d_]+")
_POLISH_LETTERS = set("ąćęłńóśźż")

# Frequent words of one language that are not also words of the other ("to", "i", "a",
# "do" and "no" are left out on purpose).
_POLISH_TEXT = """
    się nie jest że na w z od dla czy ale jak mam mamy proszę prosze dzień dzien dobry
    witam pozdrawiam pozdrowienia dziękuję dziekuje dzięki dzieki bardzo już juz jeszcze
    jestem mój moj moja mojego mnie tego oraz też tez był była było ponieważ poniewaz
    który ktory która ktora które ktore gdy kiedy można mozna działa dziala
    komputer drukarka hasło haslo konto pilne awaria
"""
_ENGLISH_TEXT = """
    the and is are was were of for with this that it my your please hello hi dear
    regards thanks thank kind best not cannot does have has been
    would could should will from what when which there their our we you they
"""
_POLISH_WORDS = frozenset(_POLISH_TEXT.split())
_ENGLISH_WORDS = frozenset(_ENGLISH_TEXT.split())


def guess_text_language(text: str) -> str | None:
    """Return ``pl`` or ``en`` for the text, or None when neither clearly wins.

    Polish letters count only in words that do not start with a capital, because names
    and places (Łukasz Wójcik, Kraków) in an English mail's signature do not show the
    language the mail is written in.
    """
    polish = 0
    english = 0
    for word in _WORD.findall(text[:_SAMPLE_CHARACTERS]):
        folded = word.casefold()
        if folded in _POLISH_WORDS:
            polish += 1
        elif folded in _ENGLISH_WORDS:
            english += 1
        elif (not word.isascii() and not word[0].isupper()
              and _POLISH_LETTERS.intersection(folded)):
            polish += 1

    if polish > english:
        return "pl"
    if english > polish:
        return "en"
    return None


def detect_language(message: ParsedMessage) -> tuple[str | None, str]:
    """Return the mail's language and its source: Content-Language, else a guess.

    The source is ``SOURCE_HEADER``, ``SOURCE_TEXT`` or ``SOURCE_NONE``.
    """
    for header in ("Content-Language", "Accept-Language"):
        value = message.header(header)
        if not value:
            continue
        for tag in value.split(","):
            language = normalize_language(tag.split(";")[0])
            if language:
                return language, SOURCE_HEADER

    body = message.reply_text or message.text
    language = guess_text_language(f"{message.subject}\n{body}")
    if language:
        return language, SOURCE_TEXT
    return None, SOURCE_NONE

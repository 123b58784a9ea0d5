"""Split a reply into what the sender wrote now and the quoted history below it.

Mail clients mark history in three ways, and all three are handled, in Polish and
English:

- a header block copied from the quoted mail (Outlook: ``Od:``/``Wysłano:``/``Do:``/
  ``Temat:`` or ``From:``/``Sent:``/``To:``/``Subject:``), or a separator line such as
  ``-----Original Message-----`` or ``-----Wiadomość oryginalna-----``;
- an attribution line (``On ... wrote:``, ``W dniu ... napisał(a):``, Gmail's
  ``czw., 3 gru 2026 o 10:15 Jan Nowak <jan@example.org> napisał(a):``), possibly
  wrapped over several lines;
- ``>`` at the start of each quoted line.

A header block or separator cuts off everything below it, unless the mail is a forward:
its subject marks it (``PD:``, ``Fwd:``) or its history starts with a forward separator
(``---------- Przekazana wiadomość ---------``), and then the forwarded mail is the
request and stays. An attribution followed by ``>`` lines removes only the quoted lines,
so replies written between quoted lines stay; an attribution followed by unquoted text
(an HTML quote converted to text) cuts. The
signature after ``-- ``, mobile footers (``Sent from my iPhone``) and company notices
(``maildesk.notices``) at the end are removed. A signature without ``-- `` stays: it
cannot be distinguished from the reply, and its phone number is often what the agent
needs.

Everything works line by line with short, anchored patterns on bounded windows, so
the time is linear in the length of the text whatever the input.

mail-parser-reply 1.36 (MIT) was run on the same reply fixtures as this module's tests
and missed the Polish Gmail attribution wrapped over two lines and the Polish Outlook
block; it also cuts sign-offs such as "Pozdrawiam", which belong to the reply. So the
splitter is written here.
"""

from __future__ import annotations

import logging
import re

from maildesk.notices import cut_notices

logger = logging.getLogger(__name__)

# At most this many lines make one wrapped attribution ("On <date>, <name>\n<addr>\nwrote:").
_ATTRIBUTION_LINES = 4
# A "--" line without the trailing space counts as a signature separator only this close to the end.
_MAX_SIGNATURE_LINES = 12

_SEPARATOR = re.compile(
    r"^[>\s]*[-_=*]{2,}\s*(?:original message|oryginalna wiadomość|wiadomość oryginalna|"
    r"ursprüngliche nachricht|message d'origine|mensaje original|oorspronkelijk bericht|"
    r"reply above this line|odpowiedz powyżej tej linii)\s*[-_=*]{2,}\s*$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^[>\s]*_{10,}\s*$")
# The line above an inline forward, from Gmail and Thunderbird ("---------- Przekazana
# wiadomość ---------"), Apple Mail ("Początek przekazywanej wiadomości:") and others.
# Quoted with ">", it is part of the history of a reply.
_FORWARD_SEPARATOR = re.compile(
    r"^\s*(?:[-_=*]{2,}\s*(?:forwarded message|przekazana wiadomość|wiadomość przekazana"
    r"(?: dalej)?|przekazywana wiadomość|weitergeleitete nachricht|message transféré|"
    r"mensaje reenviado|doorgestuurd bericht|vidarebefordrat meddelande)\s*[-_=*]{2,}|"
    r"(?:begin forwarded message|początek przekazywanej wiadomości|początek przekazanej "
    r"wiadomości|anfang der weitergeleiteten nachricht|début du message réexpédié)\s*:)\s*$",
    re.IGNORECASE,
)

# Field names of a copied header block; the first line of a block must be From/Od/Von/De.
_HEADER_FROM = re.compile(
    r"^[>\s]*\**(?:from|od|von|de|van|från|fra|от)\**\s*:\**\s*\S", re.IGNORECASE
)
_HEADER_FIELD = re.compile(
    r"^[>\s]*\**(?:sent|date|to|cc|subject|wysłano|wysłane|data|do|dw|temat|gesendet|an|betreff|"
    r"envoyé|objet|à|enviado|para|asunto|verzonden|aan|onderwerp|skickat|till|ämne|datum|"
    r"sendt|til|emne|reply-to|importance|priorytet|ważność|отправлено|кому|тема|копия|дата)"
    r"\**\s*:",
    re.IGNORECASE,
)

# The verb may be followed by the author ("skrev Peter <peter@example.org>:"), and a
# Japanese attribution has no verb at all ("2022年1月1日(金) 9:00 田中 <t@example.jp>:").
_ATTRIBUTION_END = re.compile(
    r"(?:(?:wrote|writes|napisał\(a\)|napisal\(a\)|napisał|napisała|napisal|pisze|schrieb|"
    r"a écrit|escribió|skrev|schreef|ha scritto|kirjoitti|написал\(а\)|написал)"
    r"(?:\s[^:\n]{0,150})?|<[^<>\s]{1,200}@[^<>\s]{1,200}>|"
    # Apple Mail in Polish: "Wiadomość napisana przez Jan <jan@x> w dniu 3.12.2026, o godz. 10:15:"
    r"wiadomość napisana przez .{0,200})\s*:\s*$",
    re.IGNORECASE,
)
# The verb, the author after it and the colon fit in this many characters at the end.
_ATTRIBUTION_TAIL = 200
_ATTRIBUTION_HINT = re.compile(
    r"wrote|writes|napisa|pisze|schrieb|écrit|escribió|skrev|schreef|scritto|kirjoitti|"
    r"написал|@",
    re.IGNORECASE,
)


# The first words an attribution needs to count when no ">" lines follow it.
_ATTRIBUTION_START = re.compile(
    r"^[>\s-]*(?:on\s|w dniu\s|dnia\s|użytkownik\s|uzytkownik\s|wiadomość napisana\s|"
    r"am\s|le\s|el\s|op\s|den\s|"
    r"\d|(?:pon|wt|śr|sr|czw|pt|sob|niedz|nd|mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,|"
    r"(?:mån|tis|ons|tors?|fre|lör|sön|man|tir|lør|søn)\.?\s+\d)",
    re.IGNORECASE,
)

_QUOTED = re.compile(r"^\s*>")
_SIGNATURE = re.compile(r"^-- ?$")
# The fixed opening of the line a mail app adds under every message it sends. Polish apps
# write "Wysłane z" or "Wysłano z", and iOS writes the apostrophe of "iPhone’a" as U+2019,
# so a Polish device or app word takes any ending. What follows the opening must be a
# device or app name (see _is_device_name), so "Wysłano z opóźnieniem." and "Wysłane z
# telefonu maile dalej wracają." are sentences, not footers.
_FOOTER_OPENING = re.compile(
    r"^\s*(?:"
    r"(?P<named>sent from my|gesendet von meinem)\s"
    r"|sent from (?:outlook|yahoo mail|mail for windows|samsung|android|gmail|my mobile"
    r"|proton ?mail|aol)\b"
    r"|sent from \S+ for (?:ios|android)\b"
    r"|sent via (?:the )?samsung\b"
    r"|get outlook for (?:ios|android)\b"
    r"|wysłan[eo] ze? (?:mojego |mego |mojej )?(?:iphone|ipad|ipod|telefon|smartfon|tablet"
    r"|urządzeni|aplikacj|samsung|android|huawei|xiaomi|galaxy|poczt|outlook)\w*(?:['’]\w+)?"
    r"|(?:pobierz|uzyskaj) (?:aplikację |program )?outlook dla (?:systemu )?(?:ios|android)\b"
    r")",
    re.IGNORECASE,
)
# German puts the verb last: "Von meinem iPhone gesendet".
_FOOTER_GERMAN = re.compile(r"^\s*von meinem (.{1,40}?) gesendet[.!]?\s*$", re.IGNORECASE)
# A link some apps append to the footer: "Get Outlook for Android<https://aka.ms/...>".
_FOOTER_LINK = re.compile(r"\s*<[^<>\s]{1,200}>$")
# Lower-case words a device or app name may contain: "Samsung Galaxy smartphone",
# "an AT&T 5G smartphone", "Outlook for Android", "Poczta dla systemu Windows".
_DEVICE_NAME_WORDS = frozenset({
    "a", "an", "app", "device", "for", "mail", "mobile", "phone", "smartphone", "tablet",
    "dla", "systemu", "mobilnej", "mobilnego", "na",
})
_DEVICE_NAME_MAX_WORDS = 8
_DEVICE_NAME_CHARACTERS = frozenset("&'’+-.®™")
_BLANK_RUN = re.compile(r"\n{3,}")
# A line that is only a rule ("-----", "_____") left at the end after cutting.
_RULE_ONLY = re.compile(r"^\s*[-_=*]{3,}\s*$")
# The footer a mailing list manager appends: a rule, the list name, its web address.
_LIST_FOOTER_RULE = re.compile(r"^\s*[_-]{10,}\s*$")
_LIST_FOOTER_TEXT = re.compile(
    r"mailing list|lista dyskusyjna|listinfo|https?://|unsubscribe|wypisz", re.I
)
_MAX_FOOTER_LINES = 6


def extract_reply(text: str, forwarded: bool = False, replying: bool = False) -> str:
    """Return the new part of a reply: no quoted history, signature or mobile footer.

    A forward keeps the forwarded text, because there the history is the request: a mail
    whose subject marks a forward (``forwarded=True``), or whose first history marker is
    a forward separator (``---------- Przekazana wiadomość ---------``). The sender's
    signature above the forwarded mail is cut. When the whole text is history, the
    result is empty. That includes a reply (``replying=True``) whose text starts with a
    copied header block: Outlook writes one when the reply is sent before anything was
    typed.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    marker, is_forward_separator = _first_history_marker(lines)
    if forwarded or is_forward_separator:
        # The forwarder's own text and signature come first, then the forwarded mail.
        lines = _cut_signature(lines[:marker]) + [""] + _cut_signature(lines[marker:])
    else:
        lines = _cut_at_history(lines, replying, first_marker=marker)
        lines = _drop_quoted(lines)
        lines = _cut_signature(lines)

    reply = "\n".join(line.rstrip() for line in lines).strip("\n")
    return _BLANK_RUN.sub("\n\n", reply).strip()


def _first_history_marker(lines: list[str]) -> tuple[int, bool]:
    """Return where the history starts and whether it starts with a forward separator.

    A quoted line counts as history. Without history the index is ``len(lines)``.
    """
    for index, line in enumerate(lines):
        if _QUOTED.match(line):
            return index, False
        if _FORWARD_SEPARATOR.match(line):
            return index, True
        if _history_marker(lines, index):
            return index, False
    return len(lines), False


def is_mobile_footer(line: str) -> bool:
    """Tell whether a line is nothing but a mail app's footer ("Wysłane z iPhone’a").

    The line must end with the device or app name, optionally followed by punctuation or
    a link, so a sentence that starts with the footer's words is no footer.
    """
    german = _FOOTER_GERMAN.match(line)
    if german is not None:
        return _is_device_name(german.group(1))

    opening = _FOOTER_OPENING.match(line)
    if opening is None:
        return False
    name = _FOOTER_LINK.sub("", line[opening.end():].rstrip()).rstrip(" .,!")
    if opening.group("named") and not name:
        return False
    return _is_device_name(name)


def _is_device_name(text: str) -> bool:
    """Tell whether a text is empty or a device or app name such as "Samsung Galaxy S23".

    Each word must start with a capital letter or a digit ("Galaxy", "5G"), be an Apple
    name ("iPhone", "iOS") or belong to _DEVICE_NAME_WORDS, and only a comma may stand
    between the words ("Galaxy S23, an AT&T 5G smartphone").
    """
    words = text.split()
    if len(words) > _DEVICE_NAME_MAX_WORDS:
        return False
    for word in words:
        word = word.removesuffix(",")
        if not word or word.lower() in _DEVICE_NAME_WORDS:
            continue
        if word[-1] in ".!?:;" or not all(
            character.isalnum() or character in _DEVICE_NAME_CHARACTERS
            for character in word
        ):
            return False
        is_apple_name = len(word) > 1 and word[0] == "i" and word[1].isupper()
        if not (word[0].isupper() or word[0].isdigit() or is_apple_name):
            return False
    return True


def _header_block_length(lines: list[str], index: int) -> int:
    """Return how many lines a copied header block at ``index`` spans, 0 if there is none."""
    if not _HEADER_FROM.match(lines[index]):
        return 0
    fields = 0
    end = index + 1
    # Outlook wraps long To:/Cc: lists, so up to two continuation lines are allowed.
    continuations = 0
    while end < len(lines) and end - index <= 12:
        line = lines[end]
        if _HEADER_FIELD.match(line):
            fields += 1
            continuations = 0
        elif line.strip() and continuations < 2 and fields:
            continuations += 1
        else:
            break
        end += 1
    return end - index if fields >= 1 else 0


def _cut_at_history(lines: list[str], replying: bool = False, first_marker: int = 0
                    ) -> list[str]:
    """Cut at the first separator, copied header block or unquoted attribution.

    When nothing new is above the first such marker, the text below the marker is kept
    up to the next one: a mail that starts with a copied header (a forward without a
    comment and without a forward prefix) brings its text below it. In a reply
    (``replying``) the text below is quoted history, and nothing is kept. No marker
    starts above ``first_marker``, so the search starts there.
    """
    index = first_marker
    start = 0
    while index < len(lines):
        skip = _history_marker(lines, index)
        if skip:
            if any(line.strip() for line in lines[start:index]):
                return lines[start:index]
            if replying:
                return []
            start = index + skip
            index = start
            continue
        index += 1
    return lines[start:]


def _history_marker(lines: list[str], index: int) -> int:
    """Return the length of a history marker starting at ``index``, 0 if there is none."""
    line = lines[index]
    if _SEPARATOR.match(line):
        return 1
    if _UNDERSCORES.match(line):
        following = _next_nonblank(lines, index + 1)
        if following is not None and _header_block_length(lines, following):
            return following - index + _header_block_length(lines, following)
        return 0
    length = _header_block_length(lines, index)
    if length:
        return length
    attribution = _attribution_length(lines, index)
    unquoted_after = attribution and not _followed_by_quote(lines, index + attribution)
    if unquoted_after and _ATTRIBUTION_START.match(line):
        return attribution
    return 0


def _attribution_length(lines: list[str], index: int) -> int:
    """Return how many lines an attribution ("... wrote:") starting at ``index`` spans."""
    first = lines[index]
    if not first.strip() or (_QUOTED.match(first) and not _ATTRIBUTION_START.match(first)):
        return 0

    for position in range(index, min(index + _ATTRIBUTION_LINES, len(lines))):
        line = lines[position].rstrip()
        if not line.strip():
            return 0
        # The verb or the author's address is always on the line with the final colon,
        # so a cheap search there rejects most lines before the full pattern runs.
        if not line.endswith(":") or _ATTRIBUTION_HINT.search(line) is None:
            continue
        window = " ".join(part.strip() for part in lines[index : position + 1])
        if _ATTRIBUTION_END.search(window[-_ATTRIBUTION_TAIL:]) is None:
            continue

        # "Hello\n02.04.2012 14:20 Jan <jan@example.org>\nwrote:": the attribution
        # starts at the date line, so "Hello" is not part of it.
        starts_later = any(
            _ATTRIBUTION_START.match(lines[later]) for later in range(index + 1, position + 1)
        )
        if position > index and starts_later and not _ATTRIBUTION_START.match(first):
            return 0
        return position - index + 1
    return 0


def _next_nonblank(lines: list[str], index: int) -> int | None:
    while index < len(lines):
        if lines[index].strip() and lines[index].strip() != "\ufeff":
            return index
        index += 1
    return None


def _followed_by_quote(lines: list[str], index: int) -> bool:
    following = _next_nonblank(lines, index)
    return following is not None and bool(_QUOTED.match(lines[following]))


def _drop_quoted(lines: list[str]) -> list[str]:
    """Remove ``>`` lines and the attribution lines that introduce them."""
    kept: list[str] = []
    index = 0
    while index < len(lines):
        attribution = _attribution_length(lines, index)
        if attribution and _followed_by_quote(lines, index + attribution):
            index += attribution
            continue
        if _QUOTED.match(lines[index]):
            index += 1
            continue
        kept.append(lines[index])
        index += 1
    return kept


def _cut_signature(lines: list[str]) -> list[str]:
    """Cut the ``-- `` signature, trailing mobile footers and company notices."""
    nonblank_after = [0] * (len(lines) + 1)
    for index in range(len(lines) - 1, -1, -1):
        nonblank_after[index] = nonblank_after[index + 1] + (1 if lines[index].strip() else 0)

    for index, line in enumerate(lines):
        near_end = nonblank_after[index + 1] <= _MAX_SIGNATURE_LINES
        if line == "-- " or (_SIGNATURE.match(line) and near_end):
            lines = lines[:index]
            break

    for index in range(len(lines) - 1, max(-1, len(lines) - 2 * _MAX_FOOTER_LINES - 1), -1):
        if _LIST_FOOTER_RULE.match(lines[index]):
            footer = [line for line in lines[index + 1 :] if line.strip()]
            if (
                footer
                and len(footer) <= _MAX_FOOTER_LINES
                and any(map(_LIST_FOOTER_TEXT.search, footer))
            ):
                lines = lines[:index]
            break

    # Mobile footers and company notices come in either order ("Wysłane z iPhone'a" above
    # the notice that the company's server appends, or below the one in the signature).
    lines = list(lines)
    length = -1
    while length != len(lines):
        length = len(lines)
        while lines and (not lines[-1].strip() or _RULE_ONLY.match(lines[-1])):
            lines.pop()
        while lines and is_mobile_footer(lines[-1]):
            lines.pop()
            while lines and not lines[-1].strip():
                lines.pop()
        lines = cut_notices(lines)
    return lines


# -- HTML -------------------------------------------------------------------------------------

# Elements that hold quoted history in the HTML of common clients. For the "cut" ones the
# rest of the document after them is history too (Outlook writes the quoted mail as
# siblings below its header block).
_HTML_QUOTE_XPATH = (
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]"
    " | //blockquote[@type='cite']"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' moz-cite-prefix ')]"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' yahoo_quoted ')]"
    # Signatures, which the reply text leaves out as it does "-- " in plain text.
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_signature ')]"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' moz-signature ')]"
    " | //*[@id='Signature']"
)
_HTML_CUT_XPATH = (
    "//*[@id='divRplyFwdMsg' or @id='x_divRplyFwdMsg' or @id='OLK_SRC_BODY_SECTION'"
    " or @id='appendonsend' or @id='stopSpelling' or @name='messageReplySection']"
    " | //hr"
)
_HTML_HEADER_TEXT = re.compile(
    r"^\W*(?:from|od|von|de)\s*:|(?:wrote|napisał\(a\)|napisał|pisze)\s*:",
    re.IGNORECASE | re.MULTILINE,
)


# Only the first rules are checked for a quote header below them; a rule further down in a
# long newsletter is layout, and checking each one would cost time quadratic in its size.
_MAX_RULES_CHECKED = 20


def strip_html_quotes(html: str) -> str:
    """Remove quoted history from an HTML body.

    Returns the very same string object when nothing was removed or the HTML cannot be
    parsed, so a caller can skip converting it a second time.
    """
    import lxml.etree
    import lxml.html

    if not html.strip():
        return html
    try:
        document = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError) as error:
        logger.debug("HTML quote stripping skipped: %s", error)
        return html

    removed = False
    rules_checked = 0
    for element in document.xpath(_HTML_CUT_XPATH):
        if element.getparent() is None:
            continue
        if element.tag == "hr":
            rules_checked += 1
            if rules_checked > _MAX_RULES_CHECKED:
                break
            if not _HTML_HEADER_TEXT.search(_text_after(element)[:2000]):
                continue
        _remove_from(element)
        removed = True
        break

    for element in document.xpath(_HTML_QUOTE_XPATH):
        if element.getparent() is not None:
            element.getparent().remove(element)
            removed = True

    if not removed:
        return html
    return lxml.html.tostring(document, encoding="unicode")


def _text_after(element: object) -> str:
    """Return the text that follows ``element`` in document order (bounded)."""
    texts: list[str] = []
    node = element
    while node is not None and sum(map(len, texts)) < 2000:
        sibling = node.getnext()  # type: ignore[attr-defined]
        while sibling is not None:
            texts.append(sibling.text_content())
            sibling = sibling.getnext()
        node = node.getparent()  # type: ignore[attr-defined]
    return "\n".join(texts)


def _remove_from(element: object) -> None:
    """Remove ``element`` and everything after it in document order."""
    node = element
    while node is not None and node.getparent() is not None:  # type: ignore[attr-defined]
        parent = node.getparent()  # type: ignore[attr-defined]
        sibling = node.getnext()  # type: ignore[attr-defined]
        while sibling is not None:
            following = sibling.getnext()
            parent.remove(sibling)
            sibling = following
        node.tail = None  # type: ignore[attr-defined]
        node = parent
    parent = element.getparent()  # type: ignore[attr-defined]
    if parent is not None:
        parent.remove(element)

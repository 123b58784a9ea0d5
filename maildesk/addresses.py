"""Address headers (From, To, Cc, Reply-To) as senders write them, not as RFC 5322 allows.

Display names come quoted and unquoted, with encoded words that hide commas and quotes
(``=?utf-8?Q?Nowak,_Jan?=``), with brackets (``Kohl | [example.com] <kohl@example.com>``)
and with raw 8-bit bytes. The list is split at top-level commas first, then each
mailbox is read on its own, so one odd entry cannot swallow the others.

Encoded words are decoded in display names only. RFC 2047 (section 5) forbids them in
an address, and a receiving server checks SPF and DMARC against the literal text, so
``=?utf-8?q?agent=40example.com?=`` must never become ``agent@example.com`` here.
"""

from __future__ import annotations

import email.utils
import re

from maildesk.charsets import decode_header_bytes, decode_rfc2047, unfold

_ENCODED_WORD = r"=\?[^?\s]{1,75}\?[QqBb]\?[^?\r\n]{0,2000}?\?="
_ENCODED_RUN = re.compile(rf"{_ENCODED_WORD}(?:[ \t]*{_ENCODED_WORD})*")
_PLACEHOLDER = re.compile("\x01(\\d+)\x01")

# "Name <address>" with an optional trailing comment; the name may be empty.
_ANGLE_FORM = re.compile(r"^(?P<name>[^<>]*)<(?P<address>[^<>]*)>[^<>]*$", re.DOTALL)
# "Group name:" before the first member of an RFC 5322 group.
_GROUP_START = re.compile(r'^\s*[^"<>()@,:;]+:(?!:)\s*')


def split_address_list(value: str) -> list[str]:
    """Split at commas that are outside quotes, angle brackets and comments."""
    chunks: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    angle = 0
    comment = 0
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_quotes:
            in_quotes = char != '"'
        elif char == '"':
            in_quotes = True
        elif char == "(":
            comment += 1
        elif char == ")" and comment:
            comment -= 1
        elif char == "<" and not comment:
            angle += 1
        elif char == ">" and angle and not comment:
            angle -= 1
        elif char in ",;" and not angle and not comment:
            chunks.append("".join(current))
            current = []
            continue
        current.append(char)
    chunks.append("".join(current))
    return [chunk for chunk in chunks if chunk.strip()]


_COMMENT = re.compile(r"\([^()]*\)")


def _unquote(name: str) -> str:
    """Remove the quotes around a display name, or the comments from an unquoted one."""
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    elif "(" in name:
        name = _COMMENT.sub(" ", name).strip() or name
    return name.strip().strip("'").strip()


def _protect_encoded_words(value: str, words: list[str]) -> str:
    """Replace each run of encoded words by a placeholder, so no comma inside one splits."""

    def protect(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"\x01{len(words) - 1}\x01"

    return _ENCODED_RUN.sub(protect, unfold(value).replace("\x01", ""))


def count_mailboxes(value: str) -> int:
    """Count the entries of an address list, usable or not (a group counts its members)."""
    return len(split_address_list(_protect_encoded_words(value, [])))


def parse_address_header(
    value: str, default_charset: str, hint: str | None = None, *,
    unreadable: list[str] | None = None,
) -> list[tuple[str, str]]:
    """Return (display name, address) pairs from one raw header value, decoded.

    Pairs whose address has no ``@``, or nothing before or after it, are left out: a bare
    local part or domain is not a mailbox the desk can reply to. Each address is in
    the spelling of ``canonical_addr_spec``. A display name equal to its address is
    returned empty. An entry that the standard library's parser cannot read is left out
    too, and its text is appended to ``unreadable`` when that list is given.
    """
    words: list[str] = []

    def literal(text: str) -> str:
        return _PLACEHOLDER.sub(lambda match: words[int(match.group(1))], text)

    def restore(text: str) -> str:
        return decode_rfc2047(literal(text), default_charset, hint)

    def restore_address(text: str) -> str:
        # Raw 8-bit bytes (an internationalised address) are read; encoded words are not.
        raw = literal(text).encode("utf-8", errors="surrogateescape")
        return decode_header_bytes(raw, default_charset, hint)

    protected = _protect_encoded_words(value, words)
    pairs: list[tuple[str, str]] = []
    for chunk in split_address_list(protected):
        chunk = _GROUP_START.sub("", chunk, count=1) if ":" in chunk.split("<", 1)[0] else chunk
        angle = _ANGLE_FORM.match(chunk.strip())
        if angle:
            found = [(angle.group("name"), angle.group("address"))]
        else:
            try:
                found = email.utils.getaddresses([chunk])
            except RecursionError:
                # The parser recurses once per nested comment, so a few hundred "("
                # exhaust the stack. Only this entry is lost, not the mail.
                if unreadable is not None:
                    unreadable.append(literal(chunk))
                continue

        for display, address in found:
            # NOTE: white space inside a quoted local part goes too, so "jan kowalski"@
            # becomes another mailbox. The outbox separates recipients by spaces.
            address = canonical_addr_spec("".join(restore_address(address).split()).strip("<>"))
            local, _at, domain = address.rpartition("@")
            if not local or not domain:
                continue
            # Quotes and comments are removed before decoding, so that a parenthesis or a
            # quote inside an encoded word stays part of the name.
            display = restore(_unquote(display)).replace("\r", " ").replace("\n", " ").strip()
            if display.strip("<>").lower() == address.lower():
                display = ""
            pairs.append((display, address))
    return pairs


# RFC 5322 atext, with every non-ASCII character as RFC 6532 allows. It is written as
# the ASCII characters it leaves out. A class with the range up to U+10FFFF took 13-46 ms
# to compile at every start, because the re module's compiler walks such a range one
# character at a time while it builds its lookup table.
_ATEXT = r'[^\x00-\x20"(),.:;<>@\[\\\]\x7f]'
# A domain's letters, digits and hyphens, or any non-ASCII character, written the same way.
_DOMAIN_CHARACTER = r"[^\x00-\x2c./:-@\[-\x60{-\x7f]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# The source route of RFC 5322's obs-angle-addr, "@relay.example,@other.example:".
_OBSOLETE_ROUTE = re.compile(r"^@[^:\"]*:")
# An address already in its one spelling: a dot-atom, "@", a domain without a trailing
# dot. Almost every address is one, and the character walk below is left out for it.
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@{_DOMAIN_CHARACTER}+"
                            rf"(?:\.{_DOMAIN_CHARACTER}+)*")


def canonical_addr_spec(address: str) -> str:
    """Return one spelling of the mailbox that ``address`` names, or ``address`` unchanged.

    RFC 5322 spells one mailbox many ways: ``"jan"@example.org``, ``"j\\an"@example.org``,
    ``jan(comment)@example.org``, ``jan@example.org.`` and, in angle brackets, the source
    route ``@relay.example:jan@example.org`` all reach ``jan@example.org``. The desk
    compares addresses as text, for the requester, agents, blocked senders, bounce marks
    and the hourly limits of automatic mail. So comments and a route are removed, quoted
    words are unquoted and joined with their dots (``"j"."an"`` is ``j.an``), and the
    local part is quoted again only when it is no dot-atom. The domain loses its trailing
    dot. An address the function cannot read (an unclosed quote, a second ``@`` outside
    quotes) is returned as it came.
    """
    if _PLAIN_ADDRESS.fullmatch(address):
        return address
    text = _OBSOLETE_ROUTE.sub("", _without_comments(address), count=1)
    words: list[str] = []
    current: list[str] = []
    quoted = escaped = was_quoted = False
    at = -1
    for index, char in enumerate(text):
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            was_quoted = True
        elif quoted:
            current.append(char)
        elif char == ".":
            words.append("".join(current))
            current = []
        elif char == "@":
            at = index
            break
        else:
            current.append(char)
    if at < 0 or quoted:
        return address
    words.append("".join(current))

    domain = text[at + 1:].removesuffix(".")
    if not domain or "@" in domain or '"' in domain:
        return address
    local = ".".join(words)
    if _DOT_ATOM.fullmatch(local):
        return f"{local}@{domain}"
    if not was_quoted:
        return address  # no dot-atom, and nothing to unquote: the sender's text stays
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + f'"@{domain}'


def _without_comments(text: str) -> str:
    """Remove RFC 5322 comments (nested parentheses) outside quoted strings."""
    output: list[str] = []
    depth = 0
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
            if not depth:
                output.append(char)
            continue
        if char == "\\":
            escaped = True
            if not depth:
                output.append(char)
            continue
        if quoted:
            quoted = char != '"'
            output.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth:
            quoted = char == '"'
            output.append(char)
    return "".join(output)


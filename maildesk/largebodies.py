"""Keep large base64 bodies out of the standard library's parser.

``email.feedparser`` splits every body into one string per line while it parses. For a
mail with a 5 MiB attachment (6.8 MiB of base64) that peaks at about 53 MiB above the
mail itself (Python 3.11, ``compat32``, measured with tracemalloc). ``hollow`` replaces
each large base64 body with a short marker before parsing. ``restore`` then points each
part whose body was taken out at its byte range in the raw mail. ``LargeBodyMessage``
reads the text from there only when code calls ``get_payload``, and
``mimeparts.payload_bytes`` decodes such a body straight from the raw mail, so the
attachment's base64 text is never copied.

A body is replaced only when it is made of base64 characters and line breaks alone and
ends at a line starting with ``--`` or at the end of the mail. Such a run contains no
header field and no boundary line, so the parser finds the same parts either way.
"""

from __future__ import annotations

import email.message
import re
import secrets
from typing import Any

# Mails below this size are parsed as they are; the saving would not pay for the scan.
LARGE_MAIL = 1 << 20
# A body shorter than this stays in the mail.
LARGE_BODY = 256 << 10

_BASE64_HEADER = re.compile(rb"(?im)^content-transfer-encoding:[ \t]*base64[ \t]*\r?$")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=\r\n]*")
_MARKER_PREFIX = "maildesk-large-body-"


def hollow(raw: bytes) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """Return ``raw`` with its large base64 bodies replaced by markers, and where they were.

    The map gives each marker the (start, end) byte range of its body in ``raw``.
    A mail with no such body comes back unchanged with an empty map.
    """
    if len(raw) < LARGE_MAIL:
        return raw, {}

    token = secrets.token_hex(8)
    pieces: list[bytes] = []
    stubs: dict[str, tuple[int, int]] = {}
    position = 0
    # Both searches are reused for the headers that share them, so a mail made of
    # nothing but Content-Transfer-Encoding lines still costs linear time.
    blank: re.Match[bytes] | None = None
    boundary_line = -1
    for match in _BASE64_HEADER.finditer(raw):
        if match.start() < position:
            continue
        if blank is None or blank.start() < match.end():
            blank = _BLANK_LINE.search(raw, match.end())
            if blank is None:
                break
        start = blank.end()
        if boundary_line < start:
            boundary_line = _next_boundary_line(raw, start)
        end = _body_end(raw, start, boundary_line)
        if end - start < LARGE_BODY or not _BASE64_TEXT.fullmatch(raw, start, end):
            continue

        # The "-end" suffix keeps one marker from being the prefix of another.
        marker = f"{_MARKER_PREFIX}{token}-{len(stubs)}-end"
        pieces.append(raw[position:start])
        pieces.append(marker.encode("ascii"))
        stubs[marker] = (start, end)
        position = end

    if not stubs:
        return raw, {}
    pieces.append(raw[position:])
    return b"".join(pieces), stubs


def _next_boundary_line(raw: bytes, start: int) -> int:
    """Return the index of the line break before the next line starting with ``--``."""
    found = raw.find(b"\n--", start)
    return len(raw) if found < 0 else found


def _body_end(raw: bytes, start: int, boundary_line: int) -> int:
    """Return where the body starting at ``start`` ends: before the line break of ``--``."""
    end = boundary_line
    if start < end < len(raw) and raw[end - 1] == ord("\r"):
        end -= 1
    return end


class LargeBodyMessage(email.message.Message):
    """A ``compat32`` message part whose large body may still lie in the raw mail."""

    # (raw mail, start, end) of the body while it has not been read into the part.
    large_body: tuple[bytes, int, int] | None = None

    def get_payload(self, i: int | None = None, decode: bool = False) -> Any:
        if self.large_body is not None:
            raw, start, end = self.large_body
            self.large_body = None
            self.set_payload(str(memoryview(raw)[start:end], "ascii"))
        try:
            return super().get_payload(i, decode)  # type: ignore[call-overload]
        except ValueError:
            payload = getattr(self, "_payload", None)
            if decode or i is not None or not isinstance(payload, str):
                raise
            # Without decode, the standard library reads 8-bit text in the part's charset
            # label and catches only LookupError, but a label with a NUL or an 8-bit byte
            # makes codecs.lookup() raise ValueError. Read it as an unknown charset.
            return payload.encode("ascii", "surrogateescape").decode("ascii", "replace")


def restore(message: email.message.Message, raw: bytes,
            stubs: dict[str, tuple[int, int]]) -> None:
    """Give back to the parsed ``message`` the bodies that ``hollow`` took out.

    A part whose whole body was taken out keeps a reference to its range in ``raw``
    (``LargeBodyMessage``). A marker inside a longer body is replaced by the text at once.
    """
    if not stubs:
        return
    for part in message.walk():
        payload = part._payload  # type: ignore[attr-defined]  # get_payload reads the body
        if isinstance(payload, str) and _MARKER_PREFIX in payload:
            if payload in stubs and isinstance(part, LargeBodyMessage):
                start, end = stubs[payload]
                part.large_body = (raw, start, end)
            else:
                part.set_payload(_filled(payload, raw, stubs))
        # A body can also end up in the text around the parts, which mimewalk parses
        # again when a nested multipart reuses its parent's boundary.
        if part.preamble and _MARKER_PREFIX in part.preamble:
            part.preamble = _filled(part.preamble, raw, stubs)
        if part.epilogue and _MARKER_PREFIX in part.epilogue:
            part.epilogue = _filled(part.epilogue, raw, stubs)


def _filled(text: str, raw: bytes, stubs: dict[str, tuple[int, int]]) -> str:
    """Return ``text`` with every marker in it replaced by its body from ``raw``."""
    view = memoryview(raw)
    for marker, (start, end) in stubs.items():
        if marker in text:
            text = text.replace(marker, str(view[start:end], "ascii"))
    return text

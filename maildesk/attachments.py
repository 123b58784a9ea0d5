"""Attachment file names that are safe on disk, and attachments hidden inside other formats.

A file name from a mail is attacker-controlled: it may hold a path (``../../etc/passwd``),
control or bidirectional-override characters that disguise the extension, a reserved
Windows device name, or nothing at all. ``sanitize_filename`` returns a name that is a
single path component on POSIX and Windows; ``UniqueNames`` keeps names distinct
within one mail.
"""

from __future__ import annotations

import binascii
import logging
import mimetypes
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from maildesk.charsets import decode_bytes
from maildesk.i18n import _

logger = logging.getLogger(__name__)

MAX_FILENAME_BYTES = 200
FALLBACK_STEM = "attachment"

_WINDOWS_FORBIDDEN = re.compile(r'[<>:"/\\|?*]')
_WHITESPACE_CHARS = re.compile(r"[^\S ]")
_RESERVED_WINDOWS = re.compile(
    r"^(?:con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)$", re.I
)

# Types Python's mimetypes maps to odd or missing extensions.
_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "text/rfc822-headers": ".txt",
    "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s",
    "application/pkcs7-mime": ".p7m",
    "application/x-pkcs7-mime": ".p7m",
    "application/pgp-signature": ".asc",
    "application/pgp-encrypted": ".asc",
    "application/ms-tnef": ".dat",
    "application/octet-stream": ".bin",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "application/x-zip-compressed": ".zip",
}


def stem_for(content_type: str) -> str:
    """Return a readable file name stem for a part that came without a name."""
    content_type = content_type.lower()
    if content_type == "text/calendar":
        return "invite"
    if content_type == "text/html":
        return "document"
    if content_type in ("message/rfc822", "message/global"):
        return "message"
    if content_type.startswith("message/"):  # delivery-status, feedback-report, ...
        return content_type.split("/", 1)[1]
    if content_type == "text/rfc822-headers":
        return "headers"
    maintype = content_type.split("/", 1)[0]
    if maintype in ("image", "video", "audio"):
        return maintype
    return FALLBACK_STEM


def extension_for(content_type: str) -> str:
    """Return the usual file extension (with the dot) for a MIME type, ``.bin`` if unknown."""
    content_type = content_type.lower()
    known = _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type)
    if known:
        return known
    # Reports (delivery-status, feedback-report) are header-like text.
    return ".txt" if content_type.startswith("message/") else ".bin"


def _split_extension(name: str) -> tuple[str, str]:
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > 16 or " " in extension:
        return name, ""
    return stem, "." + extension


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def sanitize_filename(name: str | None, content_type: str = "application/octet-stream") -> str:
    """Reduce a file name from a mail to one safe, non-empty path component.

    Keeps the sender's spelling where it is harmless (Polish letters, spaces) and
    replaces what a file system or a file manager would misread.
    """
    name = unicodedata.normalize("NFC", name or "")

    # Only the last path component counts, whichever separator the sender used.
    name = re.split(r"[/\\]", name)[-1]

    # Control characters (Cc) and format characters (Cf: bidirectional overrides such as
    # U+202E, zero-width joiners) can hide the real extension from a reader.
    # Tabs and line breaks become spaces, but runs of spaces stay: the name is exact.
    name = _WHITESPACE_CHARS.sub(" ", name)
    name = "".join(char for char in name if unicodedata.category(char) not in ("Cc", "Cf", "Cs"))
    name = _WINDOWS_FORBIDDEN.sub("_", name).strip(" .")

    stem, extension = _split_extension(name)
    if _RESERVED_WINDOWS.match(stem.strip()):
        stem = "_" + stem
    if not stem.strip(" ._"):
        stem = stem_for(content_type)
        extension = extension or extension_for(content_type)

    extension = _truncate_utf8(extension, 20)
    stem = _truncate_utf8(stem, MAX_FILENAME_BYTES - len(extension.encode("utf-8")))
    return (stem if stem.strip(" .") else FALLBACK_STEM) + extension


def path_in_directory(directory: Path, name: str, content_type: str) -> Path:
    """Return where a file named ``name`` from a mail goes inside ``directory``.

    The name is sanitized again, because a row written by an older maildesk or by hand
    may hold anything, and the result is checked to stay a direct child of
    ``directory``. Raises ValueError when it would not.
    """
    target = directory / sanitize_filename(name, content_type)
    if target.parent.resolve() != directory.resolve() or target.name in ("", ".", ".."):
        raise ValueError(_("the file name {name!r} leads out of the directory {directory}")
                         .format(name=name, directory=directory))
    return target


class UniqueNames:
    """Hand out file names that stay distinct within one mail: ``name (2).ext`` and on.

    Names are compared case-insensitively because Windows and macOS file systems do.
    The next number is kept per name, so thousands of parts with one name cost linear
    time, not a count from 2 for each.
    """

    def __init__(self) -> None:
        self._taken: set[str] = set()
        self._next_number: dict[tuple[str, str], int] = {}

    def claim(self, name: str) -> str:
        """Return ``name`` or the first free numbered variant of it, and mark it taken."""
        candidate = name
        stem, extension = _split_extension(name)
        key = (stem.casefold(), extension.casefold())
        number = self._next_number.get(key, 2)
        while candidate.casefold() in self._taken:
            candidate = f"{stem} ({number}){extension}"
            number += 1
        self._next_number[key] = number
        self._taken.add(candidate.casefold())
        return candidate


@dataclass(frozen=True)
class UuencodedFile:
    """One ``begin ... end`` block found in a text body."""

    filename: str
    content: bytes
    start: int
    end: int


_UU_BEGIN = re.compile(r"^begin(?:-base64)? [0-7]{3,4} ([^\r\n]+?)[ \t]*\r?$", re.MULTILINE)
_UU_END = re.compile(r"^end[ \t]*\r?$", re.MULTILINE)


def find_uuencoded(text: str) -> list[UuencodedFile]:
    """Find uuencoded files in a text body (Lotus Notes and old clients still send them).

    A block is taken only when every line between ``begin`` and ``end`` decodes, so
    prose that happens to start with "begin 644" stays text.
    """
    found: list[UuencodedFile] = []
    position = 0
    while True:
        begin = _UU_BEGIN.search(text, position)
        if begin is None:
            return found
        end = _UU_END.search(text, begin.end())
        if end is None:
            return found

        content = _decode_uu_lines(text[begin.end() : end.start()].splitlines())
        if content is not None:
            found.append(UuencodedFile(begin.group(1).strip(), content, begin.start(), end.end()))
        position = end.end()


def _decode_uu_lines(lines: Iterable[str]) -> bytes | None:
    chunks: list[bytes] = []
    for line in lines:
        line = line.rstrip("\r")
        if not line or line == "`":
            continue
        try:
            chunks.append(binascii.a2b_uu(line))
        except binascii.Error:
            # Some encoders pad lines wrongly; decode the length the first byte promises.
            try:
                length = ((ord(line[0]) - 32) & 63) * 4 // 3
                chunks.append(binascii.a2b_uu(line[: length + 1]))
            except (binascii.Error, IndexError, ValueError):
                return None
        except (ValueError, UnicodeEncodeError):
            return None
    return b"".join(chunks)


@dataclass(frozen=True)
class TnefContent:
    """The files inside a ``winmail.dat`` and the body Outlook wrote into it."""

    files: tuple[tuple[str, bytes], ...]
    text: str | None
    html: str | None
    rtf: bytes | None


def unpack_tnef(data: bytes) -> TnefContent:
    """Unpack an ``application/ms-tnef`` part with tnefparse.

    Raises ValueError when the bytes are not TNEF or are too damaged to read.
    """
    from tnefparse.tnef import TNEF  # imported here: only Outlook/Exchange mail needs it

    try:
        tnef = TNEF(data, do_checksum=False)
    except ValueError:
        raise
    except Exception as error:  # tnefparse raises struct.error, IndexError, KeyError
        raise ValueError(f"damaged TNEF data: {error!r}") from error

    files = []
    for attachment in tnef.attachments:
        try:
            name = attachment.long_filename()
        except Exception:  # an undecodable name property: fall back to the 8.3 name
            name = ""
        if isinstance(name, bytes):
            name = name.decode("utf-8", errors="replace")
        content = attachment.data if isinstance(attachment.data, bytes) else b""
        files.append((str(name or "").strip("\x00"), content))

    codepage = tnef.codepage if isinstance(tnef.codepage, str) else None
    text = _tnef_text(tnef.body, codepage)
    # NOTE: tnefparse returns the RTF body still compressed unless the compressed_rtf
    # package is installed; a TNEF mail whose only body is RTF then yields no text.
    html = _tnef_text(tnef.htmlbody, codepage)
    rtf = None
    try:
        candidate = tnef.rtfbody
    except Exception:  # compressed RTF that does not decompress
        candidate = None
    if isinstance(candidate, bytes) and candidate.lstrip().startswith(b"{\\rtf"):
        rtf = candidate
    return TnefContent(tuple(files), text, html, rtf)


def _tnef_text(value: object, codepage: str | None) -> str | None:
    """Return a TNEF body as text; bytes are in the message's OEM code page."""
    if isinstance(value, bytes):
        value = decode_bytes(value.rstrip(b"\x00"), codepage)
    if not isinstance(value, str):
        return None
    value = value.strip("\x00")
    return value or None

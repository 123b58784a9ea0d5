"""Byte ranges of MIME parts in the raw mail, which the stdlib parser does not keep.

A forwarded mail (message/rfc822) is stored byte for byte, so its bytes are cut from the
raw input instead of being re-serialised, which would refold headers and change line
endings.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Iterator, Mapping
from typing import TypeVar

_HEADER_END = re.compile(rb"\r?\n\r?\n|\r\r")
_NEWLINE = re.compile(rb"\r?\n|\r")
_DASH_LINE = re.compile(rb"(?:^|\r?\n|\r)--([^\r\n]*)")
Buffer = TypeVar("Buffer", bytes, memoryview)


class RawBodies(Mapping[int, bytes]):
    """Part bodies as views into the raw mail; a body is copied only when it is read.

    Every body of a nested part lies inside its parent's, so copying them all would hold
    a large attachment once per level of nesting.
    """

    def __init__(self, views: dict[int, memoryview]) -> None:
        self._views = views

    def __getitem__(self, key: int) -> bytes:
        return bytes(self._views[key])

    def __iter__(self) -> Iterator[int]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)


def locate_raw_bodies(
    raw: bytes, message: email.message.Message, max_depth: int = 20
) -> RawBodies:
    """Map each part (by ``id``) to the raw bytes of its body as they are in ``raw``.

    The stdlib parser does not keep byte offsets; this repeats its boundary split on
    bytes so a forwarded mail can be stored byte for byte. Where the split disagrees
    with the parser (broken boundaries), that subtree is left out of the map and the
    caller re-serialises it instead.
    """
    found: dict[int, memoryview] = {}
    _locate(memoryview(raw), message, found, levels_left=max_depth)
    return RawBodies(found)


def _split_header(raw: memoryview) -> memoryview | None:
    match = _HEADER_END.search(raw)
    if match is None:
        return None
    return raw[match.end() :]


def _locate(
    raw: memoryview, part: email.message.Message, found: dict[int, memoryview],
    levels_left: int,
) -> None:
    if levels_left < 0:
        return
    body = _split_header(raw)
    if body is None:
        return
    found[id(part)] = body

    # is_multipart first: get_payload on a leaf would read a large body into memory.
    if not part.is_multipart():
        return
    payload = part.get_payload()
    if not isinstance(payload, list):
        return

    if part.get_content_maintype() == "message":
        encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        if len(payload) == 1 and encoding in ("", "7bit", "8bit", "binary"):
            _locate_message(body, payload[0], found, levels_left)
        return

    boundary = part.get_boundary()
    if not boundary:
        return
    pieces = split_multipart(body, boundary.encode("utf-8", errors="surrogateescape"))
    if pieces is None or len(pieces) != len(payload):
        return
    for piece, child in zip(pieces, payload, strict=True):
        if isinstance(child, email.message.Message):
            _locate(piece, child, found, levels_left - 1)


def _locate_message(body: memoryview, inner: object, found: dict[int, memoryview],
                    levels_left: int) -> None:
    if isinstance(inner, email.message.Message):
        # The inner message's own map entry is its body; the .eml needs the whole of it,
        # which is exactly the body of the message/rfc822 part.
        _locate(body, inner, found, levels_left - 1)


def split_multipart(body: Buffer, boundary: bytes) -> list[Buffer] | None:
    """Split a multipart body at its boundary lines as the stdlib does; None without any.

    The pieces are slices of ``body``: views when it is a memoryview, else copies.
    """
    # One pattern finds every line that starts with "--", and the boundary is compared
    # in Python. Each mail has its own boundary, so a pattern per boundary was compiled
    # for every mail, which cost more than the search.
    pieces: list[Buffer] = []
    start: int | None = None
    for match in _DASH_LINE.finditer(body):
        rest = match.group(1)
        if not rest.startswith(boundary):
            continue
        tail = rest[len(boundary):].rstrip(b" \t")  # "--" closes, "" separates
        if tail not in (b"", b"--"):
            continue
        if start is not None:
            pieces.append(body[start : match.start()])
        if tail:
            return pieces
        newline = _NEWLINE.match(body, match.end())
        start = newline.end() if newline else match.end()
    if start is not None:
        pieces.append(body[start:])
    return pieces or None

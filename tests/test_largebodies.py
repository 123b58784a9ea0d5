"""Large base64 bodies parsed around the standard library give the same result as through it."""

from __future__ import annotations

import base64
import email
import email.policy
import os
import re

import pytest

from maildesk import largebodies
from maildesk.mimeparts import payload_bytes
from maildesk.parse import ParsedMessage, parse_message

CONTENT = os.urandom(900 * 1024)
ENCODED = base64.encodebytes(CONTENT).replace(b"\n", b"\r\n")


def multipart(*parts: bytes, boundary: bytes = b"b1") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + b"--" + boundary + b"--\r\n"


def headers(content_type: bytes) -> bytes:
    return (b"From: Jan Kowalski <jan@example.org>\r\nTo: helpdesk@example.com\r\n"
            b"Subject: Zrzut ekranu\r\nMessage-ID: <large@example.org>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: " + content_type + b"\r\n\r\n")


def attachment(name: bytes, encoded: bytes = ENCODED) -> bytes:
    return (b"Content-Type: application/octet-stream; name=" + name + b"\r\n"
            b"Content-Disposition: attachment; filename=" + name + b"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded)


TEXT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nW za\xc5\x82\xc4\x85czniku zrzut.\r\n"

ATTACHED = headers(b'multipart/mixed; boundary="b1"') + multipart(
    TEXT, attachment(b"a.bin"), attachment(b"b.bin"))
FORWARDED = headers(b'multipart/mixed; boundary="b1"') + multipart(
    TEXT,
    b"Content-Type: message/rfc822\r\n\r\n" + headers(b'multipart/mixed; boundary="b2"')
    + multipart(TEXT, attachment(b"inner.bin"), boundary=b"b2"),
)
SINGLE_PART = (headers(b"application/pdf; name=raport.pdf")[:-2]
               + b"Content-Transfer-Encoding: base64\r\n\r\n" + ENCODED)
PADDING_INSIDE = headers(b'multipart/mixed; boundary="b1"') + multipart(
    TEXT, attachment(b"a.bin", ENCODED[:400_000] + b"==\r\n" + ENCODED[400_000:]))
HEADER_IN_TEXT = headers(b'multipart/mixed; boundary="b1"') + multipart(
    b"Content-Type: text/plain\r\n\r\nQuoted:\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + ENCODED,
)


def parsed_both_ways(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[ParsedMessage,
                                                                          ParsedMessage]:
    hollowed = parse_message(raw)
    monkeypatch.setattr(largebodies, "LARGE_MAIL", 1 << 40)
    whole = parse_message(raw)
    return hollowed, whole


@pytest.mark.parametrize("raw", [ATTACHED, FORWARDED, SINGLE_PART, PADDING_INSIDE,
                                 HEADER_IN_TEXT],
                         ids=["attached", "forwarded", "single-part", "padding-inside",
                              "header-in-text"])
def test_largebodies_parse_matches_stdlib(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert largebodies.hollow(raw)[1], "the sample must contain a body to take out"

    hollowed, whole = parsed_both_ways(raw, monkeypatch)

    assert hollowed.text == whole.text
    assert hollowed.headers == whole.headers
    assert [(a.filename, a.content_type, a.size) for a in hollowed.attachments] == [
        (a.filename, a.content_type, a.size) for a in whole.attachments]
    assert [a.content for a in hollowed.attachments] == [a.content for a in whole.attachments]


def test_largebodies_attachment_content_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    hollowed, _whole = parsed_both_ways(ATTACHED, monkeypatch)

    assert [a.content for a in hollowed.attachments] == [CONTENT, CONTENT]


def test_largebodies_forwarded_mail_kept_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    hollowed, _whole = parsed_both_ways(FORWARDED, monkeypatch)

    forwarded = [a for a in hollowed.attachments if a.content_type == "message/rfc822"]
    assert len(forwarded) == 1
    assert ENCODED in forwarded[0].content


def test_largebodies_skeleton_is_small() -> None:
    skeleton, stubs = largebodies.hollow(ATTACHED)

    assert len(stubs) == 2
    assert len(skeleton) < 2_000
    for start, end in stubs.values():
        assert ATTACHED[start:end].rstrip(b"\r\n") == ENCODED.rstrip(b"\r\n")


def test_largebodies_small_mail_unchanged() -> None:
    raw = headers(b'multipart/mixed; boundary="b1"') + multipart(
        TEXT, attachment(b"a.bin", ENCODED[:10_000]))

    assert largebodies.hollow(raw) == (raw, {})


def test_largebodies_text_with_other_characters_stays() -> None:
    body = ENCODED[:300_000] + b"to nie jest base64!\r\n" + ENCODED[300_000:]
    raw = headers(b'multipart/mixed; boundary="b1"') + multipart(attachment(b"a.bin", body))

    assert largebodies.hollow(raw) == (raw, {})


def test_largebodies_decoded_without_reading_text() -> None:
    skeleton, stubs = largebodies.hollow(ATTACHED)
    message = email.message_from_bytes(skeleton, largebodies.LargeBodyMessage,
                                       policy=email.policy.compat32)
    largebodies.restore(message, ATTACHED, stubs)
    leaves = [part for part in message.walk() if not part.is_multipart()]

    contents = [payload_bytes(part) for part in leaves[1:]]

    assert contents == [CONTENT, CONTENT]
    assert all(part.large_body is not None for part in leaves[1:])


def test_largebodies_text_read_on_demand() -> None:
    skeleton, stubs = largebodies.hollow(ATTACHED)
    message = email.message_from_bytes(skeleton, largebodies.LargeBodyMessage,
                                       policy=email.policy.compat32)
    largebodies.restore(message, ATTACHED, stubs)
    attachment = [part for part in message.walk() if not part.is_multipart()][1]

    text = attachment.get_payload()

    assert text.encode("ascii").rstrip(b"\r\n") == ENCODED.rstrip(b"\r\n")
    assert attachment.get_payload(decode=True) == CONTENT
    assert attachment.large_body is None


def large_attachment(index: int, size: int = 210 * 1024, tail: bytes = b"") -> bytes:
    encoded = base64.encodebytes(os.urandom(size)).replace(b"\n", b"\r\n")
    return attachment(b"f%d.bin" % index, encoded + tail)


def test_largebodies_body_in_epilogue(monkeypatch: pytest.MonkeyPatch) -> None:
    # A nested multipart that reuses its parent's boundary leaves the later parts in
    # its epilogue, which mimewalk parses again.
    raw = headers(b'multipart/mixed; boundary="b1"') + (
        b"--b1\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
        + multipart(TEXT) + b"--b1\r\n" + attachment(b"big.bin") + b"\r\n--b1--\r\n")
    assert largebodies.hollow(raw)[1]

    hollowed, whole = parsed_both_ways(raw, monkeypatch)

    assert [a.filename for a in whole.attachments] == ["big.bin"]
    assert [a.content for a in hollowed.attachments] == [CONTENT]


def test_largebodies_markers_are_not_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Eleven bodies: the last part's payload contains its marker and more text, so markers
    # are replaced inside text, where "-1" must not match "-10".
    parts = [large_attachment(index) for index in range(10)]
    parts.append(large_attachment(10, tail=b"\r\n--not-a-boundary"))
    raw = headers(b'multipart/mixed; boundary="b1"') + multipart(*parts)
    assert len(largebodies.hollow(raw)[1]) == 11

    hollowed, whole = parsed_both_ways(raw, monkeypatch)

    assert [a.content for a in hollowed.attachments] == [a.content for a in whole.attachments]


class CountingPattern:
    """Wrap a compiled pattern and count its searches."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.searches = 0

    def search(self, *args: object) -> re.Match[bytes] | None:
        self.searches += 1
        return self.pattern.search(*args)


def test_largebodies_header_lines_share_searches(monkeypatch: pytest.MonkeyPatch) -> None:
    # Thousands of Content-Transfer-Encoding lines before one blank line: searching
    # from each of them to the blank line would take quadratic time.
    counting = CountingPattern(largebodies._BLANK_LINE)
    monkeypatch.setattr(largebodies, "_BLANK_LINE", counting)
    raw = (headers(b"text/plain")[:-2] + b"Content-Transfer-Encoding: base64\r\n" * 4000
           + b"\r\n" + ENCODED)

    skeleton, stubs = largebodies.hollow(raw)

    assert counting.searches == 1
    assert len(stubs) == 1
    assert len(skeleton) < len(raw)

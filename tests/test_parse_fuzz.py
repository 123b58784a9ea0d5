"""Mutated and truncated real mails: parse_message returns or raises ParseError, nothing else."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maildesk.charsets import decode_bytes, normalize_charset
from maildesk.errors import ParseError
from maildesk.parse import ParsedMessage, parse_message

DATA = Path(__file__).resolve().parent / "data" / "corpus"
# Small, structurally varied seeds: multipart, encoded headers, signed, uuencoded, TNEF-free.
SEEDS = [
    (DATA / relative).read_bytes()
    for relative in (
        "flanker/enclosed.eml",
        "flanker/torture-part.eml",
        "flanker/relative.eml",
        "flanker/from-encoding.eml",
        "flanker/signed.eml",
        "spamscope-mail-parser/mail_test_18",
        "django-helpdesk/all-special-chars.eml",
        "cpython-test-email/msg_02.txt",
    )
]


@st.composite
def mutated_mail(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "delete", "truncate"]))
        position = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(min_value=1, max_value=255))
        elif action == "cut":
            data = data[position:] + data[:position]
        elif action == "insert":
            data[position:position] = draw(
                st.sampled_from(
                    [
                        b"\x00",
                        b"\r\n",
                        b"--",
                        b"=?utf-8?B?",
                        b"?=",
                        b"\xff\xfe",
                        b"\n\n",
                        b"Content-Type: multipart/mixed; boundary=x\n",
                        b"begin 644 a\n",
                        # Charset labels that codecs.lookup() rejects with ValueError.
                        b"Subject: =?utf-8\xa0?Q?a=C5=82?=\n",
                        b'Content-Type: text/plain; charset="utf\x00-8"\n',
                        b"Content-Disposition: attachment; filename*=utf-8\xa0''a%C5%82\n",
                        b"charset=\xff",
                    ]
                )
            )
        elif action == "delete":
            del data[position : position + draw(st.integers(min_value=1, max_value=200))]
        else:
            data = data[:position]
    return bytes(data)


@settings(
    max_examples=120,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated_mail())
def test_parse_message_mutated_mail(raw: bytes) -> None:
    try:
        result = parse_message(raw)
    except ParseError:
        return

    assert isinstance(result, ParsedMessage)
    assert "\x00" not in result.text
    assert "\n" not in result.subject


@settings(max_examples=60, deadline=2000)
@given(st.binary(max_size=2000))
def test_parse_message_random_bytes(raw: bytes) -> None:
    try:
        result = parse_message(raw)
    except ParseError:
        return

    assert isinstance(result, ParsedMessage)


@settings(max_examples=200, deadline=2000)
@given(st.text(max_size=40), st.binary(max_size=200))
def test_charset_label_any_text(label: str, data: bytes) -> None:
    codec = normalize_charset(label)

    assert codec is None or isinstance(codec, str)
    assert isinstance(decode_bytes(data, label), str)

"""parse_message and its helpers on small mails written for one behaviour each."""

from __future__ import annotations

import base64
import logging
import re

import pytest

from maildesk.attachments import UniqueNames, sanitize_filename
from maildesk.charsets import decode_bytes, decode_rfc2047, normalize_charset
from maildesk.errors import ParseError
from maildesk.htmltext import (
    MAX_HTML_DEPTH,
    exceeds_html_limits,
    html_to_text,
    sanitize_html,
    strip_tags,
)
from maildesk.parse import clean_text, parse_message, repair_header_block, single_line


def mail(headers: str, body: bytes = b"Tre\xc5\x9b\xc4\x87.\r\n") -> bytes:
    head = "From: Jan Nowak <jan@example.org>\r\nTo: helpdesk@example.com\r\n" + headers
    return head.encode("utf-8", errors="surrogateescape") + b"\r\n" + body


@pytest.mark.parametrize(
    "label", ["cp-1250", "cp_1250", "win-1250", "x-cp1250", "Windows-1250", "CP1250"]
)
def test_normalize_charset_windows_1250_labels(label: str) -> None:
    assert normalize_charset(label) == "cp1250"


@pytest.mark.parametrize("label", ["base64", "unicode_escape", "rot13", "", "x-unknown", None])
def test_normalize_charset_rejects_non_charsets(label: str | None) -> None:
    assert normalize_charset(label) is None


# codecs.lookup() raises UnicodeEncodeError or ValueError, not LookupError, for these.
BROKEN_LABELS = ["utf-8\xa0", "utf\x00-8", "utf-8\udca0", "windows-1250\u0142", "\x00"]


@pytest.mark.parametrize("label", BROKEN_LABELS)
def test_normalize_charset_broken_label_unknown(label: str) -> None:
    assert normalize_charset(label) is None


@pytest.mark.parametrize("label", BROKEN_LABELS)
def test_decode_bytes_broken_label_detects_utf8(label: str) -> None:
    assert decode_bytes("Zgłoszenie".encode(), label) == "Zgłoszenie"


def test_decode_rfc2047_broken_label_in_hint() -> None:
    assert decode_rfc2047("Zg\udcb3oszenie", hint="utf\x00-8") == "Zgłoszenie"


@pytest.mark.parametrize("label", [b"utf-8\xa0", b"utf-8\x00"])
def test_parse_message_subject_broken_label(label: bytes) -> None:
    head = b"Subject: =?" + label + b"?Q?Drukarka_nie_dzia=C5=82a?=\r\n"
    raw = mail("").replace(b"To: ", head + b"To: ", 1)

    result = parse_message(raw)

    assert result.subject == "Drukarka nie działa"


@pytest.mark.parametrize("label", [b"utf\x00-8", b"utf-8\xa0", b"windows-1250\xa0"])
def test_parse_message_body_broken_label(label: bytes) -> None:
    raw = mail("Subject: x\r\nContent-Type: text/plain; charset=\"" + "\"\r\n")
    raw = raw.replace(b'charset=""', b'charset="' + label + b'"')

    result = parse_message(raw)

    assert result.text.strip() == "Treść."


@pytest.mark.parametrize("label", [b"utf-8\xa0", b"utf\x00-8"])
def test_parse_message_rfc2231_broken_label(label: bytes) -> None:
    part = _file_part("attachment; filename*=LABEL''b%C5%82%C4%85d.png")
    part = part.replace(b"LABEL", label)

    result = parse_message(_multipart(TEXT_PART, part))

    assert [item.filename for item in result.attachments] == ["błąd.png"]


# The <meta> pattern reads only ASCII word characters, so a NUL is the case to check.
@pytest.mark.parametrize("meta", [b"utf\x00-8", b"utf-8\x00"])
def test_parse_message_html_meta_broken_label(meta: bytes) -> None:
    html = b'<meta charset="' + meta + b'"><p>Zg\xc5\x82oszenie</p>'

    result = parse_message(mail("Subject: x\r\nContent-Type: text/html\r\n", html))

    assert result.text.strip() == "Zgłoszenie"


def test_decode_bytes_windows_1250_labelled_iso_8859_2() -> None:
    data = "„Środa” – źródła".encode("cp1250")

    assert decode_bytes(data, "iso-8859-2") == "„Środa” – źródła"


def test_decode_bytes_iso_8859_2_labelled_windows_1250() -> None:
    data = "Zażółć gęślą jaźń, ąśź".encode("iso8859-2")

    assert decode_bytes(data, "windows-1250") == "Zażółć gęślą jaźń, ąśź"


def test_decode_bytes_unlabelled_tries_utf8_then_default() -> None:
    assert decode_bytes("księgowość".encode(), None) == "księgowość"
    assert decode_bytes("księgowość".encode("cp1250"), None) == "księgowość"


def test_decode_bytes_mime_label_wins_when_valid() -> None:
    assert decode_bytes("Gość".encode(), "utf-8") == "Gość"


def test_decode_rfc2047_word_split_inside_character() -> None:
    value = "=?utf-8?B?RHJ1a2Fya2EgbmEgMi4gcGnE?=\r\n =?utf-8?B?mXRyemU=?="

    assert decode_rfc2047(value) == "Drukarka na 2. piętrze"


def test_decode_rfc2047_raw_utf8_mixed_with_encoded_word() -> None:
    raw = "Zgłoszenie: =?utf-8?Q?awaria_serwera?= już".encode().decode("ascii", "surrogateescape")

    assert decode_rfc2047(raw) == "Zgłoszenie: awaria serwera już"


def test_decode_rfc2047_unknown_charset_label() -> None:
    assert decode_rfc2047("=?cp-1250?Q?Nie_dzia=B3a?=") == "Nie działa"


def test_parse_message_empty_raises() -> None:
    with pytest.raises(ParseError):
        parse_message(b"  \r\n")


def test_parse_message_not_bytes_raises() -> None:
    with pytest.raises(ParseError):
        parse_message("From: x")  # type: ignore[arg-type]


def test_parse_message_missing_message_id_is_none() -> None:
    assert parse_message(mail("Subject: x\r\n")).message_id is None


def test_parse_message_missing_date_uses_received() -> None:
    headers = "Received: from a by b; Fri, 4 Dec 2026 08:02:31 +0100\r\nSubject: x\r\n"

    result = parse_message(mail(headers))

    assert result.date is not None
    assert result.date.isoformat() == "2026-12-04T08:02:31+01:00"


def test_parse_message_8bit_header_without_charset() -> None:
    result = parse_message(
        mail(
            "Subject: Nie dzia\xb3a drukarka\r\n".encode("latin-1").decode(
                "ascii", "surrogateescape"
            )
        )
    )

    assert result.subject == "Nie działa drukarka"


def test_parse_message_from_falls_back_to_reply_to() -> None:
    raw = b"To: helpdesk@example.com\r\nReply-To: <anna@example.org>\r\nSubject: x\r\n\r\nx\r\n"

    result = parse_message(raw)

    assert result.from_address is not None
    assert result.from_address.address == "anna@example.org"


def test_repair_header_block_unindented_fold() -> None:
    raw = b"X-Long: aaa\r\nbbb\r\nSubject: widoczny\r\n\r\nbody\r\n"

    assert parse_message(repair_header_block(raw)).subject == "widoczny"


def test_parse_message_html_only_keeps_links_and_lists() -> None:
    body = b'<p>Zobacz <a href="https://example.org/x">instrukcja</a></p><ul><li>jeden</li><li>dwa</li></ul><script>alert(1)</script>'
    result = parse_message(mail("Subject: x\r\nContent-Type: text/html; charset=utf-8\r\n", body))

    assert "https://example.org/x" in result.text
    assert "* jeden" in result.text
    assert result.html is not None
    assert "<script" not in result.html


def test_parse_message_nul_removed_from_text() -> None:
    result = parse_message(mail("Subject: a\x00b\r\n", b"x\x00y\r\n"))

    assert result.subject == "ab"
    assert result.text.strip() == "xy"


def _multipart(*parts: bytes, subtype: str = "mixed", extra: str = "") -> bytes:
    body = b"".join(b"--b\r\n" + part + b"\r\n" for part in parts) + b"--b--\r\n"
    return mail(
        "Subject: x\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/{subtype}; boundary="b"{extra}\r\n',
        body,
    )


TEXT_PART = b"Content-Type: text/plain; charset=utf-8\r\n\r\nTre\xc5\x9b\xc4\x87"


def _file_part(
    disposition: str, content: bytes = b"abc", content_type: str = "application/pdf"
) -> bytes:
    return (
        f"Content-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + base64.encodebytes(content)


def test_parse_message_rfc2231_continuation_filename() -> None:
    disposition = (
        "attachment;\r\n filename*0*=utf-8''Zrzut%20ekranu%20%E2%80%93;\r\n"
        " filename*1*=%20b%C5%82%C4%85d.png"
    )

    result = parse_message(_multipart(TEXT_PART, _file_part(disposition)))

    assert [item.filename for item in result.attachments] == ["Zrzut ekranu – błąd.png"]


def test_parse_message_path_traversal_filename() -> None:
    result = parse_message(
        _multipart(TEXT_PART, _file_part('attachment; filename="../../etc/passwd"'))
    )

    assert [item.filename for item in result.attachments] == ["passwd"]


def test_parse_message_clashing_filenames_numbered() -> None:
    part = _file_part('attachment; filename="raport.pdf"')

    result = parse_message(_multipart(TEXT_PART, part, part, part))

    assert [item.filename for item in result.attachments] == [
        "raport.pdf",
        "raport (2).pdf",
        "raport (3).pdf",
    ]


def test_parse_message_attachment_over_limit_becomes_note() -> None:
    big = _file_part('attachment; filename="duzy.bin"', b"x" * 2000)
    small = _file_part('attachment; filename="maly.bin"', b"x" * 10)

    result = parse_message(_multipart(TEXT_PART, big, small), max_attachment_size=1000)

    assert [item.filename for item in result.attachments] == ["maly.bin"]
    assert len(result.notes) == 1
    assert "duzy.bin" in result.notes[0]


def test_parse_message_total_limit_becomes_note() -> None:
    part = _file_part('attachment; filename="a.bin"', b"x" * 600)

    result = parse_message(_multipart(TEXT_PART, part, part), max_total_size=1000)

    assert len(result.attachments) == 1
    assert len(result.notes) == 1


def test_parse_message_inline_image_content_id() -> None:
    html = b'Content-Type: text/html; charset=utf-8\r\n\r\n<img src="cid:logo@x">'
    image = (
        b"Content-Type: image/png\r\nContent-ID: <logo@x>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
    )

    result = parse_message(_multipart(html, image, subtype="related"))

    assert result.attachments[0].content_id == "<logo@x>"
    assert result.attachments[0].inline


def test_parse_message_signed_content_read_signature_kept() -> None:
    signature = (
        b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nMIIB\r\n"
    )

    result = parse_message(
        _multipart(
            TEXT_PART, signature, subtype="signed", extra='; protocol="application/pkcs7-signature"'
        )
    )

    assert result.text.strip() == "Treść"
    assert [item.filename for item in result.attachments] == ["smime.p7s"]


def test_parse_message_calendar_is_attachment() -> None:
    calendar = (
        b"Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\n"
        b"BEGIN:VCALENDAR\r\nEND:VCALENDAR"
    )

    result = parse_message(_multipart(TEXT_PART, calendar, subtype="alternative"))

    assert "VCALENDAR" not in result.text
    assert [item.filename for item in result.attachments] == ["invite.ics"]


def test_parse_message_blank_plain_alternative_uses_html() -> None:
    blank = b"Content-Type: text/plain; charset=utf-8\r\n\r\n  \r\n"
    html = b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>VPN nie dzia\xc5\x82a</p>"

    result = parse_message(_multipart(blank, html, subtype="alternative"))

    assert result.text.strip() == "VPN nie działa"


def test_parse_message_uuencoded_body_file() -> None:
    body = b"Plik w zalaczniku.\r\n\r\nbegin 644 a.txt\r\n#86)C\r\n`\r\nend\r\n"

    result = parse_message(mail("Subject: x\r\n", body))

    assert [(item.filename, item.content) for item in result.attachments] == [("a.txt", b"abc")]
    assert "begin 644" not in result.text


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("..\\..\\windows\\system32\\a.dll", "a.dll"),
        ("CON.txt", "_CON.txt"),
        ("a\u202egpj.exe", "agpj.exe"),
        ("", "attachment.pdf"),
        ("a:b?.pdf", "a_b_.pdf"),
        ("Tax Invoice  INX.PDF", "Tax Invoice  INX.PDF"),
    ],
)
def test_sanitize_filename_cases(name: str, expected: str) -> None:
    assert sanitize_filename(name, "application/pdf") == expected


def test_unique_filename_ignores_case() -> None:
    names = UniqueNames()

    assert names.claim("A.pdf") == "A.pdf"
    assert names.claim("a.PDF") == "a (2).PDF"


def test_parse_message_format_flowed_joined() -> None:
    headers = "Subject: x\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n"
    body = b"Drukarka na 2. pi\xc4\x99trze \r\nnie drukuje.\r\n\r\n> stary \r\n> cytat\r\n"

    result = parse_message(mail(headers, body))

    assert result.text.startswith("Drukarka na 2. piętrze nie drukuje.")
    assert "> stary cytat" in result.text
    assert result.reply_text == "Drukarka na 2. piętrze nie drukuje."


def test_parse_message_html_meta_charset_without_mime_label() -> None:
    html = '<meta charset="iso-8859-2"><p>Zg\xb3oszenie</p>'.encode("latin-1")

    result = parse_message(mail("Subject: x\r\nContent-Type: text/html\r\n", html))

    assert result.text.strip() == "Zgłoszenie"


def test_parse_message_forward_keeps_quoted_text_in_reply() -> None:
    body = (
        b"Zobaczcie.\r\n\r\n-----Original Message-----\r\n"
        b"From: Vendor\r\nSent: x\r\n\r\nFaktura\r\n"
    )

    result = parse_message(mail("Subject: Fwd: Faktura\r\n", body))

    assert "Faktura" in result.reply_text


def test_parse_message_embedded_message_not_a_mail_raises() -> None:
    result = parse_message(_multipart(TEXT_PART, _file_part('attachment; filename="a.pdf"')))

    with pytest.raises(ParseError):
        result.attachments[0].parse_embedded()


def test_repair_header_block_leaves_headerless_text() -> None:
    raw = b"Hello world\r\nNote: something\r\n\r\nBody\r\n"

    assert repair_header_block(raw) == raw


def test_parse_message_bare_message_id_gets_brackets() -> None:
    assert (
        parse_message(mail("Message-ID: abc.1@example.org\r\n")).message_id == "<abc.1@example.org>"
    )


def test_decode_bytes_iso_2022_jp_is_not_ascii() -> None:
    assert decode_bytes("ツール".encode("iso2022_jp"), "iso-2022-jp") == "ツール"


def test_decode_rfc2047_raw_iso_2022_jp_header() -> None:
    raw = "件名".encode("iso2022_jp").decode("ascii")

    assert decode_rfc2047(raw) == "件名"


def test_parse_message_plain_stub_uses_html() -> None:
    stub = b"Content-Type: text/plain; charset=utf-8\r\n\r\nView this mail as HTML.\r\n"
    words = " ".join(f"słowo{index}" for index in range(40)).encode()
    html = b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Awaria serwera: " + words + b"</p>"

    result = parse_message(_multipart(stub, html, subtype="alternative"))

    assert result.text.startswith("Awaria serwera: słowo0")
    assert result.reply_text.startswith("Awaria serwera: słowo0")


@pytest.mark.parametrize("html", [
    "<ol>" + "<li>x</li>" * 30 + "</ol>",
    '<p><a href="https://intranet.example.com/wiki/vpn/instrukcja">instrukcja</a></p>',
    "<p>a&nbsp;b&#32;c&amp;d caf&eacute; &#65;&#66;</p>",
    "<table><tr><td>Serwer</td><td>plik01</td></tr></table><img alt='logo firmy' src='x'>",
])
def test_html_source_words_bound_text_words(html: str) -> None:
    # The stub check of multipart/alternative relies on this to skip the conversion.
    word = re.compile(r"\w+")

    assert len(word.findall(html_to_text(html))) <= len(word.findall(html))


@pytest.mark.parametrize("html", [
    # Gmail, Outlook on the web and Samsung Email build their bodies from nested divs.
    '<div dir="ltr"><div>Nadal nie działa.</div><div><br></div><div>Jan</div></div>',
    '<div class="elementToProof"><div dir="auto">Nadal nie działa.<br><br>Jan</div></div>',
    "<div><div><div>Nadal nie działa.</div></div><div><br></div><div>Jan</div></div>",
])
def test_html_to_text_divs_not_indented(html: str) -> None:
    assert html_to_text(html) == "Nadal nie działa.\n\nJan"


def test_html_to_text_outlook_paragraphs_are_lines() -> None:
    # Outlook writes each line as a Word paragraph that its style sheet gives no margin,
    # and a blank line as an empty one.
    html = (
        '<html><head><style><!-- p.MsoNormal {margin:0cm;} --></style></head>'
        '<body lang=PL><div class=WordSection1>'
        "<p class=MsoNormal>Dzień dobry,<o:p></o:p></p>"
        "<p class=MsoNormal><o:p>&nbsp;</o:p></p>"
        '<p class="MsoNormal">drukarka nie działa.<o:p></o:p></p>'
        "<p class=MsoNormal><o:p>&nbsp;</o:p></p>"
        "<p class=MsoNormal>Pozdrawiam<o:p></o:p></p>"
        '<p class=MsoNormal><span style="color:#1F3864">Jan Kowalski</span><o:p></o:p></p>'
        "</div></body></html>"
    )

    assert html_to_text(html) == "Dzień dobry,\n\ndrukarka nie działa.\n\nPozdrawiam\nJan Kowalski"


def test_html_to_text_paragraphs_keep_blank_line() -> None:
    assert html_to_text("<p>Pierwszy.</p><p>Drugi.</p>") == "Pierwszy.\n\nDrugi."


def test_parse_message_html_signature_in_div_cut() -> None:
    html = ('<div dir="auto"><div>Nadal nie działa.</div><div><br></div><div>-- </div>'
            "<div>Jan Kowalski</div><div>tel. 600 100 200</div></div>")

    result = parse_message(_html_mail(html))

    assert result.reply_text == "Nadal nie działa."


@pytest.mark.parametrize("headers", [
    "Subject: RE: [#5] Drukarka\r\n",
    "Subject: [#5] Drukarka\r\nIn-Reply-To: <ack.5.1@maildesk.example.com>\r\n",
])
def test_parse_message_reply_with_nothing_typed(headers: str) -> None:
    # Outlook sent before anything was typed: the text is the copied header and the quote.
    body = ("\r\n\r\nOd: Marek <marek@example.com>\r\nWys\xc5\x82ane: pi\xc4\x85tek\r\n"
            "Do: Helpdesk\r\nTemat: [#5] Drukarka\r\n\r\n#zamknij\r\n").encode("latin-1")

    result = parse_message(mail(headers + "Content-Type: text/plain; charset=utf-8\r\n", body))

    assert result.reply_text == ""
    assert "#zamknij" in result.text


def test_parse_message_new_mail_with_copied_header_keeps_text() -> None:
    body = ("Od: System FK <fk@example.com>\r\nWys\xc5\x82ane: pi\xc4\x85tek\r\n"
            "Temat: B\xc5\x82\xc4\x85d\r\n\r\nImport nie powi\xc3\xb3d\xc5\x82 si\xc4\x99."
            ).encode("latin-1")

    result = parse_message(mail("Subject: Błąd\r\nContent-Type: text/plain; charset=utf-8\r\n",
                                body))

    assert result.reply_text == "Import nie powiódł się."


def test_parse_message_full_plain_is_no_stub() -> None:
    words = " ".join(f"słowo{index}" for index in range(40))
    plain = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{words}\r\n".encode()
    html = f"Content-Type: text/html; charset=utf-8\r\n\r\n<p>{words}</p>".encode()

    result = parse_message(_multipart(plain, html, subtype="alternative"))

    assert result.text.strip() == words


def test_parse_message_full_plain_alternative_kept() -> None:
    plain = b"Content-Type: text/plain; charset=utf-8\r\n\r\nTekst zwykly.\r\n"
    html = b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Tekst <b>HTML</b>.</p>"

    result = parse_message(_multipart(plain, html, subtype="alternative"))

    assert result.text.strip() == "Tekst zwykly."
    assert result.html is not None
    assert "<b>HTML</b>" in result.html


def test_single_line_folds_every_line_break() -> None:
    value = "a\u2028Bcc: x\x85y\x0bz\r\nw"

    assert len(single_line(value).splitlines()) == 1


def test_clean_text_removes_c1_controls() -> None:
    assert clean_text("a\x00b\x9b[2Jc\td") == "ab[2Jc\td"


def test_sanitize_html_drops_remote_images_and_scripts() -> None:
    html = (
        '<img src="https://tracker.example/p.gif"><img src="cid:logo@x">'
        '<a href="javascript:alert(1)">j</a><script>alert(1)</script>'
    )

    sanitized = sanitize_html(html)

    assert "tracker.example" not in sanitized
    assert 'src="cid:logo@x"' in sanitized
    assert "javascript:" not in sanitized
    assert "<script" not in sanitized


def _nested_multipart(levels: int) -> bytes:
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
        for level in range(levels)
    )
    closing = b"".join(b"--b%d--\r\n" % level for level in reversed(range(levels)))
    return (
        b"From: a@example.org\r\nSubject: deep\r\n"
        + opening
        + b"Content-Type: text/plain\r\n\r\nhello\r\n"
        + closing
    )


def test_parse_message_deep_nesting_noted() -> None:
    result = parse_message(_nested_multipart(40))

    assert result.subject == "deep"
    assert len(result.notes) == 1


def test_parse_message_hostile_nesting_kept_as_eml() -> None:
    raw = _nested_multipart(3000)

    result = parse_message(raw)

    assert result.subject == "deep"
    assert [(item.filename, item.content) for item in result.attachments] == [("message.eml", raw)]
    assert len(result.notes) == 1


# --------------------------------------------------------------------------- hostile sizes


def test_parse_message_long_subject_shortened() -> None:
    subject = " ".join(["słowo"] * 50_000)

    result = parse_message(mail(f"Subject: {subject}\r\n"))

    assert len(result.subject) <= 1000
    assert result.subject.startswith("słowo słowo")
    assert len(result.notes) == 1
    assert "1000" in result.notes[0]


def test_parse_message_short_subject_kept_whole() -> None:
    subject = "x" * 1000

    result = parse_message(mail(f"Subject: {subject}\r\n"))

    assert result.subject == subject
    assert result.notes == ()


def test_parse_message_reply_search_bounded() -> None:
    # Half a megabyte of short lines, then a quote: the history marker lies past the
    # part that is searched, so the reply is the searched part, cut at a line end.
    body = ("Nowa treść\r\n" + "abc\r\n" * 100_000 + "> stary cytat\r\n").encode()

    result = parse_message(mail("Subject: x\r\n", body))

    assert result.text.endswith("> stary cytat")
    assert result.reply_text.startswith("Nowa treść\nabc\n")
    assert len(result.reply_text) <= 256 * 1024
    assert result.reply_text.endswith("abc")
    assert len(result.notes) == 1
    assert "262144" in result.notes[0]


def test_parse_message_reply_search_whole_below_limit() -> None:
    body = ("Nowa treść\r\n" + "abc\r\n" * 1_000 + "\r\nW dniu 4.12.2026 Jan napisał:\r\n"
            "> stary cytat\r\n").encode()

    result = parse_message(mail("Subject: x\r\n", body))

    assert "stary cytat" not in result.reply_text
    assert result.reply_text.endswith("abc")
    assert result.notes == ()


def test_parse_message_long_display_name_shortened() -> None:
    raw = b"From: " + b"N" * 5000 + b" <jan@example.org>\r\nSubject: x\r\n\r\nhi\r\n"

    result = parse_message(raw)

    assert result.from_address is not None
    assert result.from_address.address == "jan@example.org"
    assert len(result.from_address.name) <= 200


def test_parse_message_long_original_filename_shortened() -> None:
    part = _file_part('attachment; filename="' + "x" * 5000 + '.pdf"')

    result = parse_message(_multipart(TEXT_PART, part))

    [attachment] = result.attachments
    assert len(attachment.original_filename) <= 255
    assert len(attachment.filename.encode()) <= 200


def test_parse_message_attachment_count_capped() -> None:
    part = _file_part('attachment; filename="plik.pdf"')

    result = parse_message(_multipart(TEXT_PART, *[part] * 8), max_attachments=5)

    assert len(result.attachments) == 5
    assert result.text.strip() == "Treść"
    assert len(result.notes) == 1
    assert "3" in result.notes[0]


def test_parse_message_default_attachment_cap() -> None:
    part = _file_part('attachment; filename="plik.pdf"')

    result = parse_message(_multipart(TEXT_PART, *[part] * 1200))

    names = [item.filename for item in result.attachments]
    assert len(names) == 1000
    assert len(set(names)) == 1000
    assert names[-1] == "plik (1000).pdf"


def test_unique_names_skip_taken_numbers() -> None:
    names = UniqueNames()

    assert names.claim("a (3).bin") == "a (3).bin"
    assert names.claim("a.bin") == "a.bin"
    assert names.claim("A.bin") == "A (2).bin"
    assert names.claim("a.bin") == "a (4).bin"


def test_unique_names_many_same_names() -> None:
    # Counting up from 2 for every part took time quadratic in the count (hours here).
    names = UniqueNames()

    claimed = [names.claim("plik.bin") for _copy in range(100_000)]

    assert claimed[-1] == "plik (100000).bin"
    assert len(set(claimed)) == 100_000


def test_single_line_long_space_run() -> None:
    # A regex around the line break backtracked through the spaces: hours at this size.
    value = "a" + " " * 200_000 + "b\r\n  c"

    assert single_line(value) == "a" + " " * 200_000 + "b c"


def test_single_line_white_space_between_breaks() -> None:
    assert single_line(" a \r\n \r\n\tb \u2028 c ") == "a b c"


def test_decode_rfc2047_many_long_encoded_words() -> None:
    # Appending each word's bytes to one bytes value copied them all again for every
    # word: minutes for these 15 MB.
    word = "=?utf-8?b?" + base64.b64encode(("ś" * 750).encode()).decode() + "?="

    decoded = decode_rfc2047(" ".join([word] * 10_000))

    assert decoded == "ś" * 7_500_000


def test_parse_message_references_capped() -> None:
    ids = [f"<r{number}@example.org>" for number in range(5000)]
    raw = mail(f"In-Reply-To: <r4999@example.org>\r\nReferences: {' '.join(ids)}\r\n")

    result = parse_message(raw)

    assert len(result.references) == 200
    assert result.references[:100] == tuple(ids[:100])
    assert result.references[100:] == tuple(ids[-100:])
    assert result.thread_ids[:2] == ("<r4999@example.org>", "<r4998@example.org>")


def test_parse_message_repeated_references_once() -> None:
    raw = mail("References: <a@x> <b@x> <a@x> <b@x> <c@x>\r\n")

    assert parse_message(raw).references == ("<a@x>", "<b@x>", "<c@x>")


def _html_mail(html: str) -> bytes:
    return mail("Subject: x\r\nContent-Type: text/html; charset=utf-8\r\n", html.encode())


def test_parse_message_deep_html_keeps_text() -> None:
    html = "<div>" * 5000 + "Drukarka nie drukuje" + "</div>" * 5000

    result = parse_message(_html_mail(html))

    assert result.text == "Drukarka nie drukuje"
    assert result.html is None
    assert len(result.notes) == 1


def test_parse_message_deep_tables_keep_text() -> None:
    html = "<table><tr><td>" * 100 + "Drukarka nie drukuje" + "</td></tr></table>" * 100

    result = parse_message(_html_mail(html))

    assert result.text.strip() == "Drukarka nie drukuje"
    assert result.html is None


def test_parse_message_large_html_keeps_text() -> None:
    html = "<p>Faktura <b>12/2026</b> &amp; korekta</p>" * 60_000

    result = parse_message(_html_mail(html))

    assert result.text.startswith("Faktura 12/2026 & korekta\n")
    assert result.text.count("korekta") == 60_000
    assert result.html is None
    # The HTML note, then the one on the bounded search for the quoted history.
    assert len(result.notes) == 2
    assert "HTML" in result.notes[0]


def test_parse_message_normal_html_sanitised() -> None:
    html = "<div>" * 50 + "<b>Drukarka</b>" + "</div>" * 50

    result = parse_message(_html_mail(html))

    assert result.text.strip() == "Drukarka"
    assert result.html is not None
    assert result.notes == ()


def test_html_limits_deep_nested_tables() -> None:
    # 100 tables hold 400 levels once the parser adds tbody, tr and td.
    assert exceeds_html_limits("<table><tr><td>" * 100 + "x")


@pytest.mark.parametrize("levels", [200, 233, 234, 240, 247, 248, 260])
def test_html_limits_near_the_depth_limit(levels: int) -> None:
    # Below a tag count the parser is skipped, and the result must not change at that
    # edge. libxml2 adds html and body around the divs.
    html = "<div>" * levels + "x"

    assert exceeds_html_limits(html) == (levels + 2 >= MAX_HTML_DEPTH)


def test_html_limits_unclosed_paragraph_tags() -> None:
    assert not exceeds_html_limits("<p><b>x</p>" * 1000 + "<li>y" * 1000)


def test_html_limits_wide_document() -> None:
    assert not exceeds_html_limits("<div>" * 100 + "<p>x</p>" * 50_000 + "</div>" * 100)


def test_sanitize_html_drops_too_deep_html() -> None:
    assert sanitize_html("<div>" * 300 + "x" + "</div>" * 300) == ""


def test_strip_tags_drops_scripts_keeps_words() -> None:
    html = "<head><title>t</title></head><p>Hej &amp; <b>x</b><script>bad()</script>ok"

    assert strip_tags(html) == "\nHej & xok"


def test_strip_tags_unclosed_style_keeps_rest() -> None:
    assert strip_tags("<p>a<style>b") == "\nab"


# --------------------------------------------------------------------------- encoded addresses


@pytest.mark.parametrize("value", [
    "=?utf-8?q?marek.zielinski=40example.com?=",
    "Marek <=?utf-8?q?marek.zielinski=40example.com?=>",
    "Marek <=?utf-8?b?bWFyZWsuemllbGluc2tpQGV4YW1wbGUuY29t?=>",
    "marek.zielinski=?utf-8?q?=40?=example.com",
], ids=["bare", "angle", "angle-base64", "inside"])
def test_parse_message_encoded_word_address_not_decoded(value: str) -> None:
    raw = (f"From: {value}\r\nTo: {value}\r\nCc: {value}\r\nReply-To: {value}\r\n"
           "Subject: x\r\n\r\nhi\r\n").encode()

    result = parse_message(raw)

    assert result.from_address is None
    assert result.to == ()
    assert result.cc == ()
    assert result.reply_to == ()


def test_parse_message_encoded_local_part_literal() -> None:
    raw = b"From: Marek <=?utf-8?q?marek?=@example.com>\r\nSubject: x\r\n\r\nhi\r\n"

    result = parse_message(raw)

    assert result.from_address is not None
    assert result.from_address.address == "=?utf-8?q?marek?=@example.com"


def test_parse_message_encoded_display_name_decoded() -> None:
    raw = (b"From: =?utf-8?q?Zofia_Wi=C5=9Bniewska?= <zofia@example.org>\r\n"
           b"Subject: x\r\n\r\nhi\r\n")

    result = parse_message(raw)

    assert result.from_address is not None
    assert result.from_address.name == "Zofia Wiśniewska"
    assert result.from_address.address == "zofia@example.org"


def test_parse_message_raw_utf8_address_read() -> None:
    raw = "From: Łukasz <łukasz@przykład.pl>\r\nSubject: x\r\n\r\nhi\r\n".encode()

    result = parse_message(raw)

    assert result.from_address is not None
    assert result.from_address.address == "łukasz@przykład.pl"


@pytest.mark.parametrize(("written", "address"), [
    ('"jan"@example.org', "jan@example.org"),
    ('"j\\an"@example.org', "jan@example.org"),
    ('"jan".nowak@example.org', "jan.nowak@example.org"),
    ("jan(comment)@example.org", "jan@example.org"),
    ("jan@example(comment).org", "jan@example.org"),
    ("jan@example.org.", "jan@example.org"),
    ("@relay.example.net,@other.example.net:jan@example.org", "jan@example.org"),
    # White space is removed everywhere in an address, inside quotes too.
    ('"jan kowalski"@example.org', "jankowalski@example.org"),
    ('"jan@dom"@example.org', '"jan@dom"@example.org'),
    ('"a\\"b"@example.org', '"a\\"b"@example.org'),
    ("łukasz@przykład.pl", "łukasz@przykład.pl"),
    ("=?utf-8?q?jan?=@example.org", "=?utf-8?q?jan?=@example.org"),
], ids=["quoted", "escaped", "quoted-word", "comment", "domain-comment", "trailing-dot",
        "route", "space", "at-in-quotes", "escaped-quote", "utf8", "encoded-word"])
def test_parse_message_address_spelling_canonical(written: str, address: str) -> None:
    raw = f"From: Jan <{written}>\r\nCc: <{written}>\r\nSubject: x\r\n\r\nhi\r\n".encode()

    result = parse_message(raw)

    assert result.from_address is not None
    assert result.from_address.address == address
    assert result.from_address.name == "Jan"
    assert [item.address for item in result.cc] == [address]


@pytest.mark.parametrize("cc", [
    "jan@example.org, " + "(" * 1000,
    "(" * 1000 + ")" * 1000 + " x@example.net, jan@example.org",
], ids=["unclosed", "closed"])
def test_parse_message_nested_comments_in_cc_left_out(
        cc: str, caplog: pytest.LogCaptureFixture) -> None:
    raw = (f"From: a@example.org\r\nCc: {cc}\r\nMessage-ID: <deep@example.org>\r\n"
           "Subject: x\r\n\r\nhi\r\n").encode()

    with caplog.at_level(logging.WARNING, logger="maildesk.parse"):
        result = parse_message(raw)

    assert result.from_address is not None
    assert result.from_address.address == "a@example.org"
    assert [address.address for address in result.cc] == ["jan@example.org"]
    assert ("Cc", cc) in result.headers
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "<deep@example.org>" in warnings[0]
    assert "Cc" in warnings[0]


@pytest.mark.parametrize(("headers", "count"), [
    ("From: a@example.org\r\n", 1),
    ("From: a@example.org\r\nFrom: b@example.org\r\n", 2),
    ("From: a@example.org, b@example.org\r\n", 2),
    ("From: =?utf-8?q?Nowak,_Jan?= <a@example.org>\r\n", 1),
    ("From: a@example.org, =?utf-8?q?b=40example.org?=\r\n", 2),
    ("Sender: a@example.org\r\n", 0),
], ids=["one", "two-headers", "two-mailboxes", "comma-in-name", "unusable-second", "none"])
def test_parse_message_from_count(headers: str, count: int) -> None:
    raw = (headers + "Subject: x\r\n\r\nhi\r\n").encode()

    assert parse_message(raw).from_count == count


@pytest.mark.parametrize(("headers", "author_header"), [
    ("From: a@example.org\r\nReply-To: b@example.org\r\n", "From"),
    ("From: =?utf-8?q?a=40example.org?=\r\nReply-To: b@example.org\r\n", "Reply-To"),
    ("Sender: a@example.org\r\n", "Sender"),
], ids=["from", "unusable-from", "no-from"])
def test_parse_message_author_header(headers: str, author_header: str) -> None:
    result = parse_message((headers + "Subject: x\r\n\r\nhi\r\n").encode())

    assert result.author_header == author_header

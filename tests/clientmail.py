"""Replies and forwards as Polish mail clients write them, byte for byte.

Each builder writes the header fields, MIME structure, charset, transfer encoding,
quote format, signature and footer that one client in Polish produces when its user
replies to a mail of the desk. The builders take the desk's mail as the receiving client
shows it (``Quoted``) and the text the person typed, so a test can check that the desk
keeps exactly that text.

The formats were written by hand from how the clients format mail: Outlook for Windows
and Outlook on the web (Microsoft 365, Polish interface), Gmail on the web and on
Android, Thunderbird, Apple Mail on macOS and iOS, Samsung Email, and the Onet, WP and
Interia webmails.

NOTE: the webmails' quote layouts (Onet's HTML, WP's attribution, Interia's separator)
and the dates each client writes are reconstructions, not copies of captured mail, so
a client version that words them differently is not covered.
"""

from __future__ import annotations

import base64
import quopri
import struct
import unicodedata
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from html import escape
from urllib.parse import quote

# The desk's mail that the replies quote arrived on Friday, 4 December 2026, 09:05 CET.
# Each client writes that moment its own way.
OUTLOOK_SENT = "piątek, 4 grudnia 2026 09:05"
OUTLOOK_2010_SENT = "4 grudnia 2026 09:05"
GMAIL_SENT = "pt., 4 gru 2026 o 09:05"
ANDROID_GMAIL_SENT = "pt., 4.12.2026, 09:05"
THUNDERBIRD_SENT = "4.12.2026 o 09:05"
APPLE_SENT = "4 gru 2026, o godz. 09:05"
IOS_SENT = "04.12.2026, o godz. 09:05"
ONET_SENT = "4 grudnia 2026 09:05"
INTERIA_SENT = "4.12.2026 9:05"
SAMSUNG_SENT = "04.12.2026 09:05 (GMT+01:00)"
REPLY_DATE = "Fri, 4 Dec 2026 09:41:17 +0100"

# An attachment name with Polish letters and an en dash, which ISO-8859-2 lacks.
INVOICE_NAME = "Załącznik – faktura.pdf"
INVOICE = b"%PDF-1.4\n% faktura VAT FV/2026/12/0042\n%%EOF\n"

# The footer that Polish companies add to every mail: a confidentiality notice and the
# company data that the Commercial Companies Code (art. 206 KSH) requires.
LEGAL_FOOTER = (
    "Niniejsza wiadomość jest poufna i przeznaczona wyłącznie dla wskazanego adresata. "
    "Jeżeli nie jest Pan/Pani zamierzonym odbiorcą, prosimy o niezwłoczne powiadomienie "
    "nadawcy i usunięcie wiadomości wraz z załącznikami.\n"
    "ACME Sp. z o.o. z siedzibą w Warszawie, ul. Prosta 18, 00-850 Warszawa, wpisana do "
    "rejestru przedsiębiorców prowadzonego przez Sąd Rejonowy dla m.st. Warszawy, XII "
    "Wydział Gospodarczy KRS pod numerem KRS 0000123456, NIP 5250001122, kapitał "
    "zakładowy 50 000,00 zł."
)
# The same notice in English, which international companies in Poland add below it.
LEGAL_FOOTER_EN = (
    "This e-mail and any attachments are confidential and intended solely for the "
    "addressee. If you have received it in error, please notify the sender and delete it."
)


@dataclass(frozen=True)
class Quoted:
    """A mail the person replies to, as their client shows it: header fields and text."""

    name: str
    address: str
    to: str
    subject: str
    text: str
    message_id: str
    references: tuple[str, ...] = ()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Quoted:
        message = message_from_bytes(raw, policy=default_policy)
        assert isinstance(message, EmailMessage)
        sender = message["From"].addresses[0]
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        text = str(body.get_content()).replace("\r\n", "\n")
        references = tuple(str(message.get("References", "")).split())
        return cls(sender.display_name, sender.addr_spec, str(message["To"]),
                   str(message["Subject"]), text, str(message["Message-ID"]), references)

    @property
    def lines(self) -> list[str]:
        return self.text.rstrip("\n").split("\n")

    def thread(self) -> str:
        """Return the References a reply to this mail carries."""
        return " ".join((*self.references, self.message_id))


@dataclass(frozen=True)
class Author:
    """The person who replies, with the signature their client adds."""

    name: str
    address: str
    signature: str = ""
    footer: str = ""

    @property
    def mailbox(self) -> str:
        return f"{self.name} <{self.address}>"


@dataclass(frozen=True)
class Reply:
    """What a person typed and where their client sends it."""

    author: Author
    subject: str
    text: str
    quoted: Quoted
    message_id: str
    to: str = "Helpdesk IT <helpdesk@example.com>"
    in_reply_to: bool = True
    attachments: tuple[tuple[str, bytes], ...] = field(default=())
    extra_headers: tuple[tuple[str, str], ...] = field(default=())


# --------------------------------------------------------------------------- encodings


# Characters that ISO-8859-2 lacks, with the ASCII ones a client writes in their place.
_ASCII_LOOKALIKES = str.maketrans({"„": '"', "”": '"', "“": '"', "–": "-", "’": "'"})


def qp(text: str, charset: str) -> str:
    """Quoted-printable with soft breaks at 76 characters, as the clients write it.

    Text the charset cannot hold gets ASCII quotes and dashes, as a client set to
    ISO-8859-2 writes them.
    """
    return quopri.encodestring(fit(text, charset).encode(charset)).decode("ascii")


def fit(text: str, charset: str) -> str:
    """Return ``text`` with the characters ``charset`` lacks replaced by ASCII look-alikes."""
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        return text.translate(_ASCII_LOOKALIKES)
    return text


def b64(data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return "\n".join(encoded[start:start + 76] for start in range(0, len(encoded), 76))


def encoded_word(text: str, charset: str, encoding: str = "Q") -> str:
    """One RFC 2047 encoded word, the way Outlook and Gmail put it into parameters too."""
    data = fit(text, charset).encode(charset)
    if encoding == "B":
        return f"=?{charset}?B?{base64.b64encode(data).decode('ascii')}?="
    pieces = []
    for byte in data:
        character = chr(byte)
        if character.isascii() and (character.isalnum() or character in "-!*+/"):
            pieces.append(character)
        elif character == " ":
            pieces.append("_")
        else:
            pieces.append(f"={byte:02X}")
    return f"=?{charset}?Q?{''.join(pieces)}?="


def rfc2231(text: str, charset: str = "UTF-8") -> str:
    return f"{charset}''" + quote(text.encode(charset), safe="")


def crlf(text: str) -> bytes:
    """Join header and body lines with CRLF, as every client sends them."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii")


def thread_fields(reply: Reply) -> str:
    if not reply.in_reply_to:
        return ""
    return f"In-Reply-To: {reply.quoted.message_id}\nReferences: {reply.quoted.thread()}\n"


def extra_fields(reply: Reply) -> str:
    return "".join(f"{name}: {value}\n" for name, value in reply.extra_headers)


def paragraphs_html(text: str, tag: str = "div") -> str:
    lines = text.split("\n")
    return "".join(f"<{tag}>{escape(line) or '<br>'}</{tag}>\n" for line in lines)


# --------------------------------------------------------------------------- Outlook


def _outlook_block(quoted: Quoted, legacy: bool = False) -> str:
    """The copied header block above the history; Outlook 2010 opens it with a separator."""
    if legacy:
        return (f"-----Wiadomość oryginalna-----\n"
                f"Od: {quoted.name} [mailto:{quoted.address}] \n"
                f"Wysłano: {OUTLOOK_2010_SENT}\n"
                f"Do: {quoted.to}\n"
                f"Temat: {quoted.subject}\n")
    return (f"Od: {quoted.name} <{quoted.address}> \n"
            f"Wysłane: {OUTLOOK_SENT}\n"
            f"Do: {quoted.to}\n"
            f"Temat: {quoted.subject}\n")


def _outlook_text(reply: Reply, legacy: bool = False) -> str:
    author = reply.author
    parts = [reply.text, ""]
    if author.signature:
        parts += [author.signature, ""]
    if author.footer:
        parts += [author.footer, ""]
    parts += [_outlook_block(reply.quoted, legacy), *reply.quoted.lines, ""]
    return "\n".join(parts)


def _mso(line: str) -> str:
    if not line:
        return '<p class="MsoNormal"><o:p>&nbsp;</o:p></p>\n'
    return f'<p class="MsoNormal">{escape(line)}<o:p></o:p></p>\n'


def _outlook_html(reply: Reply, charset: str) -> str:
    author = reply.author
    quoted = reply.quoted
    body = "".join(_mso(line) for line in reply.text.split("\n"))
    body += _mso("")
    if author.signature:
        body += "".join(
            f'<p class="MsoNormal"><span style="font-size:9.0pt;color:#1F3864">'
            f"{escape(line)}</span><o:p></o:p></p>\n" for line in author.signature.split("\n"))
        body += _mso("")
    if author.footer:
        body += "".join(
            f'<p class="MsoNormal"><span style="font-size:7.0pt;color:gray">{escape(line)}'
            f"</span><o:p></o:p></p>\n" for line in author.footer.split("\n"))
        body += _mso("")
    header = (
        '<div>\n<div style="border:none;border-top:solid #E1E1E1 1.0pt;'
        'padding:3.0pt 0cm 0cm 0cm">\n'
        f'<p class="MsoNormal"><b>Od:</b> {escape(quoted.name)} '
        f"&lt;{escape(quoted.address)}&gt; <br>\n"
        f"<b>Wysłane:</b> {OUTLOOK_SENT}<br>\n"
        f"<b>Do:</b> {escape(quoted.to)}<br>\n"
        f"<b>Temat:</b> {escape(quoted.subject)}<o:p></o:p></p>\n</div>\n</div>\n")
    history = "".join(_mso(line) for line in quoted.lines)
    return (
        '<html xmlns:v="urn:schemas-microsoft-com:vml" '
        'xmlns:o="urn:schemas-microsoft-com:office:office" '
        'xmlns:w="urn:schemas-microsoft-com:office:word" '
        'xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" '
        'xmlns="http://www.w3.org/TR/REC-html40">\n<head>\n'
        f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">\n'
        '<meta name="Generator" content="Microsoft Word 15 (filtered medium)">\n'
        "<style><!--\n/* Font Definitions */\n@font-face\n\t{font-family:Calibri;}\n"
        "p.MsoNormal, li.MsoNormal, div.MsoNormal\n\t{margin:0cm;\n\tfont-size:11.0pt;\n"
        "\tfont-family:\"Calibri\",sans-serif;\n\tmso-fareast-language:EN-US;}\n"
        "span.EmailStyle19\n\t{mso-style-type:personal-reply;}\n"
        "@page WordSection1\n\t{size:612.0pt 792.0pt;}\ndiv.WordSection1\n\t{page:WordSection1;}\n"
        "--></style><!--[if gte mso 9]><xml>\n<o:shapedefaults v:ext=\"edit\" spidmax=\"1026\" />\n"
        "</xml><![endif]-->\n</head>\n"
        '<body lang="PL" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">\n'
        f'<div class="WordSection1">\n{body}{header}{_mso("")}{history}</div>\n</body>\n</html>\n'
    )


def _outlook_headers(reply: Reply, charset: str, thread_index: str) -> str:
    subject = encoded_word(reply.subject, charset)
    return (
        f"From: {_mailbox(reply.author, charset)}\n"
        f"To: {reply.to}\n"
        f"Subject: {subject}\n"
        f"Thread-Topic: {encoded_word(reply.quoted.subject, charset)}\n"
        f"Thread-Index: {thread_index}\n"
        f"Date: {REPLY_DATE}\n"
        f"Message-ID: {reply.message_id}\n"
        f"{thread_fields(reply)}"
        "Accept-Language: pl-PL, en-US\n"
        "Content-Language: pl-PL\n"
        "X-MS-Has-Attach: " + ("yes" if reply.attachments else "") + "\n"
        "X-MS-TNEF-Correlator:\n"
        f"{extra_fields(reply)}"
    )


def outlook_attachment(name: str, content: bytes, charset: str, boundary: str) -> str:
    """An attachment part as Outlook writes it: RFC 2047 words inside quotes, split when long.

    RFC 2231 says how to encode a parameter, but Outlook writes encoded words, and a long
    name is split into several words on folded lines inside the quoted string.
    """
    if fit(name, charset) != name:
        charset = "utf-8"  # a name the body's charset cannot hold is written in UTF-8
    middle = len(name) // 2
    words = f"{encoded_word(name[:middle], charset)}\n {encoded_word(name[middle:], charset)}"
    return (
        f"--{boundary}\n"
        f'Content-Type: application/pdf; name="{words}"\n'
        f'Content-Description: {encoded_word(name, charset)}\n'
        f'Content-Disposition: attachment; filename="{words}";\n'
        f'\tsize={len(content)}; creation-date="Fri, 04 Dec 2026 08:37:02 GMT";\n'
        f'\tmodification-date="Fri, 04 Dec 2026 08:41:16 GMT"\n'
        "Content-Transfer-Encoding: base64\n\n"
        f"{b64(content)}\n"
    )


def outlook_desktop(reply: Reply, *, charset: str = "iso-8859-2", html_only: bool = False,
                    legacy: bool = False,
                    thread_index: str = "AQHdhQ7srZS8OiY4Uv+5RS5GMHJVZLNkw4Qm") -> bytes:
    """Outlook for Windows (Microsoft 365), Polish: a Word-made HTML body and its text.

    The history starts with a copied header block (``Od:``, ``Wysłane:``, ``Do:``,
    ``Temat:``), the signature has no ``-- `` line, and the company footer sits between
    the signature and the history. ``legacy`` writes the text part as Outlook 2010 does,
    below ``-----Wiadomość oryginalna-----`` and with ``Wysłano:``.
    """
    html = qp(_outlook_html(reply, charset), charset)
    alternative = "_000_DB9PR02MB7323A1B2C3D4E5F6DB9PR02MB7323eurp_"
    if html_only:
        body = (f'Content-Type: text/html; charset="{charset}"\n'
                f"Content-Transfer-Encoding: quoted-printable\n\n{html}\n")
    else:
        text = qp(_outlook_text(reply, legacy), charset)
        body = (
            f'Content-Type: multipart/alternative;\n\tboundary="{alternative}"\n\n'
            f"--{alternative}\n"
            f'Content-Type: text/plain; charset="{charset}"\n'
            "Content-Transfer-Encoding: quoted-printable\n\n"
            f"{text}\n"
            f"--{alternative}\n"
            f'Content-Type: text/html; charset="{charset}"\n'
            "Content-Transfer-Encoding: quoted-printable\n\n"
            f"{html}\n"
            f"--{alternative}--\n")
    if reply.attachments:
        mixed = "_004_DB9PR02MB7323A1B2C3D4E5F6DB9PR02MB7323eurp_"
        files = "".join(outlook_attachment(name, content, charset, mixed)
                        for name, content in reply.attachments)
        body = (f'Content-Type: multipart/mixed;\n\tboundary="{mixed}"\n\n'
                f"--{mixed}\n{body}\n{files}--{mixed}--\n")
    return crlf(_outlook_headers(reply, charset, thread_index) + body.replace(
        "Content-Type", "MIME-Version: 1.0\nContent-Type", 1))


def owa(reply: Reply, *, charset: str = "iso-8859-2") -> bytes:
    """Outlook on the web (and the new Outlook for Windows), Polish.

    The text part separates the history with a line of underscores; the HTML marks it
    with ``<div id="appendonsend">``, ``<hr>`` and ``<div id="divRplyFwdMsg">``.
    """
    quoted = reply.quoted
    author = reply.author
    own = reply.text + "\n\n" + (author.signature + "\n\n" if author.signature else "")
    own += author.footer + "\n\n" if author.footer else ""
    block = (f"Od: {quoted.name} <{quoted.address}>\n"
             f"Wysłane: {OUTLOOK_SENT}\n"
             f"Do: {quoted.to}\n"
             f"Temat: {quoted.subject}\n")
    text = own + "_" * 32 + "\n" + block + "\n" + quoted.text
    html = (
        "<html>\n<head>\n"
        f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">\n'
        '<style type="text/css" style="display:none;"> P {margin-top:0;margin-bottom:0;} '
        "</style>\n</head>\n<body dir=\"ltr\">\n"
        '<div class="elementToProof" style="font-family: Aptos, Aptos_EmbeddedFont, '
        'Calibri, Helvetica, sans-serif; font-size: 12pt; color: rgb(0, 0, 0);">\n'
        + paragraphs_html(own.rstrip("\n"))
        + '</div>\n<div id="appendonsend"></div>\n'
        '<hr style="display:inline-block;width:98%" tabindex="-1">\n'
        '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" '
        'style="font-size:11pt" color="#000000">'
        f"<b>Od:</b> {escape(quoted.name)} &lt;{escape(quoted.address)}&gt;<br>\n"
        f"<b>Wysłane:</b> {OUTLOOK_SENT}<br>\n<b>Do:</b> {escape(quoted.to)}<br>\n"
        f"<b>Temat:</b> {escape(quoted.subject)}</font>\n<div>&nbsp;</div>\n</div>\n"
        f"<div>{paragraphs_html(quoted.text.rstrip(chr(10)))}</div>\n</body>\n</html>\n")
    boundary = "_000_VI1PR03MB6400E1F2A3B4C5D6VI1PR03MB6400eurp_"
    headers = (
        f"From: {_mailbox(reply.author, charset)}\nTo: {reply.to}\n"
        f"Subject: {encoded_word(reply.subject, charset)}\n"
        f"Thread-Topic: {encoded_word(quoted.subject, charset)}\n"
        "Thread-Index: AQHdhQ7srZS8OiY4Uv+5RS5GMHJVZLNkw4Qm\n"
        f"Date: {REPLY_DATE}\nMessage-ID: {reply.message_id}\n{thread_fields(reply)}"
        "Accept-Language: pl-PL, en-US\nContent-Language: pl-PL\n"
        "X-MS-Has-Attach: " + ("yes" if reply.attachments else "") + "\n"
        "X-MS-TNEF-Correlator:\nmsip_labels:\n"
        f"{extra_fields(reply)}MIME-Version: 1.0\n")
    body = (
        f'Content-Type: multipart/alternative;\n\tboundary="{boundary}"\n\n'
        f"--{boundary}\nContent-Type: text/plain; charset=\"{charset}\"\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{qp(text, charset)}\n"
        f"--{boundary}\nContent-Type: text/html; charset=\"{charset}\"\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{qp(html, charset)}\n"
        f"--{boundary}--\n")
    if reply.attachments:
        mixed = "_004_VI1PR03MB6400E1F2A3B4C5D6VI1PR03MB6400eurp_"
        files = "".join(outlook_attachment(name, content, charset, mixed)
                        for name, content in reply.attachments)
        body = (f'Content-Type: multipart/mixed;\n\tboundary="{mixed}"\n\n'
                f"--{mixed}\n{body}\n{files}--{mixed}--\n")
    return crlf(headers + body)


# --------------------------------------------------------------------------- TNEF


def _tnef_attribute(level: int, attribute: int, kind: int, data: bytes) -> bytes:
    checksum = sum(data) & 0xFFFF
    return struct.pack("<BHHI", level, attribute, kind, len(data)) + data + struct.pack(
        "<H", checksum)


def _mapi_string(property_id: int, value: str, *, unicode: bool, codepage: str) -> bytes:
    data = (value + "\x00").encode("utf-16-le" if unicode else codepage)
    padded = data + b"\x00" * (-len(data) % 4)
    kind = 0x001F if unicode else 0x001E
    return struct.pack("<HHII", kind, property_id, 1, len(data)) + padded


def winmail_dat(files: tuple[tuple[str, bytes], ...], *, long_names: str = "unicode",
                codepage: int = 1250) -> bytes:
    """A ``winmail.dat`` (TNEF) that Outlook in Rich Text mode attaches in place of files.

    Each file has its name as ``attAttachTitle`` in the Windows code page and, unless
    ``long_names`` is ``"none"``, as ``PR_ATTACH_LONG_FILENAME`` in UTF-16
    (``"unicode"``) or in the code page (``"codepage"``).
    """
    python_codepage = f"cp{codepage}"
    level_message, level_attachment = 1, 2
    blob = struct.pack("<IH", 0x223E9F78, 0x4F2A)
    blob += _tnef_attribute(level_message, 0x9006, 0x0008, struct.pack("<I", 0x00010000))
    blob += _tnef_attribute(level_message, 0x9007, 0x0006, struct.pack("<II", codepage, 0))
    blob += _tnef_attribute(level_message, 0x8008, 0x0007, b"IPM.Microsoft Mail.Note\x00")
    for name, content in files:
        render = struct.pack("<HIIIH", 1, 0xFFFFFFFF, 1, 0, 0)
        blob += _tnef_attribute(level_attachment, 0x9002, 0x0006, render)
        blob += _tnef_attribute(level_attachment, 0x8010, 0x0001,
                                name.encode(python_codepage, errors="replace") + b"\x00")
        blob += _tnef_attribute(level_attachment, 0x800F, 0x0006, content)
        properties = [_mapi_string(0x3704, "FAKTUR~1.PDF", unicode=False,
                                   codepage=python_codepage)]
        if long_names != "none":
            properties.append(_mapi_string(0x3707, name, unicode=long_names == "unicode",
                                           codepage=python_codepage))
        properties.append(_mapi_string(0x370E, "application/pdf", unicode=False,
                                       codepage=python_codepage))
        mapi = struct.pack("<I", len(properties)) + b"".join(properties)
        blob += _tnef_attribute(level_attachment, 0x9005, 0x0006, mapi)
    return blob


def outlook_rich_text(reply: Reply, *, charset: str = "windows-1250",
                      long_names: str = "unicode") -> bytes:
    """Outlook in Rich Text mode: a text part and the files inside ``winmail.dat``."""
    boundary = "_002_AM6PR04MB5512F0E1D2C3B4A5AM6PR04MB5512eurp_"
    text = qp(_outlook_text(reply), charset)
    tnef = winmail_dat(reply.attachments, long_names=long_names)
    body = (
        f'Content-Type: multipart/mixed;\n\tboundary="{boundary}"\nMIME-Version: 1.0\n\n'
        f"--{boundary}\nContent-Type: text/plain; charset=\"{charset}\"\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{text}\n"
        f"--{boundary}\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\n"
        "Content-Disposition: attachment; filename=\"winmail.dat\"\n"
        f"Content-Transfer-Encoding: base64\n\n{b64(tnef)}\n"
        f"--{boundary}--\n")
    headers = _outlook_headers(reply, charset, "AQHdhQ7srZS8OiY4Uv+5RS5GMHJVZLNkw4Qm")
    headers = headers.replace("X-MS-TNEF-Correlator:\n",
                              "X-MS-TNEF-Correlator: <AM6PR04MB5512F0E1@AM6PR04MB5512>\n")
    return crlf(headers + body)


# --------------------------------------------------------------------------- Gmail


def _gmail_quote(quoted: Quoted, attribution: str) -> str:
    quoted_lines = "\n".join(f"> {line}" if line else ">" for line in quoted.lines)
    return f"{attribution}\n\n{quoted_lines}\n"


def _wrap_attribution(attribution: str, width: int = 78) -> str:
    """Wrap as Gmail's text part does: at a space, before ``width`` characters."""
    if len(attribution) <= width:
        return attribution
    cut = attribution.rfind(" ", 0, width)
    return attribution[:cut] + "\n" + attribution[cut + 1:]


def gmail(reply: Reply, *, android: bool = False, with_w_dniu: bool = True) -> bytes:
    """Gmail in Polish, on the web or on Android: UTF-8, a ``gmail_quote`` and its text.

    The web writes ``W dniu pt., 4 gru 2026 o 09:05 Name <addr> napisał(a):``, newer
    versions drop ``W dniu``; Android writes ``użytkownik Name <addr> napisał:``. The text
    part wraps the attribution at 78 characters. The signature follows ``-- ``.
    """
    quoted = reply.quoted
    author = reply.author
    if android:
        attribution = (f"W dniu {ANDROID_GMAIL_SENT} użytkownik {quoted.name} "
                       f"<{quoted.address}> napisał:")
    else:
        prefix = "W dniu " if with_w_dniu else ""
        attribution = f"{prefix}{GMAIL_SENT} {quoted.name} <{quoted.address}> napisał(a):"
    text = reply.text + "\n"
    if author.signature:
        text += "\n-- \n" + author.signature + "\n"
    if author.footer:
        text += "\n" + author.footer + "\n"
    text += "\n" + _gmail_quote(quoted, _wrap_attribution(attribution))

    signature_html = ""
    if author.signature:
        lines = "<br>".join(escape(line) for line in author.signature.split("\n"))
        signature_html = (
            '<br><span class="gmail_signature_prefix">-- </span><br>'
            '<div dir="ltr" class="gmail_signature" data-smartmail="gmail_signature">'
            f'<div dir="ltr">{lines}</div></div>')
    footer_html = f"<div><br></div><div>{escape(author.footer)}</div>" if author.footer else ""
    quoted_html = "".join(f"{escape(line)}<br>" for line in quoted.lines)
    html = (
        f'<div dir="ltr">{paragraphs_html(reply.text)}{signature_html}{footer_html}</div><br>'
        '<div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">'
        f"{escape(attribution)}<br></div>"
        '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px '
        f'solid rgb(204,204,204);padding-left:1ex">{quoted_html}</blockquote></div>\n')

    alternative = "000000000000f1e2d3c4b5a60a05f1e2d3c4"
    body = (
        f'Content-Type: multipart/alternative; boundary="{alternative}"\n\n'
        f"--{alternative}\nContent-Type: text/plain; charset=\"UTF-8\"\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{qp(text, 'utf-8')}\n"
        f"--{alternative}\nContent-Type: text/html; charset=\"UTF-8\"\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{qp(html, 'utf-8')}\n"
        f"--{alternative}--\n")
    if reply.attachments:
        mixed = "000000000000f1e2d3c4b5a70a05f1e2d3c6"
        files = ""
        for index, (name, content) in enumerate(reply.attachments):
            word = encoded_word(name, "UTF-8", "B")
            files += (
                f'--{mixed}\nContent-Type: application/pdf; name="{word}"\n'
                f'Content-Disposition: attachment; filename="{word}"\n'
                f"Content-Transfer-Encoding: base64\nContent-ID: <f_mia1b2c{index}>\n"
                f"X-Attachment-Id: f_mia1b2c{index}\n\n{b64(content)}\n")
        body = (f'Content-Type: multipart/mixed; boundary="{mixed}"\n\n'
                f"--{mixed}\n{body}\n{files}--{mixed}--\n")
    headers = (
        "MIME-Version: 1.0\n"
        f"Date: {REPLY_DATE}\n{thread_fields(reply)}"
        f"Message-ID: {reply.message_id}\n"
        f"Subject: {encoded_word(reply.subject, 'UTF-8', 'B')}\n"
        f"From: {_mailbox_utf8(reply.author)}\nTo: {reply.to}\n{extra_fields(reply)}")
    return crlf(headers + body)


def _mailbox_utf8(author: Author) -> str:
    return _mailbox(author, "UTF-8", "B")


def _mailbox(author: Author, charset: str, encoding: str = "Q") -> str:
    """The author's mailbox with the display name in encoded words when it needs them."""
    if author.name.isascii():
        return author.mailbox
    return f"{encoded_word(author.name, charset, encoding)} <{author.address}>"


# --------------------------------------------------------------------------- Thunderbird


def _flowed(text: str) -> str:
    """Write ``format=flowed`` (RFC 3676): long lines wrapped with a trailing space."""
    out = []
    for line in text.split("\n"):
        prefix = ""
        while line.startswith(">"):
            prefix += ">"
            line = line[1:].lstrip(" ") if line[1:2] == " " else line[1:]
        if prefix:
            prefix += " "
        if line.startswith((" ", "From ")) and not prefix:
            line = " " + line
        while len(prefix + line) > 72 and " " in line[:72 - len(prefix)]:
            cut = line.rfind(" ", 0, 72 - len(prefix))
            out.append(prefix + line[:cut + 1])
            line = line[cut + 1:]
        out.append(prefix + line)
    return "\n".join(out)


def thunderbird(reply: Reply, *, bottom_post: bool = True) -> bytes:
    """Thunderbird in Polish: UTF-8, 8bit, format=flowed, ``W dniu ..., Name pisze:``.

    Thunderbird replies below the quote by default, and writes the signature
    after ``-- ``. File names use RFC 2231 (``filename*=UTF-8''...``), long ones in
    numbered continuations.
    """
    quoted = reply.quoted
    author = reply.author
    attribution = f"W dniu {THUNDERBIRD_SENT}, {quoted.name} pisze:"
    history = attribution + "\n" + "\n".join(f"> {line}" if line else ">" for line in quoted.lines)
    own = reply.text
    signature = ""
    if author.signature:
        signature = "\n-- \n" + author.signature
    if author.footer:
        signature += "\n\n" + author.footer
    if bottom_post:
        text = f"{history}\n\n{own}\n{signature}\n"
    else:
        text = f"{own}\n\n{history}\n{signature}\n"
    flowed = _flowed(text).encode("utf-8").decode("latin-1")
    boundary = "------------a1B2c3D4e5F6g7H8i9J0k1L2"
    headers = (
        f"Message-ID: {reply.message_id}\n"
        f"Date: {REPLY_DATE}\nMIME-Version: 1.0\n"
        "User-Agent: Mozilla Thunderbird\n"
        f"Subject: {encoded_word(reply.subject, 'UTF-8', 'Q')}\n"
        "Content-Language: pl\n"
        f"To: {reply.to}\n{thread_fields(reply)}"
        f"From: {_mailbox_utf8(author)}\n{extra_fields(reply)}")
    text_part = ("Content-Type: text/plain; charset=UTF-8; format=flowed\n"
                 f"Content-Transfer-Encoding: 8bit\n\n{flowed}\n")
    if not reply.attachments:
        return (headers + text_part).replace("\n", "\r\n").encode("latin-1")
    files = ""
    for name, content in reply.attachments:
        encoded = rfc2231(name)
        # A long parameter is split into numbered continuations. The cut falls between
        # two octets of one character ("ą" is %C4%85): RFC 2231 joins the octets of all
        # continuations before it decodes the charset.
        cut = encoded.index("%85")
        files += (
            f"--{boundary}\nContent-Type: application/pdf;\n"
            f" name*0*={encoded[:cut]};\n name*1*={encoded[cut:]}\n"
            f"Content-Disposition: attachment;\n"
            f" filename*0*={encoded[:cut]};\n filename*1*={encoded[cut:]}\n"
            f"Content-Transfer-Encoding: base64\n\n{b64(content)}\n")
    body = (f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
            f"This is a multi-part message in MIME format.\n--{boundary}\n{text_part}\n"
            f"{files}--{boundary}--\n")
    return (headers + body).replace("\n", "\r\n").encode("latin-1")


# --------------------------------------------------------------------------- Apple


def apple_mail(reply: Reply, *, ios: bool = True, wiadomosc: bool = False) -> bytes:
    """Apple Mail on iOS or macOS in Polish: UTF-8 quoted-printable, quoted attribution.

    iOS puts ``Wysłane z iPhone’a`` under the text and above the quote, whose
    attribution reads ``Dnia 4 gru 2026, o godz. 09:05, Name <addr> napisał(a):`` or
    ``Wiadomość napisana przez Name <addr> w dniu 04.12.2026, o godz. 09:05:``. File
    names are in decomposed Unicode (NFD), as the file system stores them.
    """
    quoted = reply.quoted
    author = reply.author
    if wiadomosc:
        attribution = (f"Wiadomość napisana przez {quoted.name} <{quoted.address}> "
                       f"w dniu {IOS_SENT}:")
    else:
        attribution = f"Dnia {APPLE_SENT}, {quoted.name} <{quoted.address}> napisał(a):"
    own = reply.text
    if author.signature:
        own += "\n\n" + author.signature
    if author.footer:
        own += "\n\n" + author.footer
    if ios:
        own += "\n\nWysłane z iPhone’a"
    history = "> " + attribution + "\n> \n> \ufeff" + "\n".join(
        f"> {line}" if line else ">" for line in quoted.lines).removeprefix("> ")
    text = f"{own}\n\n{history}\n"
    html = (
        '<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8">'
        f'</head><body dir="auto">{paragraphs_html(own)}<div dir="ltr"><br>'
        f"<blockquote type=\"cite\">{escape(attribution)}<br><br></blockquote></div>"
        f'<blockquote type="cite"><div dir="ltr">{paragraphs_html(quoted.text)}</div>'
        "</blockquote></body></html>")
    alternative = "Apple-Mail-3F2A1B0C-7D6E-4F50-8A9B-C1D2E3F40516"
    body = (f'Content-Type: multipart/alternative; boundary={alternative}\n'
            "Content-Transfer-Encoding: 7bit\n\n"
            f"--{alternative}\nContent-Type: text/plain;\n\tcharset=utf-8\n"
            f"Content-Transfer-Encoding: quoted-printable\n\n{qp(text, 'utf-8')}\n"
            f"--{alternative}\nContent-Type: text/html;\n\tcharset=utf-8\n"
            f"Content-Transfer-Encoding: quoted-printable\n\n{qp(html, 'utf-8')}\n"
            f"--{alternative}--\n")
    if reply.attachments:
        mixed = "Apple-Mail-9E8D7C6B-5A4F-4E3D-9C2B-1A0F9E8D7C6B"
        files = ""
        for name, content in reply.attachments:
            decomposed = unicodedata.normalize("NFD", name)
            files += (
                f"--{mixed}\nContent-Type: application/pdf;\n\tx-unix-mode=0644;\n"
                f'\tname="{encoded_word(decomposed, "utf-8")}"\n'
                f"Content-Disposition: attachment;\n\tfilename*={rfc2231(decomposed, 'utf-8')}\n"
                f"Content-Transfer-Encoding: base64\n\n{b64(content)}\n")
        body = (f"Content-Type: multipart/mixed; boundary={mixed}\n"
                "Content-Transfer-Encoding: 7bit\n\n"
                f"--{mixed}\n{body}\n{files}--{mixed}--\n")
    mailer = "iPhone Mail (22B91)" if ios else "Apple Mail (2.3826.200.121)"
    headers = (
        f"From: {_mailbox_utf8(author)}\n"
        "Mime-Version: 1.0 (1.0)\n"
        f"Subject: {encoded_word(reply.subject, 'utf-8')}\n"
        f"Date: {REPLY_DATE}\nMessage-Id: {reply.message_id}\n"
        f"{thread_fields(reply)}To: {reply.to}\nX-Mailer: {mailer}\n{extra_fields(reply)}")
    return crlf(headers + body)


# --------------------------------------------------------------------------- webmails


def onet(reply: Reply) -> bytes:
    """Onet Poczta: HTML only, UTF-8 base64, ``Dnia ... napisał(a):`` over a plain blockquote.

    The quote carries no class or ``type="cite"`` that marks it, so its text arrives
    unquoted below the attribution.
    """
    quoted = reply.quoted
    own = reply.text + (f"\n\n{reply.author.signature}" if reply.author.signature else "")
    attribution = f"Dnia {ONET_SENT} {quoted.name} &lt;{quoted.address}&gt; napisał(a):"
    html = (
        "<!DOCTYPE html><html><head><meta charset=\"UTF-8\"></head><body>"
        f"<p>{'<br />'.join(escape(line) for line in own.split(chr(10)))}</p>"
        f'<div class="quote">{attribution}<br />'
        '<blockquote style="margin-top: 0px; margin-bottom: 0px; margin-left: 0.5em;">'
        f'{"<br />".join(escape(line) for line in quoted.lines)}</blockquote></div>'
        "</body></html>")
    headers = (
        f"Date: {REPLY_DATE}\nFrom: {_mailbox_utf8(reply.author)}\nTo: {reply.to}\n"
        f"Message-ID: {reply.message_id}\n{thread_fields(reply)}"
        f"Subject: {encoded_word(reply.subject, 'UTF-8', 'B')}\n"
        "MIME-Version: 1.0\nX-Mailer: Onet Poczta\n"
        f"{extra_fields(reply)}")
    if reply.attachments:
        boundary = "===============onet5b3c9d1e7f2a4b6c=="
        files = ""
        for name, content in reply.attachments:
            # Onet writes the name as raw 8-bit UTF-8 inside the quotes.
            files += (f"--{boundary}\nContent-Type: application/pdf; name=\"{name}\"\n"
                      f"Content-Disposition: attachment; filename=\"{name}\"\n"
                      f"Content-Transfer-Encoding: base64\n\n{b64(content)}\n")
        text = (f'{headers}Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
                f"--{boundary}\nContent-Type: text/html; charset=UTF-8\n"
                f"Content-Transfer-Encoding: base64\n\n{b64(html.encode('utf-8'))}\n"
                f"{files}--{boundary}--\n")
        return text.replace("\n", "\r\n").encode("utf-8")
    return crlf(headers + "Content-Type: text/html; charset=UTF-8\n"
                f"Content-Transfer-Encoding: base64\n\n{b64(html.encode('utf-8'))}\n")


def wp(reply: Reply) -> bytes:
    """Poczta WP: a text part in ISO-8859-2 base64 with ``>`` quotes under the attribution."""
    quoted = reply.quoted
    attribution = (f'Dnia {ONET_SENT} "{quoted.name}" <{quoted.address}> '
                   "napisał(a):")
    own = reply.text + (f"\n\n{reply.author.signature}" if reply.author.signature else "")
    text = own + "\n\n" + attribution + "\n" + "\n".join(f"> {line}" for line in quoted.lines)
    text = fit(text, "iso-8859-2")
    headers = (
        f"Date: {REPLY_DATE}\nFrom: {encoded_word(reply.author.name, 'ISO-8859-2')} "
        f"<{reply.author.address}>\nTo: {reply.to}\n"
        f"Message-ID: {reply.message_id}\n{thread_fields(reply)}"
        f"Subject: {encoded_word(reply.subject, 'ISO-8859-2')}\nMIME-Version: 1.0\n"
        "X-Mailer: Poczta WP\n"
        f"{extra_fields(reply)}")
    part = ("Content-Type: text/plain; charset=ISO-8859-2\n"
            f"Content-Transfer-Encoding: base64\n\n{b64(text.encode('iso-8859-2'))}\n")
    if not reply.attachments:
        return crlf(headers + part)
    boundary = "=_wp_7a1c3e5f9b2d4f6a"
    files = ""
    for name, content in reply.attachments:
        ascii_name = fit(name, "iso-8859-2")
        files += (f"--{boundary}\nContent-Type: application/pdf;\n"
                  f" name*={rfc2231(ascii_name, 'iso-8859-2')}\n"
                  f"Content-Disposition: attachment;\n"
                  f" filename*={rfc2231(ascii_name, 'iso-8859-2')}\n"
                  f"Content-Transfer-Encoding: base64\n\n{b64(content)}\n")
    return crlf(f'{headers}Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
                f"--{boundary}\n{part}\n{files}--{boundary}--\n")


def interia(reply: Reply) -> bytes:
    """Poczta Interia: ISO-8859-2 quoted-printable, ``----- Wiadomość oryginalna -----``."""
    quoted = reply.quoted
    own = reply.text + (f"\n\n{reply.author.signature}" if reply.author.signature else "")
    block = ("----- Wiadomość oryginalna -----\n"
             f'Od: "{quoted.name}" <{quoted.address}>\n'
             f"Do: {reply.author.address};\n"
             f"Data: {INTERIA_SENT}\n"
             f"Temat: {quoted.subject}\n")
    text = own + "\n\n" + block + "\n" + quoted.text
    headers = (
        f"Date: {REPLY_DATE}\nFrom: {encoded_word(reply.author.name, 'iso-8859-2')} "
        f"<{reply.author.address}>\nTo: {reply.to}\n"
        f"Message-ID: {reply.message_id}\n{thread_fields(reply)}"
        f"Subject: {encoded_word(reply.subject, 'iso-8859-2')}\nMIME-Version: 1.0\n"
        "X-Mailer: Interia Poczta\n"
        f"{extra_fields(reply)}")
    return crlf(headers + "Content-Type: text/plain; charset=iso-8859-2\n"
                f"Content-Transfer-Encoding: quoted-printable\n\n{qp(text, 'iso-8859-2')}\n")


def samsung_email(reply: Reply) -> bytes:
    """Samsung Email on Android: HTML-only UTF-8, ``-------- Oryginalna wiadomość --------``."""
    quoted = reply.quoted
    own = reply.text + "\n\n\n\nWysłane z mojego smartfona Galaxy"
    html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
        f'</head><body><div dir="auto">{"<br>".join(escape(line) for line in own.split(chr(10)))}'
        '</div><div dir="auto"><br></div><div><br></div>'
        '<div align="left" dir="auto" style="font-size:100%;color:#000000"><div>'
        "-------- Oryginalna wiadomość --------</div>"
        f"<div>Od: {escape(quoted.name)} &lt;{escape(quoted.address)}&gt; </div>"
        f"<div>Data: {SAMSUNG_SENT} </div><div>Do: {escape(reply.author.address)} </div>"
        f"<div>Temat: {escape(quoted.subject)} </div><div><br></div></div>"
        f'{"<br>".join(escape(line) for line in quoted.lines)}</body></html>')
    headers = (
        f"Message-ID: {reply.message_id}\nDate: {REPLY_DATE}\n"
        f"Subject: {encoded_word(reply.subject, 'UTF-8', 'B')}\n{thread_fields(reply)}"
        f"From: {_mailbox_utf8(reply.author)}\nTo: {reply.to}\nMIME-Version: 1.0\n"
        f"{extra_fields(reply)}")
    body = ("Content-Type: text/html; charset=UTF-8\n"
            f"Content-Transfer-Encoding: base64\n\n{b64(html.encode('utf-8'))}\n")
    if reply.attachments:
        mixed = "--_com.samsung.android.email_1733301677123456789"
        files = ""
        for name, content in reply.attachments:
            word = encoded_word(name, "UTF-8", "B")
            files += (f'--{mixed}\nContent-Type: application/pdf; name="{word}"\n'
                      f'Content-Disposition: attachment; filename="{word}"\n'
                      f"Content-Transfer-Encoding: base64\n\n{b64(content)}\n")
        body = (f'Content-Type: multipart/mixed; boundary="{mixed}"\n\n'
                f"--{mixed}\n{body}\n{files}--{mixed}--\n")
    return crlf(headers + body)


# --------------------------------------------------------------------------- forwards


@dataclass(frozen=True)
class Forwarded:
    """A mail that a user forwards to the desk: the original sender, subject and text."""

    name: str
    address: str
    subject: str
    text: str
    to: str = "jan.kowalski@acme.pl"


def forward_text(style: str, original: Forwarded) -> str:
    """The forwarded part of an inline forward, in the style of one Polish client."""
    if style == "gmail":
        header = ("---------- Przekazana wiadomość ---------\n"
                  f"Od: {original.name} <{original.address}>\n"
                  "Date: pt., 4 gru 2026 o 08:12\n"
                  f"Subject: {original.subject}\n"
                  f"To: <{original.to}>\n\n\n")
    elif style == "thunderbird":
        header = ("-------- Przekazana wiadomość --------\n"
                  f"Temat: \t{original.subject}\n"
                  "Data: \tFri, 4 Dec 2026 08:12:40 +0100\n"
                  f"Od: \t{original.name} <{original.address}>\n"
                  f"Do: \t{original.to}\n\n\n\n")
    elif style == "outlook":
        header = ("_" * 32 + "\n"
                  f"Od: {original.name} <{original.address}>\n"
                  "Wysłane: piątek, 4 grudnia 2026 08:12\n"
                  f"Do: Kowalski Jan <{original.to}>\n"
                  f"Temat: {original.subject}\n\n")
    elif style == "apple":
        header = ("Początek przekazywanej wiadomości:\n\n"
                  f"Od: {original.name} <{original.address}>\n"
                  f"Temat: {original.subject}\n"
                  "Data: 4 grudnia 2026 o 08:12:40 CET\n"
                  f"Do: {original.to}\n\n")
    elif style == "windows":
        header = ("---------- Wiadomość przekazana dalej ----------\n"
                  f"Od: {original.name} <{original.address}>\n"
                  "Data: 4 grudnia 2026 08:12\n"
                  f"Temat: {original.subject}\n"
                  f"Do: {original.to}\n\n")
    else:
        raise ValueError(f"unknown forward style {style!r}")
    return f"{header}{original.text}\n"


def forward(style: str, *, author: Author, subject: str, comment: str, original: Forwarded,
            message_id: str, to: str = "Helpdesk IT <helpdesk@example.com>",
            charset: str = "utf-8") -> bytes:
    """An inline forward in one client's style, as a single text part.

    The author's signature sits between the comment and the forwarded mail, as Outlook,
    Gmail and Thunderbird place it in a forward; Gmail and Thunderbird put ``-- `` above
    it, Outlook does not.
    """
    text = comment + "\n\n"
    if author.signature:
        separator = "" if style == "outlook" else "-- \n"
        text += f"{separator}{author.signature}\n\n"
    text += forward_text(style, original)
    headers = (f"From: {_mailbox(author, charset)}\nTo: {to}\n"
               f"Subject: {encoded_word(subject, charset)}\nDate: {REPLY_DATE}\n"
               f"Message-ID: {message_id}\nMIME-Version: 1.0\n")
    return crlf(headers + f'Content-Type: text/plain; charset="{charset}"\n'
                f"Content-Transfer-Encoding: quoted-printable\n\n{qp(text, charset)}\n")

"""A seeded generator of realistic service-desk mail for the benchmarks.

The same seed and count give the same bytes, so two runs measure the same work. The mix
follows a Polish IT desk: Polish and English text in UTF-8, ISO-8859-2 and
Windows-1250, quoted-printable, base64 and 8-bit bodies, RFC 2047 subjects and names,
HTML alternatives, small attachments, replies that thread onto earlier tickets by
In-Reply-To or by subject tag, and a few out-of-office replies.

The mails are built as bytes by hand, not with ``email.message.EmailMessage``: building
50,000 mails with the standard library takes minutes, and hand-made mail also lets each
charset and transfer encoding be chosen exactly.
"""

from __future__ import annotations

import base64
import quopri
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

DESK_ADDRESS = "helpdesk@example.com"
TICKET_TAG = "[#{number}]"

FIRST_NAMES_PL = ("Zofia", "Jan", "Łukasz", "Małgorzata", "Paweł", "Grażyna", "Krzysztof",
                  "Agnieszka", "Michał", "Żaneta", "Wojciech", "Józef", "Ewelina", "Tomasz")
LAST_NAMES_PL = ("Wiśniewska", "Kowalski", "Żółkiewski", "Nowak", "Dąbrowska", "Zieliński",
                 "Wójcik", "Kamińska", "Lewandowski", "Szymańska", "Woźniak", "Kaczmarek")
FIRST_NAMES_EN = ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry")
LAST_NAMES_EN = ("Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Thomas", "Roberts")
DOMAINS = ("example.org", "firma.example.pl", "urzad.example.gov.pl", "example.net",
           "szkola.example.edu.pl")

SUBJECTS_PL = (
    "Drukarka na 2. piętrze nie drukuje",
    "Brak dostępu do VPN po zmianie hasła",
    "Nie działa poczta w Outlooku",
    "Prośba o nowe konto dla pracownika",
    "Zawiesza się komputer przy uruchamianiu",
    "Błąd przy logowaniu do systemu kadrowego",
    "Wymiana tonera w drukarce w sekretariacie",
    "Nie mogę otworzyć załącznika PDF",
    "Proszę o zwiększenie skrzynki pocztowej",
    "Monitor gaśnie co kilka minut",
    "Zgłoszenie awarii sieci Wi-Fi w sali 114",
    "Aktualizacja oprogramowania księgowego",
)
SUBJECTS_EN = (
    "Printer on the 2nd floor is not printing",
    "Cannot connect to the VPN",
    "Outlook keeps asking for my password",
    "Request: new laptop for a starter",
    "Shared drive is very slow",
    "Error when opening the invoice system",
)
PARAGRAPHS_PL = (
    "Dzień dobry,\n\nod rana nie mogę pracować, bo {problem}. Próbowałem już ponownie "
    "uruchomić komputer, ale nic to nie zmieniło.",
    "Problem występuje od wczoraj po południu. Komunikat brzmi: „Błąd połączenia z "
    "serwerem (kod 0x80070005)”. Zrzut ekranu w załączniku.",
    "Proszę o pilną pomoc, ponieważ jutro mamy zamknięcie miesiąca i muszę wysłać "
    "sprawozdanie do księgowości.",
    "Stanowisko: pokój 214, budynek B. Numer inwentarzowy: PC-{number:05d}.",
    "Czy można to naprawić zdalnie? Jestem dostępna pod numerem wewnętrznym {phone}.",
    "Z góry dziękuję za szybką odpowiedź.",
)
PARAGRAPHS_EN = (
    "Hello,\n\nsince this morning {problem}. I have already restarted the computer, "
    "but nothing changed.",
    "The error message reads: \"Connection to the server failed (code 0x80070005)\". "
    "A screenshot is attached.",
    "Could you please look at it today? We close the month tomorrow.",
    "Desk: room 214, building B. Asset number: PC-{number:05d}.",
    "Thanks in advance.",
)
PROBLEMS_PL = ("drukarka zgłasza zacięcie papieru", "Outlook nie łączy się z serwerem",
               "system pokazuje błąd uprawnień", "nie mogę zalogować się do domeny")
PROBLEMS_EN = ("the printer reports a paper jam", "Outlook cannot reach the server",
               "the system shows a permission error", "I cannot log in to the domain")
REPLIES_PL = ("Dziękuję, teraz działa.", "Niestety problem wrócił po godzinie.",
              "Przesyłam dodatkowe informacje, o które Państwo prosili.",
              "Czy jest już jakiś postęp w tej sprawie?")
REPLIES_EN = ("Thanks, it works now.", "Unfortunately the problem came back.",
              "Here is the extra information you asked for.", "Any news on this?")
SIGNATURE_PL = "\n\n-- \n{name}\nDział Kadr\ntel. wewn. {phone}\n"
SIGNATURE_EN = "\n\n-- \n{name}\nFinance\next. {phone}\n"


@dataclass
class Contact:
    name: str
    address: str
    polish: bool


@dataclass
class GeneratedTicket:
    """A new-ticket mail already generated, for later replies to thread onto."""

    number: int
    message_id: str
    subject: str
    contact: Contact


@dataclass
class CorpusStats:
    """Counts of the generated mail by kind, to compare with what maildesk did."""

    new: int = 0
    replies_by_reference: int = 0
    replies_by_tag: int = 0
    auto_replies: int = 0
    with_html: int = 0
    with_attachment: int = 0
    large_attachments: int = 0
    total_bytes: int = 0
    charsets: dict[str, int] = field(default_factory=dict)


def _encode_word(text: str, charset: str, rng: random.Random) -> str:
    """RFC 2047 encoded word (B or Q) for a non-ASCII header value, else the text itself."""
    if text.isascii():
        return text
    data = text.encode(charset)
    if rng.random() < 0.5:
        return f"=?{charset}?B?{base64.b64encode(data).decode('ascii')}?="
    encoded = quopri.encodestring(data, header=True).decode("ascii")
    encoded = encoded.replace("?", "=3F").replace("\n", "")
    return f"=?{charset}?Q?{encoded}?="


def _encode_body(text: str, charset: str, rng: random.Random) -> tuple[str, bytes]:
    """Return (Content-Transfer-Encoding, body bytes) for a text part with CRLF line ends."""
    if charset == "iso-8859-2":
        # ISO-8859-2 has no typographic quotes; mail clients fall back to ASCII ones.
        text = text.translate(str.maketrans("„”", '""'))
    data = text.replace("\n", "\r\n").encode(charset)
    choice = rng.random()
    if choice < 0.45:
        return "quoted-printable", quopri.encodestring(data).replace(b"\r\n", b"\n").replace(
            b"\n", b"\r\n")
    if choice < 0.75:
        return "base64", base64.encodebytes(data).replace(b"\n", b"\r\n")
    return "8bit", data


def _html(text: str) -> str:
    paragraphs = "".join(
        f"<p>{chunk.replace('&', '&amp;').replace('<', '&lt;').replace(chr(10), '<br>')}</p>"
        for chunk in text.split("\n\n")
    )
    return ("<html><head><style>p{font-family:Calibri}</style></head><body>"
            f"{paragraphs}</body></html>")


def _fake_png(rng: random.Random, size: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + rng.randbytes(max(size - 8, 0))


class CorpusGenerator:
    """Generator of ``count`` mails from ``seed``; iterate to get the raw bytes one by one.

    ``large_every`` puts an attachment of ``large_size`` bytes into every n-th mail
    (the memory benchmark); 0 means none. ``replies=False`` makes every mail a new
    ticket, so each one is acknowledged (the latency benchmark).
    """

    def __init__(self, count: int, seed: int = 1, *, large_every: int = 0,
                 large_size: int = 4 * 1024 * 1024, start: datetime | None = None,
                 domain: str = "bench", replies: bool = True) -> None:
        self.count = count
        self.replies = replies
        self.rng = random.Random(seed)
        self.large_every = large_every
        self.large_size = large_size
        self.clock = start or datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
        self.domain = domain
        self.stats = CorpusStats()
        self.tickets: list[GeneratedTicket] = []
        self.contacts = [self._contact(index) for index in range(max(50, count // 3))]

    def _contact(self, index: int) -> Contact:
        rng = self.rng
        polish = rng.random() < 0.8
        first = rng.choice(FIRST_NAMES_PL if polish else FIRST_NAMES_EN)
        last = rng.choice(LAST_NAMES_PL if polish else LAST_NAMES_EN)
        local = (f"{first}.{last}".lower().translate(str.maketrans("ąćęłńóśźż", "acelnoszz"))
                 + f"{index}")
        return Contact(f"{first} {last}", f"{local}@{rng.choice(DOMAINS)}", polish)

    def __iter__(self) -> Iterator[bytes]:
        for index in range(self.count):
            raw = self.mail(index)
            self.stats.total_bytes += len(raw)
            yield raw

    def mail(self, index: int) -> bytes:
        rng = self.rng
        self.clock += timedelta(seconds=rng.randint(5, 120))
        large = self.large_every > 0 and index % self.large_every == self.large_every - 1
        roll = rng.random() if self.replies else 1.0
        if self.tickets and roll < 0.12:
            return self._reply(index, by_tag=False)
        if self.tickets and roll < 0.20:
            return self._reply(index, by_tag=True)
        if self.tickets and roll < 0.24:
            return self._auto_reply(index)
        return self._new(index, large)

    def _message_id(self, index: int) -> str:
        return f"<{index}.{self.rng.getrandbits(40):x}@{self.domain}.example.org>"

    def _charset(self, contact: Contact) -> str:
        if not contact.polish:
            return "utf-8"
        choice = self.rng.random()
        if choice < 0.6:
            return "utf-8"
        if choice < 0.8:
            return "iso-8859-2"
        return "windows-1250"

    def _headers(self, contact: Contact, subject: str, message_id: str, charset: str,
                 extra: list[str]) -> list[str]:
        rng = self.rng
        name = _encode_word(contact.name, charset, rng)
        domain = contact.address.split("@")[1]
        received = (f"Received: from mx.{domain} (mx [192.0.2.{rng.randint(1, 254)}])"
                    f"\r\n\tby mail.example.com with ESMTPS; {format_datetime(self.clock)}")
        return [
            "Return-Path: <" + contact.address + ">",
            received,
            f"From: {name} <{contact.address}>",
            f"To: Helpdesk IT <{DESK_ADDRESS}>",
            f"Subject: {_encode_word(subject, charset, rng)}",
            f"Date: {format_datetime(self.clock)}",
            f"Message-ID: {message_id}",
            "MIME-Version: 1.0",
            "User-Agent: " + rng.choice(("Microsoft Outlook 16.0", "Thunderbird/115.5.0",
                                         "Roundcube Webmail/1.6.5", "iPhone Mail (21B101)")),
            *extra,
        ]

    def _text(self, contact: Contact, index: int) -> str:
        rng = self.rng
        paragraphs = PARAGRAPHS_PL if contact.polish else PARAGRAPHS_EN
        problems = PROBLEMS_PL if contact.polish else PROBLEMS_EN
        chosen = [paragraphs[0]] + rng.sample(paragraphs[1:], rng.randint(1, 4))
        body = "\n\n".join(chosen).format(problem=rng.choice(problems), number=index,
                                          phone=rng.randint(100, 999))
        signature = SIGNATURE_PL if contact.polish else SIGNATURE_EN
        return body + signature.format(name=contact.name, phone=rng.randint(100, 999))

    def _body(self, text: str, charset: str, *, html: bool, attachment: bytes | None,
              attachment_name: str = "") -> tuple[list[str], bytes]:
        """Return (MIME headers, body bytes) for text, optional HTML and one attachment."""
        rng = self.rng
        self.stats.charsets[charset] = self.stats.charsets.get(charset, 0) + 1
        encoding, data = _encode_body(text, charset, rng)
        text_part = (f"Content-Type: text/plain; charset={charset}; format=flowed\r\n"
                     f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode() + data
        if not html and attachment is None:
            return ([f"Content-Type: text/plain; charset={charset}; format=flowed",
                     f"Content-Transfer-Encoding: {encoding}"], data)

        part = text_part
        if html:
            self.stats.with_html += 1
            html_encoding, html_data = _encode_body(_html(text), charset, rng)
            boundary = f"alt-{rng.getrandbits(48):012x}"
            part = (f"Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
                    f"--{boundary}\r\n").encode() + text_part + (
                f"\r\n--{boundary}\r\nContent-Type: text/html; charset={charset}\r\n"
                f"Content-Transfer-Encoding: {html_encoding}\r\n\r\n").encode() + html_data + (
                f"\r\n--{boundary}--\r\n").encode()
        if attachment is None:
            head, _, body = part.partition(b"\r\n\r\n")
            return head.decode().split("\r\n"), body

        self.stats.with_attachment += 1
        boundary = f"mix-{rng.getrandbits(48):012x}"
        filename = _encode_word(attachment_name, "utf-8", rng)
        content_type = "image/png" if attachment_name.endswith(".png") else "application/pdf"
        encoded = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
        body = (f"--{boundary}\r\n").encode() + part + (
            f"\r\n--{boundary}\r\nContent-Type: {content_type}; name=\"{filename}\"\r\n"
            f"Content-Disposition: attachment; filename=\"{filename}\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + encoded + (
            f"\r\n--{boundary}--\r\n").encode()
        return [f"Content-Type: multipart/mixed; boundary=\"{boundary}\""], body

    def _assemble(self, headers: list[str], body: bytes) -> bytes:
        return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + body

    def _new(self, index: int, large: bool) -> bytes:
        rng = self.rng
        contact = rng.choice(self.contacts)
        subject = rng.choice(SUBJECTS_PL if contact.polish else SUBJECTS_EN)
        if rng.random() < 0.3:
            subject = f"{subject} ({rng.choice(('pilne', 'PILNE', 'pokój 214', 'urgent'))})"
        message_id = self._message_id(index)
        charset = self._charset(contact)
        text = self._text(contact, index)

        attachment = None
        name = ""
        if large:
            attachment = _fake_png(rng, self.large_size)
            name = f"zrzut-ekranu-{index}.png"
            self.stats.large_attachments += 1
        elif rng.random() < 0.10:
            attachment = _fake_png(rng, rng.randint(2_000, 40_000))
            name = rng.choice(("zrzut ekranu.png", "błąd.png", "faktura-12_2026.pdf", "log.pdf"))
        mime, body = self._body(text, charset, html=rng.random() < 0.35, attachment=attachment,
                                attachment_name=name)

        self.stats.new += 1
        self.tickets.append(GeneratedTicket(len(self.tickets) + 1, message_id, subject, contact))
        return self._assemble(self._headers(contact, subject, message_id, charset, mime), body)

    def _reply(self, index: int, by_tag: bool) -> bytes:
        """A reply from the requester of an earlier ticket.

        By reference it names the original Message-ID in In-Reply-To; by tag it carries
        ``[#n]`` in the subject, where n is the ticket number maildesk gives the n-th new
        mail on an empty database.
        """
        rng = self.rng
        ticket = rng.choice(self.tickets[-500:])
        contact = ticket.contact
        charset = self._charset(contact)
        replies = REPLIES_PL if contact.polish else REPLIES_EN
        quoted = "\n".join(f"> {line}" for line in self._text(contact, index).splitlines())
        text = f"{rng.choice(replies)}\n\n{contact.name}\n\n{quoted}\n"
        extra: list[str] = []
        if by_tag:
            self.stats.replies_by_tag += 1
            subject = f"Re: {TICKET_TAG.format(number=ticket.number)} {ticket.subject}"
        else:
            self.stats.replies_by_reference += 1
            subject = f"Re: {ticket.subject}"
            extra = [f"In-Reply-To: {ticket.message_id}", f"References: {ticket.message_id}"]
        mime, body = self._body(text, charset, html=rng.random() < 0.2, attachment=None)
        return self._assemble(
            self._headers(contact, subject, self._message_id(index), charset, [*extra, *mime]),
            body)

    def _auto_reply(self, index: int) -> bytes:
        rng = self.rng
        ticket = rng.choice(self.tickets[-500:])
        contact = ticket.contact
        self.stats.auto_replies += 1
        if contact.polish:
            subject = f"Automatyczna odpowiedź: {ticket.subject}"
            text = "Jestem poza biurem do poniedziałku. W pilnych sprawach proszę dzwonić."
        else:
            subject = f"Automatic reply: {ticket.subject}"
            text = "I am out of the office until Monday."
        charset = self._charset(contact)
        mime, body = self._body(text, charset, html=False, attachment=None)
        extra = ["Auto-Submitted: auto-replied", "X-Auto-Response-Suppress: All",
                 f"In-Reply-To: <ack.{ticket.number}@maildesk.example.com>"]
        return self._assemble(
            self._headers(contact, subject, self._message_id(index), charset, [*extra, *mime]),
            body)


def generate(count: int, seed: int = 1, **options: object) -> tuple[list[bytes], CorpusStats]:
    """Return ``count`` mails as a list, with the statistics of what was generated."""
    generator = CorpusGenerator(count, seed, **options)  # type: ignore[arg-type]
    mails = list(generator)
    return mails, generator.stats

"""Replies from the mail clients Polish users and agents write with, through the pipeline.

Each client's reply is built byte for byte as that client writes it in Polish
(``clientmail``): its charset and transfer encoding, its quote format, signature, mobile
footer and the company footer. The desk must thread it onto the right ticket and keep
only the text written this time. It must run the commands an agent wrote at the top and
none that stand only in the quote, and keep the ticket tag in its subjects and every
Polish letter.

Every test runs the whole pipeline on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from clientmail import (
    INVOICE,
    INVOICE_NAME,
    LEGAL_FOOTER,
    LEGAL_FOOTER_EN,
    Author,
    Forwarded,
    Quoted,
    Reply,
    apple_mail,
    fit,
    forward,
    gmail,
    interia,
    onet,
    outlook_desktop,
    outlook_rich_text,
    owa,
    samsung_email,
    thunderbird,
    wp,
)
from deskfactory import mail, make_desk

from maildesk import models, pipeline
from maildesk.desk import Desk

AUTHENTICATED = ("Authentication-Results: mx.example.com;\r\n dkim=pass header.d=example.com "
                 "header.s=sel1;\r\n spf=pass smtp.mailfrom=example.com;\r\n"
                 " dmarc=pass header.from=example.com\r\n")

JAN = Author(
    "Jan Kowalski", "jan.kowalski@acme.pl",
    signature="Jan Kowalski\nSpecjalista ds. księgowości\nACME Sp. z o.o.\n"
              "tel. +48 22 123 45 67",
    footer=LEGAL_FOOTER)
MAREK = Author("Marek Zieliński", "marek.zielinski@example.com",
               signature="Marek Zieliński\nDział IT, wew. 214",
               footer=LEGAL_FOOTER + "\n\n" + LEGAL_FOOTER_EN)

# Every Polish letter, small and capital, with the typographic quotes and dash that
# Polish text uses; clients whose charset lacks those write ASCII ones instead.
USER_TEXT = ("Dzień dobry,\n\n"
             "niestety drukarka w pokoju 214 dalej nie działa: wyświetla „Zacięcie papieru”.\n"
             "Zażółć gęślą jaźń – ZAŻÓŁĆ GĘŚLĄ JAŹŃ.\n\n"
             "Pozdrawiam\nJan")
AGENT_TEXT = ("Dzień dobry,\n\n"
              "wymieniliśmy bęben w drukarce – proszę spróbować ponownie.\n\n"
              "Pozdrawiam\nMarek")


@dataclass(frozen=True)
class Client:
    """One mail client: how it writes a reply and what it does to the typed text."""

    build: Callable[[Reply], bytes]
    prefix: str = "RE: "
    # The signature follows "-- ", so it is cut with everything below it.
    dash_signature: bool = False
    # The charset lacks „ ” and –, so the client writes " and - instead.
    ascii_punctuation: bool = False
    # The client writes the author's signature (mobile apps write only their footer).
    signature: bool = True
    # The name the client gives an attachment called INVOICE_NAME; empty when the
    # builder writes no attachments.
    attachment_name: str = INVOICE_NAME

    def typed(self, text: str) -> str:
        return fit(text, "iso-8859-2") if self.ascii_punctuation else text

    def kept(self, text: str, author: Author) -> str:
        """Return what the desk should keep of a reply: the text and a plain signature."""
        if self.dash_signature or not self.signature or not author.signature:
            return self.typed(text)
        return self.typed(f"{text}\n\n{author.signature}")


CLIENTS: dict[str, Client] = {
    "outlook-windows-1250": Client(lambda reply: outlook_desktop(reply, charset="windows-1250")),
    "outlook-iso-8859-2": Client(lambda reply: outlook_desktop(reply, charset="iso-8859-2"),
                                 prefix="ODP: ", ascii_punctuation=True),
    "outlook-html-only": Client(lambda reply: outlook_desktop(reply, charset="windows-1250",
                                                              html_only=True)),
    "outlook-utf-8": Client(lambda reply: outlook_desktop(reply, charset="utf-8")),
    "outlook-2010": Client(lambda reply: outlook_desktop(reply, charset="iso-8859-2",
                                                         legacy=True),
                           prefix="Odp: ", ascii_punctuation=True),
    "outlook-rich-text": Client(outlook_rich_text),
    "outlook-rich-text-codepage": Client(
        lambda reply: outlook_rich_text(reply, long_names="codepage")),
    "outlook-web": Client(lambda reply: owa(reply, charset="utf-8")),
    "outlook-web-iso-8859-2": Client(lambda reply: owa(reply, charset="iso-8859-2"),
                                     ascii_punctuation=True),
    "gmail": Client(gmail, prefix="Re: ", dash_signature=True),
    "gmail-without-w-dniu": Client(lambda reply: gmail(reply, with_w_dniu=False),
                                   prefix="Re: ", dash_signature=True),
    "gmail-android": Client(lambda reply: gmail(reply, android=True), prefix="Re: ",
                            dash_signature=True),
    "thunderbird": Client(thunderbird, prefix="Re: ", dash_signature=True),
    "thunderbird-top-post": Client(lambda reply: thunderbird(reply, bottom_post=False),
                                   prefix="Re: ", dash_signature=True),
    "iphone": Client(apple_mail, prefix="Re: "),
    "iphone-wiadomosc-napisana": Client(lambda reply: apple_mail(reply, wiadomosc=True),
                                        prefix="Re: "),
    "apple-mail": Client(lambda reply: apple_mail(reply, ios=False), prefix="Re: "),
    "onet": Client(onet, prefix="Odp: "),
    "wp": Client(wp, prefix="Re: ", ascii_punctuation=True,
                 attachment_name="Załącznik - faktura.pdf"),
    "interia": Client(interia, prefix="Odp: ", ascii_punctuation=True, attachment_name=""),
    "samsung-email": Client(samsung_email, prefix="Odp: ", signature=False),
}


# --------------------------------------------------------------------------- helpers


def client_desk(tmp_path: Path, database_url: str) -> Desk:
    return make_desk(tmp_path, database_url, commands={"trusted_authserv_ids": ["mx.example.com"]})


def open_ticket(desk: Desk) -> tuple[models.Ticket, Quoted]:
    """Jan writes, Marek takes the ticket; return it and the acknowledgement Jan got."""
    outcome = pipeline.process(desk, mail(sender=JAN.mailbox, message_id="<m1@acme.pl>"),
                               "test:user")
    ticket = models.Ticket.get_by_id(outcome.ticket)
    ticket.assignee = "marek.zielinski"
    ticket.status = "assigned"
    ticket.save()
    ack = models.Outbox.get(models.Outbox.ticket == ticket, models.Outbox.kind == "ack")
    return ticket, Quoted.from_bytes(bytes(ack.raw))


def reply_of(client: Client, author: Author, text: str, quoted: Quoted, message_id: str,
             **fields: Any) -> Reply:
    subject = client.prefix + quoted.subject
    return Reply(author=author, subject=subject, text=client.typed(text), quoted=quoted,
                 message_id=message_id, **fields)


def from_agent(raw: bytes) -> bytes:
    """Add the verdict that the desk's receiving server writes above an agent's mail."""
    return AUTHENTICATED.encode("ascii") + raw


def outbox(kind: str) -> list[models.Outbox]:
    return list(models.Outbox.select().where(models.Outbox.kind == kind)
                .order_by(models.Outbox.id))


def parsed(row: models.Outbox) -> EmailMessage:
    message = message_from_bytes(bytes(row.raw), policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def text_of(row: models.Outbox) -> str:
    body = parsed(row).get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def entry_of(outcome: Any) -> models.Message:
    """Return the newest entry of the outcome's ticket: the one the mail added."""
    return (models.Message.select().where(models.Message.ticket == outcome.ticket)
            .order_by(models.Message.id.desc()).get())


def without_signature(text: str) -> str:
    """Return a desk mail's text above its "-- " signature."""
    return text.split("\n-- \n", 1)[0]


# --------------------------------------------------------------------------- users


@pytest.mark.parametrize("name", list(CLIENTS))
def test_user_reply_threads_and_keeps_new_text(tmp_path: Path, database_url: str,
                                               name: str) -> None:
    client = CLIENTS[name]
    desk = client_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    files = ((INVOICE_NAME, INVOICE),) if client.attachment_name else ()
    reply = reply_of(client, JAN, USER_TEXT, ack, "<u2@acme.pl>", attachments=files)

    outcome = pipeline.process(desk, client.build(reply), "test:user")

    assert outcome.action == "append"
    assert outcome.ticket == ticket.id
    entry = entry_of(outcome)
    assert entry.kind == "customer"
    assert entry.reply_text == client.kept(USER_TEXT, JAN)
    assert "Zażółć gęślą jaźń" in entry.text
    attachments = [part.filename for part in
                   models.Attachment.select().where(models.Attachment.message == entry)]
    assert attachments == ([client.attachment_name] if files else [])


@pytest.mark.parametrize("name", list(CLIENTS))
def test_user_reply_reaches_assignee_without_quote(tmp_path: Path, database_url: str,
                                                   name: str) -> None:
    client = CLIENTS[name]
    desk = client_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    pipeline.process(desk, client.build(reply_of(client, JAN, USER_TEXT, ack, "<u2@acme.pl>")),
                     "test:user")

    rows = outbox("user_replied")
    assert len(rows) == 1
    assert rows[0].recipients.split() == ["marek.zielinski@example.com"]
    notice = parsed(rows[0])
    assert f"[#{ticket.id}]" in notice["Subject"]
    text = without_signature(text_of(rows[0]))
    assert client.kept(USER_TEXT, JAN) in text
    assert "przyjęliśmy Twoje zgłoszenie" not in text
    assert "Niniejsza wiadomość" not in text
    assert "Wysłane z" not in text


# --------------------------------------------------------------------------- agents


def agent_reply(client: Client, desk: Desk, text: str, quoted: Quoted,
                message_id: str = "<a1@mail.example.com>") -> Any:
    raw = from_agent(client.build(reply_of(client, MAREK, text, quoted, message_id)))
    return pipeline.process(desk, raw, "test:agent")


def user_replied_notice(desk: Desk, ack: Quoted) -> Quoted:
    """Jan replies to the acknowledgement; return the notice of it that Marek received."""
    pipeline.process(desk, mail(sender=JAN.mailbox, subject=f"Re: {ack.subject}",
                                body="Nadal nie działa.\n", message_id="<u2@acme.pl>",
                                headers={"In-Reply-To": ack.message_id}), "test:user")
    return Quoted.from_bytes(bytes(outbox("user_replied")[-1].raw))


@pytest.mark.parametrize("name", list(CLIENTS))
def test_agent_commands_on_top_run(tmp_path: Path, database_url: str, name: str) -> None:
    client = CLIENTS[name]
    desk = client_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    notice = user_replied_notice(desk, ack)

    outcome = agent_reply(client, desk, "#status w realizacji\n#priorytet 2\n\n" + AGENT_TEXT,
                          notice)

    assert outcome.ticket == ticket.id
    changed = models.Ticket.get_by_id(ticket.id)
    assert (changed.status, changed.priority) == ("in_progress", 2)
    relayed = outbox("reply")
    assert len(relayed) == 1
    assert relayed[0].recipients.split() == ["jan.kowalski@acme.pl"]
    assert parsed(relayed[0])["Subject"] == f"Re: [#{ticket.id}] Drukarka nie drukuje"
    text = without_signature(text_of(relayed[0]))
    assert text.startswith(client.kept(AGENT_TEXT, MAREK) + "\n")
    assert "#status" not in text
    assert "Nadal nie działa" not in text
    assert "Niniejsza wiadomość" not in text
    assert "This e-mail" not in text


@pytest.mark.parametrize("name", list(CLIENTS))
def test_agent_commands_in_quote_ignored(tmp_path: Path, database_url: str,
                                         name: str) -> None:
    # Marek replies to his own earlier mail, whose text started with commands.
    client = CLIENTS[name]
    desk = client_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    agent_reply(CLIENTS["gmail"], desk, "#priorytet 2\n\nSprawdzam.", ack,
                message_id="<a1@mail.example.com>")
    status = models.Ticket.get_by_id(ticket.id).status
    own = Quoted("Marek Zieliński", "marek.zielinski@example.com",
                 "Helpdesk IT <helpdesk@example.com>",
                 f"Re: [#{ticket.id}] Drukarka nie drukuje",
                 "#zamknij\n#priorytet 1\n\nSprawdzam.\n", "<a1@mail.example.com>",
                 (ack.message_id,))

    agent_reply(client, desk, "Dzień dobry,\n\nbęben zamówiony, będzie w piątek.", own,
                message_id="<a2@mail.example.com>")

    changed = models.Ticket.get_by_id(ticket.id)
    assert (changed.status, changed.priority) == (status, 2)
    assert not outbox("command_error")
    text = without_signature(text_of(outbox("reply")[-1]))
    assert "bęben zamówiony" in text
    assert "#zamknij" not in text


# --------------------------------------------------------------------------- subjects


@pytest.mark.parametrize("prefix", ["RE: ", "ODP: ", "Odp: ", "RE: PD: ", "Re[2]: ",
                                    "AW: ", "Odp.: RE: "])
def test_reply_prefix_keeps_tag_thread(tmp_path: Path, database_url: str, prefix: str) -> None:
    # Outlook without In-Reply-To: only Thread-Index, Thread-Topic and the tag remain.
    desk = client_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    reply = Reply(JAN, prefix + ack.subject, "Dalej nie działa.", ack, "<u3@acme.pl>",
                  in_reply_to=False)

    outcome = pipeline.process(desk, outlook_desktop(reply, charset="windows-1250"), "test:user")

    assert outcome.ticket == ticket.id
    assert entry_of(outcome).reply_text == f"Dalej nie działa.\n\n{JAN.signature}"
    notice = parsed(outbox("user_replied")[0])
    assert notice["Subject"].startswith(f"[#{ticket.id}] ")


def test_outlook_reply_without_references_relays_agent_text(tmp_path: Path,
                                                            database_url: str) -> None:
    desk = client_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    notice = user_replied_notice(desk, ack)
    reply = replace(reply_of(CLIENTS["outlook-windows-1250"], MAREK,
                             "#status oczekuje\n\n" + AGENT_TEXT, notice,
                             "<a1@mail.example.com>"), in_reply_to=False)

    outcome = pipeline.process(desk, from_agent(outlook_desktop(reply, charset="windows-1250")),
                               "test:agent")

    assert outcome.ticket == ticket.id
    assert models.Ticket.get_by_id(ticket.id).status == "pending"
    relayed = outbox("reply")
    assert len(relayed) == 1
    assert "wymieniliśmy bęben" in text_of(relayed[0])


@pytest.mark.parametrize("name", ["outlook-windows-1250", "outlook-html-only", "outlook-web",
                                  "interia", "samsung-email"])
def test_agent_reply_with_nothing_typed_changes_nothing(tmp_path: Path, database_url: str,
                                                        name: str) -> None:
    # Marek presses Send on his reply before typing: the mail holds only the copied
    # header block of his own earlier mail, and that mail's commands, below it.
    client = CLIENTS[name]
    desk = client_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    agent_reply(CLIENTS["gmail"], desk, "#priorytet 2\n\nSprawdzam.", ack)
    status = models.Ticket.get_by_id(ticket.id).status
    replies = len(outbox("reply"))
    own = Quoted("Marek Zieliński", "marek.zielinski@example.com",
                 "Helpdesk IT <helpdesk@example.com>",
                 f"Re: [#{ticket.id}] Drukarka nie drukuje",
                 "#zamknij\n#priorytet 1\n\nZamykam, toner wymieniony.\n",
                 "<a1@mail.example.com>", (ack.message_id,))
    silent = Author(MAREK.name, MAREK.address)

    outcome = pipeline.process(desk, from_agent(client.build(
        reply_of(client, silent, "", own, "<a2@mail.example.com>"))), "test:agent")

    assert outcome.ticket == ticket.id
    changed = models.Ticket.get_by_id(ticket.id)
    assert (changed.status, changed.priority) == (status, 2)
    assert len(outbox("reply")) == replies
    assert entry_of(outcome).reply_text == ""


# --------------------------------------------------------------------------- forwards


ERROR_MAIL = Forwarded(
    "System FK", "noreply@fk.acme.pl", "Błąd importu faktur",
    "Import pliku FV_2026_12.csv nie powiódł się: wiersz 17, pole „NIP nabywcy”.\n\n"
    "Wiadomość wygenerowana automatycznie, prosimy na nią nie odpowiadać.")
COMMENT = "Dzień dobry,\n\nod wczoraj dostaję taki błąd, proszę o pomoc."


# Users often delete the prefix, and then only the forward's own lines mark it. An
# Outlook forward without its prefix looks like a reply, so it keeps the prefix here.
FORWARDS = [(style, prefix) for style in ("gmail", "thunderbird", "apple", "windows")
            for prefix in ("PD: ", "Fwd: ", "")] + [("outlook", "PD: "), ("outlook", "FW: ")]


@pytest.mark.parametrize(("style", "prefix"), FORWARDS)
def test_forward_keeps_forwarded_mail(tmp_path: Path, database_url: str, style: str,
                                      prefix: str) -> None:
    desk = client_desk(tmp_path, database_url)

    outcome = pipeline.process(desk, forward(
        style, author=JAN, subject=prefix + ERROR_MAIL.subject, comment=COMMENT,
        original=ERROR_MAIL, message_id="<f1@acme.pl>"), "test:user")

    assert outcome.action == "create"
    ack = parsed(outbox("ack")[0])
    assert ack["Subject"].startswith(f"[#{outcome.ticket}] ")
    assert ERROR_MAIL.subject in ack["Subject"]
    text = entry_of(outcome).reply_text
    assert text.startswith(COMMENT + "\n")
    assert "wiersz 17, pole „NIP nabywcy”" in text
    # Only Outlook writes its signature without "-- ", and a signature without it stays.
    assert ("tel. +48 22 123 45 67" in text) == (style == "outlook")


def test_forward_into_ticket_keeps_forwarded_mail(tmp_path: Path, database_url: str) -> None:
    desk = client_desk(tmp_path, database_url)
    ticket, _ack = open_ticket(desk)

    outcome = pipeline.process(desk, forward(
        "outlook", author=JAN, subject=f"PD: [#{ticket.id}] {ERROR_MAIL.subject}",
        comment="Dosyłam jeszcze ten komunikat.", original=ERROR_MAIL,
        message_id="<f2@acme.pl>", charset="windows-1250"), "test:user")

    assert outcome.ticket == ticket.id
    assert "wiersz 17, pole „NIP nabywcy”" in entry_of(outcome).reply_text
    notice = without_signature(text_of(outbox("user_replied")[0]))
    assert "wiersz 17" in notice


# --------------------------------------------------------------------------- satisfaction


def resolved_ticket(desk: Desk) -> tuple[models.Ticket, Quoted]:
    """Marek resolves Jan's ticket; return it and the relayed reply as Jan got it."""
    ticket, ack = open_ticket(desk)
    agent_reply(CLIENTS["gmail"], desk, "#status rozwiązane\n\nToner wymieniony.", ack)
    assert models.Ticket.get_by_id(ticket.id).status == "resolved"
    return ticket, Quoted.from_bytes(bytes(outbox("reply")[-1].raw))


@pytest.mark.parametrize("name", list(CLIENTS))
def test_user_thanks_keeps_ticket_resolved(tmp_path: Path, database_url: str,
                                           name: str) -> None:
    # The company footer contains "nie jest Pan/Pani adresatem": read as part of the
    # reply, its "nie" made the thanks a complaint, and the ticket opened again.
    client = CLIENTS[name]
    desk = client_desk(tmp_path, database_url)
    ticket, relayed = resolved_ticket(desk)

    pipeline.process(desk, client.build(reply_of(
        client, JAN, "Dziękuję, już działa.\n\nPozdrawiam\nJan", relayed, "<u3@acme.pl>")),
        "test:user")

    assert models.Ticket.get_by_id(ticket.id).status == "resolved"


@pytest.mark.parametrize("name", list(CLIENTS))
def test_user_rating_recorded(tmp_path: Path, database_url: str, name: str) -> None:
    client = CLIENTS[name]
    desk = client_desk(tmp_path, database_url)
    ticket, relayed = resolved_ticket(desk)

    pipeline.process(desk, client.build(reply_of(client, JAN, "5", relayed, "<u3@acme.pl>")),
                     "test:user")

    assert models.Ticket.get_by_id(ticket.id).satisfaction == 5

"""Polish mail clients' replies through a real Dovecot mailbox and the SMTP sink.

The mails of ``clientmail`` reach the desk by IMAP, the daemon processes one pass and
sends its outbox to the aiosmtpd sink, where the test reads what each person received.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clientmail import (
    INVOICE,
    INVOICE_NAME,
    Author,
    Quoted,
    Reply,
    apple_mail,
    outlook_desktop,
    outlook_rich_text,
    thunderbird,
)
from deskfactory import mail, make_desk
from imapdesk import imap_overrides
from test_mail_clients import AUTHENTICATED, JAN, MAREK, USER_TEXT

from maildesk import models
from maildesk.daemon import Daemon
from maildesk.wiring import build_daemon

pytestmark = pytest.mark.servers


@pytest.fixture
def daemon(tmp_path: Path, database_url: str, imap_account: Any, smtp: Any,
           monkeypatch: pytest.MonkeyPatch) -> Daemon:
    monkeypatch.setenv("MAILDESK_TEST_IMAP_PASSWORD", imap_account.password)
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"]},
                     **imap_overrides(imap_account, smtp))
    return build_daemon(desk)


def run_pass(daemon: Daemon, smtp: Any) -> dict[str, list[Any]]:
    """Process what is in the mailbox, send the outbox; return the new mail by recipient."""
    smtp.clear()
    daemon.run(once=True)
    received: dict[str, list[Any]] = {}
    for delivery in smtp.deliveries:
        for recipient in delivery.rcpt_tos:
            received.setdefault(recipient.lower(), []).append(delivery)
    return received


def text(delivery: Any) -> str:
    body = delivery.message.get_body(preferencelist=("plain",))
    return str(body.get_content()).replace("\r\n", "\n").split("\n-- \n", 1)[0]


def open_ticket(daemon: Daemon, imap_account: Any, smtp: Any) -> tuple[models.Ticket, Quoted]:
    """Jan writes, Marek takes the ticket; return it and the acknowledgement as Jan got it."""
    imap_account.append(mail(sender=JAN.mailbox, message_id="<m1@acme.pl>"))
    ack = run_pass(daemon, smtp)[JAN.address][0]
    ticket = models.Ticket.get()
    ticket.assignee = "marek.zielinski"
    ticket.status = "assigned"
    ticket.save()
    return ticket, Quoted.from_bytes(ack.data)


def test_outlook_reply_reaches_agent_cut(daemon: Daemon, imap_account: Any,
                                         smtp: Any) -> None:
    ticket, ack = open_ticket(daemon, imap_account, smtp)

    imap_account.append(outlook_desktop(
        Reply(JAN, "ODP: " + ack.subject, USER_TEXT, ack, "<u2@acme.pl>", in_reply_to=False,
              attachments=((INVOICE_NAME, INVOICE),)), charset="windows-1250"))
    received = run_pass(daemon, smtp)

    notice = received[MAREK.address][0]
    assert f"[#{ticket.id}]" in notice.message["Subject"]
    assert text(notice).count("Zażółć gęślą jaźń – ZAŻÓŁĆ GĘŚLĄ JAŹŃ.") == 1
    assert "tel. +48 22 123 45 67" in text(notice)
    assert "Niniejsza wiadomość" not in text(notice)
    assert "przyjęliśmy Twoje zgłoszenie" not in text(notice)
    stored = models.Attachment.get()
    assert (stored.filename, stored.size) == (INVOICE_NAME, len(INVOICE))


def test_iphone_agent_commands_relayed_to_user(daemon: Daemon, imap_account: Any,
                                               smtp: Any) -> None:
    ticket, ack = open_ticket(daemon, imap_account, smtp)
    imap_account.append(thunderbird(Reply(JAN, "Re: " + ack.subject, "Nadal nie działa.", ack,
                                          "<u2@acme.pl>")))
    notice = Quoted.from_bytes(run_pass(daemon, smtp)[MAREK.address][0].data)

    reply = Reply(MAREK, "Re: " + notice.subject,
                  "#Status w realizacji\n#priorytet 2\n\nWymieniliśmy bęben, proszę "
                  "spróbować ponownie.", notice, "<a1@mail.example.com>")
    imap_account.append(AUTHENTICATED.encode("ascii") + apple_mail(reply))
    received = run_pass(daemon, smtp)

    changed = models.Ticket.get_by_id(ticket.id)
    assert (changed.status, changed.priority) == ("in_progress", 2)
    relayed = received[JAN.address][0]
    assert relayed.message["Subject"] == f"Re: [#{ticket.id}] Drukarka nie drukuje"
    assert relayed.message["From"].addresses[0].display_name == "Marek Zieliński"
    body = text(relayed)
    assert body.startswith("Wymieniliśmy bęben, proszę spróbować ponownie.\n")
    assert "#" not in body.split("\n---\n", 1)[0]
    assert "Wysłane z iPhone" not in body
    assert "Nadal nie działa" not in body


def test_outlook_rich_text_files_keep_names(daemon: Daemon, imap_account: Any,
                                            smtp: Any) -> None:
    ticket, ack = open_ticket(daemon, imap_account, smtp)
    files = ((INVOICE_NAME, INVOICE), ("Zrzut ekranu – błąd ŁÓDŹ.png", b"\x89PNG\r\n\x1a\n"))

    imap_account.append(outlook_rich_text(Reply(
        Author(JAN.name, JAN.address), "RE: " + ack.subject, "Przesyłam pliki.", ack,
        "<u2@acme.pl>", attachments=files)))
    received = run_pass(daemon, smtp)

    names = sorted(row.filename for row in models.Attachment.select())
    assert names == sorted(name for name, _content in files)
    assert "winmail.dat" not in text(received[MAREK.address][0])
    assert models.Ticket.get_by_id(ticket.id).status != "closed"


def test_agent_outlook_reply_nothing_typed(daemon: Daemon, imap_account: Any,
                                           smtp: Any) -> None:
    ticket, ack = open_ticket(daemon, imap_account, smtp)
    own = Quoted(MAREK.name, MAREK.address, "Helpdesk IT <helpdesk@example.com>",
                 f"Re: [#{ticket.id}] Drukarka nie drukuje", "#zamknij\n\nZamykam.\n",
                 "<a0@mail.example.com>", (ack.message_id,))

    imap_account.append(AUTHENTICATED.encode("ascii") + outlook_desktop(
        Reply(Author(MAREK.name, MAREK.address), "RE: " + own.subject, "", own,
              "<a1@mail.example.com>"), charset="iso-8859-2"))
    received = run_pass(daemon, smtp)

    assert models.Ticket.get_by_id(ticket.id).status != "closed"
    assert JAN.address not in received

"""A whole user-agent conversation through a real Dovecot mailbox and the SMTP sink.

Mail reaches the desk by IMAP, the daemon processes one pass, and the outbox is sent to
the aiosmtpd sink, where the test reads what each person received.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deskfactory import mail, make_desk
from imapdesk import imap_overrides
from test_conversation import EVERY_COMMAND

from maildesk import models
from maildesk.daemon import Daemon
from maildesk.wiring import build_daemon

pytestmark = pytest.mark.servers

USER = "zofia.wisniewska@example.org"
MAREK = "marek.zielinski@example.com"
EWA = "ewa.nowak@example.com"
PASS = ("mx.example.com; dkim=pass header.d=example.com header.s=sel1; "
        "dmarc=pass header.from=example.com")


def run_pass(daemon: Daemon, smtp: Any) -> dict[str, list[Any]]:
    """Process what is in the mailbox, send the outbox; return the new mail by recipient."""
    smtp.clear()
    daemon.run(once=True)
    received: dict[str, list[Any]] = {}
    for delivery in smtp.deliveries:
        for recipient in delivery.rcpt_tos:
            received.setdefault(recipient.lower(), []).append(delivery.message)
    return received


def text(message: Any) -> str:
    return str(message.get_body(preferencelist=("plain",)).get_content())


def agent_mail(body: str, in_reply_to: str, *, sender: str = f"Marek Zieliński <{MAREK}>",
               message_id: str, authentication: str | None = PASS, ticket: int) -> bytes:
    headers = {"In-Reply-To": in_reply_to, "References": in_reply_to}
    if authentication:
        headers["Authentication-Results"] = authentication
    return mail(sender=sender, subject=f"Re: [#{ticket}] Drukarka nie drukuje", body=body,
                message_id=message_id, headers=headers)


@pytest.fixture
def daemon(tmp_path: Path, database_url: str, imap_account: Any, smtp: Any,
           monkeypatch: pytest.MonkeyPatch) -> Daemon:
    """One daemon per test (checking the templates at build time is slow); each pass
    reconnects to the mailbox."""
    monkeypatch.setenv("MAILDESK_TEST_IMAP_PASSWORD", imap_account.password)
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"]},
                     **imap_overrides(imap_account, smtp))
    return build_daemon(desk)


def test_conversation_through_real_servers(daemon: Daemon, imap_account: Any, smtp: Any) -> None:
    imap_account.append(mail(sender=f"Zofia Wiśniewska <{USER}>", message_id="<u1@example.org>"))
    received = run_pass(daemon, smtp)
    ack = received[USER][0]
    ticket = models.Ticket.get()

    # The agent replies with commands on top and the user's mail quoted below.
    imap_account.append(agent_mail(
        "#status w realizacji\n#priorytet 2\n#przypisz mnie\n\n"
        "Dzień dobry,\nproszę wyłączyć i włączyć drukarkę.\n\nMarek\n\n"
        "W dniu 04.12.2026 o 09:00, Zofia Wiśniewska pisze:\n> drukarka nie drukuje.\n",
        ack["Message-ID"], message_id="<a1@mail.example.com>", ticket=ticket.id))
    received = run_pass(daemon, smtp)

    relayed = received[USER]
    assert len(relayed) == 1
    assert relayed[0]["From"].addresses[0].display_name == "Marek Zieliński"
    assert relayed[0]["From"].addresses[0].addr_spec == "helpdesk@example.com"
    assert relayed[0]["In-Reply-To"] == "<u1@example.org>"
    assert "proszę wyłączyć i włączyć drukarkę" in text(relayed[0])
    assert "#status" not in text(relayed[0])
    assert "#priorytet" not in text(relayed[0])
    assert "> drukarka" not in text(relayed[0])
    assert "status: nowe → w realizacji" in text(received[MAREK][0])
    ticket = models.Ticket.get_by_id(ticket.id)
    assert (ticket.status, ticket.priority, ticket.assignee) == (
        "in_progress", 2, "marek.zielinski")

    # Ewa adds an internal note: Marek (the assignee) hears of it, the user does not.
    imap_account.append(agent_mail("#notatka\nHasło serwisowe drukarki: 0000.", ack["Message-ID"],
                                   sender=f"Ewa Nowak <{EWA}>", message_id="<e1@mail.example.com>",
                                   ticket=ticket.id))
    received = run_pass(daemon, smtp)

    assert USER not in received
    assert list(received) == [MAREK]
    assert "Hasło serwisowe drukarki: 0000." in text(received[MAREK][0])

    # The user replies: the assignee gets the text, and the user's command lines do nothing.
    imap_account.append(mail(sender=f"Zofia Wiśniewska <{USER}>",
                             subject=f"Re: [#{ticket.id}] Drukarka nie drukuje",
                             body="#status zamknięte\n\nNadal nie działa.\n",
                             message_id="<u2@example.org>",
                             headers={"In-Reply-To": relayed[0]["Message-ID"]}))
    received = run_pass(daemon, smtp)

    assert list(received) == [MAREK]
    assert "Nadal nie działa." in text(received[MAREK][0])
    assert models.Ticket.get_by_id(ticket.id).status == "in_progress"


def test_forged_tag_and_unauthenticated_command_change_nothing(
        daemon: Daemon, imap_account: Any, smtp: Any) -> None:
    imap_account.append(mail(sender=f"Zofia Wiśniewska <{USER}>", message_id="<u1@example.org>"))
    ack = run_pass(daemon, smtp)[USER][0]
    ticket = models.Ticket.get()

    imap_account.append(mail(sender="Obcy <obcy@attacker.example>",
                             subject=f"Re: [#{ticket.id}] Drukarka nie drukuje",
                             body="#status zamknięte\n\nProszę podać hasło.\n",
                             message_id="<s1@attacker.example>"))
    imap_account.append(agent_mail("#zamknij\n\nZamykam.", ack["Message-ID"],
                                   message_id="<a9@relay.example.net>", authentication=None,
                                   ticket=ticket.id))
    received = run_pass(daemon, smtp)

    assert models.Ticket.get_by_id(ticket.id).status == "new"
    assert USER not in received
    assert "uwierzytelni" in text(received[MAREK][0])
    assert models.Ticket.select().count() == 2
    stranger_ticket = models.Ticket.get(models.Ticket.id != ticket.id)
    assert stranger_ticket.requester.address == "obcy@attacker.example"


def test_invalid_command_gets_error_mail(daemon: Daemon, imap_account: Any, smtp: Any) -> None:
    imap_account.append(mail(sender=f"Zofia Wiśniewska <{USER}>", message_id="<u1@example.org>"))
    ack = run_pass(daemon, smtp)[USER][0]
    ticket = models.Ticket.get()

    imap_account.append(agent_mail("#status rozwiązane\n#pilność bardzo\n\nGotowe.",
                                   ack["Message-ID"], message_id="<a2@mail.example.com>",
                                   ticket=ticket.id))
    received = run_pass(daemon, smtp)

    assert list(received) == [MAREK]
    error = text(received[MAREK][0])
    assert "#pilność bardzo" in error
    assert "Poprawna postać: #pilność wysoka | średnia | niska" in error
    assert models.Ticket.get_by_id(ticket.id).status == "new"


@pytest.mark.parametrize("language", ["pl", "en"])
def test_every_command_through_real_servers(daemon: Daemon, imap_account: Any, smtp: Any,
                                            language: str) -> None:
    for index in range(len(EVERY_COMMAND)):
        imap_account.append(mail(sender=f"user{index}@example.org",
                                 message_id=f"<m{index}@example.org>"))
    acks = {address: messages[0] for address, messages in run_pass(daemon, smtp).items()}
    tickets = {}
    for index, (polish, english, _field, _expected) in enumerate(EVERY_COMMAND):
        ticket = models.Ticket.get(models.Ticket.requester == models.Contact.get(
            models.Contact.address == f"user{index}@example.org"))
        models.Ticket.update(status="in_progress", group="pierwsza-linia").where(
            models.Ticket.id == ticket.id).execute()
        tickets[index] = ticket.id
        line = polish if language == "pl" else english
        imap_account.append(agent_mail(f"{line}\n\nOK.",
                                       acks[f"user{index}@example.org"]["Message-ID"],
                                       message_id=f"<a{index}@mail.example.com>",
                                       ticket=ticket.id))

    received = run_pass(daemon, smtp)

    for index, (polish, english, field, expected) in enumerate(EVERY_COMMAND):
        line = polish if language == "pl" else english
        value = getattr(models.Ticket.get_by_id(tickets[index]), field)
        assert (line, value) == (line, expected)
    confirmations = [message for message in received[MAREK]
                     if "Polecenia wykonane" in message["Subject"]]
    assert len(confirmations) == len(EVERY_COMMAND)
    assert not any("odrzucone" in message["Subject"] for message in received[MAREK])
    relayed = [address for address in received if address.startswith("user")]
    assert len(relayed) == len(EVERY_COMMAND)

"""The outbox sender against real SMTP servers on 127.0.0.1, on SQLite and PostgreSQL.

The shared aiosmtpd sink covers AUTH, STARTTLS, implicit TLS, 451, 550 and a server that
is down. A second aiosmtpd server defined here does what the sink cannot: answer a policy
refusal, hang until the client times out, and drop the connection in the middle of DATA.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import peewee as pw
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from deskfactory import mail as user_mail
from deskfactory import make_desk, make_ticket, record_sql
from servers import free_port

from maildesk import models, outbox, pipeline
from maildesk.cli import main as cli_main
from maildesk.desk import Desk
from maildesk.i18n import gettext_for
from maildesk.mailbuild import Recipient
from maildesk.models import database_proxy, utcnow
from maildesk.notify import QueuedMail, queue_mail, ticket_context
from maildesk.outbox import Sender, outage_delay

REQUESTER = "zofia.wisniewska@example.org"
SMTP_PASSWORD_VARIABLE = "MAILDESK_TEST_SMTP_PASSWORD"


# --------------------------------------------------------------------------- helpers


class FaultyHandler:
    """aiosmtpd hooks whose behaviour a test switches: accept, policy, hang, drop or a 421."""

    def __init__(self) -> None:
        self.mode = "accept"
        # A mail containing these bytes makes the server drop the connection in any mode.
        self.poison: bytes | None = None
        # A mail containing these bytes gets a 421 after its content, as from a filter.
        self.suspicious: bytes | None = None
        self.accepted: list[tuple[tuple[str, ...], bytes]] = []
        self.data_started = 0
        self.mail_started = 0
        # RCPT replies by address, e.g. {"b@example.org": "452 4.2.2 Mailbox full"}.
        self.rcpt_replies: dict[str, str] = {}
        # Called in the server's thread after a mail is accepted, before the 250 reply.
        self.on_accept: Callable[[], None] | None = None

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        self.mail_started += 1
        if self.mode == "closing":
            return "421 4.3.2 Service shutting down"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if self.mode == "closing-rcpt":
            return "421 4.7.0 Too many connections, closing"
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        if self.mode == "policy":
            return f"554 5.7.1 <{address}>: Relay access denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_started += 1
        if self.mode == "hang":
            await asyncio.sleep(3)
            return "451 4.3.0 Too late"
        poisoned = self.poison is not None and self.poison in (envelope.original_content or b"")
        if self.mode == "drop" or poisoned:
            server.transport.abort()
            return "421 4.3.0 Connection lost"
        if self.suspicious is not None and self.suspicious in (envelope.original_content or b""):
            return "421 4.7.0 Message looks suspicious, try again later"
        if self.mode == "content":
            return "554 5.6.0 Message content rejected"
        self.accepted.append((tuple(envelope.rcpt_tos), envelope.original_content or b""))
        if self.on_accept is not None:
            self.on_accept()
        return "250 2.0.0 OK"


@pytest.fixture
def faulty_smtp() -> Iterator[tuple[FaultyHandler, int]]:
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    handler = FaultyHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port,
                            server_hostname="faulty.maildesk.test", ready_timeout=10)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def ascii_smtp() -> Iterator[tuple[FaultyHandler, int]]:
    """An accepting server that does not offer SMTPUTF8, as many still do not."""
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    handler = FaultyHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port,
                            server_hostname="ascii.maildesk.test", ready_timeout=10,
                            enable_SMTPUTF8=False)
    controller.start()
    yield handler, port
    controller.stop()


def smtp_desk(tmp_path: Path, database_url: str, port: int, **smtp: Any) -> Desk:
    settings = {"transport": "smtp", "host": "127.0.0.1", "port": port, "security": "none",
                "timeout": 1.0, "max_attempts": 4, **smtp}
    return make_desk(tmp_path, database_url, smtp=settings)


def sender(desk: Desk) -> Sender:
    return Sender(desk.config.smtp, local_hostname="client.maildesk.test")


def queue(desk: Desk, ticket: models.Ticket, to: str = REQUESTER) -> QueuedMail:
    with database_proxy.atomic():
        mail = queue_mail(desk, template="acknowledgement", language="pl",
                          context={"ticket": ticket_context(desk, ticket), "linked_ticket": None},
                          to=[Recipient(to)], ticket=ticket, kind="ack")
    assert mail is not None
    return mail


def row(mail: QueuedMail) -> models.Outbox:
    return models.Outbox.get_by_id(mail.outbox_id)


def make_due(mail: QueuedMail) -> None:
    models.Outbox.update(next_attempt_at=utcnow() - timedelta(seconds=1)).where(
        models.Outbox.id == mail.outbox_id).execute()


# --------------------------------------------------------------------------- delivery


def test_outbox_delivers_queued_mail(tmp_path: Path, database_url: str, smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))

    sent = sender(desk).deliver_due()

    assert sent == 1
    assert len(smtp.deliveries) == 1
    delivery = smtp.deliveries[0]
    assert delivery.rcpt_tos == (REQUESTER,)
    assert delivery.mail_from == "helpdesk@example.com"
    assert delivery.message["Message-ID"] == mail.message_id
    assert row(mail).state == "sent"
    assert row(mail).sent_at is not None


def test_outbox_directory_failure_retried(tmp_path: Path, database_url: str) -> None:
    target = tmp_path / "written"
    target.write_text("a file where the directory should be", encoding="utf-8")
    desk = make_desk(tmp_path, database_url,
                     smtp={"transport": "directory", "directory": str(target)})
    first = queue(desk, make_ticket(20460, "Drukarka", REQUESTER))
    second = queue(desk, make_ticket(20461, "Skaner", REQUESTER))

    failed = Sender(desk.config.smtp).deliver_due()

    assert failed == 0
    assert row(first).state == "pending"
    assert row(second).state == "pending"
    assert str(target) in row(first).last_error
    assert row(first).attempts == 0  # the folder failed, not the mail

    target.unlink()
    make_due(first)
    make_due(second)
    sent = Sender(desk.config.smtp).deliver_due()

    assert sent == 2
    assert row(first).state == "sent"
    assert len(list(target.glob("*.eml"))) == 2


def test_outbox_directory_full_disk_leaves_no_partial_file(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    target = tmp_path / "written"
    desk = make_desk(tmp_path, database_url,
                     smtp={"transport": "directory", "directory": str(target)})
    mail = queue(desk, make_ticket(20460, "Drukarka", REQUESTER))

    def write_half(self: Path, data: bytes) -> int:
        with self.open("wb") as handle:
            handle.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", write_half)
    sent = Sender(desk.config.smtp).deliver_due()

    assert sent == 0
    assert row(mail).state == "pending"
    assert "No space left on device" in row(mail).last_error
    assert list(target.iterdir()) == []


def test_outbox_directory_rewrite_replaces_file(tmp_path: Path, database_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "written"
    desk = make_desk(tmp_path, database_url,
                     smtp={"transport": "directory", "directory": str(target)})
    mails = [queue(desk, make_ticket(20460 + index, "Drukarka", REQUESTER))
             for index in range(2)]

    def crash(rows: list[models.Outbox]) -> None:
        raise KeyboardInterrupt("stopped after writing, before marking")

    with monkeypatch.context() as patched:
        patched.setattr(outbox, "mark_all_sent", crash)
        with pytest.raises(KeyboardInterrupt):
            Sender(desk.config.smtp).deliver_due()
    # The process died: its claims are taken back, and the next pass runs an hour later.
    models.Outbox.update(claimed_by="dead-worker:1").execute()
    outbox.recover_stale_claims(now_offset=timedelta(0))
    later = utcnow() + timedelta(hours=1)
    monkeypatch.setattr(outbox, "utcnow", lambda: later)
    for mail in mails:
        make_due(mail)
    sent = Sender(desk.config.smtp).deliver_due()

    assert sent == 2
    assert [row(mail).state for mail in mails] == ["sent", "sent"]
    assert len(list(target.glob("*.eml"))) == 2


def test_outbox_flushes_once_per_batch(tmp_path: Path, database_url: str, smtp,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    ticket = make_ticket(20451, "Drukarka", REQUESTER)
    mails = [queue(desk, ticket, f"osoba{number}@example.org") for number in range(3)]
    executed = record_sql(database_proxy.obj, monkeypatch)
    sent = sender(desk).deliver_due()

    assert sent == 3
    assert all(row(mail).state == "sent" for mail in mails)
    synchronous = [sql for sql in executed
                   if sql in ("SET synchronous_commit TO ON", "PRAGMA synchronous = FULL")]
    assert len(synchronous) == 1  # one flush for the batch, not one per mail


def test_outbox_starttls_and_auth(tmp_path: Path, database_url: str, smtp,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    smtp.configure(auth=("desk", "s3cret-hasło"), starttls=True, require_starttls=True)
    monkeypatch.setenv(SMTP_PASSWORD_VARIABLE, "s3cret-hasło")
    desk = smtp_desk(tmp_path, database_url, smtp.port, security="starttls",
                     username="desk", password_env=SMTP_PASSWORD_VARIABLE,
                     ca_file=str(smtp.cafile))
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))

    sent = sender(desk).deliver_due()

    assert sent == 1
    assert smtp.deliveries[0].tls is True
    assert smtp.deliveries[0].auth_login == "desk"
    assert row(mail).state == "sent"


def test_outbox_implicit_tls(tmp_path: Path, database_url: str, smtp) -> None:
    smtp.configure(implicit_tls=True)
    desk = smtp_desk(tmp_path, database_url, smtp.port, security="tls",
                     ca_file=str(smtp.cafile))
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))

    sent = sender(desk).deliver_due()

    assert sent == 1
    assert smtp.deliveries[0].tls is True
    assert row(mail).state == "sent"


def test_outbox_wrong_password_keeps_mail(tmp_path: Path, database_url: str, smtp,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    smtp.configure(auth=("desk", "s3cret"), starttls=True)
    monkeypatch.setenv(SMTP_PASSWORD_VARIABLE, "wrong")
    desk = smtp_desk(tmp_path, database_url, smtp.port, security="starttls",
                     username="desk", password_env=SMTP_PASSWORD_VARIABLE,
                     ca_file=str(smtp.cafile))
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))

    sent = sender(desk).deliver_due()

    assert sent == 0
    assert smtp.deliveries == []
    assert row(mail).state == "pending"
    assert "535" in row(mail).last_error


def test_outbox_untrusted_certificate_keeps_mail(tmp_path: Path, database_url: str,
                                                 smtp) -> None:
    smtp.configure(implicit_tls=True)
    desk = smtp_desk(tmp_path, database_url, smtp.port, security="tls")
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))

    sent = sender(desk).deliver_due()

    assert sent == 0
    assert row(mail).state == "pending"
    assert row(mail).attempts == 0


# --------------------------------------------------------------------------- failures


def test_outbox_temporary_failure_backs_off(tmp_path: Path,
                                                            database_url: str, smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))
    smtp.fail_temporarily("rcpt")

    first = sender(desk).deliver_due()
    after_failure = row(mail)
    again_too_early = sender(desk).deliver_due()
    smtp.fail_temporarily(None)
    make_due(mail)
    second = sender(desk).deliver_due()

    assert first == 0
    assert after_failure.state == "pending"
    assert after_failure.attempts == 1
    assert "451" in after_failure.last_error
    assert after_failure.next_attempt_at > utcnow() + timedelta(seconds=20)
    assert again_too_early == 0
    assert second == 1
    assert len(smtp.deliveries) == 1
    assert row(mail).state == "sent"


@pytest.mark.parametrize("stage", ["mail", "data"])
def test_outbox_temporary_failure_at_stage(tmp_path: Path, database_url: str,
                                                         smtp, stage: str) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))
    smtp.fail_temporarily(stage)  # type: ignore[arg-type]

    sender(desk).deliver_due()
    smtp.fail_temporarily(None)
    make_due(mail)
    sender(desk).deliver_due()

    assert len(smtp.deliveries) == 1
    assert row(mail).state == "sent"
    assert row(mail).attempts == 2


def test_outbox_gives_up_after_max_attempts(tmp_path: Path, database_url: str, smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port, max_attempts=2)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))
    smtp.fail_temporarily("mail")

    sender(desk).deliver_due()
    make_due(mail)
    sender(desk).deliver_due()

    assert row(mail).state == "failed"
    assert "451" in row(mail).last_error


def test_outbox_gives_up_after_one_attempt(tmp_path: Path, database_url: str, smtp,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILDESK_LANGUAGE", raising=False)
    desk = smtp_desk(tmp_path, database_url, smtp.port, max_attempts=1)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))
    smtp.fail_temporarily("mail")

    sender(desk).deliver_due()

    assert row(mail).state == "failed"
    assert row(mail).last_error.startswith("rezygnacja po 1 próbie: ")


def test_outbox_permanent_rejection_records_bounce(tmp_path: Path,
                                                             database_url: str, smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    ticket = make_ticket(20451, "Drukarka", REQUESTER)
    mail = queue(desk, ticket)
    smtp.reject(REQUESTER)

    sender(desk).deliver_due()
    with database_proxy.atomic():
        later = queue_mail(desk, template="acknowledgement", language="pl",
                           context={"ticket": ticket_context(desk, ticket),
                                    "linked_ticket": None},
                           to=[Recipient(REQUESTER)], ticket=ticket)

    assert smtp.deliveries == []
    assert row(mail).state == "failed"
    assert "550" in row(mail).last_error
    assert "5.1.1" in row(mail).last_error
    contact = models.Contact.get(models.Contact.address == REQUESTER)
    assert contact.bounced_at is not None
    assert "550" in contact.bounce_reason
    assert later is None


def test_outbox_partial_rejection_sends_to_the_rest(tmp_path: Path, database_url: str,
                                                    smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    ticket = make_ticket(20451, "Drukarka", REQUESTER)
    with database_proxy.atomic():
        mail = queue_mail(desk, template="acknowledgement", language="pl",
                          context={"ticket": ticket_context(desk, ticket),
                                   "linked_ticket": None},
                          to=[Recipient(REQUESTER)], cc=[Recipient("nieznany@example.org")],
                          ticket=ticket)
    assert mail is not None
    smtp.reject("nieznany@example.org")

    sent = sender(desk).deliver_due()

    assert sent == 1
    assert smtp.deliveries[0].rcpt_tos == (REQUESTER,)
    assert row(mail).state == "sent"
    assert "nieznany@example.org" in row(mail).last_error
    assert models.Contact.get(
        models.Contact.address == "nieznany@example.org").bounced_at is not None


# An address that the desk reads from a From header and that no RCPT TO can carry: a
# semicolon is no domain character (RFC 5321). A quoted spelling such as
# "j"."an"@example.net no longer serves, because parsing rewrites it as j.an@.
UNSENDABLE = "jan@exa;mple.net"


def test_outbox_unsendable_sender_stops_no_mail(tmp_path: Path, database_url: str,
                                                smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    # The standard library would rewrite the header, so the address goes into the bytes.
    raw = user_mail(sender="<placeholder@example.net>", subject="Pierwsza",
                    message_id="<u1@example.net>")
    hostile = pipeline.process(
        desk, raw.replace(b"placeholder@example.net", UNSENDABLE.encode()), "test:1")
    user = pipeline.process(desk, user_mail(sender=REQUESTER, subject="Druga",
                                       message_id="<u2@example.org>"), "test:2")

    sent = sender(desk).deliver_due()

    [hostile_row] = models.Outbox.select().where(models.Outbox.ticket == hostile.ticket)
    [user_row] = models.Outbox.select().where(models.Outbox.ticket == user.ticket)
    assert sent == 1
    assert [d.rcpt_tos for d in smtp.deliveries] == [(REQUESTER,)]
    assert user_row.state == "sent"
    assert hostile_row.state == "failed"
    assert UNSENDABLE in hostile_row.last_error
    assert models.Contact.get(models.Contact.address == UNSENDABLE).bounced_at is not None


def test_outbox_unsendable_cc_sends_to_the_rest(tmp_path: Path, database_url: str,
                                                smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    ticket = make_ticket(20451, "Drukarka", REQUESTER)
    with database_proxy.atomic():
        queued = queue_mail(desk, template="acknowledgement", language="pl",
                            context={"ticket": ticket_context(desk, ticket),
                                     "linked_ticket": None},
                            to=[Recipient(REQUESTER)], cc=[Recipient(UNSENDABLE)],
                            ticket=ticket)
    assert queued is not None

    sent = sender(desk).deliver_due()

    assert sent == 1
    assert [d.rcpt_tos for d in smtp.deliveries] == [(REQUESTER,)]
    assert row(queued).state == "sent"
    assert UNSENDABLE in row(queued).last_error


def raw_mail(sender: str, message_id: str) -> bytes:
    """A user's mail with ``sender`` written in the From header as raw UTF-8."""
    return (f"From: {sender}\r\nTo: helpdesk@example.com\r\nSubject: Drukarka\r\n"
            f"Message-ID: {message_id}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"\r\nDrukarka nie drukuje.\r\n").encode()


def test_outbox_idn_domain_sent_as_punycode(tmp_path: Path, database_url: str,
                                            ascii_smtp) -> None:
    handler, port = ascii_smtp
    desk = smtp_desk(tmp_path, database_url, port)
    outcome = pipeline.process(desk, raw_mail("<jan@wiśnia.example>", "<i1@example.net>"),
                               "test:1")

    sent = sender(desk).deliver_due()

    [queued] = models.Outbox.select().where(models.Outbox.ticket == outcome.ticket)
    assert sent == 1
    assert queued.state == "sent"
    assert [rcpt_tos for rcpt_tos, _content in handler.accepted] == [
        ("jan@xn--winia-vcb.example",)]


def test_outbox_utf8_local_part_without_smtputf8(tmp_path: Path, database_url: str,
                                                 ascii_smtp) -> None:
    handler, port = ascii_smtp
    desk = smtp_desk(tmp_path, database_url, port)
    first = pipeline.process(desk, raw_mail("<zofia.wiśniewska@example.net>",
                                            "<w1@example.net>"), "test:1")
    second = pipeline.process(desk, user_mail(sender=REQUESTER, subject="Druga",
                                              message_id="<w2@example.org>"), "test:2")

    sent = sender(desk).deliver_due()

    [first_row] = models.Outbox.select().where(models.Outbox.ticket == first.ticket)
    [second_row] = models.Outbox.select().where(models.Outbox.ticket == second.ticket)
    assert sent == 1
    assert first_row.state == "failed"
    assert "SMTPUTF8" in first_row.last_error
    assert second_row.state == "sent"
    assert [rcpt_tos for rcpt_tos, _content in handler.accepted] == [(REQUESTER,)]
    contact = models.Contact.get(models.Contact.address == "zofia.wiśniewska@example.net")
    assert contact.bounced_at is None


def test_outbox_utf8_local_part_with_smtputf8(tmp_path: Path, database_url: str,
                                              smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    outcome = pipeline.process(desk, raw_mail("<zofia.wiśniewska@wiśnia.example>",
                                              "<w1@example.net>"), "test:1")

    sent = sender(desk).deliver_due()

    [queued] = models.Outbox.select().where(models.Outbox.ticket == outcome.ticket)
    assert sent == 1
    assert queued.state == "sent"
    assert [d.rcpt_tos for d in smtp.deliveries] == [
        ("zofia.wiśniewska@xn--winia-vcb.example",)]


def test_outbox_policy_rejection_is_not_a_bounce(tmp_path: Path, database_url: str,
                                                 faulty_smtp) -> None:
    handler, port = faulty_smtp
    handler.mode = "policy"
    desk = smtp_desk(tmp_path, database_url, port)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))

    sender(desk).deliver_due()

    assert row(mail).state == "failed"
    assert "5.7.1" in row(mail).last_error
    contact = models.Contact.get(models.Contact.address == REQUESTER)
    assert contact.bounced_at is None


def test_outbox_content_rejection_fails_without_bounce(tmp_path: Path, database_url: str,
                                                       faulty_smtp) -> None:
    handler, port = faulty_smtp
    handler.mode = "content"
    desk = smtp_desk(tmp_path, database_url, port)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))

    sender(desk).deliver_due()

    assert row(mail).state == "failed"
    assert row(mail).last_error.startswith("554")
    assert models.Contact.get(models.Contact.address == REQUESTER).bounced_at is None


def test_outbox_server_down_then_up_sends_once(tmp_path: Path, database_url: str,
                                               smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))
    smtp.down()

    first = sender(desk).deliver_due()
    after_failure = row(mail)
    smtp.up()
    make_due(mail)
    second = sender(desk).deliver_due()

    assert first == 0
    assert after_failure.state == "pending"
    assert after_failure.last_error
    assert second == 1
    assert len(smtp.deliveries) == 1


def test_outbox_timeout_sends_each_once(tmp_path: Path, database_url: str,
                                                         faulty_smtp) -> None:
    handler, port = faulty_smtp
    handler.mode = "hang"
    desk = smtp_desk(tmp_path, database_url, port, timeout=0.5)
    ticket = make_ticket(20451, "Drukarka", REQUESTER)
    mails = [queue(desk, ticket), queue(desk, ticket)]

    first = sender(desk).deliver_due()
    states = [row(mail).state for mail in mails]
    handler.mode = "accept"
    for mail in mails:
        make_due(mail)
    second = sender(desk).deliver_due()

    assert first == 0
    assert states == ["pending", "pending"]
    assert handler.data_started >= 1
    assert second == 2
    ids = Counter(message_from_bytes(data, policy=default_policy)["Message-ID"]
                  for _rcpt, data in handler.accepted)
    assert set(ids) == {mail.message_id for mail in mails}
    assert set(ids.values()) == {1}


def test_outbox_connection_dropped_mid_send(tmp_path: Path, database_url: str,
                                            faulty_smtp) -> None:
    handler, port = faulty_smtp
    handler.mode = "drop"
    desk = smtp_desk(tmp_path, database_url, port)
    ticket = make_ticket(20451, "Drukarka", REQUESTER)
    mails = [queue(desk, ticket) for _ in range(3)]

    first = sender(desk).deliver_due()
    states = [row(mail).state for mail in mails]
    data_before_drop = handler.data_started
    handler.mode = "accept"
    for mail in mails:
        make_due(mail)
    second = sender(desk).deliver_due()

    assert first == 0
    assert states == ["pending"] * 3
    assert data_before_drop == 1
    assert second == 3
    ids = Counter(message_from_bytes(data, policy=default_policy)["Message-ID"]
                  for _rcpt, data in handler.accepted)
    assert sorted(ids) == sorted(mail.message_id for mail in mails)
    assert set(ids.values()) == {1}


class DatabaseOutage:
    """Make the sender's database fail from another session, as a real outage does.

    SQLite: another connection holds the write lock, and the sender's connection waits
    only 0.1 s for it. PostgreSQL: the sender's own backend is terminated.
    """

    def __init__(self, database_url: str) -> None:
        self.sqlite = database_url.startswith("sqlite")
        self.url = database_url
        self.locker: Any = None
        if self.sqlite:
            database_proxy.execute_sql("PRAGMA busy_timeout = 100")
        else:
            self.backend = database_proxy.execute_sql("SELECT pg_backend_pid()").fetchone()[0]

    def begin(self) -> None:
        if self.sqlite:
            import sqlite3

            path = self.url[len("sqlite:///"):]
            self.locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.locker.execute("BEGIN IMMEDIATE")
            return
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [self.backend])
        connection.close()

    def end(self) -> None:
        if self.locker is not None:
            self.locker.execute("COMMIT")
            self.locker.close()
        # As the daemon does after a database error.
        pipeline.drop_connection()


def test_outbox_database_lost_after_send(tmp_path: Path, database_url: str,
                                         faulty_smtp) -> None:
    # The database fails while the server accepts the first mail: the sent mark is lost.
    handler, port = faulty_smtp
    desk = smtp_desk(tmp_path, database_url, port)
    ticket = make_ticket(20453, "Drukarka", REQUESTER)
    mails = [queue(desk, ticket) for _ in range(3)]
    outage = DatabaseOutage(database_url)

    def fail_once() -> None:
        handler.on_accept = None
        outage.begin()

    handler.on_accept = fail_once
    the_sender = sender(desk)
    with pytest.raises((pw.OperationalError, pw.InterfaceError)):
        the_sender.deliver_due()
    accepted_during_outage = len(handler.accepted)
    outage.end()
    second = the_sender.deliver_due()

    assert accepted_during_outage == 1
    assert second == 2
    assert [row(mail).state for mail in mails] == ["sent"] * 3
    ids = Counter(message_from_bytes(data, policy=default_policy)["Message-ID"]
                  for _rcpt, data in handler.accepted)
    assert sorted(ids) == sorted(mail.message_id for mail in mails)
    assert set(ids.values()) == {1}


def test_outbox_dropping_mail_blocks_no_other(tmp_path: Path, database_url: str,
                                              faulty_smtp) -> None:
    # The server drops the connection whenever it gets one mail, which is queued first.
    handler, port = faulty_smtp
    desk = smtp_desk(tmp_path, database_url, port, max_attempts=3)
    poison = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))
    other = queue(desk, make_ticket(20452, "Skaner", REQUESTER))
    handler.poison = poison.message_id.encode()

    first = sender(desk).deliver_due()
    second = sender(desk).deliver_due()
    for _attempt in range(2):
        make_due(poison)
        sender(desk).deliver_due()

    assert first == 0
    assert second == 1
    assert row(other).state == "sent"
    assert row(other).attempts == 1  # sent on its only real try
    assert row(poison).state == "failed"
    assert row(poison).attempts == 3


# --------------------------------------------------------------------------- claims


def test_outbox_outage_does_not_use_up_attempts(tmp_path: Path, database_url: str, smtp,
                                                caplog: pytest.LogCaptureFixture) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port, max_attempts=2)
    mails = [queue(desk, make_ticket(20451 + index, "Drukarka", REQUESTER))
             for index in range(3)]
    smtp.down()

    with caplog.at_level(logging.WARNING, logger="maildesk.outbox"):
        for _attempt in range(4):
            for mail in mails:
                make_due(mail)
            sender(desk).deliver_due()

    assert [row(mail).state for mail in mails] == ["pending"] * 3
    assert all(row(mail).attempts == 0 for mail in mails)
    waits = [record for record in caplog.records if "wait for the next attempt" in
             record.getMessage() or "czekają na kolejną próbę" in record.getMessage()]
    assert len(waits) == 4

    smtp.up()
    for mail in mails:
        make_due(mail)

    assert sender(desk).deliver_due() == 3


def queue_to(desk: Desk, ticket: models.Ticket, *addresses: str) -> QueuedMail:
    with database_proxy.atomic():
        mail = queue_mail(desk, template="acknowledgement", language="pl",
                          context={"ticket": ticket_context(desk, ticket), "linked_ticket": None},
                          to=[Recipient(address) for address in addresses], ticket=ticket,
                          kind="ack")
    assert mail is not None
    return mail


def test_outbox_deferred_recipient_gets_the_mail_later_once(
        tmp_path: Path, database_url: str, faulty_smtp: tuple[FaultyHandler, int]) -> None:
    handler, port = faulty_smtp
    desk = smtp_desk(tmp_path, database_url, port)
    first, second = "admin1@example.org", "admin2@example.org"
    mail = queue_to(desk, make_ticket(20451, "Drukarka", REQUESTER), first, second)
    handler.rcpt_replies[second] = "452 4.2.2 Mailbox full"

    sender(desk).deliver_due()
    after_deferral = row(mail)
    handler.rcpt_replies.clear()
    make_due(mail)
    sender(desk).deliver_due()

    assert after_deferral.state == "pending"
    assert after_deferral.deferred == second
    assert "452" in after_deferral.last_error
    assert [recipients for recipients, _content in handler.accepted] == [(first,), (second,)]
    assert row(mail).state == "sent"
    assert row(mail).deferred is None
    assert row(mail).recipients.split() == [first, second]
    assert not models.Contact.select().where(models.Contact.bounced_at.is_null(False)).exists()


def test_outbox_cli_list_names_deferred_recipients(
        tmp_path: Path, database_url: str, faulty_smtp: tuple[FaultyHandler, int]) -> None:
    handler, port = faulty_smtp
    desk = smtp_desk(tmp_path, database_url, port)
    queue_to(desk, make_ticket(20451, "Drukarka", REQUESTER), "admin1@example.org",
             "admin2@example.org")
    handler.rcpt_replies["admin2@example.org"] = "452 4.2.2 Mailbox full"
    sender(desk).deliver_due()

    listed = CliRunner().invoke(cli_main, ["--config", str(desk.config.path), "outbox",
                                           "list"])
    models.open_database(desk.config.database_url, migrate=False)

    assert listed.exit_code == 0, listed.output
    assert "jeszcze do doręczenia: admin2@example.org" in listed.output


def test_outbox_refused_and_deferred_retries_the_deferred_alone(
        tmp_path: Path, database_url: str, faulty_smtp: tuple[FaultyHandler, int]) -> None:
    handler, port = faulty_smtp
    desk = smtp_desk(tmp_path, database_url, port)
    gone, full = "gone@example.org", "full@example.org"
    mail = queue_to(desk, make_ticket(20451, "Drukarka", REQUESTER), gone, full)
    handler.rcpt_replies.update({gone: "550 5.1.1 No such user", full: "452 4.2.2 Mailbox full"})

    sender(desk).deliver_due()
    after_refusal = row(mail)
    del handler.rcpt_replies[full]
    make_due(mail)
    sender(desk).deliver_due()

    assert after_refusal.state == "pending"
    assert after_refusal.deferred == full
    assert [recipients for recipients, _content in handler.accepted] == [(full,)]
    assert row(mail).state == "sent"


def test_outbox_deferred_recipient_given_up_after_max_attempts(
        tmp_path: Path, database_url: str, faulty_smtp: tuple[FaultyHandler, int]) -> None:
    handler, port = faulty_smtp
    desk = smtp_desk(tmp_path, database_url, port, max_attempts=2)
    first, second = "admin1@example.org", "admin2@example.org"
    mail = queue_to(desk, make_ticket(20451, "Drukarka", REQUESTER), first, second)
    handler.rcpt_replies[second] = "452 4.2.2 Mailbox full"

    for _attempt in range(3):
        make_due(mail)
        sender(desk).deliver_due()

    assert row(mail).state == "failed"
    assert second in row(mail).last_error
    assert [recipients for recipients, _content in handler.accepted] == [(first,)]


def test_outbox_retry_after_deferral_given_up_skips_served(
        tmp_path: Path, database_url: str, faulty_smtp: tuple[FaultyHandler, int]) -> None:
    # The first attempt is the last one: the row fails while admin1 has the mail already.
    handler, port = faulty_smtp
    desk = smtp_desk(tmp_path, database_url, port, max_attempts=1)
    first, second = "admin1@example.org", "admin2@example.org"
    mail = queue_to(desk, make_ticket(20451, "Drukarka", REQUESTER), first, second)
    handler.rcpt_replies[second] = "452 4.2.2 Mailbox full"
    sender(desk).deliver_due()
    handler.rcpt_replies.clear()

    retried = CliRunner().invoke(cli_main, ["--config", str(desk.config.path), "outbox",
                                            "retry", str(mail.outbox_id)])
    models.open_database(desk.config.database_url, migrate=False)
    sender(desk).deliver_due()

    assert retried.exit_code == 0, retried.output
    assert [recipients for recipients, _content in handler.accepted] == [(first,), (second,)]
    assert row(mail).state == "sent"


@pytest.mark.parametrize("mode", ["closing", "closing-rcpt"])
def test_outbox_421_waits_like_an_outage(tmp_path: Path, database_url: str,
                                         faulty_smtp: tuple[FaultyHandler, int],
                                         mode: str) -> None:
    """A 421 ends the pass and charges no mail: the server is closing, not refusing."""
    handler, port = faulty_smtp
    desk = smtp_desk(tmp_path, database_url, port, max_attempts=2)
    mails = [queue(desk, make_ticket(20451 + index, "Drukarka", REQUESTER))
             for index in range(3)]
    handler.mode = mode

    for _attempt in range(3):
        for mail in mails:
            make_due(mail)
        assert sender(desk).deliver_due() == 0

    assert handler.mail_started == 3
    assert [row(mail).state for mail in mails] == ["pending"] * 3
    assert all("421" in row(mail).last_error for mail in mails)

    handler.mode = "accept"
    for mail in mails:
        make_due(mail)

    assert sender(desk).deliver_due() == 3
    assert len(handler.accepted) == 3


def test_outbox_421_after_one_mail_blocks_no_other(
        tmp_path: Path, database_url: str, faulty_smtp: tuple[FaultyHandler, int]) -> None:
    # A content filter replies 421 to the content of the first mail each time it is sent.
    handler, port = faulty_smtp
    desk = smtp_desk(tmp_path, database_url, port)
    mails = [queue(desk, make_ticket(20451 + index, "Drukarka", REQUESTER))
             for index in range(3)]
    handler.suspicious = mails[0].message_id.encode()

    sender(desk).deliver_due()
    sender(desk).deliver_due()

    assert [row(mail).state for mail in mails] == ["pending", "sent", "sent"]
    assert row(mails[0]).next_attempt_at > utcnow()
    assert "421" in row(mails[0]).last_error
    assert len(handler.accepted) == 2


@pytest.mark.parametrize("closing_recipient", ["admin1@example.org", "admin2@example.org"])
def test_outbox_421_to_one_recipient(
        tmp_path: Path, database_url: str, faulty_smtp: tuple[FaultyHandler, int],
        closing_recipient: str) -> None:
    # aiosmtplib closes the connection on a 421, so the failure that reaches maildesk is
    # the next RCPT or DATA finding no connection.
    handler, port = faulty_smtp
    desk = smtp_desk(tmp_path, database_url, port, max_attempts=2)
    mail = queue_to(desk, make_ticket(20451, "Drukarka", REQUESTER), "admin1@example.org",
                    "admin2@example.org")
    handler.rcpt_replies[closing_recipient] = "421 4.7.0 Too many connections, closing"

    for _attempt in range(3):
        make_due(mail)
        assert sender(desk).deliver_due() == 0

    assert row(mail).state == "pending"
    assert "421" in row(mail).last_error
    assert handler.accepted == []


def test_outbox_long_outage_leaves_every_attempt_for_later(
        tmp_path: Path, database_url: str, smtp) -> None:
    """After ten passes against a down server, a 451 is retried, not given up."""
    desk = smtp_desk(tmp_path, database_url, smtp.port, max_attempts=2)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))
    smtp.down()
    for _attempt in range(10):
        make_due(mail)
        sender(desk).deliver_due()
    smtp.up()
    smtp.fail_temporarily("rcpt")

    make_due(mail)
    sender(desk).deliver_due()

    assert row(mail).state == "pending"
    assert row(mail).attempts == 1
    assert "451" in row(mail).last_error


@pytest.mark.parametrize(("age", "wait"), [
    (timedelta(0), timedelta(seconds=30)), (timedelta(minutes=10), timedelta(minutes=5)),
    (timedelta(hours=2), timedelta(hours=1)), (timedelta(days=1), timedelta(hours=4))])
def test_outbox_outage_wait_grows_with_age_in_queue(age: timedelta, wait: timedelta) -> None:
    assert outage_delay(age) == wait


def test_outbox_down_server_tried_once_per_pass(tmp_path: Path, database_url: str,
                                                 smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    ticket = make_ticket(20451, "Drukarka", REQUESTER)
    mails = [queue(desk, ticket) for _index in range(5)]
    smtp.down()
    down_sender = sender(desk)

    sent = down_sender.deliver_due(limit=2)

    assert sent == 0
    assert down_sender.unreachable
    # Only the first batch was claimed and tried: the rest waits for the next pass.
    assert down_sender.attempted == [mails[0].outbox_id, mails[1].outbox_id]
    assert [row(mail).attempts for mail in mails] == [0] * 5
    assert [row(mail).state for mail in mails] == ["pending"] * 5


def test_outbox_outage_gives_up_after_queue_age(tmp_path: Path, database_url: str,
                                                smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    old = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))
    new = queue(desk, make_ticket(20452, "Skaner", REQUESTER))
    models.Outbox.update(created_at=utcnow() - outbox.MAX_QUEUE_AGE).where(
        models.Outbox.id == old.outbox_id).execute()
    smtp.down()

    sender(desk).deliver_due()

    assert row(old).state == "failed"
    assert "5" in row(old).last_error
    assert row(new).state == "pending"


def test_outbox_lost_claim_is_not_sent(tmp_path: Path, database_url: str, smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))
    claimed = outbox.claim(owner="dead-worker:1")
    # Another daemon decides the claim is stale and takes the row over.
    models.Outbox.update(next_attempt_at=utcnow() - timedelta(hours=1)).where(
        models.Outbox.id == mail.outbox_id).execute()
    recovered = outbox.recover_stale_claims()
    retaken = outbox.claim(owner="live-worker:2")

    renewed_by_dead = outbox.renew_claim(claimed[0])
    renewed_by_live = outbox.renew_claim(retaken[0])

    assert [r.id for r in claimed] == [mail.outbox_id]
    assert recovered == 1
    assert renewed_by_dead is False
    assert renewed_by_live is True


def test_outbox_claim_skips_rows_in_sending(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))

    first = outbox.claim(owner="a:1")
    second = outbox.claim(owner="b:2")

    assert [r.id for r in first] == [mail.outbox_id]
    assert second == []
    assert row(mail).claimed_by == "a:1"
    assert row(mail).attempts == 1


def test_outbox_refuses_to_send_inside_transaction(tmp_path: Path, database_url: str,
                                                   smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    queue(desk, make_ticket(20451, "Drukarka", REQUESTER))

    with database_proxy.atomic(), pytest.raises(RuntimeError, match="transaction"):
        sender(desk).deliver_due()

    assert smtp.deliveries == []


def test_outbox_retry_delay_doubles_up_to_cap() -> None:
    assert outbox.retry_delay(1) == timedelta(seconds=30)
    assert outbox.retry_delay(2) == timedelta(seconds=60)
    assert outbox.retry_delay(5) == timedelta(minutes=8)
    assert outbox.retry_delay(30) == timedelta(hours=4)


@pytest.mark.parametrize(("code", "message", "expected"), [
    (550, "5.1.1 <x@example.org>: Recipient address rejected: user unknown", True),
    (550, "5.1.10 RESOLVER.ADR.RecipientNotFound", True),
    (550, "5.2.1 mailbox disabled", True),
    (552, "5.2.2 mailbox full", False),
    (550, "5.4.4 unable to route", True),
    (554, "5.4.7 delivery time expired", False),
    (550, "5.0.0 User unknown", True),
    (554, "5.7.1 <x@example.org>: Relay access denied", False),
    (550, "5.7.1 Message rejected as spam", False),
    (554, "5.6.0 Message content rejected", False),
    (550, "Requested action not taken: mailbox unavailable", True),
    (554, "Transaction failed", False),
    (451, "4.1.1 try later", False),
])
def test_outbox_address_failure_classes(code: int, message: str, expected: bool) -> None:
    assert outbox.is_address_failure(code, message) is expected


# --------------------------------------------------------------------------- CLI


def test_outbox_cli_list_and_retry(tmp_path: Path, database_url: str, smtp) -> None:
    desk = smtp_desk(tmp_path, database_url, smtp.port)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))
    smtp.fail_temporarily("mail")
    sender(desk).deliver_due()
    models.Outbox.update(state="failed").where(models.Outbox.id == mail.outbox_id).execute()
    smtp.fail_temporarily(None)
    runner = CliRunner()
    config = str(desk.config.path)

    listed = runner.invoke(cli_main, ["--config", config, "outbox", "list"])
    retried = runner.invoke(cli_main, ["--config", config, "outbox", "retry",
                                       str(mail.outbox_id)])
    missing = runner.invoke(cli_main, ["--config", config, "outbox", "retry", "99999"])
    models.open_database(desk.config.database_url, migrate=False)

    assert listed.exit_code == 0, listed.output
    assert str(mail.outbox_id) in listed.output
    # The desk writes Polish, so the state is listed as Polish "failed".
    assert gettext_for("pl").gettext("failed") in listed.output
    assert "451" in listed.output
    assert REQUESTER in listed.output
    assert retried.exit_code == 0, retried.output
    assert "1" in retried.output
    assert len(smtp.deliveries) == 1
    assert row(mail).state == "sent"
    assert missing.exit_code != 0
    assert "99999" in missing.output


def test_outbox_cli_escapes_last_error(tmp_path: Path, database_url: str,
                                       ascii_smtp) -> None:
    # The note of a recipient left out names the address from the mail, and a server's
    # reply may quote it: neither may act on the admin's terminal.
    handler, port = ascii_smtp
    desk = smtp_desk(tmp_path, database_url, port)
    hostile = "zofia\u202ewiśniewska@example.net"
    pipeline.process(desk, ("From: <" + hostile + ">\r\nTo: helpdesk@example.com\r\n"
                            "Subject: Drukarka\r\nMessage-ID: <b1@example.net>\r\n"
                            "Content-Type: text/plain; charset=utf-8\r\n\r\nx\r\n").encode(),
                     "test:1")
    [queued] = models.Outbox.select()
    runner = CliRunner()
    config = str(desk.config.path)

    sent = runner.invoke(cli_main, ["--config", config, "outbox", "send"])
    listed = runner.invoke(cli_main, ["--config", config, "outbox", "list"])
    models.open_database(desk.config.database_url, migrate=False)

    # Log lines (with a time stamp) are left out: the CLI's own output is checked.
    reports = [line for line in sent.output.splitlines() if str(queued.id) in line
               and not line[:1].isdigit()]
    assert "\u202e" in models.Outbox.get_by_id(queued.id).last_error
    assert sent.exit_code == 1
    assert len(reports) == 1
    assert "\u202e" not in reports[0]
    assert "\\u202e" in reports[0]
    assert listed.exit_code == 0, listed.output
    assert "\u202e" not in listed.output
    assert "\\u202e" in listed.output


def test_outbox_retry_resets_attempts(
        tmp_path: Path, database_url: str, smtp) -> None:
    from maildesk import outbox as outbox_module

    desk = smtp_desk(tmp_path, database_url, smtp.port, max_attempts=2)
    mail = queue(desk, make_ticket(20451, "Drukarka", REQUESTER))
    models.Outbox.update(state="failed", attempts=2).where(
        models.Outbox.id == mail.outbox_id).execute()
    smtp.fail_temporarily("rcpt")

    assert outbox_module.retry(mail.outbox_id)
    sender(desk).deliver_due()

    assert row(mail).state == "pending"
    assert row(mail).attempts == 1

"""Checks that the real test servers behave as the other integration tests assume."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiosmtplib
import psycopg2
import pytest
from aiosmtplib import SMTPResponse
from imapclient import IMAPClient
from imapclient.exceptions import LoginError
from servers import Dovecot, ImapAccount, PostgresSchema, SmtpSink, client_tls_context

RAW_MAIL = (
    b"From: Anna Nowak <anna@example.com>\r\n"
    b"To: helpdesk@example.com\r\n"
    b"Subject: Drukarka nie dzia\xc5\x82a\r\n"
    b"Message-ID: <printer-1@example.com>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Drukarka na 2. pi\xc4\x99trze nie drukuje.\r\n"
)


def make_mail(subject: str = "Printer broken", to: str = "agent@example.com") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "helpdesk@example.com"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("The printer on floor 2 does not print.\n")
    return message


def send(
    sink: SmtpSink, message: EmailMessage, **options: Any
) -> tuple[dict[str, SMTPResponse], str]:
    """Send one message to the sink with aiosmtplib, as maildesk's outbox does."""
    options.setdefault("hostname", sink.host)
    options.setdefault("port", sink.port)
    options.setdefault("local_hostname", "client.maildesk.test")
    options.setdefault("timeout", 10)
    options.setdefault("start_tls", False)
    return asyncio.run(aiosmtplib.send(message, **options))


# --------------------------------------------------------------------------- IMAP


def test_imap_account_login_offers_idle_and_move(imap_account: ImapAccount) -> None:
    with imap_account.client() as imap:
        capabilities = imap.capabilities()

    assert b"IDLE" in capabilities
    assert b"MOVE" in capabilities
    assert b"UIDPLUS" in capabilities


def test_imap_account_starts_empty(imap_account: ImapAccount) -> None:
    assert imap_account.messages() == {}
    assert sorted(imap_account.folders()) == ["INBOX", "Sent", "Trash"]


def test_imap_account_wrong_password_rejected(imap_account: ImapAccount) -> None:
    imap = IMAPClient(imap_account.host, port=imap_account.port, ssl=False, timeout=10)

    with pytest.raises(LoginError):
        imap.login(imap_account.username, "wrong-password")
    imap.shutdown()


def test_imap_account_append_returns_uid(imap_account: ImapAccount) -> None:
    first = imap_account.append(RAW_MAIL)
    second = imap_account.append(RAW_MAIL.replace(b"printer-1", b"printer-2"))

    assert second > first
    assert imap_account.messages() == {
        first: RAW_MAIL,
        second: RAW_MAIL.replace(b"printer-1", b"printer-2"),
    }


def test_imap_account_messages_do_not_set_seen(imap_account: ImapAccount) -> None:
    uid = imap_account.append(RAW_MAIL)

    imap_account.messages()

    assert b"\\Seen" not in imap_account.flags()[uid]


def test_imap_account_append_creates_folder(imap_account: ImapAccount) -> None:
    uid = imap_account.append(RAW_MAIL, folder="Tickets/Closed")

    assert "Tickets/Closed" in imap_account.folders()
    assert imap_account.messages("Tickets/Closed") == {uid: RAW_MAIL}


def test_imap_account_users_are_isolated(dovecot: Dovecot, imap_account: ImapAccount) -> None:
    other = ImapAccount(dovecot, imap_account.username + "x")

    imap_account.append(RAW_MAIL)

    assert other.messages() == {}


def test_imap_account_move_to_folder(imap_account: ImapAccount) -> None:
    uid = imap_account.append(RAW_MAIL)

    with imap_account.client() as imap:
        imap.create_folder("Processed")
        imap.select_folder("INBOX")
        imap.move([uid], "Processed")

    assert imap_account.messages("INBOX") == {}
    assert list(imap_account.messages("Processed").values()) == [RAW_MAIL]


def test_imap_account_idle_sees_new_message(imap_account: ImapAccount) -> None:
    with imap_account.client() as watcher:
        watcher.select_folder("INBOX")
        watcher.idle()

        imap_account.append(RAW_MAIL)
        # Dovecot batches change notifications for about half a second.
        responses = watcher.idle_check(timeout=10)
        watcher.idle_done()

    assert (1, b"EXISTS") in responses


def test_imap_account_imaps_login(imap_account: ImapAccount) -> None:
    uid = imap_account.append(RAW_MAIL)

    with imap_account.client(tls=True) as imap:
        imap.select_folder("INBOX", readonly=True)
        found = imap.search("ALL")

    assert found == [uid]


def test_imap_account_starttls_login(imap_account: ImapAccount) -> None:
    with imap_account.client(starttls=True) as imap:
        version = imap.socket().version()

    assert version is not None
    assert version.startswith("TLS")


def test_imap_account_imaps_rejects_untrusted_client(imap_account: ImapAccount) -> None:
    import ssl

    assert imap_account.tls_port is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            imap_account.host,
            port=imap_account.tls_port,
            ssl=True,
            ssl_context=ssl.create_default_context(),
            timeout=10,
        )


def test_dovecot_restart_keeps_mail(dovecot: Dovecot, imap_account: ImapAccount) -> None:
    uid = imap_account.append(RAW_MAIL)
    port_before = dovecot.port

    dovecot.restart()

    assert dovecot.port == port_before
    assert imap_account.messages() == {uid: RAW_MAIL}


def test_dovecot_restart_breaks_open_connection(
    dovecot: Dovecot, imap_account: ImapAccount
) -> None:
    with imap_account.client() as imap:
        imap.select_folder("INBOX")
        dovecot.restart()

        with pytest.raises((OSError, IMAPClient.AbortError)):
            imap.noop()

    assert imap_account.messages() == {}


def test_dovecot_stop_refuses_connections(dovecot: Dovecot, imap_account: ImapAccount) -> None:
    dovecot.stop()
    try:
        with pytest.raises(ConnectionRefusedError):
            IMAPClient(imap_account.host, port=imap_account.port, ssl=False, timeout=10)
    finally:
        dovecot.start()

    assert imap_account.messages() == {}


# --------------------------------------------------------------------------- SMTP


def test_smtp_sink_records_delivery(smtp: SmtpSink) -> None:
    send(smtp, make_mail("Ticket #42 opened"))

    [delivery] = smtp.deliveries
    assert delivery.mail_from == "helpdesk@example.com"
    assert delivery.rcpt_tos == ("agent@example.com",)
    assert delivery.message["Subject"] == "Ticket #42 opened"
    assert b"floor 2" in delivery.data
    assert delivery.auth_login is None
    assert delivery.tls is False


def test_smtp_sink_keeps_utf8_headers(smtp: SmtpSink) -> None:
    send(smtp, make_mail("Zgłoszenie #42: drukarka nie działa"))

    [delivery] = smtp.deliveries
    assert delivery.message["Subject"] == "Zgłoszenie #42: drukarka nie działa"


def test_smtp_sink_clear_forgets_mail(smtp: SmtpSink) -> None:
    send(smtp, make_mail())

    smtp.clear()

    assert smtp.deliveries == []


def test_smtp_sink_rejects_recipient(smtp: SmtpSink) -> None:
    smtp.reject("Nobody@Example.com")

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as raised:
        send(smtp, make_mail(to="nobody@example.com"))

    assert [refused.code for refused in raised.value.recipients] == [550]
    assert smtp.deliveries == []


def test_smtp_sink_rejects_one_of_two_recipients(smtp: SmtpSink) -> None:
    smtp.reject("nobody@example.com")

    errors, _ = send(smtp, make_mail(to="agent@example.com, nobody@example.com"))

    assert list(errors) == ["nobody@example.com"]
    assert errors["nobody@example.com"].code == 550
    [delivery] = smtp.deliveries
    assert delivery.rcpt_tos == ("agent@example.com",)


@pytest.mark.parametrize(
    ("stage", "error"),
    [
        ("mail", aiosmtplib.SMTPSenderRefused),
        ("rcpt", aiosmtplib.SMTPRecipientsRefused),
        ("data", aiosmtplib.SMTPDataError),
    ],
)
def test_smtp_sink_temporary_failure(
    smtp: SmtpSink, stage: str, error: type[aiosmtplib.SMTPException]
) -> None:
    smtp.fail_temporarily(stage)  # type: ignore[arg-type]

    with pytest.raises(error) as raised:
        send(smtp, make_mail())

    if isinstance(raised.value, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in raised.value.recipients]
    else:
        codes = [raised.value.code]  # type: ignore[attr-defined]
    assert codes == [451]
    assert smtp.deliveries == []


def test_smtp_sink_down_refuses_then_up_accepts(smtp: SmtpSink) -> None:
    port = smtp.port
    smtp.down()

    with pytest.raises(aiosmtplib.SMTPConnectError):
        send(smtp, make_mail())

    smtp.up()
    send(smtp, make_mail())

    assert smtp.port == port
    assert len(smtp.deliveries) == 1


def test_smtp_sink_auth_missing_credentials(smtp: SmtpSink) -> None:
    smtp.configure(auth=("desk", "s3cret"))

    with pytest.raises(aiosmtplib.SMTPSenderRefused) as raised:
        send(smtp, make_mail())

    assert raised.value.code == 530
    assert smtp.deliveries == []


def test_smtp_sink_auth_wrong_password(smtp: SmtpSink) -> None:
    smtp.configure(auth=("desk", "s3cret"))

    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as raised:
        send(smtp, make_mail(), username="desk", password="wrong")

    assert raised.value.code == 535
    assert smtp.deliveries == []


def test_smtp_sink_auth_accepts_login(smtp: SmtpSink) -> None:
    smtp.configure(auth=("desk", "s3cret"))

    send(smtp, make_mail(), username="desk", password="s3cret")

    [delivery] = smtp.deliveries
    assert delivery.auth_login == "desk"


def test_smtp_sink_starttls_with_auth(smtp: SmtpSink) -> None:
    smtp.configure(auth=("desk", "s3cret"), starttls=True, require_starttls=True)
    assert smtp.cafile is not None

    send(
        smtp,
        make_mail(),
        start_tls=True,
        cert_bundle=str(smtp.cafile),
        username="desk",
        password="s3cret",
    )

    [delivery] = smtp.deliveries
    assert delivery.tls is True
    assert delivery.auth_login == "desk"


def test_smtp_sink_starttls_required(smtp: SmtpSink) -> None:
    smtp.configure(starttls=True, require_starttls=True)

    with pytest.raises(aiosmtplib.SMTPSenderRefused) as raised:
        send(smtp, make_mail(), start_tls=False)

    assert raised.value.code == 530
    assert smtp.deliveries == []


def test_smtp_sink_implicit_tls(smtp: SmtpSink) -> None:
    smtp.configure(implicit_tls=True)
    assert smtp.cafile is not None

    send(
        smtp, make_mail(), use_tls=True, start_tls=None, tls_context=client_tls_context(smtp.cafile)
    )

    [delivery] = smtp.deliveries
    assert delivery.tls is True


def test_smtp_sink_reset_restores_plain_smtp(smtp: SmtpSink) -> None:
    smtp.configure(auth=("desk", "s3cret"), starttls=True)
    smtp.reject("agent@example.com")
    smtp.fail_temporarily("data")
    smtp.down()

    smtp.reset()
    send(smtp, make_mail())

    [delivery] = smtp.deliveries
    assert delivery.tls is False
    assert delivery.auth_login is None


def test_smtp_sink_wait_for_background_sender(smtp: SmtpSink) -> None:
    sender = threading.Thread(target=lambda: [send(smtp, make_mail(f"#{n}")) for n in range(3)])

    sender.start()
    deliveries = smtp.wait_for(3, timeout=10)
    sender.join()

    assert [delivery.message["Subject"] for delivery in deliveries] == ["#0", "#1", "#2"]


def test_smtp_sink_wait_for_times_out(smtp: SmtpSink) -> None:
    with pytest.raises(TimeoutError, match="0 of 1"):
        smtp.wait_for(1, timeout=0.1)


# --------------------------------------------------------------------------- databases


def test_postgres_schema_starts_empty(postgres_schema: PostgresSchema) -> None:
    assert postgres_schema.exists()
    assert postgres_schema.tables() == []


def test_postgres_schema_url_names_schema(postgres_schema: PostgresSchema) -> None:
    url = urlsplit(postgres_schema.url)

    assert url.scheme == "postgresql"
    assert url.hostname == "127.0.0.1"
    assert url.path == "/test"
    assert parse_qs(url.query) == {"schema": [postgres_schema.name]}


def test_postgres_schema_drop_removes_tables(postgres_schema: PostgresSchema) -> None:
    connection = postgres_schema.connect()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE ticket (id serial PRIMARY KEY, subject text)")
    connection.close()
    assert postgres_schema.tables() == ["ticket"]

    postgres_schema.drop()

    assert not postgres_schema.exists()


def test_postgres_schemas_are_distinct() -> None:
    first, second = PostgresSchema(), PostgresSchema()

    assert first.name != second.name


def test_database_url_opens_empty_database(database_url: str) -> None:
    url = urlsplit(database_url)

    if url.scheme == "sqlite":
        path = Path(url.path[1:])
        connection = sqlite3.connect(path)
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        assert tables.fetchall() == []
        connection.close()
        assert path.parent.is_dir()
        return

    assert url.scheme == "postgresql"
    schema = parse_qs(url.query)["schema"][0]
    connection = psycopg2.connect(
        host=url.hostname,
        port=url.port,
        user=url.username,
        dbname=url.path[1:],
        options=f"-c search_path={schema}",
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        assert cursor.fetchone() == (schema,)
        cursor.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", [schema])
        assert cursor.fetchone() == (0,)
    connection.close()


def test_shared_dir_exists(shared_dir: Path) -> None:
    assert shared_dir.is_dir()
    assert shared_dir.name == "shared"

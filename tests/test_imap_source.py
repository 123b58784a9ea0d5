"""The IMAP source against a real Dovecot: TLS, STARTTLS, XOAUTH2 and UIDVALIDITY."""

from __future__ import annotations

import logging
import shlex
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from deskfactory import mail
from imapdesk import imap_desk
from servers import Dovecot, ImapAccount, free_port, new_imap_username

from maildesk import daemon as daemon_module
from maildesk import models
from maildesk.errors import ConfigError, TemporaryError
from maildesk.wiring import build_daemon

pytestmark = pytest.mark.servers


def _run_once(desk) -> int:
    return build_daemon(desk).run(once=True)


def test_imap_over_implicit_tls(tmp_path: Path, database_url: str, imap_account, smtp,
                                monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch, security="tls",
                     port=imap_account.tls_port, ca_file=str(imap_account.cafile))
    imap_account.append(mail())

    handled = _run_once(desk)

    assert handled == 1
    assert models.Ticket.select().count() == 1


def test_imap_with_starttls(tmp_path: Path, database_url: str, imap_account, smtp,
                            monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch,
                     security="starttls", ca_file=str(imap_account.cafile))
    imap_account.append(mail())

    handled = _run_once(desk)

    assert handled == 1


def test_imap_tls_rejects_unknown_certificate(tmp_path: Path, database_url: str, imap_account,
                                              smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch, security="tls",
                     port=imap_account.tls_port)
    imap_account.append(mail())
    daemon = build_daemon(desk)
    monkeypatch.setattr(daemon, "_sleep", lambda seconds: None)

    with pytest.raises(ConfigError, match="not trusted.*set source.ca_file"):
        daemon.run(once=True)

    assert models.Ticket.select().count() == 0
    assert len(imap_account.messages("INBOX")) == 1


def test_imap_xoauth2_token_from_command(tmp_path: Path, database_url: str, imap_account,
                                         smtp, monkeypatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(imap_account.password, encoding="utf-8")
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch,
                     password_env=None,
                     oauth2_token_command=f"cat {shlex.quote(str(token_file))}")
    imap_account.append(mail())

    handled = _run_once(desk)

    assert handled == 1


def test_imap_wait_sees_mail_that_arrived_during_search(tmp_path: Path, database_url: str,
                                                       imap_account, smtp,
                                                       monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    source = build_daemon(desk).source
    assert source.fetch() == []
    client = source.client
    real_search = client.search

    def search_then_mail_arrives(criteria):
        # The mail arrives after the SEARCH has chosen its results. The server then
        # reports it with an EXISTS, which a NOOP receives here.
        results = real_search(criteria)
        imap_account.append(mail(message_id="<during-search@example.org>"))
        client._imap._simple_command("NOOP")
        return results

    idled = []
    monkeypatch.setattr(client, "search", search_then_mail_arrives)
    monkeypatch.setattr(client, "idle", lambda: idled.append(True))
    monkeypatch.setattr(client, "idle_check", lambda timeout: [])
    monkeypatch.setattr(client, "idle_done", lambda: None)

    source.wait(3, lambda: bool(idled))
    monkeypatch.setattr(client, "search", real_search)
    fetched = source.fetch()
    source.close()

    assert idled == []
    assert len(fetched) == 1


def test_imap_uidvalidity_change_is_reported(tmp_path: Path, database_url: str, imap_account,
                                             smtp, monkeypatch, caplog) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch,
                     folder="Support")
    imap_account.append(mail(message_id="<u1@example.org>"), folder="Support")
    _run_once(desk)
    with imap_account.client() as imap:
        imap.delete_folder("Support")
        imap.create_folder("Support")
    imap_account.append(mail(message_id="<u1@example.org>"), folder="Support")
    imap_account.append(mail(message_id="<u2@example.org>", subject="Drugie"), folder="Support")

    with caplog.at_level(logging.WARNING, logger="maildesk.sources.imap"):
        daemon = build_daemon(desk)
        daemon.run(once=True)

    assert any("UIDVALIDITY" in record.getMessage() for record in caplog.records)
    assert daemon.outcomes == {"duplicate": 1, "create": 1}
    assert models.Ticket.select().count() == 2


def test_imap_wrong_password_is_a_configuration_error(tmp_path: Path, database_url: str,
                                                      imap_account, smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    monkeypatch.setenv("MAILDESK_TEST_IMAP_PASSWORD", "wrong")

    with pytest.raises(ConfigError, match="rejected.*check the username and the password"):
        build_daemon(desk).run(once=True)


@pytest.fixture
def flaky_auth_account(dovecot: Dovecot) -> Iterator[ImapAccount]:
    """A user on a private Dovecot whose logins ``fail_logins`` can make fail temporarily.

    It takes ``dovecot`` only to be skipped, or failed in CI, as the shared one is when
    Dovecot is missing.
    """
    server = Dovecot(tempfile.mkdtemp(prefix="dv-"), auth_outage=True)
    server.start()
    yield ImapAccount(server, new_imap_username())
    server.cleanup()


def test_imap_temporary_login_failure_is_retried(tmp_path: Path, database_url: str,
                                                 flaky_auth_account, smtp, monkeypatch,
                                                 caplog) -> None:
    # Dovecot replies NO [UNAVAILABLE] when its authentication backend fails (RFC 5530).
    account = flaky_auth_account
    desk = imap_desk(tmp_path, database_url, account, smtp, monkeypatch)
    account.append(mail())
    account.server.fail_logins(account.username)
    daemon = build_daemon(desk)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        account.server.restore_logins(account.username)

    monkeypatch.setattr(daemon, "_sleep", pause)
    with caplog.at_level(logging.WARNING, logger="maildesk.daemon"):
        handled = daemon.run(once=True)

    assert handled == 1
    assert pauses == [1.0]
    assert models.Ticket.select().count() == 1
    warnings = [record.getMessage() for record in caplog.records]
    assert any("failed temporarily" in warning for warning in warnings)
    assert any("[UNAVAILABLE]" in warning for warning in warnings)


@pytest.fixture
def single_connection_account(dovecot: Dovecot) -> Iterator[ImapAccount]:
    """A user on a private Dovecot that lets one user log in once per address at a time."""
    server = Dovecot(tempfile.mkdtemp(prefix="dv-"), max_userip_connections=1)
    server.start()
    yield ImapAccount(server, new_imap_username())
    server.cleanup()


def test_imap_login_over_connection_limit_is_retried(
        tmp_path: Path, database_url: str, single_connection_account, smtp, monkeypatch) -> None:
    # Dovecot replies NO [LIMIT] while a mail client has the only connection allowed.
    account = single_connection_account
    desk = imap_desk(tmp_path, database_url, account, smtp, monkeypatch)
    account.append(mail())
    mail_client = ExitStack()
    mail_client.enter_context(account.client())
    daemon = build_daemon(desk)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        mail_client.close()

    monkeypatch.setattr(daemon, "_sleep", pause)
    with mail_client:
        handled = daemon.run(once=True)

    assert handled == 1
    assert pauses == [1.0]


@pytest.fixture
def closing_imap_port() -> Iterator[int]:
    """A port where an IMAP server greets, then replies to LOGIN with BYE, as when it stops."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopped = threading.Event()

    def serve() -> None:
        while not stopped.is_set():
            try:
                connection, _address = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
                for line in connection.makefile("rb"):
                    if b" LOGIN " in line.upper():
                        connection.sendall(b"* BYE Server shutting down.\r\n")
                        break
                    tag = line.split(b" ", 1)[0]
                    connection.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag
                                       + b" OK done\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stopped.set()
    thread.join()
    listener.close()


def test_imap_login_cut_by_bye_is_temporary(tmp_path: Path, database_url: str, imap_account,
                                            smtp, monkeypatch, closing_imap_port) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch,
                     port=closing_imap_port)
    daemon = build_daemon(desk)
    monkeypatch.setattr(daemon, "_sleep", lambda seconds: None)

    with pytest.raises(TemporaryError, match="shutting down"):
        daemon.run(once=True)


def test_imap_missing_folder_lists_the_real_ones(tmp_path: Path, database_url: str,
                                                 imap_account, smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch, folder="Skrzynka")

    with pytest.raises(ConfigError, match="'Skrzynka' does not exist.*INBOX"):
        build_daemon(desk).run(once=True)


def test_imap_unreachable_once_gives_up(tmp_path: Path, database_url: str, imap_account, smtp,
                                        monkeypatch) -> None:
    # Nothing listens on the port, so every connection is refused at once.
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch, port=free_port())
    daemon = build_daemon(desk)
    pauses: list[float] = []
    monkeypatch.setattr(daemon, "_sleep", pauses.append)

    with pytest.raises(TemporaryError, match="Connection refused"):
        daemon.run(once=True)

    assert len(pauses) == daemon_module.ONCE_ATTEMPTS - 1
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0]

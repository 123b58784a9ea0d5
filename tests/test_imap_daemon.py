"""The daemon against a real Dovecot and a real SMTP sink, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from deskfactory import mail, record_helper_parses
from imapdesk import imap_desk

from maildesk import models, pipeline
from maildesk.wiring import build_daemon

pytestmark = pytest.mark.servers


def test_imap_pass_creates_tickets_and_moves_mail(tmp_path: Path, database_url: str,
                                                  imap_account, smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    imap_account.append(mail(message_id="<a1@example.org>"))
    imap_account.append(mail(sender="Jan Nowak <jan.nowak@example.org>",
                             subject="Brak dostępu do VPN", message_id="<a2@example.org>"))
    imap_account.append(mail(message_id="<a3@example.org>", subject="Nieobecność",
                             headers={"Auto-Submitted": "auto-replied"}))

    daemon = build_daemon(desk)
    handled = daemon.run(once=True)

    assert handled == 3
    assert daemon.outcomes == {"create": 2, "ignore": 1}
    assert models.Ticket.select().count() == 2
    assert imap_account.messages("INBOX") == {}
    assert len(imap_account.messages("Processed")) == 3
    recipients = sorted(rcpt for delivery in smtp.deliveries for rcpt in delivery.rcpt_tos)
    assert recipients == ["jan.nowak@example.org", "zofia.wisniewska@example.org"]
    assert all(delivery.message["Auto-Submitted"] == "auto-replied"
               for delivery in smtp.deliveries)


def test_imap_fetch_does_not_mark_mail_seen(tmp_path: Path, database_url: str, imap_account,
                                            smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    imap_account.append(mail())
    source = build_daemon(desk).source

    fetched = source.fetch()
    source.close()

    assert len(fetched) == 1
    assert all(b"\\Seen" not in flags for flags in imap_account.flags("INBOX").values())


def test_imap_reply_threads_onto_ticket(tmp_path: Path, database_url: str, imap_account,
                                        smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    imap_account.append(mail(message_id="<b1@example.org>"))
    build_daemon(desk).run(once=True)
    ack = smtp.deliveries[0].message

    imap_account.append(mail(subject=f"Re: {ack['Subject']}", message_id="<b2@example.org>",
                             body="Drukarka dalej nie działa.",
                             headers={"In-Reply-To": ack["Message-ID"],
                                      "References": f"<b1@example.org> {ack['Message-ID']}"}))
    build_daemon(desk).run(once=True)

    assert models.Ticket.select().count() == 1
    assert models.Message.select().count() == 2
    assert len(smtp.deliveries) == 1


def test_imap_server_restart_mid_pass_loses_nothing(tmp_path: Path, database_url: str,
                                                    imap_account, dovecot, smtp,
                                                    monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch, batch_size=2)
    for number in range(6):
        imap_account.append(mail(message_id=f"<r{number}@example.org>",
                                 sender=f"user{number}@example.org",
                                 subject=f"Zgłoszenie {number}"))
    real_process = pipeline.process
    calls = []

    def process_then_restart(*args, **kwargs):
        outcome = real_process(*args, **kwargs)
        calls.append(outcome.action)
        if len(calls) == 3:
            dovecot.restart()  # the next IMAP command (the MOVE of this mail) fails
        return outcome

    monkeypatch.setattr(pipeline, "process", process_then_restart)
    daemon = build_daemon(desk)
    monkeypatch.setattr(daemon, "_sleep", lambda seconds: None)
    daemon.run(once=True)

    assert models.Ticket.select().count() == 6
    assert "duplicate" in calls
    assert imap_account.messages("INBOX") == {}
    assert len(imap_account.messages("Processed")) == 6
    assert len(smtp.deliveries) == 6
    assert len({d.message["Message-ID"] for d in smtp.deliveries}) == 6


def test_imap_backlog_searched_once_per_pass(tmp_path: Path, database_url: str,
                                            imap_account, smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch, batch_size=2)
    for number in range(5):
        imap_account.append(mail(message_id=f"<s{number}@example.org>",
                                 sender=f"user{number}@example.org",
                                 subject=f"Zgłoszenie {number}"))
    daemon = build_daemon(desk)
    source = daemon.source
    searches = []
    late = []
    real_process = pipeline.process
    connect = source._connect

    def process_and_append_once(*args, **kwargs):
        # A mail that arrives during the pass, after its first SEARCH.
        if not late:
            late.append(mail(message_id="<late@example.org>", sender="late@example.org",
                             subject="Spóźniona"))
            imap_account.append(late[0])
        return real_process(*args, **kwargs)

    def connect_and_count_searches():
        client = connect()
        search = client.search

        def counting(*args, **kwargs):
            searches.append(args)
            return search(*args, **kwargs)

        client.search = counting
        return client

    monkeypatch.setattr(source, "_connect", connect_and_count_searches)
    monkeypatch.setattr(pipeline, "process", process_and_append_once)
    handled = daemon.run(once=True)

    assert handled == 6
    assert models.Ticket.select().count() == 6
    assert imap_account.messages("INBOX") == {}
    # One SEARCH for the backlog, one that finds the late mail, one that finds nothing.
    # A SEARCH before each batch of two would have made four.
    assert len(searches) == 3


def test_imap_pass_goes_on_after_a_batch_vanished(tmp_path: Path, database_url: str,
                                                  imap_account, smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch, batch_size=2)
    uids = [imap_account.append(mail(message_id=f"<v{number}@example.org>",
                                     sender=f"user{number}@example.org",
                                     subject=f"Sprawa {number}"))
            for number in range(5)]
    daemon = build_daemon(desk)
    real_process = pipeline.process
    removed = []

    def process_while_someone_files_two_away(*args, **kwargs):
        # While the first batch is processed, a person moves mails 3 and 4 elsewhere.
        if not removed:
            with imap_account.client() as client:
                client.select_folder("INBOX")
                client.add_flags(uids[2:4], [b"\\Deleted"])
                client.expunge()
            removed.append(True)
        return real_process(*args, **kwargs)

    monkeypatch.setattr(pipeline, "process", process_while_someone_files_two_away)
    daemon.run(once=True)

    assert models.Ticket.select().count() == 3
    assert imap_account.messages("INBOX") == {}


def test_smtp_outage_keeps_acknowledgements_queued(tmp_path: Path, database_url: str,
                                                   imap_account, smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    imap_account.append(mail(message_id="<s1@example.org>"))
    smtp.down()

    build_daemon(desk).run(once=True)

    row = models.Outbox.get()
    assert row.state == "pending"
    assert row.attempts == 0  # an outage uses up none of the mail's attempts
    assert row.last_error
    assert models.Ticket.select().count() == 1

    smtp.up()
    models.Outbox.update(next_attempt_at=models.utcnow()).execute()
    build_daemon(desk).send_outbox()

    assert models.Outbox.get().state == "sent"
    assert len(smtp.deliveries) == 1


def test_idle_wakes_daemon_for_new_mail(tmp_path: Path, database_url: str, imap_account,
                                        smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    daemon = build_daemon(desk)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        for _attempt in range(100):  # wait until the daemon is idling
            if daemon.source.client is not None and daemon.source.idle_supported:
                break
            threading.Event().wait(0.05)
        imap_account.append(mail(message_id="<i1@example.org>"))

        deliveries = smtp.wait_for(1, timeout=15)
    finally:
        daemon.request_stop()
        runner.join(timeout=15)

    assert not runner.is_alive()
    assert deliveries[0].rcpt_tos == ("zofia.wisniewska@example.org",)
    assert daemon.processed == 1


def test_unparseable_mail_moves_to_quarantine_folder(tmp_path: Path, database_url: str,
                                                     imap_account, smtp,
                                                     monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    imap_account.append(b"\r\n\r\n")

    build_daemon(desk).run(once=True)

    assert len(imap_account.messages("Quarantine")) == 1
    assert imap_account.messages("INBOX") == {}
    assert models.Quarantine.select().count() == 1
    assert [d.rcpt_tos for d in smtp.deliveries] == [("admin@example.com",)]


def _make_unreadable(account, marker: bytes) -> None:
    """Take Dovecot's read permission on the message file that contains ``marker``.

    Mail processes of the test Dovecot run as ``nobody`` under root, else as the test's
    user, and neither reads a file of mode 000.
    """
    maildir = account.server.workdir / "mail" / account.username / "Maildir"
    files = [path for sub in ("new", "cur") for path in (maildir / sub).iterdir()
             if marker in path.read_bytes()]
    assert len(files) == 1
    files[0].chmod(0)


def _uids(account, folder: str) -> list[int]:
    """List the UIDs of a folder without fetching bodies, which fails on an unreadable one."""
    with account.client() as client:
        client.select_folder(folder, readonly=True)
        return sorted(client.search("ALL"))


def test_imap_unreadable_message_does_not_stop_pass(tmp_path: Path, database_url: str,
                                                    imap_account, smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    imap_account.append(mail(message_id="<u1@example.org>", subject="Pierwsza"))
    bad = imap_account.append(mail(message_id="<u2@example.org>", subject="Nieczytelna"))
    imap_account.append(mail(message_id="<u3@example.org>", subject="Trzecia",
                             sender="jan.nowak@example.org"))
    _make_unreadable(imap_account, b"<u2@example.org>")
    daemon = build_daemon(desk)
    monkeypatch.setattr(daemon, "_sleep", lambda seconds: None)

    daemon.run(once=True)

    assert daemon.outcomes == {"create": 2}
    assert sorted(t.subject for t in models.Ticket.select()) == ["Pierwsza", "Trzecia"]
    assert _uids(imap_account, "INBOX") == [bad]
    assert models.Quarantine.select().count() == 0


def test_imap_unreadable_message_quarantined_after_retries(
        tmp_path: Path, database_url: str, imap_account, smtp, monkeypatch, caplog) -> None:
    from maildesk.sources.retries import ReadRetries

    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    imap_account.append(mail(message_id="<q1@example.org>"))
    bad = imap_account.append(mail(message_id="<q2@example.org>", subject="Nieczytelna"))
    _make_unreadable(imap_account, b"<q2@example.org>")
    daemon = build_daemon(desk)
    daemon.source.retries = ReadRetries(daemon.source.name, attempts=2, delay=0)

    with caplog.at_level(logging.WARNING):
        daemon.run(once=True)

    assert daemon.outcomes == {"create": 1, "quarantined": 1}
    assert _uids(imap_account, "INBOX") == []
    assert len(_uids(imap_account, "Quarantine")) == 1
    assert len(imap_account.messages("Processed")) == 1
    row = models.Quarantine.get()
    assert row.raw_sha256 == ""
    assert row.source == f"imap:INBOX/{bad}"
    assert f"UID {bad}" in row.error
    assert "Quarantine" in row.error
    assert [d.rcpt_tos for d in smtp.deliveries].count(("admin@example.com",)) == 1
    errors = [record.getMessage() for record in caplog.records
              if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"UID {bad}" in errors[0]


def _backlog(account, count: int) -> None:
    for number in range(count):
        account.append(mail(message_id=f"<h{number}@example.org>",
                            sender=f"user{number}@example.org",
                            subject=f"Zgłoszenie {number}", body=f"Problem {number}.\n"))


def _helper_desk(tmp_path: Path, database_url: str, account, smtp, monkeypatch):
    """A desk whose daemon uses the parse helper, with a backlog of 12 mails in batches of 6."""
    from maildesk import parseahead

    monkeypatch.setattr(parseahead, "available_cpus", lambda: 2)
    desk = imap_desk(tmp_path, database_url, account, smtp, monkeypatch, batch_size=6)
    _backlog(account, 12)
    return desk


def test_imap_pass_parses_in_helper(tmp_path: Path, database_url: str, imap_account, smtp,
                                    monkeypatch, caplog) -> None:
    desk = _helper_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    parsed_by_helper = record_helper_parses(monkeypatch)
    caplog.set_level(logging.INFO, logger="maildesk.parseahead")
    daemon = build_daemon(desk)
    handled = daemon.run(once=True)

    assert handled == 12
    assert parsed_by_helper == [True] * 12
    assert models.Ticket.select().count() == 12
    assert sorted(t.subject for t in models.Ticket.select()) == sorted(
        f"Zgłoszenie {number}" for number in range(12))
    assert len(smtp.deliveries) == 12
    assert "parse helper stopped" in caplog.text


def test_imap_pass_survives_helper_death(tmp_path: Path, database_url: str, imap_account,
                                         smtp, monkeypatch, caplog) -> None:
    desk = _helper_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    daemon = build_daemon(desk)

    def kill_helper_at_second_mail(count: int) -> None:
        if count == 2:
            helper = daemon.parse_ahead._process
            helper.kill()
            helper.join()

    parsed_by_helper = record_helper_parses(monkeypatch, before=kill_helper_at_second_mail)
    handled = daemon.run(once=True)

    assert handled == 12
    assert models.Ticket.select().count() == 12
    assert imap_account.messages("INBOX") == {}
    assert len(smtp.deliveries) == 12
    # Found dead in its batch or when the next one is sent: either way it counts once,
    # and the next batch has a new helper.
    assert caplog.text.count("the parse helper process failed") == 1
    assert parsed_by_helper[6:] == [True] * 6

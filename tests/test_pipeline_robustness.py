"""Mail that the database would reject, a lost database connection, a full disk."""

from __future__ import annotations

from pathlib import Path

import peewee as pw
import pytest
from deskfactory import mail, make_desk

from maildesk import models, pipeline
from maildesk.errors import TemporaryError


def test_overlong_values_quarantine_instead_of_crashing(tmp_path: Path,
                                                        database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    long_type = "application/" + "x" * 400
    raw = (b"From: zofia@example.org\r\nTo: helpdesk@example.com\r\n"
           b"Message-ID: <long-type@example.org>\r\nSubject: Typ\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\n\r\ntekst\r\n--b\r\n"
           b"Content-Type: " + long_type.encode() + b"; name=a.bin\r\n"
           b"Content-Disposition: attachment; filename=a.bin\r\n\r\nabc\r\n--b--\r\n")

    outcome = pipeline.process(desk, raw, "test:1")
    good = pipeline.process(desk, mail(message_id="<after@example.org>"), "test:2")

    assert outcome.action == "create"
    assert good.action == "create"
    stored = models.Attachment.get()
    assert stored.content_type == long_type[:255]


def test_overlong_sender_address_is_quarantined(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    outcome = pipeline.process(desk, mail(sender="x" * 400 + "@example.org"), "test:1")

    assert outcome.action == "quarantined"
    assert "From" in models.Quarantine.get().error


def test_reused_message_id_from_stranger_does_not_hide_mail(tmp_path: Path,
                                                            database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    first = pipeline.process(desk, mail(sender="obcy@elsewhere.example",
                                        message_id="<shared@example.org>"), "test:1")
    second = pipeline.process(desk, mail(message_id="<shared@example.org>"), "test:2")

    assert first.action == "create"
    assert second.action == "create"
    assert models.Ticket.select().count() == 2


def test_too_large_mail_is_not_parsed_whole(tmp_path: Path, database_url: str,
                                            monkeypatch) -> None:
    desk = make_desk(tmp_path, database_url, desk={"max_message_size": 4096})
    seen: list[int] = []
    real_parse = pipeline.parse_message

    def recording_parse(raw: bytes, **kwargs):
        seen.append(len(raw))
        return real_parse(raw, **kwargs)

    monkeypatch.setattr(pipeline, "parse_message", recording_parse)

    outcome = pipeline.process(desk, mail(body="x" * 20000), "test:1")

    assert outcome.action == "quarantined"
    assert seen
    assert max(seen) < 4096


def test_many_cc_addresses_are_capped(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    cc = ", ".join(f"osoba{number}@example.org" for number in range(60))

    outcome = pipeline.process(desk, mail(headers={"Cc": cc}), "test:1")

    count = models.Participant.select().where(models.Participant.ticket == outcome.ticket).count()
    assert count == 20
    assert models.Event.select().where(models.Event.action == "participants_limited").exists()


def test_full_disk_for_attachments_is_temporary(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    desk.store.inline_limit = 0  # files, as for content past the limit
    raw = mail(subject="Zrzut ekranu", body="w załączniku", message_id="<disk@example.org>",
               png=("ekran.png", b"PNG"))
    attachments = desk.store.root / "attachments"
    attachments.parent.mkdir(parents=True, exist_ok=True)
    attachments.write_bytes(b"")  # a file where the folder must be: every write fails

    with pytest.raises(TemporaryError, match="<disk@example.org>: .*Not a directory"):
        pipeline.process(desk, raw, "test:1")

    assert models.Ticket.select().count() == 0
    assert not models.ProcessedMessage.select().exists()


def test_lost_postgresql_connection_reconnects(tmp_path: Path, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the connection to terminate is a PostgreSQL backend")
    desk = make_desk(tmp_path, database_url)
    database = models.database_proxy.obj
    pid = database.connection().info.backend_pid
    killer = pw.PostgresqlDatabase("test", host="127.0.0.1", port=5432, user="postgres")
    killer.execute_sql("SELECT pg_terminate_backend(%s)", (pid,))
    killer.close()

    with pytest.raises(TemporaryError):
        pipeline.process(desk, mail(), "test:1")
    outcome = pipeline.process(desk, mail(), "test:1")

    assert outcome.action == "create"


def test_repeated_text_counts_as_automatic_reply(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    created = pipeline.process(desk, mail(), "test:1")
    vacation = "Jestem na urlopie do 14 grudnia, w pilnych sprawach dzwoń do sekretariatu."

    first = pipeline.process(desk, mail(subject=f"Re: [#{created.ticket}] Drukarka",
                                        message_id="<v1@example.org>", body=vacation), "test:2")
    second = pipeline.process(desk, mail(subject=f"Re: [#{created.ticket}] Drukarka",
                                         message_id="<v2@example.org>", body=vacation), "test:3")

    entries = list(models.Message.select().where(models.Message.ticket == created.ticket)
                   .order_by(models.Message.id))
    assert first.action == "append"
    assert second.action == "append"
    assert [entry.kind for entry in entries] == ["customer", "customer", "auto_reply"]
    assert second.queued == ()
    assert models.Event.select().where(models.Event.action == "repeated_text_ignored").count() == 1

"""Polite rejections: a mail over the size limit and a blocked sender."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
from deskfactory import mail, make_desk

from maildesk import models, pipeline


def _rows(kind: str) -> list[models.Outbox]:
    return list(models.Outbox.select().where(models.Outbox.kind == kind))


def test_too_large_mail_is_quarantined_and_sender_told(tmp_path: Path,
                                                        database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, desk={"max_message_size": 2048})

    outcome = pipeline.process(desk, mail(body="x" * 4000), "test:1")

    assert outcome.action == "quarantined"
    assert models.Ticket.select().count() == 0
    assert "max_message_size" in models.Quarantine.get().error
    rows = _rows("rejection_too_large")
    assert len(rows) == 1
    assert rows[0].recipients.split() == ["zofia.wisniewska@example.org"]
    notice = message_from_bytes(bytes(rows[0].raw), policy=default_policy)
    assert notice["Subject"].startswith("Wiadomość nieprzyjęta (za duża)")


def test_too_large_quarantine_and_rejection_commit_together(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import peewee as pw

    from maildesk import notify
    from maildesk.errors import TemporaryError

    desk = make_desk(tmp_path, database_url, desk={"max_message_size": 2048})

    def failing(*args, **kwargs):
        raise pw.OperationalError("database is locked")

    monkeypatch.setattr(notify, "queue_rejection", failing)

    with pytest.raises(TemporaryError):
        pipeline.process(desk, mail(body="x" * 4000), "test:1")

    # Nothing was committed, so the mail is processed again, rejection included.
    assert models.Quarantine.select().count() == 0
    monkeypatch.undo()
    assert pipeline.process(desk, mail(body="x" * 4000), "test:1").action == "quarantined"
    assert len(_rows("rejection_too_large")) == 1


def test_too_large_auto_reply_gets_no_rejection(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, desk={"max_message_size": 2048})

    pipeline.process(desk, mail(body="x" * 4000, headers={"Auto-Submitted": "auto-replied"}),
                     "test:1")

    assert _rows("rejection_too_large") == []
    assert models.Quarantine.select().count() == 1


def test_blocked_sender_domain_gets_rejection(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, desk={"blocked_senders": ["@spam.example.org"]})

    outcome = pipeline.process(desk, mail(sender="oferta@news.spam.example.org"), "test:1")

    assert outcome.action == "ignore"
    assert "blocked" in outcome.reason
    assert models.Ticket.select().count() == 0
    assert [row.recipients.split() for row in _rows("rejection_blocked")] == [
        ["oferta@news.spam.example.org"]]


def test_blocked_senders_must_be_addresses_or_domains(tmp_path: Path) -> None:
    import pytest

    from maildesk.errors import ConfigError

    # The desk's language is Polish, so the message is too; the example stays literal.
    with pytest.raises(ConfigError, match="'spam'.*jan@example.com albo @example.com"):
        make_desk(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}",
                  desk={"blocked_senders": ["spam"]})


def test_rejection_reason_follows_desk_language_not_locale(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon started with an English system locale still writes Polish mail."""
    monkeypatch.delenv("MAILDESK_LANGUAGE", raising=False)
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    desk = make_desk(tmp_path, database_url,
                     desk={"blocked_senders": ["zofia.wisniewska@example.org"]})

    outcome = pipeline.process(desk, mail(), "test:1")

    assert outcome.action == "ignore"
    row = models.Outbox.get()
    text = message_from_bytes(bytes(row.raw), policy=default_policy).get_body(
        ("plain",)).get_content()
    assert "Powód:" in text
    assert "the sender is blocked" not in text


def test_rejection_reason_in_mail_language_not_process_language(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An admin's MAILDESK_LANGUAGE=en does not put English into a Polish user's mail."""
    monkeypatch.setenv("MAILDESK_LANGUAGE", "en")
    desk = make_desk(tmp_path, database_url,
                     desk={"blocked_senders": ["zofia.wisniewska@example.org"]})

    pipeline.process(desk, mail(), "test:1")

    row = models.Outbox.get()
    text = message_from_bytes(bytes(row.raw), policy=default_policy).get_body(
        ("plain",)).get_content()
    assert "Powód: adres nadawcy jest zablokowany" in text

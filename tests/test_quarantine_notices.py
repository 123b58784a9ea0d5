"""The admins get at most ``NOTICES_PER_HOUR`` quarantine notices per clock hour.

Mail without a sender is quarantined, so a few of them fill an hour. Runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest
from deskfactory import ADMIN_ADDRESS, clear_of_hour_end, mail, make_desk

from maildesk import models, pipeline
from maildesk.desk import Desk
from maildesk.models import utcnow
from maildesk.quarantine import NOTICES_PER_HOUR


def without_sender(number: int) -> bytes:
    return (f"Message-ID: <q{number}@example.net>\nTo: helpdesk@example.com\n"
            f"Subject: s{number}\n\nno sender {number}\n").encode()


def notice_texts() -> list[str]:
    rows = models.Outbox.select().where(models.Outbox.kind == "quarantine").order_by(
        models.Outbox.id)
    texts = []
    for row in rows:
        message = message_from_bytes(bytes(row.raw), policy=default_policy)
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        assert body is not None
        texts.append(body.get_content())
    return texts


def english_desk(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Desk:
    monkeypatch.setenv("MAILDESK_LANGUAGE", "en")
    clear_of_hour_end()
    return make_desk(tmp_path, database_url, language="en")


def test_quarantine_notices_stop_at_hourly_limit(tmp_path: Path, database_url: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    desk = english_desk(tmp_path, database_url, monkeypatch)

    with caplog.at_level(logging.WARNING, logger="maildesk.quarantine"):
        outcomes = [pipeline.process(desk, without_sender(number), f"test:{number}")
                    for number in range(NOTICES_PER_HOUR + 3)]

    assert {outcome.action for outcome in outcomes} == {"quarantined"}
    assert models.Quarantine.select().count() == NOTICES_PER_HOUR + 3
    texts = notice_texts()
    assert len(texts) == NOTICES_PER_HOUR
    assert "This is the last quarantine notice until" in texts[-1]
    assert "last quarantine notice" not in texts[-2]
    stops = [record for record in caplog.records
             if f"hourly limit of {NOTICES_PER_HOUR} quarantine notices" in record.getMessage()]
    assert len(stops) == 1


@pytest.mark.parametrize(("earlier", "summary"), [
    (NOTICES_PER_HOUR + 4, "4 more messages went to quarantine without a notice"),
    (NOTICES_PER_HOUR, None),
], ids=["over", "at-limit"])
def test_quarantine_notice_reports_unnoticed_hour(tmp_path: Path, database_url: str,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  earlier: int, summary: str | None) -> None:
    desk = english_desk(tmp_path, database_url, monkeypatch)
    start = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    for number in range(earlier):
        models.Quarantine.create(raw_sha256=f"{number:064x}", source="test", error="x",
                                 created_at=start + timedelta(seconds=number))

    for number in range(2):
        pipeline.process(desk, without_sender(number), f"test:{number}")

    first, second = notice_texts()
    if summary is None:
        assert "without a notice" not in first
    else:
        assert summary in first
    assert "without a notice" not in second


def test_admin_reply_to_quarantine_notice_opens_no_ticket(tmp_path: Path,
                                                           database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    pipeline.process(desk, without_sender(1), "test:1")
    notice = models.Outbox.get(models.Outbox.kind == "quarantine")

    outcome = pipeline.process(desk, mail(
        sender=ADMIN_ADDRESS, subject="Re: " + notice.subject, body="Sprawdzę to.\n",
        message_id="<admin-reply@example.com>",
        headers={"In-Reply-To": notice.message_id}), "test:admin")

    assert outcome.action == "ignore"
    assert models.Ticket.select().count() == 0

"""Every real-world mail of the shared corpora through one IMAP pass of the daemon.

Each mail must end as exactly one of: a new ticket, a follow-up, an ignored automatic
mail (with the reason recorded), a quarantined mail (with its error) or a duplicate of
a mail with the same Message-ID earlier in the corpus. The SMTP sink may receive only
acknowledgements and quarantine notices.
"""

from __future__ import annotations

import json
import mailbox
import re
from collections import Counter
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
from deskfactory import ADMIN_ADDRESS
from imapdesk import imap_desk

from maildesk import models, pipeline
from maildesk.errors import ParseError
from maildesk.parse import parse_message
from maildesk.wiring import build_daemon

pytestmark = pytest.mark.servers

# Sets whose files are whole RFC 5322 mails (the others hold message bodies only).
MAIL_GLOBS = (
    "cpython-test-email/msg_*.txt",
    "django-helpdesk/*.eml",
    "flanker/**/*.eml",
    "mailman3/*.eml",
    "request-tracker/**/*",
    "spamscope-mail-parser/mail_*",
    "talon/standard_replies/*.eml",
    "talon/*.eml",
    "zammad/*.box",
)


def corpus_mails(shared_dir: Path) -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    corpus = shared_dir / "corpus"
    for pattern in MAIL_GLOBS:
        for path in sorted(corpus.glob(pattern)):
            if path.is_file() and path.name != "SOURCE.md":
                found.append((str(path.relative_to(corpus)), path.read_bytes()))
    for key, message in mailbox.mbox(str(corpus / "cpython-test-email/mailbox_01.mbox")).items():
        found.append((f"mailbox_01.mbox#{key}", message.as_bytes()))
    for path in sorted((shared_dir / "cases").glob("*.eml")):
        found.append((f"cases/{path.name}", path.read_bytes()))
    return found


def expected_duplicates(mails: list[tuple[str, bytes]]) -> int:
    """Count the mails that repeat an earlier one's dedupe key (sender and Message-ID)
    and its content. Test corpora reuse Message-IDs for different mails, which count.

    Lines end in CRLF as the IMAP server hands the mails back: two corpus files that
    differ only in their line ends are one mail to the desk.
    """
    keys: Counter[tuple[str, tuple[object, ...]]] = Counter()
    for _name, raw in mails:
        try:
            parsed = parse_message(re.sub(rb"\r?\n", b"\r\n", raw))
        except ParseError:
            continue
        if parsed.message_id:
            keys[pipeline.dedupe_key(parsed, ""), pipeline.content_fingerprint(parsed)] += 1
    return sum(count - 1 for count in keys.values())


def test_corpus_pass_accounts_for_every_mail(tmp_path: Path, database_url: str, shared_dir,
                                             imap_account, smtp, monkeypatch) -> None:
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch, batch_size=100)
    mails = corpus_mails(shared_dir)
    with imap_account.client() as imap:
        for _name, raw in mails:
            imap.append("INBOX", raw)

    daemon = build_daemon(desk)
    daemon.run(once=True)

    outcomes = daemon.outcomes
    assert sum(outcomes.values()) == len(mails)
    assert set(outcomes) <= {"create", "append", "ignore", "quarantined", "duplicate"}
    assert outcomes["duplicate"] == expected_duplicates(mails)
    assert imap_account.messages("INBOX") == {}
    moved = len(imap_account.messages("Processed")) + len(imap_account.messages("Quarantine"))
    assert moved == len(mails)

    assert models.Ticket.select().count() == outcomes["create"]
    created_events = models.Event.select().where(models.Event.action == "created").count()
    assert created_events == outcomes["create"]
    ignored = list(models.Event.select().where(models.Event.action == "ignored"))
    assert len(ignored) == outcomes["ignore"]
    assert all(json.loads(event.detail)["reason"] for event in ignored)
    held = list(models.Quarantine.select())
    assert len(held) == outcomes["quarantined"]
    assert all(row.error for row in held)

    acknowledged = {row.message_id for row in models.Outbox.select().where(
        models.Outbox.kind == "ack", models.Outbox.state == "sent")}
    for delivery in smtp.deliveries:
        if delivery.rcpt_tos == (ADMIN_ADDRESS,):
            assert delivery.message["Subject"].startswith("[maildesk]")
            continue
        assert delivery.message["Message-ID"] in acknowledged
        assert delivery.message["Auto-Submitted"] == "auto-replied"
    assert len([d for d in smtp.deliveries if d.rcpt_tos != (ADMIN_ADDRESS,)]) == len(
        acknowledged)


def test_corpus_automatic_mail_gets_no_acknowledgement(tmp_path: Path, database_url: str,
                                                       shared_dir, monkeypatch) -> None:
    from deskfactory import make_desk

    desk = make_desk(tmp_path, database_url)
    automatic = [path for path in sorted((shared_dir / "corpus/flanker/bounce").glob("*.eml"))]
    automatic.append(shared_dir / "corpus/request-tracker/multipart-report")
    automatic += [shared_dir / "cases" / name for name in (
        "013-out-of-office-auto-replied.eml", "015-mailing-list-precedence-list.eml")]

    outcomes = [pipeline.process(desk, path.read_bytes(), str(path)) for path in automatic]

    assert models.Outbox.select().where(models.Outbox.kind == "ack").count() == 0
    assert all(outcome.action in ("ignore", "quarantined") for outcome in outcomes), [
        (path.name, outcome.action) for path, outcome in zip(automatic, outcomes, strict=True)]
    for row in models.Outbox.select():
        parsed = message_from_bytes(bytes(row.raw), policy=default_policy)
        assert parsed["To"] == ADMIN_ADDRESS

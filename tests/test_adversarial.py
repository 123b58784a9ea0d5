"""Hostile mail through the whole pipeline: injection, impersonation, loops, odd shapes.

Each test feeds ``pipeline.process`` a mail an attacker or a broken program could send
and checks that nothing escapes ``process``, nobody posts into another person's ticket,
no header or template is injected and no loop starts. Nothing here measures time: the
inputs are sized to stay fast, and the slow shapes are reported, not asserted.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest
from deskfactory import mail, make_desk
from imapdesk import imap_desk

from maildesk import models, pipeline
from maildesk.desk import Desk
from maildesk.errors import SourceError, TemporaryError
from maildesk.outbox import Sender
from maildesk.wiring import build_daemon

REQUESTER = "Zofia Wiśniewska <zofia.wisniewska@example.org>"
STRANGER = "Jan Obcy <jan.obcy@example.net>"
MAREK = "Marek Zieliński <marek.zielinski@example.com>"
PASS = ("mx.example.com; dkim=pass header.d=example.com header.s=sel1; "
        "dmarc=pass header.from=example.com")
COMMANDS = {"trusted_authserv_ids": ["mx.example.com"]}


# --------------------------------------------------------------------------- helpers


def sqlite_desk(tmp_path: Path, **overrides: object) -> Desk:
    """A desk on SQLite only, for the checks that do not depend on the database engine."""
    return make_desk(tmp_path, f"sqlite:///{tmp_path / 'maildesk.sqlite3'}", **overrides)


def outbox(kind: str | None = None) -> list[models.Outbox]:
    query = models.Outbox.select().order_by(models.Outbox.id)
    if kind:
        query = query.where(models.Outbox.kind == kind)
    return list(query)


def parsed(row: models.Outbox) -> EmailMessage:
    message = message_from_bytes(bytes(row.raw), policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def header_lines(row: models.Outbox) -> list[bytes]:
    """The unfolded header field names of an outgoing mail, lower case."""
    head = bytes(row.raw).split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")
            if line and line[:1] not in (b" ", b"\t")]


def with_from(raw: bytes, value: bytes) -> bytes:
    """Replace the From line of a ``deskfactory.mail`` with raw header bytes."""
    head, separator, body = raw.partition(b"\n\n")
    lines = [line for line in head.split(b"\n") if not line.startswith(b"From:")]
    return b"\n".join([b"From: " + value, *lines]) + separator + body


def with_subject(raw: bytes, value: bytes) -> bytes:
    head, separator, body = raw.partition(b"\n\n")
    lines = [line for line in head.split(b"\n") if not line.startswith(b"Subject:")]
    return b"\n".join([b"Subject: " + value, *lines]) + separator + body


def open_ticket(desk: Desk) -> tuple[models.Ticket, str]:
    outcome = pipeline.process(desk, mail(sender=REQUESTER), "test:user")
    ticket = models.Ticket.get_by_id(outcome.ticket)
    return ticket, outbox("ack")[0].message_id


def events(action: str) -> list[models.Event]:
    return list(models.Event.select().where(models.Event.action == action))


# --------------------------------------------------------------------------- header injection


@pytest.mark.parametrize("encoded", [
    b"=?utf-8?q?Hi=0D=0ABcc:_victim@example.net?=",
    b"=?utf-8?b?" + base64.b64encode(b"X\r\nX-Injected: 1\r\n\r\nbody") + b"?=",
    "A\u2028X-Injected: 2".encode(),
    b"=?utf-8?q?A=C2=85X-Injected:_3?=",
    b"=?utf-8?q?A=E2=80=A8X-Injected:_4?=",
], ids=["qp-crlf", "b64-crlf", "raw-u2028", "qp-nel", "qp-u2028"])
def test_subject_line_breaks_inject_no_header(tmp_path: Path, encoded: bytes) -> None:
    desk = sqlite_desk(tmp_path)

    outcome = pipeline.process(desk, with_subject(mail(), encoded), "test:1")

    assert outcome.action == "create"
    [ack] = outbox("ack")
    names = header_lines(ack)
    assert b"bcc" not in names
    assert b"x-injected" not in names
    assert "\n" not in str(parsed(ack)["Subject"])


@pytest.mark.parametrize("display", [
    b"=?utf-8?q?Hi=0D=0ABcc:_victim@example.net?=",
    b'"Evil\\"\r\n Bcc: victim@example.net" ',
    b"=?utf-8?q?a=22_<victim@example.net>,_=22b?=",
    b"=?utf-8?b?" + base64.b64encode(b"Zofia <victim@example.net>, ") + b"?=",
], ids=["qp-crlf", "quoted-fold", "quote-break", "b64-address"])
def test_display_name_adds_no_recipient(tmp_path: Path, display: bytes) -> None:
    desk = sqlite_desk(tmp_path)
    raw = with_from(mail(), display + b" <zofia@example.org>")

    pipeline.process(desk, raw, "test:1")

    [ack] = outbox("ack")
    assert ack.recipients.split() == ["zofia@example.org"]
    assert [a.addr_spec for a in parsed(ack)["To"].addresses] == ["zofia@example.org"]
    assert b"bcc" not in header_lines(ack)


# --------------------------------------------------------------------------- template injection


def test_template_syntax_in_subject_stays_literal(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path)
    subject = "{{ 7*7 }} {% for x in range(3) %}x{% endfor %} {{ desk.__class__ }}"

    pipeline.process(desk, mail(subject=subject, body="{{ config }}\n{% raw %}\n"), "test:1")

    text = str(parsed(outbox("ack")[0])["Subject"])
    assert subject in text
    assert "49" not in text


# --------------------------------------------------------------------------- HTML


def test_html_script_and_handlers_removed(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path)
    message = EmailMessage()
    message["From"] = REQUESTER
    message["To"] = "helpdesk@example.com"
    message["Subject"] = "HTML"
    message["Message-ID"] = "<html1@example.org>"
    message.set_content(
        '<p onclick="steal()">Hej<script>alert(1)</script>'
        '<a href="javascript:alert(2)">link</a><img src="http://tracker.example.net/p.gif">'
        '<iframe src="https://example.net"></iframe><svg onload="alert(3)"></svg></p>',
        subtype="html")

    outcome = pipeline.process(desk, message.as_bytes(), "test:1")

    entry = models.Message.get(models.Message.ticket == outcome.ticket)
    html = (entry.html or "").lower()
    assert "<script" not in html
    assert "onclick" not in html
    assert "javascript:" not in html
    assert "tracker.example.net" not in html
    assert "<iframe" not in html
    assert "onload" not in html


def test_acknowledgement_html_escapes_user_text(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path)
    subject = ('<script>alert(1)</script> "><img src=x onerror=alert(2)> '
               'http://evil.example/"onmouseover="alert(3) https://a.example/?q=<svg/onload=x>')

    pipeline.process(desk, mail(sender='"<b onclick=x()>Zofia</b>" <z@example.org>',
                                subject=subject), "test:1")

    html = parsed(outbox("ack")[0]).get_body(("html",)).get_content()
    assert "<script" not in html
    assert "<img" not in html
    assert "<svg" not in html
    assert "<b " not in html
    assert 'onmouseover="' not in html
    assert '"onmouseover' not in html


# --------------------------------------------------------------------------- file names


@pytest.mark.parametrize("name", [
    "../../../../etc/passwd", "..\\..\\windows\\system32\\x.dll", "/etc/shadow", "CON",
    "faktura\u202efdp.exe", "a\x00b.txt", "..", "nul.txt", "x" * 600 + ".pdf",
])
def test_attachment_name_stays_one_component(tmp_path: Path, name: str) -> None:
    desk = sqlite_desk(tmp_path)
    message = EmailMessage()
    message["From"] = REQUESTER
    message["To"] = "helpdesk@example.com"
    message["Subject"] = "Załącznik"
    message["Message-ID"] = "<file1@example.org>"
    message.set_content("w załączniku")
    message.add_attachment(b"data", maintype="application", subtype="octet-stream",
                           filename=name)

    pipeline.process(desk, message.as_bytes(), "test:1")

    [attachment] = list(models.Attachment.select())
    assert "/" not in attachment.filename
    assert "\\" not in attachment.filename
    assert "\x00" not in attachment.filename
    assert "\u202e" not in attachment.filename
    assert attachment.filename not in ("", ".", "..")
    assert len(attachment.filename.encode()) <= 255
    stored = [path for path in (tmp_path / "storage").rglob("*") if path.is_file()]
    assert all(path.resolve().is_relative_to((tmp_path / "storage").resolve())
               for path in stored)


# --------------------------------------------------------------------------- strangers


def test_stranger_copied_reference_not_threaded(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    raw = mail(sender=STRANGER, subject=f"Re: [#{ticket.id}] Drukarka nie drukuje",
               message_id="<s1@example.net>",
               headers={"In-Reply-To": ack, "References": f"<m1@example.org> {ack}"})
    outcome = pipeline.process(desk, raw, "test:stranger")

    assert outcome.ticket != ticket.id
    assert models.Message.select().where(models.Message.ticket == ticket).count() == 1
    assert events("thread_link_rejected")


def test_stranger_reply_to_header_gains_nothing(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    raw = mail(sender=STRANGER, subject=f"Re: [#{ticket.id}] Drukarka nie drukuje",
               message_id="<s2@example.net>",
               headers={"In-Reply-To": ack, "Reply-To": REQUESTER, "Sender": REQUESTER})
    outcome = pipeline.process(desk, raw, "test:stranger")

    assert outcome.ticket != ticket.id
    assert models.Ticket.get_by_id(outcome.ticket).requester.address == "jan.obcy@example.net"


def test_stranger_held_mail_gives_no_evidence(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path, commands={"stranger_tag": "hold"})
    ticket, _ack = open_ticket(desk)
    tagged = mail(sender=STRANGER, subject=f"Re: [#{ticket.id}] Drukarka",
                  message_id="<held1@example.net>")

    held = pipeline.process(desk, tagged, "test:held")
    follow = mail(sender=STRANGER, subject="Re: Drukarka", message_id="<held2@example.net>",
                  headers={"In-Reply-To": "<held1@example.net>"})
    second = pipeline.process(desk, follow, "test:follow")

    assert held.ticket == ticket.id
    assert models.Message.get(models.Message.message_id == "<held1@example.net>").kind == "held"
    assert second.ticket != ticket.id
    assert outbox("reply") == []


def test_requester_uppercase_address_threads(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path)
    ticket, ack = open_ticket(desk)

    raw = mail(sender="ZOFIA.WISNIEWSKA@EXAMPLE.ORG", subject="Re: Drukarka",
               message_id="<up1@example.org>", headers={"In-Reply-To": ack})
    outcome = pipeline.process(desk, raw, "test:upper")

    assert outcome.action == "append"
    assert outcome.ticket == ticket.id


def test_lookalike_agent_address_is_no_agent(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path, commands={**COMMANDS, "authentication": "address_only"})
    ticket, ack = open_ticket(desk)

    # The "а" in the domain is Cyrillic.
    raw = mail(sender="Marek <marek.zielinski@exаmple.com>", subject="Re: Drukarka",
               body="#status rozwiązane\n", message_id="<look1@example.net>",
               headers={"In-Reply-To": ack})
    outcome = pipeline.process(desk, raw, "test:lookalike")

    assert outcome.ticket != ticket.id
    assert models.Ticket.get_by_id(ticket.id).status != "resolved"


# --------------------------------------------------------------------------- agent impersonation


def agent_reply(ack: str, *, body: str = "#status rozwiązane\n\nGotowe.\n",
                headers: dict[str, str] | None = None, sender: str = MAREK,
                message_id: str = "<a1@mail.example.com>") -> bytes:
    return mail(sender=sender, subject="Re: Drukarka nie drukuje", body=body,
                message_id=message_id, headers={"In-Reply-To": ack, **(headers or {})})


def test_spoofed_agent_without_results_is_held(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, commands=COMMANDS)
    ticket, ack = open_ticket(desk)

    outcome = pipeline.process(desk, agent_reply(ack), "test:agent")

    assert outcome.ticket == ticket.id
    assert models.Ticket.get_by_id(ticket.id).status != "resolved"
    assert outbox("reply") == []
    assert models.Message.get(models.Message.message_id == "<a1@mail.example.com>").kind == "held"


@pytest.mark.parametrize("results", [
    "mx.evil.example; dkim=pass header.d=example.com; dmarc=pass header.from=example.com",
    "mx.example.com; dkim=pass header.d=evil.example; dmarc=pass header.from=evil.example",
    "mx.example.com; dkim=pass header.d=example.com.evil.example",
    "mx.example.com; dkim=fail header.d=example.com (dkim=pass header.d=example.com)",
    'mx.example.com; dkim=fail reason="x; dkim=pass header.d=example.com"',
    "mx.example.com; spf=pass smtp.mailfrom=example.com",
    # A verifier may copy the DKIM i= tag into a quoted string, with its quotes escaped.
    'mx.example.com; dkim=pass header.d=evil.example '
    'header.i="x\\"; dkim=pass header.d=example.com; y=\\""@evil.example',
], ids=["untrusted-id", "other-domain", "suffix-domain", "pass-in-comment", "pass-in-quote",
        "spf-only", "pass-after-escaped-quote"])
def test_forged_authentication_results_rejected(tmp_path: Path, results: str) -> None:
    desk = sqlite_desk(tmp_path, commands=COMMANDS)
    ticket, ack = open_ticket(desk)

    raw = agent_reply(ack, headers={"Authentication-Results": results})
    pipeline.process(desk, raw, "test:agent")

    assert models.Ticket.get_by_id(ticket.id).status != "resolved"
    assert outbox("reply") == []
    assert events("command_rejected")


@pytest.mark.parametrize("encoded", [
    b"=?us-ascii?q?mx.example.com=3B_dkim=3Dpass_header.d=3Dexample.com?=",
    b"=?utf-8?b?" + base64.b64encode(PASS.encode()) + b"?=",
    b"(comment) =?utf-8?q?mx.example.com?=; dkim=pass header.d=example.com",
], ids=["q-whole", "b-whole", "q-authserv-id"])
def test_encoded_authentication_results_rejected(tmp_path: Path, encoded: bytes) -> None:
    # A receiving server removes a sender's header that carries its authserv-id (RFC
    # 8601 section 5). Written as an encoded word, the header carries none for it.
    desk = sqlite_desk(tmp_path, commands=COMMANDS)
    ticket, ack = open_ticket(desk)

    raw = b"Authentication-Results: " + encoded + b"\n" + agent_reply(ack)
    pipeline.process(desk, raw, "test:agent")

    assert models.Ticket.get_by_id(ticket.id).status != "resolved"
    assert outbox("reply") == []
    assert events("command_rejected")


def test_topmost_trusted_results_header_wins(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path, commands=COMMANDS)
    ticket, ack = open_ticket(desk)
    # The receiving server's verdict is on top; the sender's own "pass" is below it.
    message = EmailMessage()
    message["Authentication-Results"] = "mx.example.com; dkim=fail header.d=example.com"
    for name, value in message_from_bytes(agent_reply(ack)).items():
        message[name] = value
    message["Authentication-Results"] = PASS
    message.set_content("#status rozwiązane\n\nGotowe.\n")

    pipeline.process(desk, message.as_bytes(), "test:agent")

    assert models.Ticket.get_by_id(ticket.id).status != "resolved"
    assert events("command_rejected")


def test_internal_note_not_sent_to_requester(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, commands=COMMANDS)
    ticket, ack = open_ticket(desk)

    raw = agent_reply(ack, body="#note\nKlient ma zaległe faktury, nie eskalować.\n",
                      headers={"Authentication-Results": PASS})
    pipeline.process(desk, raw, "test:note")

    assert outbox("reply") == []
    to_requester = [row for row in outbox() if " zofia.wisniewska@example.org " in
                    row.recipients and row.kind != "ack"]
    assert to_requester == []
    assert all("zaległe" not in bytes(row.raw).decode("utf-8", "replace")
               for row in outbox() if "zofia" in row.recipients)


def test_requester_commands_change_nothing(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path, commands=COMMANDS)
    ticket, ack = open_ticket(desk)

    raw = mail(sender=REQUESTER, subject="Re: Drukarka", message_id="<c1@example.org>",
               body="#status zamknięte\n#priorytet 1\n#przypisz ewa.nowak\n",
               headers={"In-Reply-To": ack, "Authentication-Results": PASS})
    pipeline.process(desk, raw, "test:user")

    reloaded = models.Ticket.get_by_id(ticket.id)
    assert reloaded.status == ticket.status
    assert reloaded.assignee == ticket.assignee
    assert events("command_like_text_ignored")


# --------------------------------------------------------------------------- loops


def test_autoresponder_quoting_ack_is_stopped(tmp_path: Path) -> None:
    """A responder without Auto-Submitted that strips the tag but quotes our acknowledgement."""
    desk = sqlite_desk(tmp_path)
    subject, body = "Pytanie", "Pytanie o fakturę.\n"

    outcomes = []
    for number in range(6):
        raw = mail(sender="Bot <bot@partner.example>", subject=subject, body=body,
                   message_id=f"<bot{number}@partner.example>")
        outcome = pipeline.process(desk, raw, f"test:{number}")
        outcomes.append(outcome)
        if not outcome.queued:
            break
        answer = parsed(models.Outbox.get_by_id(outcome.queued[-1].outbox_id))
        subject = "Odp: " + str(answer["Subject"]).split("] ", 1)[-1]
        body = "Dziękujemy.\n\n> " + str(answer.get_body(("plain",)).get_content())

    assert models.Ticket.select().count() <= 3
    assert outcomes[-1].queued == ()
    assert events("mail_loop_suspected")


def test_two_desks_do_not_answer_each_other(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path)
    # What another maildesk's acknowledgement looks like when it reaches this desk.
    other_ack = mail(sender="Pomoc <pomoc@partner.example>",
                     subject="[#9] Przyjęliśmy zgłoszenie: Drukarka",
                     message_id="<ack.9.1234@partner.example>",
                     headers={"Auto-Submitted": "auto-replied",
                              "X-Auto-Response-Suppress": "All"})

    outcome = pipeline.process(desk, other_ack, "test:desk")

    assert outcome.action == "ignore"
    assert outbox() == []


# --------------------------------------------------------------------------- odd shapes


def test_nested_forwards_processed(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path)
    inner = b"From: a@example.org\nSubject: x\n\nhi\n"
    for _level in range(300):
        inner = b"From: a@example.org\nSubject: x\nContent-Type: message/rfc822\n\n" + inner
    raw = b"Message-ID: <nested@example.org>\nTo: helpdesk@example.com\n" + inner

    outcome = pipeline.process(desk, raw, "test:nested")

    assert outcome.action == "create"


def test_deep_multipart_quarantined_once(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path)
    body = b"Content-Type: text/plain\n\nhi\n"
    for level in range(1000):
        boundary = f"b{level}".encode()
        body = (b"Content-Type: multipart/mixed; boundary=" + boundary + b"\n\n--" + boundary
                + b"\n" + body + b"\n--" + boundary + b"--\n")
    raw = (b"From: a@example.org\nTo: helpdesk@example.com\nSubject: x\n"
           b"Message-ID: <deep@example.org>\n" + body)

    first = pipeline.process(desk, raw, "test:deep")
    second = pipeline.process(desk, raw, "test:deep")

    assert first.action in ("create", "quarantined")
    assert second.action == "duplicate"
    assert models.Quarantine.select().count() <= 1


def test_many_parts_processed(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path)
    message = EmailMessage()
    message["From"] = REQUESTER
    message["To"] = "helpdesk@example.com"
    message["Subject"] = "Dużo plików"
    message["Message-ID"] = "<parts@example.org>"
    message.set_content("pliki")
    for _copy in range(150):
        message.add_attachment(b"same", maintype="application", subtype="octet-stream",
                               filename="plik.bin")

    outcome = pipeline.process(desk, message.as_bytes(), "test:parts")

    names = [row.filename for row in models.Attachment.select()]
    assert outcome.action == "create"
    assert len(names) == len(set(name.casefold() for name in names))


@pytest.mark.parametrize("raw", [
    b"\x00" * 100,
    b"From: \nTo: \n\n",
    b"Subject: =?utf-8?b?////?=\nFrom: =?x-unknown?q?=FF?= <a@example.org>\n\nx",
    b"Content-Type: multipart/mixed; boundary=\"\"\nFrom: a@example.org\n\n--\n--\n",
    b"From: a@example.org\nContent-Transfer-Encoding: base64\n\n====\x80\x81",
    b"From: a@example.org\nDate: Mon, 99 Foo 99999 99:99:99 +9999\n\nx",
    b"From: a@example.org\nContent-Type: text/plain; charset=\"utf-7\"\n\n+ZeVnLIqe-",
    b"From: a@example.org\nContent-Type: message/rfc822\n\n",
    b"From: a@example.org\nContent-Type: application/ms-tnef\n\nx\x9f\x3e\x22\x00",
], ids=["nul", "empty-from", "bad-words", "empty-boundary", "bad-base64", "bad-date",
        "utf-7", "empty-rfc822", "bad-tnef"])
def test_malformed_mail_never_raises(tmp_path: Path, raw: bytes) -> None:
    desk = sqlite_desk(tmp_path)

    outcome = pipeline.process(desk, raw, "test:odd")
    again = pipeline.process(desk, raw, "test:odd")

    assert outcome.action in ("create", "ignore", "quarantined")
    assert again.action == "duplicate"


def test_same_mail_from_two_sources_once(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = mail()

    first = pipeline.process(desk, raw, "imap:INBOX/1")
    second = pipeline.process(desk, raw + b"\n", "maildir:new/1")

    assert first.action == "create"
    assert second.action == "duplicate"
    assert models.Ticket.select().count() == 1


# --------------------------------------------------------------------------- failures


def test_unwritable_raw_store_is_temporary(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path)
    desk.store.inline_limit = 0  # files, as for content past the limit
    (tmp_path / "storage").mkdir(exist_ok=True)
    (tmp_path / "storage" / "raw").write_text("a file where the folder should be")

    with pytest.raises(TemporaryError):
        pipeline.process(desk, mail(), "test:1")

    assert models.ProcessedMessage.select().count() == 0


def test_unreachable_database_is_temporary(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path)
    models.database_proxy.obj.close()
    # A folder where the database file was: the next connection cannot open it.
    (tmp_path / "maildesk.sqlite3").rename(tmp_path / "moved.sqlite3")
    (tmp_path / "maildesk.sqlite3").mkdir()

    with pytest.raises(TemporaryError):
        pipeline.process(desk, mail(message_id="<down@example.org>"), "test:1")


def test_quarantine_notice_escapes_nothing(tmp_path: Path) -> None:
    desk = sqlite_desk(tmp_path)
    raw = (b"Subject: {{ 7*7 }} =?utf-8?q?=0D=0ABcc:_x@example.net?=\n"
           b"Message-ID: <q1@example.org>\nTo: helpdesk@example.com\n\nno sender\n")

    outcome = pipeline.process(desk, raw, "test:quarantine")

    assert outcome.action == "quarantined"
    [notice] = outbox("quarantine")
    assert b"bcc" not in header_lines(notice)
    assert notice.recipients.split() == ["admin@example.com"]
    detail = json.dumps([row.detail for row in models.Quarantine.select()])
    assert "MissingSenderError" in detail


def test_nul_in_quarantined_headers_stored(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = (b"Message-ID: <nul1@example.org>\nFrom: a\x00b\nSubject: s\x00s\n"
           b"To: helpdesk@example.com\n\nno usable sender\n")

    outcome = pipeline.process(desk, raw, "test:nul")

    assert outcome.action == "quarantined"
    [row] = list(models.Quarantine.select())
    assert row.subject == "ss"
    assert "\x00" not in row.sender


def test_nested_comments_in_cc_create_ticket(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = mail(message_id="<deep@example.net>", headers={"Cc": "jan@example.org"})
    raw = raw.replace(b"Cc: jan@example.org", b"Cc: jan@example.org, " + b"(" * 1000, 1)

    outcome = pipeline.process(desk, raw, "test:deep")

    assert outcome.action == "create"
    assert models.Quarantine.select().count() == 0
    participants = [row.contact.address for row in models.Participant.select()]
    assert participants == ["jan@example.org"]
    [entry] = list(models.Message.select())
    assert "(" * 1000 in entry.headers


def test_nul_in_message_ids_processed(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = (b"From: a@example.org\nMessage-ID: <nul\x002@example.org>\n"
           b"In-Reply-To: <r\x00@example.org>\nSubject: s\nTo: helpdesk@example.com\n\nhi\n")

    outcome = pipeline.process(desk, raw, "test:nul")

    assert outcome.action == "create"
    assert models.Message.get().message_id == "<nul2@example.org>"


@pytest.mark.parametrize("date", ["Fri, 31 Dec 9999 23:59:59 -1400",
                                  "Mon, 01 Jan 0001 00:00:00 +1400"])
def test_date_outside_utc_range_processed(tmp_path: Path, database_url: str,
                                          date: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = mail().replace(b"Date: Fri, 04 Dec 2026 09:00:00 +0100", b"Date: " + date.encode())

    outcome = pipeline.process(desk, raw, "test:date")

    assert outcome.action == "create"


# --------------------------------------------------------------------------- servers


class GarbageSmtpServer:
    """A TCP server on 127.0.0.1 that greets every client with ``greeting`` and hangs up."""

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _address = self.listener.accept()
            except OSError:
                continue
            with connection:
                connection.sendall(self.greeting)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.mark.parametrize("greeting", [
    b"\x00\xff not smtp\r\n", b"hello there\r\n", b"220 " + b"x" * 200_000 + b"\r\n",
    b"250-x\r\n" * 20_000,
], ids=["binary", "no-code", "overlong-line", "endless-continuation"])
def test_smtp_garbage_keeps_mail_queued(tmp_path: Path, greeting: bytes) -> None:
    server = GarbageSmtpServer(greeting)
    try:
        desk = sqlite_desk(tmp_path, smtp={"transport": "smtp", "host": "127.0.0.1",
                                           "port": server.port, "timeout": 5})
        pipeline.process(desk, mail(), "test:1")

        sent = Sender(desk.config.smtp).deliver_due()
    finally:
        server.close()

    [row] = outbox()
    assert sent == 0
    assert row.state == "pending"
    assert row.last_error


def test_imap_processed_folder_deleted_midway(tmp_path: Path, imap_account, smtp,
                                              monkeypatch) -> None:
    database_url = f"sqlite:///{tmp_path / 'maildesk.sqlite3'}"
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    imap_account.append(mail(message_id="<f1@example.org>"))
    daemon = build_daemon(desk)
    daemon.drain()
    with imap_account.client() as client:
        client.delete_folder("Processed")
    imap_account.append(mail(message_id="<f2@example.org>", subject="Drugie"))

    # The move into the missing folder fails once; the next connection creates it again
    # and the mail, already processed, is only moved.
    failures = 0
    for _attempt in range(4):
        try:
            daemon.drain()
        except SourceError:
            failures += 1
    daemon.source.close()

    assert failures == 1
    assert models.Ticket.select().count() == 2
    assert imap_account.messages("INBOX") == {}
    assert len(imap_account.messages("Processed")) == 1


@pytest.mark.parametrize(("sender", "envelope"), [
    ("<jan@wiśnia.example>", "jan@xn--winia-vcb.example"),
    ('<"j"."an"@example.net>', "j.an@example.net"),
], ids=["idn-domain", "quoted-words"])
def test_imap_sender_address_stops_no_daemon(tmp_path: Path, imap_account, smtp, monkeypatch,
                                             sender: str, envelope: str) -> None:
    # Both addresses once made aiosmtplib raise in the middle of the outbox, which ended
    # the daemon, and the requeued acknowledgement ended it again after every restart.
    database_url = f"sqlite:///{tmp_path / 'maildesk.sqlite3'}"
    desk = imap_desk(tmp_path, database_url, imap_account, smtp, monkeypatch)
    imap_account.append((f"From: {sender}\r\nTo: helpdesk@example.com\r\nSubject: Drukarka\r\n"
                         "Message-ID: <h1@example.net>\r\nContent-Type: text/plain; "
                         "charset=utf-8\r\n\r\nDrukarka nie drukuje.\r\n").encode())
    imap_account.append(mail(message_id="<h2@example.org>", subject="Drugie"))

    for _run in range(2):
        build_daemon(desk).run(once=True)

    assert models.Ticket.select().count() == 2
    assert imap_account.messages("INBOX") == {}
    assert sorted(d.rcpt_tos for d in smtp.deliveries) == [
        (envelope,), ("zofia.wisniewska@example.org",)]
    assert {row.state for row in models.Outbox.select()} == {"sent"}

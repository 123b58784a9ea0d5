"""The flow of one mail through the pipeline, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

from deskfactory import ADMIN_ADDRESS, mail, make_desk, make_ticket

from maildesk import models, pipeline
from maildesk.outbox import Sender
from maildesk.parse import parse_message


def _outbox() -> list[models.Outbox]:
    return list(models.Outbox.select().order_by(models.Outbox.id))


def _events(action: str) -> list[models.Event]:
    return list(models.Event.select().where(models.Event.action == action))


def test_process_new_mail_creates_ticket_and_acknowledgement(tmp_path: Path,
                                                            database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    outcome = pipeline.process(desk, mail(), "test:1")

    assert outcome.action == "create"
    ticket = models.Ticket.get_by_id(outcome.ticket)
    assert ticket.subject == "Drukarka nie drukuje"
    assert ticket.requester.address == "zofia.wisniewska@example.org"
    assert ticket.requester.name == "Zofia Wiśniewska"
    assert ticket.language == "pl"
    rows = _outbox()
    assert len(rows) == 1
    assert rows[0].kind == "ack"
    assert rows[0].recipients.split() == ["zofia.wisniewska@example.org"]
    acknowledgement = message_from_bytes(bytes(rows[0].raw), policy=default_policy)
    assert acknowledgement["Subject"] == (
        f"[#{ticket.id}] Przyjęliśmy zgłoszenie: Drukarka nie drukuje")
    assert acknowledgement["In-Reply-To"] == "<m1@example.org>"
    assert acknowledgement["Auto-Submitted"] == "auto-replied"
    assert models.MessageReference.select().where(
        models.MessageReference.message_id == rows[0].message_id).exists()


def test_process_stores_raw_bytes_before_parsing(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = mail()

    outcome = pipeline.process(desk, raw, "test:1")

    entry = models.Message.get(models.Message.ticket == outcome.ticket)
    assert desk.store.get_message(entry.raw_sha256) == raw


def test_process_same_mail_twice_is_one_ticket(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    first = pipeline.process(desk, mail(), "test:1")
    second = pipeline.process(desk, mail(), "test:2")

    assert first.action == "create"
    assert second.action == "duplicate"
    assert models.Ticket.select().count() == 1
    assert len(_outbox()) == 1


def test_process_copy_with_other_transport_headers_is_duplicate(tmp_path: Path,
                                                               database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = mail()

    pipeline.process(desk, raw, "test:1")
    copy = pipeline.process(desk, b"Received: from relay2.example.org\r\n" + raw, "test:2")

    assert copy.action == "duplicate"
    assert models.Ticket.select().count() == 1


def test_process_other_mail_reusing_message_id_is_kept(tmp_path: Path,
                                                      database_url: str) -> None:
    """A scanner that numbers every mail <1@scanner> must not lose the second one."""
    desk = make_desk(tmp_path, database_url)
    sender = "Skaner <skaner@example.org>"

    first = pipeline.process(desk, mail(sender=sender, subject="Skan 1", body="Strona 1",
                                        message_id="<1@scanner>"), "test:1")
    second = pipeline.process(desk, mail(sender=sender, subject="Skan 2", body="Strona 2",
                                         message_id="<1@scanner>"), "test:2")
    again = pipeline.process(desk, mail(sender=sender, subject="Skan 2", body="Strona 2",
                                        message_id="<1@scanner>"), "test:3")
    # The second mail once more, through another relay.
    relayed = b"Received: from relay2.example.org\r\n" + mail(
        sender=sender, subject="Skan 2", body="Strona 2", message_id="<1@scanner>")
    copy = pipeline.process(desk, relayed, "test:4")

    assert first.action == "create"
    assert second.action == "create"
    assert second.ticket != first.ticket
    assert again.action == "duplicate"
    assert copy.action == "duplicate"
    assert models.Ticket.select().count() == 2


def test_process_without_message_id_dedupes_by_hash(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = mail(message_id=None)

    pipeline.process(desk, raw, "test:1")
    again = pipeline.process(desk, raw, "test:1")

    assert again.action == "duplicate"
    assert models.ProcessedMessage.select().where(
        models.ProcessedMessage.dedupe_key.startswith("sha256:")).count() == 1


def test_reply_to_acknowledgement_threads_by_in_reply_to(tmp_path: Path,
                                                         database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    created = pipeline.process(desk, mail(), "test:1")
    ack_id = _outbox()[0].message_id

    reply = mail(subject="pytanie o drukarkę zastępczą", message_id="<m2@example.org>",
                 body="Czy mogę drukować w pokoju 215?", headers={"In-Reply-To": ack_id})
    outcome = pipeline.process(desk, reply, "test:2")

    assert outcome.action == "append"
    assert outcome.ticket == created.ticket
    assert models.Ticket.select().count() == 1
    assert models.Message.select().where(models.Message.ticket == created.ticket).count() == 2
    assert len(_outbox()) == 1


def test_reply_by_subject_tag_threads_for_requester(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    make_ticket(20451, "Drukarka", "zofia.wisniewska@example.org")

    reply = mail(subject="ODP: [#20451] Przyjęliśmy zgłoszenie: Drukarka",
                 message_id="<m3@example.org>")
    outcome = pipeline.process(desk, reply, "test:1")

    assert outcome.action == "append"
    assert outcome.ticket == 20451


def test_oversized_subject_tag_opens_ticket(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    outcome = pipeline.process(desk, mail(subject="Re: [#999999999999] Drukarka"), "test:1")

    assert outcome.action == "create"


def test_subject_tag_from_stranger_opens_new_ticket(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    make_ticket(20451, "Drukarka", "zofia.wisniewska@example.org")

    stranger = mail(sender="Obcy <obcy@elsewhere.example>", subject="Re: [#20451] Drukarka",
                    message_id="<m4@elsewhere.example>")
    outcome = pipeline.process(desk, stranger, "test:1")

    assert outcome.action == "create"
    assert outcome.ticket != 20451
    new_ticket = models.Ticket.get_by_id(outcome.ticket)
    assert "[#20451]" not in new_ticket.subject
    rejected = _events("thread_link_rejected")
    assert [event.ticket_id for event in rejected] == [20451]


def test_forged_reference_from_stranger_does_not_thread(tmp_path: Path,
                                                        database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    make_ticket(20503, "VPN", "pawel.wojcik@example.org", status="pending",
                sent_ids=("<reply.20503.1@maildesk.example.com>",))

    forged = mail(sender="it-security@secure-mail.example.net", subject="Re: VPN",
                  message_id="<f1@secure-mail.example.net>",
                  headers={"In-Reply-To": "<reply.20503.1@maildesk.example.com>"})
    outcome = pipeline.process(desk, forged, "test:1")

    assert outcome.action == "create"
    assert models.Message.select().where(models.Message.ticket == 20503).count() == 0
    assert models.Ticket.get_by_id(20503).status == "pending"
    detail = json.loads(_events("thread_link_rejected")[0].detail)
    assert detail["reason"] == (
        "thread reference to <reply.20503.1@maildesk.example.com> ignored: sender "
        "it-security@secure-mail.example.net was not a recipient of it and is not a "
        "participant of 20503")
    assert all("pawel.wojcik" not in row.recipients for row in _outbox())


def test_auto_reply_on_ticket_is_recorded_without_answer(tmp_path: Path,
                                                         database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    make_ticket(20451, "Drukarka", "zofia.wisniewska@example.org", status="assigned",
                sent_ids=("<ack.20451@maildesk.example.com>",))

    out_of_office = mail(subject="Automatyczna odpowiedź: [#20451] Drukarka",
                         message_id="<oof@example.org>",
                         headers={"Auto-Submitted": "auto-replied",
                                  "In-Reply-To": "<ack.20451@maildesk.example.com>"})
    outcome = pipeline.process(desk, out_of_office, "test:1")

    assert outcome.action == "append"
    entry = models.Message.get(models.Message.ticket == 20451)
    assert entry.kind == "auto_reply"
    assert models.Ticket.get_by_id(20451).status == "assigned"
    assert _outbox() == []


def test_auto_reply_without_ticket_is_ignored(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    outcome = pipeline.process(desk, mail(headers={"Auto-Submitted": "auto-generated"}), "t")

    assert outcome.action == "ignore"
    assert models.Ticket.select().count() == 0
    assert _outbox() == []
    assert _events("ignored")


def test_mailing_list_post_gets_no_acknowledgement(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    list_post = mail(headers={"List-Id": "Administratorzy <admini.lists.example.org>",
                              "Precedence": "list"})
    outcome = pipeline.process(desk, list_post, "test:1")

    assert outcome.action == "ignore"
    assert _outbox() == []


def test_bounce_to_our_mail_gets_no_answer(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    bounce = mail(sender="MAILER-DAEMON@mx.example.org", subject="Undelivered Mail",
                  headers={"Return-Path": "<>"})
    outcome = pipeline.process(desk, bounce, "test:1")

    assert outcome.action == "ignore"
    assert _outbox() == []


def test_mail_from_own_address_is_ignored(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    own = mail(sender="Helpdesk IT <helpdesk@example.com>")
    outcome = pipeline.process(desk, own, "test:1")

    assert outcome.action == "ignore"
    assert "own address" in outcome.reason
    assert models.Ticket.select().count() == 0


def test_reply_to_closed_ticket_opens_linked_ticket(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    make_ticket(20510, "Monitor migocze", "jan.kwiatkowski@example.org", status="closed",
                sent_ids=("<status.20510.3@maildesk.example.com>",))

    reply = mail(sender="jan.kwiatkowski@example.org",
                 subject="Re: [#20510] Zgłoszenie rozwiązane: Monitor migocze",
                 message_id="<m5@example.org>",
                 body="monitor znowu migocze, tym razem także drugi ekran",
                 headers={"In-Reply-To": "<status.20510.3@maildesk.example.com>"})
    outcome = pipeline.process(desk, reply, "test:1")

    assert outcome.action == "create"
    new_ticket = models.Ticket.get_by_id(outcome.ticket)
    assert new_ticket.linked_ticket_id == 20510
    assert "[#20510]" not in new_ticket.subject
    assert not new_ticket.subject.lower().startswith("re:")
    assert models.Ticket.get_by_id(20510).status == "closed"
    assert models.Message.select().where(models.Message.ticket == 20510).count() == 0
    acknowledgement = message_from_bytes(bytes(_outbox()[0].raw), policy=default_policy)
    assert acknowledgement["Subject"].startswith(f"[#{new_ticket.id}] ")
    assert "20510" in acknowledgement.get_body(("plain",)).get_content()


def test_linked_ticket_notice_reaches_previous_assignee(tmp_path: Path,
                                                        database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    make_ticket(20510, "Monitor migocze", "jan.kwiatkowski@example.org", status="closed",
                sent_ids=("<status.20510.3@maildesk.example.com>",), assignee="ewa.nowak")

    reply = mail(sender="jan.kwiatkowski@example.org",
                 subject="Re: [#20510] Zgłoszenie rozwiązane: Monitor migocze",
                 message_id="<m5@example.org>", body="monitor znowu migocze",
                 headers={"In-Reply-To": "<status.20510.3@maildesk.example.com>"})
    outcome = pipeline.process(desk, reply, "test:1")

    # Ewa handled the closed ticket; the new one is routed afresh, outside her group.
    notices = [row for row in _outbox() if row.kind == "new_ticket"]
    assert outcome.action == "create"
    assert models.Ticket.get_by_id(outcome.ticket).group != "druga-linia"
    assert any("ewa.nowak@example.com" in row.recipients.split() for row in notices)
    text = message_from_bytes(bytes(notices[-1].raw), policy=default_policy).get_body(
        ("plain",)).get_content()
    assert "kontynuacją zamkniętego zgłoszenia 20510" in " ".join(text.split())


def test_unparseable_mail_is_quarantined_and_reported(tmp_path: Path,
                                                       database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    outcome = pipeline.process(desk, b"\r\n\r\n", "test:1")

    assert outcome.action == "quarantined"
    held = list(models.Quarantine.select())
    assert len(held) == 1
    assert "ParseError" in held[0].error
    notices = _outbox()
    assert [row.kind for row in notices] == ["quarantine"]
    assert notices[0].recipients.split() == [ADMIN_ADDRESS]
    notice = message_from_bytes(bytes(notices[0].raw), policy=default_policy)
    text = notice.get_body(preferencelist=("plain",)).get_content()
    config = f"--config {desk.config.path} quarantine"
    assert f"{config} show {held[0].id}" in text
    assert notice["Subject"] == "[maildesk] Wiadomość w kwarantannie: (bez tematu)"
    assert "Nadawca: -\r\n" in text
    assert f"{config} retry {held[0].id}" in text


def test_quarantined_mail_is_not_quarantined_twice(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    pipeline.process(desk, b"\r\n\r\n", "test:1")
    again = pipeline.process(desk, b"\r\n\r\n", "test:1")

    assert again.action == "duplicate"
    assert models.Quarantine.select().count() == 1


def _lookups(monkeypatch, table: type[models.BaseModel] = models.ProcessedMessage
             ) -> list[str]:
    """Record, from now on, each read of ``table`` by the statement helpers."""
    from maildesk import statements

    seen: list[str] = []
    for name in ("exists", "first", "select_in"):
        original = getattr(statements, name)

        def recording(model, *args, _original=original, _name=name, **kwargs):
            if model is table:
                seen.append(_name)
            return _original(model, *args, **kwargs)

        monkeypatch.setattr(statements, name, recording)
    return seen


def test_parsed_mail_checked_for_repeats_in_one_query(tmp_path: Path, database_url: str,
                                                       monkeypatch) -> None:
    # The parse helper hands the parse over, so the quarantine mark and the dedupe key
    # are looked up together: one round trip less per mail on PostgreSQL.
    desk = make_desk(tmp_path, database_url)
    first, second = mail(message_id="<m1@example.org>"), mail(message_id="<m2@example.org>")
    sender_less = mail(message_id="<m3@example.org>").replace(b"From: ", b"X-Old-From: ", 1)
    pipeline.process(desk, first, "test:1")
    quarantined = pipeline.process(desk, sender_less, "test:2")
    lookups = _lookups(monkeypatch)

    new = pipeline.process(desk, second, "test:3", parsed=parse_message(second))
    for_new = list(lookups)
    again = pipeline.process(desk, first, "test:1", parsed=parse_message(first))
    held = pipeline.process(desk, sender_less, "test:2", parsed=parse_message(sender_less))

    assert quarantined.action == "quarantined"
    assert new.action == "create"
    assert for_new == ["select_in"]
    assert again.action == "duplicate"
    assert held.action == "duplicate"
    assert held.in_quarantine
    assert models.Quarantine.select().count() == 1


def test_crash_in_decision_quarantines_instead_of_dropping(tmp_path: Path, database_url: str,
                                                          monkeypatch) -> None:
    desk = make_desk(tmp_path, database_url)

    def broken_rules(*args, **kwargs):
        raise RuntimeError("rule engine exploded")

    class BrokenRules:
        evaluate = staticmethod(broken_rules)

    outcome = pipeline.process(desk, mail(), "test:1", BrokenRules())

    assert outcome.action == "quarantined"
    assert "rule engine exploded" in models.Quarantine.get().error
    assert models.Ticket.select().count() == 0


def test_cc_becomes_participant_without_support_address(tmp_path: Path,
                                                        database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    with_cc = mail(to="kierownik.sprzedazy@example.org",
                   headers={"Cc": "helpdesk@example.com, Adam Sikora <adam.sikora@example.org>"})
    outcome = pipeline.process(desk, with_cc, "test:1")

    participants = {p.contact.address for p in models.Participant.select().where(
        models.Participant.ticket == outcome.ticket)}
    assert participants == {"kierownik.sprzedazy@example.org", "adam.sikora@example.org"}
    assert all("helpdesk@example.com" not in row.recipients for row in _outbox())


def test_header_injection_in_subject_stays_one_line(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = (b"From: piotr.nowicki@example.org\r\nTo: helpdesk@example.com\r\n"
           b"Message-ID: <inj@example.org>\r\n"
           b"Subject: =?utf-8?Q?Nie_dzia=C5=82a_drukarka=0D=0ABcc:"
           b"_kopie@collector.example.net?=\r\n"
           b"\r\npokazuje b\xc5\x82\xc4\x85d 13.A2\r\n")

    outcome = pipeline.process(desk, raw, "test:1")

    ticket = models.Ticket.get_by_id(outcome.ticket)
    assert "\n" not in ticket.subject
    assert "\r" not in ticket.subject
    Sender(desk.config.smtp).deliver_due()
    written = sorted((tmp_path / "outbox").glob("*.eml"))
    sent = message_from_bytes(written[0].read_bytes(), policy=default_policy)
    assert sent["Bcc"] is None
    assert sent.get_all("Subject") is not None
    assert len(sent.get_all("Subject")) == 1
    assert sent["To"] == "piotr.nowicki@example.org"


def test_acknowledgement_language_follows_english_mail(tmp_path: Path,
                                                       database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    english = mail(sender="John Smith <john@partner.example>",
                   subject="VPN connection drops every few minutes",
                   body="Hello,\n\nsince this morning my VPN connection drops. Could you "
                        "please have a look?\n\nThanks,\nJohn\n")

    outcome = pipeline.process(desk, english, "test:1")

    assert models.Ticket.get_by_id(outcome.ticket).language == "en"
    acknowledgement = message_from_bytes(bytes(_outbox()[0].raw), policy=default_policy)
    assert "We have received your request" in acknowledgement["Subject"]


def test_agentless_group_notice_to_admins(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "10-drukarki.yaml").write_text(
        "- name: drukarki\n  when: {subject: drukark}\n  then: {group: pierwsza-linia}\n",
        encoding="utf-8")
    desk = make_desk(tmp_path, database_url, agents=[])
    from maildesk.wiring import load_rules

    outcome = pipeline.process(desk, mail(), "test:1", load_rules(desk))

    ticket = models.Ticket.get_by_id(outcome.ticket)
    assert ticket.group == "pierwsza-linia"
    notices = list(models.Outbox.select().where(models.Outbox.kind == "new_ticket"))
    assert [row.recipients.split() for row in notices] == [[ADMIN_ADDRESS]]


def test_requester_language_comes_before_the_mail_language(tmp_path: Path, database_url: str,
                                                           monkeypatch) -> None:
    # An admin set John's language to English; his Polish mail still gets English. The
    # contact is read once, in the transaction, not also before it.
    desk = make_desk(tmp_path, database_url)
    contact_reads = _lookups(monkeypatch, models.Contact)
    models.Contact.create(address="john@example.net", language="en")
    polish = mail(sender="John <john@example.net>", subject="Drukarka nie działa",
                  body="Dzień dobry, drukarka nie działa od rana. Proszę o pomoc.")
    newcomer = mail(sender="Anna <anna@example.org>", subject="Drukarka nie działa",
                    body="Dzień dobry, drukarka nie działa od rana. Proszę o pomoc.",
                    message_id="<anna@example.org>")

    john = pipeline.process(desk, polish, "test:1")
    reads_for_john = len(contact_reads)
    anna = pipeline.process(desk, newcomer, "test:2")

    assert models.Ticket.get_by_id(john.ticket).language == "en"
    assert reads_for_john == 1
    acknowledgement = models.Outbox.get(models.Outbox.ticket == john.ticket,
                                        models.Outbox.kind == "ack")
    assert acknowledgement.subject.startswith(f"[#{john.ticket}] We have received")
    assert models.Ticket.get_by_id(anna.ticket).language == "pl"
    assert models.Contact.get(models.Contact.address == "anna@example.org").language == "pl"

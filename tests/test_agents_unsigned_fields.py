"""Agent mail whose DKIM signature leaves In-Reply-To, References, To and Cc out.

Exchange Online (Microsoft 365) signs only h=From:Date:Subject:Message-ID:Content-Type:
MIME-Version, often with X-MS-Exchange-SenderADCheck, so anyone who has a copy of an
agent's mail can change those four fields. Such mail must pass, but the desk must not
act on the unsigned fields: the signed subject tag names the ticket, and Cc adds no
one. Gmail signs those fields too, and its mail keeps working as before. Mail is
signed with the test key of test_agents_dkim, whose DNS look-up returns that key
without querying DNS.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dkim
import pytest
from click.testing import CliRunner
from deskfactory import mail, make_desk
from test_agents_dkim import SELECTOR, lookup_for, make_signing_key

from maildesk import models, pipeline
from maildesk.authheaders import UNTRUSTED_UNLESS_SIGNED
from maildesk.authn import authenticate, verify_dkim
from maildesk.cli import main
from maildesk.desk import Desk
from maildesk.parse import parse_message

MAREK = "Marek Zieliński <marek.zielinski@example.com>"
MAREK_ADDRESS = "marek.zielinski@example.com"
JAN = "Jan Kowalski <jan@example.org>"
PASS = ("mx.example.com; dkim=pass header.d=example.com header.s=sel1; "
        "dmarc=pass header.from=example.com")
TRUSTED = ("mx.example.com",)

# h= of Exchange Online, in its order and letter case.
M365 = [b"From", b"Date", b"Subject", b"Message-ID", b"Content-Type", b"MIME-Version",
        b"X-MS-Exchange-SenderADCheck"]
# h= of Gmail since 2022: every field once, then the oversigned ones again.
GMAIL = [b"content-transfer-encoding", b"mime-version", b"references", b"in-reply-to",
         b"message-id", b"subject", b"cc", b"to", b"from", b"date", b"from", b"to", b"cc",
         b"subject", b"date", b"message-id", b"reply-to"]


@pytest.fixture(scope="module")
def signing_key() -> tuple[bytes, bytes]:
    return make_signing_key()


def outlook_reply(body: str, subject: str, in_reply_to: str | None, *,
                  message_id: str = "<AM0PR01MB1001@AM0PR01MB1001.eurprd01.prod.outlook.com>",
                  to: str = "helpdesk@example.com", cc: str | None = None) -> bytes:
    """Build an agent's reply as Outlook on Exchange Online writes it."""
    headers = {"Thread-Topic": "Drukarka nie drukuje", "X-MS-Exchange-SenderADCheck": "1"}
    if in_reply_to:
        headers.update({"In-Reply-To": in_reply_to, "References": in_reply_to})
    if cc:
        headers["Cc"] = cc
    return mail(sender=MAREK, to=to, subject=subject, body=body, message_id=message_id,
                headers=headers)


def sign(raw: bytes, private: bytes, include: list[bytes]) -> bytes:
    return dkim.sign(raw, SELECTOR, b"example.com", private, include_headers=include,
                     canonicalize=(b"relaxed", b"relaxed")) + raw


def changed(raw: bytes, name: str, value: str) -> bytes:
    """Return ``raw`` with the value of its one ``name`` field replaced in place."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    line = re.compile(rb"(?im)^" + re.escape(name.encode()) + rb":[^\r\n]*(?=\r\n|\Z)")
    assert len(line.findall(head)) == 1
    return line.sub(f"{name}: {value}".encode(), head) + separator + body


def desk_with_two_tickets(tmp_path: Path, database_url: str, record: bytes | None = None,
                          **commands: Any) -> tuple[Desk, dict[int, models.Outbox]]:
    """Open ticket 1 (Zofia) and ticket 2 (Jan); return the desk and both acknowledgements."""
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": list(TRUSTED), **commands})
    if record is not None:
        desk.dns_txt = lookup_for(record)
    pipeline.process(desk, mail(), "test:1")
    pipeline.process(desk, mail(sender=JAN, subject="Serwer plików",
                                message_id="<j1@example.org>"), "test:2")
    acks = {row.ticket_id: row for row in models.Outbox.select().where(models.Outbox.kind == "ack")}
    assert sorted(acks) == [1, 2]
    return desk, acks


def outbox(kind: str) -> list[models.Outbox]:
    return list(models.Outbox.select().where(models.Outbox.kind == kind)
                .order_by(models.Outbox.id))


def text_of(row: models.Outbox) -> str:
    return " ".join(parse_message(bytes(row.raw)).text.split())


def assert_untouched(ticket: int) -> None:
    assert models.Ticket.get_by_id(ticket).status == "new"
    replies = models.Outbox.select().where(models.Outbox.kind == "reply",
                                           models.Outbox.ticket == ticket)
    assert replies.count() == 0


# --------------------------------------------------------------------------- the verdict


def test_m365_signature_passes_unsigned_fields(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    raw = sign(outlook_reply("Gotowe.\n", "RE: [#1] Drukarka", "<ack@maildesk.example.com>",
                             cc=JAN), private, M365)

    verdict = verify_dkim(raw, "example.com", lookup_for(record))

    assert verdict.passed
    assert verdict.summary == "dkim=pass header.d=example.com"
    assert verdict.unsigned == {"To", "Cc", "In-Reply-To", "References"}


@pytest.mark.parametrize("name", UNTRUSTED_UNLESS_SIGNED)
def test_one_unsigned_field_named(name: str, signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    include = [field for field in GMAIL if field != name.lower().encode()]
    raw = sign(outlook_reply("Gotowe.\n", "RE: [#1] Drukarka", "<ack@maildesk.example.com>",
                             cc=JAN), private, include)

    verdict = verify_dkim(raw, "example.com", lookup_for(record))

    assert verdict.passed
    assert verdict.unsigned == {name}


def test_gmail_signature_signs_every_field(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    raw = sign(outlook_reply("Gotowe.\n", "Re: [#1] Drukarka", "<ack@maildesk.example.com>",
                             cc=JAN), private, GMAIL)

    verdict = verify_dkim(raw, "example.com", lookup_for(record))

    assert verdict.passed
    assert verdict.unsigned == frozenset()


def test_second_signature_covers_fields(signing_key: tuple[bytes, bytes]) -> None:
    # An outbound gateway may add a signature of its own that covers more than Exchange's.
    private, record = signing_key
    exchange = sign(outlook_reply("Gotowe.\n", "RE: [#1] Drukarka",
                                  "<ack@maildesk.example.com>", cc=JAN), private, M365)
    raw = sign(exchange, private, [b"from", b"subject", b"message-id", b"to", b"cc",
                                   b"in-reply-to", b"references"])

    verdict = verify_dkim(raw, "example.com", lookup_for(record))

    assert verdict.passed
    assert verdict.unsigned == frozenset()


def test_signature_without_message_id_ignored(signing_key: tuple[bytes, bytes]) -> None:
    # A signature without the Message-ID could come from another mail with the same text.
    private, record = signing_key
    exchange = sign(outlook_reply("Gotowe.\n", "RE: [#1] Drukarka",
                                  "<ack@maildesk.example.com>", cc=JAN), private, M365)
    raw = sign(exchange, private, [b"from", b"to", b"cc", b"in-reply-to", b"references"])

    verdict = verify_dkim(raw, "example.com", lookup_for(record))

    assert verdict.passed
    assert verdict.unsigned == {"To", "Cc", "In-Reply-To", "References"}


def test_unsigned_subject_still_fails(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    raw = sign(outlook_reply("Gotowe.\n", "RE: [#1] Drukarka", None), private,
               [field for field in M365 if field != b"Subject"])

    verdict = verify_dkim(raw, "example.com", lookup_for(record))

    assert not verdict.passed
    assert verdict.summary == ("dkim=pass header.d=example.com, but h= does not cover every "
                               "instance of Subject")


def test_authentication_results_leaves_fields_unsigned() -> None:
    raw = outlook_reply("Gotowe.\n", "RE: [#1] Drukarka", "<ack@maildesk.example.com>")
    raw = f"Authentication-Results: {PASS}\r\n".encode() + raw

    verdict = authenticate(parse_message(raw), raw, MAREK_ADDRESS, "authentication_results",
                           TRUSTED)

    assert verdict.passed
    # The mail has no Cc, so there is no Cc to distrust.
    assert verdict.unsigned == {"To", "In-Reply-To", "References"}


def test_address_only_trusts_every_field() -> None:
    raw = outlook_reply("Gotowe.\n", "RE: [#1] Drukarka", "<ack@maildesk.example.com>", cc=JAN)

    verdict = authenticate(parse_message(raw), raw, MAREK_ADDRESS, "address_only", TRUSTED)

    assert verdict.passed
    assert verdict.unsigned == frozenset()


# --------------------------------------------------------------------------- Microsoft 365


def test_m365_reply_acts_on_tagged_ticket(tmp_path: Path, database_url: str,
                                          signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, acks = desk_with_two_tickets(tmp_path, database_url, record, authentication="dkim")
    raw = sign(outlook_reply("#status rozwiązane\n\nDrukarka znów działa.\n",
                             f"RE: {acks[1].subject}", acks[1].message_id), private, M365)

    outcome = pipeline.process(desk, raw, "test:agent")

    assert outcome.ticket == 1
    assert models.Ticket.get_by_id(1).status == "resolved"
    [relay] = outbox("reply")
    assert relay.recipients.split() == ["zofia.wisniewska@example.org"]
    assert "Drukarka znów działa." in text_of(relay)
    [confirmation] = outbox("command_confirmation")
    assert confirmation.recipients.split() == [MAREK_ADDRESS]
    assert outbox("command_error") == []
    assert_untouched(2)


def test_m365_reply_to_other_ticket_held(tmp_path: Path, database_url: str,
                                         signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, acks = desk_with_two_tickets(tmp_path, database_url, record, authentication="dkim")
    genuine = sign(outlook_reply("#status rozwiązane\n\nDrukarka znów działa.\n",
                                 f"RE: {acks[1].subject}", acks[1].message_id), private, M365)
    # Anyone with a copy can point its unsigned fields at ticket 2, in place.
    copy = changed(changed(genuine, "In-Reply-To", acks[2].message_id),
                   "References", acks[2].message_id)
    assert verify_dkim(copy, "example.com", lookup_for(record)).passed

    outcome = pipeline.process(desk, copy, "test:copy")

    assert outcome.ticket == 1
    assert_untouched(1)
    assert_untouched(2)
    entry = models.Message.get(models.Message.author == MAREK_ADDRESS)
    assert (entry.ticket_id, entry.kind) == (1, "held")
    held = models.Event.get(models.Event.action == "thread_unconfirmed")
    assert held.ticket_id == 1
    assert "unsigned In-Reply-To or References point at 2" in held.detail
    [error] = outbox("command_error")
    assert error.recipients.split() == [MAREK_ADDRESS]
    text = text_of(error)
    assert "Temat Twojej wiadomości zawiera oznaczenie [#1]" in text
    assert "wskazują zgłoszenie [#2]" in text
    assert "Twój serwer pocztowy nie podpisuje tych pól (DKIM)" in text
    assert outbox("command_confirmation") == []


def test_m365_reply_without_tag_held(tmp_path: Path, database_url: str,
                                     signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, acks = desk_with_two_tickets(tmp_path, database_url, record, authentication="dkim")
    raw = sign(outlook_reply("#status rozwiązane\n\nDrukarka znów działa.\n",
                             "RE: Drukarka nie drukuje", acks[1].message_id), private, M365)

    pipeline.process(desk, raw, "test:agent")

    assert_untouched(1)
    entry = models.Message.get(models.Message.author == MAREK_ADDRESS)
    assert (entry.ticket_id, entry.kind) == (1, "held")
    held = models.Event.get(models.Event.action == "thread_unconfirmed")
    assert "the subject has no tag of it" in held.detail
    [error] = outbox("command_error")
    text = text_of(error)
    assert "tylko w polach nagłówka In-Reply-To i References" in text
    assert "Wyślij wiadomość ponownie i zostaw w temacie oznaczenie [#1]." in text


def test_m365_resend_with_tag_supersedes_held(tmp_path: Path, database_url: str,
                                              signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, acks = desk_with_two_tickets(tmp_path, database_url, record, authentication="dkim")
    untagged = sign(outlook_reply("#status rozwiązane\n", "RE: Drukarka nie drukuje",
                                  acks[1].message_id), private, M365)
    pipeline.process(desk, untagged, "test:agent")
    held = models.Message.get(models.Message.author == MAREK_ADDRESS)

    tagged = sign(outlook_reply("#status rozwiązane\n", f"RE: {acks[1].subject}",
                                acks[1].message_id, message_id="<AM0PR01MB1002@outlook.com>"),
                  private, M365)
    pipeline.process(desk, tagged, "test:agent")

    assert models.Ticket.get_by_id(1).status == "resolved"
    assert models.Message.get_by_id(held.id).kind == "discarded"
    superseded = models.Event.get(models.Event.action == "held_superseded")
    assert superseded.actor == "marek.zielinski"


def test_m365_unsigned_cc_adds_nobody(tmp_path: Path, database_url: str,
                                      signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, acks = desk_with_two_tickets(tmp_path, database_url, record, authentication="dkim")
    genuine = sign(outlook_reply("Proszę wyłączyć i włączyć drukarkę.\n",
                                 f"RE: {acks[1].subject}", acks[1].message_id), private, M365)
    # The copy names a reader in Cc, who could then reply by the agent's Message-ID.
    copy = b"Cc: Obcy <obcy@evil.example>\r\n" + genuine

    pipeline.process(desk, copy, "test:copy")

    assert len(outbox("reply")) == 1
    reference = models.MessageReference.get(
        models.MessageReference.message_id == parse_message(copy).message_id)
    assert reference.recipients.split() == [MAREK_ADDRESS]

    outcome = pipeline.process(desk, mail(
        sender="Obcy <obcy@evil.example>", subject=f"RE: {acks[1].subject}",
        body="Dopiszcie mojego kolegę.\n", message_id="<o1@evil.example>",
        headers={"In-Reply-To": reference.message_id, "Cc": "kolega@evil.example"}),
        "test:reader")

    assert outcome.ticket != 1
    participants = [row.contact.address for row in
                    models.Participant.select().where(models.Participant.ticket == 1)]
    assert participants == []


@pytest.mark.parametrize(("include", "responded"), [(M365, False), (GMAIL, True)])
def test_requester_in_to_needs_signature(tmp_path: Path, database_url: str,
                                         signing_key: tuple[bytes, bytes],
                                         include: list[bytes], responded: bool) -> None:
    # A mail to the requester counts as the SLA's first response. One of bare commands
    # relays nothing, so only its To can count.
    private, record = signing_key
    desk, acks = desk_with_two_tickets(tmp_path, database_url, record, authentication="dkim")
    raw = sign(outlook_reply("#priorytet 2\n", f"RE: {acks[1].subject}",
                             acks[1].message_id, to="zofia.wisniewska@example.org",
                             cc="helpdesk@example.com"), private, include)

    pipeline.process(desk, raw, "test:agent")

    assert models.Ticket.get_by_id(1).priority == 2
    assert outbox("reply") == []
    recorded = models.Event.select().where(models.Event.ticket == 1,
                                           models.Event.action == "sla_respond")
    assert recorded.exists() is responded


def test_m365_note_address_stays_note(tmp_path: Path, database_url: str,
                                      signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, acks = desk_with_two_tickets(tmp_path, database_url, record, authentication="dkim")
    raw = sign(outlook_reply("Toner zamówiony.\n", f"RE: {acks[1].subject}",
                             acks[1].message_id, to="helpdesk+note@example.com"),
               private, M365)

    pipeline.process(desk, raw, "test:agent")

    entry = models.Message.get(models.Message.author == MAREK_ADDRESS)
    assert (entry.ticket_id, entry.kind) == (1, "internal_note")
    assert outbox("reply") == []


def test_m365_reply_to_confirmation_stays_note(tmp_path: Path, database_url: str,
                                               signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, acks = desk_with_two_tickets(tmp_path, database_url, record, authentication="dkim")
    pipeline.process(desk, sign(outlook_reply("#priorytet 2\n", f"RE: {acks[1].subject}",
                                              acks[1].message_id), private, M365), "test:agent")
    [confirmation] = outbox("command_confirmation")
    # A copy of the agent's reply to the confirmation, without In-Reply-To and References.
    raw = sign(outlook_reply("Toner zamówiony, dostawa w czwartek.\n",
                             f"RE: {confirmation.subject}", None,
                             message_id="<AM0PR01MB1002@outlook.com>"), private, M365)

    pipeline.process(desk, raw, "test:copy")

    entry = models.Message.get(models.Message.message_id == "<AM0PR01MB1002@outlook.com>")
    assert (entry.ticket_id, entry.kind) == (1, "internal_note")
    assert outbox("reply") == []
    noted = models.Event.get(models.Event.action == "internal_note_added")
    assert '"why": "subject"' in noted.detail


def test_held_list_names_unconfirmed_ticket(tmp_path: Path, database_url: str,
                                            signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, acks = desk_with_two_tickets(tmp_path, database_url, record, authentication="dkim")
    pipeline.process(desk, sign(outlook_reply("#status rozwiązane\n", "RE: Drukarka nie drukuje",
                                              acks[1].message_id), private, M365), "test:agent")
    config = str(desk.config.path)
    english = {"MAILDESK_LANGUAGE": "en"}

    listed = CliRunner().invoke(main, ["--config", config, "agents", "held"], env=english,
                                catch_exceptions=False)
    history = CliRunner().invoke(main, ["--config", config, "tickets", "show", "1"],
                                 env=english, catch_exceptions=False)

    assert ("held because: mail held for 1: only unsigned In-Reply-To or References name "
            "the ticket, and the subject has no tag of it") in listed.output
    assert "message held: the subject tag does not name the ticket" in history.output


# --------------------------------------------------------------------------- other signers


def test_gmail_untagged_reply_follows_references(tmp_path: Path, database_url: str,
                                                 signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, acks = desk_with_two_tickets(tmp_path, database_url, record, authentication="dkim")
    raw = sign(outlook_reply("#status rozwiązane\n\nDrukarka znów działa.\n",
                             "Re: Drukarka nie drukuje", acks[1].message_id, cc=JAN),
               private, GMAIL)

    pipeline.process(desk, raw, "test:agent")

    assert models.Ticket.get_by_id(1).status == "resolved"
    assert len(outbox("reply")) == 1
    reference = models.MessageReference.get(
        models.MessageReference.message_id == parse_message(raw).message_id)
    assert reference.recipients.split() == ["helpdesk@example.com", "jan@example.org",
                                            MAREK_ADDRESS]


def test_authentication_results_untagged_reply_held(tmp_path: Path, database_url: str) -> None:
    desk, acks = desk_with_two_tickets(tmp_path, database_url)
    raw = outlook_reply("#status rozwiązane\n", "RE: Drukarka nie drukuje", acks[1].message_id)

    pipeline.process(desk, f"Authentication-Results: {PASS}\r\n".encode() + raw, "test:agent")

    assert_untouched(1)
    assert models.Event.select().where(models.Event.action == "thread_unconfirmed").count() == 1
    [error] = outbox("command_error")
    assert "maildesk nie może sprawdzić, czy Twój serwer pocztowy podpisuje te pola" in (
        text_of(error))


def test_authentication_results_tag_decides(tmp_path: Path, database_url: str) -> None:
    desk, acks = desk_with_two_tickets(tmp_path, database_url)
    raw = outlook_reply("#status rozwiązane\n", f"RE: {acks[1].subject}", acks[2].message_id)

    pipeline.process(desk, f"Authentication-Results: {PASS}\r\n".encode() + raw, "test:agent")

    assert_untouched(1)
    assert_untouched(2)
    held = models.Event.get(models.Event.action == "thread_unconfirmed")
    assert held.ticket_id == 1


def test_address_only_follows_references(tmp_path: Path, database_url: str) -> None:
    desk, acks = desk_with_two_tickets(tmp_path, database_url, authentication="address_only")
    raw = outlook_reply("#status rozwiązane\n", "RE: Drukarka nie drukuje", acks[1].message_id)

    pipeline.process(desk, raw, "test:agent")

    assert models.Ticket.get_by_id(1).status == "resolved"

"""Agent authentication covers the header fields the desk acts on.

A DKIM verifier checks the bottom-most instance of each signed field and the desk reads
the topmost. So fields added on top of a signed mail must fail authentication, and so
must a From, Subject or Message-ID the signature does not cover. The fields it may leave
out are tested in test_agents_unsigned_fields. Mail is signed with the test key of
test_agents_dkim, and its DNS look-up returns that key without querying DNS.
"""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest
from deskfactory import mail, make_desk
from test_agents_dkim import SELECTOR, agent_raw, lookup_for, make_signing_key, signed

from maildesk import models, pipeline
from maildesk.authheaders import SIGNED_HEADERS, SINGLE_HEADERS, malformed_header_line
from maildesk.authn import authenticate, verify_dkim
from maildesk.parse import parse_message

MAREK = "marek.zielinski@example.com"
PASS = "mx.example.com; dkim=pass header.d=example.com header.s=sel1"
TRUSTED = ("mx.example.com",)
SIGN_ALL = [b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"in-reply-to",
            b"references"]

# A second instance of each field, as an attacker would put it on top.
EXTRA = {
    "Sender": "attacker@evil.example",
    "Reply-To": "attacker@evil.example",
    "To": "helpdesk+note@example.com",
    "Cc": "attacker@evil.example",
    "Date": "Sat, 05 Dec 2026 10:00:00 +0100",
    "Message-ID": "<replay1@evil.example>",
    "In-Reply-To": "<nothing@evil.example>",
    "References": "<nothing@evil.example>",
    "Subject": "Re: [#2] Serwer plików",
    "Content-Type": "text/plain; charset=us-ascii",
    "Content-Transfer-Encoding": "base64",
}


@pytest.fixture(scope="module")
def signing_key() -> tuple[bytes, bytes]:
    return make_signing_key()


def full_raw(in_reply_to: str = "<ack@maildesk.example.com>", **headers: str) -> bytes:
    """Return an agent's reply with every field that a signature must or may cover."""
    return agent_raw(in_reply_to=in_reply_to, headers={
        "Cc": "Jan Kowalski <jan@example.org>", "References": in_reply_to, **headers})


def sign(raw: bytes, private: bytes, include: list[bytes]) -> bytes:
    return dkim.sign(raw, SELECTOR, b"example.com", private, include_headers=include) + raw


def check(raw: bytes, policy: str, record: bytes | None = None):  # type: ignore[no-untyped-def]
    lookup = lookup_for(record) if record else (lambda name, timeout=5: None)
    return authenticate(parse_message(raw), raw, MAREK, policy, TRUSTED, lookup)


def prepended(raw: bytes, name: str, value: str) -> bytes:
    """Put ``name: value`` on top, twice when the mail does not have the field yet."""
    line = f"{name}: {value}\r\n".encode()
    has_field = parse_message(raw).header(name) is not None
    return (line if has_field else line + line) + raw


# --------------------------------------------------------------------------- repeated fields


@pytest.mark.parametrize("policy", ["dkim", "authentication_results", "address_only"])
@pytest.mark.parametrize("name", [name for name in SINGLE_HEADERS if name != "From"])
def test_repeated_field_fails(name: str, policy: str,
                              signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    genuine = sign(full_raw(), private, SIGN_ALL)
    if policy == "authentication_results":
        genuine = f"Authentication-Results: {PASS}\r\n".encode() + genuine
    assert check(genuine, policy, record).passed

    verdict = check(prepended(genuine, name, EXTRA[name]), policy, record)

    assert not verdict.passed
    assert verdict.summary == f"header fields repeated: {name} (each may occur once)"


def test_repeated_fields_all_named(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    raw = sign(full_raw(), private, SIGN_ALL)
    for name in ("Message-ID", "In-Reply-To", "Subject"):
        raw = prepended(raw, name, EXTRA[name])

    verdict = check(raw, "dkim", record)

    assert verdict.summary == ("header fields repeated: Message-ID, In-Reply-To, Subject "
                               "(each may occur once)")


# --------------------------------------------------------------------------- coverage by h=


@pytest.mark.parametrize("name", [name for name in SIGNED_HEADERS if name != "From"])
def test_unsigned_field_fails(name: str, signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    raw = sign(full_raw(), private, [field for field in SIGN_ALL if field != name.lower().encode()])

    verdict = verify_dkim(raw, "example.com", lookup_for(record))

    assert not verdict.passed
    assert verdict.summary == ("dkim=pass header.d=example.com, but h= does not cover every "
                               f"instance of {name}")
    assert not check(raw, "dkim", record).passed


def test_field_signed_once_present_twice_fails(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    # dkimpy checks the bottom Subject, which is the signed one, and passes it.
    raw = b"Subject: Re: [#2] Serwer plik\xc3\xb3w\r\n" + sign(full_raw(), private, SIGN_ALL)

    verdict = verify_dkim(raw, "example.com", lookup_for(record))

    assert not verdict.passed
    assert "h= does not cover every instance of Subject" in verdict.summary


def test_absent_field_need_not_be_signed(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    raw = sign(agent_raw(), private, [b"from", b"to", b"subject", b"date", b"message-id"])

    assert check(raw, "dkim", record).passed


def test_genuine_signed_mail_passes(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key

    verdict = check(sign(full_raw(), private, SIGN_ALL), "dkim", record)

    assert verdict.passed
    assert verdict.summary == "dkim=pass header.d=example.com"


def test_oversigned_mail_passes(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    raw = sign(full_raw(), private, SIGN_ALL + SIGN_ALL)

    assert check(raw, "dkim", record).passed


def test_oversigned_field_added_breaks_signature(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    raw = b"Reply-To: attacker@evil.example\r\n" + sign(full_raw(), private,
                                                      SIGN_ALL + [b"reply-to"])

    verdict = verify_dkim(raw, "example.com", lookup_for(record))

    assert not verdict.passed
    assert verdict.summary.startswith("dkim=fail")


# --------------------------------------------------------------------------- header block


def test_lone_cr_hides_field_from_dkim(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    # References is signed as absent; dkimpy reads the injected one as part of X-Note.
    genuine = sign(agent_raw(in_reply_to="<ack@maildesk.example.com>"), private, SIGN_ALL)
    raw = b"X-Note: a\rReferences: <ack2@maildesk.example.com>\r\n" + genuine

    assert parse_message(raw).references == ("<ack2@maildesk.example.com>",)
    assert verify_dkim(raw, "example.com", lookup_for(record)).passed
    verdict = check(raw, "dkim", record)
    assert not verdict.passed
    assert verdict.summary == "malformed header line 1: the header fields are ambiguous"


def test_line_that_is_no_field_fails() -> None:
    # Python's parser ends the header block at "X-Stop :", so the desk reads one From
    # and the Subject above it, while a verifier that reads on checks the signed ones.
    raw = (f"Authentication-Results: {PASS}\r\nFrom: {MAREK}\r\n"
           "Subject: Re: [#2] Serwer\r\nMessage-ID: <x1@evil.example>\r\n"
           "X-Stop : 1\r\n").encode() + agent_raw()
    message = parse_message(raw)
    assert message.from_count == 1
    assert message.subject == "Re: [#2] Serwer"

    verdict = check(raw, "authentication_results")

    assert not verdict.passed
    assert verdict.summary == "malformed header line 5: the header fields are ambiguous"


@pytest.mark.parametrize("raw", [
    b"From: a@example.com\r\nSubject: x\r\n",
    b"From: a@example.com\nSubject: x\n\nbody\n",
    b"From a@example.com Fri Dec  4 09:00:00 2026\r\nFrom: a@example.com\r\n\r\nbody\r\n",
    b"From: a@example.com\r\nSubject: a long\r\n\tfolded subject\r\n \r\n\r\nbody\r\n",
])
def test_well_formed_header_blocks(raw: bytes) -> None:
    assert malformed_header_line(raw) is None


@pytest.mark.parametrize(("raw", "line"), [
    (b" From: a@example.com\r\n\r\nbody\r\n", 1),
    (b"From: a@example.com\r\nSubject : x\r\n\r\nbody\r\n", 2),
    (b"From: a@example.com\r\nX-A: a\r\r\nSubject: x\r\n\r\nbody\r\n", 2),
    (b"From: a@example.com\r\nZa\xc5\xbc\xc3\xb3\xc5\x82\xc4\x87: x\r\n\r\nbody\r\n", 2),
])
def test_malformed_header_blocks(raw: bytes, line: int) -> None:
    assert malformed_header_line(raw) == line


def test_missing_message_id_fails() -> None:
    raw = mail(sender=MAREK, subject="Re: Drukarka", body="#status rozwiązane\n",
               message_id=None, headers={"Authentication-Results": PASS})

    verdict = check(raw, "authentication_results")

    assert not verdict.passed
    assert verdict.summary == "no Message-ID: a copy of the mail could be processed again"


# --------------------------------------------------------------------------- through the pipeline


def two_tickets(tmp_path: Path, database_url: str, **commands: object):  # type: ignore[no-untyped-def]
    """Open ticket 1 (Zofia) and ticket 2 (Jan); return the desk and both acknowledgements."""
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": list(TRUSTED), **commands})
    first = pipeline.process(desk, mail(), "test:1")
    second = pipeline.process(desk, mail(sender="Jan Kowalski <jan@example.org>",
                                         subject="Serwer plików",
                                         message_id="<j1@example.org>"), "test:2")
    acks = {row.ticket_id: row.message_id
            for row in models.Outbox.select().where(models.Outbox.kind == "ack")}
    return desk, first.ticket, second.ticket, acks


def assert_untouched(ticket: int) -> None:
    assert models.Ticket.get_by_id(ticket).status == "new"
    replies = models.Outbox.select().where(models.Outbox.kind == "reply",
                                           models.Outbox.ticket == ticket)
    assert replies.count() == 0


def on_top(raw: bytes, ticket: int) -> bytes:
    return (f"Message-ID: <replay{ticket}@evil.example>\r\n"
            "In-Reply-To: <nothing@evil.example>\r\n"
            f"Subject: Re: [#{ticket}] Serwer plików\r\n").encode() + raw


def test_dkim_replay_on_other_ticket_held(tmp_path: Path, database_url: str,
                                          signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, first, second, acks = two_tickets(tmp_path, database_url, authentication="dkim")
    desk.dns_txt = lookup_for(record)
    genuine = signed(agent_raw(in_reply_to=acks[first]), private)
    pipeline.process(desk, genuine, "test:agent")
    assert models.Ticket.get_by_id(first).status == "resolved"

    pipeline.process(desk, on_top(genuine, second), "test:replay")

    assert_untouched(second)
    entry = models.Message.get(models.Message.message_id == f"<replay{second}@evil.example>")
    assert entry.ticket_id == second
    assert entry.kind == "held"
    rejected = models.Event.get(models.Event.action == "command_rejected")
    assert "header fields repeated" in rejected.detail
    errors = models.Outbox.select().where(models.Outbox.kind == "command_error")
    assert [row.recipients.split() for row in errors] == [[MAREK]]


def test_authentication_results_replay_held(tmp_path: Path, database_url: str) -> None:
    desk, first, second, acks = two_tickets(tmp_path, database_url)
    genuine = agent_raw(in_reply_to=acks[first], subject=f"Re: [#{first}] Drukarka")
    pipeline.process(desk, f"Authentication-Results: {PASS}\r\n".encode() + genuine,
                     "test:agent")
    assert models.Ticket.get_by_id(first).status == "resolved"

    # The receiving server checked the bottom-most fields and wrote its result on top.
    replay = f"Authentication-Results: {PASS}\r\n".encode() + on_top(genuine, second)
    pipeline.process(desk, replay, "test:replay")

    assert_untouched(second)
    assert models.Event.select().where(models.Event.action == "command_rejected").count() == 1


def test_dkim_unsigned_in_reply_to_held(tmp_path: Path, database_url: str,
                                        signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, first, second, acks = two_tickets(tmp_path, database_url, authentication="dkim")
    desk.dns_txt = lookup_for(record)
    # Joined by the subject tag, signed without In-Reply-To because it has none.
    raw = mail(sender=MAREK, subject=f"Re: [#{first}] Drukarka",
               body="#status rozwiązane\n\nGotowe.\n", message_id="<d1@mail.example.com>")
    genuine = sign(raw, private, [b"from", b"to", b"subject", b"date", b"message-id"])

    pipeline.process(desk, f"In-Reply-To: {acks[second]}\r\n".encode() + genuine,
                     "test:replay")

    assert_untouched(second)
    assert_untouched(first)
    held = models.Event.get(models.Event.action == "thread_unconfirmed")
    assert held.ticket_id == first
    assert f"point at {second}" in held.detail


def test_dkim_white_space_copy_is_duplicate(tmp_path: Path, database_url: str,
                                            signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, first, _second, acks = two_tickets(tmp_path, database_url, authentication="dkim")
    desk.dns_txt = lookup_for(record)
    genuine = signed(agent_raw(body="Gotowe.\n", in_reply_to=acks[first]), private)
    pipeline.process(desk, genuine, "test:agent")
    # Relaxed header canonicalization ignores the second space: the signature verifies.
    copy = genuine.replace(b"Subject: Re: Drukarka", b"Subject: Re:  Drukarka")
    assert verify_dkim(copy, "example.com", lookup_for(record)).passed

    outcome = pipeline.process(desk, copy, "test:replay")

    assert outcome.action == "duplicate"
    replies = models.Outbox.select().where(models.Outbox.kind == "reply")
    assert replies.count() == 1

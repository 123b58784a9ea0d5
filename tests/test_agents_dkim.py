"""Agent authentication: Authentication-Results parsing and maildesk's own DKIM check.

Mail is signed with a key made for the test. The DNS look-up is a function that returns
the test public key, so no real DNS is queried.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from deskfactory import mail, make_desk

from maildesk import models, pipeline
from maildesk.authn import (
    aligned,
    authenticate,
    check_authentication_results,
    parse_authentication_results,
    verify_dkim,
)
from maildesk.errors import TemporaryError
from maildesk.parse import parse_message

SELECTOR = b"sel1"


@pytest.fixture(scope="module")
def signing_key() -> tuple[bytes, bytes]:
    return make_signing_key()


def make_signing_key() -> tuple[bytes, bytes]:
    """Return a private key (PEM) and the TXT record that publishes its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def lookup_for(record: bytes, domain: str = "example.com") -> Callable[..., bytes | None]:
    wanted = f"{SELECTOR.decode()}._domainkey.{domain}."

    def lookup(name: bytes | str, timeout: int = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        return record if text.rstrip(".") + "." == wanted else None

    return lookup


def signed(raw: bytes, private: bytes, domain: str = "example.com") -> bytes:
    signature = dkim.sign(raw, SELECTOR, domain.encode(), private,
                          include_headers=[b"from", b"to", b"subject", b"date",
                                           b"message-id", b"in-reply-to"])
    return signature + raw


def agent_raw(body: str = "#status rozwiązane\n\nGotowe.\n", in_reply_to: str | None = None,
              sender: str = "Marek Zieliński <marek.zielinski@example.com>",
              headers: dict[str, str] | None = None, subject: str = "Re: Drukarka") -> bytes:
    headers = {**({"In-Reply-To": in_reply_to} if in_reply_to else {}), **(headers or {})}
    return mail(sender=sender, subject=subject, body=body,
                message_id="<d1@mail.example.com>", headers=headers or None)


# --------------------------------------------------------------------------- Authentication-Results


def test_parse_authentication_results_with_comments() -> None:
    value = ("mx.example.com; dkim=fail reason=\"signature verification failed\" "
             "header.d=example.com header.s=sel1; spf=fail (mx.example.com: domain of "
             "x@example.com does not designate 203.0.113.77) smtp.mailfrom=x@example.com; "
             "dmarc=fail (p=NONE sp=NONE) header.from=example.com")

    parsed = parse_authentication_results(value)

    assert parsed is not None
    assert parsed.authserv_id == "mx.example.com"
    assert [(r.method, r.result) for r in parsed.results] == [
        ("dkim", "fail"), ("spf", "fail"), ("dmarc", "fail")]
    assert parsed.results[0].properties["header.d"] == "example.com"
    assert parsed.summary() == "mx.example.com: dkim=fail, spf=fail, dmarc=fail"


def test_parse_authentication_results_none() -> None:
    parsed = parse_authentication_results("mx.example.com 1; none")

    assert parsed is not None
    assert parsed.authserv_id == "mx.example.com"
    assert parsed.results == ()


def test_parse_authentication_results_quoted_semicolon() -> None:
    parsed = parse_authentication_results(
        'mx.example.com; dkim=pass reason="a;b" header.d=example.com')

    assert parsed is not None
    assert parsed.results[0].properties["header.d"] == "example.com"


def test_aligned_accepts_parent_domain_only() -> None:
    assert aligned("example.com", "example.com")
    assert aligned("example.com", "mail.example.com")
    assert not aligned("example.com", "badexample.com")
    assert not aligned("mail.example.com", "example.com")
    assert not aligned("", "example.com")


@pytest.mark.parametrize("signing", ["com", "COM", "com.", ".com", "example.com..",
                                     "localhost", " "])
def test_aligned_rejects_tld_or_malformed(signing: str) -> None:
    assert not aligned(signing, "example.com")
    assert not aligned(signing, "mail.example.com")


def test_aligned_matches_unicode_and_punycode() -> None:
    assert aligned("xn--w-uga1v8h.pl", "żółw.pl")
    assert aligned("żółw.pl", "xn--w-uga1v8h.pl")
    assert aligned("ŻÓŁW.pl", "biuro.xn--w-uga1v8h.pl")
    assert not aligned("xn--w-uga1v8h.pl", "zolw.pl")
    assert not aligned("a" * 70 + "ż.pl", "example.pl")


def test_aligned_accepts_same_single_label_domain() -> None:
    assert aligned("localhost", "localhost")


def message_with(*results: str) -> bytes:
    headers = "".join(f"Authentication-Results: {value}\r\n" for value in results)
    return (headers + "From: marek.zielinski@example.com\r\nTo: helpdesk@example.com\r\n"
            "Subject: x\r\n\r\nbody\r\n").encode()


def test_topmost_trusted_header_decides() -> None:
    raw = message_with("mx.example.com; dkim=fail header.d=example.com",
                       "mx.example.com; dkim=pass header.d=example.com")

    verdict = check_authentication_results(parse_message(raw), "example.com",
                                           ("mx.example.com",))

    assert not verdict.passed
    assert verdict.summary == "mx.example.com: dkim=fail"


def test_untrusted_header_above_trusted_is_skipped() -> None:
    raw = message_with("relay.example.net; dkim=pass header.d=example.com",
                       "mx.example.com; dmarc=pass header.from=example.com")

    verdict = check_authentication_results(parse_message(raw), "example.com",
                                           ("mx.example.com",))

    assert verdict.passed


@pytest.mark.parametrize("result", ["dkim=pass header.d=com",
                                    "dmarc=pass header.from=com",
                                    "dkim=pass header.d=com.; dmarc=pass header.from=.com"])
def test_top_level_domain_pass_is_rejected(result: str) -> None:
    raw = message_with(f"mx.example.com; {result}")

    verdict = check_authentication_results(parse_message(raw), "example.com",
                                           ("mx.example.com",))

    assert not verdict.passed
    assert "not example.com or a parent domain of it" in verdict.summary


def test_spf_pass_alone_is_not_enough() -> None:
    raw = message_with("mx.example.com; spf=pass smtp.mailfrom=example.com; dkim=none")

    verdict = check_authentication_results(parse_message(raw), "example.com",
                                           ("mx.example.com",))

    assert not verdict.passed


# --------------------------------------------------------------------------- DKIM


def test_verify_dkim_passes_signed_mail(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key

    verdict = verify_dkim(signed(agent_raw(), private), "example.com", lookup_for(record))

    assert verdict.passed
    assert verdict.summary == "dkim=pass header.d=example.com"


def test_verify_dkim_fails_changed_body(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    raw = signed(agent_raw(), private).replace(b"Gotowe.", b"Zamykam.")

    verdict = verify_dkim(raw, "example.com", lookup_for(record))

    assert not verdict.passed


def test_verify_dkim_fails_other_domain(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    raw = signed(agent_raw(), private, domain="attacker.example")

    verdict = verify_dkim(raw, "example.com", lookup_for(record, "attacker.example"))

    assert not verdict.passed
    assert "header.d=attacker.example" in verdict.summary


def test_verify_dkim_without_signature() -> None:
    verdict = verify_dkim(agent_raw(), "example.com", lambda name, timeout=5: None)

    assert not verdict.passed
    assert "no DKIM-Signature" in verdict.summary


def test_verify_dkim_unknown_key(signing_key: tuple[bytes, bytes]) -> None:
    private, _record = signing_key

    verdict = verify_dkim(signed(agent_raw(), private), "example.com",
                          lambda name, timeout=5: None)

    assert not verdict.passed


def test_verify_dkim_timeout_is_temporary(signing_key: tuple[bytes, bytes]) -> None:
    private, _record = signing_key

    def timing_out(name: bytes, timeout: int = 5) -> bytes:
        raise dkim.DnsTimeoutError("timed out")

    with pytest.raises(TemporaryError):
        verify_dkim(signed(agent_raw(), private), "example.com", timing_out)


def test_verify_dkim_rejects_top_level_signer(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key

    verdict = verify_dkim(signed(agent_raw(), private, domain="com"), "example.com",
                          lookup_for(record, domain="com"))

    assert not verdict.passed
    assert verdict.summary == "dkim=pass header.d=com"


# --------------------------------------------------------------------------- through the pipeline


def dkim_desk(tmp_path: Path, database_url: str, record: bytes):  # type: ignore[no-untyped-def]
    desk = make_desk(tmp_path, database_url, commands={"authentication": "dkim"})
    desk.dns_txt = lookup_for(record)
    ticket_outcome = pipeline.process(desk, mail(), "test:user")
    ack = models.Outbox.get(models.Outbox.kind == "ack")
    return desk, models.Ticket.get_by_id(ticket_outcome.ticket), ack.message_id


def test_dkim_policy_applies_signed_command(tmp_path: Path, database_url: str,
                                            signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, ticket, ack = dkim_desk(tmp_path, database_url, record)

    pipeline.process(desk, signed(agent_raw(in_reply_to=ack), private), "test:agent")

    assert models.Ticket.get_by_id(ticket.id).status == "resolved"
    assert models.Outbox.select().where(models.Outbox.kind == "command_error").count() == 0


def test_dkim_policy_rejects_tampered_command(tmp_path: Path, database_url: str,
                                              signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, ticket, ack = dkim_desk(tmp_path, database_url, record)
    raw = signed(agent_raw(in_reply_to=ack), private).replace(b"Gotowe.", b"Zamykam.")

    pipeline.process(desk, raw, "test:agent")

    assert models.Ticket.get_by_id(ticket.id).status == "new"
    errors = list(models.Outbox.select().where(models.Outbox.kind == "command_error"))
    assert [row.recipients.split() for row in errors] == [["marek.zielinski@example.com"]]


def test_dkim_timeout_keeps_mail_for_retry(tmp_path: Path, database_url: str,
                                           signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, ticket, ack = dkim_desk(tmp_path, database_url, record)

    def timing_out(name: bytes, timeout: int = 5) -> bytes:
        raise dkim.DnsTimeoutError("timed out")

    desk.dns_txt = timing_out
    raw = signed(agent_raw(in_reply_to=ack), private)

    with pytest.raises(TemporaryError):
        pipeline.process(desk, raw, "test:agent")
    assert models.Quarantine.select().count() == 0
    desk.dns_txt = lookup_for(record)
    pipeline.process(desk, raw, "test:agent")
    assert models.Ticket.get_by_id(ticket.id).status == "resolved"


def test_dkim_policy_ignores_authentication_results(tmp_path: Path, database_url: str,
                                                    signing_key: tuple[bytes, bytes]) -> None:
    _private, record = signing_key
    desk, ticket, ack = dkim_desk(tmp_path, database_url, record)
    raw = mail(sender="marek.zielinski@example.com", subject="Re: Drukarka",
               body="#status rozwiązane\n", message_id="<d2@mail.example.com>",
               headers={"In-Reply-To": ack, "Authentication-Results":
                        "mx.example.com; dkim=pass header.d=example.com"})

    pipeline.process(desk, raw, "test:agent")

    assert models.Ticket.get_by_id(ticket.id).status == "new"


# --------------------------------------------------------------------------- body length (l=)


def signed_with_length(raw: bytes, private: bytes) -> bytes:
    signature = dkim.sign(raw, SELECTOR, b"example.com", private, length=True,
                          include_headers=[b"from", b"to", b"subject", b"date",
                                           b"message-id", b"in-reply-to"])
    return signature + raw


def test_verify_dkim_rejects_text_after_length(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    raw = signed_with_length(agent_raw(), private) + b"\r\nPrzelej 500 z\xc5\x82 na konto X.\r\n"

    verdict = verify_dkim(raw, "example.com", lookup_for(record))

    assert not verdict.passed
    assert "l=" in verdict.summary


def test_verify_dkim_rejects_any_length_tag(signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key

    verdict = verify_dkim(signed_with_length(agent_raw(), private), "example.com",
                          lookup_for(record))

    assert not verdict.passed


def test_dkim_policy_holds_text_after_length(tmp_path: Path, database_url: str,
                                             signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, ticket, ack = dkim_desk(tmp_path, database_url, record)
    raw = (signed_with_length(agent_raw(in_reply_to=ack), private)
           + "\r\nPrzelej 500 zł na konto X.\r\n".encode())

    pipeline.process(desk, raw, "test:agent")

    assert models.Ticket.get_by_id(ticket.id).status == "new"
    assert models.Outbox.select().where(models.Outbox.kind == "reply").count() == 0
    errors = list(models.Outbox.select().where(models.Outbox.kind == "command_error"))
    assert [row.recipients.split() for row in errors] == [["marek.zielinski@example.com"]]


# --------------------------------------------------------------------------- several From


MAREK = "Marek Zieliński <marek.zielinski@example.com>"
JAN = "Jan Kowalski <jan.kowalski@example.com>"
PASS = "mx.example.com; dkim=pass header.d=example.com header.s=sel1"


@pytest.mark.parametrize("policy", ["authentication_results", "dkim", "address_only"])
def test_authenticate_fails_two_from_mailboxes(policy: str) -> None:
    raw = agent_raw(sender=f"{MAREK}, {JAN}", headers={"Authentication-Results": PASS})

    verdict = authenticate(parse_message(raw), raw, "marek.zielinski@example.com", policy,
                           ("mx.example.com",), lambda name, timeout=5: None)

    assert not verdict.passed
    assert "From" in verdict.summary


def two_from_desk(tmp_path: Path, database_url: str, **commands: object):  # type: ignore[no-untyped-def]
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"], **commands})
    ticket_outcome = pipeline.process(desk, mail(), "test:user")
    ack = models.Outbox.get(models.Outbox.kind == "ack")
    return desk, models.Ticket.get_by_id(ticket_outcome.ticket), ack.message_id


def assert_held_for_marek(ticket: models.Ticket) -> None:
    assert models.Ticket.get_by_id(ticket.id).status == "new"
    entry = models.Message.get(models.Message.message_id == "<d1@mail.example.com>")
    assert entry.kind == "held"
    errors = list(models.Outbox.select().where(models.Outbox.kind == "command_error"))
    assert [row.recipients.split() for row in errors] == [["marek.zielinski@example.com"]]
    assert models.Outbox.select().where(models.Outbox.kind == "reply").count() == 0
    rejected = models.Event.select().where(models.Event.action == "command_rejected")
    assert rejected.count() == 1


def test_two_from_headers_held(tmp_path: Path, database_url: str) -> None:
    desk, ticket, ack = two_from_desk(tmp_path, database_url)
    # The desk reads the first From; the receiving server checked the last one.
    raw = f"From: {MAREK}\r\n".encode() + agent_raw(
        in_reply_to=ack, sender=JAN, headers={"Authentication-Results": PASS})

    pipeline.process(desk, raw, "test:agent")

    assert_held_for_marek(ticket)


def test_two_from_mailboxes_held(tmp_path: Path, database_url: str) -> None:
    desk, ticket, ack = two_from_desk(tmp_path, database_url)
    raw = agent_raw(in_reply_to=ack, sender=f"{MAREK}, {JAN}",
                    headers={"Authentication-Results": PASS})

    pipeline.process(desk, raw, "test:agent")

    assert_held_for_marek(ticket)


def test_dkim_policy_two_from_headers_held(tmp_path: Path, database_url: str,
                                           signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk, ticket, ack = two_from_desk(tmp_path, database_url, authentication="dkim")
    desk.dns_txt = lookup_for(record)
    # A valid signature over Jan's mail with Marek's From added on top. dkimpy already
    # fails it (it hashes one more From than h= lists), and the From count alone would too.
    raw = signed(agent_raw(in_reply_to=ack, sender=JAN), private)
    raw = f"From: {MAREK}\r\n".encode() + raw

    pipeline.process(desk, raw, "test:agent")

    assert_held_for_marek(ticket)


# --------------------------------------------------------------------------- encoded address


def with_encoded_from(raw: bytes) -> bytes:
    """Replace the From line in the bytes: the mail builder would decode the word itself."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"From:")]
    encoded = b"From: =?utf-8?q?marek.zielinski=40example.com?="
    return b"\r\n".join([encoded, *lines]) + separator + body


def test_encoded_word_agent_address_quarantined(tmp_path: Path, database_url: str) -> None:
    desk, ticket, ack = two_from_desk(tmp_path, database_url)
    raw = with_encoded_from(agent_raw(in_reply_to=ack, headers={"Authentication-Results": PASS}))

    outcome = pipeline.process(desk, raw, "test:agent")

    assert outcome.action == "quarantined"
    assert models.Ticket.get_by_id(ticket.id).status == "new"
    assert models.Message.select().where(models.Message.ticket == ticket).count() == 1


def test_agent_address_from_reply_to_held(tmp_path: Path, database_url: str) -> None:
    desk, ticket, ack = two_from_desk(tmp_path, database_url)
    # A colleague's server signs for example.com but checks only the From it can read.
    raw = with_encoded_from(agent_raw(in_reply_to=ack, headers={
        "Authentication-Results": PASS, "Reply-To": MAREK}))

    pipeline.process(desk, raw, "test:agent")

    assert_held_for_marek(ticket)


def test_top_level_domain_pass_held(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"]})
    ticket_outcome = pipeline.process(desk, mail(), "test:user")
    ack = models.Outbox.get(models.Outbox.kind == "ack")
    raw = agent_raw(in_reply_to=ack.message_id, headers={
        "Authentication-Results": "mx.example.com; dkim=pass header.d=com"})

    pipeline.process(desk, raw, "test:agent")

    assert models.Ticket.get_by_id(ticket_outcome.ticket).status == "new"
    assert models.Event.select().where(models.Event.action == "command_rejected").count() == 1
    assert models.Outbox.select().where(models.Outbox.kind == "reply").count() == 0

"""SMTP envelope addresses (RFC 5321) for the addresses the desk stores.

The desk stores an address as the sender wrote it in a header (RFC 5322), lower-cased:
an internationalised domain in Unicode, a local part maybe quoted. ``MAIL FROM`` and
``RCPT TO`` take a narrower form. aiosmtplib 5.1 raises ValueError, before it sends a
command, for an address with white space, angle brackets or a quote outside one quoted
local part, such as ``"j"."an"@example.org``. Without the SMTPUTF8 extension (RFC 6531)
it encodes the address as ASCII only after ``MAIL FROM`` went out, so a non-ASCII
address raised UnicodeEncodeError in the middle of a transaction. Such addresses come
from mail anyone can send, so each is checked here before a command is sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import aiosmtplib

from maildesk.i18n import N_

logger = logging.getLogger(__name__)

# Reasons for leaving a recipient out of the envelope, translated by the outbox for its log.
NOT_SMTP = N_("the address cannot be written in an SMTP command (RFC 5321)")
NEEDS_SMTPUTF8 = N_("the address has a non-ASCII local part, and the SMTP server does not "
                    "offer SMTPUTF8 (RFC 6531)")


@dataclass
class Envelope:
    """The recipients of one outgoing mail in their envelope form.

    ``stored`` maps each envelope address back to the address the desk stores, so that
    the server's refusals reach the right contact. ``left_out`` maps a stored address
    that cannot be sent to the reason (``NOT_SMTP``, ``NEEDS_SMTPUTF8``).
    """

    recipients: list[str] = field(default_factory=list)
    stored: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    smtputf8: bool = False


def envelope_address(address: str) -> str | None:
    """Return ``address`` as ``MAIL FROM`` or ``RCPT TO`` takes it, or None if it has no such form.

    A Unicode domain becomes its IDNA (punycode) form, which every server accepts. A
    non-ASCII local part stays, because it has no ASCII form (it needs SMTPUTF8).
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return None
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    candidate = f"{local}@{domain}"
    try:
        parsed = aiosmtplib.email.parse_address(candidate)
    except ValueError:
        return None
    # parseaddr reads a comment or a route as syntax and returns another mailbox than
    # the one written, so only an address that comes back unchanged is taken.
    return candidate if parsed == candidate else None


def needs_smtputf8(address: str) -> bool:
    """Tell whether an envelope address can only be sent with SMTPUTF8."""
    return not address.isascii()


def plan_envelope(addresses: list[str], smtputf8_offered: bool) -> Envelope:
    """Return the envelope of a mail to ``addresses`` (stored forms, in order)."""
    envelope = Envelope()
    for address in addresses:
        converted = envelope_address(address)
        if converted is None:
            envelope.left_out[address] = NOT_SMTP
            continue
        if needs_smtputf8(converted):
            if not smtputf8_offered:
                envelope.left_out[address] = NEEDS_SMTPUTF8
                continue
            envelope.smtputf8 = True
        envelope.recipients.append(converted)
        envelope.stored[converted] = address
    return envelope

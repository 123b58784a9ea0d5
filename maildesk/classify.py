"""Sort incoming mail into bounces, automatic replies, list traffic, our own mail and
the rest, so that maildesk never answers a machine and never starts a mail loop.

The checks follow RFC 3834 (Auto-Submitted), RFC 3464 (delivery status notifications)
and the headers that Exchange, Gmail, vacation programs and list servers really send.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import StrEnum

from maildesk.parse import ParsedMessage

logger = logging.getLogger(__name__)


class MailKind(StrEnum):
    NORMAL = "normal"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    LIST = "list"
    OWN = "own"


@dataclass(frozen=True)
class Classification:
    kind: MailKind
    reason: str

    @property
    def is_automatic(self) -> bool:
        """True for everything that must never get an automatic answer."""
        return self.kind is not MailKind.NORMAL


_BOUNCE_SENDERS = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mail delivery subsystem)@",
                             re.IGNORECASE)
_OUT_OF_OFFICE_SUBJECT = re.compile(
    r"^\s*(automatyczna odpowied[zź]|odpowied[zź] automatyczna|nieobecno[sś][cć]|"
    r"jestem poza biurem|poza biurem|autoreply|auto[- ]reply|automatic reply|"
    r"out of (the )?office|abwesenheitsnotiz|r[ée]ponse automatique|vacation reply|"
    r"autosvar|automatisch antwoord)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(undeliver(ed|able)|delivery status notification|mail delivery failed|"
    r"returned mail|niedostarczon|nie mo[zż]na dostarczy[cć]|failure notice)",
    re.IGNORECASE,
)
_BULK_PRECEDENCE = ("bulk", "junk", "list", "auto_reply")


def classify(message: ParsedMessage, own_addresses: frozenset[str],
             own_message_domain: str | None = None) -> Classification:
    """Return what kind of mail this is and why; the first matching check wins."""
    sender = message.from_address.normalized if message.from_address else ""

    if sender and sender in own_addresses:
        return Classification(MailKind.OWN, f"From is our own address {sender}")
    if message.header("X-Maildesk-Ticket") is not None and own_message_domain and (
        message.message_id or ""
    ).endswith(f"@{own_message_domain}>"):
        return Classification(MailKind.OWN, "the mail carries our own Message-ID and headers")

    content_type = message.content_type.lower()
    report_type = (message.header("Content-Type") or "").lower()
    if content_type == "multipart/report" and "delivery-status" in report_type:
        return Classification(MailKind.BOUNCE, "multipart/report delivery status notification")
    if message.return_path is not None and message.return_path == "":
        return Classification(MailKind.BOUNCE, "null Return-Path <>")
    if _BOUNCE_SENDERS.match(sender):
        return Classification(MailKind.BOUNCE, f"sent by {sender}")
    if _BOUNCE_SUBJECT.match(message.subject) and not message.in_reply_to and (
        "delivery-status" in report_type or not sender
    ):
        return Classification(MailKind.BOUNCE, "delivery failure subject")

    auto_submitted = (message.header("Auto-Submitted") or "").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return Classification(MailKind.AUTO_REPLY, f"Auto-Submitted: {auto_submitted}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponse", "X-Auto-Response"):
        if message.header(name) is not None:
            return Classification(MailKind.AUTO_REPLY, f"{name} header")
    suppress = (message.header("X-Auto-Response-Suppress") or "").lower()
    if "all" in suppress or "oof" in suppress or "autoreply" in suppress:
        return Classification(MailKind.AUTO_REPLY, f"X-Auto-Response-Suppress: {suppress}")
    if _OUT_OF_OFFICE_SUBJECT.match(message.subject):
        return Classification(MailKind.AUTO_REPLY, "out-of-office subject")

    precedence = (message.header("Precedence") or "").strip().lower()
    if precedence in _BULK_PRECEDENCE:
        kind = MailKind.AUTO_REPLY if precedence == "auto_reply" else MailKind.LIST
        return Classification(kind, f"Precedence: {precedence}")
    for name in ("List-Id", "List-Unsubscribe", "List-Post", "X-Mailman-Version", "Feedback-ID"):
        if message.header(name) is not None:
            return Classification(MailKind.LIST, f"{name} header")

    return Classification(MailKind.NORMAL, "no automatic or list headers")

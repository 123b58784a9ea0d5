"""Check that an agent's authentication covers the header fields the desk acts on.

A DKIM verifier reads the bottom-most instance of each signed header field (RFC 6376,
section 5.4.2), and the desk reads the topmost. A copy of an agent's signed mail with a
new Subject, In-Reply-To or Message-ID added on top still verifies, so without these
checks the desk would run the agent's commands on another ticket, and again on every
copy. A receiving server that writes Authentication-Results verifies the same way.

So an agent's mail is authenticated only when each header field below occurs once at
most, the header block is read the same way by every parser, and a Message-ID makes a
copy count as a duplicate. maildesk's own DKIM check also requires the signature to
cover every instance of the fields in ``SIGNED_HEADERS``. The fields of
``UNTRUSTED_UNLESS_SIGNED`` need not be signed, because common signers leave them out,
but the desk does not act on an unsigned one (``followup.unconfirmed_thread``,
``conversation.acted_on_recipients``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from maildesk.i18n import N_
from maildesk.parse import ParsedMessage
from maildesk.reasons import Reason

# Header fields the desk reads to choose the ticket, the author, how the body is read
# and what an agent's mail does. RFC 5322 (section 3.6) allows each of the first ten
# once, and MIME (RFC 2045) gives a message one Content-Type and one encoding.
SINGLE_HEADERS = ("From", "Sender", "Reply-To", "To", "Cc", "Date", "Message-ID",
                  "In-Reply-To", "References", "Subject", "Content-Type",
                  "Content-Transfer-Encoding")

# The fields a DKIM signature must cover when the mail has them: the Subject's tag
# names the ticket, and Message-ID is the duplicate check's key. DKIM itself requires
# From. Exchange Online (Microsoft 365) signs only From, Date, Subject, Message-ID,
# Content-Type and MIME-Version (often X-MS-Exchange-SenderADCheck too), and Gmail and
# Google Workspace also sign To, Cc, In-Reply-To and References, as the DKIM-Signature
# headers of their mail in public list archives show.
# NOTE: Content-Type decides how the signed body is read but is not required, so that
# agents whose server does not sign it can still run commands. A mail that has one
# cannot get a second (SINGLE_HEADERS), but one without it can get one added.
SIGNED_HEADERS = ("From", "Subject", "Message-ID")

# The fields the desk acts on only when a signature covers them: In-Reply-To and
# References choose the ticket, and To and Cc name who received the mail. Delivered-To
# and X-Original-To are added on delivery, so no sender can sign them.
UNTRUSTED_UNLESS_SIGNED = ("To", "Cc", "In-Reply-To", "References")

# A header field's first line (RFC 5322 section 2.2: printable ASCII except the colon,
# then the colon) or a continuation line.
_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
_CONTINUATION = (b" ", b"\t")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def malformed_header_line(raw: bytes) -> int | None:
    """Return the number of the first header line that parsers may read differently.

    The desk's parser (Python's ``email``) ends a line at a lone CR, and dkimpy does
    not. A line that is neither a field nor a continuation is an error for dkimpy, and
    the desk either ends the header block there or joins the line to the field above
    (``parse.repair_header_block``). Either way the desk and a verifier could read
    different fields. A leading mbox ``From `` line is allowed. Returns None when every
    line is a field or a continuation line.
    """
    block = _BLANK_LINE.split(raw, maxsplit=1)[0]
    lines = block.split(b"\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # a mail without a body ends its header block with one line break
    first = 1 if lines[0].startswith(b"From ") else 0

    for index, line in enumerate(lines):
        if index < first:
            continue
        line = line.removesuffix(b"\r")
        if b"\r" in line:
            return index + 1
        if line.startswith(_CONTINUATION) and index > first:
            continue
        if not _FIELD_LINE.match(line):
            return index + 1
    return None


def repeated_headers(message: ParsedMessage) -> list[str]:
    """Return the fields of ``SINGLE_HEADERS`` that occur more than once, in that order."""
    counts = Counter(name.lower() for name, _value in message.headers)
    return [name for name in SINGLE_HEADERS if counts[name.lower()] > 1]


def header_problem(message: ParsedMessage, raw: bytes) -> Reason | None:
    """Return why the header fields of an agent's mail cannot be authenticated, or None."""
    line = malformed_header_line(raw)
    if line is not None:
        return Reason(N_("malformed header line {line}: the header fields are ambiguous"),
                      line=line)

    repeated = repeated_headers(message)
    if repeated:
        return Reason(N_("header fields repeated: {names} (each may occur once)"),
                      names=", ".join(repeated))

    if message.message_id is None:
        # The duplicate check would fall back to the hash of the raw mail, and a copy
        # with one unsigned header changed would run its commands again.
        return Reason(N_("no Message-ID: a copy of the mail could be processed again"))
    return None


def unsigned_headers(present: Iterable[str], signed: Iterable[str],
                     names: Iterable[str] = SIGNED_HEADERS) -> list[str]:
    """Return the fields of ``names`` with more instances than ``signed`` lists.

    ``present`` names each header field instance of the mail, ``signed`` each entry of a
    DKIM signature's ``h=`` tag, in any letter case. A field the mail does not have is
    never unsigned: when ``h=`` leaves it out, adding it makes it present and unsigned.
    """
    present_counts = Counter(name.lower() for name in present)
    signed_counts = Counter(name.lower() for name in signed)
    return [name for name in names
            if present_counts[name.lower()] > signed_counts[name.lower()]]


def present_headers(message: ParsedMessage,
                    names: Iterable[str] = UNTRUSTED_UNLESS_SIGNED) -> list[str]:
    """Return the fields of ``names`` that the mail has, in that order."""
    present = {name.lower() for name, _value in message.headers}
    return [name for name in names if name.lower() in present]


__all__ = [
    "SIGNED_HEADERS",
    "SINGLE_HEADERS",
    "UNTRUSTED_UNLESS_SIGNED",
    "header_problem",
    "malformed_header_line",
    "present_headers",
    "repeated_headers",
    "unsigned_headers",
]

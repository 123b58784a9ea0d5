"""Quarantine: mail that could not be processed is kept with its error, never dropped.

The raw bytes go to the raw store in the transaction that records why the mail is held,
and the admins get one notice per mail, up to ``NOTICES_PER_HOUR`` an hour.
``maildesk quarantine retry`` processes the mail again once the cause is fixed, and
``maildesk quarantine delete`` takes it off the list without removing its raw bytes.

A mail that its source could not read is held without raw bytes (``quarantine_unread``),
so ``retry`` has nothing to process: the admin makes the mail readable and moves it
back into the mailbox, where the daemon reads it as new mail.
"""

from __future__ import annotations

import email.errors
import email.header
import logging
import re
import traceback as traceback_module
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from maildesk import models
from maildesk.desk import Desk
from maildesk.errors import MaildeskError
from maildesk.i18n import N_, _, translated_label
from maildesk.mailbuild import Recipient
from maildesk.models import database_proxy
from maildesk.notify import desk_context, queue_mail
from maildesk.parse import clean_text
from maildesk.reasons import outcome_text

if TYPE_CHECKING:
    from maildesk.tickets import Outcome

logger = logging.getLogger(__name__)

# The states of an entry, as 'quarantine show' names them.
STATE_LABELS = {
    "held": N_("held, waiting for an admin"),
    "released": N_("released (processed again)"),
    "deleted": N_("deleted (raw mail kept)"),
}

# The line ends of the standard library's email parser (email.feedparser), which the
# pipeline parses with: CRLF, LF, and a lone CR.
_LINE_END = re.compile(rb"\r\n|\r|\n")

# The raw_sha256 of an entry whose mail the source could not read, so nothing is stored.
NO_RAW_MAIL = ""


def _first_line(raw: bytes, name: bytes) -> str:
    """Read a header field from raw bytes without the parser, which may be what failed.

    The field is unfolded (RFC 5322) and its encoded words decoded (RFC 2047), because
    mail clients fold a long From or Subject and encode a name with Polish letters. An
    encoded word that does not decode stays as it is. Control characters other than NUL
    stay, so that ``quarantine list`` and ``show`` print them escaped, as they print
    the raw header.
    """
    prefix = name.lower() + b":"
    found: list[bytes] = []
    for line in raw[:65536].splitlines():
        # Only an empty line ends the header. For the parser, a line of spaces continues
        # the field above it.
        if not line:
            break
        if found and line[:1] in (b" ", b"\t"):
            found.append(line)
        elif found:
            break
        elif line.lower().startswith(prefix):
            found.append(line[len(prefix):])
    if not found:
        return ""

    # PostgreSQL rejects NUL in text, and a header is the sender's to fill.
    value = b"".join(found).strip().decode("utf-8", "replace").replace("\x00", "")
    return _decode_encoded_words(value)[:500]


def _decode_encoded_words(value: str) -> str:
    """Return ``value`` with its RFC 2047 encoded words decoded, or unchanged if they fail."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (email.errors.HeaderParseError, LookupError, UnicodeError, ValueError) as error:
        logger.debug("cannot decode the encoded words of %r: %s", value[:80], error)
        return value


def _raw_lines(raw: bytes) -> Iterator[bytes]:
    """Yield the lines of ``raw`` one at a time, without CRLF or LF but with a lone CR.

    Each line is found only when the caller asks for it, so a caller that stops at the
    end of the header never scans the body.
    """
    start = 0
    for line_end in _LINE_END.finditer(raw):
        end = line_end.end() if line_end.group() == b"\r" else line_end.start()
        yield raw[start:end]
        start = line_end.end()
    if start < len(raw):
        yield raw[start:]


def header_lines(raw: bytes, limit: int) -> tuple[list[bytes], int]:
    """Split the header section of a raw mail into lines without the parser.

    Return the first ``limit`` lines and the number of lines left out. Lines end where
    the email parser ends them: at CRLF, LF or a lone CR. A line that a lone CR ends
    keeps it, so that ``quarantine show`` prints it escaped, as ``\\r``, and the admin
    can tell it from a line that LF ends. The section ends at the first empty line, or
    with the mail when it has none, and the body after it is not read. A line of spaces
    or tabs does not end it, because for the parser it continues the header above.
    """
    lines: list[bytes] = []
    left_out = 0
    for line in _raw_lines(raw):
        if line in (b"", b"\r"):
            break
        if len(lines) < limit:
            lines.append(line)
        else:
            left_out += 1
    return lines, left_out


def quarantine(desk: Desk, raw: bytes, raw_sha256: str, source: str,
               error: BaseException, dedupe_key: str | None = None) -> models.Quarantine:
    """Record a mail that failed, tell the admins, and mark it processed as quarantined."""
    # Cleaned, because the log and the notice mail show it as it is.
    message_id = clean_text(_first_line(raw, b"Message-ID")) or None
    detail = clean_text("".join(traceback_module.format_exception(error)))[-20000:]
    description = clean_text(f"{type(error).__name__}: {error}")[:2000]

    with database_proxy.atomic():
        desk.store.put_message(raw)
        held = models.Quarantine.get_or_none(models.Quarantine.raw_sha256 == raw_sha256,
                                             models.Quarantine.state == "held")
        if held is not None:
            # Tried again and failed again: keep one entry with the latest error, and do
            # not mail the admins a second time about the same mail.
            models.Quarantine.update(error=description, detail=detail).where(
                models.Quarantine.id == held.id).execute()
            _mark_processed(raw_sha256, source)
            logger.warning(_("message {message_id} failed again and stays in quarantine as "
                             "{id}: {error}").format(
                message_id=message_id or _("(no Message-ID)"), id=held.id, error=description))
            held.error = description
            return held

        row = models.Quarantine.create(
            raw_sha256=raw_sha256,
            message_id=message_id,
            sender=_first_line(raw, b"From")[:320],
            subject=_first_line(raw, b"Subject"),
            source=source[:200],
            error=description,
            detail=detail,
        )
        models.Event.create(ticket=None, actor="maildesk", action="quarantined",
                            detail=description)
        _mark_processed(raw_sha256, source)
        _notify_admins(desk, row)

    logger.warning(
        _("message {message_id} from {source} quarantined as {id}: {error}").format(
            message_id=message_id or _("(no Message-ID)"), source=source, id=row.id,
            error=description)
    )
    return row


# At most this many quarantine notices go to the admins per clock hour (UTC). Mail that
# fails the same way in bulk, by accident or sent on purpose, would otherwise bring one
# notice each, and admins are exempt from the limits on automatic mail.
NOTICES_PER_HOUR = 10
_HOUR = timedelta(hours=1)


def _notify_admins(desk: Desk, row: models.Quarantine) -> None:
    """Queue the admins' notice of a new entry, unless this hour's notices are used up.

    It runs in the caller's transaction. The last notice of an hour states that it is,
    and the first notice after an hour with more entries than notices gives the number
    that went without one. Once an hour, the first entry without a notice logs a
    warning. ``maildesk quarantine list`` shows every entry.
    """
    admins = [Recipient(address) for address in desk.config.desk.admin_addresses]
    if not admins:
        return
    hour = models.hour_start(row.created_at)
    rank, unnoticed = _place_in_hour(row)
    if rank > NOTICES_PER_HOUR:
        if rank == NOTICES_PER_HOUR + 1:
            logger.warning(_("the hourly limit of {count} quarantine notices is reached, so "
                             "the admins get none for further quarantined mail until the next "
                             "full hour; 'maildesk quarantine list' shows every entry").format(
                count=NOTICES_PER_HOUR))
        return

    # A mail too broken to read may have no sender and no subject, and one the source
    # could not read has neither. A blank would look like a fault of the notice.
    # The stored sender and subject keep control characters for the CLI to escape, and
    # the notice drops them.
    subject = clean_text(row.subject) or _("(no subject)")
    if not has_raw_mail(row):
        subject = _("(the source could not read the mail)")
    queue_mail(
        desk, template="quarantine_notice", language=desk.config.language,
        context={"desk": desk_context(desk), "quarantine": {
            "id": row.id, "sender": clean_text(row.sender) or "-", "subject": subject,
            "message_id": row.message_id or "-", "source": row.source,
            "error": row.error,
            "retry_command": f"maildesk --config {desk.config.path} quarantine "
                             f"retry {row.id}",
            "show_command": f"maildesk --config {desk.config.path} quarantine "
                            f"show {row.id}",
            "delete_command": f"maildesk --config {desk.config.path} quarantine "
                              f"delete {row.id}",
            "unread": not has_raw_mail(row),
            "notices_per_hour": NOTICES_PER_HOUR,
            "last_notice_until": hour + _HOUR if rank == NOTICES_PER_HOUR else None,
            "unnoticed": unnoticed,
        }},
        to=admins, ticket=None, automatic=True, kind="quarantine",
    )


def _place_in_hour(row: models.Quarantine) -> tuple[int, dict[str, Any] | None]:
    """Return the entry's place among its clock hour's entries, and an earlier overflow.

    The place is exact up to ``NOTICES_PER_HOUR + 2``, because only that many of the
    newest entries are read by id. The overflow is None except for the first entry of
    an hour whose previous entry's hour had more entries than notices. Then it contains
    the number of entries that got no notice and that hour's start and end, and that
    hour's entries are read in full to count them. Entries that two processes write at
    the same moment may both take the last place, so an hour can bring one notice more.
    """
    entry = models.Quarantine
    newest = list(entry.select(entry.id, entry.created_at)
                  .where(entry.id <= row.id)
                  .order_by(entry.id.desc())
                  .limit(NOTICES_PER_HOUR + 2))
    hour = models.hour_start(row.created_at)
    rank = sum(1 for item in newest if item.created_at >= hour)
    earlier = newest[1:]
    if rank != 1 or len(earlier) <= NOTICES_PER_HOUR:
        return rank, None

    start = models.hour_start(earlier[0].created_at)
    if any(item.created_at < start for item in earlier):
        return rank, None
    count = entry.select().where(entry.id < row.id, entry.created_at >= start,
                                 entry.created_at < start + _HOUR).count()
    return rank, {"count": count - NOTICES_PER_HOUR, "start": start, "end": start + _HOUR}


def quarantine_unread(desk: Desk, source: str, error: str) -> models.Quarantine:
    """Record a mail that its source could not read, and tell the admins.

    The entry has no raw mail (``raw_sha256`` is ``NO_RAW_MAIL``) and nothing is marked
    processed, so the mail, once readable and back in the mailbox, is processed like
    new mail. An entry for the same source that is still held is updated instead, so
    a source that failed to move the mail away does not make a second notice.
    """
    description = clean_text(error)[:2000]
    source = source[:200]

    with database_proxy.atomic():
        held = models.Quarantine.get_or_none(models.Quarantine.raw_sha256 == NO_RAW_MAIL,
                                             models.Quarantine.source == source,
                                             models.Quarantine.state == "held")
        if held is not None:
            models.Quarantine.update(error=description).where(
                models.Quarantine.id == held.id).execute()
            logger.warning(_("{source} still cannot be read and stays in quarantine as {id}: "
                             "{error}").format(source=source, id=held.id, error=description))
            held.error = description
            return held

        row = models.Quarantine.create(raw_sha256=NO_RAW_MAIL, message_id=None, sender="",
                                       subject="", source=source, error=description,
                                       detail=None)
        models.Event.create(ticket=None, actor="maildesk", action="quarantined",
                            detail=description)
        _notify_admins(desk, row)

    logger.warning(_("{source} could not be read and is in quarantine as {id}, without its "
                     "raw mail: {error}").format(source=source, id=row.id, error=description))
    return row


def has_raw_mail(row: models.Quarantine) -> bool:
    """Tell whether the entry's raw mail is stored; it is not when the source could not read it."""
    return row.raw_sha256 != NO_RAW_MAIL


def _mark_processed(raw_sha256: str, source: str) -> None:
    # The mail counts as processed, so a source that could not move it away does not
    # quarantine it again on every pass; forget() removes this record.
    models.ProcessedMessage.get_or_create(
        dedupe_key=processed_key(raw_sha256),
        defaults={"raw_sha256": raw_sha256, "source": source[:200], "outcome": "quarantined"},
    )


def delete(quarantine_id: int) -> models.Quarantine | None:
    """Mark a held entry deleted, so ``list`` and ``retry`` pass it over.

    Return the entry, or None when no entry with that id is held. The raw mail stays in
    the store, which has no clean-up for content nothing refers to, and the processed
    mark stays too, so the same bytes arriving again are skipped as already quarantined.
    """
    with database_proxy.atomic():
        # The state is checked in the UPDATE itself, so of two concurrent deletes only
        # one succeeds, and an entry that a retry has released is left alone.
        changed = models.Quarantine.update(state="deleted").where(
            models.Quarantine.id == quarantine_id,
            models.Quarantine.state == "held").execute()
        if not changed:
            return None
        row = models.Quarantine.get_by_id(quarantine_id)

    if not has_raw_mail(row):
        logger.info(_("{source} deleted from quarantine (entry {id}); its source could not "
                      "read it, so no raw mail was stored").format(source=row.source, id=row.id))
        return row
    logger.info(_("message {message_id} deleted from quarantine (entry {id}); its raw mail "
                  "stays stored as sha256 {sha256}").format(
        message_id=row.message_id or _("(no Message-ID)"), id=row.id, sha256=row.raw_sha256))
    return row


class RawMailUnreadableError(MaildeskError):
    """The raw mail of a quarantine entry is missing from the store or cannot be read."""


@dataclass(frozen=True)
class Retried:
    """The result of ``retry``: what became of the mail and of its quarantine entry."""

    outcome: Outcome
    # The retried entry as it is after the retry.
    entry: models.Quarantine
    # Whether this retry changed the entry from held to released. It did not when the
    # mail failed again, or when another command changed the entry while the mail was
    # being processed.
    released: bool
    # The held entry that keeps the mail when it failed again: the retried one, or a new
    # one when another command deleted the retried one meanwhile.
    held: models.Quarantine | None = None


def retry(desk: Desk, quarantine_id: int, rules: Any = None) -> Retried | None:
    """Process a held entry's mail again, and release the entry unless it failed again.

    Return None when no entry with that id is held. Raise RawMailUnreadableError when
    its raw mail cannot be read. The entry is not locked while the mail is processed.
    The processed-message record, whose key is unique, turns a second retry of the same
    mail at the same time into a duplicate instead of a second ticket. A crash between
    the steps leaves the entry held, with its mail processed or not, and the next retry
    finishes the work.
    """
    from maildesk import pipeline  # imports this module

    row = models.Quarantine.get_or_none(models.Quarantine.id == quarantine_id)
    if row is None or row.state != "held":
        return None
    try:
        raw = desk.store.get_message(row.raw_sha256)
    except OSError as error:
        # A file of the storage folder that was deleted or cannot be read.
        raise RawMailUnreadableError(_(
            "cannot read the raw mail of quarantine entry {id} ({error}): restore the file "
            "from a backup and retry").format(id=quarantine_id, error=error)) from error

    message_id = row.message_id or _("(no Message-ID)")
    logger.info(_("retrying message {message_id} from quarantine entry {id}").format(
        message_id=message_id, id=row.id))
    forget(row.raw_sha256)
    outcome = pipeline.process(desk, raw, f"quarantine:{row.id}", rules)

    if outcome.action == "quarantined" or outcome.in_quarantine:
        # quarantine() has logged the failure and updated the held entry, a new one if
        # another command deleted this one meanwhile. A duplicate in quarantine means
        # that the same mail, retried or delivered at the same time, failed again after
        # forget() above.
        held = models.Quarantine.get_or_none(models.Quarantine.raw_sha256 == row.raw_sha256,
                                             models.Quarantine.state == "held")
        return Retried(outcome, models.Quarantine.get_by_id(row.id), released=False,
                       held=held)

    # The state is checked in the UPDATE itself, as in delete(), so an entry that another
    # command deleted or released while the mail was processed keeps that state.
    released = models.Quarantine.update(state="released").where(
        models.Quarantine.id == row.id, models.Quarantine.state == "held").execute()
    entry = models.Quarantine.get_by_id(row.id)
    result = outcome_text(outcome.action, outcome.ticket, outcome.reason)
    if released:
        logger.info(_("message {message_id} released from quarantine (entry {id}): "
                      "{outcome}").format(message_id=message_id, id=row.id, outcome=result))
    else:
        logger.warning(_("another command changed quarantine entry {id} while its message "
                         "{message_id} was processed again, so the entry stays as it is "
                         "now ({state}): {outcome}").format(
            id=row.id, message_id=message_id,
            state=translated_label(STATE_LABELS, entry.state), outcome=result))
    return Retried(outcome, entry, released=bool(released))


def processed_key(raw_sha256: str) -> str:
    """Return the dedupe key that marks a mail as quarantined, by its raw bytes."""
    return f"quarantine:{raw_sha256}"


def forget(raw_sha256: str) -> None:
    """Remove the processed mark, so the mail can be processed again."""
    models.ProcessedMessage.delete().where(
        models.ProcessedMessage.dedupe_key == processed_key(raw_sha256)).execute()

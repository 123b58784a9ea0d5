"""Deleting closed tickets after their retention period, with the mail they stored.

A desk keeps personal data only as long as it needs it (GDPR, in Poland RODO). Closed
tickets older than the period the desk has set are deleted with their messages,
attachments, participants, thread references, audit trail and sent mail. The raw mails
and attachment files that nothing else refers to any more are removed from the storage
folder. Mail of no ticket sent before the same day goes too, and so do the contacts
known since before it whom no ticket names any more.

The dedupe records of the incoming mails stay, without their ticket, so a copy of an
old mail that arrives again byte for byte is still known as a copy. They contain the
sender's address, a Message-ID and a hash, no content. A copy whose transport headers
differ can no longer be compared with the deleted mail, so it makes a new ticket, as
any mail does whose Message-ID is taken by a mail that cannot be read.

Tickets are deleted in chunks, one transaction each, so a long purge does not hold the
database's write lock for long and a daemon goes on receiving mail meanwhile. Before a
chunk commits, the content its tickets named is listed in a journal file in the storage
folder, and the content is removed after the commit. A purge that was stopped between
the two finds the journal at its next run and removes what nothing names by then.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import peewee as pw

from maildesk import faults, models, notify
from maildesk.desk import Desk
from maildesk.i18n import _
from maildesk.lifecycle import Status
from maildesk.models import database_proxy, to_utc, utcnow

logger = logging.getLogger(__name__)

# Tickets deleted in one transaction.
_CHUNK = 200
# Outbox states of mail that is done with: sent, or given up.
_FINISHED_MAIL = ("sent", "failed", "cancelled")
# The journal in the storage folder: one "kind sha256" line per content that a committed
# chunk may have left without a reference.
PENDING_REMOVALS = "purge-pending"


@dataclass
class PurgeReport:
    """The counts of a purge: what it deleted, or would delete in a dry run."""

    tickets: int = 0
    messages: int = 0
    attachments: int = 0
    outgoing: int = 0
    stored_contents: int = 0
    contacts: int = 0
    # Tickets kept because mail of theirs still waits in the outbox.
    kept_for_outbox: int = 0
    # The number of the newest ticket when it is old and closed but kept (SQLite only).
    kept_newest: int | None = None


def purgeable(closed_before: datetime) -> pw.ModelSelect[models.Ticket]:
    """Select the closed tickets whose closing is before ``closed_before`` (aware).

    On SQLite the ticket with the highest number is never selected. SQLite numbers a
    new row one above the highest row left, so deleting that ticket would give its number
    to the next ticket, and old mail tagged with it would join a stranger's ticket. A
    later purge deletes it, once a newer ticket has the highest number.
    """
    query = (models.Ticket.select(models.Ticket.id)
             .where(models.Ticket.status == Status.CLOSED,
                    models.Ticket.closed_at < to_utc(closed_before)))
    if not models.is_postgresql():
        query = query.where(models.Ticket.id != _newest_number())
    return query


def _newest_number() -> pw.SelectQuery:
    return models.Ticket.select(pw.fn.MAX(models.Ticket.id))


def _kept_newest(closed_before: datetime) -> int | None:
    """Return the number of the newest ticket if ``purgeable`` leaves it out only for SQLite."""
    if models.is_postgresql():
        return None
    number: int | None = (models.Ticket.select(models.Ticket.id)
                          .where(models.Ticket.status == Status.CLOSED,
                                 models.Ticket.closed_at < to_utc(closed_before),
                                 models.Ticket.id == _newest_number())
                          .scalar())
    return number


def preview(closed_before: datetime) -> PurgeReport:
    """Count what ``purge`` would delete, changing nothing."""
    tickets = purgeable(closed_before)
    waiting = _with_waiting_mail(tickets)
    kept = models.Ticket.select(models.Ticket.id).where(
        models.Ticket.id.in_(tickets), models.Ticket.id.not_in(waiting))
    messages = models.Message.select(models.Message.id).where(models.Message.ticket.in_(kept))
    return PurgeReport(
        tickets=kept.count(),
        messages=messages.count(),
        attachments=models.Attachment.select().where(
            models.Attachment.message.in_(messages)).count(),
        outgoing=(models.Outbox.select().where(models.Outbox.ticket.in_(kept),
                                               models.Outbox.created_at < _limits_start())
                  .count() + _ticketless_mail(closed_before).count()),
        contacts=_unused_contacts(closed_before, leaving=kept).count(),
        kept_for_outbox=waiting.count(),
        kept_newest=_kept_newest(closed_before),
    )


def purge(desk: Desk, closed_before: datetime, actor: str = "admin") -> PurgeReport:
    """Delete the closed tickets closed before ``closed_before`` and their stored mail."""
    report = PurgeReport()
    logger.info(_("deleting the tickets closed before {moment}").format(
        moment=desk.local_time(closed_before)))
    report.kept_for_outbox = _with_waiting_mail(purgeable(closed_before)).count()

    journal = desk.store.root / PENDING_REMOVALS
    report.stored_contents += _discard_unreferenced(desk, _read_journal(journal))
    last_id = 0
    while True:
        with database_proxy.atomic():
            chunk = [row.id for row in purgeable(closed_before)
                     .where(models.Ticket.id > last_id,
                            models.Ticket.id.not_in(_with_waiting_mail(purgeable(closed_before))))
                     .order_by(models.Ticket.id).limit(_CHUNK)]
            if not chunk:
                break
            candidates = _delete_tickets(chunk, report)
            _write_journal(journal, candidates)
        faults.crash_point("purge-after-chunk")
        report.stored_contents += _discard_unreferenced(desk, candidates)
        last_id = chunk[-1]
    journal.unlink(missing_ok=True)
    with database_proxy.atomic():
        report.outgoing += _delete_ticketless_mail(closed_before)
        # The record of the daily summaries sent then names agents, not requesters, and
        # nothing reads a past day's rows.
        summary = models.DailySummarySent
        summary.delete().where(summary.sent_at < to_utc(closed_before)).execute()
    report.contacts = _delete_unused_contacts(closed_before)
    report.kept_newest = _kept_newest(closed_before)

    models.Event.create(ticket=None, actor=actor, action="tickets_purged",
                        detail=json.dumps({"closed_before": closed_before.isoformat(),
                                           "tickets": report.tickets,
                                           "messages": report.messages,
                                           "attachments": report.attachments,
                                           "outgoing": report.outgoing,
                                           "contacts": report.contacts,
                                           "stored_contents": report.stored_contents}))
    logger.info(_("closed tickets deleted: {tickets}, messages: {messages}, attachments: "
                  "{attachments}; stored mails and files removed: {contents}")
                .format(tickets=report.tickets, messages=report.messages,
                        attachments=report.attachments, contents=report.stored_contents))
    logger.info(_("sent mails deleted: {outgoing}; contacts that no ticket names any more, "
                  "deleted: {contacts}").format(outgoing=report.outgoing,
                                                contacts=report.contacts))
    return report


def _with_waiting_mail(tickets: pw.SelectQuery) -> pw.ModelSelect[models.Outbox]:
    """Select the tickets among ``tickets`` with outgoing mail that is not done with."""
    return (models.Outbox.select(models.Outbox.ticket)
            .where(models.Outbox.ticket.in_(tickets),
                   models.Outbox.state.not_in(_FINISHED_MAIL)))


def _delete_tickets(numbers: list[int], report: PurgeReport) -> set[tuple[str, str]]:
    """Delete one chunk of tickets; return the (kind, sha256) of the content they named."""
    messages = models.Message.select(models.Message.id).where(
        models.Message.ticket.in_(numbers))
    attachments = list(models.Attachment.select(models.Attachment.sha256)
                       .where(models.Attachment.message.in_(messages)))
    raw = [str(row.raw_sha256) for row in models.Message.select(models.Message.raw_sha256)
           .where(models.Message.ticket.in_(numbers), models.Message.raw_sha256.is_null(False))]

    # A ticket that continues a deleted one keeps its own history, without the link.
    models.Ticket.update(linked_ticket=None).where(
        models.Ticket.linked_ticket.in_(numbers)).execute()
    # A duplicate merged into a deleted ticket stays closed, without the link.
    models.Ticket.update(merged_into=None).where(
        models.Ticket.merged_into.in_(numbers)).execute()
    # With this outcome the pipeline does not store a later copy of the mail again.
    models.ProcessedMessage.update(ticket=None, outcome=models.PURGED_OUTCOME).where(
        models.ProcessedMessage.ticket.in_(numbers)).execute()
    # Mail of the last hour stays without its ticket, because the hourly limits count
    # it (see _ticketless_mail). A later purge deletes it as mail of no ticket.
    report.outgoing += models.Outbox.delete().where(
        models.Outbox.ticket.in_(numbers), models.Outbox.created_at < _limits_start()).execute()
    models.Outbox.update(ticket=None).where(models.Outbox.ticket.in_(numbers)).execute()
    report.attachments += models.Attachment.delete().where(
        models.Attachment.message.in_(messages)).execute()
    report.messages += models.Message.delete().where(
        models.Message.ticket.in_(numbers)).execute()
    for model in (models.Participant, models.MessageReference, models.Event,
                  models.SlaNotice):
        model.delete().where(model.ticket.in_(numbers)).execute()
    report.tickets += models.Ticket.delete().where(models.Ticket.id.in_(numbers)).execute()
    return ({("attachments", row.sha256) for row in attachments}
            | {("raw", sha256) for sha256 in raw})


def _delete_ticketless_mail(before: datetime) -> int:
    """Delete the sent or given-up mail of no ticket older than ``before``.

    Rejections, loop alerts, quarantine and rules notices belong to no ticket, and they
    quote the subject or the address of the mail they are about.
    """
    outbox = models.Outbox
    deleted: int = outbox.delete().where(outbox.id.in_(_ticketless_mail(before))).execute()
    return deleted


def _ticketless_mail(before: datetime) -> pw.ModelSelect[models.Outbox]:
    """Select the finished mail of no ticket older than ``before``.

    Mail of the last hour stays whatever ``before`` is: deleting a row deletes the
    recipients that the hourly limits of automatic mail count, and a mail loop would
    get a fresh hour.
    """
    outbox = models.Outbox
    return outbox.select(outbox.id).where(outbox.ticket.is_null(),
                                          outbox.state.in_(_FINISHED_MAIL),
                                          outbox.created_at < min(to_utc(before),
                                                                  _limits_start()))


def _limits_start() -> datetime:
    """Return the start of the window the hourly limits of automatic mail count (naive UTC)."""
    return utcnow() - max(notify.ADDRESS_LIMIT_WINDOW, notify.DESK_LIMIT_WINDOW)


def _delete_unused_contacts(before: datetime) -> int:
    """Delete the contacts known since before ``before`` whom no ticket names any more.

    A contact whose mail bounced on or after ``before`` stays with its mark. Without it
    maildesk would write to the dead address again, and a delivery report about mail
    that also went to others cannot set the mark back (maildesk.bounces).

    NOTE: on PostgreSQL the daemon may read such a contact for a new mail just before
    it is deleted. The mail's ticket then fails its foreign key, and the mail goes to the
    quarantine, from which it can be retried. When the daemon's ticket or Cc commits
    first, the deletion fails instead, and the next purge deletes the contacts.
    """
    contact = models.Contact
    try:
        with database_proxy.atomic():
            deleted: int = contact.delete().where(
                contact.id.in_(_unused_contacts(before))).execute()
    except pw.IntegrityError as error:
        logger.warning(_("no contact deleted: a mail named one of them while the purge ran; "
                         "the next purge deletes them ({error})").format(error=error))
        return 0
    return deleted


def _unused_contacts(before: datetime, leaving: pw.SelectQuery | None = None
                     ) -> pw.ModelSelect[models.Contact]:
    """Select the contacts that ``_delete_unused_contacts`` deletes.

    With ``leaving``, the tickets it selects count as deleted already, so a preview
    counts the contacts only they name.
    """
    contact, ticket, participant = models.Contact, models.Ticket, models.Participant
    requesters = ticket.select(ticket.requester)
    participants = participant.select(participant.contact)
    if leaving is not None:
        requesters = requesters.where(ticket.id.not_in(leaving))
        participants = participants.where(participant.ticket.not_in(leaving))
    return contact.select(contact.id).where(
        contact.created_at < to_utc(before), contact.id.not_in(requesters | participants),
        contact.bounced_at.is_null() | (contact.bounced_at < to_utc(before)))


def _write_journal(journal: Path, candidates: Iterable[tuple[str, str]]) -> None:
    """Append ``candidates`` to the journal and flush it to disk before the chunk commits."""
    journal.parent.mkdir(parents=True, exist_ok=True)
    with journal.open("a", encoding="ascii") as file:
        file.writelines(f"{kind} {sha256}\n" for kind, sha256 in sorted(candidates))
        file.flush()
        os.fsync(file.fileno())


def _read_journal(journal: Path) -> set[tuple[str, str]]:
    """Return the content an interrupted purge listed and may not have removed."""
    try:
        lines = journal.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        return set()
    pending = {(kind, sha256) for kind, _space, sha256 in
               (line.partition(" ") for line in lines) if kind and sha256}
    logger.warning(_("an earlier purge stopped before it removed the stored mails and files "
                     "of the tickets it deleted; removing them now"))
    return pending


def _discard_unreferenced(desk: Desk, candidates: Iterable[tuple[str, str]]) -> int:
    """Remove each candidate content that no message, attachment or held mail names.

    NOTE: a mail that brings the same bytes while a purge runs may find the file still
    there, skip writing it, and lose it to the purge a moment later. The window is the
    time between this check and the file's removal.
    """
    removed = 0
    ordered = sorted(candidates)
    used: set[str] = set()
    for start in range(0, len(ordered), _CHUNK):
        used |= _referenced_among({sha256 for _kind, sha256 in ordered[start:start + _CHUNK]})
    for kind, sha256 in ordered:
        if sha256 in used:
            continue
        with database_proxy.atomic():
            removed += models.StoredContent.delete().where(
                models.StoredContent.sha256 == sha256).execute()
        path = desk.store.path_for(kind, sha256)
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as error:
            logger.warning(_("cannot remove the stored file {path}: {error}").format(
                path=path, error=error))
    return removed


def _referenced_among(hashes: set[str]) -> set[str]:
    """Return those of ``hashes`` that anything still names, as a raw mail or an attachment.

    Both kinds are checked whatever the candidate's kind: the database keeps one row per
    sha256, so the same bytes stored as a mail and as an attachment share it. One query
    per table for the whole set: Message.raw_sha256 has no index, and a query per hash
    would read the message table once for each.
    """
    if not hashes:
        return set()
    attachment, message, held = models.Attachment, models.Message, models.Quarantine
    return ({row.sha256 for row in attachment.select(attachment.sha256)
             .where(attachment.sha256.in_(hashes))}
            | {str(row.raw_sha256) for row in message.select(message.raw_sha256)
               .where(message.raw_sha256.in_(hashes))}
            | {row.raw_sha256 for row in held.select(held.raw_sha256)
               .where(held.raw_sha256.in_(hashes), held.state == "held")})

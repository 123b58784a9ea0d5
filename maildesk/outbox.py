"""Deliver the outbox: claim rows, send them with aiosmtplib, record the result.

Sending happens after commit and never inside a transaction. A row is claimed (state
``sending``) in a short transaction. Right before its SMTP transaction the claim is
renewed with a compare-and-set on the owner, so a row that another process requeued in
the meantime is skipped instead of sent twice. The row is marked ``sent`` right after
the server's 250 reply, before the next row is sent.
Temporary failures (4xx, connection refused, timeouts) are retried with exponential
backoff; permanent ones (5xx) mark the row ``failed`` with the server's answer, and a
refused recipient is recorded as bounced so maildesk stops writing to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import peewee as pw

from maildesk import databaseerrors, faults, models, statements, workers
from maildesk.config import SmtpConfig
from maildesk.envelope import (
    NOT_SMTP,
    Envelope,
    envelope_address,
    needs_smtputf8,
    plan_envelope,
)
from maildesk.i18n import _, ngettext
from maildesk.models import database_proxy, is_postgresql, utcnow

logger = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=4)
# How long a mail waits while the server as a whole fails before it is given up. Such
# failures are: unreachable, login rejected, a 421 reply, the outgoing directory not
# writable, or the connection lost after an earlier mail of the batch. An MTA keeps a message in its
# queue for days too, whatever the number of attempts.
MAX_QUEUE_AGE = timedelta(days=5)
# A row left in "sending" this long belongs to a process that died while sending. The
# claim is renewed before each row's SMTP transaction, so this must exceed the time one
# transaction may take (a few commands, each bounded by the SMTP timeout).
STALE_CLAIM = timedelta(minutes=10)
# Enhanced status codes (RFC 3463) that mean the address itself is bad: X.0.0 (other),
# every X.1.x (addressing), X.2.0 and X.2.1 (mailbox unknown or disabled), X.4.0 and X.4.4
# (no route to the domain). A full mailbox (X.2.2), an expired delivery (X.4.7) and policy
# (X.7), system (X.3), protocol (X.5) or content (X.6) refusals tell nothing lasting
# about the address, e.g. "554 5.7.1 Relay access denied".
_ADDRESS_STATUS_CODES = frozenset({"0.0", "2.0", "2.1", "4.0", "4.4"})
_ENHANCED_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# RFC 5321's reply to any command when the server is shutting down or overloaded; the
# server closes the connection after it.
SERVICE_CLOSING = 421


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: 30 s, 1 min, 2 min, ... capped at 4 hours."""
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), MAX_RETRY)


def recover_stale_claims(now_offset: timedelta = STALE_CLAIM) -> int:
    """Put rows claimed by a process that died back in the queue; return how many.

    A claim is stale once it is ``now_offset`` old, or at once when its owner is a
    process on this host that no longer runs. So a daemon restarted right after a crash
    sends the mail that the dead one claimed. Every delivery pass calls this.

    NOTE: a process killed after the SMTP server accepted a mail but before the row was
    marked sent leaves the row in "sending". The mail is then sent again with the same
    Message-ID, which mail clients and most servers use to drop the copy. The window is
    the time between the server's 250 reply to DATA and the commit of one UPDATE. A
    connection that breaks after the server sent 250 but before the reply arrived is the
    same case, because the client cannot tell it from a refusal.
    """
    outbox = models.Outbox
    cutoff = utcnow() - now_offset
    owners = {row.claimed_by for row in
              outbox.select(outbox.claimed_by).where(outbox.state == "sending").distinct()}
    dead_owners = sorted(owner for owner in owners if owner and workers.is_dead_local(owner))
    stale = outbox.next_attempt_at <= cutoff
    if dead_owners:
        stale = stale | outbox.claimed_by.in_(dead_owners)
    count: int = (
        outbox.update(state="pending", claimed_by=None, next_attempt_at=utcnow())
        .where(outbox.state == "sending", stale)
        .execute()
    )
    if count:
        logger.warning(ngettext(
            "requeued {count} outgoing mail left in sending by a stopped process",
            "requeued {count} outgoing mails left in sending by a stopped process",
            count).format(count=count))
    return count


def requeue_own_claims(owner: str) -> int:
    """Put rows that this process claimed in an interrupted pass back in the queue.

    A pass that the database failed in the middle of leaves its claimed rows in
    "sending" under a live owner, which ``recover_stale_claims`` would requeue only
    after STALE_CLAIM. One process sends in one pass at a time, so at the start of a
    pass none of its own claims is in flight.
    """
    outbox = models.Outbox
    count: int = (
        outbox.update(state="pending", claimed_by=None, next_attempt_at=utcnow())
        .where(outbox.state == "sending", outbox.claimed_by == owner)
        .execute()
    )
    if count:
        logger.warning(ngettext(
            "requeued {count} outgoing mail that an interrupted delivery pass of this "
            "process had claimed",
            "requeued {count} outgoing mails that an interrupted delivery pass of this "
            "process had claimed", count).format(count=count))
    return count


def claim(limit: int = 50, owner: str | None = None) -> list[models.Outbox]:
    """Mark up to ``limit`` due rows as sending and return them (SKIP LOCKED on PostgreSQL).

    The transaction reads only the ids, and the rows with their mail are read after it,
    so the write lock (the whole file on SQLite) is held for two short statements.
    """
    owner = owner or workers.worker_id()
    now = utcnow()
    with database_proxy.atomic():
        query = (
            models.Outbox.select(models.Outbox.id)
            .where(models.Outbox.state == "pending", models.Outbox.next_attempt_at <= now)
            .order_by(models.Outbox.id)
            .limit(limit)
        )
        if is_postgresql():
            query = query.for_update(skip_locked=True)
        ids = [row.id for row in query]
        if not ids:
            return []
        models.Outbox.update(
            state="sending", claimed_by=owner, attempts=models.Outbox.attempts + 1,
            next_attempt_at=now,
        ).where(models.Outbox.id.in_(ids)).execute()
    return list(models.Outbox.select().where(models.Outbox.id.in_(ids))
                .order_by(models.Outbox.id))


def mark_sent(row: models.Outbox, note: str | None = None) -> None:
    statements.update(models.Outbox, row.id, state="sent", sent_at=utcnow(), last_error=note,
                      deferred=None)
    _log_sent(row)


def mark_all_sent(rows: list[models.Outbox]) -> None:
    """Mark ``rows`` sent with one statement, in one transaction."""
    if not rows:
        return
    models.Outbox.update(state="sent", sent_at=utcnow(), last_error=None).where(
        models.Outbox.id.in_([row.id for row in rows])).execute()
    for row in rows:
        _log_sent(row)


def _log_sent(row: models.Outbox) -> None:
    recipients = (row.deferred or row.recipients).strip()
    if row.ticket_id is None:
        logger.info(_("sent {message_id} ({kind}) to {recipients}").format(
            message_id=row.message_id, kind=row.kind, recipients=recipients))
        return
    logger.info(_("sent {message_id} ({kind}, ticket {ticket}) to {recipients}").format(
        message_id=row.message_id, kind=row.kind, ticket=row.ticket_id, recipients=recipients))


def mark_retry(row: models.Outbox, error: str, max_attempts: int) -> None:
    if row.attempts >= max_attempts:
        mark_failed(row, ngettext("gave up after {attempts} attempt: {error}",
                                  "gave up after {attempts} attempts: {error}",
                                  row.attempts).format(attempts=row.attempts, error=error))
        return
    delay = retry_delay(row.attempts)
    models.Outbox.update(state="pending", claimed_by=None, last_error=error[:2000],
                         next_attempt_at=utcnow() + delay).where(
        models.Outbox.id == row.id).execute()
    logger.warning(_("sending {message_id} (ticket {ticket}) failed (attempt {attempts}), "
                     "retrying in {seconds} s: {error}").format(
        message_id=row.message_id, ticket=row.ticket_id or "-", attempts=row.attempts,
        seconds=int(delay.total_seconds()), error=error))


def mark_deferred(row: models.Outbox, deferred: list[str], error: str,
                  max_attempts: int) -> None:
    """Keep a row due for the recipients the server deferred (4xx) while it took the rest.

    The next attempt goes to ``deferred`` alone, so no recipient gets the mail twice. Like any
    retry it counts against ``max_attempts``.
    """
    if row.attempts >= max_attempts:
        # The failed row keeps the list, so "outbox retry" sends to them alone too.
        mark_failed(row, ngettext(
            "gave up on {recipients} after {attempts} attempt: {error}",
            "gave up on {recipients} after {attempts} attempts: {error}",
            row.attempts).format(recipients=" ".join(deferred), attempts=row.attempts,
                                 error=error), deferred)
        return
    delay = retry_delay(row.attempts)
    models.Outbox.update(state="pending", claimed_by=None, deferred=" ".join(deferred),
                         last_error=error[:2000], next_attempt_at=utcnow() + delay).where(
        models.Outbox.id == row.id).execute()
    logger.warning(_("the server deferred {message_id} (ticket {ticket}) for {recipients} "
                     "(attempt {attempts}), retrying for them in {seconds} s: {error}").format(
        message_id=row.message_id, ticket=row.ticket_id or "-", recipients=" ".join(deferred),
        attempts=row.attempts, seconds=int(delay.total_seconds()), error=error))


def outage_delay(age: timedelta) -> timedelta:
    """Return the wait while the server as a whole fails: half the mail's time in the queue.

    The wait grows with the outage, from 30 s up to 4 hours, as an MTA's queue backs off,
    without counting the mail's attempts, which such a failure does not use up.
    """
    return min(max(age / 2, FIRST_RETRY), MAX_RETRY)


def mark_postponed(rows: list[models.Outbox], error: str,
                   delay: timedelta | None = None) -> None:
    """Put rows back in the queue after a failure of the whole server, with one log line.

    Such a failure is not caused by the mails: the attempt their claim counted is taken
    back, and a row is given up only once it is older than MAX_QUEUE_AGE, not after
    ``max_attempts``. Without ``delay``, each row waits ``outage_delay`` of its age.
    """
    if not rows:
        return
    now = utcnow()
    waiting = []
    for row in rows:
        age = now - row.created_at if row.created_at is not None else timedelta(0)
        if age >= MAX_QUEUE_AGE:
            mark_failed(row, _("gave up after {days} days in the queue: {error}").format(
                days=MAX_QUEUE_AGE.days, error=error))
            continue
        row_delay = outage_delay(age) if delay is None else delay
        models.Outbox.update(state="pending", claimed_by=None, last_error=error[:2000],
                             attempts=max(row.attempts - 1, 0),
                             next_attempt_at=now + row_delay).where(
            models.Outbox.id == row.id).execute()
        waiting.append(row_delay)
    if waiting:
        logger.warning(ngettext(
            "{count} mail waits for the next attempt in {seconds} s or later: {error}",
            "{count} mails wait for the next attempt in {seconds} s or later: {error}",
            len(waiting)).format(count=len(waiting), seconds=int(min(waiting).total_seconds()),
                                 error=error))


def release(rows: list[models.Outbox]) -> None:
    """Give claimed rows back to the queue as they were, due at once: nothing failed."""
    if not rows:
        return
    untried = pw.Case(None, [(models.Outbox.attempts > 0, models.Outbox.attempts - 1)], 0)
    models.Outbox.update(state="pending", claimed_by=None, next_attempt_at=utcnow(),
                         attempts=untried).where(
        models.Outbox.id.in_([row.id for row in rows])).execute()
    logger.info(ngettext("{count} mail stays in the outbox for the next start",
                         "{count} mails stay in the outbox for the next start",
                         len(rows)).format(count=len(rows)))


def mark_failed(row: models.Outbox, error: str, deferred: list[str] | None = None) -> None:
    """Mark a row failed; ``deferred`` replaces the recipients still owed the mail."""
    values: dict[str, Any] = {"state": "failed", "claimed_by": None, "last_error": error[:2000]}
    if deferred is not None:
        values["deferred"] = " ".join(deferred)
    models.Outbox.update(**values).where(models.Outbox.id == row.id).execute()
    logger.error(_("sending {message_id} (ticket {ticket}) failed permanently: {error}").format(
        message_id=row.message_id, ticket=row.ticket_id or "-", error=error))


def is_address_failure(code: int, message: str) -> bool:
    """Tell whether a permanent SMTP or DSN failure means the address cannot receive mail."""
    if code < 500:
        return False
    match = _ENHANCED_STATUS.search(message)
    if match is None:
        # Without an enhanced status, only "mailbox unavailable" codes name the address.
        return code in (550, 551, 553)
    subject, detail = match.group(2), match.group(3)
    return subject == "1" or f"{subject}.{detail}" in _ADDRESS_STATUS_CODES


def renew_claim(row: models.Outbox) -> bool:
    """Renew this process's claim on a row right before sending it; False if it was lost."""
    renewed: int = models.Outbox.update(next_attempt_at=utcnow()).where(
        models.Outbox.id == row.id, models.Outbox.state == "sending",
        models.Outbox.claimed_by == row.claimed_by,
    ).execute()
    if not renewed:
        logger.warning(_("outgoing mail {message_id} was taken over by another process; "
                         "not sending it here").format(message_id=row.message_id))
    return bool(renewed)


def record_bounce(address: str, reason: str) -> None:
    """Mark an address as bounced, so maildesk writes no mail to it until the mark is cleared."""
    contact, _created = models.Contact.get_or_create(address=address.lower())
    models.Contact.update(bounced_at=utcnow(), bounce_reason=reason[:2000]).where(
        models.Contact.id == contact.id).execute()
    logger.warning(_("{address} refused mail permanently: {reason}").format(
        address=address, reason=reason))


def _tls_context(config: SmtpConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)


class _ConnectionLost(Exception):
    """The SMTP connection broke during one row; the rows after it must wait."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class _ServiceClosing(Exception):
    """A 421 reply of the SMTP server (RFC 5321: service not available, closing channel).

    The reply concerns the server, not the mail. So the row that got it and the rows
    after it wait as for an unreachable server, and no attempt is counted against the row.
    ``after_data`` marks a 421 to DATA, which a filter that judged the mail's content
    may send too.
    """

    def __init__(self, error: str, after_data: bool = False) -> None:
        super().__init__(error)
        self.error = error
        self.after_data = after_data


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, keeping the last 421 reply it got.

    aiosmtplib closes the connection on a 421. A 421 to one RCPT of several is then
    seen only as the next RCPT or DATA failing with "Server not connected".
    """

    closing_reply: str | None = None

    async def execute_command(self, *args: bytes, **options: Any) -> aiosmtplib.SMTPResponse:
        response = await super().execute_command(*args, **options)
        if response.code == SERVICE_CLOSING:
            self.closing_reply = f"{response.code} {response.message}"
        return response


class Sender:
    """Delivers claimed rows through one SMTP connection per batch, or into a folder."""

    def __init__(self, config: SmtpConfig, local_hostname: str = "localhost") -> None:
        self.config = config
        self.local_hostname = local_hostname
        # Ids of the rows the last deliver_due() claimed, sent or not (for the CLI report).
        self.attempted: list[int] = []
        # Set when a connection broke while a mail was sent: deliver_due() then stops, so
        # a server that drops every mail costs one connection per pass, not one per mail.
        self.connection_lost = False
        # Set when the server could not be reached or rejected the login. deliver_due()
        # then stops too, so a server that is down costs one connection attempt per pass,
        # not one per batch of 50 mails. Each attempt may last up to smtp.timeout.
        self.unreachable = False
        # Asked between mails: once it returns True, the pass ends and the rows it had
        # claimed but not sent go back to the queue, due at once (the daemon's stop).
        self.stop_requested: Callable[[], bool] = lambda: False
        # Rows the SMTP server accepted whose sent mark the database did not take, with
        # the note of refused recipients and the deferred ones: the next pass records
        # them instead of sending them again. NOTE: they are kept in memory only, so a
        # process that stops before the database is reachable again leaves them to be
        # sent a second time by the next.
        self.unrecorded: list[tuple[models.Outbox, str | None, list[str]]] = []

    def deliver_due(self, limit: int = 50) -> int:
        """Claim and deliver due rows until none are left; return how many were sent.

        Rows that a dead process left claimed are requeued first. A connection that
        breaks while a mail is sent ends the pass, and the rest of its batch is due at once.
        A server that cannot be reached ends it too: the claimed batch waits for its retry,
        and the rows not claimed yet stay due for the next pass.

        Raises RuntimeError inside a database transaction: a mail sent there would go
        out even if the transaction that caused it rolled back.
        """
        if database_proxy.in_transaction():
            raise RuntimeError("Sender.deliver_due() called inside a database transaction")
        sent = 0
        self.attempted = []
        self.connection_lost = self.unreachable = False
        self._record_unrecorded()
        requeue_own_claims(workers.worker_id())
        recover_stale_claims()
        while not (self.connection_lost or self.unreachable or self.stop_requested()):
            rows = claim(limit)
            if not rows:
                return sent
            self.attempted.extend(row.id for row in rows)
            # The sent marks of a batch reach the disk together at its end, not one
            # flush per mail. A mark lost when the database server crashes means the
            # mail goes out again, as when the daemon dies between sending and marking.
            with models.deferred_durability():
                if self.config.transport == "directory":
                    sent += self._write_to_directory(rows)
                else:
                    sent += asyncio.run(self._send_batch(rows))
        return sent

    def _record_unrecorded(self) -> None:
        """Record the rows whose result the database did not take in an earlier pass."""
        while self.unrecorded:
            row, note, deferred = self.unrecorded[0]
            self._record_result(row, note, deferred)
            self.unrecorded.pop(0)

    def _record_result(self, row: models.Outbox, note: str | None,
                       deferred: list[str]) -> None:
        """Mark a row the server took sent, or due again for the recipients it deferred."""
        if deferred:
            mark_deferred(row, deferred, note or "", self.config.max_attempts)
        else:
            mark_sent(row, note)

    def _write_to_directory(self, rows: list[models.Outbox]) -> int:
        """Write each row to a file, then mark the written rows sent in one transaction.

        A row that cannot be written is retried like SMTP. A file is named by the row's
        creation time and id, so a row written again after a crash (before its mark)
        replaces its file instead of adding a second copy. One statement marks the batch,
        where a mark per mail took a write transaction each.

        NOTE: a process killed between the files and that statement leaves the whole
        batch (up to 50 files) unmarked. A program that took a file from the folder
        meanwhile gets it twice. One that reads the folder later finds each file once.
        """
        directory = self.config.directory or Path("outbox")
        written: list[models.Outbox] = []
        for index, row in enumerate(rows):
            stamp = (row.created_at or utcnow()).strftime("%Y%m%d-%H%M%S")
            target = directory / f"{stamp}-{row.id:06d}-{row.kind}.eml"
            temporary = target.with_suffix(".tmp")
            try:
                if index == 0:
                    directory.mkdir(parents=True, exist_ok=True)
                temporary.write_bytes(bytes(row.raw))
                os.replace(temporary, target)
            except OSError as error:
                # A half-written file would only take space on a full disk, and would
                # stay there if the mail is never written again.
                _remove_quietly(temporary)
                # A full disk or a wrong directory fails every file alike, so the rest
                # of the batch waits for the next attempt too.
                reason = _("cannot write to the outgoing mail directory {path}: {error}").format(
                    path=directory, error=error.strerror or error)
                mark_postponed(rows[index:], reason)
                break
            written.append(row)
        mark_all_sent(written)
        return len(written)

    def _client(self) -> _Client:
        config = self.config
        return _Client(
            hostname=config.host,
            port=config.port,
            use_tls=config.security == "tls",
            start_tls=config.security == "starttls",
            tls_context=_tls_context(config) if config.security != "none" else None,
            timeout=config.timeout,
            local_hostname=self.local_hostname,
        )

    async def _send_batch(self, rows: list[models.Outbox]) -> int:
        client = self._client()
        try:
            await client.connect()
            if self.config.username:
                password = self.config.password.reveal() or ""
                await client.login(self.config.username, password)
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as error:
            self.unreachable = True
            if isinstance(error, aiosmtplib.SMTPAuthenticationError):
                mark_postponed(rows, _("SMTP login failed: {error}").format(error=error))
            else:
                mark_postponed(rows, _("SMTP server unreachable: {error}").format(error=error))
            return 0

        sent = 0
        try:
            for index, row in enumerate(rows):
                if self.stop_requested():
                    release(rows[index:])
                    break
                try:
                    sent += await self._send_one(client, row)
                except _ServiceClosing as closing:
                    if closing.after_data:
                        # The mail may be what the server refuses, so it waits alone and
                        # the rest go first in the next pass, as after a dropped connection.
                        mark_postponed([row], closing.error)
                        mark_postponed(rows[index + 1:], closing.error, delay=timedelta(0))
                    else:
                        mark_postponed(rows[index:], closing.error)
                    self.unreachable = True
                    break
                except _ConnectionLost as lost:
                    # The rest of the batch is due again at once and goes first in the next
                    # pass, on a new connection, while the mail that was being sent backs
                    # off: if that mail makes the server drop it, it blocks no other.
                    mark_postponed(rows[index + 1:], lost.error, delay=timedelta(0))
                    self.connection_lost = True
                    break
        finally:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
        return sent

    async def _send_one(self, client: _Client, row: models.Outbox) -> int:
        """Send one row; raise _ConnectionLost after recording it when the connection broke."""
        addresses = (row.deferred or row.recipients).split()
        if not renew_claim(row):
            return 0
        faults.crash_point("during-send")
        envelope = Envelope()
        try:
            await _greet(client)
            envelope = plan_envelope(addresses, client.supports_extension("smtputf8"))
            left_out_note = _leave_out(row, envelope)
            sender = envelope_address(row.sender) or row.sender
            if not envelope.recipients:
                mark_failed(row, left_out_note or _("the mail has no recipients"))
                return 0
            options = ["SMTPUTF8"] if envelope.smtputf8 or needs_smtputf8(sender) else None
            errors, response = await client.sendmail(sender, envelope.recipients,
                                                     bytes(row.raw), mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as error:
            if any(refused.code == SERVICE_CLOSING for refused in error.recipients):
                raise _ServiceClosing(str(error)) from error
            for refused in error.recipients:
                if is_address_failure(refused.code, refused.message):
                    record_bounce(envelope.stored.get(refused.recipient, refused.recipient),
                                  f"{refused.code} {refused.message}")
            deferred = [envelope.stored.get(refused.recipient, refused.recipient)
                        for refused in error.recipients if refused.code < 500]
            if not deferred:
                mark_failed(row, str(error))
            else:
                # The addresses refused for good are dropped; the others are tried again.
                mark_deferred(row, deferred, str(error), self.config.max_attempts)
            return 0
        except aiosmtplib.SMTPResponseException as error:
            if error.code == SERVICE_CLOSING:
                raise _ServiceClosing(f"{error.code} {error.message}",
                                      after_data=isinstance(error, aiosmtplib.SMTPDataError)
                                      ) from error
            if error.code >= 500:
                mark_failed(row, f"{error.code} {error.message}")
            else:
                mark_retry(row, f"{error.code} {error.message}", self.config.max_attempts)
            return 0
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                aiosmtplib.SMTPConnectError, OSError) as error:
            if client.closing_reply is not None:
                # A 421 to an earlier RCPT of this mail closed the connection.
                raise _ServiceClosing(client.closing_reply) from error
            # Counted against this mail: a mail that the server drops the connection on
            # or times out on each time is given up after max_attempts.
            description = str(error) or type(error).__name__
            mark_retry(row, description, self.config.max_attempts)
            raise _ConnectionLost(description) from error
        except aiosmtplib.SMTPException as error:
            mark_retry(row, str(error) or type(error).__name__, self.config.max_attempts)
            return 0
        except ValueError as error:
            # aiosmtplib rejects the configured sender address before MAIL FROM: every
            # recipient passed plan_envelope. Nothing was sent on the connection.
            mark_failed(row, _("the SMTP envelope is invalid: {error}").format(error=error))
            return 0

        faults.crash_point("after-send")
        notes = [left_out_note] if left_out_note else []
        if errors:
            notes.append("; ".join(f"{envelope.stored.get(a, a)}: {c} {m}"
                                   for a, (c, m) in errors.items()))
        note = "; ".join(notes) or None
        # Recipients the server deferred while it took the others (a full mailbox, "452
        # too many recipients") are owed the mail; those refused for good are not.
        deferred = [envelope.stored.get(address, address)
                    for address, (code, _message) in errors.items() if code < 500]
        try:
            for address, (code, message) in errors.items():
                if is_address_failure(code, message):
                    record_bounce(envelope.stored.get(address, address), f"{code} {message}")
            self._record_result(row, note, deferred)
        except (pw.OperationalError, pw.InterfaceError) as error:
            # The server has the mail. Sending it again after the database returns would
            # deliver a second copy, so the mark waits for the next pass instead.
            self.unrecorded.append((row, note, deferred))
            logger.warning(_("sent {message_id} (ticket {ticket}), but the database did not "
                             "record it: {error}; it is recorded when the database is "
                             "reachable again, not sent twice").format(
                message_id=row.message_id, ticket=row.ticket_id or "-",
                error=databaseerrors.describe(error)))
            raise
        return 1


async def _greet(client: _Client) -> None:
    """Send EHLO, or HELO to a server that rejects it, unless the session has one already.

    ``sendmail`` would greet the server too, but only after it checked the addresses,
    and whether the server offers SMTPUTF8 decides which recipients the envelope takes.
    """
    if not client.is_ehlo_or_helo_needed:
        return
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()


def _leave_out(row: models.Outbox, envelope: Envelope) -> str | None:
    """Record the recipients the envelope leaves out; return the row's note, or None.

    An address that no SMTP command can carry is marked bounced, as a 5xx refusal of the
    address would be, so the desk stops writing to it. One that needs SMTPUTF8 is not:
    another SMTP server may offer the extension.
    """
    if not envelope.left_out:
        return None
    for address, reason in envelope.left_out.items():
        if reason == NOT_SMTP:
            record_bounce(address, _(reason))
        logger.warning(_("not sending {message_id} (ticket {ticket}) to {address}: {reason}")
                       .format(message_id=row.message_id, ticket=row.ticket_id or "-",
                               address=address, reason=_(reason)))
    return "; ".join(f"{address}: {_(reason)}" for address, reason in envelope.left_out.items())


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        logger.warning(_("cannot remove the partly written file {path}: {error}").format(
            path=path, error=error))


def retry(outbox_id: int) -> bool:
    """Put a failed or pending row back in the queue now (``maildesk outbox retry``).

    A failed or cancelled row starts its attempts afresh: the admin who sends it again
    expects the usual retries, not a failure at the next temporary error. A pending row
    keeps its count. NOTE: the queue age still runs from the row's creation, so an old
    row retried while the server is unreachable is given up at once.
    """
    outbox = models.Outbox
    attempts = pw.Case(None, [(outbox.state.in_(["failed", "cancelled"]), 0)], outbox.attempts)
    count = outbox.update(state="pending", next_attempt_at=utcnow(), claimed_by=None,
                          attempts=attempts).where(
        outbox.id == outbox_id, outbox.state.in_(["failed", "pending", "cancelled"])
    ).execute()
    return bool(count)

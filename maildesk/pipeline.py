"""The flow of one incoming mail: parse, classify, thread, decide, then keep and apply it.

``process`` is the only entry point that sources call. It returns an Outcome, or raises
TemporaryError when the mail must stay at its source and be tried again (the database is
unreachable, the disk is full). Any other failure quarantines the mail.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee as pw

from maildesk import conversation, databaseerrors, faults, models, statements
from maildesk.classify import MailKind, classify
from maildesk.decision import Action, Decision
from maildesk.desk import Desk
from maildesk.errors import MaildeskError, ParseError, TemporaryError
from maildesk.followup import (
    Evidence,
    FollowUp,
    SenderRole,
    find_follow_up,
    strip_tags,
    tag_pattern,
)
from maildesk.i18n import N_, _
from maildesk.logcontext import mail_context
from maildesk.parse import ParsedMessage, parse_message
from maildesk.quarantine import processed_key, quarantine
from maildesk.reasons import Reason
from maildesk.rerouting import evaluate_followup
from maildesk.rules.conditions import in_address_list
from maildesk.servicehooks import is_feedback_on_closed
from maildesk.subjects import strip_reply_prefixes
from maildesk.tickets import Outcome, apply, is_duplicate

logger = logging.getLogger(__name__)

# Two new tickets from one sender within this window, each answered by our automatic
# acknowledgement, look like two auto-responders answering each other.
LOOP_WINDOW = timedelta(minutes=10)
LOOP_TICKETS = 2
# A follow-up that repeats, word for word, a text of at least this many characters that
# its sender sent to the same ticket within the window counts as an automatic reply.
REPEAT_MIN_LENGTH = 15
REPEAT_WINDOW = timedelta(days=1)
# The header block of an oversized mail is read only up to this many bytes.
HEADER_LIMIT = 256 * 1024


class MessageTooLargeError(MaildeskError):
    """The raw mail is larger than ``desk.max_message_size``."""


class MissingSenderError(MaildeskError):
    """The mail has no From address; it goes to quarantine for an admin to look at."""


def dedupe_key(message: ParsedMessage, raw_sha256: str) -> str:
    """Return the key that makes a mail count once: its sender and Message-ID, else its hash.

    The sender is part of the key because Message-IDs are chosen by the sending client: a
    stranger who reuses someone's Message-ID first must not make their real mail a
    "duplicate".
    """
    if not message.message_id:
        return f"sha256:{raw_sha256}"
    sender = message.from_address.normalized if message.from_address else ""
    return message_id_key(sender, message.message_id)


def message_id_key(sender: str, message_id: str) -> str:
    """Return the dedupe key of a mail from ``sender`` (normalized, or empty) by its Message-ID."""
    return _within_column(f"mid:{sender} {message_id}", "mid:")


def _within_column(key: str, prefix: str) -> str:
    """Return ``key``, or ``prefix`` and its sha256 when it is too long for the column."""
    if len(key) > 900:
        return prefix + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return key


def _loop_ticket(message: ParsedMessage, desk: Desk) -> models.Ticket | None:
    """Return the ticket a suspected auto-responder loop points at, or None.

    An auto-responder that omits Auto-Submitted replies to our acknowledgement under a
    subject of its own and copies lines of it, with our tag, into its text. A person
    who replies keeps the tag in the subject, and one who mentions a ticket writes the
    tag in a sentence of their own: neither is a loop, however many tickets they opened
    in the last minutes.
    """
    # Mail without a tag in its text (nearly all new mail) needs no query.
    pattern = tag_pattern(desk.config.desk.ticket_tag)
    numbers = {int(n) for n in pattern.findall(message.text)}
    if not numbers or pattern.search(message.subject):
        return None

    sender = message.from_address.normalized if message.from_address else ""
    since = models.utcnow() - LOOP_WINDOW
    recent = list(
        models.Ticket.select()
        .join(models.Contact)
        .where(models.Contact.address == sender, models.Ticket.created_at >= since)
        .order_by(models.Ticket.id.desc())
    )
    acknowledgements = {}
    for ticket in recent:
        row = (models.Outbox.select()
               .where(models.Outbox.ticket == ticket, models.Outbox.kind == "ack").first())
        if row is not None:
            acknowledgements[ticket.id] = (ticket, row)
    if len(acknowledgements) < LOOP_TICKETS:
        return None

    copied = {_plain_line(line) for line in message.text.splitlines() if pattern.search(line)}
    for number in sorted(numbers & acknowledgements.keys(), reverse=True):
        ticket, row = acknowledgements[number]
        if copied & _tagged_lines(row, pattern):
            return ticket
    return None


def _plain_line(line: str) -> str:
    """Return a line without quote marks and surrounding space, to compare copies."""
    return " ".join(line.lstrip(" \t>").split())


def _tagged_lines(row: models.Outbox, pattern: Any) -> set[str]:
    """Return the lines of one of our sent mails, subject included, that carry a tag."""
    try:
        sent = parse_message(bytes(row.raw))
    except ParseError as error:
        logger.warning(_("cannot read our own mail {message_id} to compare a reply with it: "
                         "{error}").format(message_id=row.message_id, error=error))
        return set()
    lines = [row.subject, *sent.text.splitlines()]
    return {_plain_line(line) for line in lines if pattern.search(line)}


def _repeats_recent_text(ticket: models.Ticket, message: ParsedMessage, agent: bool) -> bool:
    """Return whether the sender sent this very text to the ticket in the last day.

    For an agent's mail, entries under its own Message-ID do not count. They are copies
    that did not claim the Message-ID, such as a list's copy held for failed
    authentication, because a claimed one makes this mail a duplicate before it is read.
    """
    text = message.reply_text.strip()
    if len(text) < REPEAT_MIN_LENGTH or message.from_address is None:
        return False

    since = models.utcnow() - REPEAT_WINDOW
    author = message.from_address.normalized
    if agent and message.message_id:
        # Entries keep the first 998 characters of a Message-ID.
        return bool(_SAME_TEXT_OTHER_MAIL.rows(ticket.id, author, since, message.reply_text,
                                               message.message_id[:998]))
    return bool(_SAME_TEXT.rows(ticket.id, author, since, message.reply_text))


_SAME_TEXT = statements.Prepared(
    lambda ticket_id, author, since, reply_text: models.Message.select(models.Message.id)
    .where(models.Message.ticket == ticket_id,
           models.Message.author == author,
           models.Message.created_at >= since,
           models.Message.reply_text == reply_text)
    .limit(1))

_SAME_TEXT_OTHER_MAIL = statements.Prepared(
    lambda ticket_id, author, since, reply_text, message_id: models.Message.select(
        models.Message.id)
    .where(models.Message.ticket == ticket_id,
           models.Message.author == author,
           models.Message.created_at >= since,
           models.Message.reply_text == reply_text,
           (models.Message.message_id != message_id) | models.Message.message_id.is_null())
    .limit(1))


def _language(desk: Desk, message: ParsedMessage, routing: Any) -> str:
    """Choose the language of a new ticket from the rules and the mail.

    The requester's own language, when one is stored, comes first; ``tickets.apply``
    reads the contact in its transaction and puts that language in its place.
    """
    from maildesk.notify import choose_language
    from maildesk.rules.language import detect_language

    if routing is not None:
        detected = routing.mail_language  # the rules ran without a language: their guess
    else:
        detected, _source = detect_language(message)
    return choose_language(desk,
                           rule_language=routing.language if routing is not None else None,
                           detected=detected)


def _entry_kind(follow_up: FollowUp, automatic: bool, manager: bool = False) -> str:
    if automatic:
        return "auto_reply"
    if follow_up.sender_role is SenderRole.AGENT:
        return "agent_reply"
    if manager:
        return "internal_note"
    return "customer"


def _managed_groups(desk: Desk, follow_up: FollowUp, sender: str) -> tuple[str, ...]:
    """Return the groups a group manager manages who replied to a mail of the ticket.

    Only a manager who is not the requester, a participant or an agent counts, and only
    by a thread reference to a mail they received, such as an escalation. A manager's
    own ticket, or one they were copied on as a user, stays a user's conversation.
    """
    if (follow_up.ticket is None or follow_up.sender_role is not SenderRole.STRANGER
            or follow_up.evidence is not Evidence.REFERENCE):
        return ()
    return conversation.managed_groups(desk, sender)


# Ticketless mail the desk sends only to its agents, managers and admins. A reply to it
# is a remark to the desk, not a new request, so it opens no ticket.
STAFF_NOTICE_KINDS = ("daily_summary", "quarantine", "rules_error", "templates_error",
                      "loop_alert", "orphaned_tickets")


def _replied_staff_notice(desk: Desk, message: ParsedMessage, sender: str) -> str | None:
    """Return the kind of staff notice a staff member's mail replies to, else None.

    Only the desk's own staff count: anyone else's mail that names such a Message-ID
    is a request like any other.
    """
    if sender not in desk.configured_addresses or not message.thread_ids:
        return None
    row = (models.Outbox.select(models.Outbox.kind)
           .where(models.Outbox.message_id.in_(list(message.thread_ids)),
                  models.Outbox.ticket.is_null(), models.Outbox.kind.in_(STAFF_NOTICE_KINDS))
           .first())
    return row.kind if row is not None else None


def decide(desk: Desk, message: ParsedMessage, raw: bytes, source: str,
           rules: Any = None, received_at: datetime | None = None, *,
           raw_sha256: str | None = None, key: str | None = None) -> Decision:
    """Decide what one parsed mail (``raw`` as received) does. Reads the database only.

    ``raw_sha256`` spares hashing ``raw`` again where the caller has its hash. ``key``
    replaces the dedupe key of ``dedupe_key`` (see ``process``).
    """
    classification = classify(message, desk.own_addresses, desk.message_id_domain)
    raw_sha256 = raw_sha256 or hashlib.sha256(raw).hexdigest()
    key = key or dedupe_key(message, raw_sha256)
    base: dict[str, Any] = dict(message=message, raw_sha256=raw_sha256, raw=raw,
                                source=source, dedupe_key=key,
                                classification=classification)

    if classification.kind is MailKind.OWN:
        none = FollowUp(None, Evidence.NONE, SenderRole.STRANGER)
        return Decision(Action.IGNORE, follow_up=none, reason=classification.reason, **base)
    if message.from_address is None and classification.is_automatic:
        none = FollowUp(None, Evidence.NONE, SenderRole.STRANGER)
        return Decision(Action.IGNORE, follow_up=none,
                        reason=classification.description(), **base)
    if message.from_address is None or len(message.from_address.normalized) > 320:
        raise MissingSenderError(_("the mail has no usable From address, so there is no "
                                   "requester to open a ticket for or to answer"))

    sender_address = message.from_address.normalized if message.from_address else ""
    if in_address_list(sender_address, desk.config.desk.blocked_senders):
        none = FollowUp(None, Evidence.NONE, SenderRole.STRANGER)
        return Decision(Action.IGNORE, follow_up=none,
                        reason=Reason(N_("sender {address} blocked"), address=sender_address),
                        rejection=None if classification.is_automatic else "rejection_blocked",
                        **base)

    follow_up = find_follow_up(message, desk.config.desk.ticket_tag, desk.agent_addresses)
    events: list[tuple[int | None, str, dict[str, Any]]] = [
        (number, "thread_link_rejected", {"reason": reason})
        for number, reason in follow_up.rejected
    ]
    if follow_up.merged_from is not None and follow_up.ticket is not None:
        events.append((follow_up.ticket.id, "merge_followed", {
            "merged": follow_up.merged_from, "message_id": message.message_id}))
    automatic = classification.is_automatic
    ticket = follow_up.ticket
    # A group manager's reply to an escalation is a note for the agents, closed or not.
    managed = _managed_groups(desk, follow_up, sender_address)

    if (ticket is not None and ticket.status == "closed" and not automatic and not managed
            and is_feedback_on_closed(desk, message, ticket)):
        # A rating or a short thanks joins the closed ticket instead of opening a new one.
        return Decision(Action.APPEND, follow_up=follow_up, ticket=ticket,
                        entry_kind=_entry_kind(follow_up, automatic), events=events,
                        reason=Reason(N_("feedback on closed ticket {ticket}"), ticket=ticket.id),
                        **base)
    # A person's mail to a closed ticket opens a new, linked one below. An agent's stays on
    # the closed ticket, where commands that would reopen it are refused.
    opens_new = (ticket is not None and ticket.status == "closed" and not automatic
                 and follow_up.sender_role is not SenderRole.AGENT and not managed)
    if ticket is not None and not opens_new:
        entry_kind = _entry_kind(follow_up, automatic, manager=bool(managed))
        agent = follow_up.sender_role is SenderRole.AGENT
        if entry_kind != "auto_reply" and _repeats_recent_text(ticket, message, agent):
            # Responders that omit Auto-Submitted send the same text every time; treating
            # the repeat as an automatic reply ends loops with agents and other desks.
            entry_kind = "auto_reply"
            events.append((ticket.id, "repeated_text_ignored", {
                "reason": Reason(N_("the sender sent the same text to this ticket within a day")),
                "message_id": message.message_id}))
        routing = None
        if entry_kind == "customer":
            routing = evaluate_followup(rules, message, received_at or datetime.now(UTC))
        reason = follow_up.description(classification.reason)
        plan = None
        if entry_kind == "internal_note":
            plan = conversation.ManagerNote(managed)
            reason = Reason(N_("{reason}; note from the manager of {groups}"), reason=reason,
                            groups=", ".join(managed))
        return Decision(
            Action.APPEND, follow_up=follow_up, ticket=ticket, entry_kind=entry_kind,
            reason=reason, events=events, routing=routing, conversation=plan, **base,
        )

    if automatic:
        return Decision(Action.IGNORE, follow_up=follow_up, events=events,
                        reason=classification.description(), **base)

    notice = _replied_staff_notice(desk, message, sender_address) if ticket is None else None
    if notice is not None:
        return Decision(Action.IGNORE, follow_up=follow_up, events=events, reason=Reason(
            N_("a reply to the desk's {kind} mail to its staff, which belongs to no ticket"),
            kind=notice), **base)

    loop_ticket = _loop_ticket(message, desk)
    if loop_ticket is not None:
        reason = Reason(N_("mail loop suspected with {address} (automatic acknowledgements "
                           "answered each other)"), address=message.from_address.normalized)
        events.append((loop_ticket.id, "mail_loop_suspected", {"reason": reason}))
        return Decision(Action.APPEND, follow_up=follow_up, ticket=loop_ticket,
                        entry_kind="auto_reply", reason=reason, events=events, **base)

    routing = None
    if rules is not None:
        received = received_at or datetime.now(UTC)
        routing = rules.evaluate(message, received_at=received)
        if routing.ignored:
            return Decision(Action.IGNORE, follow_up=follow_up, routing=routing, events=events,
                            reason=Reason(N_("rule: {reason}"), reason=routing.ignore_reason),
                            **base)

    subject = strip_tags(message.subject, desk.config.desk.ticket_tag)
    reason = Reason(N_("new ticket"))
    if ticket is not None:  # a reply to a closed ticket opens a new, linked one
        subject = strip_tags(strip_reply_prefixes(message.subject), desk.config.desk.ticket_tag)
        reason = Reason(N_("follow-up of closed ticket {ticket}"), ticket=ticket.id)
        events.append((ticket.id, "follow_up_ticket_opened", {"message_id": message.message_id}))
    acknowledge = routing is None or (routing.acknowledge and routing.auto_reply)
    return Decision(
        Action.CREATE, follow_up=follow_up, reason=reason, events=events,
        subject=subject or _("(no subject)"), routing=routing,
        language=_language(desk, message, routing), linked_ticket=ticket,
        acknowledge=acknowledge,
        acknowledgement_template=(routing.template if routing and routing.template
                                  else "acknowledgement"),
        **base,
    )


def process(desk: Desk, raw: bytes, source: str, rules: Any = None,
            parsed: ParsedMessage | None = None) -> Outcome:
    """Process one raw mail from ``source`` (e.g. ``imap:INBOX/1234``) exactly once in effect.

    ``parsed``, when given, is taken as ``parse_message(raw)`` without a check: the daemon
    passes what its parse helper returned for ``raw``.
    """
    raw_sha256 = hashlib.sha256(raw).hexdigest()
    with mail_context(source=source):
        try:
            # With the parse at hand, one query looks up both the quarantine mark and the
            # dedupe key. Without it, the quarantine mark is looked up before parsing.
            key = dedupe_key(parsed, raw_sha256) if parsed is not None else None
            recorded = _recorded_keys(raw_sha256, key)
            if processed_key(raw_sha256) in recorded:
                # A large mail's file may have been left short by a power loss before
                # the batch's flush, while the quarantine's commit survived.
                desk.store.put_message(raw, verify=True)
                return Outcome("duplicate", reason=Reason(N_("already quarantined")),
                               in_quarantine=True)
            if len(raw) > desk.config.desk.max_message_size:
                # Checked before parsing, so a huge mail costs no parsing time.
                return _too_large(desk, raw, raw_sha256, source)
            try:
                message = parsed if parsed is not None else parse_message(raw)
            except ParseError as error:
                row = quarantine(desk, raw, raw_sha256, source, error)
                return Outcome("quarantined", reason=_quarantined(row.id, error))

            if key is not None:
                duplicate = key in recorded
            else:
                key = dedupe_key(message, raw_sha256)
                duplicate = is_duplicate(key)
            with mail_context(message_id=message.message_id or key):
                if duplicate:
                    reused = (not _from_agent(desk, message)
                              and _reuses_message_id(desk, key, message, raw_sha256))
                    if reused:
                        key = _content_key(key, message)
                    if not reused or is_duplicate(key):
                        logger.info(_("skipping {key}: already processed").format(key=key))
                        _restore_files(desk, raw, message, key)
                        return Outcome("duplicate", reason=Reason(N_("already processed")))
                    logger.warning(_("{sender} sent a different mail under the Message-ID "
                                     "{message_id} of an earlier one: it is processed as a "
                                     "mail of its own").format(
                        sender=message.from_address.normalized if message.from_address else "-",
                        message_id=message.message_id))
                return _decide_and_apply(desk, message, raw, raw_sha256, source, rules, key)
        except (pw.DatabaseError, pw.InterfaceError) as error:
            if not databaseerrors.is_unavailable(error):
                raise
            drop_connection()
            raise TemporaryError(_("database unavailable: {error}").format(
                error=databaseerrors.describe(error))) from error


def _recorded_keys(raw_sha256: str, key: str | None) -> set[str]:
    """Return which of the mail's quarantine mark and dedupe key are recorded already."""
    keys = [processed_key(raw_sha256)] if key is None else [processed_key(raw_sha256), key]
    rows = statements.select_in(models.ProcessedMessage, "dedupe_key", keys)
    return {row.dedupe_key for row in rows}


def _from_agent(desk: Desk, message: ParsedMessage) -> bool:
    """Tell whether the mail comes from an agent's address.

    The dedupe key of such a mail is taken only by the copy that ``_claims_message_id``
    accepts, and a second mail under that key is a copy even when its subject or text
    differs. A copy of a signed mail may differ in white space that DKIM's relaxed
    canonicalization ignores, so its signature still verifies, and running its
    commands again would be a replay. The exception in ``_reuses_message_id`` is for
    scanners and scripts that reuse Message-IDs, which RFC 5322 (3.6.4) requires to be
    unique.
    """
    return (message.from_address is not None
            and message.from_address.normalized in desk.agent_addresses)


def _claims_message_id(decision: Decision) -> bool:
    """Tell whether a mail from an agent's address takes its sender and Message-ID key.

    Only a mail that passed authentication does, when its commands ran or were refused
    as invalid. Every authenticated copy carries the same signed commands, and the
    ``command_error`` of an invalid one requests a corrected mail under a new
    Message-ID, so a later copy is a duplicate either way. Any other mail from the
    address may come before the agent's own. It may be a copy that a mailing list
    changed so that it failed authentication or became an automatic reply, a forgery, a
    copy held because unsigned references chose its ticket, or a mail that opened a
    ticket. Such a mail is keyed by its content, as a mail that reuses a Message-ID is, so that the
    agent's own copy is still processed.
    """
    plan = decision.conversation
    return (isinstance(plan, conversation.AgentPlan) and plan.verdict.passed
            and plan.refusal in (None, "invalid"))


def _rekey_unclaimed_copy(desk: Desk, decision: Decision, key: str) -> bool:
    """Key a mail from an agent's address by its content unless it claims its Message-ID.

    Return whether a mail with that key was recorded already: the same copy came again,
    for instance from a source that did not remove it before the desk stopped.
    """
    message = decision.message
    if (not key.startswith("mid:") or not _from_agent(desk, message)
            or _claims_message_id(decision)):
        return False

    decision.dedupe_key = _content_key(key, message)
    if is_duplicate(decision.dedupe_key):
        logger.info(_("skipping {key}: already processed").format(key=decision.dedupe_key))
        return True
    logger.info(_("mail {message_id} from {sender} was not acted on as an agent's "
                  "authenticated mail, so a later copy under that Message-ID is not skipped "
                  "as a duplicate").format(
        message_id=message.message_id, sender=decision.sender))
    return False


def _reuses_message_id(desk: Desk, key: str, message: ParsedMessage, raw_sha256: str) -> bool:
    """Tell whether a mail whose dedupe key is taken differs from the one that took it.

    Copies of one mail differ in transport headers (Received, Delivered-To), so the raw
    bytes decide nothing: the subject, the text and the attachments do. Some scanners
    and scripts give every mail the same Message-ID, and their mails must not be lost.
    """
    recorded = statements.first(models.ProcessedMessage, dedupe_key=key)
    if recorded is None or recorded.raw_sha256 == raw_sha256:
        return False
    try:
        earlier = parse_message(desk.store.get_message(recorded.raw_sha256))
    except (OSError, ParseError) as error:
        # Without the earlier mail there is nothing to compare, and a duplicate ticket
        # is better than a lost mail.
        logger.warning(_("cannot read the earlier mail {sha256} to compare with {key}: "
                         "{error}").format(sha256=recorded.raw_sha256, key=key, error=error))
        return True
    return content_fingerprint(earlier) != content_fingerprint(message)


def content_fingerprint(message: ParsedMessage) -> tuple[object, ...]:
    """Return what a copy of a mail keeps whatever servers it passed through."""
    attachments = tuple(sorted(hashlib.sha256(part.content).hexdigest()
                               for part in message.attachments))
    return message.subject, message.text.strip(), attachments


def _content_key(key: str, message: ParsedMessage) -> str:
    """Return the dedupe key of a mail that reuses an earlier mail's Message-ID.

    It is made from the content, not the raw bytes, so that a copy of this mail that
    took another route is a duplicate of it.
    """
    content = repr(content_fingerprint(message)).encode("utf-8", "surrogatepass")
    return _within_column(f"mid+{key[4:]} content:{hashlib.sha256(content).hexdigest()}",
                          "mid+")


def _restore_files(desk: Desk, raw: bytes, message: ParsedMessage, key: str) -> None:
    """Store a processed mail and its attachments again where a file's bytes are wrong.

    A power loss between the commit and the end of the raw store's batch can leave them
    short or zero-filled, and the mail then comes back from its source as a duplicate.
    A copy of a mail whose ticket was purged is not stored: nothing would name it, and
    no later purge would find it.
    """
    recorded = statements.first(models.ProcessedMessage, dedupe_key=key)
    if recorded is not None and recorded.outcome == models.PURGED_OUTCOME:
        return
    desk.store.put_message(raw, verify=True)
    try:
        for part in message.attachments:
            desk.store.put("attachments", part.content, verify=True)
    except OSError as error:
        raise TemporaryError(_("cannot store the attachments of {message_id}: {error}").format(
            message_id=key, error=error)) from error


def drop_connection() -> None:
    """Close a broken database connection, so the next query opens a fresh one.

    Without this, a PostgreSQL restart would leave every later query failing with
    "connection already closed".
    """
    try:
        models.database_proxy.close()
    except (pw.PeeweeException, pw.OperationalError, pw.InterfaceError) as error:
        logger.debug("closing the broken database connection failed: %s", error)


def _quarantine_failed_apply(desk: Desk, message: ParsedMessage, raw: bytes, raw_sha256: str,
                             source: str, error: Exception) -> Outcome:
    """Quarantine a mail whose changes the database rejected; the transaction rolled back."""
    logger.error(_("storing {message_id} failed").format(
        message_id=message.message_id or raw_sha256), exc_info=error)
    row = quarantine(desk, raw, raw_sha256, source, error)
    return Outcome("quarantined", reason=_quarantined(row.id, error))


def _quarantined(quarantine_id: int, error: Exception) -> Reason:
    # The error text is the exception's message, in the language it was raised in.
    return Reason(N_("quarantine {id}: {error}"), id=quarantine_id, error=str(error))


def _too_large(desk: Desk, raw: bytes, raw_sha256: str, source: str) -> Outcome:
    """Quarantine a mail over the size limit and tell its human sender, politely.

    Only the header block is parsed, to find the sender and decide whether it is a person.
    """
    from maildesk.notify import queue_rejection

    head = raw[:HEADER_LIMIT]
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = head.find(separator)
        if index >= 0:
            head = head[:index]
            break
    message: ParsedMessage | None
    try:
        message = parse_message(head + b"\r\n\r\n")
    except ParseError:
        message = None

    limit = desk.config.desk.max_message_size
    error = MessageTooLargeError(_("the mail has {size} bytes, more than the limit of {limit} "
                                   "(desk.max_message_size)").format(size=len(raw), limit=limit))
    human = message is not None and not classify(
        message, desk.own_addresses, desk.message_id_domain).is_automatic
    # One transaction, because a crash between the two would leave the mail quarantined,
    # and a duplicate from then on, without the rejection ever reaching its sender.
    with models.database_proxy.atomic():
        row = quarantine(desk, raw, raw_sha256, source, error)
        if human:
            assert message is not None
            queue_rejection(desk, message, template="rejection_too_large",
                            rejection={"size": len(raw), "limit": limit})
    return Outcome("quarantined", reason=_quarantined(row.id, error))


def _decide_and_apply(desk: Desk, message: ParsedMessage, raw: bytes, raw_sha256: str,
                      source: str, rules: Any, key: str) -> Outcome:
    try:
        decision = decide(desk, message, raw, source, rules, raw_sha256=raw_sha256, key=key)
        decision = conversation.review(desk, decision)
    except (pw.OperationalError, pw.InterfaceError, TemporaryError):
        raise
    except MaildeskError as error:
        row = quarantine(desk, raw, raw_sha256, source, error)
        return Outcome("quarantined", reason=_quarantined(row.id, error))
    except Exception as error:
        if databaseerrors.is_unavailable(error):
            raise  # a damaged SQLite file: the mail is not at fault
        logger.exception(_("deciding on {message_id} failed").format(
            message_id=message.message_id or raw_sha256))
        row = quarantine(desk, raw, raw_sha256, source, error)
        return Outcome("quarantined", reason=_quarantined(row.id, error))

    if _rekey_unclaimed_copy(desk, decision, key):
        _restore_files(desk, raw, message, decision.dedupe_key)
        return Outcome("duplicate", reason=Reason(N_("already processed")))

    faults.crash_point("before-commit")
    try:
        outcome = apply(desk, decision)
    except pw.IntegrityError as error:
        if is_duplicate(decision.dedupe_key):
            # The rollback removed this copy's raw row, so store the copy again, as the
            # duplicate check in process() does.
            _restore_files(desk, raw, message, decision.dedupe_key)
            return Outcome("duplicate", reason=Reason(N_("recorded by another process")))
        return _quarantine_failed_apply(desk, message, raw, raw_sha256, source, error)
    except (pw.OperationalError, pw.InterfaceError, TemporaryError):
        raise
    except Exception as error:  # a value the database rejects must not stop the queue
        if databaseerrors.is_unavailable(error):
            raise  # a damaged SQLite file: the mail is not at fault
        return _quarantine_failed_apply(desk, message, raw, raw_sha256, source, error)
    faults.crash_point("after-commit")
    return outcome

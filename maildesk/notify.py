"""Which mail to send when, rendered into outbox rows inside the caller's transaction.

Nothing here talks to an SMTP server: rows are delivered after commit by
``maildesk.outbox``. The guards against mail loops and backscatter live here, because
every automatic mail passes through ``queue_mail``. It sends nothing to our own
addresses, to addresses that bounced or that only software reads. It also caps automatic
mail per mailbox (per hour), per ticket (per 24 hours) and for the whole desk (per clock
hour), and the first time a cap stops a mail, the admins get one ``mail_loop_alert``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from maildesk import models, statements
from maildesk.desk import Desk
from maildesk.errors import ConfigError
from maildesk.i18n import LANGUAGES, _, normalize_language
from maildesk.mailbuild import OutgoingAttachment, Recipient, build_message, new_message_id
from maildesk.models import utcnow
from maildesk.reasons import Reason

logger = logging.getLogger(__name__)

SAMPLE_TICKET_NUMBER = 1234
ADDRESS_LIMIT_WINDOW = timedelta(hours=1)
TICKET_LIMIT_WINDOW = timedelta(hours=24)
# The desk-wide limit counts from the start of each clock hour (UTC), not over a sliding
# hour, so that reaching it happens once per hour and is logged once.
DESK_LIMIT_WINDOW = timedelta(hours=1)
# One alert per address or ticket in this window, however long the loop goes on.
ALERT_WINDOW = timedelta(hours=24)
# The window in which the pipeline counts new tickets of one sender as a loop.
LOOP_TICKET_WINDOW_MINUTES = 10
# How much of the incoming text a notification to agents quotes.
EXCERPT_LENGTH = 1500

# Addresses that only software reads: mail to them bounces or feeds a loop.
_MACHINE_ADDRESS = re.compile(
    r"^(mailer-daemon|postmaster|mail-daemon|no[-_.]?reply|do[-_.]?not[-_.]?reply|"
    r"bounces?|owner-[^@]*|[^@]*-(bounces|request|owner))(\+[^@]*)?@",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class QueuedMail:
    outbox_id: int
    message_id: str
    recipients: tuple[str, ...]


# ---------------------------------------------------------------------- template values


def ticket_context(desk: Desk, ticket: models.Ticket) -> dict[str, Any]:
    """Return the plain values a template may use about a ticket (no model objects)."""
    requester = ticket.requester
    return {
        "number": ticket.id,
        "tag": desk.tag(ticket.id),
        "subject": ticket.subject,
        "status": ticket.status,
        "type": ticket.type,
        "priority": ticket.priority,
        "impact": ticket.impact,
        "urgency": ticket.urgency,
        "group": ticket.group,
        "assignee": ticket.assignee,
        "category": ticket.category,
        "language": ticket.language,
        "tags": [tag for tag in (ticket.tags or "").split() if tag],
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "first_response_due": ticket.first_response_due,
        "resolution_due": ticket.resolution_due,
        "requester_name": requester.name,
        "requester_address": requester.address,
    }


def desk_context(desk: Desk) -> dict[str, Any]:
    return {"name": desk.config.desk.name, "address": desk.config.desk.address}


def message_context(message: Any) -> dict[str, Any]:
    """Return the values of an incoming mail for notifications: sender, subject, excerpt."""
    sender = message.from_address
    text = (message.reply_text or message.text or "").strip()
    if len(text) > EXCERPT_LENGTH:
        text = text[:EXCERPT_LENGTH].rstrip() + " […]"
    return {
        "sender_name": sender.name if sender else "",
        "sender_address": sender.normalized if sender else "",
        "subject": message.subject,
        "excerpt": text,
        "attachments": [part.filename for part in message.attachments],
    }


def sample_context(desk: Desk, language: str = "pl") -> dict[str, Any]:
    """Build a complete sample for checking templates without a database.

    The people, subjects and texts are Polish, or English for ``language="en"``, so
    that a preview in English shows no Polish. The keys and their types do not change.
    """
    context = _polish_sample(desk)
    if language == "en":
        _anglicise_sample(context)
    return context


def sample_variants(desk: Desk, language: str = "pl"
                    ) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Return samples that take the other side of the templates' usual branches.

    One sample leaves some values empty (no linked ticket, no assignee), others give an
    agent's reply one new status, make a user's reply a rating or a reopening, or give a
    mail loop alert each of its scopes. A mistake inside ``{% if linked_ticket %}`` or in
    the ``closed`` branch of a reply would then show only when a real mail took it. Each
    variant comes with the names it changes; a template that names none of them gains
    nothing from rendering it.
    """
    import copy

    filled = copy.deepcopy(sample_context(desk, language))
    filled["linked_ticket"] = {"number": SAMPLE_TICKET_NUMBER - 1}
    filled["ticket"].update(assignee="jan.kowalski", category=filled["ticket"]["tags"][0])
    filled["authentication"] = "dkim=fail; spf=softfail"
    filled["escalation"]["clears_assignee"] = True
    filled["note_reason"] = "reference"
    filled["text_destination"] = "note"
    variants: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("linked_ticket", "assignee", "category", "authentication", "clears_assignee",
          "note_reason", "text_destination"), filled)]
    for status in ("pending", "closed", None):
        changed = copy.deepcopy(sample_context(desk, language))
        changed["reply"]["new_status"] = status
        variants.append((("new_status",), changed))
    # A confirmation of #merge, and the notice to a requester who opened both tickets.
    merging = copy.deepcopy(sample_context(desk, language))
    merging["note_reason"] = "merge"
    merging["merged"]["same_requester"] = True
    source = {"number": SAMPLE_TICKET_NUMBER + 5, "tag": desk.tag(SAMPLE_TICKET_NUMBER + 5)}
    merging["merge"] = {"source": source,
                        "target": {"number": SAMPLE_TICKET_NUMBER,
                                   "tag": desk.tag(SAMPLE_TICKET_NUMBER)},
                        "added": ["jan@example.org"], "skipped": ["anna@example.org"],
                        "notified": []}
    variants.append((("merge", "same_requester"), merging))
    unread = copy.deepcopy(sample_context(desk, language))
    unread["quarantine"].update(unread=True, sender="-", message_id="-")
    variants.append((("unread",), unread))
    # A user's reply that rated the resolution, and one that reopened the ticket.
    for key, value in (("rating", 5), ("reopened", True)):
        changed = copy.deepcopy(sample_context(desk, language))
        changed["reply"][key] = value
        variants.append(((f"reply.{key}",), changed))
    follow_up = {"number": SAMPLE_TICKET_NUMBER + 1, "tag": desk.tag(SAMPLE_TICKET_NUMBER + 1)}
    for continued in (follow_up, None):
        closed = copy.deepcopy(sample_context(desk, language))
        closed["closed_ticket"] = {"follow_up": continued}
        variants.append((("closed_ticket",), closed))
    for scope in ("ticket", "sender", "desk"):
        changed = copy.deepcopy(sample_context(desk, language))
        changed["loop"]["scope"] = scope
        variants.append((("loop.scope",), changed))
    # A desk that sends no files (limit 0), and a mail without files.
    file_cases: list[dict[str, Any]] = [{"sent": [], "limit": 0}, {"sent": [], "left_out": []}]
    for values in file_cases:
        changed = copy.deepcopy(sample_context(desk, language))
        changed["files"].update(values)
        variants.append((("files.",), changed))
    from maildesk.dailysummary import sample_variant as summary_variant

    summary = copy.deepcopy(sample_context(desk, language))
    summary.update(summary_variant())
    variants.append((("summary.",), summary))
    return variants


def _anglicise_sample(context: dict[str, Any]) -> None:
    """Replace the Polish texts of a sample context with English ones, in place."""
    alice = {"name": "Alice Smith", "address": "alice@example.org"}
    subject = "The printer on the 2nd floor does not print"
    context["ticket"].update(subject=subject, group="first-line", language="en",
                             tags=["printers"], requester_name=alice["name"],
                             requester_address=alice["address"])

    context["message"].update(
        sender_name=alice["name"], sender_address=alice["address"], subject=subject,
        excerpt="Hello,\n\nthe HP printer in room 215 shows error 13.A2 and has not "
                "printed since this morning. Manual: https://intranet.example.org/printers",
        attachments=["printer-error.jpg"])
    context["files"]["sent"][0]["name"] = "printer-error.jpg"
    context["files"]["left_out"][0]["name"] = "screen-recording.mp4"

    context["group"] = {"name": "first-line", "description": "First line support"}
    context["rejection"].update(subject="Scanned invoices for November",
                                reason="sender blocked by a rule")
    context["quarantine"].update(subject="Invoice", error="ParseError: empty message")
    context["merged"].update(subject="I cannot print anything")

    context.update(
        agent={"name": "Mark Green", "login": "mark.green"},
        recipient={"name": "Eve Brown", "login": "eve.brown"},
        reply={"text": "Hello,\n\nwe replaced the toner, please try again.",
               "new_status": "resolved", "rating": None, "reopened": False},
        note={"text": "Toner ordered, delivery on Thursday.", "author_name": "Mark Green"},
        activity={"author_name": "Mark Green",
                  "text": "Hello,\n\nwe replaced the toner, please try again.",
                  "changes": [{"field": "assignee", "old": "eve.brown", "new": "mark.green"}],
                  "unassigned": True},
        author={**alice, "dispatched": False},
        changes=[{"field": "status", "old": "new", "new": "resolved"},
                 {"field": "priority", "old": "P3 (medium)", "new": "P2 (high)"}],
        commands=["#status resolved", "#priority 2"],
        problems=[{"line": "#priority 7",
                   "message": "'7' is not a priority: use a number from 1 (critical) to "
                              "4 (low)",
                   "usage": "#priority 1-4"}],
        status_label="in progress",
    )

    context["status"].update(reason="Replaced the toner and cleaned the paper feed.",
                             actor="mark.green", assignee_name="Mark Green")

    context["escalation"].update(group="first-line", next_group="second-line",
                                 manager="it.manager@example.com",
                                 reason="resolution time exceeded")

    context["dispatch"].update(
        group="printer-service", reason="hardware repair by the vendor",
        description="The HP printer on the 2nd floor reports error 13.A2 and does not "
                    "take paper.", requester_name=alice["name"],
        requester_address=alice["address"])

    context["rules_error"]["errors"] = [
        "/etc/maildesk/rules/20-network.yaml:15:12: unknown group 'netwrok'"]

    summary = context["summary"]
    summary["agent"].update(login="mark.green", name="Mark Green", groups=["first-line"])
    summary["groups"][0].update(name="first-line", description="First line support")
    english = {1234: subject, 1240: "No access to the network share"}
    for listing in (summary["assigned"], summary["unassigned"], summary["groups"][0]["due"]):
        for entry in listing["tickets"]:
            entry.update(subject=english.get(entry["number"], subject),
                         requester_name=alice["name"], requester_address=alice["address"],
                         assignee=entry["assignee"] and "mark.green")


def _polish_sample(desk: Desk) -> dict[str, Any]:
    now = utcnow()
    hour = models.hour_start(now)
    ticket = {
        "number": SAMPLE_TICKET_NUMBER, "tag": desk.tag(SAMPLE_TICKET_NUMBER),
        "subject": "Drukarka na 2. piętrze nie drukuje", "status": "new", "type": "incident",
        "priority": 3, "impact": "medium", "urgency": "medium", "group": "pierwsza-linia",
        "assignee": None, "category": None, "language": "pl", "tags": ["drukarki"],
        "created_at": now, "updated_at": now,
        "first_response_due": now + timedelta(hours=4), "resolution_due": now + timedelta(days=2),
        "requester_name": "Zofia Wiśniewska", "requester_address": "zofia@example.org",
    }
    quarantine = {
        "id": 7, "sender": "jan@example.org", "subject": "Faktura", "message_id": "<x@y>",
        "source": "imap:INBOX/42", "error": "ParseError: wiadomość jest pusta",
        "retry_command": "maildesk --config /etc/maildesk/maildesk.yaml quarantine retry 7",
        "show_command": "maildesk --config /etc/maildesk/maildesk.yaml quarantine show 7",
        "notices_per_hour": 10, "last_notice_until": hour + timedelta(hours=1),
        "unnoticed": {"count": 14, "start": hour - timedelta(hours=2),
                      "end": hour - timedelta(hours=1)},
        "delete_command": "maildesk --config /etc/maildesk/maildesk.yaml quarantine delete 7",
        "unread": False,
    }
    message = {
        "sender_name": "Zofia Wiśniewska", "sender_address": "zofia@example.org",
        "subject": "Drukarka na 2. piętrze nie drukuje",
        "excerpt": "Dzień dobry,\n\ndrukarka HP w pokoju 215 pokazuje błąd 13.A2 "
                   "i nie drukuje od rana. Instrukcja: https://intranet.example.org/drukarki",
        "attachments": ["błąd-drukarki.jpg"],
    }
    group = {"name": "pierwsza-linia", "description": "Pierwsza linia wsparcia"}
    rejection = {
        "subject": "Skany faktur za listopad", "size": 73_400_320, "limit": 52_428_800,
        "reason": "nadawca zablokowany regułą", "received_at": now,
    }
    loop = {
        "scope": "address", "address": "support@vendor.example.net",
        "ticket": SAMPLE_TICKET_NUMBER, "count": 10, "limit": 10, "window_hours": 1,
        "window_minutes": 60, "first_at": now - timedelta(minutes=40), "last_at": now,
    }
    from maildesk.adminmail import sample_values as admin_samples
    from maildesk.conversation import sample_values
    from maildesk.dailysummary import sample_values as summary_samples
    from maildesk.noticefiles import sample_values as file_samples
    from maildesk.ticketmail import sample_context as service_level_samples

    merged = {"number": SAMPLE_TICKET_NUMBER + 5, "tag": desk.tag(SAMPLE_TICKET_NUMBER + 5),
              "subject": "Nie mogę nic wydrukować", "same_requester": False}
    context = {"desk": desk_context(desk), "ticket": ticket, "linked_ticket": None,
               "quarantine": quarantine, "message": message, "group": group,
               "rejection": rejection, "loop": loop, "merged": merged, "merge": None,
               **sample_values(),
               **service_level_samples(), **admin_samples(), **summary_samples(),
               **file_samples()}
    # The closing date a preview shows follows the desk's own auto_close_after.
    from maildesk.slaconfig import service_levels

    auto_close = service_levels(desk).auto_close_after
    context["closing"]["closes_at"] = now + auto_close if auto_close else None
    return context


# ---------------------------------------------------------------------- language


def choose_language(desk: Desk, *, contact_language: str | None = None,
                    rule_language: str | None = None, detected: str | None = None) -> str:
    """Pick the language of a mail to a requester.

    The order: the contact's language (set by an admin or learned from their earlier
    mails), a routing rule's choice, the language detected in this mail, the desk default.
    """
    for candidate in (contact_language, rule_language, detected):
        code = normalize_language(candidate)
        if code:
            return code
    return desk.config.language


def language_for_address(desk: Desk, address: str) -> str:
    """Return the language for one address: the agent's, the contact's, else the default."""
    agent = desk.config.agent_by_address(address)
    if agent is not None:
        return agent.language or desk.config.language
    contact = models.Contact.get_or_none(models.Contact.address == address.strip().lower())
    return choose_language(desk, contact_language=contact.language if contact else None)


def _by_language(desk: Desk, recipients: Iterable[Recipient]) -> dict[str, list[Recipient]]:
    groups: dict[str, list[Recipient]] = {}
    for recipient in recipients:
        groups.setdefault(language_for_address(desk, recipient.address), []).append(recipient)
    return groups


# ---------------------------------------------------------------------- loop guards


def is_machine_address(address: str) -> bool:
    """Tell whether only software reads this address (bounce handlers, lists, no-reply)."""
    return bool(_MACHINE_ADDRESS.match(address.strip()))


_RECENT_AUTOMATIC = statements.Prepared(
    lambda address, since: models.AutomaticMailRecipient.select(
        pw.fn.COUNT(models.AutomaticMailRecipient.id))
    .where(models.AutomaticMailRecipient.address == address,
           models.AutomaticMailRecipient.created_at >= since))

_TICKET_AUTOMATIC = statements.Prepared(
    lambda ticket_id, since: models.Outbox.select(models.Outbox.recipients)
    .where(models.Outbox.automatic == True,  # noqa: E712 (peewee expression)
           models.Outbox.ticket == ticket_id,
           models.Outbox.created_at >= since))


def strip_subaddress(address: str) -> str:
    """Return ``address`` in lower case without the ``+detail`` of its local part.

    The per-address limit counts this form, so ``jan+1@example.org`` and
    ``jan+2@example.org`` share the limit of ``jan@example.org``. Only ``+`` is taken as
    the separator, the common choice for RFC 5233 subaddresses. Dots, ``-`` and ``_``
    stay, because on most domains they are part of different people's names.
    """
    address = address.strip().lower()
    local, at, domain = address.rpartition("@")
    user = local.split("+", 1)[0]
    if not at or not user:
        return address
    return f"{user}@{domain}"


def _recently_sent_automatic(address: str, window: timedelta = ADDRESS_LIMIT_WINDOW) -> int:
    return int(_RECENT_AUTOMATIC.scalar(address, utcnow() - window) or 0)


def _automatic_since(since: datetime, limit: int) -> int:
    """Count the automatic mails to limited recipients since ``since``, up to ``limit``.

    Only the newest ``limit`` rows by id are read, so the count costs the same however
    large the table grows, and needs no index of ``created_at``. The LIMIT inside the
    subquery keeps the database from applying the time filter to the whole table.
    """
    recipient = models.AutomaticMailRecipient
    newest = (recipient.select(recipient.created_at).order_by(recipient.id.desc())
              .limit(limit).alias("newest"))
    start = pw.Value(since, converter=recipient.created_at.db_value)
    query = pw.Select([newest], [pw.fn.COUNT(pw.SQL("*"))]).where(
        newest.c.created_at >= start)
    return int(query.bind(models.database_proxy).scalar() or 0)


def _automatic_for_ticket(desk: Desk, ticket: models.Ticket,
                          window: timedelta = TICKET_LIMIT_WINDOW) -> int:
    """Count the ticket's recent automatic mails that went to someone besides agents and admins."""
    rows = _TICKET_AUTOMATIC.rows(ticket.id, utcnow() - window)
    return sum(
        1 for (recipients,) in rows
        if not all(_exempt_from_address_limit(desk, a) for a in recipients.split())
    )


def _exempt_from_address_limit(desk: Desk, address: str) -> bool:
    """Return whether maildesk.yaml names the address, so the hourly limits do not apply.

    Agents, admins, group mailboxes and managers are people and teams the admins
    configured, not addresses a mail can make the desk write to. A forged flood of new
    tickets must not use up the hour for a vendor's dispatches or a manager's escalations.
    Loops with them end at the ticket limit.
    """
    return address in desk.configured_addresses


def allowed_recipients(desk: Desk, addresses: list[str], automatic: bool,
                       ticket: models.Ticket | None, *, enforce_limits: bool = True,
                       fresh_contacts: Sequence[models.Contact] = (),
                       desk_limit: bool = True) -> list[str]:
    """Drop our own addresses, bounced addresses and, for automatic mail, machine and
    over-limit addresses.

    Addresses that maildesk.yaml names (agents, admins, group mailboxes and managers) are
    exempt from the per-address and the desk-wide limit. ``desk_limit`` False leaves out
    the desk-wide limit alone, for a routing rule's notifications.

    ``fresh_contacts`` are contacts the caller read or created in this transaction; their
    bounce state is taken from them instead of being read again.
    """
    known = {contact.address: contact for contact in fresh_contacts}
    allowed: list[str] = []
    limited = 0
    for address in addresses:
        address = address.strip().lower()
        if not address or address in desk.own_addresses or address in allowed:
            continue
        contact = known.get(address) or statements.first(models.Contact, address=address)
        if contact is not None and contact.bounced_at is not None:
            logger.info(_("not writing to {address}: it bounced earlier").format(address=address))
            continue
        if automatic and is_machine_address(address):
            logger.info(_("no automatic mail to {address}: only software reads it").format(
                address=address))
            continue
        if automatic and enforce_limits and not _exempt_from_address_limit(desk, address):
            if _address_over_limit(desk, address, ticket):
                continue
            if desk_limit and _desk_over_limit(desk, address, ticket,
                                               allowed_before=limited):
                continue
            limited += 1
        allowed.append(address)
    return allowed


def _address_over_limit(desk: Desk, address: str, ticket: models.Ticket | None) -> bool:
    """Apply the hourly limit of one mailbox, counted without ``+detail``."""
    mailbox = strip_subaddress(address)
    count = _recently_sent_automatic(mailbox)
    limit = desk.config.desk.automatic_mail_limit
    if count < limit:
        return False
    logger.warning(
        _("automatic mail limit reached for {address} (ticket {ticket}): "
          "no more automatic mail to it this hour").format(
            address=mailbox, ticket=ticket.id if ticket else "-")
    )
    models.Event.create(
        ticket=ticket, actor="maildesk", action="automatic_mail_limited",
        detail=json.dumps({"address": address}),
    )
    alert_mail_loop(desk, scope="address", key=mailbox, ticket=ticket,
                    count=count, limit=limit, address=mailbox)
    return True


# How long this process counts the hour's automatic mail itself before it reads the count
# from the database again, to take in what other processes sent meanwhile.
DESK_COUNT_REFRESH_SECONDS = 60.0


@dataclass
class _HourCount:
    """This process's count of the hour's limited recipients, read at ``read_at``."""

    hour: datetime
    count: int
    read_at: float


_desk_counts: weakref.WeakKeyDictionary[Any, _HourCount] = weakref.WeakKeyDictionary()


def _desk_count(limit: int, allowed_before: int) -> _HourCount:
    """Return the hour's count of limited recipients, read from the database when due.

    A query per mail would read up to ``limit`` rows each time, so the count is read
    when the hour changes, once a minute, and whenever the limit is near, where it must
    be exact. In between, ``_desk_over_limit`` adds the recipients it lets through. A
    rolled back mail stays counted until the next read, which errs on the side of the
    limit. ``allowed_before`` counts the current mail's recipients already let through,
    whose rows are not written yet.
    """
    database = models.database_proxy.obj
    hour = models.hour_start(utcnow())
    now = time.monotonic()
    cached = _desk_counts.get(database)
    if (cached is None or cached.hour != hour or cached.count + 1 >= limit
            or now - cached.read_at > DESK_COUNT_REFRESH_SECONDS):
        cached = _HourCount(hour, _automatic_since(hour, limit) + allowed_before, now)
        _desk_counts[database] = cached
    return cached


def _desk_over_limit(desk: Desk, address: str, ticket: models.Ticket | None, *,
                     allowed_before: int) -> bool:
    """Apply the desk-wide limit on automatic mail to addresses that are not our staff.

    ``allowed_before`` counts the limited recipients that the caller already allowed
    for the same mail, whose rows are not written yet. The warning is logged when a
    mail takes the last place of the hour, which happens once per clock hour. Each
    mail left out after it gets an event, not a log line of its own.
    """
    limit = desk.config.desk.automatic_mail_desk_limit
    counted = _desk_count(limit, allowed_before)
    count = counted.count
    if count + 1 == limit:
        logger.warning(_("automatic mail reached the desk-wide limit of {limit} this hour: "
                         "until the next full hour it goes only to the addresses that "
                         "maildesk.yaml names").format(limit=limit))
    if count < limit:
        counted.count += 1
        return False

    logger.debug("desk-wide limit: no automatic mail to %s (ticket %s)", address,
                 ticket.id if ticket else "-")
    models.Event.create(
        ticket=ticket, actor="maildesk", action="automatic_mail_limited",
        detail=json.dumps({"scope": "desk", "address": address, "limit": limit}),
    )
    alert_mail_loop(desk, scope="desk", key="desk", ticket=ticket, count=count, limit=limit)
    return True


def _ticket_over_limit(desk: Desk, ticket: models.Ticket, addresses: list[str]) -> bool:
    """Apply the per-ticket limit to a mail for ``addresses``; agents and admins are exempt."""
    if all(_exempt_from_address_limit(desk, a.strip().lower()) for a in addresses):
        return False
    count = _automatic_for_ticket(desk, ticket)
    limit = desk.config.desk.automatic_mail_ticket_limit
    if count < limit:
        return False
    logger.warning(_("automatic mail limit reached for ticket {ticket}: {count} mails in 24 "
                     "hours, no more automatic mail for it").format(ticket=ticket.id,
                                                                    count=count))
    models.Event.create(ticket=ticket, actor="maildesk", action="automatic_mail_limited",
                        detail=json.dumps({"ticket": ticket.id}))
    alert_mail_loop(desk, scope="ticket", key=f"ticket:{ticket.id}", ticket=ticket,
                    count=count, limit=limit)
    return True


def alert_mail_loop(desk: Desk, *, scope: str, key: str, ticket: models.Ticket | None,
                    count: int, limit: int, address: str | None = None) -> QueuedMail | None:
    """Tell the admins that a limit stopped automatic mail, once per address or ticket a day."""
    since = utcnow() - ALERT_WINDOW
    marker = json.dumps({"key": key})[1:-1]
    already = models.Event.select().where(
        models.Event.action == models.LOOP_ALERT_ACTION,
        models.Event.created_at >= since,
        models.Event.detail.contains(marker),
    ).exists()
    if already:
        return None

    models.Event.create(ticket=ticket, actor="maildesk", action=models.LOOP_ALERT_ACTION,
                        detail=json.dumps({"key": key, "scope": scope, "count": count}))
    admins = [Recipient(a) for a in desk.config.desk.admin_addresses]
    if not admins:
        logger.warning(_("mail loop suspected ({key}) but no admin_addresses are configured "
                         "to tell").format(key=key))
        return None
    window = {"address": ADDRESS_LIMIT_WINDOW, "ticket": TICKET_LIMIT_WINDOW,
              "desk": DESK_LIMIT_WINDOW}.get(scope,
                                             timedelta(minutes=LOOP_TICKET_WINDOW_MINUTES))
    loop = {
        "scope": scope, "address": address, "ticket": ticket.id if ticket else None,
        "count": count, "limit": limit, "window_hours": int(window.total_seconds() // 3600),
        "window_minutes": int(window.total_seconds() // 60),
        "first_at": utcnow() - window, "last_at": utcnow(),
    }
    context: dict[str, Any] = {"loop": loop}
    if ticket is not None:
        context["ticket"] = ticket_context(desk, ticket)
    return queue_mail(desk, template="mail_loop_alert", language=desk.config.language,
                      context=context, to=admins, ticket=None, automatic=True,
                      kind="loop_alert", enforce_limits=False)


def alert_on_loop_events(desk: Desk, decision: Any) -> list[QueuedMail]:
    """Tell the admins once when the pipeline suspected a loop of acknowledgements.

    Hook for ``tickets.apply``: the pipeline records ``mail_loop_suspected`` when a sender
    opened several tickets in a few minutes, each answered by our acknowledgement.
    """
    queued = []
    for number, action, _detail in decision.events:
        if action != "mail_loop_suspected":
            continue
        ticket = models.Ticket.get_or_none(models.Ticket.id == number)
        sender = decision.sender
        since = utcnow() - timedelta(minutes=LOOP_TICKET_WINDOW_MINUTES)
        count = (models.Ticket.select().join(models.Contact)
                 .where(models.Contact.address == sender, models.Ticket.created_at >= since)
                 .count())
        mail = alert_mail_loop(desk, scope="sender", key=sender, ticket=ticket, count=count,
                               limit=count, address=sender)
        if mail is not None:
            queued.append(mail)
    return queued


# ---------------------------------------------------------------------- threading


_TICKET_REFERENCES = statements.Prepared(
    lambda ticket_id: models.MessageReference.select(models.MessageReference.message_id,
                                                     models.MessageReference.recipients)
    .where(models.MessageReference.ticket == ticket_id)
    .order_by(models.MessageReference.id))


def thread_references(ticket: models.Ticket, address: str) -> list[str]:
    """Message-IDs of the ticket's mails that ``address`` sent or received, oldest first."""
    address = address.strip().lower()
    rows = _TICKET_REFERENCES.rows(ticket.id)
    return [message_id for message_id, recipients in rows
            if address in (recipients or "").split()]


# ---------------------------------------------------------------------- queueing


def _in_language(value: Any, language: str, depth: int = 0) -> Any:
    """Return a mail's context with each ``Reason`` in it written in the mail's language.

    A reason made while processing is in this process's language (MAILDESK_LANGUAGE,
    else the desk's), which need not be the reader's. Contexts nest three levels at most.
    """
    if isinstance(value, Reason):
        return value.in_language(language)
    if depth < 3 and isinstance(value, dict):
        return {key: _in_language(item, language, depth + 1) for key, item in value.items()}
    if depth < 3 and isinstance(value, list):
        return [_in_language(item, language, depth + 1) for item in value]
    return value


def queue_mail(
    desk: Desk,
    *,
    template: str,
    language: str | None,
    context: dict[str, Any],
    to: list[Recipient],
    cc: list[Recipient] | None = None,
    ticket: models.Ticket | None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    automatic: bool = True,
    kind: str | None = None,
    sender_name: str | None = None,
    enforce_limits: bool = True,
    attachments: list[OutgoingAttachment] | None = None,
    fresh_contacts: Sequence[models.Contact] = (),
    reference_kind: str | None = None,
    desk_limit: bool = True,
) -> QueuedMail | None:
    """Render a template and write it to the outbox; return None when nobody may get it.

    Must run inside the transaction of the change that causes the mail. ``language``
    None means the language of the first To address. For a ticket mail without
    ``in_reply_to`` and ``references``, the thread is taken from the ticket's earlier
    mails to that address, and the ticket tag is added to a subject that lacks it.
    ``reference_kind`` replaces ``kind`` in the mail's MessageReference row, which
    decides what a reply to the mail becomes (``maildesk.conversation``). ``desk_limit``
    False exempts the mail from the desk-wide hourly limit, for addresses the admins
    wrote themselves.
    """
    if automatic and enforce_limits and ticket is not None and _ticket_over_limit(
            desk, ticket, [r.address for r in (*to, *(cc or []))]):
        return None
    # One call for To and Cc, so that the desk-wide limit counts the whole mail.
    allowed = allowed_recipients(desk, [r.address for r in (*to, *(cc or []))], automatic,
                                 ticket, enforce_limits=enforce_limits,
                                 fresh_contacts=fresh_contacts, desk_limit=desk_limit)
    to = [r for r in to if r.address.strip().lower() in allowed]
    if not to:
        return None
    in_to = {r.address.strip().lower() for r in to}
    cc = [r for r in cc or [] if r.address.strip().lower() in allowed
          and r.address.strip().lower() not in in_to]
    if language is None:
        language = language_for_address(desk, to[0].address)

    try:
        rendered = desk.templates.render(template, language, {
            "desk": desk_context(desk), **_in_language(context, language)})
    except ConfigError as error:
        # A template that fails on this mail's values must not lose the user's request
        # or a quarantine record: the mail is left out and the failure recorded.
        logger.error(_("the {template} mail for ticket {ticket} was not sent: {error}").format(
            template=template, ticket=ticket.id if ticket else "-", error=error))
        statements.insert(models.Event, ticket=ticket, actor="maildesk", action="mail_not_sent",
                          detail=json.dumps({"template": template, "error": str(error)},
                                            ensure_ascii=False))
        return None

    if ticket is not None and desk.tag(ticket.id) not in rendered.subject:
        rendered = replace(rendered, subject=f"{desk.tag(ticket.id)} {rendered.subject}")

    if ticket is not None and in_reply_to is None and references is None:
        references = thread_references(ticket, to[0].address)
        in_reply_to = references[-1] if references else None

    kind = kind or template
    message_id = new_message_id(kind, ticket.id if ticket else None, desk.message_id_domain)
    message = build_message(
        rendered,
        sender=Recipient(desk.config.desk.address, sender_name or desk.config.desk.name),
        to=to,
        cc=cc,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        reply_to=desk.config.desk.address,
        automatic=automatic,
        ticket=ticket.id if ticket else None,
        thread_topic=ticket.subject if ticket is not None else None,
        thread_started=ticket.created_at if ticket is not None else None,
        attachments=attachments,
    )
    recipients = [r.address.strip().lower() for r in (*to, *cc)]
    row = statements.insert(
        models.Outbox,
        ticket=ticket,
        kind=kind,
        message_id=message_id,
        sender=desk.config.desk.address,
        recipients=" " + " ".join(recipients) + " ",
        subject=rendered.subject,
        automatic=automatic,
        raw=message.as_bytes(),
    )
    limited = [a for a in recipients if not _exempt_from_address_limit(desk, a)]
    if automatic and limited:
        for address in limited:
            statements.insert_later(models.AutomaticMailRecipient, outbox=row.id,
                                    address=strip_subaddress(address))
    if ticket is not None:
        statements.insert_later(
            models.MessageReference, message_id=message_id, ticket=ticket, direction="out",
            kind=(reference_kind or kind)[:20], recipients=" ".join(recipients), trusted=True,
        )
    logger.debug("queued %s for ticket %s as %s", template, ticket.id if ticket else "-",
                 message_id)
    return QueuedMail(row.id, message_id, tuple(recipients))


# ---------------------------------------------------------------------- what to send when


def _group_recipients(desk: Desk, group_name: str, exclude: str,
                      ticket: int | None = None) -> list[Recipient]:
    """Return the agents who belong to a group, except the one who wrote the mail.

    A group with its own mailbox gets the ticket dispatched there instead
    (``maildesk.escalation``), so its agents get no second notice from here. A group
    without agents has its new tickets announced to the admins, as its SLA mail is, so
    that no ticket arrives unseen, and so does a group removed from the configuration.
    """
    group = next((g for g in desk.config.groups if g.name == group_name), None)
    if group is None:
        logger.warning(_("ticket {ticket}: group {group} is no longer in the configuration, "
                         "so the admins get the new-ticket notice").format(
            ticket=ticket or "-", group=group_name))
        return [Recipient(address) for address in desk.config.desk.admin_addresses]
    if group.address:
        return []
    members = [agent for agent in desk.config.agents if group_name in agent.groups]
    if not members:
        logger.warning(_("ticket {ticket}: group {group} has no agents, so the admins get "
                         "the new-ticket notice").format(ticket=ticket or "-", group=group_name))
        return [Recipient(address) for address in desk.config.desk.admin_addresses]
    return [
        Recipient(agent.addresses[0], agent.name)
        for agent in members
        if agent.addresses[0].lower() != exclude
    ]


def _previous_assignee(desk: Desk, decision: Any) -> Recipient | None:
    """Return the agent who had the closed ticket that a new, linked ticket continues.

    The rules route the new ticket afresh, maybe to another group, so the agent who
    handled the closed ticket would not hear of it otherwise.
    """
    from maildesk import agents

    linked = decision.linked_ticket
    agent = agents.resolve_assignee(linked.assignee) if linked is not None else None
    if agent is None or agents.primary_address(agent).lower() == decision.sender:
        return None
    return Recipient(agents.primary_address(agent), agent.name)


def notify_new_ticket(desk: Desk, decision: Any, ticket: models.Ticket,
                      entry: models.Message | None = None) -> list[QueuedMail]:
    """Queue the mails a new ticket causes besides the acknowledgement.

    The group's agents get ``new_ticket_agents`` (one mail per language), unless the
    group has its own mailbox, and so does the agent who had the closed ticket that the
    new one continues. Every ``notify`` action of the routing rules gets its template.
    Each of these mails carries the user's files within the desk's limit
    (``maildesk.noticefiles``); ``entry`` is the stored message, whose attachment ids
    the notice gives for the files it leaves out.
    """
    from maildesk.noticefiles import notice_files

    queued: list[QueuedMail] = []
    context: dict[str, Any] = {
        "ticket": ticket_context(desk, ticket),
        "message": message_context(decision.message),
        "linked_ticket": ({"number": decision.linked_ticket.id}
                          if decision.linked_ticket is not None else None),
    }
    recipients: list[Recipient] = []
    if ticket.group:
        group = next((g for g in desk.config.groups if g.name == ticket.group), None)
        context["group"] = {"name": ticket.group,
                            "description": group.description if group else ""}
        recipients = _group_recipients(desk, ticket.group, exclude=decision.sender,
                                       ticket=ticket.id)
    else:
        context["group"] = None
    previous = _previous_assignee(desk, decision)
    if previous is not None and previous.address.lower() not in {
            recipient.address.lower() for recipient in recipients}:
        recipients.append(previous)
    notifications = getattr(decision.routing, "notify", ()) or ()
    if not recipients and not notifications:
        return queued

    files = notice_files(desk, ticket.id, decision.message,
                         entry.id if entry is not None else None)
    context["files"] = files.context
    for language, agents_to in _by_language(desk, recipients).items():
        mail = queue_mail(desk, template="new_ticket_agents", language=language,
                          context=context, to=agents_to, ticket=ticket, automatic=True,
                          kind="new_ticket", attachments=files.attachments)
        if mail is not None:
            queued.append(mail)

    for notification in notifications:
        recipients = [Recipient(address) for address in notification.addresses]
        for language, rule_to in _by_language(desk, recipients).items():
            # The admins wrote these addresses into the rules, so strangers' mail must
            # not use up the desk-wide limit for them.
            mail = queue_mail(desk, template=notification.template, language=language,
                              context=context, to=rule_to, ticket=ticket, automatic=True,
                              kind="rule_notify", desk_limit=False,
                              attachments=files.attachments)
            if mail is not None:
                queued.append(mail)
    return queued


def queue_rejection(desk: Desk, message: Any, *, template: str,
                    rejection: dict[str, Any], automatic: bool = True) -> QueuedMail | None:
    """Tell the sender of a mail that was not accepted (``rejection_too_large``,
    ``rejection_blocked``); nothing is sent to auto-replies, lists or bounces.

    A ``Reason`` in ``rejection`` is written in the language of the mail. The caller
    checks the classification first: this function only applies the recipient guards
    of ``queue_mail``.
    """
    sender = message.from_address
    if sender is None:
        return None
    contact = models.Contact.get_or_none(models.Contact.address == sender.normalized)
    language = choose_language(desk, contact_language=contact.language if contact else None)
    references = [*message.references]
    if message.message_id:
        references.append(message.message_id)
    return queue_mail(
        desk, template=template, language=language,
        context={"rejection": {"subject": message.subject, "received_at": utcnow(),
                               "reason": "", **rejection}},
        to=[Recipient(sender.normalized, sender.name)], ticket=None,
        in_reply_to=message.message_id, references=references, automatic=automatic,
        kind=template,
    )


__all__ = [
    "LANGUAGES", "QueuedMail", "alert_mail_loop", "alert_on_loop_events", "allowed_recipients",
    "choose_language",
    "desk_context", "is_machine_address", "language_for_address", "message_context",
    "notify_new_ticket", "queue_mail", "queue_rejection", "sample_context", "strip_subaddress",
    "thread_references", "ticket_context",
]

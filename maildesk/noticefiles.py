"""The user's files that go with a notice to agents, within the desk's size limit.

maildesk has no web UI, so the notice to agents about a user's mail (``new_ticket_agents``,
``user_replied``, a routing rule's ``notify``) is the only way the screenshot or log the
user sent reaches an agent. Every part of the user's mail that the parser kept as
an attachment goes along:

- A picture the user's HTML showed by Content-ID, such as a screenshot pasted into the
  body, goes as an ordinary attachment. The notice carries the text, not the user's
  HTML, so a ``cid:`` reference would show nothing, and the pasted picture is often the
  whole report. A logo in the user's signature comes along with it.
- An attached mail (message/rfc822, such as a forwarded ``.eml``) goes as
  application/octet-stream under its ``.eml`` name, as it does in an agent's relayed
  reply. RFC 2046 allows no base64 transfer encoding in message/rfc822, and
  ``mailbuild`` writes every file in base64. A mail client then opens the ``.eml`` file
  instead of mixing the forwarded header into the notice. An Outlook ``.msg`` is an
  ordinary file already.

The limit is on the files' decoded bytes together, per notice. Files are taken in the
mail's order while they fit; one that does not fit is left out, and the notice names
it with the command that exports it from the storage. Base64 makes the mail about 37 %
larger than the files (4/3, and a line break per 76 characters).

The ``dispatch`` mail, which may go to a vendor's mailbox outside the desk, carries no
files: ``tickets attachments NUMBER --directory DIR`` exports them for a vendor.

NOTE: the outbox keeps each mail whole (``Outbox.raw``), so the files a notice carries
are stored there again besides their copy in the storage (``maildesk.rawstore``), until
``tickets purge`` deletes the ticket's sent mail. Building the files in at send time
would save that copy but would make delivery depend on the storage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from maildesk import models
from maildesk.desk import Desk
from maildesk.i18n import ngettext
from maildesk.mailbuild import OutgoingAttachment
from maildesk.parse import Attachment, ParsedMessage
from maildesk.terminal import command_line

logger = logging.getLogger(__name__)

# The files of one notice, in decoded bytes: 7 MiB. In base64 they take 10,044,254 bytes,
# so the whole notice stays under Postfix's default message_size_limit of 10,240,000
# bytes (postconf(5)). A relay or mailbox with a smaller limit rejects the notice for
# good, text and all, so a site that has one sets a smaller value.
DEFAULT_MAX_SIZE = 7 * 1024 * 1024


def outgoing_file(part: Attachment) -> OutgoingAttachment:
    """Return one part of a received mail as a file of an outgoing mail.

    An attached mail becomes application/octet-stream: RFC 2046 allows no base64
    transfer encoding in message/rfc822, and ``mailbuild`` encodes every file in base64.
    """
    content_type = "application/octet-stream" if part.is_message else part.content_type
    return OutgoingAttachment(part.filename, content_type, part.content)


@dataclass(frozen=True)
class NoticeFiles:
    """The files that go with one notice, and the template values that describe them.

    ``context`` is the template's ``files``: ``sent`` and ``left_out`` are lists of
    ``{"name", "content_type", "size"}``, and each left-out entry adds ``id`` and
    ``export_command``. ``limit`` is the limit in bytes, 0 when sending files is off.
    ``list_command`` lists the ticket's files.
    """

    attachments: list[OutgoingAttachment] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)


def empty_context(desk: Desk, ticket: int) -> dict[str, Any]:
    return {"sent": [], "left_out": [], "limit": max_size(desk),
            "list_command": command_line(desk.config.path, "tickets", "attachments", str(ticket))}


def max_size(desk: Desk) -> int:
    return desk.config.desk.notification_attachments_max_size


def notice_files(desk: Desk, ticket: int, message: ParsedMessage,
                 entry_id: int | None) -> NoticeFiles:
    """Choose the files of a user's mail that go with a notice to agents.

    ``entry_id`` is the stored message of the mail, whose Attachment rows give the ids
    for the export command. They are read only when a file is left out, so a mail
    without attachments, or with files that fit, costs no statement here.
    """
    parts = message.attachments
    context = empty_context(desk, ticket)
    if not parts:
        return NoticeFiles([], context)

    limit = max_size(desk)
    sent: list[OutgoingAttachment] = []
    left_out: list[tuple[int, Attachment]] = []
    total = 0
    for index, part in enumerate(parts):
        if limit and total + part.size <= limit:
            sent.append(outgoing_file(part))
            total += part.size
            context["sent"].append(_describe(part))
        else:
            left_out.append((index, part))

    if left_out:
        ids = _attachment_ids(entry_id, len(parts))
        for index, part in left_out:
            described = _describe(part)
            attachment_id = ids[index] if ids is not None else None
            described["id"] = attachment_id
            if attachment_id is None:
                described["export_command"] = context["list_command"]
            else:
                described["export_command"] = command_line(
                    desk.config.path, "tickets", "attachment", str(attachment_id),
                    "--directory", ".")
            context["left_out"].append(described)
    if left_out and limit:
        logger.info(ngettext(
            "ticket {ticket}: {count} file of {message_id} left out of the notice to "
            "agents, over the limit of {limit} bytes: {names}",
            "ticket {ticket}: {count} files of {message_id} left out of the notice to "
            "agents, over the limit of {limit} bytes: {names}", len(left_out)).format(
            ticket=ticket, count=len(left_out), message_id=message.message_id or "-",
            limit=limit,
            names=", ".join(part.filename for _index, part in left_out)))
    return NoticeFiles(sent, context)


def _describe(part: Attachment) -> dict[str, Any]:
    return {"name": part.filename, "content_type": part.content_type, "size": part.size}


def _attachment_ids(entry_id: int | None, count: int) -> list[int] | None:
    """Return the ids of a message's Attachment rows in the mail's order, or None.

    ``tickets._add_entry`` inserts one row per part in the parser's order, so the ids
    line up with the parts. None means the rows are missing (an ignored mail stores
    none), and the notice then names the list command instead.
    """
    if entry_id is None:
        return None
    ids = [row.id for row in models.Attachment.select(models.Attachment.id)
           .where(models.Attachment.message == entry_id).order_by(models.Attachment.id)]
    return ids if len(ids) == count else None


def sample_values() -> dict[str, Any]:
    """Return a template preview's ``files``: one file sent, one left out."""
    config = "/etc/maildesk/maildesk.yaml"
    return {"files": {
        "sent": [{"name": "błąd-drukarki.jpg", "content_type": "image/jpeg",
                  "size": 182_044}],
        "left_out": [{"name": "nagranie-ekranu.mp4", "content_type": "video/mp4",
                      "size": 48_234_496, "id": 17,
                      "export_command": f"maildesk --config {config} tickets attachment 17 "
                                        "--directory ."}],
        "limit": DEFAULT_MAX_SIZE,
        "list_command": f"maildesk --config {config} tickets attachments 1234",
    }}

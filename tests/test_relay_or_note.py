"""Whether an agent's or a manager's mail reaches the requester, or stays with the agents.

The cases come from a first-line agent's working day played by real mail: a corrected
resend in reply to a command error, a command on a closed ticket, a group manager's
answer to an escalation, an agent's reply-all to the requester, and ``#note`` below
other commands. Every test runs the whole pipeline on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

from deskfactory import mail
from test_conversation import (
    EWA,
    REQUESTER,
    agent_mail,
    conversation_desk,
    events,
    open_ticket,
    outbox,
    parsed,
    process,
    reload,
    text_of,
)

from maildesk import models

USER = "zofia.wisniewska@example.org"


def user_reply(desk, ticket: models.Ticket, in_reply_to: str, body: str,
               message_id: str) -> None:
    process(desk, mail(sender=REQUESTER, subject=f"Re: [#{ticket.id}] Drukarka", body=body,
                       message_id=message_id, headers={"In-Reply-To": in_reply_to}),
            "test:user")


def entry_kind(message_id: str) -> str:
    return str(models.Message.get(models.Message.message_id == message_id).kind)


# --------------------------------------------------------------------------- #note lines


def test_note_line_below_commands_makes_note(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#status w realizacji\n#notatka\nSterownik jest stary.", ack))

    assert entry_kind("<a1@mail.example.com>") == "internal_note"
    assert reload(ticket).status == "in_progress"
    assert outbox("reply") == []


def test_user_replied_hint_names_note_line(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()

    user_reply(desk, ticket, ack, "Nadal nie działa.\n", "<u2@example.org>")

    hint = " ".join(text_of(outbox("user_replied")[0]).split())
    assert "Linia „#notatka” wśród poleceń na początku odpowiedzi" in hint
    assert "Pierwsza linia" not in hint

"""No mail loops, no answers to machines, bounces recorded: end to end, on both databases.

Mail goes through the real pipeline, the outbox sender and the aiosmtpd sink. Two desks
with two databases answer each other through the sink to show that a loop stops within
the limits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import peewee as pw
import pytest
import yaml
from deskfactory import (
    ADMIN_ADDRESS,
    base_config,
    clear_of_hour_end,
    mail,
    make_desk,
    make_ticket,
    record_sql,
)
from servers import PostgresSchema

from maildesk import models, pipeline
from maildesk.desk import Desk
from maildesk.mailbuild import Recipient
from maildesk.models import database_proxy, utcnow
from maildesk.notify import QueuedMail, queue_mail, ticket_context
from maildesk.outbox import Sender, record_bounce
from maildesk.parse import parse_message
from maildesk.tickets import apply
from maildesk.wiring import load_rules


def smtp_settings(smtp: Any) -> dict[str, Any]:
    return {"transport": "smtp", "host": "127.0.0.1", "port": smtp.port, "security": "none",
            "timeout": 5.0}


def send_all(desk: Desk) -> int:
    return Sender(desk.config.smtp, local_hostname="client.maildesk.test").deliver_due()


def outbox_rows() -> list[models.Outbox]:
    return list(models.Outbox.select().order_by(models.Outbox.id))


def parsed_row(row: models.Outbox) -> Any:
    """The header fields and body of an outgoing mail, as a mail client reads them."""
    return message_from_bytes(bytes(row.raw), policy=default_policy)


def load_case(shared_dir: Path, number: str) -> tuple[dict[str, Any], bytes]:
    found = sorted((shared_dir / "cases").glob(f"{number}-*.yaml"))
    if not found:
        pytest.skip(f"case {number} is not in {shared_dir / 'cases'}")
    case = yaml.safe_load(found[0].read_text(encoding="utf-8"))
    return case, (shared_dir / "cases" / case["eml"]).read_bytes()


def header_lines(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    return [line.split(":", 1)[0].lower() for line in head.split("\r\n")
            if line and line[0] not in " \t"]


def acknowledge(desk: Desk, ticket: models.Ticket) -> QueuedMail | None:
    with database_proxy.atomic():
        return queue_mail(desk, template="acknowledgement", language="pl",
                          context={"ticket": ticket_context(desk, ticket),
                                   "linked_ticket": None},
                          to=[Recipient(ticket.requester.address)], ticket=ticket, kind="ack")


# --------------------------------------------------------------------------- cases


def test_loops_case_013_out_of_office(tmp_path: Path, database_url: str,
                                                          shared_dir: Path, smtp) -> None:
    case, raw = load_case(shared_dir, "013")
    desk = make_desk(tmp_path, database_url, smtp=smtp_settings(smtp))
    before = case["preconditions"][0]
    make_ticket(before["ticket"], before["subject"], before["requester"], status="assigned",
                sent_ids=tuple(before["our_outgoing_message_ids"]))

    outcome = pipeline.process(desk, raw, "case:013")
    sent = send_all(desk)

    assert outcome.action == "append"
    assert outcome.ticket == 20451
    assert models.Ticket.select().count() == 1
    assert models.Ticket.get_by_id(20451).status == "assigned"
    entry = models.Message.get(models.Message.ticket == 20451)
    assert entry.kind == "auto_reply"
    assert outbox_rows() == []
    assert sent == 0
    assert smtp.deliveries == []


def test_loops_case_015_list_post(tmp_path: Path, database_url: str,
                                                  shared_dir: Path, smtp) -> None:
    _case, raw = load_case(shared_dir, "015")
    desk = make_desk(tmp_path, database_url, smtp=smtp_settings(smtp))

    outcome = pipeline.process(desk, raw, "case:015", load_rules(desk))
    send_all(desk)

    assert outcome.action in ("ignore", "create")
    assert outbox_rows() == []
    assert smtp.deliveries == []


def test_loops_case_032_helpdesk_ack(tmp_path: Path,
                                                            database_url: str,
                                                            shared_dir: Path, smtp) -> None:
    case, raw = load_case(shared_dir, "032")
    desk = make_desk(tmp_path, database_url, smtp=smtp_settings(smtp))
    before = case["preconditions"][0]
    make_ticket(before["ticket"], before["subject"], before["requester"],
                sent_ids=tuple(before["our_outgoing_message_ids"]))

    outcome = pipeline.process(desk, raw, "case:032", load_rules(desk))
    send_all(desk)

    assert outcome.action == "append"
    assert outcome.ticket == 20470
    assert models.Ticket.select().count() == 1
    assert all("support@vendor.example.net" not in row.recipients for row in outbox_rows())
    assert all("support@vendor.example.net" not in d.rcpt_tos for d in smtp.deliveries)


def test_loops_case_046_header_injection(tmp_path: Path, database_url: str,
                                                    shared_dir: Path, smtp) -> None:
    _case, raw = load_case(shared_dir, "046")
    desk = make_desk(tmp_path, database_url, smtp=smtp_settings(smtp))

    outcome = pipeline.process(desk, raw, "case:046", load_rules(desk))
    sent = send_all(desk)

    assert outcome.action == "create"
    ticket = models.Ticket.get_by_id(outcome.ticket)
    assert ticket.requester.address == "piotr.nowicki@example.org"
    assert "\r" not in ticket.subject
    assert "\n" not in ticket.subject
    entry = models.Message.get(models.Message.ticket == ticket)
    assert "pokazuje błąd 13.A2" in entry.text
    acknowledgements = [d for d in smtp.deliveries
                        if "piotr.nowicki@example.org" in d.rcpt_tos]
    assert sent >= 1
    assert len(acknowledgements) == 1
    delivery = acknowledgements[0]
    assert delivery.rcpt_tos == ("piotr.nowicki@example.org",)
    names = header_lines(delivery.data)
    assert names.count("subject") == 1
    assert "bcc" not in names
    assert "x-priority" not in names
    assert [a.addr_spec for a in delivery.message["To"].addresses] == [
        "piotr.nowicki@example.org"]
    subject = delivery.message["Subject"]
    assert "\r" not in subject
    assert "\n" not in subject
    assert "Nie działa drukarka na 3. piętrze" in subject
    assert all(d.rcpt_tos != ("kopie@collector.example.net",) for d in smtp.deliveries)
    assert all("kopie@collector.example.net" not in d.rcpt_tos for d in smtp.deliveries)


def test_loops_display_name_injection(tmp_path: Path, database_url: str,
                                                 smtp) -> None:
    desk = make_desk(tmp_path, database_url, smtp=smtp_settings(smtp))
    raw = (b"From: =?utf-8?q?Jan_Kowalski=0D=0ABcc=3A_kopie=40collector.example.net?= "
           b"<jan.kowalski@example.org>\r\n"
           b"To: helpdesk@example.com\r\n"
           b"Subject: =?utf-8?q?Drukarka=0AX-Priority=3A_1?=\r\n"
           b"Message-ID: <inj1@example.org>\r\n"
           b"Date: Fri, 04 Dec 2026 09:00:00 +0100\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
           b"Drukarka nie drukuje.\r\n")

    outcome = pipeline.process(desk, raw, "t:1")
    send_all(desk)

    assert outcome.action == "create"
    assert len(smtp.deliveries) == 1
    delivery = smtp.deliveries[0]
    assert delivery.rcpt_tos == ("jan.kowalski@example.org",)
    names = header_lines(delivery.data)
    assert "bcc" not in names
    assert "x-priority" not in names
    assert names.count("to") == 1
    assert [a.addr_spec for a in delivery.message["To"].addresses] == [
        "jan.kowalski@example.org"]
    display_name = delivery.message["To"].addresses[0].display_name
    assert "\n" not in display_name
    assert "\r" not in display_name


def test_loops_case_048_vendor_autoack_loop(tmp_path: Path, database_url: str,
                                            shared_dir: Path, smtp) -> None:
    case, raw = load_case(shared_dir, "048")
    desk = make_desk(tmp_path, database_url, smtp=smtp_settings(smtp))
    for before in case["preconditions"]:
        ticket = make_ticket(before["ticket"], before["subject"], before["requester"],
                             sent_ids=tuple(before["our_outgoing_message_ids"]))
        assert acknowledge(desk, ticket) is not None
    send_all(desk)
    smtp.clear()
    rows_before = len(outbox_rows())

    outcome = pipeline.process(desk, raw, "case:048", load_rules(desk))
    send_all(desk)

    vendor = "support@hosting.example.net"
    assert outcome.action == "append"
    assert outcome.ticket == 20513
    assert models.Ticket.select().join(models.Contact).where(
        models.Contact.address == vendor).count() == 2
    assert all(vendor not in d.rcpt_tos for d in smtp.deliveries)
    events = list(models.Event.select().where(models.Event.action == "mail_loop_suspected"))
    assert len(events) == 1
    assert json.loads(events[0].detail)["reason"] == (
        "mail loop suspected with support@hosting.example.net (automatic acknowledgements "
        "answered each other)")
    new_rows = outbox_rows()[rows_before:]
    assert [row.kind for row in new_rows] == ["loop_alert"]
    assert [d.rcpt_tos for d in smtp.deliveries] == [(ADMIN_ADDRESS,)]


def test_loops_loop_alert_is_sent_once(tmp_path: Path, database_url: str,
                                       shared_dir: Path) -> None:
    case, raw = load_case(shared_dir, "048")
    desk = make_desk(tmp_path, database_url)
    for before in case["preconditions"]:
        ticket = make_ticket(before["ticket"], before["subject"], before["requester"])
        acknowledge(desk, ticket)

    pipeline.process(desk, raw, "case:048")
    again = raw.replace(b"<hd7703.ack.5f01c2@desk.hosting.example.net>",
                        b"<hd7704.ack.5f01c3@desk.hosting.example.net>")
    pipeline.process(desk, again, "case:048b")

    alerts = [row for row in outbox_rows() if row.kind == "loop_alert"]
    assert len(alerts) == 1
    assert models.Event.select().where(
        models.Event.action == "mail_loop_suspected").count() == 2


# --------------------------------------------------------------------------- limits


def test_loops_address_limit_stops_and_alerts_once(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_limit": 3})
    tickets = [make_ticket(30000 + n, f"Pętla {n}", "robot@vendor.example.net")
               for n in range(5)]

    results = [acknowledge(desk, ticket) for ticket in tickets]

    assert [result is not None for result in results] == [True, True, True, False, False]
    alerts = [row for row in outbox_rows() if row.kind == "loop_alert"]
    assert len(alerts) == 1
    assert alerts[0].recipients.split() == [ADMIN_ADDRESS]
    alert = message_from_bytes(bytes(alerts[0].raw), policy=default_policy)
    assert "robot@vendor.example.net" in alert["Subject"]
    assert models.Event.select().where(
        models.Event.action == "automatic_mail_limited").count() == 2


def test_loops_ticket_limit_stops_and_alerts_once(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_ticket_limit": 2})
    ticket = make_ticket(30100, "Pętla", "zofia@example.org")

    results = []
    for number in range(4):
        with database_proxy.atomic():
            results.append(queue_mail(
                desk, template="acknowledgement", language="pl",
                context={"ticket": ticket_context(desk, ticket), "linked_ticket": None},
                to=[Recipient(f"osoba{number}@example.org")], ticket=ticket))

    assert [result is not None for result in results] == [True, True, False, False]
    alerts = [row for row in outbox_rows() if row.kind == "loop_alert"]
    assert len(alerts) == 1
    text = message_from_bytes(bytes(alerts[0].raw), policy=default_policy)
    assert "30100" in text["Subject"]


# The template values of a user's mail without attachments (maildesk.noticefiles).
NO_FILES = {"sent": [], "left_out": [], "limit": 0, "list_command": ""}


def test_loops_limits_spare_agents(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url,
                     desk={"automatic_mail_limit": 1, "automatic_mail_ticket_limit": 1})
    ticket = make_ticket(30200, "Drukarka", "zofia@example.org")

    results = []
    for _ in range(3):
        with database_proxy.atomic():
            results.append(queue_mail(
                desk, template="new_ticket_agents", language="pl",
                context={"ticket": ticket_context(desk, ticket),
                         "message": {"sender_name": "", "sender_address": "zofia@example.org",
                                     "subject": "Drukarka", "excerpt": "nie drukuje",
                                     "attachments": []},
                         "group": None, "linked_ticket": None, "files": NO_FILES},
                to=[Recipient("marek.zielinski@example.com")], ticket=ticket))

    assert all(result is not None for result in results)


def test_loops_manual_mail_is_not_limited(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_limit": 1})
    ticket = make_ticket(30300, "Drukarka", "zofia@example.org")

    results = []
    for _ in range(3):
        with database_proxy.atomic():
            results.append(queue_mail(
                desk, template="acknowledgement", language="pl",
                context={"ticket": ticket_context(desk, ticket), "linked_ticket": None},
                to=[Recipient("zofia@example.org")], ticket=ticket, automatic=False))

    assert all(result is not None for result in results)


@pytest.mark.parametrize(("address", "mailbox"), [
    ("Jan+faktury@Example.org", "jan@example.org"),
    ("jan+a+b@example.org", "jan@example.org"),
    (" jan.kowalski@example.org ", "jan.kowalski@example.org"),
    ("jan-faktury@example.org", "jan-faktury@example.org"),
    ("jan_faktury@example.org", "jan_faktury@example.org"),
    ("+48600100200@sms.example.org", "+48600100200@sms.example.org"),
    ("postmaster", "postmaster"),
])
def test_strip_subaddress_keeps_other_separators(address: str, mailbox: str) -> None:
    from maildesk.notify import strip_subaddress

    assert strip_subaddress(address) == mailbox


def test_loops_plus_addresses_share_address_limit(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_limit": 3})
    tickets = [make_ticket(30400 + n, f"Wygrana {n}", f"Ofiara+{n}@example.net")
               for n in range(5)]

    results = [acknowledge(desk, ticket) for ticket in tickets]

    assert [result is not None for result in results] == [True, True, True, False, False]
    alerts = [row for row in outbox_rows() if row.kind == "loop_alert"]
    assert len(alerts) == 1
    alert = message_from_bytes(bytes(alerts[0].raw), policy=default_policy)
    assert "ofiara@example.net" in alert["Subject"]
    recorded = [row.address for row in models.AutomaticMailRecipient.select()]
    assert recorded == ["ofiara@example.net"] * 3


# Spellings of one mailbox that a forger may put in From, each reaching ofiara@example.net.
OTHER_SPELLINGS = [
    '<"ofiara"@example.net>', '<"of\\iara"@example.net>', "<ofiara(x)@example.net>",
    "<ofiara@example.net.>", "<@relay.example.org:ofiara@example.net>",
    "<ofiara@example(y).net>",
]


def test_loops_spellings_share_address_limit(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_limit": 3})

    for number, sender in enumerate(OTHER_SPELLINGS):
        pipeline.process(desk, mail(sender=sender, subject=f"Wygrana {number}",
                                    message_id=f"<s{number}@example.net>"), f"test:{number}")

    acknowledgements = [row for row in outbox_rows() if row.kind == "ack"]
    assert [row.recipients.split() for row in acknowledgements] == [["ofiara@example.net"]] * 3
    assert models.Ticket.select().count() == len(OTHER_SPELLINGS)
    assert {contact.address for contact in models.Contact.select()} == {"ofiara@example.net"}


def test_loops_desk_limit_stops_mail_to_users(tmp_path: Path, database_url: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MAILDESK_LANGUAGE", "en")
    clear_of_hour_end()
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_desk_limit": 3})
    tickets = [make_ticket(30500 + n, "Wygrana", f"ofiara{n}@example.net") for n in range(5)]

    with caplog.at_level(logging.DEBUG, logger="maildesk.notify"):
        results = [acknowledge(desk, ticket) for ticket in tickets]

    assert [result is not None for result in results] == [True, True, True, False, False]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING
                and "desk-wide limit of 3" in record.getMessage()]
    assert len(warnings) == 1
    limited = [json.loads(row.detail) for row in models.Event.select().where(
        models.Event.action == "automatic_mail_limited")]
    assert [detail["scope"] for detail in limited] == ["desk", "desk"]
    assert [detail["address"] for detail in limited] == ["ofiara3@example.net",
                                                          "ofiara4@example.net"]
    alerts = [row for row in outbox_rows() if row.kind == "loop_alert"]
    assert len(alerts) == 1
    assert alerts[0].recipients.split() == [ADMIN_ADDRESS]
    alert = message_from_bytes(bytes(alerts[0].raw), policy=default_policy)
    assert "punktu obsługi" in alert["Subject"]
    assert isinstance(alert, EmailMessage)
    text = alert.get_body(("plain",))
    assert text is not None
    assert "desk.automatic_mail_desk_limit" in text.get_content()


def test_loops_desk_limit_spares_agents(tmp_path: Path, database_url: str) -> None:
    clear_of_hour_end()
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_desk_limit": 1})
    first = make_ticket(30600, "Drukarka", "zofia@example.org")
    second = make_ticket(30601, "Skaner", "jan@example.org")
    acknowledge(desk, first)

    with database_proxy.atomic():
        to_agent = queue_mail(
            desk, template="new_ticket_agents", language="pl",
            context={"ticket": ticket_context(desk, second),
                     "message": {"sender_name": "", "sender_address": "jan@example.org",
                                 "subject": "Skaner", "excerpt": "nie skanuje",
                                 "attachments": []},
                     "group": None, "linked_ticket": None, "files": NO_FILES},
            to=[Recipient("marek.zielinski@example.com")], ticket=second)

    assert acknowledge(desk, second) is None
    assert to_agent is not None


@pytest.mark.parametrize("recipient", ["kierownik@example.com", "serwis@drukarki.example.net"])
def test_loops_desk_limit_spares_configured(tmp_path: Path, database_url: str,
                                            recipient: str) -> None:
    # A manager and a group's own mailbox are named in maildesk.yaml, like agents.
    clear_of_hour_end()
    groups = [*base_config(database_url, tmp_path)["groups"],
              {"name": "serwis-drukarek", "tier": 3, "address": "serwis@drukarki.example.net"}]
    desk = make_desk(tmp_path, database_url, groups=groups,
                     desk={"automatic_mail_desk_limit": 1})
    first = make_ticket(30600, "Drukarka", "zofia@example.org")
    second = make_ticket(30601, "Skaner", "jan@example.org")
    acknowledge(desk, first)

    with database_proxy.atomic():
        configured = queue_mail(
            desk, template="dispatch", language="pl",
            context={"ticket": ticket_context(desk, second), "sla": {"resolution_due": None},
                     "dispatch": {"group": "serwis-drukarek", "reason": "", "external": True,
                                  "description": "nie skanuje",
                                  "requester_name": "", "requester_address": "jan@example.org"}},
            to=[Recipient(recipient)], ticket=second, kind="dispatch")

    assert acknowledge(desk, second) is None
    assert configured is not None


def test_loops_desk_limit_spares_rule_notify(tmp_path: Path, database_url: str) -> None:
    clear_of_hour_end()
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_desk_limit": 1})
    first = make_ticket(30600, "Drukarka", "zofia@example.org")
    second = make_ticket(30601, "Skaner", "jan@example.org")
    acknowledge(desk, first)
    context = {"ticket": ticket_context(desk, second),
               "message": {"sender_name": "", "sender_address": "jan@example.org",
                           "subject": "Skaner", "excerpt": "nie skanuje", "attachments": []},
               "group": None, "linked_ticket": None, "files": NO_FILES}

    with database_proxy.atomic():
        notified = queue_mail(desk, template="new_ticket_agents", language="pl",
                              context=context, to=[Recipient("kadry@example.org")],
                              ticket=second, kind="rule_notify",
                              desk_limit=False)

    assert acknowledge(desk, second) is None
    assert notified is not None


def test_loops_desk_limit_reads_count_once(tmp_path: Path, database_url: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Reading the hour's count costs up to the limit's number of rows, so it is read
    # once and then counted in the process, not read again for every mail.
    clear_of_hour_end()
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_desk_limit": 500})
    tickets = [make_ticket(30600 + index, "Drukarka", f"user{index}@example.org")
               for index in range(5)]
    executed = record_sql(database_proxy.obj, monkeypatch)

    sent = [acknowledge(desk, ticket) for ticket in tickets]

    assert all(mail is not None for mail in sent)
    assert sum("COUNT(*) FROM (SELECT" in sql for sql in executed) == 1


def test_loops_desk_limit_counts_whole_mail(tmp_path: Path, database_url: str) -> None:
    clear_of_hour_end()
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_desk_limit": 2})
    ticket = make_ticket(30700, "Drukarka", "zofia@example.org")

    with database_proxy.atomic():
        queued = queue_mail(
            desk, template="acknowledgement", language="pl",
            context={"ticket": ticket_context(desk, ticket), "linked_ticket": None},
            to=[Recipient("zofia@example.org")],
            cc=[Recipient("jan@example.org"), Recipient("ewa@example.org")], ticket=ticket)

    assert queued is not None
    assert queued.recipients == ("zofia@example.org", "jan@example.org")


def test_loops_desk_limit_counts_clock_hour(tmp_path: Path, database_url: str) -> None:
    clear_of_hour_end()
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_desk_limit": 2})
    earlier = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(minutes=1)
    old = models.Outbox.create(kind="ack", message_id="<ack.old@maildesk.example.com>",
                               sender="helpdesk@example.com", recipients=" a@example.net ",
                               automatic=True, raw=b"x", created_at=earlier)
    for number in range(2):
        models.AutomaticMailRecipient.create(outbox=old, address=f"old{number}@example.net",
                                             created_at=earlier)
    tickets = [make_ticket(30800 + n, "Drukarka", f"osoba{n}@example.org") for n in range(3)]

    results = [acknowledge(desk, ticket) for ticket in tickets]

    assert [result is not None for result in results] == [True, True, False]


def test_loops_desk_limit_still_creates_tickets(tmp_path: Path, database_url: str) -> None:
    clear_of_hour_end()
    desk = make_desk(tmp_path, database_url, desk={"automatic_mail_desk_limit": 2})

    outcomes = [pipeline.process(desk, mail(sender=f"ofiara{n}@example.net",
                                            subject="Wygrana", body=f"spam {n}\n",
                                            message_id=f"<spam{n}@evil.example>"),
                                 f"test:{n}")
                for n in range(4)]

    assert [outcome.action for outcome in outcomes] == ["create"] * 4
    assert models.Ticket.select().count() == 4
    assert len([row for row in outbox_rows() if row.kind == "ack"]) == 2


@pytest.mark.parametrize("sender", ["noreply@shop.example.net",
                                    "admini-it-bounces@lists.example.org",
                                    "Helpdesk <helpdesk@example.com>"])
def test_loops_no_ack_to_machines_or_self(tmp_path: Path, database_url: str,
                                                      sender: str) -> None:
    desk = make_desk(tmp_path, database_url)

    pipeline.process(desk, mail(sender=sender, message_id="<n1@shop.example.net>"), "t:1")

    assert [row for row in outbox_rows() if row.kind == "ack"] == []


def test_loops_corpus_machines_get_no_mail(tmp_path: Path, database_url: str,
                                           shared_dir: Path) -> None:
    desk = make_desk(tmp_path, database_url)
    corpus = shared_dir / "corpus"
    files = [*sorted((corpus / "flanker" / "bounce").glob("*.eml")),
             *sorted((corpus / "flanker" / "complaints").glob("*.eml")),
             corpus / "flanker" / "disposition-notification.eml",
             corpus / "request-tracker" / "multipart-report",
             *(corpus / "cpython-test-email" / f"msg_{n}.txt" for n in ("05", "16", "25", "43")),
             *(corpus / "zammad" / name for name in (
                 "mail033-undelivered-mail-returned-to-sender.box", "mail055.box",
                 "mail078.box", "mail089.box", "mail090.box", "mail043.box"))]
    files = [path for path in files if path.exists()]
    if not files:
        pytest.skip("the corpora are not available")

    outcomes = [pipeline.process(desk, path.read_bytes(), f"corpus:{path.name}")
                for path in files]

    assert len(outcomes) == len(files)
    assert all(outcome.action in ("ignore", "duplicate", "quarantined")
               for outcome in outcomes), [
        (f.name, o.action) for f, o in zip(files, outcomes, strict=True)]
    assert [row.kind for row in outbox_rows() if row.kind != "quarantine"] == []


# --------------------------------------------------------------------------- bounces


def dsn(original_id: str, recipient: str, status: str = "5.1.1",
        action: str = "failed") -> bytes:
    """A delivery status notification as Postfix writes it."""
    text = f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
To: helpdesk@example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn.{status}.{recipient}@mx.example.org>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected

--b1
Content-Type: text/rfc822-headers

From: helpdesk@example.com
To: {recipient}
Message-ID: {original_id}
Subject: [#1] x

--b1--
"""
    return text.replace("\n", "\r\n").encode("ascii")


def test_loops_incoming_dsn_marks_address_bounced(tmp_path: Path, database_url: str,
                                                  smtp) -> None:
    desk = make_desk(tmp_path, database_url, smtp=smtp_settings(smtp))
    created = pipeline.process(desk, mail(sender="jan.kowalski@example.org",
                                          message_id="<j1@example.org>"), "t:1")
    send_all(desk)
    acknowledgement = outbox_rows()[0]

    outcome = pipeline.process(desk, dsn(acknowledgement.message_id,
                                         "jan.kowalski@example.org"), "t:2")
    ticket = models.Ticket.get_by_id(created.ticket)
    with database_proxy.atomic():
        later = queue_mail(desk, template="acknowledgement", language="pl",
                           context={"ticket": ticket_context(desk, ticket),
                                    "linked_ticket": None},
                           to=[Recipient("jan.kowalski@example.org")], ticket=ticket)

    assert outcome.action == "ignore"
    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is not None
    assert "5.1.1" in contact.bounce_reason
    events = list(models.Event.select().where(models.Event.action == "bounce_recorded"))
    assert [event.ticket_id for event in events] == [created.ticket]
    assert later is None
    assert len(outbox_rows()) == 1


def test_loops_dsn_with_hostile_returned_id_ignored(tmp_path: Path,
                                                    database_url: str) -> None:
    # A returned Message-ID of a thousand "(" made the standard library's structured
    # header parser recurse too deep, and the report went to quarantine.
    desk = make_desk(tmp_path, database_url)

    outcome = pipeline.process(desk, dsn("(" * 1000, "jan.kowalski@example.org"), "t:2")

    assert outcome.action == "ignore"
    assert models.Quarantine.select().count() == 0


def test_loops_mail_from_bounced_sender_clears_mark(tmp_path: Path, database_url: str,
                                                   smtp, caplog: pytest.LogCaptureFixture) -> None:
    desk = make_desk(tmp_path, database_url, smtp=smtp_settings(smtp))
    pipeline.process(desk, mail(sender="jan.kowalski@example.org",
                                message_id="<j1@example.org>"), "t:1")
    send_all(desk)
    pipeline.process(desk, dsn(outbox_rows()[0].message_id, "jan.kowalski@example.org"), "t:2")
    marked = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")

    with caplog.at_level("INFO", logger="maildesk.bounces"):
        again = pipeline.process(desk, mail(sender="jan.kowalski@example.org",
                                            message_id="<j2@example.org>",
                                            subject="Nowa sprawa"), "t:3")

    assert marked.bounced_at is not None
    assert again.action == "create"
    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is None
    assert contact.bounce_reason is None
    acknowledgements = [row for row in outbox_rows() if row.ticket_id == again.ticket
                        and row.kind == "ack"]
    assert len(acknowledgements) == 1
    [event] = models.Event.select().where(models.Event.action == "bounce_cleared")
    assert (event.ticket_id, event.actor) == (again.ticket, "jan.kowalski@example.org")
    assert json.loads(event.detail)["message_id"] == "<j2@example.org>"
    assert "5.1.1" in json.loads(event.detail)["bounce_reason"]
    [line] = [record.getMessage() for record in caplog.records
              if record.name == "maildesk.bounces" and "<j2@example.org>" in record.getMessage()]
    assert "jan.kowalski@example.org" in line


def test_loops_concurrent_bounce_is_kept(tmp_path: Path, database_url: str) -> None:
    # Another process may record a bounce between deciding a mail and applying it.
    desk = make_desk(tmp_path, database_url)
    models.Contact.create(address="jan.kowalski@example.org", name="")
    raw = mail(sender="Jan Kowalski <jan.kowalski@example.org>", message_id="<j1@example.org>")
    message = parse_message(raw)
    decision = pipeline.decide(desk, message, raw, "t:1")

    models.Contact.update(bounced_at=models.utcnow(), bounce_reason="550 no such user").where(
        models.Contact.address == "jan.kowalski@example.org").execute()
    apply(desk, decision)

    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is not None
    assert contact.bounce_reason == "550 no such user"
    assert contact.name == "Jan Kowalski"  # the name from the mail is still filled in
    assert [row for row in outbox_rows() if row.kind == "ack"] == []


def test_loops_dsn_for_foreign_mail_is_not_believed(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    pipeline.process(desk, mail(sender="jan.kowalski@example.org"), "t:1")

    pipeline.process(desk, dsn("<someone-else@forger.example>", "jan.kowalski@example.org"),
                     "t:2")

    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is None


@pytest.mark.parametrize(("status", "action"), [("4.4.1", "delayed"), ("5.7.1", "failed"),
                                              ("5.2.2", "failed")])
def test_loops_dsn_delay_or_policy_keeps_address(tmp_path: Path, database_url: str,
                                                 status: str, action: str) -> None:
    desk = make_desk(tmp_path, database_url)
    pipeline.process(desk, mail(sender="jan.kowalski@example.org"), "t:1")
    acknowledgement = outbox_rows()[0]

    pipeline.process(desk, dsn(acknowledgement.message_id, "jan.kowalski@example.org",
                               status, action), "t:2")

    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is None


def test_loops_dsn_for_address_never_written_to(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    pipeline.process(desk, mail(sender="jan.kowalski@example.org"), "t:1")
    acknowledgement = outbox_rows()[0]

    pipeline.process(desk, dsn(acknowledgement.message_id, "anna.nowak@example.org"), "t:2")

    assert models.Contact.get_or_none(models.Contact.address == "anna.nowak@example.org") is None


def plain_bounce(recipient: str) -> bytes:
    """A plain-text bounce that names the address in X-Failed-Recipients only."""
    return (f"From: Mail Delivery System <MAILER-DAEMON@forger.example>\r\n"
            f"To: helpdesk@example.com\r\nSubject: Mail delivery failed\r\n"
            f"Message-ID: <forged.{recipient}@forger.example>\r\n"
            f"X-Failed-Recipients: {recipient}\r\n\r\n"
            f"A message that you sent could not be delivered.\r\n").encode("ascii")


def test_loops_bounce_without_returned_id_not_believed(tmp_path: Path,
                                                       database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    pipeline.process(desk, mail(sender="jan.kowalski@example.org"), "t:1")

    outcome = pipeline.process(desk, plain_bounce("jan.kowalski@example.org"), "t:2")

    assert outcome.action == "ignore"
    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is None
    assert not models.Event.select().where(models.Event.action == "bounce_recorded").exists()


def test_loops_plain_bounce_quoting_our_id_believed(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    pipeline.process(desk, mail(sender="jan.kowalski@example.org"), "t:1")
    acknowledgement = outbox_rows()[0]
    quoted = (f"\r\n----- Original message -----\r\n\r\nFrom: helpdesk@example.com\r\n"
              f"Message-ID: {acknowledgement.message_id}\r\n").encode("ascii")

    pipeline.process(desk, plain_bounce("jan.kowalski@example.org") + quoted, "t:2")

    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is not None
    assert contact.bounce_reason == "5.0.0 X-Failed-Recipients"


def test_loops_bounce_of_other_recipients_mail_not_believed(tmp_path: Path,
                                                            database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    pipeline.process(desk, mail(sender="jan.kowalski@example.org",
                                message_id="<victim@example.org>"), "t:1")
    # The forger opens a ticket of their own and so learns one Message-ID the desk sent.
    pipeline.process(desk, mail(sender="forger@example.net", subject="Pytanie",
                                message_id="<forger@example.net>"), "t:2")
    forgers_ack = next(row for row in outbox_rows() if "forger@example.net" in row.recipients)

    pipeline.process(desk, dsn(forgers_ack.message_id, "jan.kowalski@example.org"), "t:3")

    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is None
    assert not models.Event.select().where(models.Event.action == "bounce_recorded").exists()


AGENT_AUTHENTICATED = ("mx.example.com; dkim=pass header.d=example.com header.s=sel1; "
                       "dmarc=pass header.from=example.com")


def relay_to_requester_and_participant(desk: Desk) -> models.Outbox:
    """Open a ticket with Anna in Cc and relay an agent's reply, one mail to both."""
    pipeline.process(desk, mail(sender="jan.kowalski@example.org", message_id="<j1@example.org>",
                                headers={"Cc": "Anna Nowak <anna.nowak@example.org>"}), "t:1")
    acknowledgement = next(row for row in outbox_rows() if row.kind == "ack")
    pipeline.process(desk, mail(sender="Marek Zieliński <marek.zielinski@example.com>",
                                subject=f"Re: {acknowledgement.subject}",
                                body="Proszę wyłączyć i włączyć drukarkę.\n",
                                message_id="<a1@example.com>",
                                headers={"In-Reply-To": acknowledgement.message_id,
                                         "Authentication-Results": AGENT_AUTHENTICATED}), "t:2")
    [relay] = [row for row in outbox_rows() if row.kind == "reply"]
    return relay


@pytest.mark.parametrize("reported", ["anna.nowak@example.org", "jan.kowalski@example.org"])
def test_loops_dsn_about_one_of_several_recipients_ignored(tmp_path: Path, database_url: str,
                                                           reported: str) -> None:
    # Every recipient of the relay has its Message-ID and could forge this report.
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"]})
    relay = relay_to_requester_and_participant(desk)

    outcome = pipeline.process(desk, dsn(relay.message_id, reported), "t:3")

    assert sorted(relay.recipients.split()) == ["anna.nowak@example.org",
                                                "jan.kowalski@example.org"]
    assert outcome.action == "ignore"
    contact = models.Contact.get(models.Contact.address == reported)
    assert contact.bounced_at is None
    assert not models.Event.select().where(models.Event.action == "bounce_recorded").exists()


def test_loops_dsn_about_sole_recipient_after_relay(tmp_path: Path, database_url: str) -> None:
    # The acknowledgement went to Jan alone, but the relay to Jan and Anna names it in
    # References, so Anna could have written this report to silence Jan.
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"]})
    relay = relay_to_requester_and_participant(desk)
    acknowledgement = next(row for row in outbox_rows() if row.kind == "ack")

    pipeline.process(desk, dsn(acknowledgement.message_id, "jan.kowalski@example.org"), "t:3")

    assert acknowledgement.recipients.split() == ["jan.kowalski@example.org"]
    assert acknowledgement.message_id in str(parsed_row(relay)["References"])
    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is None
    assert not models.Event.select().where(models.Event.action == "bounce_recorded").exists()


def test_loops_dsn_after_reply_with_cc_ignored(tmp_path: Path, database_url: str) -> None:
    # Jan's own reply to the acknowledgement, with Anna in Cc, shows her its Message-ID.
    desk = make_desk(tmp_path, database_url)
    pipeline.process(desk, mail(sender="jan.kowalski@example.org",
                                message_id="<j1@example.org>"), "t:1")
    acknowledgement = next(row for row in outbox_rows() if row.kind == "ack")
    pipeline.process(desk, mail(sender="jan.kowalski@example.org",
                                subject=f"Re: {acknowledgement.subject}",
                                body="Dodam, że drukarka miga na czerwono.\n",
                                message_id="<j2@example.org>",
                                headers={"Cc": "anna.nowak@example.org",
                                         "In-Reply-To": acknowledgement.message_id}), "t:2")

    pipeline.process(desk, dsn(acknowledgement.message_id, "jan.kowalski@example.org"), "t:3")

    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is None
    assert not models.Event.select().where(models.Event.action == "bounce_recorded").exists()


def test_loops_dsn_after_dispatch_to_agents_believed(tmp_path: Path,
                                                    database_url: str) -> None:
    # The dispatch to the other group names the acknowledgement too, but agents, whom
    # maildesk.yaml names, are trusted not to forge reports.
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"]})
    pipeline.process(desk, mail(sender="jan.kowalski@example.org",
                                message_id="<j1@example.org>"), "t:1")
    acknowledgement = next(row for row in outbox_rows() if row.kind == "ack")
    pipeline.process(desk, mail(sender="Marek Zieliński <marek.zielinski@example.com>",
                                subject=f"Re: {acknowledgement.subject}",
                                body="#grupa druga-linia\n#notatka do sprawdzenia\n",
                                message_id="<a1@example.com>",
                                headers={"In-Reply-To": acknowledgement.message_id,
                                         "Authentication-Results": AGENT_AUTHENTICATED}), "t:2")
    [dispatch] = [row for row in outbox_rows() if row.kind == "dispatch"]

    pipeline.process(desk, dsn(acknowledgement.message_id, "jan.kowalski@example.org"), "t:3")

    assert dispatch.recipients.split() == ["ewa.nowak@example.com"]
    assert acknowledgement.message_id in str(parsed_row(dispatch)["References"])
    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is not None


def test_loops_reply_from_bounced_participant_clears_mark(tmp_path: Path,
                                                          database_url: str) -> None:
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"]})
    relay = relay_to_requester_and_participant(desk)
    record_bounce("anna.nowak@example.org", "550 5.1.1 user unknown")

    outcome = pipeline.process(desk, mail(sender="Anna Nowak <anna.nowak@example.org>",
                                          subject=f"Re: {relay.subject}",
                                          body="U mnie też nie drukuje.\n",
                                          message_id="<n1@example.org>",
                                          headers={"In-Reply-To": relay.message_id}), "t:3")

    assert outcome.action == "append"
    contact = models.Contact.get(models.Contact.address == "anna.nowak@example.org")
    assert contact.bounced_at is None
    [event] = models.Event.select().where(models.Event.action == "bounce_cleared")
    assert (event.ticket_id, event.actor) == (outcome.ticket, "anna.nowak@example.org")


def test_loops_auto_reply_keeps_bounce_mark(tmp_path: Path, database_url: str) -> None:
    # An auto-responder replies for mailboxes that nobody reads, so its mail keeps the mark.
    desk = make_desk(tmp_path, database_url)
    created = pipeline.process(desk, mail(sender="jan.kowalski@example.org",
                                          message_id="<j1@example.org>"), "t:1")
    acknowledgement = outbox_rows()[0]
    record_bounce("jan.kowalski@example.org", "550 5.1.1 user unknown")

    outcome = pipeline.process(desk, mail(sender="jan.kowalski@example.org",
                                          subject="Automatyczna odpowiedź: Drukarka",
                                          body="Jestem na urlopie.\n",
                                          message_id="<ooo1@example.org>",
                                          headers={"In-Reply-To": acknowledgement.message_id,
                                                   "Auto-Submitted": "auto-replied"}), "t:2")

    assert (outcome.action, outcome.ticket) == ("append", created.ticket)
    contact = models.Contact.get(models.Contact.address == "jan.kowalski@example.org")
    assert contact.bounced_at is not None
    assert not models.Event.select().where(models.Event.action == "bounce_cleared").exists()


# --------------------------------------------------------------------------- notifications


def test_loops_new_ticket_notifies_group_agents(tmp_path: Path, database_url: str,
                                                smtp) -> None:
    desk = make_desk(tmp_path, database_url, smtp=smtp_settings(smtp), agents=[
        {"login": "marek.zielinski", "name": "Marek Zieliński",
         "addresses": ["marek.zielinski@example.com"], "groups": ["pierwsza-linia"]},
        {"login": "john.smith", "name": "John Smith", "addresses": ["john.smith@example.com"],
         "groups": ["pierwsza-linia"], "language": "en"},
        {"login": "ewa.nowak", "name": "Ewa Nowak", "addresses": ["ewa.nowak@example.com"],
         "groups": ["druga-linia"]},
    ])
    (desk.config.rules_path / "10-drukarki.yaml").write_text(
        "- name: drukarki\n  when:\n    subject: [drukarka]\n  then:\n"
        "    group: pierwsza-linia\n", encoding="utf-8")

    outcome = pipeline.process(desk, mail(), "t:1", load_rules(desk))
    send_all(desk)

    kinds = sorted(row.kind for row in outbox_rows())
    assert kinds == ["ack", "new_ticket", "new_ticket"]
    by_recipient = {d.rcpt_tos: d.message for d in smtp.deliveries}
    polish = by_recipient[("marek.zielinski@example.com",)]
    english = by_recipient[("john.smith@example.com",)]
    assert polish["Subject"].startswith(f"[#{outcome.ticket}] Nowe zgłoszenie (pierwsza-linia)")
    assert english["Subject"].startswith(f"[#{outcome.ticket}] New ticket (pierwsza-linia)")
    assert polish["Reply-To"] == "helpdesk@example.com"
    reference = models.MessageReference.get(
        models.MessageReference.message_id == polish["Message-ID"])
    assert reference.ticket_id == outcome.ticket
    assert reference.recipients.split() == ["marek.zielinski@example.com"]
    assert ("ewa.nowak@example.com",) not in by_recipient
    body = polish.get_body(("plain",)).get_content()
    assert "drukarka nie drukuje" in body


def test_loops_rule_notify_action_sends_its_template(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    (desk.config.rules_path / "10-notify.yaml").write_text(
        "- name: kierownik\n  when:\n    subject: [drukarka]\n  then:\n"
        "    notify:\n      to: [kierownik@example.com]\n      template: new_ticket_agents\n",
        encoding="utf-8")

    pipeline.process(desk, mail(), "t:1", load_rules(desk))

    notified = [row for row in outbox_rows() if row.kind == "rule_notify"]
    assert [row.recipients.split() for row in notified] == [["kierownik@example.com"]]


# --------------------------------------------------------------------------- two desks


@contextmanager
def bound(database: pw.Database) -> Iterator[None]:
    """Point the models at one desk's database for the length of the block."""
    database_proxy.initialize(database)
    yield


STRIP_HEADERS = ("Auto-Submitted", "X-Auto-Response-Suppress", "X-Loop", "X-Maildesk-Ticket",
                 "In-Reply-To", "References", "Thread-Index", "Thread-Topic")


def through_gateway(raw: bytes, mode: str, counter: int) -> bytes:
    """Pass a mail the way a careless gateway or a foreign ticket system would."""
    if mode == "intact":
        return raw
    message = message_from_bytes(raw, policy=default_policy)
    for name in STRIP_HEADERS:
        del message[name]
    if mode == "rewritten":
        # Like another helpdesk's auto-acknowledgement: its own subject, our text quoted.
        rewritten = EmailMessage(policy=default_policy)
        for name in ("From", "To", "Date", "Message-ID"):
            rewritten[name] = str(message[name])
        rewritten["Subject"] = f"[HD-{counter}] Otrzymaliśmy Twoje zgłoszenie"
        quoted = "\n".join(f"> {line}" for line in [
            str(message["Subject"]),
            *message.get_body(("plain",)).get_content().splitlines()])
        rewritten.set_content(f"Dziękujemy, zgłoszenie otrzymało numer HD-{counter}.\n\n"
                              f"{quoted}\n")
        return rewritten.as_bytes()
    return message.as_bytes()


@pytest.mark.parametrize("mode", ["intact", "stripped", "rewritten"])
def test_loops_two_desks_stop_within_limit(tmp_path: Path, database_url: str, smtp,
                                           mode: str) -> None:
    limit = 4
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    desk_a = make_desk(tmp_path / "a", database_url, smtp=smtp_settings(smtp), desk={
        "address": "helpdesk@a.example", "ticket_tag": "[A#{number}]",
        "message_id_domain": "maildesk.a.example", "automatic_mail_limit": limit})
    database_a = database_proxy.obj
    second_schema = None
    if database_url.startswith("postgresql"):
        second_schema = PostgresSchema()
        second_schema.create()
        url_b = second_schema.url
    else:
        url_b = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    try:
        desk_b = make_desk(tmp_path / "b", url_b, smtp=smtp_settings(smtp), desk={
            "address": "helpdesk@b.example", "ticket_tag": "[B#{number}]",
            "message_id_domain": "maildesk.b.example", "automatic_mail_limit": limit})
        database_b = database_proxy.obj
        desks = {"helpdesk@a.example": (desk_a, database_a),
                 "helpdesk@b.example": (desk_b, database_b)}

        # Someone at desk B's address writes to desk A; from then on only machines talk.
        with bound(database_a):
            pipeline.process(desk_a, mail(sender="helpdesk@b.example", to="helpdesk@a.example",
                                          subject="Zamówienie tonerów",
                                          message_id="<start@b.example>"), "start")
        between_desks = 0
        for round_number in range(60):
            delivered = 0
            for desk, database in desks.values():
                with bound(database):
                    delivered += send_all(desk)
            mails = [d for d in smtp.deliveries if set(d.rcpt_tos) & set(desks)]
            smtp.clear()
            if not mails:
                break
            between_desks += len(mails)
            for delivery in mails:
                for recipient in delivery.rcpt_tos:
                    desk, database = desks[recipient]
                    with bound(database):
                        pipeline.process(desk, through_gateway(delivery.data, mode,
                                                               round_number),
                                         f"smtp:{round_number}")
        else:
            pytest.fail(f"the desks still wrote to each other after 60 rounds ({mode})")

        assert between_desks <= 2 * limit
        if mode == "intact":
            # Desk B sees Auto-Submitted on A's acknowledgement and stays silent.
            assert between_desks == 1
        if mode == "stripped":
            # Desk A threads B's acknowledgement onto its ticket by the subject tag.
            assert between_desks == 2
        alerts = []
        for _desk, database in desks.values():
            with bound(database):
                alerts += [row for row in outbox_rows() if row.kind == "loop_alert"]
        # Only the rewriting gateway defeats threading; the first desk to reach the
        # address limit stops the loop and tells its admin once.
        assert len(alerts) == (1 if mode == "rewritten" else 0)
        assert all(row.recipients.split() == [ADMIN_ADDRESS] for row in alerts)
    finally:
        database_proxy.initialize(database_a)
        if second_schema is not None:
            second_schema.drop()


def two_fresh_tickets(desk: Desk, sender: str) -> list[int]:
    """Open two acknowledged tickets for ``sender`` within a minute, as a busy user does."""
    numbers = []
    for index, subject in enumerate(("Drukarka nie drukuje", "Brak dostępu do VPN")):
        outcome = pipeline.process(desk, mail(sender=sender, subject=subject,
                                              message_id=f"<fresh{index}@example.org>"),
                                   f"test:fresh{index}")
        assert outcome.action == "create"
        numbers.append(outcome.ticket)
    return numbers


def test_loops_person_naming_recent_ticket_opens_new_one(tmp_path: Path,
                                                         database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    sender = "Ewa Lis <ewa.lis@example.org>"
    first, _second = two_fresh_tickets(desk, sender)

    outcome = pipeline.process(desk, mail(
        sender=sender, subject="Monitor migocze", message_id="<monitor@example.org>",
        body=f"Dzień dobry,\n\nmonitor migocze. Podobny problem jak w [#{first}].\n\nEwa\n"),
        "test:monitor")

    assert outcome.action == "create"
    assert models.Event.select().where(
        models.Event.action == "mail_loop_suspected").count() == 0


def test_loops_person_replying_to_closed_recent_ticket(tmp_path: Path,
                                                       database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    sender = "Ewa Lis <ewa.lis@example.org>"
    _first, second = two_fresh_tickets(desk, sender)
    models.Ticket.update(status="closed").where(models.Ticket.id == second).execute()
    ack = models.Outbox.get(models.Outbox.ticket == second, models.Outbox.kind == "ack")

    outcome = pipeline.process(desk, mail(
        sender=sender, subject=f"Re: [#{second}] Brak dostępu do VPN",
        message_id="<reopen@example.org>",
        headers={"In-Reply-To": ack.message_id, "References": ack.message_id},
        body=("To nie jest duplikat! Proszę otworzyć zgłoszenie ponownie.\n\n"
              f"> [#{second}] Przyjęliśmy zgłoszenie\n")), "test:reopen")

    assert outcome.action == "create"
    assert models.Ticket.get_by_id(outcome.ticket).linked_ticket_id == second
    assert models.Event.select().where(
        models.Event.action == "mail_loop_suspected").count() == 0

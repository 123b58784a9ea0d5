"""Scale: the scheduler over 100,000 open tickets; threading and creation at 1k vs 1M tickets.

Existing tickets are bulk-inserted with ``insert_many`` as maildesk would have left them:
requester contacts, each ticket with the Message-IDs of the mail that opened it and of
its acknowledgement (``MessageReference``) and one sent outbox row with its recipient
(``AutomaticMailRecipient``).

* Scheduler: ``maildesk.scheduler.Scheduler.run`` over 100,000 open tickets whose due
  times are spread over the next 30 days, so a run finds nothing to do and costs only
  its queries; then once more with ``--due`` tickets past their warning time, which
  measures the notices as well.
* Daily summary: ``maildesk.dailysummary.DailySummary.run`` at 08:00 of a working day
  over the same open tickets, spread over the desk's three groups, half of them
  assigned to its two agents: the summaries of both agents and of the manager.
* Threading and creation: for tickets already in the database (1,000 and 1,000,000 by
  default), the time of ``find_follow_up`` for replies by In-Reply-To and by subject tag
  to random existing tickets, and of ``pipeline.process`` for a new-ticket mail (one
  commit each, acknowledgement queued).

    python bench/scale.py
    python bench/scale.py --tickets 1000,100000 --engines sqlite --scheduler-tickets 20000
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import common
import peewee as pw
from corpus import CorpusGenerator

INSERT_BATCH = 1000


def bulk_tickets(count: int, *, seed: int, due_from: timedelta, due_span: timedelta,
                 status: str = "new") -> None:
    """Insert ``count`` tickets with contacts, references and outbox rows, in batches."""
    from maildesk import models

    rng = random.Random(seed)
    now = models.utcnow()
    contacts = max(1, count // 5)
    database = models.database_proxy.obj
    first_contact = (models.Contact.select(models.Contact.id).order_by(
        models.Contact.id.desc()).scalar() or 0) + 1
    first_ticket = (models.Ticket.select(models.Ticket.id).order_by(
        models.Ticket.id.desc()).scalar() or 0) + 1

    with database.atomic():
        for start in range(0, contacts, INSERT_BATCH):
            rows = [(f"kontakt{first_contact + i}@example.org", f"Kontakt {first_contact + i}",
                     "pl", now) for i in range(start, min(start + INSERT_BATCH, contacts))]
            models.Contact.insert_many(rows, fields=[
                models.Contact.address, models.Contact.name, models.Contact.language,
                models.Contact.created_at]).execute()

    ticket_fields = [models.Ticket.id, models.Ticket.subject, models.Ticket.status,
                     models.Ticket.requester, models.Ticket.language, models.Ticket.reply_token,
                     models.Ticket.created_at, models.Ticket.updated_at,
                     models.Ticket.first_response_due, models.Ticket.resolution_due,
                     models.Ticket.first_response_warning_due,
                     models.Ticket.resolution_warning_due]
    reference_fields = [models.MessageReference.message_id, models.MessageReference.ticket,
                        models.MessageReference.direction, models.MessageReference.kind,
                        models.MessageReference.recipients, models.MessageReference.created_at,
                        models.MessageReference.trusted]
    outbox_fields = [models.Outbox.ticket, models.Outbox.kind, models.Outbox.message_id,
                     models.Outbox.sender, models.Outbox.recipients, models.Outbox.subject,
                     models.Outbox.automatic, models.Outbox.raw, models.Outbox.state,
                     models.Outbox.next_attempt_at, models.Outbox.created_at,
                     models.Outbox.sent_at]
    span = due_span.total_seconds()
    for start in range(0, count, INSERT_BATCH):
        tickets, references, outbox = [], [], []
        for offset in range(start, min(start + INSERT_BATCH, count)):
            number = first_ticket + offset
            contact = first_contact + offset % contacts
            address = f"kontakt{contact}@example.org"
            created = now - timedelta(days=730 * (count - offset) / count)
            warning = now + due_from + timedelta(seconds=rng.random() * span)
            tickets.append((number, f"Zgłoszenie numer {number}", status, contact, "pl",
                            f"{rng.getrandbits(128):032x}", created, created,
                            warning + timedelta(hours=1), warning + timedelta(days=2),
                            warning, warning + timedelta(days=1)))
            # The mail that created the ticket, and the desk's acknowledgement: both trusted.
            references.append((f"<in.{number}@example.org>", number, "in", "customer",
                               address, created, True))
            references.append((f"<ack.{number}@maildesk.example.com>", number, "out", "ack",
                               address, created, True))
            outbox.append((number, "ack", f"<ack.{number}@maildesk.example.com>",
                           "helpdesk@example.com", f" {address} ", "Przyjęliśmy zgłoszenie",
                           True, b"", "sent", created, created, created))
        with database.atomic():
            models.Ticket.insert_many(tickets, fields=ticket_fields).execute()
            models.MessageReference.insert_many(references, fields=reference_fields).execute()
            models.Outbox.insert_many(outbox, fields=outbox_fields).execute()
            # The per-address limit counts these; each acknowledgement had one recipient.
            recipient = models.AutomaticMailRecipient
            models.AutomaticMailRecipient.insert_from(
                models.Outbox.select(models.Outbox.id, pw.fn.TRIM(models.Outbox.recipients),
                                     models.Outbox.created_at)
                .where(models.Outbox.ticket.between(first_ticket + start, number)),
                fields=[recipient.outbox, recipient.address, recipient.created_at]).execute()
    if models.is_postgresql():
        database.execute_sql("SELECT setval(pg_get_serial_sequence('ticket', 'id'), "
                             "(SELECT max(id) FROM ticket))")
        database.execute_sql("ANALYZE")
    else:
        database.execute_sql("ANALYZE")


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def time_threading(desk: Any, existing: int, samples: int, seed: int) -> tuple[float, float]:
    """Median ms of find_follow_up by In-Reply-To and by tag, to random existing tickets."""
    from maildesk.followup import find_follow_up
    from maildesk.parse import parse_message

    rng = random.Random(seed)
    by_reference: list[float] = []
    by_tag: list[float] = []
    for index in range(samples):
        number = rng.randint(1, existing)
        sender = f"kontakt{1 + (number - 1) % max(1, existing // 5)}@example.org"
        raw_reference = (f"From: <{sender}>\r\nTo: helpdesk@example.com\r\n"
                         f"Subject: Re: Zgłoszenie\r\nMessage-ID: <r{index}@example.org>\r\n"
                         f"In-Reply-To: <ack.{number}@maildesk.example.com>\r\n"
                         "Content-Type: text/plain; charset=utf-8\r\n\r\nDziękuję.\r\n")
        raw_tag = (f"From: <{sender}>\r\nTo: helpdesk@example.com\r\n"
                   f"Subject: Re: [#{number}] Zgłoszenie\r\nMessage-ID: <t{index}@example.org>"
                   "\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDziękuję.\r\n")
        for raw, timings in ((raw_reference, by_reference), (raw_tag, by_tag)):
            message = parse_message(raw.encode())
            started = time.perf_counter()
            follow_up = find_follow_up(message, desk.config.desk.ticket_tag,
                                       desk.agent_addresses)
            timings.append(time.perf_counter() - started)
            if follow_up.ticket is None or follow_up.ticket.id != number:
                raise RuntimeError(f"reply to ticket {number} did not thread: {follow_up}")
    return median_ms(by_reference), median_ms(by_tag)


def time_creation(desk: Any, samples: int, seed: int) -> float:
    """Median ms of pipeline.process for new-ticket mails (one commit, ack queued)."""
    from maildesk import pipeline
    from maildesk.wiring import load_rules

    rules = load_rules(desk)
    timings = []
    for index, raw in enumerate(CorpusGenerator(samples, seed, replies=False, domain="scale")):
        started = time.perf_counter()
        outcome = pipeline.process(desk, raw, f"bench:{index}", rules)
        timings.append(time.perf_counter() - started)
        if outcome.action != "create":
            raise RuntimeError(f"a new-ticket mail was not a new ticket: {outcome}")
    return median_ms(timings)


def threading_and_creation(engine: str, sizes: list[int], arguments: argparse.Namespace
                           ) -> None:
    from maildesk import models

    results = {}
    for size in sizes:
        workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
        try:
            with common.database(engine, workdir) as url:
                desk = common.open_desk(common.desk_config(workdir, url))
                started = time.perf_counter()
                bulk_tickets(size, seed=arguments.seed, due_from=timedelta(days=1),
                             due_span=timedelta(days=30))
                loaded = time.perf_counter() - started
                reference, tag = time_threading(desk, size, arguments.samples, arguments.seed)
                create = time_creation(desk, arguments.samples, arguments.seed)
                models.database_proxy.obj.close()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        results[size] = (reference, tag, create)
        print(f"  {engine:10} {size:>8} tickets (loaded in {loaded:.0f} s): threading by "
              f"In-Reply-To {reference:.2f} ms, by tag {tag:.2f} ms; new ticket "
              f"{create:.1f} ms (medians of {arguments.samples})")
    if len(sizes) >= 2:
        small, large = results[sizes[0]], results[sizes[-1]]
        print(f"  {engine:10} {sizes[-1]} vs {sizes[0]}: threading by In-Reply-To "
              f"x{large[0] / small[0]:.2f}, by tag x{large[1] / small[1]:.2f}, new ticket "
              f"x{large[2] / small[2]:.2f}")


def scheduler_ticks(engine: str, arguments: argparse.Namespace) -> None:
    from maildesk import models
    from maildesk.scheduler import Scheduler

    workdir = Path(tempfile.mkdtemp(prefix="bench-sched-"))
    try:
        with common.database(engine, workdir) as url:
            desk = common.open_desk(common.desk_config(workdir, url))
            bulk_tickets(arguments.scheduler_tickets, seed=arguments.seed,
                         due_from=timedelta(hours=1), due_span=timedelta(days=30))
            scheduler = Scheduler(desk)
            idle = []
            for _run in range(5):
                started = time.perf_counter()
                report = scheduler.run()
                idle.append(time.perf_counter() - started)
                if report.total:
                    raise RuntimeError(f"the scheduler found work in an idle run: {report}")

            bulk_tickets(arguments.due, seed=arguments.seed + 1,
                         due_from=-timedelta(minutes=30), due_span=timedelta(minutes=1))
            started = time.perf_counter()
            report = scheduler.run()
            busy = time.perf_counter() - started
            summary_seconds, summaries = daily_summaries(desk)
            models.database_proxy.obj.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"  {engine:10} scheduler over {arguments.scheduler_tickets} open tickets: idle run "
          f"median {median_ms(idle):.1f} ms (range {min(idle) * 1000:.1f}-"
          f"{max(idle) * 1000:.1f}); a run with {arguments.due} warnings due: "
          f"{busy * 1000:.0f} ms ({len(report.warnings)} warnings sent); the daily "
          f"summaries: {summary_seconds * 1000:.0f} ms ({summaries} mails)")


def daily_summaries(desk: Any) -> tuple[float, int]:
    """Spread the open tickets over groups and agents, then time one day's summaries."""
    from datetime import datetime
    from datetime import time as time_of_day
    from zoneinfo import ZoneInfo

    from maildesk import models
    from maildesk.dailysummary import DailySummary, SummarySettings
    from maildesk.slaconfig import service_levels
    from maildesk.wiring import check_templates

    ticket = models.Ticket
    groups = ["first-line", "network", "accounts"]
    logins = {"first-line": "marek.zielinski", "network": "ewa.nowak"}
    # peewee's % is LIKE, so the remainders are written out.
    third = ticket.id - (ticket.id / 3) * 3
    even = ticket.id - (ticket.id / 2) * 2 == 0
    for index, group in enumerate(groups):
        ticket.update(group=group).where(third == index).execute()
        if group in logins:
            ticket.update(assignee=logins[group], status="assigned").where(
                third == index, even).execute()

    zone = ZoneInfo(desk.config.desk.timezone)
    day = datetime.now(zone).date()
    while not service_levels(desk).calendar.hours_on(day):
        day += timedelta(days=1)
    summary = DailySummary(desk)
    summary.settings = SummarySettings(at=time_of_day(8))
    # The daemon compiles every template when it starts; so does this run, before timing.
    check_templates(desk)
    started = time.perf_counter()
    sent = summary.run(datetime.combine(day, time_of_day(8), tzinfo=zone))
    return time.perf_counter() - started, len(sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", default="1000,1000000",
                        help="existing tickets for threading and creation (default: "
                             "1000,1000000)")
    parser.add_argument("--scheduler-tickets", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=20,
                        help="tickets past their warning time in the busy run (default: 20)")
    parser.add_argument("--samples", type=int, default=200,
                        help="timed lookups and new tickets per size (default: 200)")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    common.quiet_logging()

    print(f"machine: {common.machine()}")
    sizes = [int(value) for value in arguments.tickets.split(",")]
    for engine in arguments.engines.split(","):
        scheduler_ticks(engine, arguments)
        threading_and_creation(engine, sizes, arguments)


if __name__ == "__main__":
    main()

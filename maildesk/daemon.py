"""The main loop: fetch, process, acknowledge at the source, send the outbox, wait.

One message is finished before a stop request (SIGTERM, SIGINT, SIGHUP) is honoured, and
mail queued but not sent yet waits in the outbox for the next start. Source and
database outages are retried with backoff; the loop never exits on them unless it runs
``--once`` and the outage outlasts the retries.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from types import FrameType

import peewee as pw

from maildesk import databaseerrors, faults, heap, lease, models, pipeline, workers
from maildesk.databasefile import DatabaseFileDeletedError, DatabaseFileWatch
from maildesk.desk import Desk
from maildesk.errors import TemporaryError
from maildesk.i18n import _, ngettext
from maildesk.logcontext import mail_context
from maildesk.outbox import FIRST_RETRY, Sender
from maildesk.parseahead import ParseAhead
from maildesk.quarantine import quarantine_unread
from maildesk.reasons import outcome_label
from maildesk.settling import Settling
from maildesk.sources import FetchedMail, Source

logger = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
# How long the rule and template files must stay unchanged before a change is checked
# and put in use, so a file caught half-written is not taken for the admin's edit.
SETTLE_SECONDS = 2.0
# With --once, a run gives up after this many failed attempts (pauses of 1+2+4+8+16 s),
# so a cron job or an admin testing a configuration gets exit status 75, not a hang.
ONCE_ATTEMPTS = 6
# After a delivery pass found the SMTP server unreachable, the outbox is not sent again
# for this long: the rows that pass claimed wait the first retry delay anyway.
DELIVERY_PAUSE = FIRST_RETRY.total_seconds()


class Daemon:
    def __init__(self, desk: Desk, source: Source, sender: Sender,
                 rules_watcher: object | None = None,
                 periodic: list[Callable[[], object]] | None = None,
                 parse_ahead: ParseAhead | None = None) -> None:
        self.desk = desk
        self.source = source
        self.sender = sender
        # A stop request ends a delivery pass between two mails, not after the queue.
        self.sender.stop_requested = lambda: self.stopping
        self.rules_watcher = rules_watcher
        self.periodic = periodic or []
        self.parse_ahead = parse_ahead
        self.stopping = False
        self.processed = 0
        self.outcomes: Counter[str] = Counter()
        self.owner = workers.worker_id()
        self._waiting_logged = False
        # Whether the last look at the mailbox lease found it ours (see holds_mailbox).
        self.lease_held = False
        # Whether the last send_outbox() was put off by a TemporaryError.
        self._delivery_postponed = False
        # send_outbox() does nothing before this time.monotonic() value.
        self._delivery_paused_until = 0.0
        # maildesk.yaml is read once; a change is only reported, once, until a restart.
        self._config_stamp = _file_stamp(desk.config.path)
        self._config_change_logged = False
        # The templates were checked when the daemon was built (wiring.check_templates).
        self._templates_stamp = _tree_stamp(desk.config.templates_path)
        self._templates_settling = Settling(SETTLE_SECONDS)
        self.database_file = DatabaseFileWatch()

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if not self.stopping:
            if signum == signal.SIGHUP:
                # Other daemons reload on SIGHUP, and a supervisor that restarts only
                # failed services leaves this one stopped.
                logger.warning(_("SIGHUP received: maildesk stops after the message in hand, "
                                 "because it has no reload. Rules and templates are read "
                                 "again while it runs; after a change to maildesk.yaml, "
                                 "restart it (systemctl restart maildesk)"))
            else:
                logger.info(_("stop requested: finishing the message in hand"))
        self.stopping = True

    def install_signal_handlers(self) -> None:
        # SIGHUP too: a closed terminal or a reload request must not kill the daemon in
        # the middle of a message. The configuration is read again only by a restart.
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self.request_stop)

    def _rules(self) -> object | None:
        watcher = self.rules_watcher
        if watcher is None:
            return None
        errors = watcher.check_for_changes()  # type: ignore[attr-defined]
        if errors:
            from maildesk.adminmail import mail_admins, rules_error_context

            mail_admins(self.desk, "rules_error",
                        rules_error_context(self.desk, errors, "previous"), kind="rules_error")
        return watcher.current  # type: ignore[attr-defined]

    def _report_config_change(self) -> None:
        if self._config_change_logged or _file_stamp(self.desk.config.path) == self._config_stamp:
            return
        self._config_change_logged = True
        logger.warning(_("{path} changed while maildesk runs: restart maildesk to apply the "
                         "new configuration; the rules and templates are picked up without a "
                         "restart").format(path=self.desk.config.path))

    def _check_templates(self) -> None:
        """Check changed template files once they settle; mail the admins their errors.

        A template that fails keeps its last working version at render time, so nothing
        is sent wrong meanwhile. This check notifies the admins before a mail needs it.
        """
        stamp = _tree_stamp(self.desk.config.templates_path)
        if stamp == self._templates_stamp:
            return
        newest = max((modified for _path, modified, _size in stamp), default=0)
        if not self._templates_settling.settled(stamp, newest / 1e9):
            return
        self._templates_stamp = stamp

        from maildesk.adminmail import mail_admins, templates_error_context
        from maildesk.notify import sample_context, sample_variants

        errors = self.desk.templates.check(sample_context(self.desk),
                                          sample_variants(self.desk))
        self._report_missing_translations()
        if not errors:
            logger.info(_("changed templates checked: all render"))
            return
        for error in errors:
            logger.error(_("template error, the last working version stays in use: {error}")
                         .format(error=error))
        mail_admins(self.desk, "templates_error", templates_error_context(self.desk, errors),
                    kind="templates_error")

    def _report_missing_translations(self) -> None:
        """Warn about each template that exists in one language only.

        Such mail is not an error, because it falls back to another language, but a
        reader of that language then gets a mail they may not understand.
        """
        templates = self.desk.templates
        for language, name in templates.missing_translations():
            logger.warning(_("template {name} does not exist in {language}: {path} is "
                             "missing, so mail in {language} falls back to another "
                             "language").format(
                name=name, language=language, path=templates.root / language / f"{name}.j2"))

    def holds_mailbox(self) -> bool:
        """Take or renew this daemon's lease on the mailbox (several daemons, one database)."""
        self.lease_held = lease.acquire(self.source.name, self.owner)
        if self.lease_held:
            self._waiting_logged = False
            return True
        if not self._waiting_logged:
            lease.log_waiting(self.source.name, lease.holder(self.source.name))
            self._waiting_logged = True
        return False

    def drain(self) -> int:
        """Process every mail the source has now; return how many were handled.

        The outbox is sent after each batch, so during a backlog of thousands of mails
        the first acknowledgements go out within seconds, not after the last batch. A
        delivery that fails is not tried again until the drain ends, and an unreachable
        server not for DELIVERY_PAUSE (see send_outbox): each try of a server that does
        not respond holds up the backlog for its connection timeout.
        """
        handled = 0
        delivering = True
        if not self.holds_mailbox():
            return handled
        while not self.stopping:
            batch = self.source.fetch()
            if not batch:
                break
            rules = self._rules()
            done: list[FetchedMail] = []
            quarantined: list[FetchedMail] = []
            parses = (self.parse_ahead.parsed([mail.raw for mail in batch])
                      if self.parse_ahead is not None else (None for _mail in batch))
            # The stored files and the commits must be on disk before the source lets go
            # of the mails. Both are flushed once, when the batch is done.
            with models.deferred_durability(), self.desk.store.batch(), closing(parses):
                for mail in batch:
                    if self.stopping:
                        break
                    # Taken after the stop check, so a stop waits for no further parse.
                    # The helper's log lines for the mail are logged with its source.
                    with mail_context(source=mail.source):
                        parsed = next(parses)
                    if mail.read_error is not None:
                        self._quarantine_unread(mail)
                        quarantined.append(mail)
                    else:
                        outcome = pipeline.process(self.desk, mail.raw, mail.source, rules,
                                                   parsed)
                        self.outcomes[outcome.action] += 1
                        in_quarantine = (outcome.action == "quarantined"
                                         or outcome.in_quarantine)
                        (quarantined if in_quarantine else done).append(mail)
                    handled += 1
                    # Counted here, so the summary of a pass that fails later is right.
                    self.processed += 1
            # Commits into a deleted or replaced file vanish with the process, so the
            # source keeps the mails for the next start.
            self.database_file.check()
            faults.crash_point("before-ack")
            self._acknowledge(done)
            # After the acknowledgement: a quarantine folder that cannot take mail must
            # not keep the processed mail of the batch at the source, where every pass
            # would fetch the same batch again and never reach the mail behind it.
            for mail in quarantined:
                faults.crash_point("before-ack")
                self.source.quarantine(mail)
            if delivering and not self.stopping:
                self.send_outbox()
                delivering = not (self.sender.connection_lost or self.sender.unreachable
                                  or self._delivery_postponed)
            if not self.holds_mailbox():
                break
        return handled

    def _quarantine_unread(self, mail: FetchedMail) -> None:
        """Record a mail that the source gave up reading, so the source can move it away."""
        assert mail.read_error is not None
        with mail_context(source=mail.source):
            quarantine_unread(self.desk, mail.source, mail.read_error)
        self.outcomes["quarantined"] += 1

    def _acknowledge(self, mails: list[FetchedMail]) -> None:
        """Release processed mail at the source, the whole batch at once where it can.

        Until then a crash only means the batch is fetched again and skipped as duplicates.
        """
        acknowledge_many = getattr(self.source, "acknowledge_many", None)
        if acknowledge_many is not None:
            acknowledge_many(mails)
            return
        for mail in mails:
            self.source.acknowledge(mail)

    def send_outbox(self) -> int:
        """Send what is due; return how many mails went out.

        After a pass found the server unreachable, the next ones are skipped for
        DELIVERY_PAUSE: the mail that pass had claimed is not due earlier, and the run
        loop would otherwise try the server again right after the drain did.
        """
        self._delivery_postponed = False
        if time.monotonic() < self._delivery_paused_until:
            return 0
        try:
            sent = self.sender.deliver_due()
        except TemporaryError as error:
            self._delivery_postponed = True
            logger.warning(_("outbox delivery postponed: {error}").format(error=error))
            return 0
        if self.sender.unreachable:
            self._delivery_paused_until = time.monotonic() + DELIVERY_PAUSE
        return sent

    def _run_periodic(self) -> None:
        """Run the scheduler's tasks, only in the daemon that has the mailbox lease.

        Two daemons running them at once would race for the same reminders and closes.
        A standby still sends the outbox, whose rows are claimed one process at a time.
        """
        if not self.lease_held:
            return
        for task in self.periodic:
            try:
                task()
            except TemporaryError as error:
                logger.warning(_("periodic task postponed: {error}").format(error=error))

    def run(self, once: bool = False) -> int:
        """Run until stopped (or one full pass with ``once``); return the mails handled."""
        logger.info(_("maildesk started on {source}").format(source=self.source.name))
        self._report_missing_translations()
        heap.keep_mmap_threshold()
        failures = 0
        try:
            while not self.stopping:
                try:
                    self.database_file.check()
                    self._report_config_change()
                    # Checked on every wake-up, so a broken edit is reported on a quiet
                    # mailbox too, not only when the next mail arrives.
                    self._rules()
                    self._check_templates()
                    self.drain()
                    # A stop ends the run after the message in hand. Queued mail goes out
                    # after the next start, so an SMTP server that does not respond cannot
                    # delay the stop by its timeout.
                    if self.stopping:
                        break
                    self.send_outbox()
                    if self.stopping:
                        break
                    self._run_periodic()
                    # Reminders and notices the periodic tasks queued go out now, not a
                    # poll interval later (or, with --once under cron, a run later).
                    if not self.stopping:
                        self.send_outbox()
                    failures = 0
                    if once:
                        break
                    self.source.wait(self._wait_interval(), lambda: self.stopping)
                except (pw.DatabaseError, pw.InterfaceError) as error:
                    if not databaseerrors.is_unavailable(error):
                        raise
                    pipeline.drop_connection()
                    failures += 1
                    if once and failures >= ONCE_ATTEMPTS:
                        raise TemporaryError(databaseerrors.describe(error)) from error
                    logger.warning(_("database unavailable: {error}").format(
                        error=databaseerrors.describe(error)))
                    self._sleep(min(2.0 ** (failures - 1), MAX_BACKOFF))
                except TemporaryError as error:
                    failures += 1
                    delay = min(2.0 ** (failures - 1), MAX_BACKOFF)
                    if once and failures >= ONCE_ATTEMPTS:
                        raise
                    logger.warning(_("{error}; retrying in {seconds:.0f} s (attempt {attempt})")
                                   .format(error=error, seconds=delay, attempt=failures))
                    self._sleep(delay)
                except DatabaseFileDeletedError as error:
                    if once:
                        logger.error(str(error))
                        raise
                    self.database_file.wait_until_restored(lambda: self.stopping, self._sleep,
                                                           SETTLE_SECONDS)
        finally:
            if self.parse_ahead is not None:
                self.parse_ahead.close()
            self.source.close()
            try:
                lease.release(self.source.name, self.owner)
            except (pw.OperationalError, pw.InterfaceError) as error:
                logger.warning(_("database unavailable: {error}").format(
                    error=databaseerrors.describe(error)))
            summary = ", ".join(f"{outcome_label(action)}: {count}" for action, count in
                                sorted(self.outcomes.items()))
            if summary:
                logger.info(ngettext("maildesk stopped after {count} message ({summary})",
                                     "maildesk stopped after {count} messages ({summary})",
                                     self.processed).format(count=self.processed,
                                                            summary=summary))
            else:
                logger.info(ngettext("maildesk stopped after {count} message",
                                     "maildesk stopped after {count} messages",
                                     self.processed).format(count=self.processed))
        return self.processed

    def _poll_interval(self) -> float:
        interval = getattr(getattr(self.source, "config", None), "poll_interval", None)
        return float(interval) if interval else 60.0

    def _wait_interval(self) -> float:
        """Return how long to wait for new mail before the next pass, in seconds.

        The daemon wakes at least every half lease, to renew it while the mailbox is
        quiet, and as often as the shortest interval of a periodic task (the scheduler's
        ``check_interval``), which would otherwise run only once per poll interval.
        """
        intervals = [self._poll_interval(), lease.LEASE_DURATION.total_seconds() / 2]
        for task in self.periodic:
            interval = getattr(task, "interval", None)
            if isinstance(interval, timedelta) and interval > timedelta(0):
                intervals.append(interval.total_seconds())
        return min(intervals)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, deadline - time.monotonic()))


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """Return the modification time and size of a file, or None when it cannot be read."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


def _tree_stamp(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Return the path, modification time (ns) and size of every file under ``root``."""
    stamps = []
    try:
        for path in sorted(root.rglob("*")):
            try:
                status = path.stat()
            except OSError:
                continue
            if path.is_file():
                stamps.append((str(path), status.st_mtime_ns, status.st_size))
    except OSError:
        return ()
    return tuple(stamps)

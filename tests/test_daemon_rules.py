"""The daemon keeps the last good rules when an admin breaks a rules file, and says so."""

from __future__ import annotations

import logging
import os
import time
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
from deskfactory import ADMIN_ADDRESS, mail, make_desk

from maildesk import models
from maildesk.wiring import build_daemon

GOOD_RULE = """\
- name: drukarki
  when:
    subject: drukark
  then:
    group: druga-linia
"""

BROKEN_RULE = """\
- name: drukarki
  when:
    subject: drukark
  then:
    grupa: druga-linia
"""


def _maildir_desk(tmp_path: Path, database_url: str):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "10-drukarki.yaml").write_text(GOOD_RULE, encoding="utf-8")
    (tmp_path / "mailbox" / "new").mkdir(parents=True)
    return make_desk(tmp_path, database_url,
                     source={"type": "maildir", "path": str(tmp_path / "mailbox")})


def _settled(tmp_path: Path) -> None:
    """Date the rule files back, as if the admin had finished editing a minute ago."""
    past = time.time() - 60
    for path in (tmp_path / "rules", *(tmp_path / "rules").iterdir()):
        os.utime(path, (past, past))


def _deliver(tmp_path: Path, raw: bytes, name: str) -> None:
    new = tmp_path / "mailbox" / "new"
    new.mkdir(parents=True, exist_ok=True)
    (new / name).write_bytes(raw)


def test_broken_rules_keep_last_good_and_mail_admins(tmp_path: Path, database_url: str) -> None:
    desk = _maildir_desk(tmp_path, database_url)
    daemon = build_daemon(desk)
    (tmp_path / "rules" / "10-drukarki.yaml").write_text(BROKEN_RULE, encoding="utf-8")
    _settled(tmp_path)
    _deliver(tmp_path, mail(subject="Drukarka nie drukuje"), "1.mail")

    daemon.run(once=True)

    ticket = models.Ticket.get()
    assert ticket.group == "druga-linia"
    notices = list(models.Outbox.select().where(models.Outbox.kind == "rules_error"))
    assert len(notices) == 1
    assert notices[0].recipients.split() == [ADMIN_ADDRESS]
    notice = message_from_bytes(bytes(notices[0].raw), policy=default_policy)
    body = notice.get_body(("plain",)).get_content()
    assert "10-drukarki.yaml:5:5" in body
    assert "poprzedniej, poprawnej wersji reguł" in body
    assert f"maildesk --config {desk.config.path} rules check" in body


def test_fixed_rules_are_picked_up_without_restart(tmp_path: Path, database_url: str) -> None:
    desk = _maildir_desk(tmp_path, database_url)
    daemon = build_daemon(desk)
    (tmp_path / "rules" / "10-drukarki.yaml").write_text(
        GOOD_RULE.replace("druga-linia", "pierwsza-linia"), encoding="utf-8")
    _settled(tmp_path)
    _deliver(tmp_path, mail(subject="Drukarka nie drukuje"), "1.mail")

    daemon.run(once=True)

    assert models.Ticket.get().group == "pierwsza-linia"
    assert not models.Outbox.select().where(models.Outbox.kind == "rules_error").exists()


def test_rules_edited_this_moment_wait(tmp_path: Path, database_url: str) -> None:
    # A file saved a moment ago may be half-written: the daemon keeps the rules in use.
    desk = _maildir_desk(tmp_path, database_url)
    _settled(tmp_path)
    daemon = build_daemon(desk)
    (tmp_path / "rules" / "10-drukarki.yaml").write_text(
        GOOD_RULE.replace("druga-linia", "pierwsza-linia"), encoding="utf-8")
    _deliver(tmp_path, mail(subject="Drukarka nie drukuje"), "1.mail")

    daemon.run(once=True)

    assert models.Ticket.get().group == "druga-linia"


def test_config_change_is_reported_once(tmp_path: Path, database_url: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    desk = _maildir_desk(tmp_path, database_url)
    daemon = build_daemon(desk)
    config = desk.config.path
    config.write_text(config.read_text(encoding="utf-8") + "\n# a new group below\n",
                      encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="maildesk.daemon"):
        daemon.run(once=True)
        daemon.run(once=True)

    changed = [record for record in caplog.records if str(config) in record.getMessage()]
    assert len(changed) == 1


def test_broken_rules_reported_without_mail(tmp_path: Path, database_url: str) -> None:
    desk = _maildir_desk(tmp_path, database_url)
    daemon = build_daemon(desk)
    (tmp_path / "rules" / "10-drukarki.yaml").write_text(BROKEN_RULE, encoding="utf-8")
    _settled(tmp_path)

    daemon.run(once=True)

    assert daemon.processed == 0
    assert models.Outbox.select().where(models.Outbox.kind == "rules_error").count() == 1


def test_broken_template_mailed_to_admins_once(tmp_path: Path, database_url: str) -> None:
    import shutil

    from maildesk.resources import shipped

    templates = tmp_path / "templates"
    shutil.copytree(shipped("templates"), templates)
    (tmp_path / "rules").mkdir()
    (tmp_path / "mailbox" / "new").mkdir(parents=True)
    desk = make_desk(tmp_path, database_url, templates=str(templates),
                     source={"type": "maildir", "path": str(tmp_path / "mailbox")})
    daemon = build_daemon(desk)
    broken = templates / "pl" / "acknowledgement.j2"
    text = broken.read_text(encoding="utf-8")
    broken.write_text(text.replace("{% block text %}",
                                   "{% block text %}{{ ticket.subject | nosuchfilter }}", 1),
                      encoding="utf-8")
    past = time.time() - 60
    os.utime(broken, (past, past))
    _deliver(tmp_path, mail(subject="Drukarka nie drukuje"), "1.mail")

    daemon.run(once=True)
    daemon.run(once=True)

    notices = list(models.Outbox.select().where(models.Outbox.kind == "templates_error"))
    assert len(notices) == 1
    assert notices[0].recipients.split() == [ADMIN_ADDRESS]
    body = message_from_bytes(bytes(notices[0].raw), policy=default_policy).get_body(
        ("plain",)).get_content()
    assert "acknowledgement.j2" in body
    assert f"maildesk --config {desk.config.path} templates check" in body
    # The user still got an acknowledgement, from the last version that worked.
    assert models.Outbox.select().where(models.Outbox.kind == "ack").count() == 1


def test_future_dated_template_change_checked(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from maildesk import settling

    desk = _templates_desk(tmp_path, database_url)
    daemon = build_daemon(desk)
    clock = [1000.0]
    monkeypatch.setattr(settling.time, "monotonic", lambda: clock[0])
    broken = tmp_path / "templates" / "pl" / "acknowledgement.j2"
    broken.write_text(broken.read_text(encoding="utf-8").replace(
        "{% block text %}", "{% block text %}{{ ticket.subject | nosuchfilter }}", 1),
        encoding="utf-8")
    # Edited, then the system clock went back an hour.
    future = time.time() + 3600
    os.utime(broken, (future, future))

    daemon._check_templates()
    at_first_sight = models.Outbox.select().where(
        models.Outbox.kind == "templates_error").count()
    clock[0] += 3
    daemon._check_templates()

    assert at_first_sight == 0
    assert models.Outbox.select().where(models.Outbox.kind == "templates_error").count() == 1


def _templates_desk(tmp_path: Path, database_url: str):
    import shutil

    from maildesk.resources import shipped

    shutil.copytree(shipped("templates"), tmp_path / "templates")
    (tmp_path / "rules").mkdir()
    (tmp_path / "mailbox" / "new").mkdir(parents=True)
    return make_desk(tmp_path, database_url, templates=str(tmp_path / "templates"),
                     source={"type": "maildir", "path": str(tmp_path / "mailbox")})


def _missing_file_warnings(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.WARNING and str(path) in record.getMessage()]


def test_template_missing_in_one_language_logged_at_start(
        tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    desk = _templates_desk(tmp_path, database_url)
    missing = tmp_path / "templates" / "en" / "status_pending.j2"
    missing.unlink()
    daemon = build_daemon(desk)

    with caplog.at_level(logging.WARNING, logger="maildesk.daemon"):
        daemon.run(once=True)

    warnings = _missing_file_warnings(caplog, missing)
    assert len(warnings) == 1
    assert "status_pending" in warnings[0]


def test_template_deleted_while_running_logged(
        tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    desk = _templates_desk(tmp_path, database_url)
    daemon = build_daemon(desk)
    daemon.run(once=True)
    missing = tmp_path / "templates" / "pl" / "dispatch.j2"
    missing.unlink()
    past = time.time() - 60
    os.utime(missing.parent, (past, past))

    with caplog.at_level(logging.WARNING, logger="maildesk.daemon"):
        daemon._check_templates()

    warnings = _missing_file_warnings(caplog, missing)
    assert len(warnings) == 1
    assert "dispatch" in warnings[0]


def _deny_reading(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """Make reading one file fail as it does when the file's modes lock maildesk out.

    The tests run as root, whom chmod does not stop.
    """
    real_read_text = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)


def test_unreadable_template_keeps_daemon_running(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    desk = _templates_desk(tmp_path, database_url)
    daemon = build_daemon(desk)
    daemon.run(once=True)
    unreadable = tmp_path / "templates" / "pl" / "acknowledgement.j2"
    past = time.time() - 60
    os.utime(unreadable, (past, past))
    _deny_reading(monkeypatch, unreadable)
    _deliver(tmp_path, mail(subject="Drukarka nie drukuje"), "1.mail")

    with caplog.at_level(logging.ERROR):
        daemon.run(once=True)

    assert daemon.processed == 1
    errors = [record.getMessage() for record in caplog.records
              if record.levelno == logging.ERROR and str(unreadable) in record.getMessage()]
    assert errors
    assert "Permission denied" in errors[0]
    notices = models.Outbox.select().where(models.Outbox.kind == "templates_error")
    assert notices.count() == 1
    # The user still got an acknowledgement, from the version read before.
    assert models.Outbox.select().where(models.Outbox.kind == "ack").count() == 1


def test_unreadable_template_at_start_is_configuration_error(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from maildesk.errors import ConfigError

    desk = _templates_desk(tmp_path, database_url)
    unreadable = tmp_path / "templates" / "pl" / "acknowledgement.j2"
    _deny_reading(monkeypatch, unreadable)

    with pytest.raises(ConfigError) as raised:
        build_daemon(desk)

    assert str(unreadable) in str(raised.value)
    assert "uid" in str(raised.value)

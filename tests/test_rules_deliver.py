"""``maildesk deliver`` keeps routing mail when an admin breaks a rules file."""

from __future__ import annotations

import os
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

from click.testing import CliRunner
from deskfactory import ADMIN_ADDRESS, mail, write_config

from maildesk import models
from maildesk.cli import main
from maildesk.desk import Desk
from maildesk.wiring import build_daemon

PRINTER_RULE = """\
- name: drukarki
  when:
    subject: drukark
  then:
    group: druga-linia
"""

BROKEN_PRINTER_RULE = """\
- name: drukarki
  when:
    subject: drukark
  then:
    group: drgua-linia
"""

VPN_RULE = """\
- name: vpn
  when:
    subject: vpn
  then:
    group: pierwsza-linia
"""


def _deliver(config: Path, subject: str, message_id: str):
    raw = mail(subject=subject, message_id=f"<{message_id}@example.org>")
    return CliRunner().invoke(main, ["--config", str(config), "deliver"], input=raw,
                              env={"MAILDESK_LANGUAGE": "en"}, catch_exceptions=False)


def _rules_error_mails() -> list[str]:
    rows = models.Outbox.select().where(models.Outbox.kind == "rules_error")
    return [message_from_bytes(bytes(row.raw), policy=default_policy)
            .get_body(("plain",)).get_content() for row in rows]


def _write_rules(tmp_path: Path, **files: str) -> None:
    (tmp_path / "rules").mkdir(exist_ok=True)
    for name, text in files.items():
        (tmp_path / "rules" / f"{name}.yaml").write_text(text, encoding="utf-8")


def test_deliver_keeps_last_good_rules(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    _write_rules(tmp_path, **{"10-drukarki": PRINTER_RULE})
    assert _deliver(config, "Drukarka nie drukuje", "m1").exit_code == 0
    _write_rules(tmp_path, **{"10-drukarki": BROKEN_PRINTER_RULE})

    result = _deliver(config, "Drukarka znowu nie drukuje", "m2")

    assert result.exit_code == 0, result.output
    tickets = list(models.Ticket.select().order_by(models.Ticket.id))
    assert [ticket.group for ticket in tickets] == ["druga-linia", "druga-linia"]
    notices = _rules_error_mails()
    assert len(notices) == 1
    assert "10-drukarki.yaml:5:12" in notices[0]
    assert "drgua-linia" in notices[0]
    assert "previous, valid version" in notices[0] or "poprzedniej, poprawnej" in notices[0]


def test_deliver_reports_broken_rules_once(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    _write_rules(tmp_path, **{"10-drukarki": BROKEN_PRINTER_RULE})

    results = [_deliver(config, f"Drukarka {index}", f"m{index}") for index in range(3)]

    assert [result.exit_code for result in results] == [0, 0, 0]
    assert models.Ticket.select().count() == 3
    assert len(_rules_error_mails()) == 1
    recipients = {row.recipients.strip() for row in
                  models.Outbox.select().where(models.Outbox.kind == "rules_error")}
    assert recipients == {ADMIN_ADDRESS}


def test_deliver_without_snapshot_uses_valid_files(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    _write_rules(tmp_path, **{"10-drukarki": BROKEN_PRINTER_RULE, "20-vpn": VPN_RULE})

    result = _deliver(config, "VPN nie działa", "m1")

    assert result.exit_code == 0, result.output
    assert models.Ticket.get().group == "pierwsza-linia"
    notices = _rules_error_mails()
    assert len(notices) == 1
    assert "10-drukarki.yaml:5:12" in notices[0]
    assert "20-vpn.yaml" not in notices[0]


def test_deliver_reports_a_new_breakage_again(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    _write_rules(tmp_path, **{"10-drukarki": BROKEN_PRINTER_RULE})
    _deliver(config, "Drukarka", "m1")
    _write_rules(tmp_path, **{"10-drukarki": PRINTER_RULE})
    _deliver(config, "Drukarka", "m2")
    _write_rules(tmp_path, **{"10-drukarki": BROKEN_PRINTER_RULE})

    _deliver(config, "Drukarka", "m3")

    assert len(_rules_error_mails()) == 2


def test_deliver_uses_rules_the_daemon_loaded(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url,
                          source={"type": "maildir", "path": str(tmp_path / "mailbox")})
    (tmp_path / "mailbox" / "new").mkdir(parents=True)
    _write_rules(tmp_path, **{"10-drukarki": PRINTER_RULE})
    build_daemon(Desk.open(config))
    _write_rules(tmp_path, **{"10-drukarki": BROKEN_PRINTER_RULE})

    result = _deliver(config, "Drukarka nie drukuje", "m1")

    assert result.exit_code == 0, result.output
    assert [ticket.group for ticket in models.Ticket.select()] == ["druga-linia"], \
        result.output


def test_rules_error_mail_names_the_fallback(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    _write_rules(tmp_path, **{"10-drukarki": BROKEN_PRINTER_RULE})

    _deliver(config, "Drukarka", "m1")

    notices = _rules_error_mails()
    assert len(notices) == 1
    assert "tylko według plików bez błędów" in notices[0]
    assert "nadal korzysta z poprzedniej" not in notices[0]


def test_deliver_with_rules_file_name_not_in_utf8(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    # "drukarki-zażółć.yaml" as a tool writing ISO-8859-2 names it.
    name = b"drukarki-" + "zażółć".encode("iso-8859-2") + b".yaml"
    with open(os.path.join(os.fsencode(tmp_path / "rules"), name), "w") as file:
        file.write("- name: drukarki\n  when:\n    subject: drukark\n"
                   "  then:\n    group: druga-linia\n")

    result = CliRunner().invoke(main, ["--config", str(config), "deliver"],
                                input=mail(subject="drukarka"),
                                env={"MAILDESK_LANGUAGE": "en"})

    assert result.exit_code == 0, result.output
    assert [ticket.group for ticket in models.Ticket.select()] == ["druga-linia"], \
        result.output

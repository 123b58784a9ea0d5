"""A user's files reach the agents: notices carry them within the limit, the CLI exports them.

Every test runs the whole pipeline on real parsed mail, on SQLite and on PostgreSQL, and
reads the attachments back from the outgoing mail's bytes.
"""

from __future__ import annotations

import logging
import os
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from deskfactory import base_config, make_desk, record_sql

from maildesk import models, pipeline
from maildesk.cli import main
from maildesk.desk import Desk
from maildesk.outbox import Sender
from maildesk.parse import parse_message
from maildesk.wiring import load_rules

REQUESTER = "Zofia Wiśniewska <zofia.wisniewska@example.org>"
SCREENSHOT = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4       # 1,032 bytes
LOG = b"2026-12-04 09:00:01 ERROR 13.A2 paper jam\n" * 100         # 4,300 bytes
PASTED = b"\x89PNG\r\n\x1a\n" + b"wklejony zrzut" * 20                # 288 bytes
FORWARDED_SUBJECT = "Faktura od dostawcy"
FOLLOW_UP = "Błąd wrócił po wymianie tonera, nowy zrzut i log w załączniku.\n"


def user_mail(*, message_id: str = "<m1@example.org>", subject: str = "Drukarka nie drukuje",
              in_reply_to: str | None = None, files: bool = True,
              body: str = "Dzień dobry,\n\ndrukarka pokazuje błąd 13.A2, zrzut w środku.\n",
              ) -> bytes:
    """A user's mail as a mail client writes it: HTML with a pasted picture, two files and
    a forwarded mail."""
    message = EmailMessage()
    message["From"] = REQUESTER
    message["To"] = "helpdesk@example.com"
    message["Subject"] = subject
    message["Date"] = "Fri, 04 Dec 2026 09:00:00 +0100"
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content(body)
    if not files:
        return message.as_bytes()
    message.add_alternative('<p>Dzień dobry,</p><p>drukarka pokazuje błąd 13.A2:</p>'
                            '<img src="cid:zrzut@example.org">', subtype="html")
    message.get_payload()[1].add_related(PASTED, maintype="image", subtype="png",
                                         cid="<zrzut@example.org>", filename="wklejony.png")
    message.add_attachment(SCREENSHOT, maintype="image", subtype="png",
                           filename="błąd drukarki.png")
    message.add_attachment(LOG, maintype="text", subtype="plain", filename="drukarka.log")
    forwarded = EmailMessage()
    forwarded["From"] = "dostawca@example.net"
    forwarded["Subject"] = FORWARDED_SUBJECT
    forwarded.set_content("Faktura w załączniku.\n" * 20)
    message.add_attachment(forwarded, filename="faktura.eml")
    return message.as_bytes()


def files_desk(tmp_path: Path, database_url: str, *, limit: int | None = None,
               marek_language: str | None = None, **overrides: Any) -> Desk:
    desk_section: dict[str, Any] = {}
    if limit is not None:
        desk_section["notification_attachments_max_size"] = limit
    agents = base_config(database_url, tmp_path)["agents"]
    if marek_language:
        agents[0]["language"] = marek_language
    desk = make_desk(tmp_path, database_url, desk=desk_section, agents=agents, **overrides)
    # The printer rule routes the mail to the group whose agent is Marek, and tells the
    # site's IT manager, as a rule's notify action does.
    (desk.config.rules_path / "10-drukarki.yaml").write_text(
        "- name: drukarki\n  when:\n    subject: [drukarka]\n  then:\n"
        "    group: pierwsza-linia\n"
        "    notify: {to: [kierownik.it@example.com], template: new_ticket_agents}\n",
        encoding="utf-8")
    return desk


def process(desk: Desk, raw: bytes) -> Any:
    return pipeline.process(desk, raw, "test:user", load_rules(desk))


def parsed(row: models.Outbox) -> EmailMessage:
    message = message_from_bytes(bytes(row.raw), policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def files_of(row: models.Outbox) -> dict[str, EmailMessage]:
    return {str(part.get_filename()): part for part in parsed(row).iter_attachments()}


def text_of(row: models.Outbox) -> str:
    body = parsed(row).get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def only_row(kind: str) -> models.Outbox:
    [row] = list(models.Outbox.select().where(models.Outbox.kind == kind))
    return row


def attachment_id(name: str) -> int:
    return int(models.Attachment.get(models.Attachment.filename == name).id)


# --------------------------------------------------------------------------- notices


def test_new_ticket_notice_carries_user_files(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)

    process(desk, user_mail())

    row = only_row("new_ticket")
    files = files_of(row)
    assert set(files) == {"wklejony.png", "błąd drukarki.png", "drukarka.log", "faktura.eml"}
    assert files["błąd drukarki.png"].get_content_type() == "image/png"
    assert files["błąd drukarki.png"].get_content() == SCREENSHOT
    assert files["drukarka.log"].get_content_type() == "text/plain"
    assert files["drukarka.log"].get_payload(decode=True) == LOG
    # The picture the user's HTML showed by cid goes as a file: the notice has no HTML
    # of the user's to show it in.
    assert files["wklejony.png"].get_content() == PASTED
    # RFC 2046 allows no base64 in message/rfc822, so the forwarded mail is a plain file.
    assert files["faktura.eml"].get_content_type() == "application/octet-stream"
    assert parse_message(files["faktura.eml"].get_content()).subject == FORWARDED_SUBJECT
    text = text_of(row)
    assert "Załączniki użytkownika dołączone do tej wiadomości (4):" in text
    assert "- błąd drukarki.png (image/png, 1 kB)" in text
    assert "Pominięte" not in text
    # The acknowledgement to the user carries no files back.
    assert list(parsed(only_row("ack")).iter_attachments()) == []


def test_rule_notification_carries_user_files(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)

    process(desk, user_mail())

    row = only_row("rule_notify")
    assert row.recipients.split() == ["kierownik.it@example.com"]
    assert files_of(row)["drukarka.log"].get_payload(decode=True) == LOG


def test_user_replied_notice_carries_user_files(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url, marek_language="en")
    first = process(desk, user_mail(files=False))
    models.Ticket.update(assignee="marek.zielinski").where(
        models.Ticket.id == first.ticket).execute()

    process(desk, user_mail(message_id="<m2@example.org>",
                            subject=f"Re: [#{first.ticket}] Drukarka nie drukuje",
                            in_reply_to="<m1@example.org>", body=FOLLOW_UP))

    row = only_row("user_replied")
    files = files_of(row)
    assert files["drukarka.log"].get_payload(decode=True) == LOG
    assert files["błąd drukarki.png"].get_content() == SCREENSHOT
    assert "The user's attachments, attached to this message (4):" in text_of(row)


def test_notice_files_reach_smtp_server(tmp_path: Path, database_url: str, smtp: Any) -> None:
    # The files survive the outbox and SMTP: the agent's server receives the same bytes.
    desk = files_desk(tmp_path, database_url, smtp={
        "transport": "smtp", "host": "127.0.0.1", "port": smtp.port, "security": "none",
        "timeout": 5.0})
    process(desk, user_mail())

    Sender(desk.config.smtp, local_hostname="client.maildesk.test").deliver_due()

    [delivery] = [d for d in smtp.deliveries if d.rcpt_tos == ("marek.zielinski@example.com",)]
    files = {str(part.get_filename()): part for part in delivery.message.iter_attachments()}
    assert files["błąd drukarki.png"].get_content_type() == "image/png"
    assert files["błąd drukarki.png"].get_content() == SCREENSHOT
    assert files["drukarka.log"].get_payload(decode=True) == LOG
    assert files["faktura.eml"].get_content_type() == "application/octet-stream"


def test_user_replied_names_left_out_file(tmp_path: Path, database_url: str) -> None:
    # The export command names the reply's own Attachment row, not the first mail's.
    desk = files_desk(tmp_path, database_url, limit=1500)
    first = process(desk, user_mail())
    models.Ticket.update(assignee="marek.zielinski").where(
        models.Ticket.id == first.ticket).execute()

    process(desk, user_mail(message_id="<m2@example.org>",
                            subject=f"Re: [#{first.ticket}] Drukarka nie drukuje",
                            in_reply_to="<m1@example.org>", body=FOLLOW_UP))

    reply_log = (models.Attachment.select().join(models.Message)
                 .where(models.Message.message_id == "<m2@example.org>",
                        models.Attachment.filename == "drukarka.log").get())
    text = text_of(only_row("user_replied"))
    assert f"tickets attachment {reply_log.id} --directory ." in text
    assert "Pominięte załączniki użytkownika (2)" in text
    assert set(files_of(only_row("user_replied"))) == {"wklejony.png", "błąd drukarki.png"}


def test_no_notice_leaves_nothing_out(tmp_path: Path, database_url: str,
                                      caplog: pytest.LogCaptureFixture) -> None:
    # A ticket no rule routes has no group and so no notice: no file is "left out".
    desk = files_desk(tmp_path, database_url, limit=1500)
    caplog.set_level(logging.INFO, logger="maildesk.noticefiles")

    process(desk, user_mail(subject="Skaner nie skanuje"))

    assert models.Outbox.select().where(models.Outbox.kind == "new_ticket").count() == 0
    assert [record for record in caplog.records if record.name == "maildesk.noticefiles"] == []


def test_notice_without_files_unchanged(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)

    process(desk, user_mail(files=False))

    row = only_row("new_ticket")
    assert list(parsed(row).iter_attachments()) == []
    assert "Załączniki" not in text_of(row)


def test_limit_leaves_out_larger_files(tmp_path: Path, database_url: str) -> None:
    # The pasted picture and the screenshot (288 + 1,032 bytes) fit. The 4,300-byte log
    # does not, and neither does the forwarded mail after it.
    desk = files_desk(tmp_path, database_url, limit=1500)

    process(desk, user_mail())

    row = only_row("new_ticket")
    assert set(files_of(row)) == {"wklejony.png", "błąd drukarki.png"}
    text = text_of(row)
    assert ("Pominięte załączniki użytkownika (2): jedno powiadomienie może zawierać "
            "najwyżej 1 kB załączników.") in text
    log_id = attachment_id("drukarka.log")
    command = (f"maildesk --config {desk.config.path} tickets attachment {log_id} "
               "--directory .")
    assert f"- drukarka.log (text/plain, 4 kB)\n  {command}" in text
    assert f"tickets attachment {attachment_id('faktura.eml')} --directory ." in text


def test_limit_text_in_english(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url, limit=1500, marek_language="en")

    process(desk, user_mail())

    text = text_of(only_row("new_ticket"))
    assert "The user's attachments, attached to this message (2):" in text
    assert ("The user's attachments left out (2): one notice carries at most 1 kB of "
            "attachments.") in text
    assert "An admin saves each of them to a file with the command below it:" in text
    assert f"tickets attachment {attachment_id('drukarka.log')} --directory ." in text


def test_limit_zero_sends_no_files(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url, limit=0)

    process(desk, user_mail())

    row = only_row("new_ticket")
    assert files_of(row) == {}
    text = text_of(row)
    assert ("Pominięte załączniki użytkownika (4): ten punkt obsługi nie dołącza "
            "załączników do powiadomień.") in text
    assert f"tickets attachment {attachment_id('wklejony.png')} --directory ." in text


def test_default_limit_is_seven_mebibytes(tmp_path: Path, database_url: str) -> None:
    from maildesk.noticefiles import DEFAULT_MAX_SIZE

    desk = files_desk(tmp_path, database_url)

    assert desk.config.desk.notification_attachments_max_size == DEFAULT_MAX_SIZE
    assert DEFAULT_MAX_SIZE == 7 * 1024 * 1024


def test_choosing_files_runs_no_statement(tmp_path: Path, database_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The throughput benchmark counts statements per mail: a mail without attachments,
    # and one whose files all fit, must cost none here.
    from maildesk.noticefiles import notice_files

    desk = files_desk(tmp_path, database_url)
    plain = parse_message(user_mail(files=False))
    with_files = parse_message(user_mail())
    executed = record_sql(models.database_proxy.obj, monkeypatch)

    chosen = [notice_files(desk, 1, message, 1) for message in (plain, with_files)]

    assert executed == []
    assert chosen[0].attachments == []
    assert len(chosen[1].attachments) == 4


def test_duplicate_mail_sends_one_notice(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)
    raw = user_mail()

    process(desk, raw)
    process(desk, raw)

    assert models.Outbox.select().where(models.Outbox.kind == "new_ticket").count() == 1
    assert models.Attachment.select().count() == 4


# --------------------------------------------------------------------------- CLI


def invoke(desk: Desk, *args: str, language: str = "en") -> Any:
    runner = CliRunner()
    return runner.invoke(main, ["--config", str(desk.config.path), *args],
                         env={"MAILDESK_LANGUAGE": language})


def test_cli_lists_ticket_attachments(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)
    number = process(desk, user_mail()).ticket

    listed = invoke(desk, "tickets", "attachments", str(number))

    assert listed.exit_code == 0, listed.output
    log_id = attachment_id("drukarka.log")
    assert f"{log_id:>6}  {len(LOG):>12}  {'text/plain':<28}  drukarka.log" in listed.output
    assert "user's message, zofia.wisniewska@example.org" in listed.output
    assert "4 files;" in listed.output
    polish = invoke(desk, "tickets", "attachments", str(number), language="pl")
    assert "wiadomość użytkownika" in polish.output
    assert "4 pliki; jeden z nich" in polish.output


def test_cli_ticket_show_names_attachment_ids(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)
    number = process(desk, user_mail()).ticket

    shown = invoke(desk, "tickets", "show", str(number))
    polish = invoke(desk, "tickets", "show", str(number), language="pl")

    log_id = attachment_id("drukarka.log")
    assert f"Attachment {log_id}: drukarka.log (text/plain, {len(LOG)} B" in shown.output
    assert f"Załącznik {log_id}: drukarka.log (text/plain, {len(LOG)} B" in polish.output


def test_cli_exports_one_attachment(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)
    process(desk, user_mail())
    log_id = attachment_id("drukarka.log")
    target = tmp_path / "out.log"

    written = invoke(desk, "tickets", "attachment", str(log_id), "-o", str(target))

    assert written.exit_code == 0, written.output
    assert target.read_bytes() == LOG
    assert f"attachment {log_id} written to {target} ({len(LOG)} B)" in written.output


def test_cli_export_keeps_existing_file(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)
    process(desk, user_mail())
    log_id = attachment_id("drukarka.log")
    target = tmp_path / "out.log"
    target.write_bytes(b"the admin's own file")

    refused = invoke(desk, "tickets", "attachment", str(log_id), "-o", str(target))
    polish = invoke(desk, "tickets", "attachment", str(log_id), "-o", str(target),
                    language="pl")

    assert refused.exit_code == 1
    assert "exists already" in refused.output
    assert "--force" in refused.output
    assert "już istnieje" in polish.output
    assert target.read_bytes() == b"the admin's own file"
    forced = invoke(desk, "tickets", "attachment", str(log_id), "-o", str(target), "--force")
    assert forced.exit_code == 0, forced.output
    assert target.read_bytes() == LOG


def test_cli_export_does_not_follow_link(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)
    process(desk, user_mail())
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "drukarka.log").symlink_to(victim)

    refused = invoke(desk, "tickets", "attachment", str(attachment_id("drukarka.log")),
                     "--directory", str(folder))

    assert refused.exit_code == 1
    assert victim.read_bytes() == b"keep me"


def test_cli_export_name_stays_in_directory(tmp_path: Path, database_url: str) -> None:
    # A row with a hostile name (an older maildesk, or one written by hand) must still
    # land inside the directory.
    desk = files_desk(tmp_path, database_url)
    process(desk, user_mail())
    log_id = attachment_id("drukarka.log")
    models.Attachment.update(filename="../../../etc/cron.d/evil").where(
        models.Attachment.id == log_id).execute()
    folder = tmp_path / "export" / "inner"
    folder.mkdir(parents=True)

    written = invoke(desk, "tickets", "attachment", str(log_id), "--directory", str(folder))

    assert written.exit_code == 0, written.output
    assert os.listdir(folder) == ["evil"]
    assert (folder / "evil").read_bytes() == LOG
    assert os.listdir(tmp_path / "export") == ["inner"]


def test_cli_exports_all_into_directory(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)
    first = process(desk, user_mail())
    models.Ticket.update(assignee="marek.zielinski").where(
        models.Ticket.id == first.ticket).execute()
    process(desk, user_mail(message_id="<m2@example.org>",
                            subject=f"Re: [#{first.ticket}] Drukarka nie drukuje",
                            in_reply_to="<m1@example.org>", body=FOLLOW_UP))
    folder = tmp_path / "export"
    folder.mkdir()

    written = invoke(desk, "tickets", "attachments", str(first.ticket),
                     "--directory", str(folder))

    assert written.exit_code == 0, written.output
    assert sorted(os.listdir(folder)) == sorted([
        "wklejony.png", "błąd drukarki.png", "drukarka.log", "faktura.eml",
        "wklejony (2).png", "błąd drukarki (2).png", "drukarka (2).log", "faktura (2).eml"])
    assert (folder / "drukarka (2).log").read_bytes() == LOG
    again = invoke(desk, "tickets", "attachments", str(first.ticket),
                   "--directory", str(folder))
    assert again.exit_code == 1
    assert "exists already" in again.output


def test_cli_attachment_not_found(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)

    missing = invoke(desk, "tickets", "attachment", "999", "-o", str(tmp_path / "x"))
    no_ticket = invoke(desk, "tickets", "attachments", "999")

    assert missing.exit_code == 1
    assert "attachment 999 not found" in missing.output
    assert no_ticket.exit_code == 1
    assert "ticket 999 not found" in no_ticket.output
    assert not (tmp_path / "x").exists()


def test_cli_writes_attachment_to_stdout(tmp_path: Path, database_url: str) -> None:
    desk = files_desk(tmp_path, database_url)
    process(desk, user_mail())

    written = CliRunner().invoke(main, ["--config", str(desk.config.path), "tickets",
                                        "attachment", str(attachment_id("błąd drukarki.png"))])

    assert written.exit_code == 0
    assert written.stdout_bytes == SCREENSHOT

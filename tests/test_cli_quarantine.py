"""``maildesk quarantine`` commands on mail quarantined by ``maildesk deliver``.

The races of ``retry`` run the second command inside the first, through a wrapper of
``pipeline.process``: that is where another admin's command lands when both run at once.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from deskfactory import write_config

from maildesk import models, pipeline
from maildesk import quarantine as quarantine_module
from maildesk.cli import main
from maildesk.cli_admin import HEADER_LINES_SHOWN
from maildesk.desk import Desk
from maildesk.quarantine import header_lines

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# No From line, so the pipeline quarantines the mail: no requester to open a ticket for.
NO_SENDER = (b"Message-ID: <lost@example.org>\r\n"
             b"Subject: no sender here\r\n"
             b"\r\n"
             b"body\r\n")

# Terminal escapes a hostile sender could use: a title change (OSC), a colour (CSI), a
# bell, a lone CR that returns to the start of the line, an 8-bit CSI (U+009B in UTF-8),
# a right-to-left override (U+202E) and a byte that is not UTF-8.
HOSTILE = (b"Message-ID: <hostile@example.org>\r\n"
           b"Subject: \x1b]0;pwned\x07\x1b[31mred\r\n"
           b"X-Return: visible\rhidden\r\n"
           b"X-C1: \xc2\x9b2J\r\n"
           b"X-Bidi: abc\xe2\x80\xaedef\r\n"
           b"X-Latin2: \xb1\r\n"
           b"\r\n"
           b"body\r\n")


def _invoke(*args: str, input: bytes | None = None, language: str = "en"):
    runner = CliRunner()
    return runner.invoke(main, list(args), input=input,
                         env={"MAILDESK_LANGUAGE": language}, catch_exceptions=False)


def _quarantine(tmp_path: Path, database_url: str, *raws: bytes) -> Path:
    """Deliver each raw mail through the real pipeline; each must end in quarantine."""
    config = write_config(tmp_path, database_url)
    for raw in raws:
        delivered = _invoke("--config", str(config), "deliver", input=raw)
        assert delivered.exit_code == 0, delivered.output
        assert "quarantined" in delivered.stdout
    return config


def _quarantined_at(config: Path, quarantine_id: int) -> str:
    desk = Desk.open(config)
    return desk.local_time(models.Quarantine.get_by_id(quarantine_id).created_at)


def test_show_empty_mail(tmp_path: Path, database_url: str) -> None:
    config = _quarantine(tmp_path, database_url, b"")

    shown = _invoke("--config", str(config), "quarantine", "show", "1")

    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[:8] == [
        "Quarantined mail 1: held, waiting for an admin",
        f"Quarantined at: {_quarantined_at(config, 1)}",
        "Source: pipe",
        "Message-ID: -",
        "Sender: -",
        "Subject: -",
        f"Raw mail: 0 B, sha256 {EMPTY_SHA256}",
        "Error, as recorded: ParseError: empty message",
    ]
    assert lines[9:11] == ["Detail, as recorded:", "Traceback (most recent call last):"]
    assert "maildesk.errors.ParseError: empty message" in lines
    assert lines[-2:] == ["Header of the raw mail, control characters escaped (\\x1b is ESC):",
                          "(the raw mail is empty)"]


def test_show_in_polish(tmp_path: Path, database_url: str) -> None:
    config = _quarantine(tmp_path, database_url, b"")

    shown = _invoke("--config", str(config), "quarantine", "show", "1", language="pl")

    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[:8] == [
        "Wiadomość z kwarantanny nr 1: zatrzymana, czeka na administratora",
        f"Umieszczono w kwarantannie: {_quarantined_at(config, 1)}",
        "Źródło: pipe",
        "Message-ID: -",
        "Nadawca: -",
        "Temat: -",
        f"Surowa wiadomość: 0 B, sha256 {EMPTY_SHA256}",
        "Błąd (tekst w brzmieniu z chwili zapisu): ParseError: empty message",
    ]
    assert lines[9] == "Szczegóły (tekst w brzmieniu z chwili zapisu):"
    assert lines[-2:] == [
        "Nagłówek surowej wiadomości, znaki sterujące zamienione na kody (\\x1b to ESC):",
        "(surowa wiadomość jest pusta)",
    ]


def test_empty_mail_error_recorded_in_polish(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)

    delivered = _invoke("--config", str(config), "deliver", input=b"", language="pl")
    listing = _invoke("--config", str(config), "quarantine", "list", language="pl")

    assert delivered.exit_code == 0, delivered.output
    assert delivered.stdout == ("przeniesiono do kwarantanny (wpis kwarantanny 1: "
                                "wiadomość jest pusta)\n")
    assert "ParseError: wiadomość jest pusta" in listing.stdout
    assert "empty message" not in listing.stdout


def test_show_header_of_mail_without_sender(tmp_path: Path, database_url: str) -> None:
    config = _quarantine(tmp_path, database_url, NO_SENDER)

    shown = _invoke("--config", str(config), "quarantine", "show", "1")

    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert "Message-ID: <lost@example.org>" in lines
    assert "Subject: no sender here" in lines
    assert f"Raw mail: {len(NO_SENDER)} B, sha256 {hashlib.sha256(NO_SENDER).hexdigest()}" in (
        lines)
    assert any(line.startswith("Error, as recorded: MissingSenderError: the mail has no "
                               "usable From address") for line in lines)
    heading = lines.index("Header of the raw mail, control characters escaped (\\x1b is ESC):")
    assert lines[heading + 1:] == ["Message-ID: <lost@example.org>", "Subject: no sender here"]


def test_list_subject_after_line_of_spaces(tmp_path: Path, database_url: str) -> None:
    # For the parser a line of spaces continues the field above, so the header goes on.
    raw = (b"Message-ID: <spaces@example.org>\r\n"
           b"X-Note: first\r\n"
           b"   \r\n"
           b"Subject: after the spaces\r\n"
           b"\r\n"
           b"body\r\n")
    config = _quarantine(tmp_path, database_url, raw)

    listed = _invoke("--config", str(config), "quarantine", "list")

    # The list shows the stored subject, the one read without the parser.
    assert "after the spaces" in listed.stdout


def test_show_escapes_hostile_header(tmp_path: Path, database_url: str) -> None:
    config = _quarantine(tmp_path, database_url, HOSTILE)

    shown = _invoke("--config", str(config), "quarantine", "show", "1")

    assert shown.exit_code == 0, shown.output
    for character in ("\x1b", "\x07", "\r", "\x9b", "\u202e"):
        assert character not in shown.stdout
    lines = shown.stdout.splitlines()
    assert "Subject: \\x1b]0;pwned\\x07\\x1b[31mred" in lines
    # The email parser ends a line at a lone CR too, so show does.
    assert "X-Return: visible\\r" in lines
    assert "hidden" in lines
    assert "X-C1: \\x9b2J" in lines
    assert "X-Bidi: abc\\u202edef" in lines
    assert "X-Latin2: \\xb1" in lines


def test_show_cuts_long_header(tmp_path: Path, database_url: str) -> None:
    long_line = b"X-Long: " + b"a" * 2000 + b"\r\n"
    received = b"".join(b"Received: from relay%d.example.org\r\n" % number
                        for number in range(60))
    config = _quarantine(tmp_path, database_url, long_line + received + NO_SENDER)

    english = _invoke("--config", str(config), "quarantine", "show", "1")
    polish = _invoke("--config", str(config), "quarantine", "show", "1", language="pl")

    lines = english.stdout.splitlines()
    assert "X-Long: " + "a" * 990 + "…" in lines
    assert "Received: from relay58.example.org" in lines
    assert "Received: from relay59.example.org" not in lines
    assert lines[-1] == "(3 more header lines not shown; --raw writes the whole mail)"
    assert polish.stdout.splitlines()[-1] == (
        "(pominięto jeszcze 3 wiersze nagłówka; --raw wypisuje całą wiadomość)")


def test_show_mail_without_header(tmp_path: Path, database_url: str) -> None:
    config = _quarantine(tmp_path, database_url, b"\r\nonly a body\r\n")

    shown = _invoke("--config", str(config), "quarantine", "show", "1")

    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[-1] == (
        "(no header: the raw mail starts with a blank line)")


@pytest.mark.parametrize("body_size", [10, 100_000], ids=["row", "file"])
def test_show_raw_gives_exact_bytes(tmp_path: Path, database_url: str, body_size: int) -> None:
    # CRLF and LF mixed, a NUL, 8-bit bytes and no final line break: nothing may change.
    raw = HOSTILE + b"\x00\xff\xfe\n" + b"x" * body_size
    config = _quarantine(tmp_path, database_url, raw)

    written = _invoke("--config", str(config), "quarantine", "show", "1", "--raw")

    assert written.exit_code == 0, written.output
    assert written.stdout_bytes == raw


def test_show_output_file_feeds_deliver(tmp_path: Path, database_url: str) -> None:
    config = _quarantine(tmp_path, database_url, NO_SENDER)
    output = tmp_path / "quarantined.eml"

    written = _invoke("--config", str(config), "quarantine", "show", "1",
                      "--output", str(output))
    fixed = b"From: Jan Kowalski <jan.kowalski@example.org>\r\n" + output.read_bytes()
    delivered = _invoke("--config", str(config), "deliver", input=fixed)

    assert written.exit_code == 0, written.output
    assert written.stdout == (f"raw mail of quarantine entry 1 written to {output} "
                              f"({len(NO_SENDER)} B)\n")
    assert output.read_bytes() == NO_SENDER
    assert delivered.exit_code == 0, delivered.output
    assert delivered.stdout.splitlines()[-1] == "ticket 1 created (new ticket)"


def test_show_raw_mail_missing_from_store(tmp_path: Path, database_url: str) -> None:
    # Over the 64 KiB the database keeps, so the raw mail is a file that can go missing.
    config = _quarantine(tmp_path, database_url, NO_SENDER + b"x" * 100_000)
    raw_files = [path for path in (tmp_path / "storage" / "raw").rglob("*") if path.is_file()]
    for path in raw_files:
        path.unlink()
    output = tmp_path / "quarantined.eml"

    shown = _invoke("--config", str(config), "quarantine", "show", "1")
    written = _invoke("--config", str(config), "quarantine", "show", "1", "--raw")
    to_file = _invoke("--config", str(config), "quarantine", "show", "1", "--output",
                      str(output))

    assert len(raw_files) == 1
    assert shown.exit_code == 1
    assert "Subject: no sender here" in shown.stdout.splitlines()
    assert "Raw mail: cannot be read, sha256 " in shown.stdout
    assert "Header of the raw mail" not in shown.stdout
    assert "cannot read the raw mail of quarantine entry 1" in shown.stderr
    assert "Traceback" not in shown.stderr
    assert written.exit_code == 1
    assert written.stdout_bytes == b""
    assert "cannot read the raw mail of quarantine entry 1" in written.stderr
    assert to_file.exit_code == 1
    assert not output.exists()


def test_delete_hides_entry_from_list_and_retry(tmp_path: Path, database_url: str) -> None:
    config = _quarantine(tmp_path, database_url, NO_SENDER, b"")

    deleted = _invoke("--config", str(config), "quarantine", "delete", "1")
    listing = _invoke("--config", str(config), "quarantine", "list")
    retried = _invoke("--config", str(config), "quarantine", "retry", "1")
    deleted_again = _invoke("--config", str(config), "quarantine", "delete", "1")

    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout == ("quarantine entry 1 deleted; its raw mail stays stored, and "
                              "'maildesk quarantine show 1 --raw' still writes it\n")
    assert ("INFO maildesk.quarantine: message <lost@example.org> deleted from quarantine "
            "(entry 1)") in deleted.stderr
    assert models.Quarantine.get_by_id(1).state == "deleted"
    assert "1 message in quarantine" in listing.stdout
    assert "no sender here" not in listing.stdout
    assert "ParseError: empty message" in listing.stdout
    assert retried.exit_code == 1
    assert "quarantine entry 1 not found or not held" in retried.stderr
    assert deleted_again.exit_code == 1
    assert "quarantine entry 1 not found or not held" in deleted_again.stderr


def test_delete_keeps_raw_mail(tmp_path: Path, database_url: str) -> None:
    config = _quarantine(tmp_path, database_url, NO_SENDER)
    _invoke("--config", str(config), "quarantine", "delete", "1")

    shown = _invoke("--config", str(config), "quarantine", "show", "1")
    written = _invoke("--config", str(config), "quarantine", "show", "1", "--raw")
    delivered_again = _invoke("--config", str(config), "deliver", input=NO_SENDER)

    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0] == "Quarantined mail 1: deleted (raw mail kept)"
    assert written.stdout_bytes == NO_SENDER
    assert delivered_again.exit_code == 0
    assert delivered_again.stdout.splitlines()[-1] == (
        "duplicate, not processed again (already quarantined)")
    assert models.Quarantine.select().count() == 1


def test_delete_released_entry_fails(tmp_path: Path, database_url: str) -> None:
    config = _quarantine(tmp_path, database_url, NO_SENDER)
    # As 'quarantine retry' leaves an entry whose mail it then processed.
    models.Quarantine.update(state="released").execute()

    deleted = _invoke("--config", str(config), "quarantine", "delete", "1")
    shown = _invoke("--config", str(config), "quarantine", "show", "1")

    assert deleted.exit_code == 1
    assert "quarantine entry 1 not found or not held" in deleted.stderr
    assert models.Quarantine.get_by_id(1).state == "released"
    assert shown.stdout.splitlines()[0] == "Quarantined mail 1: released (processed again)"


def test_delete_in_polish(tmp_path: Path, database_url: str) -> None:
    config = _quarantine(tmp_path, database_url, b"")

    deleted = _invoke("--config", str(config), "quarantine", "delete", "1", language="pl")
    shown = _invoke("--config", str(config), "quarantine", "show", "1", language="pl")
    deleted_again = _invoke("--config", str(config), "quarantine", "delete", "1",
                            language="pl")

    assert deleted.stdout == ("usunięto wpis kwarantanny 1; surowa wiadomość pozostaje "
                              "zapisana i 'maildesk quarantine show 1 --raw' nadal ją wypisze\n")
    assert ("wiadomość (bez Message-ID) usunięta z kwarantanny (wpis 1); surowa wiadomość "
            f"pozostaje zapisana pod skrótem sha256 {EMPTY_SHA256}") in deleted.stderr
    assert shown.stdout.splitlines()[0] == (
        "Wiadomość z kwarantanny nr 1: usunięta (surowa wiadomość zachowana)")
    assert deleted_again.exit_code == 1
    assert deleted_again.stderr.splitlines()[-1] == (
        "błąd: nie znaleziono wiadomości 1 w kwarantannie albo nie jest już w niej zatrzymana")


def test_unknown_id(tmp_path: Path, database_url: str) -> None:
    config = _quarantine(tmp_path, database_url, b"")

    shown = _invoke("--config", str(config), "quarantine", "show", "99")
    written = _invoke("--config", str(config), "quarantine", "show", "99", "--raw")
    deleted = _invoke("--config", str(config), "quarantine", "delete", "99")
    shown_pl = _invoke("--config", str(config), "quarantine", "show", "99", language="pl")
    deleted_pl = _invoke("--config", str(config), "quarantine", "delete", "99", language="pl")

    for result in (shown, written, deleted, shown_pl, deleted_pl):
        assert result.exit_code == 1
        assert result.stdout_bytes == b""
    assert shown.stderr.splitlines()[-1] == (
        "error: quarantine entry 99 not found; 'maildesk quarantine list' shows the held ones")
    assert written.stderr.splitlines()[-1] == shown.stderr.splitlines()[-1]
    assert deleted.stderr.splitlines()[-1] == (
        "error: quarantine entry 99 not found or not held")
    assert shown_pl.stderr.splitlines()[-1] == (
        "błąd: nie znaleziono wiadomości 99 w kwarantannie; 'maildesk quarantine list' "
        "pokazuje zatrzymane wiadomości")
    assert deleted_pl.stderr.splitlines()[-1] == (
        "błąd: nie znaleziono wiadomości 99 w kwarantannie albo nie jest już w niej zatrzymana")
    assert models.Quarantine.get_by_id(1).state == "held"


def test_show_header_past_blank_looking_line(tmp_path: Path, database_url: str) -> None:
    # A line of spaces continues the header for the parser (RFC 5322 obsolete folding),
    # so the headers after it are part of the mail the pipeline failed on.
    raw = (b"Message-ID: <spaces@example.org>\r\n"
           b"Subject: no sender here\r\n"
           b"   \r\n"
           b"X-Hidden: shown too\r\n"
           b"\r\n"
           b"body\r\n")
    config = _quarantine(tmp_path, database_url, raw)

    shown = _invoke("--config", str(config), "quarantine", "show", "1")

    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    heading = lines.index("Header of the raw mail, control characters escaped (\\x1b is ESC):")
    assert lines[heading + 1:] == ["Message-ID: <spaces@example.org>",
                                   "Subject: no sender here", "   ", "X-Hidden: shown too"]


def test_header_lines_leave_body_unread() -> None:
    # 200,000 body lines: splitting them would allocate a bytes object for each, over
    # 10 MB in all, while the header takes a few hundred bytes.
    raw = NO_SENDER + b"a line of the body\r\n" * 200_000

    tracemalloc.start()
    try:
        lines, left_out = header_lines(raw, HEADER_LINES_SHOWN)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert lines == [b"Message-ID: <lost@example.org>", b"Subject: no sender here"]
    assert left_out == 0
    assert peak < 64 * 1024


def test_show_splits_lines_at_lone_cr(tmp_path: Path, database_url: str) -> None:
    # Old Mac mail and some broken gateways end every line with a lone CR.
    raw = (b"Message-ID: <old-mac@example.org>\r"
           b"Subject: no sender here\r"
           b"  folded\r"
           b"\r"
           b"X-Body: not a header\r")
    config = _quarantine(tmp_path, database_url, raw)

    shown = _invoke("--config", str(config), "quarantine", "show", "1")

    assert shown.exit_code == 0, shown.output
    assert "\r" not in shown.stdout
    lines = shown.stdout.splitlines()
    heading = lines.index("Header of the raw mail, control characters escaped (\\x1b is ESC):")
    assert lines[heading + 1:] == ["Message-ID: <old-mac@example.org>\\r",
                                   "Subject: no sender here\\r", "  folded\\r"]


@pytest.mark.parametrize("raw", [
    b"Message-ID: <a@example.org>\rSubject: one\r  folded\r\rX-Body: b\r",
    b"Message-ID: <a@example.org>\r\nSubject: one\r\r\nX-Body: b\r\n\r\nbody\r\n",
    b"Message-ID: <a@example.org>\nSubject: one\n\rX-Body: b\n\nbody\n",
    b"Message-ID: <a@example.org>\r\nSubject: one\rX-Next: two\r\n\r\nbody\r\n",
], ids=["cr", "cr-then-crlf", "lf-then-cr", "cr-inside-crlf"])
def test_header_lines_match_email_parser(raw: bytes) -> None:
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)

    lines, left_out = header_lines(raw, HEADER_LINES_SHOWN)

    # A line that starts with a space or a tab continues the field above.
    names = [line.split(b":")[0].decode() for line in lines if line[:1] not in (b" ", b"\t")]
    assert names == parsed.keys()
    assert left_out == 0


def test_list_escapes_like_show(tmp_path: Path, database_url: str) -> None:
    # The From has a CSI and no address, so the mail is quarantined. The subject has a
    # colour, a right-to-left override and an 8-bit CSI.
    raw = (b"Message-ID: <list@example.org>\r\n"
           b"From: \x1b[2J\r\n"
           b"Subject: \x1b[31mred \xe2\x80\xae\xc2\x9bx\r\n"
           b"\r\n"
           b"body\r\n")
    config = _quarantine(tmp_path, database_url, raw)

    listing = _invoke("--config", str(config), "quarantine", "list")
    shown = _invoke("--config", str(config), "quarantine", "show", "1")

    assert listing.exit_code == 0, listing.output
    for character in ("\x1b", "\u202e", "\x9b"):
        assert character not in listing.stdout
    sender, subject = "\\x1b[2J", "\\x1b[31mred \\u202e\\x9bx"
    entry = listing.stdout.splitlines()[1]
    # The sender column is as wide as the longest sender, here this one.
    assert entry == f"    1 {_quarantined_at(config, 1)} {sender} {subject}"
    lines = shown.stdout.splitlines()
    assert f"Sender: {sender}" in lines
    # Once from the stored subject and once from the raw header, both as list shows it.
    assert lines.count(f"Subject: {subject}") == 2
    [notice] = models.Outbox.select().where(models.Outbox.kind == "quarantine")
    assert b"\x1b" not in bytes(notice.raw)


# A mail from a person that is over the size limit _too_large_then_raised() sets first,
# so it is quarantined, and opens a ticket once the limit is raised.
LARGE = (b"From: Jan Kowalski <jan.kowalski@example.org>\r\n"
         b"Message-ID: <large@example.org>\r\n"
         b"Subject: a large attachment\r\n"
         b"\r\n" + b"x" * 2000 + b"\r\n")


def _too_large_then_raised(tmp_path: Path, database_url: str) -> Path:
    """Quarantine LARGE over a 1 KiB limit, then raise the limit, so retry processes it."""
    config = write_config(tmp_path, database_url, desk={"max_message_size": 1024})
    delivered = _invoke("--config", str(config), "deliver", input=LARGE)
    assert delivered.stdout.startswith("quarantined"), delivered.output
    return write_config(tmp_path, database_url)


def _interleave(monkeypatch, step: Callable[[Desk], object], after: bool = False) -> None:
    """Run ``step`` once in the next retry, just before or just after it processes the mail."""
    real_process = pipeline.process
    steps = [step]

    def process(desk: Desk, *args, **kwargs):
        if steps and not after:
            steps.pop()(desk)
        outcome = real_process(desk, *args, **kwargs)
        if steps and after:
            steps.pop()(desk)
        return outcome

    monkeypatch.setattr(pipeline, "process", process)


def test_retry_releases_processed_mail(tmp_path: Path, database_url: str) -> None:
    config = _too_large_then_raised(tmp_path, database_url)

    retried = _invoke("--config", str(config), "quarantine", "retry", "1")

    assert retried.exit_code == 0, retried.output
    assert retried.stdout == "ticket 1 created (new ticket)\n"
    assert ("INFO maildesk.quarantine: message <large@example.org> released from quarantine "
            "(entry 1): ticket 1 created (new ticket)") in retried.stderr
    assert models.Quarantine.get_by_id(1).state == "released"
    assert models.Ticket.select().count() == 1


@pytest.mark.parametrize(("language", "outcome", "message"), [
    ("en", "ticket 1 created (new ticket)",
     "error: another command changed quarantine entry 1 while its mail was processed, so "
     "the entry stays as it is now: deleted (raw mail kept)"),
    ("pl", "utworzono zgłoszenie 1 (nowe zgłoszenie)",
     "błąd: inne polecenie zmieniło wpis kwarantanny 1 w trakcie przetwarzania jego "
     "wiadomości, więc wpis pozostaje w obecnym stanie: usunięta (surowa wiadomość "
     "zachowana)"),
])
def test_retry_keeps_concurrent_delete(tmp_path: Path, database_url: str, monkeypatch,
                                       language: str, outcome: str, message: str) -> None:
    config = _too_large_then_raised(tmp_path, database_url)
    _interleave(monkeypatch, lambda desk: quarantine_module.delete(1), after=True)

    retried = _invoke("--config", str(config), "quarantine", "retry", "1", language=language)

    assert retried.exit_code == 1
    # The mail was processed all the same, as the outcome line reports.
    assert models.Ticket.select().count() == 1
    assert retried.stdout == outcome + "\n"
    assert retried.stderr.splitlines()[-1] == message
    assert "WARNING maildesk.quarantine: " in retried.stderr
    assert models.Quarantine.get_by_id(1).state == "deleted"


@pytest.mark.parametrize(("after", "outcome"), [
    (False, "duplicate, not processed again (already processed)"),
    (True, "ticket 1 created (new ticket)"),
], ids=["before-processing", "after-processing"])
def test_concurrent_retries_open_one_ticket(tmp_path: Path, database_url: str, monkeypatch,
                                            after: bool, outcome: str) -> None:
    config = _too_large_then_raised(tmp_path, database_url)
    other: list[quarantine_module.Retried | None] = []
    _interleave(monkeypatch, lambda desk: other.append(quarantine_module.retry(desk, 1)),
                after=after)

    retried = _invoke("--config", str(config), "quarantine", "retry", "1")

    assert models.Ticket.select().count() == 1
    [first] = other
    assert first is not None
    assert first.released
    assert first.outcome.action == ("duplicate" if after else "create")
    assert retried.exit_code == 1
    assert retried.stdout == outcome + "\n"
    assert retried.stderr.splitlines()[-1] == (
        "error: another command changed quarantine entry 1 while its mail was processed, "
        "so the entry stays as it is now: released (processed again)")
    assert models.Quarantine.get_by_id(1).state == "released"


def test_concurrent_failing_retries_stay_held(tmp_path: Path, database_url: str,
                                              monkeypatch) -> None:
    # The other retry fails again after this one forgot the quarantine mark, so this
    # one finds the mail marked as quarantined again.
    config = _quarantine(tmp_path, database_url, NO_SENDER)
    other: list[quarantine_module.Retried | None] = []
    _interleave(monkeypatch, lambda desk: other.append(quarantine_module.retry(desk, 1)))

    retried = _invoke("--config", str(config), "quarantine", "retry", "1")

    [first] = other
    assert first is not None
    assert first.held is not None
    assert first.held.id == 1
    assert retried.exit_code == 1
    assert retried.stderr.splitlines()[-1].startswith(
        "error: the mail failed again and stays in quarantine as 1: MissingSenderError")
    assert models.Quarantine.get_by_id(1).state == "held"
    assert models.Quarantine.select().count() == 1
    assert models.Outbox.select().where(models.Outbox.kind == "quarantine").count() == 1


def test_retry_after_delete_quarantines_again(tmp_path: Path, database_url: str,
                                              monkeypatch) -> None:
    # Deleted after the retry read the entry: the mail fails again and, never dropped,
    # gets a new entry, which the message names.
    config = _quarantine(tmp_path, database_url, NO_SENDER)
    _interleave(monkeypatch, lambda desk: quarantine_module.delete(1))

    retried = _invoke("--config", str(config), "quarantine", "retry", "1")

    assert retried.exit_code == 1
    assert retried.stderr.splitlines()[-1].startswith(
        "error: the mail failed again and stays in quarantine as 2: MissingSenderError")
    assert models.Quarantine.get_by_id(1).state == "deleted"
    assert models.Quarantine.get_by_id(2).state == "held"


def _retry_killed_at(config: Path, crash_at: str) -> subprocess.CompletedProcess:
    """Run 'maildesk quarantine retry 1' as a process that kills itself at ``crash_at``."""
    environment = {**os.environ, "MAILDESK_CRASH_AT": crash_at, "MAILDESK_LANGUAGE": "en"}
    return subprocess.run(
        [sys.executable, "-m", "maildesk.cli", "--config", str(config), "quarantine", "retry",
         "1"], env=environment, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("crash_at", "outcome"), [
    ("before-commit", "ticket 1 created (new ticket)"),
    ("after-commit", "duplicate, not processed again (already processed)"),
])
def test_retry_after_crash_finishes(tmp_path: Path, database_url: str, crash_at: str,
                                    outcome: str) -> None:
    config = _too_large_then_raised(tmp_path, database_url)

    crashed = _retry_killed_at(config, crash_at)
    held_after_crash = models.Quarantine.get_by_id(1).state
    retried = _invoke("--config", str(config), "quarantine", "retry", "1")

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert held_after_crash == "held"
    assert retried.exit_code == 0, retried.output
    assert retried.stdout == outcome + "\n"
    assert models.Quarantine.get_by_id(1).state == "released"
    assert models.Ticket.select().count() == 1

def _quarantine_unreadable_file(tmp_path: Path, database_url: str) -> Path:
    """Let the daemon give up on a Maildir file it cannot read; return the config."""
    from maildesk.i18n import current_language, set_language
    from maildesk.sources.retries import ReadRetries
    from maildesk.wiring import build_daemon

    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    (mailbox / "new" / "1.loop").symlink_to("1.loop")  # ELOOP, even for root
    config = write_config(tmp_path, database_url,
                          source={"type": "maildir", "path": str(mailbox)})
    daemon = build_daemon(Desk.open(config))
    daemon.source.retries = ReadRetries(daemon.source.name, attempts=1)
    previous = current_language()
    set_language("en")  # the error is stored in the daemon's language
    try:
        daemon.drain()
    finally:
        set_language(previous)
    return config


def test_unreadable_mail_in_list_and_show(tmp_path: Path, database_url: str) -> None:
    config = _quarantine_unreadable_file(tmp_path, database_url)

    listing = _invoke("--config", str(config), "quarantine", "list")
    shown = _invoke("--config", str(config), "quarantine", "show", "1")
    written = _invoke("--config", str(config), "quarantine", "show", "1", "--raw")

    assert listing.exit_code == 0, listing.output
    assert "(the source could not read the mail)" in listing.stdout
    assert "Too many levels of symbolic links" in listing.stdout
    assert "1 message in quarantine" in listing.stdout
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[2] == f"Source: maildir:{tmp_path / 'mailbox'}/1.loop"
    assert lines[6] == "Raw mail: not stored, because the source could not read it"
    assert lines[7].startswith("Error, as recorded: cannot read the file 1.loop (1 attempt): ")
    assert "Header of the raw mail" not in shown.stdout
    assert written.exit_code == 1
    assert written.stdout_bytes == b""
    assert ("quarantine entry 1 has no stored raw mail, because its source could not read it"
            in written.stderr)


def test_unreadable_mail_retry_and_delete(tmp_path: Path, database_url: str) -> None:
    config = _quarantine_unreadable_file(tmp_path, database_url)

    retried = _invoke("--config", str(config), "quarantine", "retry", "1")
    deleted = _invoke("--config", str(config), "quarantine", "delete", "1")

    assert retried.exit_code == 1
    assert "quarantine entry 1 has no stored mail to process" in retried.stderr
    assert str(tmp_path / "mailbox" / ".Quarantine") in retried.stderr
    assert "'maildesk quarantine delete 1'" in retried.stderr
    assert "Traceback" not in retried.stderr
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout == ("quarantine entry 1 deleted; it had no raw mail, because its "
                              "source could not read it\n")
    assert models.Quarantine.get_by_id(1).state == "deleted"


def test_list_fits_long_sender(tmp_path: Path, database_url: str) -> None:
    from deskfactory import mail

    config = write_config(tmp_path, database_url, desk={"max_message_size": 1024})
    for message_id, sender in (("<q1@example.org>", "Jan <jan@example.org>"),
                               ("<q2@example.org>", "Robert Kamiński "
                                "<robert.kaminski@zarzad.logistyka.example>")):
        raw = mail(sender=sender, message_id=message_id, body="Za duża wiadomość.\n" * 80)
        assert "quarantined" in _invoke("--config", str(config), "deliver",
                                        input=raw).stdout

    listing = _invoke("--config", str(config), "quarantine", "list")

    lines = listing.stdout.splitlines()
    header = next(line for line in lines if "subject" in line)
    short, long = (line for line in lines if "Drukarka" in line)
    assert long.index("Robert Kamiński") == header.index("sender")
    assert long.index("Drukarka") == header.index("subject")
    assert short.index("Drukarka") == header.index("subject")


def test_list_unfolds_and_decodes_header(tmp_path: Path, database_url: str) -> None:
    # Mail clients fold a long From or Subject and encode non-ASCII names (RFC 2047).
    # maildesk does not parse a too-large mail, and the list must still name its sender.
    raw = (b"From:\r\n =?utf-8?q?Robert_Kami=C5=84ski?= <robert.kaminski@example.org>\r\n"
           b"To: helpdesk@example.com\r\n"
           b"Subject: =?utf-8?q?Drukarka_w_magazynie_B_drukuje_puste_etykiety_i_trzeba?=\r\n"
           b" =?utf-8?q?_j=C4=85_naprawi=C4=87?=\r\n"
           b"Message-ID: <folded@example.org>\r\n"
           b"\r\n" + b"Zrzut ekranu w zalaczniku.\r\n" * 80)
    config = write_config(tmp_path, database_url, desk={"max_message_size": 1024})
    assert "quarantined" in _invoke("--config", str(config), "deliver", input=raw).stdout

    listing = _invoke("--config", str(config), "quarantine", "list")

    assert "Robert Kamiński <robert.kaminski@example.org>" in listing.stdout
    assert "Drukarka w magazynie B drukuje puste etykiety i trzeba ją naprawić" in listing.stdout
    assert "=?utf-8?" not in listing.stdout


def test_list_keeps_undecodable_header(tmp_path: Path, database_url: str) -> None:
    raw = (b"From: =?x-unknown?q?Jan?= <jan@example.org>\r\n"
           b"Subject: =?utf-8?b?!!!?=\r\n"
           b"Message-ID: <odd@example.org>\r\n"
           b"\r\n" + b"Tekst.\r\n" * 200)
    config = write_config(tmp_path, database_url, desk={"max_message_size": 1024})
    assert "quarantined" in _invoke("--config", str(config), "deliver", input=raw).stdout

    listing = _invoke("--config", str(config), "quarantine", "list")

    assert listing.exit_code == 0, listing.output
    assert "jan@example.org" in listing.stdout

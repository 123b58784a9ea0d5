"""Mail templates: every shipped template in both languages, filters, errors, reloads."""

from __future__ import annotations

import logging
import os
import re
import shutil
from datetime import UTC, date, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from deskfactory import mail, make_desk, make_ticket, write_config

from maildesk import models, pipeline, templating
from maildesk.cli import main as cli_main
from maildesk.config import load_config
from maildesk.desk import Desk
from maildesk.errors import ConfigError, ConfigErrors
from maildesk.i18n import current_language, gettext_for, set_language
from maildesk.mailbuild import Recipient, build_message
from maildesk.notify import (
    choose_language,
    language_for_address,
    queue_mail,
    sample_context,
    sample_variants,
    ticket_context,
)
from maildesk.resources import shipped
from maildesk.templating import Templates, html_problem, polish_plural, text_to_html
from maildesk.wiring import check_templates

SHIPPED = shipped("templates")
TEMPLATE_NAMES = sorted({path.stem for path in SHIPPED.glob("*/*.j2")
                         if not path.name.startswith("_")})


@pytest.fixture
def template_root(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(SHIPPED, root)
    return root


@pytest.fixture
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sample context of a desk, which needs no database to build."""
    directory = tmp_path_factory.mktemp("sample")
    config = load_config(write_config(directory, "sqlite:///:memory:"))
    return sample_context(Desk.from_config(config))


def rewrite(path: Path, text: str) -> None:
    """Write a template and move its mtime on, so a reload notices even a same-size edit."""
    stamp = path.stat().st_mtime_ns + 5_000_000_000
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(stamp, stamp))


# --------------------------------------------------------------------------- every template


def test_templates_shipped_set_is_complete() -> None:
    for name in ("acknowledgement", "quarantine_notice", "rejection_too_large",
                 "rejection_blocked", "new_ticket_agents", "mail_loop_alert"):
        assert name in TEMPLATE_NAMES


def test_templates_exist_in_both_languages() -> None:
    templates = Templates(SHIPPED)

    assert templates.missing_translations() == []


@pytest.mark.parametrize("language", ["pl", "en"])
@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_templates_render_and_parse_back(name: str, language: str,
                                         sample: dict[str, Any]) -> None:
    templates = Templates(SHIPPED)

    rendered = templates.render(name, language, sample)
    message = build_message(
        rendered, sender=Recipient("helpdesk@example.com", "Helpdesk IT"),
        to=[Recipient("zofia@example.org", "Zofia Wiśniewska")],
        message_id="<test.1234.1@maildesk.example.com>", in_reply_to="<m1@example.org>",
        references=["<m0@example.org>", "<m1@example.org>"], reply_to="helpdesk@example.com",
        ticket=1234, thread_topic="Drukarka", thread_started=datetime(2026, 12, 4, 9, 0))
    parsed = message_from_bytes(message.as_bytes(), policy=default_policy)
    assert isinstance(parsed, EmailMessage)

    assert rendered.language == language
    assert parsed["Subject"] == rendered.subject
    assert "\n" not in parsed["Subject"]
    assert parsed["Content-Language"] == language
    assert parsed["In-Reply-To"] == "<m1@example.org>"
    assert parsed["References"] == "<m0@example.org> <m1@example.org>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    parts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert [part.get_content_charset() for part in parts] == ["utf-8", "utf-8"]
    text = parts[0].get_content()
    html = parts[1].get_content()
    assert "{{" not in text
    assert "{%" not in text
    assert "-- \n" in text.replace("\r\n", "\n")
    assert "helpdesk@example.com" in text
    assert html_problem(html) is None
    assert f'<html lang="{language}">' in html
    assert "{{" not in html


@pytest.fixture
def english_sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The English sample context, the one an English preview shows."""
    directory = tmp_path_factory.mktemp("sample")
    config = load_config(write_config(directory, "sqlite:///:memory:"))
    return sample_context(Desk.from_config(config), "en")


def test_templates_preview_error_in_mail_language(sample: dict[str, Any],
                                                  english_sample: dict[str, Any]) -> None:
    # A real quarantine error is written in the desk's language ("ParseError: wiadomość
    # jest pusta"), so the Polish preview shows one in Polish and the English one in English.
    polish_error = "ParseError: " + gettext_for("pl").gettext("empty message")

    polish = Templates(SHIPPED).render("quarantine_notice", "pl", sample).text
    english = Templates(SHIPPED).render("quarantine_notice", "en", english_sample).text

    assert f"Błąd: {polish_error}\n" in polish
    assert "Error: ParseError: empty message\n" in english


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_templates_html_escapes_sample_values(name: str, sample: dict[str, Any]) -> None:
    templates = Templates(SHIPPED)
    hostile = {**sample, "ticket": {**sample["ticket"],
                                    "subject": "<script>alert(1)</script> & co"}}

    rendered = templates.render(name, "pl", hostile)

    assert rendered.html is not None
    assert "<script>" not in rendered.html


@pytest.mark.parametrize("language", ["pl", "en"])
@pytest.mark.parametrize("name", ["escalation_warning", "escalation_breach",
                                  "escalation_manager", "new_ticket_agents"])
def test_templates_requester_without_name_reads_as_bare_address(
        name: str, language: str, sample: dict[str, Any]) -> None:
    templates = Templates(SHIPPED)
    nameless = {**sample, "ticket": {**sample["ticket"], "requester_name": None,
                                     "requester_address": "adam.sikora@example.org"}}

    text = templates.render(name, language, nameless).text

    label = "Zgłaszający" if language == "pl" else "Requester"
    assert f"{label}: adam.sikora@example.org\n" in text


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(("count", "form"), [
    (0, "zgłoszeń"), (1, "zgłoszenie"), (2, "zgłoszenia"), (4, "zgłoszenia"), (5, "zgłoszeń"),
    (11, "zgłoszeń"), (12, "zgłoszeń"), (14, "zgłoszeń"), (21, "zgłoszeń"), (22, "zgłoszenia"),
    (25, "zgłoszeń"), (101, "zgłoszeń"), (104, "zgłoszenia"), (112, "zgłoszeń"),
    (1000, "zgłoszeń"),
])
def test_templates_polish_plural(count: int, form: str) -> None:
    assert polish_plural(count, "zgłoszenie", "zgłoszenia", "zgłoszeń") == form


def render_string(template_root: Path, body: str, values: dict[str, Any],
                  language: str = "pl") -> str:
    path = template_root / language / "probe.j2"
    path.write_text(
        f'{{% extends "{language}/_layout.j2" %}}\n{{% block subject %}}probe{{% endblock %}}\n'
        f"{{% block text %}}{body}{{% endblock %}}\n", encoding="utf-8")
    templates = Templates(template_root, "pl", "Europe/Warsaw")
    rendered = templates.render("probe", language, {"desk": {"name": "D", "address": "d@x.pl"},
                                                    **values})
    return rendered.text.split("\n-- \n")[0].strip()


def test_templates_plural_filter_in_both_languages(template_root: Path) -> None:
    polish = render_string(template_root, '{% for n in [1, 2, 5, 22] %}{{ n }} '
                           '{{ n | plural("zgłoszenie", "zgłoszenia", "zgłoszeń") }}; '
                           "{% endfor %}", {})
    english = render_string(template_root, '{% for n in [1, 2] %}{{ n }} '
                            '{{ n | plural("ticket", "tickets") }}; {% endfor %}', {}, "en")

    assert polish == "1 zgłoszenie; 2 zgłoszenia; 5 zgłoszeń; 22 zgłoszenia;"
    assert english == "1 ticket; 2 tickets;"


# A value printed as a count; the word after it must come from the plural filter.
_COUNT = re.compile(r"\{\{\s*[\w.]*(?:count|minutes|hours|days)\s*\}\}")
# What may follow a count: punctuation, a tag, the end of the line, or the plural filter,
# right away or after one word ("10 automatic mails").
_AFTER_COUNT = re.compile(r"\s*(?:[^\w\s{]|\{%|\{\{[^}]*plural|$|\w+\s+\{\{[^}]*plural)")


def test_templates_counts_have_plural_forms() -> None:
    bare = []
    for path in sorted(SHIPPED.glob("*/*.j2")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in _COUNT.finditer(line):
                if not _AFTER_COUNT.match(line, match.end()):
                    bare.append(f"{path.parent.name}/{path.name}:{number}: {match.group(0)}")

    assert bare == []


@pytest.mark.parametrize(("language", "expected"), [
    ("en", "opened 3 tickets within 1 minute,"),
    ("pl", "otworzył w ciągu 1 minuty 3 zgłoszenia,"),
])
def test_templates_loop_alert_minutes_plural(language: str, expected: str,
                                             sample: dict[str, Any]) -> None:
    values = {**sample, "loop": {**sample["loop"], "scope": "sender", "count": 3,
                                 "window_minutes": 1}}

    text = Templates(SHIPPED).render("mail_loop_alert", language, values).text

    assert expected in text


@pytest.mark.parametrize("language", ["pl", "en"])
def test_templates_due_label_matches_cli(language: str, sample: dict[str, Any]) -> None:
    # Agents read the same due time in "tickets show" and in the new-ticket notice.
    label = gettext_for(language).gettext("First response due: {time}").split("{time}")[0]

    text = Templates(SHIPPED).render("new_ticket_agents", language, sample).text

    assert f"\n{label}" in text


@pytest.mark.parametrize(("language", "message"), [
    ("pl", "plural wymaga 2 form (po angielsku: jedna, wiele) albo 3 (po polsku: "
           "1 zgłoszenie, 2 zgłoszenia, 5 zgłoszeń), a podano 1"),
    ("en", "plural needs 2 forms (English: one, other) or 3 (Polish: one, few, many), not 1"),
])
def test_templates_plural_misuse_in_admin_language(template_root: Path, language: str,
                                                   message: str) -> None:
    previous = current_language()
    set_language(language)
    try:
        with pytest.raises(Exception) as raised:
            render_string(template_root, '{{ 2 | plural("zgłoszenie") }}', {})
    finally:
        set_language(previous)

    assert message in str(raised.value)


@pytest.mark.parametrize(("language", "instant", "expected"), [
    ("pl", datetime(2026, 12, 4, 13, 5), "4 grudnia 2026 r., 14:05"),
    ("en", datetime(2026, 12, 4, 13, 5), "4 December 2026, 14:05"),
    ("pl", datetime(2026, 7, 4, 12, 5, tzinfo=UTC), "4 lipca 2026 r., 14:05"),
    ("pl", datetime(2026, 3, 29, 1, 30), "29 marca 2026 r., 03:30"),
])
def test_templates_datetime_in_desk_zone(template_root: Path, language: str,
                                         instant: datetime, expected: str) -> None:
    assert render_string(template_root, "{{ when | datetime }}", {"when": instant},
                         language) == expected


def test_templates_datetime_zone_tells_repeated_hour_apart(template_root: Path) -> None:
    # On 25 October 2026 Warsaw shows 02:30 twice: at 00:30 UTC (CEST), then at 01:30 UTC.
    values = {"summer": datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
              "winter": datetime(2026, 10, 25, 1, 30, tzinfo=UTC)}
    template = "{{ summer | datetime(zone=True) }} / {{ winter | datetime(zone=True) }}"

    polish = render_string(template_root, template, values)
    english = render_string(template_root, template, values, "en")

    assert polish == "25 października 2026 r., 02:30 CEST / 25 października 2026 r., 02:30 CET"
    assert english == "25 October 2026, 02:30 CEST / 25 October 2026, 02:30 CET"


@pytest.mark.parametrize(("name", "expected"), [
    ("Jan Kowalski", "Jan Kowalski <jan@example.org>"),
    (" Jan Kowalski ", "Jan Kowalski <jan@example.org>"),
    (None, "jan@example.org"),
    ("", "jan@example.org"),
    ("jan@example.org", "jan@example.org"),
])
def test_templates_with_name_filter(template_root: Path, name: str | None,
                                    expected: str) -> None:
    rendered = render_string(template_root, "{{ address | with_name(name) }}",
                             {"address": "jan@example.org", "name": name})

    assert rendered == expected


def test_templates_date_and_size_filters(template_root: Path) -> None:
    polish = render_string(template_root, "{{ day | date }} | {{ size | filesize }}",
                           {"day": date(2026, 12, 4), "size": 73_400_320})
    english = render_string(template_root, "{{ day | date }} | {{ size | filesize }}",
                            {"day": date(2026, 12, 4), "size": 73_924_608}, "en")

    assert polish == "4 grudnia 2026 r. | 70 MB"
    assert english == "4 December 2026 | 70.5 MB"


@pytest.mark.parametrize(("size", "expected"), [
    (0, "0 B"), (288, "288 B"), (1023, "1,023 B"), (1024, "1 kB"), (4300, "4 kB")])
def test_templates_size_filter_small_files(template_root: Path, size: int,
                                           expected: str) -> None:
    rendered = render_string(template_root, "{{ size | filesize }}", {"size": size}, "en")

    assert rendered == expected


def test_templates_text_to_html_escapes_and_links() -> None:
    html = str(text_to_html("Dzień dobry <Zofio> & co,\n"
                            "zobacz https://intranet.example.org/a?b=1&c=2.\n\n"
                            "    maildesk quarantine retry 7\n\n"
                            "Pisz na helpdesk@example.com"))

    assert "&lt;Zofio&gt; &amp; co" in html
    assert '<a href="https://intranet.example.org/a?b=1&amp;c=2">' in html
    assert "c=2</a>." in html
    assert "<pre>maildesk quarantine retry 7</pre>" in html
    assert '<a href="mailto:helpdesk@example.com">helpdesk@example.com</a>' in html
    assert html.count("<p>") == 2
    assert html_problem(html) is None


@pytest.mark.parametrize(("html", "problem"), [
    ("<p>ok</p><br><img src=x>", None),
    ("<p><b>bold</p></b>", "closing </p> where </b> was expected"),
    ("<div><p>open", "<p> is never closed"),
    ("text</span>", "closing </span> without an opening tag"),
])
def test_templates_html_problem(html: str, problem: str | None) -> None:
    from maildesk.i18n import current_language, set_language

    before = current_language()
    set_language("en")
    try:
        found = html_problem(html)
    finally:
        set_language(before)

    assert found == problem


# --------------------------------------------------------------------------- languages


def test_templates_fall_back_to_other_language(template_root: Path,
                                               sample: dict[str, Any]) -> None:
    (template_root / "pl" / "acknowledgement.j2").unlink()
    templates = Templates(template_root, "pl")

    rendered = templates.render("acknowledgement", "pl", sample)

    assert rendered.language == "en"
    assert rendered.subject.startswith("[")
    assert "We have received" in rendered.subject
    assert ("pl", "acknowledgement") in templates.missing_translations()


def test_templates_deleted_file_reported_plainly(template_root: Path, sample: dict[str, Any],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    templates = Templates(template_root, "pl", recheck_interval=0)
    first = templates.render("acknowledgement", "pl", sample)
    path = template_root / "pl" / "acknowledgement.j2"
    path.unlink()

    from maildesk.i18n import current_language, set_language

    before = current_language()
    set_language("en")
    try:
        with caplog.at_level(logging.ERROR):
            again = templates.render("acknowledgement", "pl", sample)
    finally:
        set_language(before)

    assert again.subject == first.subject
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert f"{path}: the template file does not exist" in messages
    assert "includes" not in messages


def test_templates_unknown_name_is_an_error(sample: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="nope"):
        Templates(SHIPPED).render("nope", "pl", sample)


def test_templates_language_choice_order(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    assert choose_language(desk, contact_language="en", rule_language="pl",
                           detected="pl") == "en"
    assert choose_language(desk, rule_language="en", detected="pl") == "en"
    assert choose_language(desk, detected="en") == "en"
    assert choose_language(desk, contact_language="de", detected=None) == "pl"
    assert choose_language(desk) == "pl"


def test_templates_language_for_address(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, agents=[
        {"login": "ewa.nowak", "name": "Ewa Nowak", "addresses": ["ewa.nowak@example.com"],
         "groups": ["druga-linia"], "language": "en"}])
    models.Contact.create(address="john@example.net", language="en")
    models.Contact.create(address="anna@example.org")

    assert language_for_address(desk, "Ewa.Nowak@example.com") == "en"
    assert language_for_address(desk, "john@example.net") == "en"
    assert language_for_address(desk, "anna@example.org") == "pl"
    assert language_for_address(desk, "nobody@example.org") == "pl"


def test_templates_queue_mail_uses_contact_language(tmp_path: Path,
                                                    database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = make_ticket(20451, "Printer", "john@example.net")
    models.Contact.update(language="en").where(
        models.Contact.address == "john@example.net").execute()

    with models.database_proxy.atomic():
        mail = queue_mail(desk, template="acknowledgement", language=None,
                          context={"ticket": ticket_context(desk, ticket),
                                   "linked_ticket": None},
                          to=[Recipient("john@example.net")], ticket=ticket)

    assert mail is not None
    row = models.Outbox.get_by_id(mail.outbox_id)
    assert row.subject == "[#20451] We have received your request: Printer"


# --------------------------------------------------------------------------- errors


def test_templates_syntax_error_names_file_and_line(template_root: Path,
                                                    sample: dict[str, Any]) -> None:
    path = template_root / "pl" / "acknowledgement.j2"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = "{% if ticket.number %}unclosed"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    errors = Templates(template_root).check(sample)

    assert len(errors) == 1
    assert errors[0].location is not None
    assert errors[0].location.startswith(str(path))
    assert errors[0].location.endswith(":" + str(len(lines))) or ":" in errors[0].location


def test_templates_undefined_variable_names_line(template_root: Path,
                                                 sample: dict[str, Any]) -> None:
    path = template_root / "en" / "acknowledgement.j2"
    lines = path.read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines) if "Subject:" in line)
    lines[number] = "Subject: {{ ticket.subjcet }}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    errors = Templates(template_root).check(sample)

    assert len(errors) == 1
    assert errors[0].location == f"{path}:{number + 1}"
    assert "subjcet" in str(errors[0])


def test_templates_missing_include_says_it_does_not_exist(template_root: Path,
                                                          sample: dict[str, Any]) -> None:
    path = template_root / "en" / "acknowledgement.j2"
    lines = path.read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines) if "Subject:" in line)
    lines.insert(number, '{% include "en/_footer.j2" %}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    errors = Templates(template_root).check(sample)

    assert len(errors) == 1
    assert errors[0].location == f"{path}:{number + 1}"
    # The admins' language, Polish by default.
    assert str(errors[0]).endswith(
        "szablon en/acknowledgement.j2 dołącza en/_footer.j2, który nie istnieje")


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_templates_include_outside_folder_rejected(template_root: Path, sample: dict[str, Any],
                                                   kind: str) -> None:
    secret = template_root.parent / "secret.txt"
    secret.write_text("DB_PASSWORD=hunter2\n", encoding="utf-8")
    name = "../secret.txt" if kind == "relative" else str(secret)
    path = template_root / "pl" / "acknowledgement.j2"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "Pozdrawiamy", "Pozdrawiamy\n{% include '" + name + "' %}"), encoding="utf-8")
    templates = Templates(template_root)

    errors = templates.check(sample)

    assert len(errors) == 1
    assert "secret.txt" in str(errors[0])
    # The daemon then falls back to the shipped template, which includes no such file.
    with pytest.raises(ConfigError):
        templates._render_own("acknowledgement", "pl", sample)


@pytest.mark.parametrize("kind", ["include", "own file"])
def test_templates_link_outside_folder_rejected(template_root: Path, sample: dict[str, Any],
                                                kind: str) -> None:
    secret = template_root.parent / "secret.txt"
    secret.write_text("DB_PASSWORD=hunter2\n", encoding="utf-8")
    if kind == "include":
        (template_root / "pl" / "_footer.j2").symlink_to(secret)
        path = template_root / "pl" / "acknowledgement.j2"
        path.write_text(path.read_text(encoding="utf-8").replace(
            "Pozdrawiamy", "Pozdrawiamy\n{% include 'pl/_footer.j2' %}"), encoding="utf-8")
    else:
        path = template_root / "pl" / "acknowledgement.j2"
        path.unlink()
        path.symlink_to(secret)
    templates = Templates(template_root)

    errors = templates.check(sample)

    assert errors
    assert any("outside the templates folder" in str(error) or "poza katalogiem szablonów"
               in str(error) for error in errors)
    with pytest.raises(ConfigError):
        templates._render_own("acknowledgement", "pl", sample)


def test_templates_error_in_layout_names_layout(template_root: Path,
                                                sample: dict[str, Any]) -> None:
    layout = template_root / "pl" / "_layout.j2"
    text = layout.read_text(encoding="utf-8").replace("<title>{{ mail_subject }}</title>",
                                                      "<title>{{ desk.nazwa }}</title>")
    layout.write_text(text, encoding="utf-8")
    line = text.splitlines().index("<title>{{ desk.nazwa }}</title>") + 1

    errors = Templates(template_root).check(sample)

    assert errors
    assert all(error.location == f"{layout}:{line}" for error in errors)


def test_templates_check_rejects_broken_html_block(template_root: Path,
                                                   sample: dict[str, Any]) -> None:
    path = template_root / "pl" / "acknowledgement.j2"
    path.write_text(path.read_text(encoding="utf-8")
                    + "{% block html %}<p><b>{{ ticket.subject }}</p>{% endblock %}\n",
                    encoding="utf-8")

    errors = Templates(template_root).check(sample)

    assert len(errors) == 1
    assert "HTML" in str(errors[0]) or "HTML" in errors[0].args[0]


@pytest.mark.parametrize(("name", "old", "new"), [
    ("acknowledgement", "Zgłoszenie {{ linked_ticket.number }}",
     "Zgłoszenie {{ linked_ticket.numer }}"),
    ("agent_reply", "Zgłoszenie {{ ticket.number }} zostało zamknięte.",
     "Zgłoszenie {{ ticket.numer }} zostało zamknięte."),
    ("user_replied", "Ocena: {{ reply.rating }}/5", "Ocena: {{ reply.rating }}/{{ numer }}"),
    ("user_replied", "Ta odpowiedź otworzyła zgłoszenie ponownie",
     "{{ ticket.numer }} Ta odpowiedź otworzyła zgłoszenie ponownie"),
    ("new_ticket_agents", "ten punkt obsługi nie dołącza",
     "{{ files.numer }} ten punkt obsługi nie dołącza"),
])
def test_templates_check_renders_the_other_branches(tmp_path: Path, template_root: Path,
                                                    name: str, old: str, new: str) -> None:
    # The sample has no linked ticket and a reply that resolves, so these mistakes were
    # found only when a real mail took the branch.
    path = template_root / "pl" / f"{name}.j2"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    config = load_config(write_config(tmp_path, "sqlite:///:memory:"))
    desk = Desk.from_config(config)

    plain = Templates(template_root).check(sample_context(desk))
    errors = Templates(template_root).check(sample_context(desk), sample_variants(desk))

    assert plain == []
    assert len(errors) == 1
    assert errors[0].location == f"{path}:{text[:text.index(old)].count(chr(10)) + 1}"
    assert "numer" in str(errors[0])


def test_templates_startup_check_raises_on_broken(tmp_path: Path, database_url: str,
                                                  template_root: Path) -> None:
    (template_root / "pl" / "acknowledgement.j2").write_text("{% block %}", encoding="utf-8")
    desk = make_desk(tmp_path, database_url, templates=str(template_root))

    with pytest.raises(ConfigError) as raised:
        check_templates(desk)

    assert str(template_root / "pl" / "acknowledgement.j2") in str(raised.value.location)


def test_templates_startup_check_reports_each_broken_template_once(
        tmp_path: Path, database_url: str, template_root: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # The command line prints the raised error, so logging it too showed it twice.
    (template_root / "pl" / "acknowledgement.j2").write_text("{% block %}", encoding="utf-8")
    (template_root / "en" / "acknowledgement.j2").write_text("{{ ticket.number", encoding="utf-8")
    desk = make_desk(tmp_path, database_url, templates=str(template_root))

    with caplog.at_level(logging.ERROR), pytest.raises(ConfigErrors) as raised:
        check_templates(desk)

    assert sorted(error.location.split(":")[0] for error in raised.value.errors) == [
        str(template_root / "en" / "acknowledgement.j2"),
        str(template_root / "pl" / "acknowledgement.j2")]
    assert len(str(raised.value).splitlines()) == 2
    assert "acknowledgement" not in caplog.text


# --------------------------------------------------------------------------- last good version


def test_templates_keep_last_good_after_syntax_error(template_root: Path,
                                                     sample: dict[str, Any]) -> None:
    templates = Templates(template_root, recheck_interval=0)
    assert templates.check(sample) == []
    path = template_root / "pl" / "acknowledgement.j2"
    good = path.read_text(encoding="utf-8")

    rewrite(path, good.replace("{% endblock %}", "{% endblok %}", 1))
    while_broken = templates.render("acknowledgement", "pl", sample)
    rewrite(path, good.replace("Przyjęliśmy zgłoszenie", "Mamy Twoje zgłoszenie"))
    after_fix = templates.render("acknowledgement", "pl", sample)

    assert "Przyjęliśmy zgłoszenie" in while_broken.subject
    assert "Mamy Twoje zgłoszenie" in after_fix.subject


@pytest.mark.parametrize("file_name", ["acknowledgement.j2", "_signature.j2", "_layout.j2"])
def test_templates_byte_order_mark_is_dropped(template_root: Path, sample: dict[str, Any],
                                              file_name: str) -> None:
    path = template_root / "pl" / file_name
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    templates = Templates(template_root)

    rendered = templates.render("acknowledgement", "pl", sample)

    assert templates.check(sample) == []
    assert "\ufeff" not in rendered.subject
    assert "\ufeff" not in rendered.text
    assert "\ufeff" not in (rendered.html or "")


def test_templates_keep_last_good_when_sample_fails(template_root: Path,
                                                    sample: dict[str, Any],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    templates = Templates(template_root, recheck_interval=0)
    assert templates.check(sample) == []
    path = template_root / "en" / "acknowledgement.j2"
    good = path.read_text(encoding="utf-8")

    rewrite(path, good.replace("{{ ticket.subject }}", "{{ ticket.no_such_key }}", 1))
    first = templates.render("acknowledgement", "en", sample)
    second = templates.render("acknowledgement", "en", sample)

    assert "We have received your request" in first.subject
    assert first.subject == second.subject
    complaints = [r for r in caplog.records if "acknowledgement" in r.getMessage()
                  and r.levelname == "ERROR"]
    assert len(complaints) == 1


def test_templates_broken_layout_keeps_cached_templates(template_root: Path,
                                                        sample: dict[str, Any]) -> None:
    templates = Templates(template_root, recheck_interval=0)
    assert templates.check(sample) == []
    before = templates.render("acknowledgement", "pl", sample)

    rewrite(template_root / "pl" / "_layout.j2", "{% if part == %}")
    during = templates.render("acknowledgement", "pl", sample)

    assert during.text == before.text
    assert during.html == before.html


def test_templates_recheck_after_interval(template_root: Path, sample: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(templating.time, "monotonic", lambda: clock[0])
    templates = Templates(template_root, recheck_interval=1.0)
    templates.render("acknowledgement", "pl", sample)
    path = template_root / "pl" / "acknowledgement.j2"
    rewrite(path, path.read_text(encoding="utf-8").replace("Przyjęliśmy zgłoszenie",
                                                           "Mamy Twoje zgłoszenie"))

    clock[0] += 0.5
    within = templates.render("acknowledgement", "pl", sample)
    clock[0] += 0.6
    after = templates.render("acknowledgement", "pl", sample)

    assert "Przyjęliśmy zgłoszenie" in within.subject
    assert "Mamy Twoje zgłoszenie" in after.subject


def test_templates_relative_root_compiles_once(template_root: Path, sample: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(template_root)
    templates = Templates(Path("."), recheck_interval=0)
    compiled: list[str] = []
    real = templates._compile
    monkeypatch.setattr(templates, "_compile",
                        lambda language, name: compiled.append(name) or real(language, name))

    for _attempt in range(3):
        templates.render("acknowledgement", "pl", sample)

    assert compiled == ["acknowledgement"]


def test_templates_first_load_of_broken_file_raises(template_root: Path,
                                                    sample: dict[str, Any]) -> None:
    (template_root / "pl" / "acknowledgement.j2").write_text("{% extends %}", encoding="utf-8")

    with pytest.raises(ConfigError):
        Templates(template_root).render("acknowledgement", "pl", sample)


def test_templates_non_utf8_file_is_reported(template_root: Path,
                                             sample: dict[str, Any]) -> None:
    path = template_root / "pl" / "acknowledgement.j2"
    path.write_bytes(path.read_text(encoding="utf-8").encode("iso-8859-2"))

    errors = Templates(template_root).check(sample)

    assert len(errors) == 1
    assert str(path) in str(errors[0])
    assert "UTF-8" in str(errors[0])


def test_templates_cli_check_reports_unreadable_file(tmp_path: Path, database_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(SHIPPED, templates)
    config = write_config(tmp_path, database_url, templates=str(templates))
    # A folder in place of the file fails to read for root too, as modes would not.
    broken = templates / "en" / "status_resolved.j2"
    broken.unlink()
    broken.mkdir()
    monkeypatch.setenv("MAILDESK_LANGUAGE", "en")

    result = CliRunner().invoke(cli_main, ["--config", str(config), "templates", "check"])

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"{broken}: cannot read the file (Is a directory)" in result.output


# --------------------------------------------------------------------------- CLI


def test_templates_cli_render_prints_mail(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    make_ticket(20451, "Drukarka na 2. piętrze nie drukuje", "zofia.wisniewska@example.org")
    runner = CliRunner()

    polish = runner.invoke(cli_main, ["--config", str(desk.config.path), "templates", "render",
                                      "acknowledgement", "--ticket", "20451"])
    english = runner.invoke(cli_main, ["--config", str(desk.config.path), "templates",
                                       "render", "acknowledgement", "--ticket", "20451",
                                       "--language", "en"])
    missing = runner.invoke(cli_main, ["--config", str(desk.config.path), "templates",
                                       "render", "acknowledgement", "--ticket", "99"])

    assert polish.exit_code == 0, polish.output
    printed = message_from_bytes(polish.stdout.encode("utf-8"), policy=default_policy)
    assert printed["Subject"] == (
        "[#20451] Przyjęliśmy zgłoszenie: Drukarka na 2. piętrze nie drukuje")
    assert printed["To"].addresses[0].addr_spec == "zofia.wisniewska@example.org"
    assert english.exit_code == 0, english.output
    assert "We have received your request" in message_from_bytes(
        english.stdout.encode("utf-8"), policy=default_policy)["Subject"]
    assert missing.exit_code != 0
    assert "99" in missing.output


def test_templates_cli_render_readable_and_raw(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    make_ticket(20451, "Drukarka na 2. piętrze nie drukuje", "zofia.wisniewska@example.org")
    runner = CliRunner()
    command = ["--config", str(desk.config.path), "templates", "render", "acknowledgement",
               "--ticket", "20451"]

    readable = runner.invoke(cli_main, command, env={"MAILDESK_LANGUAGE": "en"})
    raw = runner.invoke(cli_main, [*command, "--raw"])
    unknown_language = runner.invoke(cli_main, [*command, "--language", "de"])

    assert "Subject: [#20451] Przyjęliśmy zgłoszenie: Drukarka na 2. piętrze" in readable.output
    assert "Dzień dobry," in readable.output
    assert "=?utf-8?" not in readable.output
    assert "[The mail also has an HTML part" in readable.output
    assert "=?utf-8?q?Przyj=C4=99li=C5=9Bmy" in raw.output
    assert "Content-Type: multipart/alternative" in raw.output
    assert unknown_language.exit_code == 2


def test_templates_english_preview_has_no_polish(tmp_path: Path, database_url: str) -> None:
    import re

    desk = make_desk(tmp_path, database_url)
    runner = CliRunner()
    polish_letters = re.compile("[ąćęłńóśźżĄĆĘŁŃÓŚŹŻ]")

    for name in sorted(desk.templates.names("en")):
        result = runner.invoke(cli_main, ["--config", str(desk.config.path), "templates",
                                          "render", name, "--language", "en"],
                               env={"MAILDESK_LANGUAGE": "en"})
        assert result.exit_code == 0, (name, result.output)
        assert polish_letters.search(result.output) is None, (name, result.output)


def test_templates_cli_check_passes_on_shipped(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    result = CliRunner().invoke(cli_main, ["--config", str(desk.config.path), "templates",
                                           "check"])

    assert result.exit_code == 0, result.output
    assert "acknowledgement" not in result.stderr


def test_templates_cli_check_warns_of_missing_translation(tmp_path: Path, database_url: str,
                                                          template_root: Path) -> None:
    (template_root / "en" / "rejection_blocked.j2").unlink()
    desk = make_desk(tmp_path, database_url, templates=str(template_root))

    result = CliRunner().invoke(cli_main, ["--config", str(desk.config.path), "templates",
                                           "check"])

    assert result.exit_code == 0, result.output
    assert "rejection_blocked" in result.stderr
    assert "en" in result.stderr


# --------------------------------------------------------------------------- failures on real data


def edited_desk(tmp_path: Path, database_url: str, name: str, old: str, new: str):
    """A desk whose copy of the Polish template ``name`` has ``old`` replaced by ``new``."""
    root = tmp_path / "templates"
    shutil.copytree(SHIPPED, root)
    path = root / "pl" / f"{name}.j2"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return make_desk(tmp_path, database_url, templates=str(root))


def test_templates_real_data_failure_uses_shipped(tmp_path: Path,
                                                            database_url: str,
                                                            caplog) -> None:
    # The sample ticket has tags, so `templates check` passes; a real new ticket has none.
    desk = edited_desk(tmp_path, database_url, "acknowledgement", "{% block text %}",
                       "{% block text %}Kategoria: {{ ticket.tags[0] }}\n")

    outcome = pipeline.process(desk, mail(), "test:1")

    assert outcome.action == "create"
    ack = models.Outbox.get(models.Outbox.kind == "ack")
    assert "Kategoria" not in bytes(ack.raw).decode("utf-8", "replace")
    assert ack.subject.startswith(f"[#{outcome.ticket}] ")
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert any("acknowledgement.j2" in record.getMessage() for record in errors)


def test_templates_failing_without_fallback_skip_the_mail(tmp_path: Path,
                                                         database_url: str) -> None:
    desk = edited_desk(tmp_path, database_url, "acknowledgement", "{% block text %}",
                       "{% block text %}Kategoria: {{ ticket.tags[0] }}\n")
    shipped_copy = tmp_path / "shipped"
    shutil.copytree(SHIPPED, shipped_copy)
    (shipped_copy / "pl" / "acknowledgement.j2").write_text(
        (tmp_path / "templates" / "pl" / "acknowledgement.j2").read_text(encoding="utf-8"),
        encoding="utf-8")
    desk.templates.fallback = Templates(shipped_copy, "pl")

    outcome = pipeline.process(desk, mail(), "test:1")

    assert outcome.action == "create"
    assert models.Outbox.select().where(models.Outbox.kind == "ack").count() == 0
    failed = models.Event.get(models.Event.action == "mail_not_sent")
    assert failed.ticket_id == outcome.ticket
    assert "acknowledgement.j2" in failed.detail


def test_templates_broken_quarantine_notice_keeps_quarantine(tmp_path: Path,
                                                            database_url: str) -> None:
    desk = edited_desk(tmp_path, database_url, "quarantine_notice", "{% block text %}",
                       "{% block text %}{{ quarantine.subject[0] }}\n")
    desk.templates.fallback = None
    no_sender = b"To: helpdesk@example.com\r\nMessage-ID: <x1@example.org>\r\n\r\nbody\r\n"

    outcome = pipeline.process(desk, no_sender, "test:1")
    after = pipeline.process(desk, mail(message_id="<x2@example.org>"), "test:2")

    assert outcome.action == "quarantined"
    assert models.Quarantine.select().count() == 1
    assert after.action == "create"


def test_sample_closing_follows_auto_close(tmp_path: Path, database_url: str) -> None:
    from datetime import timedelta

    from maildesk.models import utcnow
    from maildesk.notify import sample_context

    desk = make_desk(tmp_path, database_url, sla={"auto_close_after": "3h"})

    closes_at = sample_context(desk)["closing"]["closes_at"]

    assert abs(closes_at - utcnow() - timedelta(hours=3)) < timedelta(minutes=1)


def test_templates_render_shows_linked_ticket(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    make_ticket(20451, "Drukarka", "zofia.wisniewska@example.org", status="closed")
    follow_up = make_ticket(20452, "Drukarka znowu", "zofia.wisniewska@example.org")
    follow_up.linked_ticket = 20451
    follow_up.save()

    result = CliRunner().invoke(cli_main, ["--config", str(desk.config.path), "templates",
                                           "render", "acknowledgement", "--ticket", "20452",
                                           "--language", "en"])

    assert result.exit_code == 0, result.output
    assert "Ticket 20451 was already closed" in " ".join(result.output.split())


# (old, new) in pl/acknowledgement.j2, the message in English, and in Polish
EXPLAINED_ERRORS = {
    "variable": ("{{ ticket.number }}", "{{ tiket.number }}",
                 "template error: unknown variable 'tiket': did you mean 'ticket'? "
                 "('tiket' is undefined)",
                 "błąd szablonu: nieznana zmienna 'tiket': czy chodziło o 'ticket'? "
                 "('tiket' is undefined)"),
    "field": ("Temat: {{ ticket.subject }}", "Temat: {{ ticket.subjcet }}",
              "template error: unknown field 'subjcet': did you mean 'ticket.subject'? "
              "('dict object' has no attribute 'subjcet')",
              "błąd szablonu: nieznane pole 'subjcet': czy chodziło o 'ticket.subject'? "
              "('dict object' has no attribute 'subjcet')"),
    "filter": ("| datetime(language)", "| datetme(language)",
               "template syntax error: unknown filter 'datetme': did you mean 'datetime'? "
               "(No filter named 'datetme'.)",
               "błąd składni szablonu: nieznany filtr 'datetme': czy chodziło o "
               "'datetime'? (No filter named 'datetme'.)"),
    "tag": ("{% endif %}", "{% fi %}",
            "template syntax error: {% fi %} where {% endif %} is expected: the {% if %} "
            "above is still open",
            "błąd składni szablonu: {% fi %} tam, gdzie powinno być {% endif %}: {% if %} "
            "powyżej nie został zamknięty"),
    "typo in a tag inside an if": ("{% endif %}", "{% esle %}\n{% endif %}",
                                   "template syntax error: unknown tag {% esle %}: did you "
                                   "mean 'else'?",
                                   "błąd składni szablonu: nieznany znacznik {% esle %}: czy "
                                   "chodziło o 'else'?"),
    "unclosed in a block": ("{% endif %}", "",
                            "template syntax error: {% endblock %} where {% endif %} is "
                            "expected: the {% if %} above is still open",
                            "błąd składni szablonu: {% endblock %} tam, gdzie powinno być "
                            "{% endif %}: {% if %} powyżej nie został zamknięty"),
    "unclosed at the end": ("Pozdrawiamy\n{% endblock %}",
                            "Pozdrawiamy\n{% endblock %}\n{% if ticket.vip %}",
                            "template syntax error: the template ends while {% if %} is "
                            "open: add {% endif %}",
                            "błąd składni szablonu: szablon kończy się, a {% if %} nie "
                            "został zamknięty: dopisz {% endif %}"),
}


@pytest.mark.parametrize("language", ["en", "pl"])
@pytest.mark.parametrize("case", list(EXPLAINED_ERRORS))
def test_templates_check_explains_common_errors(template_root: Path, sample: dict[str, Any],
                                                case: str, language: str) -> None:
    old, new, english, polish = EXPLAINED_ERRORS[case]
    path = template_root / "pl" / "acknowledgement.j2"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    previous = current_language()
    set_language(language)
    try:
        errors = Templates(template_root).check(sample)
    finally:
        set_language(previous)

    assert len(errors) == 1
    assert str(errors[0].location).startswith(str(path) + ":")
    assert errors[0].message.startswith(english if language == "en" else polish)


def test_templates_unknown_tag_suggests_a_known_one(template_root: Path,
                                                   sample: dict[str, Any]) -> None:
    path = template_root / "en" / "acknowledgement.j2"
    path.write_text(path.read_text(encoding="utf-8") + "{% incldue 'x' %}\n",
                    encoding="utf-8")

    errors = Templates(template_root).check(sample)

    assert len(errors) == 1
    assert "did you mean 'include'?" in errors[0].message or (
        "czy chodziło o 'include'?" in errors[0].message)


def test_templates_render_sla_mail_ticket_group(tmp_path: Path,
                                                              database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = make_ticket(20451, "Drukarka na 2. piętrze nie drukuje",
                         "zofia.wisniewska@example.org")
    ticket.group = "druga-linia"
    ticket.save()

    result = CliRunner().invoke(cli_main, ["--config", str(desk.config.path), "templates",
                                           "render", "escalation_warning", "--ticket",
                                           "20451"])

    assert result.exit_code == 0, result.output
    # druga-linia escalates nowhere, while the sample ticket's group escalates to it.
    assert "eskalowane do grupy" not in result.output
    assert "Ostrzeżenie SLA (75%)" in result.output


@pytest.mark.parametrize("expression", ["{{ 1 / 0 }}", "{{ ticket.number + 'x' }}",
                                        "{{ 'jutro' | datetime }}"])
def test_templates_check_reports_python_errors_of_an_expression(
        template_root: Path, sample: dict[str, Any], expression: str) -> None:
    path = template_root / "pl" / "acknowledgement.j2"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("Temat: {{ ticket.subject }}",
                                 f"Temat: {{{{ ticket.subject }}}} {expression}", 1),
                    encoding="utf-8")

    errors = Templates(template_root).check(sample)

    assert len(errors) == 1
    assert str(errors[0].location).startswith(f"{path}:")
    assert "Error" in errors[0].message

"""Agent commands: finding them at the top of a text, and validating them together."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maildesk.commands import (
    COMMANDS,
    CommandName,
    Directory,
    fold,
    label,
    looks_like_commands,
    plan_changes,
    split_commands,
)

AGENTS = {"marek.zielinski": "marek.zielinski", "ewa.nowak": "ewa.nowak",
          "ewa.nowak@example.com": "ewa.nowak"}
GROUPS = {"pierwsza-linia": ("pierwsza-linia", "druga-linia"),
          "druga-linia": ("druga-linia", None)}


MEMBERS = {("marek.zielinski", "pierwsza-linia"), ("ewa.nowak", "druga-linia")}
CATEGORIES = {"incident": ("sieć", "drukarki", "poczta"),
              "service_request": ("dostęp", "sprzęt")}


def directory(categories: dict[str, tuple[str, ...]] | None = None) -> Directory:
    return Directory(find_agent=lambda value: AGENTS.get(value.lower()),
                     find_group=lambda name: GROUPS.get(name.lower()),
                     is_member=lambda login, group: (login, group) in MEMBERS,
                     categories=CATEGORIES if categories is None else categories)


def state(**values: Any) -> dict[str, Any]:
    base = {"status": "in_progress", "type": "incident", "category": None, "impact": "medium",
            "urgency": "medium", "priority": 3, "group": "pierwsza-linia",
            "escalation_level": 0, "assignee": None}
    return {**base, **values}


def plan(text: str, categories: dict[str, tuple[str, ...]] | None = None,
         **values: Any):  # type: ignore[no-untyped-def]
    return plan_changes(split_commands(text), state(**values), "marek.zielinski",
                        directory(categories))


def test_split_commands_takes_top_lines_only() -> None:
    block = split_commands("#status resolved\n#priority 2\n\nDone.\n#close\n")

    assert [command.line for command in block.commands] == ["#status resolved", "#priority 2"]
    assert block.body == "Done.\n#close"


def test_split_commands_skips_leading_blank_lines() -> None:
    block = split_commands("\n\n  #pending\n\nText")

    assert [command.name for command in block.commands] == [CommandName.PENDING]
    assert block.body == "Text"


def test_split_commands_ignores_quoted_lines() -> None:
    block = split_commands("> #status resolved\n> #assign ewa.nowak\nThanks")

    assert block.commands == ()
    assert block.body.startswith("> #status")


def test_split_commands_text_before_command_wins() -> None:
    block = split_commands("Hello,\n#status resolved")

    assert block.commands == ()


def test_split_commands_hash_with_space_is_text() -> None:
    assert split_commands("# heading\ntext").commands == ()


def test_split_commands_note_keeps_text_on_its_line() -> None:
    block = split_commands("#notatka sprawdziłem logi serwera\nbrak błędów")

    assert block.is_note
    assert block.actions == ()
    assert block.body == "sprawdziłem logi serwera\nbrak błędów"


def test_split_commands_unknown_command_is_kept() -> None:
    block = split_commands("#statsu resolved\ntext")

    assert len(block.commands) == 1
    assert block.commands[0].spec is None


@pytest.mark.parametrize(("line", "name"), [
    ("#status resolved", CommandName.STATUS),
    ("#priorytet 2", CommandName.PRIORITY), ("#priority 2", CommandName.PRIORITY),
    ("#wpływ wysoki", CommandName.IMPACT), ("#wplyw wysoki", CommandName.IMPACT),
    ("#impact high", CommandName.IMPACT),
    ("#pilność niska", CommandName.URGENCY), ("#pilnosc niska", CommandName.URGENCY),
    ("#urgency low", CommandName.URGENCY),
    ("#przypisz jan.kowalski", CommandName.ASSIGN), ("#assign me", CommandName.ASSIGN),
    ("#grupa druga-linia", CommandName.GROUP), ("#group druga-linia", CommandName.GROUP),
    ("#eskaluj", CommandName.ESCALATE), ("#escalate", CommandName.ESCALATE),
    ("#oczekuje", CommandName.PENDING), ("#pending", CommandName.PENDING),
    ("#zamknij", CommandName.CLOSE), ("#close", CommandName.CLOSE),
    ("#notatka", CommandName.NOTE), ("#note", CommandName.NOTE),
    ("#typ wniosek", CommandName.TYPE), ("#type incident", CommandName.TYPE),
    ("#kategoria sieć", CommandName.CATEGORY), ("#category network", CommandName.CATEGORY),
    ("#STATUS Resolved", CommandName.STATUS), ("#Priorytet 2", CommandName.PRIORITY),
])
def test_split_commands_knows_every_alias(line: str, name: CommandName) -> None:
    block = split_commands(f"{line}\n\ntext")

    assert block.commands[0].name is name


def test_commands_have_polish_and_english_names() -> None:
    assert len({spec.polish for spec in COMMANDS}) == len(COMMANDS)
    assert len({spec.english for spec in COMMANDS}) == len(COMMANDS)


def test_fold_removes_polish_diacritics() -> None:
    assert fold("Rozwiązane") == "rozwiazane"
    assert fold("PILNOŚĆ") == "pilnosc"
    assert fold("w_realizacji") == "w realizacji"
    assert fold("żółć") == "zolc"


@pytest.mark.parametrize(("value", "status"), [
    ("rozwiązane", "resolved"), ("rozwiazane", "resolved"), ("resolved", "resolved"),
    ("w realizacji", "in_progress"), ("in_progress", "in_progress"),
    ("in progress", "in_progress"), ("oczekuje", "pending"),
    ("oczekuje na użytkownika", "pending"), ("pending", "pending"),
    ("zamknięte", "closed"), ("zamkniete", "closed"), ("closed", "closed"),
    ("przypisane", "assigned"), ("assigned", "assigned"),
])
def test_plan_status_values_in_both_languages(value: str, status: str) -> None:
    result = plan(f"#status {value}", status="new", assignee="ewa.nowak")

    assert result.valid
    assert ("status", "new", status) in result.changes


@pytest.mark.parametrize(("value", "assignee", "status"), [
    ("ponownie otwarte", "ewa.nowak", "in_progress"), ("reopened", None, "new"),
    ("ponownie_otwarte", None, "new"),
])
def test_plan_reopen_follows_assignee(value: str, assignee: str | None, status: str) -> None:
    result = plan(f"#status {value}", status="resolved", assignee=assignee)

    assert result.changes == (("status", "resolved", status),)


def test_plan_status_follows_lifecycle() -> None:
    result = plan("#oczekuje", status="resolved")

    assert not result.valid
    assert result.problems[0].line == "#oczekuje"
    assert "cannot change from" in result.problems[0].text("en")


@pytest.mark.parametrize("line", ["#status w realizacji", "#status rozwiązane",
                                  "#status reopened"])
def test_plan_closed_ticket_stays_closed(line: str) -> None:
    # The old error said the status could not change and showed a usage line with the
    # value just sent, as if a corrected command could work.
    result = plan(line, status="closed")

    problem = result.problems[0]
    assert not result.valid
    assert problem.line == line
    assert problem.text("en") == ("a closed ticket stays closed: a reply from the requester "
                                  "opens a new ticket linked to it")
    assert problem.text("pl").startswith("zamknięte zgłoszenie pozostaje zamknięte")
    assert problem.usage == ""


def test_plan_assigned_needs_assignee() -> None:
    result = plan("#status przypisane", status="new")

    assert not result.valid
    assert "#przypisz" in result.problems[0].usage_text("pl")


def test_plan_unassign_returns_ticket_to_queue() -> None:
    result = plan("#przypisz nikogo", status="in_progress", assignee="ewa.nowak")

    assert ("status", "in_progress", "new") in result.changes
    assert ("assignee", "ewa.nowak", None) in result.changes


def test_plan_priority_sets_priority() -> None:
    result = plan("#priorytet 2")

    assert result.changes == (("priority", 3, 2),)


@pytest.mark.parametrize(("value", "priority"), [("1", 1), ("P4", 4), ("krytyczny", 1),
                                                 ("niski", 4), ("high", 2)])
def test_plan_priority_accepts_words(value: str, priority: int) -> None:
    result = plan(f"#priority {value}")

    assert result.changes == (("priority", 3, priority),)


def test_plan_impact_sets_priority_from_matrix() -> None:
    result = plan("#wpływ wysoki\n#pilność wysoka")

    assert ("impact", "medium", "high") in result.changes
    assert ("urgency", "medium", "high") in result.changes
    assert ("priority", 3, 1) in result.changes


def test_plan_explicit_priority_wins_over_matrix() -> None:
    result = plan("#priority 4\n#impact high")

    assert ("priority", 3, 4) in result.changes


def test_plan_urgency_without_diacritics() -> None:
    result = plan("#pilnosc niska")

    assert result.changes == (("urgency", "medium", "low"), ("priority", 3, 4))


def test_plan_assign_me_is_the_author() -> None:
    result = plan("#assign me")

    assert result.changes == (("assignee", None, "marek.zielinski"),)


def test_plan_assign_by_address() -> None:
    result = plan("#przypisz ewa.nowak@example.com")

    assert result.changes == (("assignee", None, "ewa.nowak"),)


def test_plan_assign_nobody_unassigns() -> None:
    result = plan("#przypisz nikogo", status="pending", assignee="ewa.nowak")

    assert result.changes == (("assignee", "ewa.nowak", None),)


def test_plan_assign_new_ticket_becomes_assigned() -> None:
    result = plan("#przypisz mnie", status="new")

    assert ("status", "new", "assigned") in result.changes


def test_plan_group_changes_group() -> None:
    result = plan("#grupa druga-linia")

    assert result.changes == (("group", "pierwsza-linia", "druga-linia"),)


def test_plan_escalate_moves_to_next_tier() -> None:
    result = plan("#eskaluj brak uprawnień")

    assert ("group", "pierwsza-linia", "druga-linia") in result.changes
    assert ("escalation_level", 0, 1) in result.changes
    assert result.reasons == {"escalation": "brak uprawnień"}


def test_plan_escalate_drops_assignee_outside_group() -> None:
    result = plan("#eskaluj", assignee="marek.zielinski")

    assert ("assignee", "marek.zielinski", None) in result.changes
    assert ("status", "in_progress", "new") in result.changes


def test_plan_escalate_keeps_member_assignee() -> None:
    result = plan("#grupa druga-linia", assignee="ewa.nowak")

    assert result.changes == (("group", "pierwsza-linia", "druga-linia"),)


def test_plan_escalate_with_new_assignee() -> None:
    result = plan("#eskaluj\n#przypisz marek.zielinski", assignee="ewa.nowak")

    assert ("assignee", "ewa.nowak", "marek.zielinski") in result.changes


def test_plan_escalate_from_last_tier_is_invalid() -> None:
    result = plan("#escalate", group="druga-linia")

    assert not result.valid
    assert result.problems[0].line == "#escalate"


def test_plan_escalate_without_group_is_invalid() -> None:
    result = plan("#escalate", group=None)

    assert not result.valid


def test_plan_pending_and_close() -> None:
    assert plan("#oczekuje").changes == (("status", "in_progress", "pending"),)
    assert plan("#oczekuje na użytkownika").changes == (("status", "in_progress", "pending"),)
    assert plan("#zamknij").changes == (("status", "in_progress", "closed"),)


def test_plan_same_value_changes_nothing() -> None:
    result = plan("#status w realizacji")

    assert result.valid
    assert result.changes == ()


def test_plan_one_invalid_command_rejects_all() -> None:
    result = plan("#status resolved\n#priorytet 7\n#assign me")

    assert not result.valid
    assert result.changes == ()
    assert [problem.line for problem in result.problems] == ["#priorytet 7"]


@pytest.mark.parametrize("text", [
    "#status done", "#priority", "#impact huge", "#urgency 5", "#assign jan.kowalski",
    "#group trzecia-linia", "#close now", "#pending 3", "#statsu resolved",
])
def test_plan_invalid_commands(text: str) -> None:
    result = plan(text)

    assert not result.valid
    assert result.problems[0].line == text


def test_plan_same_command_twice_with_different_values() -> None:
    result = plan("#priority 1\n#priority 2")

    assert not result.valid


def test_problem_text_in_polish_and_english() -> None:
    problem = plan("#priorytet 7").problems[0]

    assert problem.text("pl") == (
        "„7” nie jest priorytetem: użyj liczby od 1 (krytyczny) do 4 (niski)")
    assert problem.text("en") == "'7' is not a priority: use 1 (critical) to 4 (low)"
    assert problem.usage_text("pl") == "#priorytet 1–4"
    assert problem.usage_text("en") == "#priority 1-4"


def test_unknown_command_suggests_closest() -> None:
    problem = plan("#zamnij").problems[0]

    assert problem.text("pl") == "nieznane polecenie „#zamnij”: czy chodziło o #zamknij?"
    assert problem.usage_text("en") == "#close"


def test_unknown_command_lists_the_commands() -> None:
    problem = plan("#frobnicate").problems[0]

    assert "#zamknij/#close" in problem.text("pl")
    assert "#priorytet/#priority" in problem.text("en")


def test_unknown_command_names_status_once() -> None:
    # "#status" is the same word in both languages, so it is listed once.
    problem = plan("#frobnicate").problems[0]

    assert "#status/#status" not in problem.text("pl")
    assert "polecenia: #status, #priorytet/#priority" in problem.text("pl")


def test_split_commands_drops_trailing_punctuation() -> None:
    result = plan("#status rozwiązane.\n#priorytet 2,")

    assert ("status", "in_progress", "resolved") in result.changes
    assert ("priority", 3, 2) in result.changes


def test_plan_status_new_returns_to_queue() -> None:
    result = plan("#status nowe", assignee="ewa.nowak")

    assert result.changes == (("status", "in_progress", "new"),)


def test_looks_like_commands_for_non_agents() -> None:
    lines = looks_like_commands("#priorytet 1\n#status rozwiązane\n\nProszę o pilną instalację")

    assert lines == ("#priorytet 1", "#status rozwiązane")


def test_label_translates_values() -> None:
    assert label("resolved", "pl") == "rozwiązane"
    assert label("pending", "en") == "waiting for the user"
    assert label("high", "pl", "impact") == "wysoki"
    assert label("high", "pl", "urgency") == "wysoka"
    assert label(None, "pl") == "—"
    assert label(2, "pl", "priority") == "P2 (wysoki)"
    assert label(4, "en", "priority") == "P4 (low)"


@pytest.mark.parametrize(("line", "name", "value"), [
    ("#status: w realizacji", CommandName.STATUS, "w realizacji"),
    ("#priorytet: 2", CommandName.PRIORITY, "2"),
    ("#priorytet:2", CommandName.PRIORITY, "2"),
    ("#Status :  W REALIZACJI", CommandName.STATUS, "W REALIZACJI"),
    ("#zamknij:", CommandName.CLOSE, ""),
    ("#priorytet\u00a02", CommandName.PRIORITY, "2"),
    ("#priorytet\u202f2", CommandName.PRIORITY, "2"),
    ("#priorytet\t2", CommandName.PRIORITY, "2"),
    ("#status\u00a0w\u00a0realizacji\u00a0", CommandName.STATUS, "w\u00a0realizacji"),
    ("\u00a0#przypisz\u3000mnie", CommandName.ASSIGN, "mnie"),
    ("\u200b#zamknij", CommandName.CLOSE, ""),
    ("#zamknij.", CommandName.CLOSE, ""),
    ("# priorytet 2", CommandName.PRIORITY, "2"),
    ("#\u00a0status rozwiązane", CommandName.STATUS, "rozwiązane"),
])
def test_split_commands_separators(line: str, name: CommandName, value: str) -> None:
    block = split_commands(f"{line}\n\ntext")

    assert len(block.commands) == 1
    assert block.commands[0].name is name
    assert block.commands[0].value == value
    assert block.body == "text"


@pytest.mark.parametrize(("line", "status"), [
    ("#status: w realizacji", "in_progress"), ("#status:rozwiązane", "resolved"),
    ("#status\u00a0w\u00a0realizacji", "in_progress"),
])
def test_plan_status_after_colon_or_nbsp(line: str, status: str) -> None:
    result = plan(line, status="new", assignee="ewa.nowak")

    assert result.valid
    assert ("status", "new", status) in result.changes


@pytest.mark.parametrize("text", [
    "#\n#priorytet 2\n\nx4", "#status resolved\n#\n#priorytet 2\n\nx4",
    "  #  \n\n#priorytet 2\n\nx4", "##\n#priorytet 2\nx4",
])
def test_split_commands_bare_hash_is_skipped(text: str) -> None:
    block = split_commands(text)

    assert CommandName.PRIORITY in [command.name for command in block.commands]
    assert block.body == "x4"


def test_split_commands_drops_lone_bare_hash() -> None:
    block = split_commands("#\nDzień dobry")

    assert block.commands == ()
    assert block.body == "Dzień dobry"


@pytest.mark.parametrize("text", [
    "#status=resolved\ntext", "#status;resolved\ntext", "#priorytet2\ntext",
    "#status: zrobione\ntext", "#status.rozwiązane\ntext",
])
def test_split_commands_malformed_line_is_command(text: str) -> None:
    block = split_commands(text)
    result = plan_changes(block, state(), "marek.zielinski", directory())

    assert len(block.commands) == 1
    assert block.body == "text"
    assert not result.valid
    assert result.problems[0].line == text.split("\n")[0]


@pytest.mark.parametrize(("text", "sign"), [
    ("#status=resolved\ntext", "="), ("#status;rozwiązane\ntext", ";"),
    ("#priorytet,2\ntext", ","), ("#status = resolved\ntext", "="),
])
def test_wrong_separator_named_in_problem(text: str, sign: str) -> None:
    # An agent who wrote "=" reads what to type, not "unknown status '=resolved'".
    block = split_commands(text)
    result = plan_changes(block, state(), "marek.zielinski", directory())

    problem = result.problems[0]
    assert problem.text("en") == f"leave out '{sign}': write the command, a space and the value"
    assert problem.text("pl") == f"pomiń znak „{sign}”: wpisz polecenie, spację i wartość"
    assert problem.usage


def test_sign_without_value_asks_for_value() -> None:
    block = split_commands("#status =\ntext")
    result = plan_changes(block, state(), "marek.zielinski", directory())

    assert result.problems[0].text("en") == "this command needs a value"


@pytest.mark.parametrize("text", [
    "# Podsumowanie\ntext", "#1 w kolejce\ntext", "#!/bin/sh\ntext", "Hello,\n#status: x",
])
def test_split_commands_other_hash_lines_are_text(text: str) -> None:
    block = split_commands(text)

    assert block.commands == ()
    assert block.body == text


COMMAND_NAMES = sorted({name for spec in COMMANDS
                        for name in (spec.polish, spec.english, fold(spec.polish))})


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(COMMAND_NAMES),
       gap=st.sampled_from(["", " ", "\u00a0", "\t"]),
       rest=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"
                                  "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=20))
def test_split_commands_known_name_never_body(name: str, gap: str, rest: str) -> None:
    # After "# " only a whole known name makes a command ("# assign0" may be a heading).
    if gap and rest[:1] and (rest[0].isalnum() or rest[0] in "_-"):
        rest = " " + rest
    line = f"#{gap}{name}{rest}"
    block = split_commands(f"{line}\nbody")

    assert len(block.commands) == 1
    assert block.body.splitlines()[-1] == "body"
    if block.commands[0].name is not CommandName.NOTE:
        assert block.body == "body"


# --------------------------------------------------------------------------- type and category


@pytest.mark.parametrize(("line", "ticket_type"), [
    ("#typ incydent", "incident"), ("#type incident", "incident"),
    ("#typ wniosek", "service_request"), ("#typ wniosek o usługę", "service_request"),
    ("#typ wniosek o usluge", "service_request"), ("#type service_request", "service_request"),
    ("#type Service Request", "service_request"), ("#TYP: Wniosek.", "service_request"),
])
def test_plan_type_values_in_both_languages(line: str, ticket_type: str) -> None:
    result = plan(line, type="incident" if ticket_type == "service_request" else
                  "service_request")

    assert result.valid
    assert ("type", result.changes[0][1], ticket_type) in result.changes


def test_plan_same_type_changes_nothing() -> None:
    result = plan("#typ incydent", type="incident")

    assert result.valid
    assert result.changes == ()


def test_plan_unknown_type_is_invalid() -> None:
    problem = plan("#typ awaria").problems[0]

    assert problem.text("pl") == (
        "„awaria” nie jest typem zgłoszenia: użyj wartości incydent lub wniosek")
    assert problem.text("en") == "'awaria' is not a ticket type: use incident or service_request"
    assert problem.usage_text("pl") == "#typ incydent | wniosek"


@pytest.mark.parametrize(("value", "category"), [
    ("sieć", "sieć"), ("siec", "sieć"), ("SIEĆ", "sieć"), ("Drukarki.", "drukarki"),
])
def test_plan_category_takes_configured_spelling(value: str, category: str) -> None:
    result = plan(f"#kategoria {value}")

    assert result.valid
    assert result.changes == (("category", None, category),)


def test_plan_unknown_category_lists_allowed_ones() -> None:
    problem = plan("#kategoria sprzęt").problems[0]

    assert problem.text("pl") == ("nie ma kategorii „sprzęt” dla typu incydent; "
                                  "dostępne kategorie: sieć, drukarki, poczta")
    assert problem.text("en") == ("there is no category 'sprzęt' for the type incident; "
                                  "the categories are: sieć, drukarki, poczta")
    assert problem.usage_text("pl") == "#kategoria <kategoria> | brak"


def test_plan_category_checked_against_new_type() -> None:
    # The type of the same mail counts, whichever line comes first.
    result = plan("#kategoria sprzet\n#typ wniosek")

    assert result.valid
    assert result.changes == (("type", "incident", "service_request"),
                              ("category", None, "sprzęt"))


def test_plan_new_type_rejects_old_category() -> None:
    problem = plan("#typ wniosek", category="sieć").problems[0]

    assert problem.line == "#typ wniosek"
    assert problem.text("pl") == ("kategoria „sieć” nie należy do typu wniosek o usługę: "
                                  "dodaj #kategoria z jedną z wartości: dostęp, sprzęt")


def test_plan_new_type_with_category_none() -> None:
    result = plan("#typ wniosek\n#kategoria brak", category="sieć")

    assert result.valid
    assert result.changes == (("type", "incident", "service_request"), ("category", "sieć", None))


def test_plan_category_free_text_without_configuration() -> None:
    result = plan("#category Drukarka 3. piętro", categories={})

    assert result.valid
    assert result.changes == (("category", None, "Drukarka 3. piętro"),)


def test_plan_category_too_long_without_configuration() -> None:
    problem = plan("#category " + "x" * 101, categories={}).problems[0]

    assert problem.text("en") == "a category has at most 100 characters"


@pytest.mark.parametrize("text", ["#typ", "#kategoria", "#type=incident"])
def test_plan_type_and_category_need_value(text: str) -> None:
    assert not plan(text).valid


def test_unknown_command_suggests_type_and_category() -> None:
    assert plan("#kategorja sieć").problems[0].text("pl") == (
        "nieznane polecenie „#kategorja”: czy chodziło o #kategoria?")
    assert plan("#categroy network").problems[0].text("en") == (
        "unknown command '#categroy': did you mean #category?")


def test_label_translates_ticket_types() -> None:
    assert label("service_request", "pl", "type") == "wniosek o usługę"
    assert label("incident", "en", "type") == "incident"


# --------------------------------------------------------------------------- merge


def merge_plan(text: str, refusal: tuple[str, dict[str, Any]] | None = None):  # type: ignore[no-untyped-def]
    checked: list[int] = []

    def check_merge(number: int) -> tuple[str, dict[str, Any]] | None:
        checked.append(number)
        return refusal

    result = plan_changes(split_commands(text), state(), "marek.zielinski",
                          replace(directory(), check_merge=check_merge))
    return result, checked


@pytest.mark.parametrize("line", ["#scal 123", "#merge 123", "#SCAL: 123", "#scal #123",
                                  "#scal [#123]", "#merge [SD#123].", "#scal\u00a0123"])
def test_plan_merge_reads_ticket_number(line: str) -> None:
    result, checked = merge_plan(f"{line}\n\nDuplikat.")

    assert result.valid
    assert result.merge_into == 123
    assert result.changes == ()
    assert checked == [123]


@pytest.mark.parametrize("value", ["", "abc", "12 13", "zgłoszenie 12", "-5"])
def test_plan_merge_needs_ticket_number(value: str) -> None:
    result, checked = merge_plan(f"#scal {value}")

    assert not result.valid
    assert checked == []


def test_plan_merge_refusal_becomes_problem() -> None:
    result, _checked = merge_plan("#scal 7", refusal=("there is no ticket {number}",
                                                       {"number": 7}))

    [problem] = result.problems
    assert problem.text("pl") == "nie ma zgłoszenia 7"
    assert problem.usage_text("pl") == "#scal <numer zgłoszenia>"
    assert result.merge_into is None


def test_plan_merge_with_note_is_valid() -> None:
    result, _checked = merge_plan("#scal 7\n#notatka duplikat")

    assert result.valid
    assert result.merge_into == 7


def test_plan_merge_with_other_command_is_invalid() -> None:
    result, _checked = merge_plan("#status w realizacji\n#scal 7")

    [problem] = result.problems
    assert problem.line == "#scal 7"
    assert problem.text("en").startswith("#merge must be the only command of its mail")


def test_plan_merge_without_ticket_lookup_is_invalid() -> None:
    # A directory without a ticket of the mail cannot check a merge.
    assert not plan("#scal 7").valid


@pytest.mark.parametrize("keyword", ["połącz", "polacz", "scalanie"])
def test_merge_synonyms_name_the_command(keyword: str) -> None:
    problem = plan(f"#{keyword} 7").problems[0]

    assert problem.text("pl") == f"nieznane polecenie „#{keyword}”: czy chodziło o #scal?"

"""PyYAML's syntax errors, explained to the admin in both languages, with their place."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from maildesk.errors import ConfigError
from maildesk.i18n import current_language, set_language
from maildesk.yamlfile import load_yaml_text


@pytest.fixture(params=["en", "pl"])
def language(request: pytest.FixtureRequest) -> Iterator[str]:
    previous = current_language()
    set_language(request.param)
    yield request.param
    set_language(previous)


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_yaml_text(text, "10-vpn.yaml")
    return caught.value


# text, location, the English explanation, the Polish one
CASES = {
    "colon in a value": (
        "- name: vpn\n  then:\n    subject: Re: VPN\n", "10-vpn.yaml:3:16",
        'put the value in quotes, e.g. subject: "Re: printer"',
        'ujmij wartość w cudzysłów, np. subject: "Re: drukarka"'),
    "line indented too deep": (
        "- name: vpn\n    when: {subject: vpn}\n", "10-vpn.yaml:2:9",
        "line 2 is read as part of the value above it",
        "wiersz 2 jest czytany jako dalszy ciąg wartości z wiersza wyżej"),
    "colon missing above": (
        "- name vpn\n  when: {subject: vpn}\n", "10-vpn.yaml:2:7",
        "add the colon that the line above lacks",
        "dopisz dwukropek, którego brakuje w wierszu wyżej"),
    "key without colon": (
        "- name: vpn\n  when\n  then: {group: siec}\n", "10-vpn.yaml:3:3",
        "line 2 has no colon", "w wierszu 2 brakuje dwukropka"),
    "indentation": (
        "- name: vpn\n  when: {subject: vpn}\n   then: {group: siec}\n", "10-vpn.yaml:3:4",
        "the indentation does not match the lines above",
        "wcięcie nie pasuje do wierszy powyżej"),
    "unclosed quote": (
        '- name: "vpn\n  then: {group: siec}\n', "10-vpn.yaml:3:1",
        "the quote opened at line 1, column 9 is never closed",
        "cudzysłów otwarty w wierszu 1, w kolumnie 9, nie został zamknięty"),
    "backslash": (
        '- name: "C:\\drukarki"\n', "10-vpn.yaml:1:13",
        "write \\\\ for one backslash", "napisz \\\\ zamiast jednego ukośnika"),
    "unclosed list": (
        "- name: vpn\n  when: {subject: [vpn, wpn}\n", "10-vpn.yaml:2:28",
        "the list opened with [ at line 2, column 19 lacks a comma or its closing ]",
        "w liście otwartej nawiasem [ w wierszu 2, w kolumnie 19, brakuje przecinka"),
    "unclosed mapping": (
        "- name: vpn\n  then: {group: siec\n", "10-vpn.yaml:3:1",
        "the mapping opened with { at line 2, column 9 lacks a comma or its closing }",
        "w sekcji otwartej nawiasem { w wierszu 2, w kolumnie 9, brakuje przecinka"),
    "undefined alias": (
        "- name: vpn\n  then: *siec\n", "10-vpn.yaml:2:9",
        "an alias (*name) with no anchor (&name) before it",
        "odwołanie (*nazwa) bez wcześniejszej kotwicy (&nazwa)"),
    "reserved character": (
        "- name: vpn\n  then: {notify: @admin}\n", "10-vpn.yaml:2:18",
        "a value starts with a character that YAML reserves",
        "wartość zaczyna się znakiem zastrzeżonym w YAML"),
    "second document": (
        "- name: vpn\n---\n- name: wpn\n", "10-vpn.yaml:2:1",
        "a second document after a line ---", "drugi dokument po wierszu ---"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_yaml_syntax_error_explained(case: str, language: str) -> None:
    text, location, english, polish = CASES[case]

    error = _error(text)

    assert error.location == location
    prefix = "invalid YAML: " if language == "en" else "niepoprawny YAML: "
    assert error.message.startswith(prefix)
    assert (english if language == "en" else polish) in error.message


def test_yaml_explanation_keeps_pyyaml_text(language: str) -> None:
    error = _error("- name: vpn\n  then: {group: siec\n")

    assert error.message.endswith(
        "(while parsing a flow mapping expected ',' or '}', but got '<stream end>')")


def test_yaml_unknown_problem_keeps_pyyaml_text(language: str) -> None:
    error = _error("- name: &\n")

    assert error.location == "10-vpn.yaml:1:10"
    assert "while scanning an anchor" in error.message

"""Jinja's errors in the admin's language, with the closest known name.

Jinja words its errors in English and names the type of a value ("'dict object' has no
attribute 'subjcet'") rather than the variable. The explanations here name what is
wrong in the admin's language and suggest the closest name that the sample context or
the environment holds. Jinja's own text follows in brackets, so that a search for it
still finds help. An error Jinja words in a way not listed here keeps Jinja's text alone.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jinja2

from maildesk.i18n import _

_UNDEFINED_NAME = re.compile(r"^'(?P<name>[^']+)' is undefined$")
_MISSING_ATTRIBUTE = re.compile(r"^'[^']+' has no attribute '(?P<name>[^']+)'$")
_UNKNOWN_FILTER = re.compile(r"^No filter named '(?P<name>[^']+)'")
_UNKNOWN_TAG = re.compile(r"^Encountered unknown tag '(?P<tag>[^']+)'\.")
_OPEN_BLOCK = re.compile(r"The innermost block that needs to be closed is '(?P<block>[^']+)'")

# The tags of Jinja's standard syntax, for suggestions.
_KNOWN_TAGS = ("if", "elif", "else", "endif", "for", "endfor", "block", "endblock", "set",
               "endset", "include", "extends", "filter", "endfilter", "macro", "endmacro",
               "call", "endcall", "with", "endwith", "raw", "endraw")


def _closest(name: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return matches[0] if matches else None


def _with_suggestion(text: str, suggestion: str | None) -> str:
    if suggestion is None:
        return text
    return _("{problem}: did you mean '{suggestion}'?").format(problem=text,
                                                                suggestion=suggestion)


def _field_paths(context: Mapping[str, Any]) -> dict[str, str]:
    """Map each field name of the context's mappings to its path, e.g. subject: ticket.subject.

    Only the first two levels are read: templates name ``ticket.subject`` or
    ``escalation.next_group``, and deeper values are rare. The first path found wins.
    """
    paths: dict[str, str] = {}
    for name, value in context.items():
        if not isinstance(value, Mapping):
            continue
        for key in value:
            paths.setdefault(str(key), f"{name}.{key}")
    return paths


def describe_render_error(error: jinja2.TemplateError, context: Mapping[str, Any]) -> str:
    """Return the ConfigError text for an error raised while a template renders."""
    message = str(error.message or error)
    explanation: str | None = None

    undefined = _UNDEFINED_NAME.match(message)
    attribute = _MISSING_ATTRIBUTE.match(message)
    if undefined is not None:
        name = undefined.group("name")
        explanation = _with_suggestion(_("unknown variable '{name}'").format(name=name),
                                       _closest(name, context))
    elif attribute is not None:
        name = attribute.group("name")
        paths = _field_paths(context)
        close = _closest(name, paths)
        explanation = _with_suggestion(_("unknown field '{name}'").format(name=name),
                                       paths[close] if close else None)

    if explanation is None:
        return _("template error: {message}").format(message=message)
    return _("template error: {explanation} ({message})").format(explanation=explanation,
                                                                  message=message)


def describe_syntax_error(error: jinja2.TemplateSyntaxError,
                          filters: Iterable[str]) -> str:
    """Return the ConfigError text for an error Jinja finds while it compiles a template."""
    message = str(error.message or error)
    explanation: str | None = None

    unknown_filter = _UNKNOWN_FILTER.match(message)
    unknown_tag = _UNKNOWN_TAG.match(message)
    open_block = _OPEN_BLOCK.search(message)
    tag = unknown_tag.group("tag") if unknown_tag is not None else ""
    # A misspelt tag ({% esle %}) is named as such, even inside an open block.
    close_tag = _closest(tag, [known for known in _KNOWN_TAGS if known != tag])
    if unknown_filter is not None:
        name = unknown_filter.group("name")
        explanation = _with_suggestion(_("unknown filter '{name}'").format(name=name),
                                       _closest(name, filters))
    elif unknown_tag is not None and open_block is not None and (
            tag in _KNOWN_TAGS or close_tag is None):
        explanation = _("{{% {tag} %}} where {{% end{block} %}} is expected: the "
                        "{{% {block} %}} above is still open").format(
            tag=tag, block=open_block.group("block"))
    elif unknown_tag is not None:
        explanation = _with_suggestion(_("unknown tag {{% {tag} %}}").format(tag=tag),
                                       close_tag)
    elif message.startswith("Unexpected end of template") and open_block is not None:
        block = open_block.group("block")
        explanation = _("the template ends while {{% {block} %}} is open: add "
                        "{{% end{block} %}}").format(block=block)

    if explanation is None:
        return _("template syntax error: {message}").format(message=message)
    return _("template syntax error: {explanation} ({message})").format(
        explanation=explanation, message=message)

"""YAML loading that remembers where every key and value came from.

Admins edit maildesk.yaml and the rules files by hand, so every validation error must
name the file, line and column. PyYAML knows positions only while composing nodes; this
loader copies them onto the mappings and sequences it builds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from maildesk.errors import ConfigError
from maildesk.i18n import N_, _


@dataclass(frozen=True)
class Position:
    """A place in a YAML file; ``line`` and ``column`` count from 1."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class YamlMapping(dict[str, Any]):
    """A mapping that also stores the position of itself, its keys and its values."""

    position: Position
    key_positions: dict[str, Position]
    value_positions: dict[str, Position]

    def where(self, key: str | None = None) -> Position:
        """Return the position of a key's value, of the key, or of the mapping itself."""
        if key is None:
            return self.position
        return self.value_positions.get(key) or self.key_positions.get(key) or self.position


class YamlSequence(list[Any]):
    """A list that also stores the position of itself and of each item."""

    position: Position
    item_positions: list[Position]

    def where(self, index: int | None = None) -> Position:
        if index is None or index >= len(self.item_positions):
            return self.position
        return self.item_positions[index]


def _position(path: str, node: yaml.Node) -> Position:
    return Position(path, node.start_mark.line + 1, node.start_mark.column + 1)


class _PositionLoader(yaml.SafeLoader):
    source_path = "<string>"

    def construct_yaml_map(self, node: yaml.MappingNode):
        mapping = YamlMapping()
        mapping.position = _position(self.source_path, node)
        mapping.key_positions = {}
        mapping.value_positions = {}
        yield mapping

        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise ConfigError(
                    _("a key must be plain text"), str(_position(self.source_path, key_node))
                )
            key = str(key)
            if key in mapping:
                raise ConfigError(
                    _("duplicate key '{key}': keep one of them").format(key=key),
                    str(_position(self.source_path, key_node)),
                )
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_positions[key] = _position(self.source_path, key_node)
            mapping.value_positions[key] = _position(self.source_path, value_node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Build one value, raising ConfigError for a scalar PyYAML resolves but cannot build.

        PyYAML takes any ``YYYY-MM-DD`` for a date and then raises a bare ValueError on
        ``2026-12-32``, and an explicit tag such as ``!!int abc`` fails the same way.
        """
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as error:
            where = str(_position(self.source_path, node))
            if node.tag == "tag:yaml.org,2002:timestamp":
                message = _("invalid date '{value}': {error}; correct it, or put the value "
                            "in quotes to mean it as text")
            else:
                message = _("invalid value '{value}': {error}")
            raise ConfigError(message.format(value=node.value, error=error), where) from error

    def construct_yaml_seq(self, node: yaml.SequenceNode):
        sequence = YamlSequence()
        sequence.position = _position(self.source_path, node)
        sequence.item_positions = [_position(self.source_path, item) for item in node.value]
        yield sequence
        sequence.extend(self.construct_object(item, deep=True) for item in node.value)


_PositionLoader.add_constructor("tag:yaml.org,2002:map", _PositionLoader.construct_yaml_map)
_PositionLoader.add_constructor("tag:yaml.org,2002:seq", _PositionLoader.construct_yaml_seq)


# PyYAML's problems in the words an admin needs: what is wrong and how to fix it. The
# message keeps PyYAML's own text after it, so that a search for that text still helps.
# {line} and {column} give where the unclosed quote or bracket, or the key without a
# colon, begins: PyYAML reports that place as the error's context.
_EXPLANATIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"mapping values are not allowed here"),
     N_("a colon followed by a space inside a value: put the value in quotes, "
        "e.g. subject: \"Re: printer\"")),
    (re.compile(r"could not find expected ':'"),
     N_("line {line} has no colon: write key: value, or indent the line deeper to "
        "continue the value above")),
    (re.compile(r"expected <block end>, but found|did not find expected (key|'-')"),
     N_("the indentation does not match the lines above: the keys of one mapping, and "
        "the dashes of one list, start in the same column")),
    (re.compile(r"quoted scalar found unexpected end of stream"),
     N_("the quote opened at line {line}, column {column} is never closed: add the "
        "closing quote")),
    (re.compile(r"found unknown escape character"),
     N_("a backslash in double quotes starts an escape: use single quotes, or write \\\\ "
        "for one backslash")),
    (re.compile(r"expected ',' or '\]'"),
     N_("the list opened with [ at line {line}, column {column} lacks a comma or its "
        "closing ]")),
    (re.compile(r"expected ',' or '\}'"),
     N_("the mapping opened with {{ at line {line}, column {column} lacks a comma or its "
        "closing }}")),
    (re.compile(r"found undefined alias"),
     N_("an alias (*name) with no anchor (&name) before it")),
    (re.compile(r"found character '[@`%]' that cannot start any token"),
     N_("a value starts with a character that YAML reserves (@, ` or %): put the value in "
        "quotes")),
    (re.compile(r"but found another document"),
     N_("a second document after a line ---: a file holds one document")),
)


def _explain(error: yaml.MarkedYAMLError, text: str) -> str:
    """Return the ConfigError text for a PyYAML syntax error, explained where it is known."""
    problem = " ".join(part for part in (error.context, error.problem) if part)
    mark = error.problem_mark
    if problem == "mapping values are not allowed here" and mark is not None:
        lines = text.splitlines()
        before = lines[mark.line][:mark.column] if mark.line < len(lines) else ""
        if ":" not in before:
            # The colon is the first of its line, so the line is read as the rest of the
            # value above it: the line is indented too deep, or the line above lacks its
            # colon. A colon inside a value ("subject: Re: printer") has one before it.
            return _("invalid YAML: {explanation} ({problem})").format(
                explanation=_("line {line} is read as part of the value above it: indent it "
                              "like the key above, or add the colon that the line above "
                              "lacks").format(line=mark.line + 1),
                problem=problem)
    if "'\\t'" in problem:
        # PyYAML's words for the most common slip of all, which it leaves unexplained.
        return _("invalid YAML: a tab character; YAML indents with spaces only, so replace "
                 "the tab with spaces")

    for pattern, explanation in _EXPLANATIONS:
        if pattern.search(problem):
            mark = error.context_mark or error.problem_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
            return _("invalid YAML: {explanation} ({problem})").format(
                explanation=_(explanation).format(line=line, column=column), problem=problem)
    return _("invalid YAML: {problem}").format(problem=problem)


def load_yaml_text(text: str, path: str) -> Any:
    """Parse YAML text; syntax errors become ConfigError with ``path:line:column``."""
    loader = _PositionLoader(text)
    loader.source_path = path
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        location = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(_explain(error, text), location) from error
    except yaml.YAMLError as error:
        raise ConfigError(_("invalid YAML: {problem}").format(problem=error), path) from error
    finally:
        loader.dispose()


def byte_location(path: str, content: bytes, offset: int) -> str:
    """Return ``path:line:column`` of a byte offset, e.g. the first byte that is not UTF-8."""
    line = content.count(b"\n", 0, offset) + 1
    column = offset - (content.rfind(b"\n", 0, offset) + 1) + 1
    return f"{path}:{line}:{column}"


def load_yaml_file(path: Path) -> Any:
    """Read and parse one YAML file (UTF-8); every read failure becomes a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise ConfigError(_("file not found"), str(path)) from error
    except IsADirectoryError as error:
        raise ConfigError(
            _("the path is a directory, not a file: name the YAML file inside it, "
              "e.g. {example}").format(example=path / "maildesk.yaml"),
            str(path),
        ) from error
    except PermissionError as error:
        raise ConfigError(
            _("permission denied: the file must be readable by the user maildesk runs as "
              "(uid {uid})").format(uid=os.geteuid()),
            str(path),
        ) from error
    except UnicodeDecodeError as error:
        raise ConfigError(_("the file is not valid UTF-8: save it as UTF-8"),
                          byte_location(str(path), error.object, error.start)) from error
    except OSError as error:
        raise ConfigError(
            _("the file could not be read: {error}").format(error=error.strerror or error),
            str(path),
        ) from error
    return load_yaml_text(text, str(path))

"""Commands in agents' mail: ``#status resolved``, ``#przypisz jan.kowalski``, ...

Commands are the lines that start with ``#`` at the top of the text an agent wrote this
time (``ParsedMessage.reply_text``, which has no quoted history). Each command has a
Polish and an English name, and Polish words are also accepted without diacritics
(``#pilnosc``, ``rozwiazane``). All commands of one mail are validated together and
applied together, or none is: a mistake in one line must not leave half a change.

Parsing (``split_commands``) and validating (``plan_changes``) are pure. They return
the changes as ``(field, old, new)`` triples, and ``apply_changes`` writes them inside
the transaction of the mail, with one audit event each.
"""

from __future__ import annotations

import difflib
import logging
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from maildesk import models
from maildesk.i18n import _, current_language, gettext_for
from maildesk.models import utcnow
from maildesk.sla import LEVELS, PriorityMatrix

logger = logging.getLogger(__name__)


def N_(message: str) -> str:
    """Mark a message for translation; it is translated later, in the reader's language."""
    return message


class CommandName(StrEnum):
    STATUS = "status"
    PRIORITY = "priority"
    IMPACT = "impact"
    URGENCY = "urgency"
    ASSIGN = "assign"
    GROUP = "group"
    ESCALATE = "escalate"
    TYPE = "type"
    CATEGORY = "category"
    MERGE = "merge"
    PENDING = "pending"
    CLOSE = "close"
    NOTE = "note"


@dataclass(frozen=True)
class CommandSpec:
    """One command: its names (Polish first) and how it is written, as a msgid."""

    name: CommandName
    polish: str
    english: str
    usage: str
    takes_value: bool


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(CommandName.STATUS, "status", "status",
                N_("#status new | assigned | in_progress | pending | resolved | closed | "
                   "reopened"), True),
    CommandSpec(CommandName.PRIORITY, "priorytet", "priority", N_("#priority 1-4"), True),
    CommandSpec(CommandName.IMPACT, "wpływ", "impact", N_("#impact high | medium | low"), True),
    CommandSpec(CommandName.URGENCY, "pilność", "urgency",
                N_("#urgency high | medium | low"), True),
    CommandSpec(CommandName.ASSIGN, "przypisz", "assign",
                N_("#assign me | <login> | nobody"), True),
    CommandSpec(CommandName.GROUP, "grupa", "group", N_("#group <group name>"), True),
    CommandSpec(CommandName.ESCALATE, "eskaluj", "escalate", N_("#escalate [reason]"), False),
    CommandSpec(CommandName.TYPE, "typ", "type", N_("#type incident | service_request"), True),
    CommandSpec(CommandName.CATEGORY, "kategoria", "category",
                N_("#category <category> | none"), True),
    CommandSpec(CommandName.MERGE, "scal", "merge", N_("#merge <ticket number>"), True),
    CommandSpec(CommandName.PENDING, "oczekuje", "pending", N_("#pending"), False),
    CommandSpec(CommandName.CLOSE, "zamknij", "close", N_("#close"), False),
    CommandSpec(CommandName.NOTE, "notatka", "note", N_("#note [text]"), False),
)

_POLISH_LETTERS = str.maketrans("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ", "acelnoszzACELNOSZZ")


def fold(value: str) -> str:
    """Lower-case, drop diacritics, and turn each run of ``_``, ``-`` and spaces into a space."""
    text = value.translate(_POLISH_LETTERS)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(char for char in text if not unicodedata.combining(char))
    return re.sub(r"[\s_-]+", " ", text.lower()).strip()


_BY_NAME: dict[str, CommandSpec] = {}
for _spec in COMMANDS:
    _BY_NAME[fold(_spec.polish)] = _spec
    _BY_NAME[fold(_spec.english)] = _spec
_BY_NAME["notka"] = _BY_NAME["note"]
# Words an agent may use for a command under another name. They are not aliases, because
# "połącz" (connect) also reads as linking tickets, and merging cannot be undone: the
# line gets an error that names the command.
_SYNONYMS: dict[str, str] = {"polacz": "scal", "scalanie": "scal", "zlacz": "scal"}

# Reopening goes to the assignee's work (in_progress), or back to the queue (new).
REOPEN = "reopen"
# Status codes are the ones the ticket lifecycle uses; the keys are folded spellings.
STATUS_VALUES: dict[str, str] = {
    "new": "new", "nowe": "new",
    "assigned": "assigned", "przypisane": "assigned",
    "in progress": "in_progress", "w realizacji": "in_progress", "realizacja": "in_progress",
    "pending": "pending", "oczekuje": "pending", "oczekuje na uzytkownika": "pending",
    "waiting": "pending", "waiting for user": "pending",
    "resolved": "resolved", "rozwiazane": "resolved",
    "closed": "closed", "zamkniete": "closed",
    "reopened": REOPEN, "ponownie otwarte": REOPEN, "otworz ponownie": REOPEN,
}
LEVEL_VALUES: dict[str, str] = {
    "high": "high", "wysoki": "high", "wysoka": "high", "wysokie": "high",
    "medium": "medium", "sredni": "medium", "srednia": "medium", "srednie": "medium",
    "low": "low", "niski": "low", "niska": "low", "niskie": "low",
}
PRIORITY_VALUES: dict[str, int] = {
    **{str(number): number for number in range(1, 5)},
    **{f"p{number}": number for number in range(1, 5)},
    "krytyczny": 1, "critical": 1, "wysoki": 2, "high": 2,
    "sredni": 3, "medium": 3, "niski": 4, "low": 4,
}
# Ticket types (ITIL): an incident, or a service request ("wniosek o usługę").
TYPE_VALUES: dict[str, str] = {
    "incident": "incident", "incydent": "incident",
    "service request": "service_request", "request": "service_request",
    "wniosek": "service_request", "wniosek o usluge": "service_request",
    "prosba o usluge": "service_request",
}
# A ticket number as #merge takes it: 123, #123 or a tag such as [#123] or [SD#123].
_TICKET_NUMBER = re.compile(r"\[?[^\W\d_]*#?(?P<number>\d{1,12})\]?")
# Values of #category that clear the category.
CATEGORY_NONE = frozenset({"none", "brak", "-", "bez kategorii"})
ASSIGN_SELF = frozenset({"me", "mnie", "ja", "siebie", "myself"})
ASSIGN_NOBODY = frozenset({"nobody", "none", "nikt", "nikogo", "-"})
PENDING_SUFFIXES = frozenset({"", "na uzytkownika", "for user", "for the user"})

# Human names of codes, as msgids; ``label`` translates them for the reader.
LABELS: dict[str, str] = {
    "new": N_("new"), "assigned": N_("assigned"), "in_progress": N_("in progress"),
    "pending": N_("waiting for the user"), "resolved": N_("resolved"), "closed": N_("closed"),
}
PRIORITY_LABELS: dict[int, str] = {
    1: N_("P1 (critical)"), 2: N_("P2 (high)"), 3: N_("P3 (medium)"), 4: N_("P4 (low)"),
}
FIELD_LABELS: dict[str, str] = {
    "status": N_("status"), "priority": N_("priority"), "impact": N_("impact"),
    "urgency": N_("urgency"), "assignee": N_("assignee"), "group": N_("group"),
    "escalation_level": N_("escalation level"), "type": N_("type"), "category": N_("category"),
}
# English names of the ticket types; the catalogs translate them in the context "type".
TYPE_LABELS: dict[str, str] = {"incident": "incident", "service_request": "service request"}
# The maximum length of a category (the size of its database column).
CATEGORY_MAX_LENGTH = 100
# The order in which changes are listed and applied.
FIELDS = ("status", "type", "category", "impact", "urgency", "priority", "group",
          "escalation_level", "assignee")

# A command line is "#", the name, an optional colon and the value. Any whitespace may
# separate them, NBSP and narrow NBSP included, because mail clients write those in plain
# text too. Whatever follows the name is the value, so "#status=done" is a command with
# an invalid value (an error for the agent), not text relayed to the requester.
_COMMAND_LINE = re.compile(r"#(?P<gap>\s*)(?P<keyword>[^\W\d_][\w-]*)\s*:?(?P<value>.*)")
# A line of only "#" characters carries no command, so the command block skips it.
_BARE_HASH = re.compile(r"#+")
# Characters that mail clients and HTML conversion leave invisible at the start or end of
# a line (zero-width space and joiners, word joiner, byte order mark, soft hyphen).
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad"


@dataclass(frozen=True)
class CommandLine:
    """One ``#...`` line from the top of an agent's text; ``spec`` is None when unknown."""

    line: str
    keyword: str
    value: str
    spec: CommandSpec | None

    @property
    def name(self) -> CommandName | None:
        return self.spec.name if self.spec else None


@dataclass(frozen=True)
class CommandBlock:
    """The command lines at the top of a text, and the text without them."""

    commands: tuple[CommandLine, ...]
    body: str

    @property
    def is_note(self) -> bool:
        """Tell whether any line of the block is ``#note``, first or not.

        A note that reaches the requester is worse than a reply kept internal, so a
        ``#note`` below other commands counts as well.
        """
        return any(command.name is CommandName.NOTE for command in self.commands)

    @property
    def merges(self) -> bool:
        """Tell whether any line of the block is ``#merge``."""
        return any(command.name is CommandName.MERGE for command in self.commands)

    @property
    def actions(self) -> tuple[CommandLine, ...]:
        """The commands that change the ticket (everything except ``#note``)."""
        return tuple(command for command in self.commands if command.name is not CommandName.NOTE)


def split_commands(text: str) -> CommandBlock:
    """Take the ``#`` lines at the top of ``text`` (blank lines between them allowed).

    A line that starts with ``#`` and a letter is a command line, known or not, so a
    misspelt command gets an error instead of reaching the requester. ``# name`` with a
    space is a command line only for a known name (``# Summary`` is a heading). A line
    of only ``#`` is skipped like a blank line. The first other line ends the block, so
    a ``#`` line further down, or one quoted with ``>``, is text. The words after
    ``#note`` on its line start the note's text.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    commands: list[CommandLine] = []
    first_text: list[str] = []
    skipped_marks = False
    index = 0
    while index < len(lines):
        stripped = _strip_line(lines[index])
        if not stripped:
            index += 1
            continue
        if _BARE_HASH.fullmatch(stripped):
            skipped_marks = True
            index += 1
            continue
        command = _command_line(stripped)
        if command is None:
            break
        if command.name is CommandName.NOTE and command.value:
            first_text.append(command.value)
        commands.append(command)
        index += 1

    if not commands and not skipped_marks:
        return CommandBlock((), text.strip())
    body = "\n".join([*first_text, *lines[index:]]).strip()
    return CommandBlock(tuple(commands), body)


def _strip_line(line: str) -> str:
    """Strip whitespace and invisible characters from both ends of a line."""
    previous = None
    while previous != line:
        previous = line
        line = line.strip().strip(_INVISIBLE)
    return line


def _command_line(line: str) -> CommandLine | None:
    """Parse one stripped line as a command; return None when it is text."""
    match = _COMMAND_LINE.fullmatch(line)
    if match is None:
        return None
    keyword = match.group("keyword")
    spec = _BY_NAME.get(fold(keyword))
    if match.group("gap") and spec is None:
        return None
    value = _strip_line(match.group("value"))
    if spec is None or spec.name is not CommandName.NOTE:
        # "#status rozwiązane." is meant as "#status rozwiązane".
        value = value.rstrip(".,;:!").strip()
    return CommandLine(line, keyword, value, spec)


def looks_like_commands(text: str) -> tuple[str, ...]:
    """Return the known-command lines at the top of a text (for mail from non-agents)."""
    return tuple(command.line for command in split_commands(text).commands if command.spec)


@dataclass(frozen=True)
class Problem:
    """The reason one command line cannot be applied, with the right form of the command."""

    line: str
    message: str
    params: dict[str, Any] = field(default_factory=dict)
    usage: str = ""
    # Names of params whose values are ticket type codes, shown as their label.
    type_params: tuple[str, ...] = ()

    def text(self, language: str) -> str:
        params = dict(self.params)
        for name in self.type_params:
            params[name] = label(params[name], language, "type")
        return gettext_for(language).gettext(self.message).format(**params)

    def usage_text(self, language: str) -> str:
        return gettext_for(language).gettext(self.usage) if self.usage else ""


Change = tuple[str, Any, Any]


@dataclass(frozen=True)
class CommandPlan:
    """The validated outcome: every change, or the problems (then nothing is applied)."""

    changes: tuple[Change, ...] = ()
    problems: tuple[Problem, ...] = ()
    reasons: dict[str, str] = field(default_factory=dict)
    # The number of the ticket that #merge merges this one into, else None.
    merge_into: int | None = None

    @property
    def valid(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Directory:
    """The agent and group look-ups of validation, plus the priority matrix.

    ``find_agent`` returns the login of an active agent named by login or address, and
    ``find_group`` the ``(name, escalates_to)`` of an active group; both None if unknown.
    """

    find_agent: Callable[[str], str | None]
    find_group: Callable[[str], tuple[str, str | None] | None]
    matrix: PriorityMatrix = field(default_factory=PriorityMatrix)
    may_change_status: Callable[[str, str], bool] = field(
        default_factory=lambda: agent_may_change_status)
    is_member: Callable[[str, str], bool] = lambda login, group: True
    # The configured categories of each ticket type; a type without a list takes any text.
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Return why the ticket of the mail may not be merged into the numbered ticket, as a
    # msgid and its values, or None when it may (see maildesk.merging.check).
    check_merge: Callable[[int], tuple[str, dict[str, Any]] | None] = (
        lambda number: (N_("tickets cannot be merged here"), {}))


def agent_may_change_status(old: str, new: str) -> bool:
    """Tell whether the lifecycle lets an agent's command move a ticket from old to new."""
    from maildesk.lifecycle import TRANSITIONS, Source, Status

    try:
        key = (Status(old), Status(new))
    except ValueError:
        return False
    return Source.AGENT_COMMAND in TRANSITIONS.get(key, frozenset())


def ticket_state(ticket: models.Ticket) -> dict[str, Any]:
    """Return the fields that commands may change, read from a ticket."""
    return {name: getattr(ticket, name) for name in FIELDS}


def plan_changes(block: CommandBlock, state: dict[str, Any], author_login: str,
                 directory: Directory) -> CommandPlan:
    """Validate every command of ``block`` against the ticket ``state``; change nothing.

    Impact and urgency set the priority through the matrix, unless the same mail also
    gives ``#priority``, which then wins whatever the order of the lines.
    """
    new = dict(state)
    problems: list[Problem] = []
    reasons: dict[str, str] = {}
    seen: dict[CommandName, CommandLine] = {}
    explicit_priority: int | None = None
    status_line: CommandLine | None = None
    category_line: CommandLine | None = None
    merge_into: int | None = None
    unassigned = False

    for command in block.commands:
        spec = command.spec
        if spec is None:
            problems.append(_unknown(command))
            continue
        if spec.name is CommandName.NOTE:
            continue
        earlier = seen.get(spec.name)
        if earlier is not None and fold(earlier.value) != fold(command.value):
            problems.append(Problem(command.line, N_("this command is given twice with "
                                                     "different values"), usage=spec.usage))
            continue
        seen[spec.name] = command
        problem = _check_value(command, spec)
        if problem is not None:
            problems.append(problem)
            continue

        value = fold(command.value)
        if spec.name is CommandName.STATUS:
            status_line = command
            new["status"] = STATUS_VALUES[value]
        elif spec.name is CommandName.PENDING:
            status_line = command
            new["status"] = "pending"
        elif spec.name is CommandName.CLOSE:
            status_line = command
            new["status"] = "closed"
        elif spec.name is CommandName.PRIORITY:
            explicit_priority = PRIORITY_VALUES[value]
        elif spec.name is CommandName.IMPACT:
            new["impact"] = LEVEL_VALUES[value]
        elif spec.name is CommandName.URGENCY:
            new["urgency"] = LEVEL_VALUES[value]
        elif spec.name is CommandName.ASSIGN:
            problem = _assign(command, value, new, author_login, directory)
            if problem is not None:
                problems.append(problem)
            unassigned = new["assignee"] is None
        elif spec.name is CommandName.GROUP:
            found = directory.find_group(command.value)
            if found is None:
                problems.append(Problem(command.line, N_("there is no group '{group}'"),
                                        {"group": command.value}, spec.usage))
            else:
                new["group"] = found[0]
        elif spec.name is CommandName.TYPE:
            new["type"] = TYPE_VALUES[value]
        elif spec.name is CommandName.CATEGORY:
            category_line = command
        elif spec.name is CommandName.MERGE:
            problem, merge_into = _merge(command, directory)
            if problem is not None:
                problems.append(problem)
        elif spec.name is CommandName.ESCALATE and command.value:
            reasons["escalation"] = command.value

    # The category is checked after the loop, against the type the same mail may set.
    problem = _settle_category(new, state, category_line, seen.get(CommandName.TYPE),
                               directory)
    if problem is not None:
        problems.append(problem)
    problems.extend(_derive_fields(new, state, seen, explicit_priority, status_line,
                                   unassigned, directory))
    if CommandName.MERGE in seen and len(block.actions) > 1:
        problems.append(Problem(seen[CommandName.MERGE].line,
                                N_("#merge must be the only command of its mail (#note "
                                   "aside): send the other commands to the ticket it is "
                                   "merged into"),
                                usage=N_("#merge <ticket number>")))
    if problems:
        return CommandPlan(problems=tuple(problems))
    changes = tuple((name, state[name], new[name]) for name in FIELDS
                    if new[name] != state[name])
    return CommandPlan(changes=changes, reasons=reasons, merge_into=merge_into)


def ticket_number(value: str) -> int | None:
    """Read the ticket number of a #merge value (``123``, ``#123``, ``[SD#123]``)."""
    match = _TICKET_NUMBER.fullmatch(value.strip())
    return int(match.group("number")) if match else None


def _merge(command: CommandLine, directory: Directory) -> tuple[Problem | None, int | None]:
    """Check a #merge line; return its problem, or the number of the ticket to merge into."""
    usage = command.spec.usage if command.spec else ""
    number = ticket_number(command.value)
    assert number is not None, "checked by _check_value"
    refusal = directory.check_merge(number)
    if refusal is not None:
        message, params = refusal
        return Problem(command.line, message, params, usage), None
    return None, number


def _derive_fields(new: dict[str, Any], state: dict[str, Any],
                   seen: dict[CommandName, CommandLine], explicit_priority: int | None,
                   status_line: CommandLine | None, unassigned: bool,
                   directory: Directory) -> list[Problem]:
    """Work out the fields that follow from the commands: escalation, priority, status."""
    problems = []
    # Escalation is worked out after #group, so "#grupa X" + "#eskaluj" escalates from X.
    if CommandName.ESCALATE in seen:
        problem = _escalate(seen[CommandName.ESCALATE], new, directory)
        if problem is not None:
            problems.append(problem)

    levels_changed = (new["impact"], new["urgency"]) != (state["impact"], state["urgency"])
    if explicit_priority is not None:
        new["priority"] = explicit_priority
    elif levels_changed and new["impact"] in LEVELS and new["urgency"] in LEVELS:
        new["priority"] = directory.matrix.priority(new["impact"], new["urgency"])

    # A ticket handed to another group leaves an assignee who is not in that group.
    moved = new["group"] != state["group"]
    if (moved and new["assignee"] and CommandName.ASSIGN not in seen
            and not directory.is_member(new["assignee"], new["group"])):
        new["assignee"] = None
        unassigned = True

    _settle_status(new, state, status_line, unassigned)
    if status_line is not None and new["status"] != state["status"]:
        problem = _check_status(status_line, state["status"], new, directory)
        if problem is not None:
            problems.append(problem)
    return problems


def _settle_category(new: dict[str, Any], state: dict[str, Any],
                     category_line: CommandLine | None, type_line: CommandLine | None,
                     directory: Directory) -> Problem | None:
    """Set the category that ``#category`` names, in the spelling of the configuration.

    A type whose categories are configured takes only those, compared folded, so
    ``#kategoria siec`` finds ``sieć``. A type without a list takes any text, as the
    routing rules do. A new type keeps the old category only when that type allows it.
    """
    allowed = tuple(directory.categories.get(new["type"], ()))
    choices = ", ".join(allowed)
    if category_line is not None:
        usage = category_line.spec.usage if category_line.spec else ""
        value = fold(category_line.value)
        if value in CATEGORY_NONE:
            new["category"] = None
            return None
        if not allowed:
            if len(category_line.value) > CATEGORY_MAX_LENGTH:
                return Problem(category_line.line,
                               N_("a category has at most {limit} characters"),
                               {"limit": CATEGORY_MAX_LENGTH}, usage)
            new["category"] = category_line.value
            return None
        found = next((category for category in allowed if fold(category) == value), None)
        if found is None:
            return Problem(category_line.line,
                           N_("there is no category '{category}' for the type {type}; "
                              "the categories are: {choices}"),
                           {"category": category_line.value, "type": new["type"],
                            "choices": choices}, usage, type_params=("type",))
        new["category"] = found
        return None

    if (type_line is not None and new["type"] != state["type"] and new["category"]
            and allowed and new["category"] not in allowed):
        return Problem(type_line.line,
                       N_("the category '{category}' does not belong to the type {type}: "
                          "add #category with one of: {choices}"),
                       {"category": new["category"], "type": new["type"], "choices": choices},
                       N_("#category <category> | none"), type_params=("type",))
    return None


def _settle_status(new: dict[str, Any], state: dict[str, Any],
                   status_line: CommandLine | None, unassigned: bool) -> None:
    """Work out the status the other commands imply, as the ticket lifecycle does.

    Reopening goes to the assignee's work or back to the queue. Without a status
    command, a new ticket that gets an assignee becomes assigned, and a ticket that
    loses its assignee goes back to new.
    """
    if new["status"] == REOPEN:
        new["status"] = "in_progress" if new["assignee"] else "new"
    if status_line is not None:
        return
    if new["status"] == "new" and new["assignee"]:
        new["status"] = "assigned"
    elif unassigned and new["status"] in ("assigned", "in_progress"):
        new["status"] = "new"


# The problem of a status command on a closed ticket. The error mail then names where the
# work goes on, instead of asking for a corrected command.
CLOSED_TICKET_PROBLEM = N_("a closed ticket stays closed: a reply from the requester opens "
                           "a new ticket linked to it")


def _check_status(command: CommandLine, old: str, new: dict[str, Any],
                  directory: Directory) -> Problem | None:
    usage = command.spec.usage if command.spec else ""
    if new["status"] == "assigned" and not new["assignee"]:
        return Problem(command.line, N_("the ticket has no assignee: add #assign first"),
                       usage=N_("#assign me | <login> | nobody"))
    if not directory.may_change_status(old, new["status"]):
        if old == "closed":
            # No value of the command would do, so the usage line would only mislead.
            return Problem(command.line, CLOSED_TICKET_PROBLEM)
        return Problem(command.line,
                       N_("the status cannot change from '{old}' to '{new}' by a command"),
                       {"old": old, "new": new["status"]}, usage)
    return None


def _unknown(command: CommandLine) -> Problem:
    synonym = _SYNONYMS.get(fold(command.keyword))
    if synonym is not None:
        spec = _BY_NAME[synonym]
        return Problem(command.line, N_("unknown command '#{keyword}': did you mean #{name}?"),
                       {"keyword": command.keyword, "name": spec.polish}, spec.usage)
    close = difflib.get_close_matches(fold(command.keyword), list(_BY_NAME), n=1, cutoff=0.7)
    if close:
        spec = _BY_NAME[close[0]]
        return Problem(command.line, N_("unknown command '#{keyword}': did you mean #{name}?"),
                       {"keyword": command.keyword,
                        "name": spec.polish if close[0] == fold(spec.polish) else spec.english},
                       spec.usage)
    spellings = []
    for spec in COMMANDS:
        if spec.polish == spec.english:
            spellings.append(f"#{spec.polish}")
        else:
            spellings.append(f"#{spec.polish}/#{spec.english}")
    names = ", ".join(spellings)
    return Problem(command.line, N_("unknown command '#{keyword}'; the commands are: {names}"),
                   {"keyword": command.keyword, "names": names})


# Signs an agent may type between a command and its value instead of a space (a colon
# is accepted and never reaches the value).
_WRONG_SEPARATORS = ("=", ";", ",")


def _check_value(command: CommandLine, spec: CommandSpec) -> Problem | None:
    """Return a Problem when a required value is missing or the value is not accepted."""
    value = fold(command.value)
    if spec.takes_value and not value:
        return Problem(command.line, N_("this command needs a value"), usage=spec.usage)
    sign = command.value[:1]
    if spec.takes_value and sign in _WRONG_SEPARATORS:
        if not command.value[1:].strip():
            return Problem(command.line, N_("this command needs a value"), usage=spec.usage)
        return Problem(command.line, N_("leave out '{sign}': write the command, a space and "
                                        "the value"),
                       {"sign": sign}, spec.usage)

    if spec.name is CommandName.STATUS and value not in STATUS_VALUES:
        return Problem(command.line, N_("unknown status '{value}'"),
                       {"value": command.value}, spec.usage)
    if spec.name is CommandName.PRIORITY and value not in PRIORITY_VALUES:
        return Problem(command.line, N_("'{value}' is not a priority: use 1 (critical) to 4 (low)"),
                       {"value": command.value}, spec.usage)
    if spec.name in (CommandName.IMPACT, CommandName.URGENCY) and value not in LEVEL_VALUES:
        return Problem(command.line, N_("'{value}' is not a level: use high, medium or low"),
                       {"value": command.value}, spec.usage)
    if spec.name is CommandName.MERGE and ticket_number(command.value) is None:
        return Problem(command.line, N_("'{value}' is not a ticket number"),
                       {"value": command.value}, spec.usage)
    if spec.name is CommandName.TYPE and value not in TYPE_VALUES:
        return Problem(command.line, N_("'{value}' is not a ticket type: use incident or "
                                        "service_request"),
                       {"value": command.value}, spec.usage)
    if spec.name is CommandName.PENDING and value not in PENDING_SUFFIXES:
        return Problem(command.line, N_("this command takes no value"), usage=spec.usage)
    if spec.name is CommandName.CLOSE and value:
        return Problem(command.line, N_("this command takes no value"), usage=spec.usage)
    return None


def _assign(command: CommandLine, value: str, new: dict[str, Any], author_login: str,
            directory: Directory) -> Problem | None:
    if value in ASSIGN_SELF:
        new["assignee"] = author_login
        return None
    if value in ASSIGN_NOBODY:
        new["assignee"] = None
        return None
    login = directory.find_agent(command.value)
    if login is None:
        return Problem(command.line, N_("there is no agent '{agent}'"),
                       {"agent": command.value}, N_("#assign me | <login> | nobody"))
    new["assignee"] = login
    return None


def _escalate(command: CommandLine, new: dict[str, Any], directory: Directory) -> Problem | None:
    """Move the ticket to the next tier: the ``escalates_to`` group of its group."""
    if not new["group"]:
        return Problem(command.line, N_("the ticket has no group to escalate from; "
                                        "set one with #group first"),
                       usage=N_("#group <group name>"))
    found = directory.find_group(new["group"])
    if found is None or not found[1]:
        return Problem(command.line, N_("group '{group}' has no next tier to escalate to"),
                       {"group": new["group"]}, N_("#group <group name>"))
    new["group"] = found[1]
    new["escalation_level"] = int(new["escalation_level"] or 0) + 1
    return None


def label(value: Any, language: str, field_name: str = "status") -> str:
    """Return how a field value reads in ``language`` (``resolved`` -> ``rozwiązane``).

    Impact and urgency levels are translated in their field's context, because Polish
    gives them different genders (``wpływ wysoki``, ``pilność wysoka``).
    """
    if value is None or value == "":
        return "—"
    translations = gettext_for(language)
    if field_name in ("impact", "urgency") and value in LEVELS:
        return translations.pgettext(field_name, value)
    if field_name == "type" and value in TYPE_LABELS:
        return translations.pgettext("type", TYPE_LABELS[value])
    if field_name == "status" and value in LABELS:
        return translations.gettext(LABELS[value])
    if field_name == "priority" and str(value) in {str(key) for key in PRIORITY_LABELS}:
        return translations.gettext(PRIORITY_LABELS[int(value)])
    return str(value)


def field_label(name: str, language: str) -> str:
    return gettext_for(language).gettext(FIELD_LABELS.get(name, name))


# Fields that the lifecycle changes, with its own audit events and SLA steps.
_LIFECYCLE_FIELDS = frozenset({"status", "type", "category"})


def apply_changes(desk: Any, ticket: models.Ticket, changes: tuple[Change, ...], actor: str,
                  at: datetime | None = None, detail: dict[str, Any] | None = None,
                  notify_requester: bool = False) -> None:
    """Write validated changes to the ticket, one audit event each (caller's transaction).

    The type and the category go through ``lifecycle.classify``, which re-plans the SLA
    targets, one field at a time so that each change is its own ``classified`` event.
    A status change goes through the lifecycle state machine, which steps the SLA clock
    and, when ``notify_requester`` is set, sends the status notice. It comes last, so a
    ticket closed in the same mail is classified while its clock still runs.
    """
    from maildesk import lifecycle
    from maildesk.tickets import record_event

    at = at or utcnow()
    aware = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    for name, old, new in changes:
        if name in _LIFECYCLE_FIELDS:
            continue
        setattr(ticket, name, new)
        record_event(ticket, actor, "field_changed", {"field": name, **(detail or {})},
                     before=old, after=new)
        _log_change(ticket, name, old, new, actor)
    changed = [models.Ticket._meta.fields[name] for name, _old, _new in changes
               if name not in _LIFECYCLE_FIELDS]
    if changed:
        ticket.updated_at = at
        ticket.save(only=[*changed, models.Ticket.updated_at])

    for name, old, new in changes:
        if name == "type":
            lifecycle.classify(desk, ticket, actor, lifecycle.Source.AGENT_COMMAND, aware,
                               ticket_type=new, detail=detail)
        elif name == "category":
            lifecycle.classify(desk, ticket, actor, lifecycle.Source.AGENT_COMMAND, aware,
                               category=new, clear_category=new is None, detail=detail)
        else:
            continue
        _log_change(ticket, name, old, new, actor)

    for name, _old, new in changes:
        if name == "status":
            lifecycle.transition(desk, ticket, new, actor, lifecycle.Source.AGENT_COMMAND,
                                 aware, notify=notify_requester)


def _log_change(ticket: models.Ticket, name: str, old: Any, new: Any, actor: str) -> None:
    language = current_language()
    logger.info(_("ticket {ticket}: {field} {old} -> {new} by {actor}").format(
        ticket=ticket.id, field=field_label(name, language),
        old=label(old, language, name), new=label(new, language, name), actor=actor))


__all__ = [
    "CLOSED_TICKET_PROBLEM",
    "COMMANDS",
    "Change",
    "CommandBlock",
    "CommandLine",
    "CommandName",
    "CommandPlan",
    "CommandSpec",
    "Directory",
    "Problem",
    "apply_changes",
    "field_label",
    "fold",
    "label",
    "looks_like_commands",
    "plan_changes",
    "split_commands",
    "ticket_number",
    "ticket_state",
]

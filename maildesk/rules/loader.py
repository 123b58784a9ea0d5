"""Reading the rules directory: files in name order, all errors at once, live reload.

A rules directory that does not exist, or has no rule files, is a valid empty rule set:
a new installation routes nothing until the admin writes rules.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from maildesk.errors import ConfigError
from maildesk.i18n import _, ngettext
from maildesk.rules.matcher import RuleSet
from maildesk.rules.model import Rule, RuleEnvironment, RuleProblem, RulesError
from maildesk.rules.schema import RuleValidator
from maildesk.yamlfile import load_yaml_text

logger = logging.getLogger(__name__)

RULE_FILE_SUFFIXES = (".yaml", ".yml")

# One file as read: its path and its bytes, or the error that kept it from being read.
_FileContent = tuple[Path, bytes | OSError]


def rule_files(directory: Path) -> list[Path]:
    """Return the rule files of a directory in name order, skipping hidden and backup files."""
    if not directory.is_dir():
        return []
    return sorted(
        (
            path
            for path in directory.iterdir()
            if path.suffix in RULE_FILE_SUFFIXES and not path.name.startswith(".")
        ),
        key=lambda path: path.name,
    )


def load_rules(directory: Path | str, environment: RuleEnvironment) -> RuleSet:
    """Read and validate every rule file; raise RulesError listing all problems of all files."""
    directory = Path(directory)
    ruleset, errors = _build(directory, _read_files(directory), environment)
    if errors:
        raise RulesError(errors)
    return ruleset


def _read_files(directory: Path) -> list[_FileContent]:
    """Read every rule file; an unreadable directory comes back as its own path and error."""
    try:
        paths = rule_files(directory)
    except OSError as error:
        return [(directory, error)]

    contents: list[_FileContent] = []
    for path in paths:
        try:
            contents.append((path, path.read_bytes()))
        except OSError as error:
            contents.append((path, error))
    return contents


def _fingerprint(directory: Path, contents: list[_FileContent]) -> str:
    """Hash names and contents, which unlike mtime and size also detect quick same-size edits."""
    digest = hashlib.sha256()
    digest.update(b"dir" if directory.is_dir() else b"missing")
    for path, content in contents:
        digest.update(path.name.encode("utf-8", "surrogateescape") + b"\0")
        if isinstance(content, bytes):
            digest.update(hashlib.sha256(content).digest())
        else:
            digest.update(repr(content).encode())
    return digest.hexdigest()


def _build(
    directory: Path, contents: list[_FileContent], environment: RuleEnvironment
) -> tuple[RuleSet, list[RuleProblem]]:
    """Validate the read files together, so duplicate names across files are found too."""
    validator = RuleValidator(environment)
    if directory.exists() and not directory.is_dir():
        validator.problem(
            _("the rules directory is a file: point the configuration at a directory"),
            str(directory),
        )

    rules: list[Rule] = []
    for path, content in contents:
        if isinstance(content, OSError):
            reason = content.strerror or str(content)
            if path == directory:
                message = _("the rules directory could not be read: {error}")
            else:
                message = _("the file could not be read: {error}")
            validator.problem(message.format(error=reason), str(path))
            continue
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            validator.problem(_("the file is not valid UTF-8: save it as UTF-8"), str(path))
            continue
        try:
            document = load_yaml_text(text, str(path))
        except ConfigError as error:
            validator.problems.append(RuleProblem.from_config_error(error))
            continue
        rules.extend(validator.validate_document(document, str(path)))

    order = {str(path): index for index, (path, _content) in enumerate(contents)}
    problems = sorted(validator.problems, key=lambda problem: _sort_key(problem, order))
    ruleset = RuleSet(tuple(rules), environment, tuple(str(path) for path, _content in contents))
    return ruleset, problems


def _sort_key(problem: RuleProblem, order: dict[str, int]) -> tuple[int, int, int]:
    position = problem.position
    if position is None:
        return (order.get(problem.location or "", -1), 0, 0)
    return (order.get(position.path, -1), position.line, position.column)


class RulesWatcher:
    """The rule set the daemon uses, reloaded when the admin changes the files.

    The constructor raises RulesError when the rules are invalid at start, because there
    is no earlier set to keep. Later, invalid changes keep ``current`` and are reported.
    """

    def __init__(self, directory: Path | str, environment: RuleEnvironment) -> None:
        self.directory = Path(directory)
        self.environment = environment
        self.errors: list[RuleProblem] = []

        contents = _read_files(self.directory)
        ruleset, errors = _build(self.directory, contents, environment)
        if errors:
            raise RulesError(errors)
        self.current: RuleSet = ruleset
        self._fingerprint = _fingerprint(self.directory, contents)
        message = ngettext(
            "loaded {count} routing rule from {directory}",
            "loaded {count} routing rules from {directory}",
            len(ruleset),
        ).format(count=len(ruleset), directory=self.directory)
        logger.info("%s", message)

    def check_for_changes(self) -> list[RuleProblem] | None:
        """Switch to the changed rules if they are all valid, else return their errors.

        Returns None when nothing changed or the new rules are in use. Errors are returned
        once per change, so a caller that mails them to the admin does so once per change.
        """
        contents = _read_files(self.directory)
        fingerprint = _fingerprint(self.directory, contents)
        if fingerprint == self._fingerprint:
            return None
        self._fingerprint = fingerprint
        return self._switch(contents)

    def reload(self, environment: RuleEnvironment | None = None) -> list[RuleProblem] | None:
        """Validate the files again, e.g. after the configuration (groups, agents) changed."""
        if environment is not None:
            self.environment = environment
        contents = _read_files(self.directory)
        self._fingerprint = _fingerprint(self.directory, contents)
        return self._switch(contents)

    def _switch(self, contents: list[_FileContent]) -> list[RuleProblem] | None:
        # NOTE: an editor that writes a file in place may be caught half-way. The half file
        # is then reported as invalid, and the complete one is picked up at the next check.
        ruleset, errors = _build(self.directory, contents, self.environment)
        if errors:
            self.errors = errors
            for error in errors:
                message = _("invalid routing rules, still using the previous ones: {error}")
                logger.warning("%s", message.format(error=error))
            return errors

        self.errors = []
        self.current = ruleset
        message = ngettext(
            "reloaded {count} routing rule from {directory}",
            "reloaded {count} routing rules from {directory}",
            len(ruleset),
        ).format(count=len(ruleset), directory=self.directory)
        logger.info("%s", message)
        return None

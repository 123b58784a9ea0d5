"""Reading the rules directory: files in name order, all errors at once, live reload.

A rules directory that does not exist, or has no rule files, is a valid empty rule set:
a new installation routes nothing until the admin writes rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from maildesk.errors import ConfigError
from maildesk.i18n import _, ngettext
from maildesk.rules.matcher import RuleSet
from maildesk.rules.model import Rule, RuleEnvironment, RuleProblem, RulesError
from maildesk.rules.schema import RuleValidator
from maildesk.settling import Settling
from maildesk.yamlfile import byte_location, load_yaml_text

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


def _last_modified(directory: Path) -> float:
    """Return the newest modification time of the directory and its rule files, or 0."""
    times = []
    for path in (directory, *rule_files(directory)):
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(times, default=0.0)


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
            _display(directory),
        )

    rules: list[Rule] = []
    for path, content in contents:
        if isinstance(content, OSError):
            reason = content.strerror or str(content)
            if path == directory:
                message = _("the rules directory could not be read: {error}")
            else:
                message = _("the file could not be read: {error}")
            validator.problem(message.format(error=reason), _display(path))
            continue
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as error:
            validator.problem(_("the file is not valid UTF-8: save it as UTF-8"),
                              byte_location(_display(path), content, error.start))
            continue
        try:
            document = load_yaml_text(text, _display(path))
        except ConfigError as error:
            validator.problems.append(RuleProblem.from_config_error(error))
            continue
        rules.extend(validator.validate_document(document, _display(path)))

    order = {_display(path): index for index, (path, _content) in enumerate(contents)}
    problems = sorted(validator.problems, key=lambda problem: _sort_key(problem, order))
    paths = tuple(_display(path) for path, _content in contents)
    ruleset = RuleSet(tuple(rules), environment, paths)
    return ruleset, problems


def _display(path: Path) -> str:
    """Return a file name as text that every database and log can store.

    A name that is not UTF-8 shows its undecodable bytes as U+FFFD: Python keeps them as
    lone surrogates, which the routing trace of a new ticket could not store.
    """
    return os.fsencode(path).decode("utf-8", "replace")


def _sort_key(problem: RuleProblem, order: dict[str, int]) -> tuple[int, int, int]:
    position = problem.position
    if position is None:
        return (order.get(problem.location or "", -1), 0, 0)
    return (order.get(position.path, -1), position.line, position.column)


def save_snapshot(path: Path, contents: list[_FileContent]) -> None:
    """Store the files of a valid rule set as the last good rules, for ``maildesk deliver``.

    The file is replaced atomically and only when the rules changed. A failure is logged
    and otherwise ignored: the snapshot is a fallback, and mail must flow without it.
    """
    try:
        files = [
            {"path": str(file_path), "text": content.decode("utf-8")}
            for file_path, content in contents
            if isinstance(content, bytes)
        ]
        # ASCII escapes keep a file name that is not UTF-8 (its undecodable bytes are
        # lone surrogates in Python) as it is, and json.loads gives it back.
        encoded = json.dumps({"version": 1, "files": files}, indent=1).encode("ascii")
    except ValueError as error:
        logger.warning(_("could not save the last good routing rules to {path}: {error}")
                       .format(path=path, error=error))
        return
    try:
        if path.read_bytes() == encoded:
            return
    except OSError:
        pass  # no snapshot yet, or an unreadable one that is replaced below
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(encoded)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        logger.warning(_("could not save the last good routing rules to {path}: {error}")
                       .format(path=path, error=error))


def read_snapshot(path: Path) -> list[_FileContent] | None:
    """Return the files ``save_snapshot`` stored, or None when there is no usable snapshot."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [(Path(item["path"]), item["text"].encode("utf-8")) for item in data["files"]]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning(_("ignoring the unusable snapshot of the last good routing rules "
                         "{path}: {error}").format(path=path, error=error))
        return None


@dataclass(frozen=True)
class LoadedRules:
    """The rules one process routes with, and the problems of the files on disk.

    ``source`` is ``files`` when every file is valid, ``previous`` when the last good
    snapshot is used, and ``valid_files`` when only the files without errors are used.
    ``fingerprint`` identifies the files as read, so each breakage is reported once.
    """

    ruleset: RuleSet
    errors: list[RuleProblem]
    source: str
    fingerprint: str


def load_rules_with_fallback(
    directory: Path | str, environment: RuleEnvironment, snapshot: Path
) -> LoadedRules:
    """Load the rules for a process that has no earlier rules in memory (``deliver``).

    Valid rules are used and saved as the snapshot. When a file is invalid, the snapshot
    is used if it is still valid against ``environment``. Otherwise the rules come from
    the files that have no errors. Invalid rules come back as problems, not exceptions.
    """
    directory = Path(directory)
    contents = _read_files(directory)
    fingerprint = _fingerprint(directory, contents)
    ruleset, errors = _build(directory, contents, environment)
    if not errors:
        save_snapshot(snapshot, contents)
        return LoadedRules(ruleset, [], "files", fingerprint)

    previous = read_snapshot(snapshot)
    if previous is not None:
        previous_ruleset, previous_errors = _build(directory, previous, environment)
        if not previous_errors:
            return LoadedRules(previous_ruleset, errors, "previous", fingerprint)

    broken = {_problem_path(problem) for problem in errors}
    valid = [(path, content) for path, content in contents if _display(path) not in broken]
    partial, partial_errors = _build(directory, valid, environment)
    if partial_errors:
        # The directory itself is unusable (e.g. it is a file): route with no rules.
        partial = RuleSet((), environment, ())
    return LoadedRules(partial, errors, "valid_files", fingerprint)


def _problem_path(problem: RuleProblem) -> str | None:
    if problem.position is not None:
        return problem.position.path
    return problem.location


class RulesWatcher:
    """The rule set the daemon uses, reloaded when the admin changes the files.

    The constructor raises RulesError when the rules are invalid at start, because there
    is no earlier set to keep. Later, invalid changes keep ``current`` and are reported.
    """

    def __init__(self, directory: Path | str, environment: RuleEnvironment,
                 snapshot: Path | None = None, settle: float = 0.0) -> None:
        self.directory = Path(directory)
        self.environment = environment
        self.errors: list[RuleProblem] = []
        # Where each rule set put in use is saved, so ``deliver`` can fall back to it.
        self.snapshot = snapshot
        # A change is taken up only once no rule file has been modified for this many
        # seconds. So a valid but half-written file, or a directory that is being
        # replaced, is not put in use.
        self.settle = settle
        self._settling = Settling(settle)

        if not self.directory.is_dir():
            logger.warning(_("the rules folder {directory} does not exist: check 'rules' in "
                             "maildesk.yaml; until it exists, no rule routes any mail").format(
                directory=self.directory))
        contents = _read_files(self.directory)
        ruleset, errors = _build(self.directory, contents, environment)
        if errors:
            raise RulesError(errors)
        self.current: RuleSet = ruleset
        if snapshot is not None:
            save_snapshot(snapshot, contents)
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
        if self.settle and not self._settling.settled(fingerprint,
                                                      _last_modified(self.directory)):
            return None  # still being edited: look again at the next check
        self._fingerprint = fingerprint
        if not self.directory.exists():
            # Rules in use do not vanish with their directory: that is a mistake or a
            # move in progress, and routing everything by default would hide it.
            problem = RuleProblem(_("the rules directory no longer exists: still using "
                                    "the previous rules"), _display(self.directory))
            self.errors = [problem]
            logger.warning("%s", problem)
            return [problem]
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
        if self.snapshot is not None:
            save_snapshot(self.snapshot, contents)
        message = ngettext(
            "reloaded {count} routing rule from {directory}",
            "reloaded {count} routing rules from {directory}",
            len(ruleset),
        ).format(count=len(ruleset), directory=self.directory)
        logger.info("%s", message)
        return None

"""The language of what the command line prints, chosen before click reads the arguments.

click translates the help of every command when the command is defined, at import, and
reports usage errors before a subcommand opens the desk. The desk switches to its
configured ``language`` only once the configuration is loaded. So the command line picks
the language the desk will pick, and one run of ``maildesk`` prints one language from its
usage line to its last result. The order is MAILDESK_LANGUAGE, then the ``language`` of
the configuration file the run will read (``--config``, else MAILDESK_CONFIG, else
./maildesk.yaml). Only without a readable configuration, as for ``maildesk init``, does
the POSIX locale choose, and Polish after it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from maildesk.errors import ConfigError
from maildesk.i18n import DEFAULT_LANGUAGE, language_from_environment, normalize_language

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("maildesk.yaml")


def config_path(argv: Sequence[str], environ: Mapping[str, str]) -> Path:
    """Return the configuration file that ``maildesk`` run with ``argv`` will read.

    ``--config`` is an option of the root command, so only the arguments before the
    subcommand name it, as click reads them.
    """
    for index, argument in enumerate(argv):
        if argument == "--config":
            if index + 1 < len(argv):
                return Path(argv[index + 1])
            break
        if argument.startswith("--config="):
            return Path(argument.partition("=")[2])
        if argument == "--" or not argument.startswith("-"):
            break

    named = environ.get("MAILDESK_CONFIG")
    return Path(named) if named else DEFAULT_CONFIG


def desk_language(path: Path) -> str | None:
    """Return the language the desk configured in ``path`` speaks, or None if unknown.

    A configuration without ``language`` is Polish, as the desk is. A file that cannot be
    read or parsed gives None: loading the configuration later reports the mistake.
    """
    from maildesk.yamlfile import YamlMapping, load_yaml_file

    # A FIFO or a device named by mistake would block the read, so only plain files.
    if not path.is_file():
        return None
    try:
        document = load_yaml_file(path)
    except (ConfigError, OSError) as error:
        logger.debug("language of %s not read: %s", path, error)
        return None

    if document is None:
        return DEFAULT_LANGUAGE
    if not isinstance(document, YamlMapping):
        return None
    value = document.get("language", DEFAULT_LANGUAGE)
    return normalize_language(value) if isinstance(value, str) else None


def interface_language(config: Path, environ: Mapping[str, str]) -> str:
    """Pick the language of a run that reads ``config``: variable, desk, locale, Polish."""
    chosen = normalize_language(environ.get("MAILDESK_LANGUAGE"))
    if chosen is not None:
        return chosen

    configured = desk_language(config)
    if configured is not None:
        return configured
    return language_from_environment(dict(environ))

"""Jinja2 mail templates: one file per mail and language, rendered in a sandbox.

A template file extends ``_layout.j2`` and fills the blocks ``subject``, ``text`` and,
optionally, ``html``. The layout adds the signature, and builds the HTML part from the
text block when a template has no ``html`` block. Templates are edited by admins, so they
run in a SandboxedEnvironment with StrictUndefined: a misspelt variable is an error at
check time, not an empty gap in a mail to a user. The HTML part is rendered in a second
environment with autoescaping on.

Each template is compiled from a snapshot of its file and of the shared ``_*.j2`` files.
When a file changes while the daemon runs, the new version replaces the old one only if
it compiles and renders against the sample context. So a typo in an edited template
does not stop the mail, because the last good version stays in use.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from maildesk.errors import ConfigError
from maildesk.i18n import LANGUAGES, _
from maildesk.parse import single_line
from maildesk.templateerrors import describe_render_error, describe_syntax_error

logger = logging.getLogger(__name__)

PARTS = ("subject", "text", "body", "html")

# "4 grudnia 2026 r., 14:05" is how Polish offices write a date and time.
_DATETIME_PATTERNS = {"pl": "d MMMM y 'r.', HH:mm", "en": "d MMMM y, HH:mm"}
_DATE_PATTERNS = {"pl": "d MMMM y 'r.'", "en": "d MMMM y"}

# Links in plain text: http(s) URLs and bare email addresses. Trailing punctuation
# belongs to the sentence, not to the link.
_LINK = re.compile(
    r"(?P<url>https?://[^\s<>\"']+)|(?P<address>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)",
    re.IGNORECASE,
)
_TRAILING_PUNCTUATION = ".,;:!?)]}'\""

# Elements that never have a closing tag in HTML.
_VOID_ELEMENTS = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
})


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str | None
    language: str


@dataclass
class _Compiled:
    """One template compiled from a snapshot of its sources, for both environments."""

    language: str
    name: str
    signature: tuple[tuple[str, int, int], ...]
    text: jinja2.Template
    html: jinja2.Template
    rejected_signature: tuple[tuple[str, int, int], ...] | None = field(default=None)


def polish_plural(count: int, one: str, few: str, many: str) -> str:
    """Choose the Polish form: 1 zgłoszenie, 2-4 zgłoszenia (not 12-14), else zgłoszeń."""
    count = abs(count)
    if count == 1:
        return one
    if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
        return few
    return many


def _link(raw: str) -> str:
    """Return one matched URL or address as an escaped anchor, trailing punctuation outside."""
    trimmed = raw.rstrip(_TRAILING_PUNCTUATION)
    rest = raw[len(trimmed):]
    href = trimmed if "://" in trimmed else f"mailto:{trimmed}"
    return f'<a href="{escape(href)}">{escape(trimmed)}</a>{escape(rest)}'


def _line_to_html(line: str) -> str:
    if "@" not in line and "://" not in line:  # no link possible: most lines
        return str(escape(line))
    parts = []
    position = 0
    for match in _LINK.finditer(line):
        parts.append(str(escape(line[position:match.start()])))
        parts.append(_link(match.group(0)))
        position = match.end()
    parts.append(str(escape(line[position:])))
    return "".join(parts)


def text_to_html(value: str) -> Markup:
    """Turn a plain-text block into escaped HTML paragraphs with clickable links.

    Paragraphs are separated by blank lines. A paragraph whose lines are all indented
    (a command to type, a code) becomes ``<pre>``. Markup input (the output of an
    autoescaping template) is unescaped first, so its text is escaped exactly once.
    """
    raw = value.unescape() if isinstance(value, Markup) else str(value)
    return _text_to_html(raw)


@functools.lru_cache(maxsize=64)
def _text_to_html(raw: str) -> Markup:
    """Convert unescaped text; cached, because every mail's HTML part repeats the signature."""
    raw = raw.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    blocks = [block for block in re.split(r"\n[ \t]*\n", raw) if block.strip()]

    html_blocks = []
    for block in blocks:
        lines = block.split("\n")
        if all(line.startswith(("    ", "\t")) for line in lines):
            content = "\n".join(_line_to_html(line.strip()) for line in lines)
            html_blocks.append(f"<pre>{content}</pre>")
        else:
            content = "<br>\n".join(_line_to_html(line.rstrip()) for line in lines)
            html_blocks.append(f"<p>{content}</p>")
    return Markup("\n".join(html_blocks))


class _BalanceChecker(HTMLParser):
    """Find the first unclosed or wrongly nested element in an HTML part."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problem: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID_ELEMENTS or self.problem:
            return
        if not self.stack or self.stack[-1] != tag:
            expected = self.stack[-1] if self.stack else None
            self.problem = (
                _("closing </{tag}> where </{expected}> was expected").format(
                    tag=tag, expected=expected)
                if expected else _("closing </{tag}> without an opening tag").format(tag=tag)
            )
            return
        self.stack.pop()


def html_problem(html: str) -> str | None:
    """Return why an HTML part is not well-formed, or None when every element is closed."""
    checker = _BalanceChecker()
    checker.feed(html)
    checker.close()
    if checker.problem:
        return checker.problem
    if checker.stack:
        return _("<{tag}> is never closed").format(tag=checker.stack[-1])
    return None


@functools.cache
def _babel_locale(code: str) -> Locale:
    """Return Babel's locale for a language code, parsed once (Babel parses it per call)."""
    return Locale.parse(code)


class _MailEnvironment(SandboxedEnvironment):
    """The sandbox, with each template's globals as a plain dict.

    Jinja2 gives every template a ChainMap over the environment's globals, and copying a
    ChainMap into each render's context was about a tenth of the render. Nothing changes the
    globals after the templates are compiled, so a copy made at compile time is the same.
    """

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


def _with_name(address: str | None, name: str | None) -> str:
    """Write an address for a reader: "Name <address>", or the bare address without a name.

    The result is display text, not a header field: no quoting or encoding is applied.
    """
    address = address or ""
    if not name or not name.strip() or name.strip() == address:
        return address
    return f"{name.strip()} <{address}>"


class Templates:
    """The template set of a desk, loaded from ``root/<language>/<name>.j2``."""

    def __init__(self, root: Path, default_language: str = "pl",
                 timezone: str = "Europe/Warsaw", recheck_interval: float = 1.0) -> None:
        self.root = root
        # A template's files are checked again once their last check is older than this
        # many seconds, so a burst of mail does not stat the same files for every message.
        self.recheck_interval = recheck_interval
        self._checked: dict[tuple[str, str], float] = {}
        self.default_language = default_language
        self.timezone = ZoneInfo(timezone)
        self._cache: dict[tuple[str, str], _Compiled] = {}
        self._root_text = str(root)
        # The stamps of the language folders and the shared files listed under them.
        self._shared_listing: tuple[tuple[tuple[str, int], ...], list[str]] | None = None
        # The templates shipped with maildesk, for a mail whose edited template fails to
        # render on real values that the sample at check time did not have.
        self.fallback: Templates | None = None
        self._sample: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._formatted_times: dict[tuple[str, datetime, timedelta | None, bool], str] = {}

    # ------------------------------------------------------------------ environments

    def _make_environment(self, autoescape: bool,
                          load: Callable[[str], tuple[str, str, Callable[[], bool]]]
                          ) -> SandboxedEnvironment:
        environment = _MailEnvironment(
            loader=jinja2.FunctionLoader(load),
            undefined=jinja2.StrictUndefined,
            autoescape=autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
        )
        environment.filters["datetime"] = self._format_datetime
        environment.filters["date"] = self._format_date
        environment.filters["plural"] = self._plural
        environment.filters["text_to_html"] = text_to_html
        environment.filters["filesize"] = self._format_size
        environment.filters["with_name"] = _with_name
        return environment

    @jinja2.pass_context
    def _format_datetime(self, context: Any, value: datetime | None,
                         language: str | None = None, zone: bool = False) -> str:
        """Format an instant in the desk's time zone the way the reader writes dates.

        ``zone=True`` appends the zone's abbreviation (CET, CEST), the same in every
        language. Without it the two 02:30 of the last Sunday of October read alike.
        """
        if value is None:
            return "—"
        language = language or context.get("language") or self.default_language
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo("UTC"))
        local = value.astimezone(self.timezone).replace(second=0, microsecond=0)

        # The patterns stop at minutes, and a burst of mail shares a few minutes. The
        # offset is part of the key because datetimes of one zone compare equal across
        # the repeated autumn hour (PEP 495).
        key = (language, local, local.utcoffset(), zone)
        formatted = self._formatted_times.get(key)
        if formatted is None:
            pattern = _DATETIME_PATTERNS.get(language, _DATETIME_PATTERNS["en"])
            formatted = format_datetime(local, pattern, locale=_babel_locale(language))
            if zone:
                formatted = f"{formatted} {local.tzname()}"
            if len(self._formatted_times) >= 256:
                self._formatted_times.clear()
            self._formatted_times[key] = formatted
        return formatted

    @jinja2.pass_context
    def _format_date(self, context: Any, value: date | datetime | None,
                     language: str | None = None) -> str:
        if value is None:
            return "—"
        language = language or context.get("language") or self.default_language
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=ZoneInfo("UTC"))
            value = value.astimezone(self.timezone).date()
        pattern = _DATE_PATTERNS.get(language, _DATE_PATTERNS["en"])
        return format_date(value, pattern, locale=_babel_locale(language))

    @jinja2.pass_context
    def _format_size(self, context: Any, value: int | None, language: str | None = None) -> str:
        """Format a byte count in MB, in kB below 1 MB and in B below 1 kB, with the
        reader's decimal sign. A kB is 1,024 bytes and an MB 1,024 kB."""
        if value is None:
            return "—"
        language = language or context.get("language") or self.default_language
        locale = _babel_locale(language)
        if value < 1024:
            # "0 kB" would hide a small file, such as a pasted picture, as empty.
            return f"{format_decimal(value, format='#,##0', locale=locale)} B"
        if value < 1024 * 1024:
            return f"{format_decimal(value / 1024, format='#,##0', locale=locale)} kB"
        return f"{format_decimal(value / (1024 * 1024), format='#,##0.#', locale=locale)} MB"

    @staticmethod
    def _plural(count: int, *forms: str) -> str:
        """Pick the form for ``count``: three forms are Polish, two are English."""
        if len(forms) == 3:
            return polish_plural(int(count), *forms)
        if len(forms) == 2:
            return forms[0] if abs(int(count)) == 1 else forms[1]
        raise jinja2.TemplateRuntimeError(
            _("plural needs 2 forms (English: one, other) or 3 (Polish: one, few, many), "
              "not {count}").format(count=len(forms)))

    # ------------------------------------------------------------------ files

    def languages_for(self, preferred: str | None) -> list[str]:
        """Return the fallback chain: the reader's language, the desk default, then the rest."""
        chain = [preferred, self.default_language, *LANGUAGES]
        return [code for index, code in enumerate(chain) if code and code not in chain[:index]]

    def names(self, language: str | None = None) -> set[str]:
        """Names of the mail templates (files not starting with ``_``) in one or all languages."""
        languages = [language] if language else list(LANGUAGES)
        found = set()
        for code in languages:
            folder = self.root / code
            if folder.is_dir():
                found |= {p.stem for p in folder.glob("*.j2") if not p.name.startswith("_")}
        return found

    def missing_translations(self) -> list[tuple[str, str]]:
        """Return (language, name) pairs of templates that exist in another language only."""
        every = self.names()
        return [(code, name) for code in LANGUAGES for name in sorted(every - self.names(code))]

    def _files(self, language: str, name: str) -> list[Path]:
        """Return the files one template may read: itself and every shared ``_*.j2`` file."""
        return [self.root / language / f"{name}.j2", *map(Path, self._shared_files())]

    def _shared_files(self) -> list[str]:
        """Return the shared ``_*.j2`` files' paths, listed again only when a folder changed.

        Adding, removing or renaming a file changes its folder's modification time, so
        one stat per folder replaces a glob on every render.
        """
        try:
            folders = tuple((entry.name, entry.stat().st_mtime_ns)
                            for entry in os.scandir(self.root) if entry.is_dir())
        except OSError:
            folders = ()
        if self._shared_listing is None or self._shared_listing[0] != folders:
            self._shared_listing = (folders, sorted(map(str, self.root.glob("*/_*.j2"))))
        return self._shared_listing[1]

    def _current_signature(self, language: str, name: str) -> tuple[tuple[str, int, int], ...]:
        """Return the signature of one template's files as they are on disk now.

        It runs before every render, so it works on strings: pathlib would build a
        path object for each of the files every time.
        """
        own = os.path.join(self._root_text, language, f"{name}.j2")
        return self._signature([own, *self._shared_files()])

    @staticmethod
    def _signature(paths: list[str]) -> tuple[tuple[str, int, int], ...]:
        stamps = []
        for path in paths:
            try:
                status = os.stat(path)
            except OSError:
                continue
            stamps.append((path, status.st_mtime_ns, status.st_size))
        return tuple(stamps)

    def _read_inside(self, path: Path) -> str:
        """Read a template file that lies inside the templates folder once links resolve.

        A symbolic link in the folder (a git checkout can carry one) must not make a mail
        carry a file from elsewhere, such as maildesk.yaml with its passwords.
        """
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise ConfigError(_("the file is a link to {target}, outside the templates "
                                "folder: copy the file into the folder instead").format(
                target=path.resolve()), str(path))
        # utf-8-sig drops the byte order mark Windows editors write, which would
        # otherwise lead the subject or the text of every mail as U+FEFF.
        try:
            return path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as error:
            raise ConfigError(_("the file is not valid UTF-8 (byte {position}): save it as "
                                "UTF-8").format(position=error.start), str(path)) from error
        except OSError as error:
            # An editor run as another user can save the file with modes that the
            # user maildesk runs as may not read.
            raise ConfigError(_("cannot read the file ({error}): the user maildesk runs as "
                                "(uid {uid}) must be able to read it").format(
                error=error.strerror or error, uid=os.geteuid()), str(path)) from error

    def _compile(self, language: str, name: str) -> _Compiled:
        """Read a snapshot of the sources and compile the template in both environments."""
        paths = self._files(language, name)
        # The same strings as every later check builds, so an unchanged file matches.
        signature = self._current_signature(language, name)
        sources: dict[str, str] = {}
        for path in paths:
            if path.exists():
                key = path.relative_to(self.root).as_posix()
                sources[key] = self._read_inside(path)

        def load(template_name: str) -> tuple[str, str, Callable[[], bool]]:
            # An include outside the snapshot (another mail template) is read once.
            # split_template_path rejects ".." and drops a leading "/", so an edited
            # template cannot mail maildesk.yaml or any other file outside the folder.
            pieces = jinja2.loaders.split_template_path(template_name)
            key = "/".join(pieces)
            if key not in sources:
                path = self.root.joinpath(*pieces)
                if not path.is_file():
                    raise jinja2.TemplateNotFound(template_name)
                sources[key] = self._read_inside(path)
            return sources[key], str(self.root.joinpath(*pieces)), lambda: True

        template_name = f"{language}/{name}.j2"
        text_environment = self._make_environment(False, load)
        try:
            text = text_environment.get_template(template_name)
            html = self._make_environment(True, load).get_template(template_name)
        except jinja2.TemplateSyntaxError as error:
            where = self.root / (error.name or template_name)
            raise ConfigError(describe_syntax_error(error, text_environment.filters),
                              f"{where}:{error.lineno}") from error
        except jinja2.TemplateNotFound as error:
            if error.name == template_name:
                raise ConfigError(_("the template file does not exist"),
                                  str(self.root / template_name)) from error
            raise ConfigError(
                _("template {name} includes {missing}, which does not exist").format(
                    name=template_name, missing=error.name),
                str(self.root / template_name),
            ) from error
        return _Compiled(language, name, signature, text, html)

    # ------------------------------------------------------------------ rendering

    def _current(self, language: str, name: str, context: dict[str, Any]) -> _Compiled:
        """Return the compiled template, reloading a changed file only when it works."""
        key = (language, name)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now - self._checked.get(key, -math.inf) < \
                    self.recheck_interval:
                return cached
            signature = self._current_signature(language, name)
            self._checked[key] = now
            if cached is not None and signature in (cached.signature, cached.rejected_signature):
                return cached

            try:
                compiled = self._compile(language, name)
                if cached is not None:
                    # A changed file must prove itself before it replaces a working one.
                    self._render_compiled(compiled, self._sample or context)
            except ConfigError as error:
                if cached is None:
                    raise
                cached.rejected_signature = signature
                logger.error(
                    _("template {language}/{name} changed but is broken, so the previous "
                      "version stays in use: {error}").format(
                        language=language, name=name, error=error))
                return cached

            if cached is not None:
                logger.info(_("template {language}/{name} reloaded").format(
                    language=language, name=name))
            self._cache[key] = compiled
            return compiled

    def render(self, name: str, language: str | None, context: dict[str, Any]) -> RenderedMail:
        """Render one mail; if its template fails, log why and render the shipped one.

        Raises ConfigError when the shipped template fails as well, or there is none.
        """
        try:
            return self._render_own(name, language, context)
        except ConfigError as error:
            fallback = self.fallback
            if fallback is None or name not in fallback.names():
                raise
            logger.error(_("template {name} failed, so this mail uses the template shipped "
                           "with maildesk: {error}").format(name=name, error=error))
            return fallback._render_own(name, language, context)

    def _render_own(self, name: str, language: str | None,
                    context: dict[str, Any]) -> RenderedMail:
        """Render one mail in the first language of the fallback chain that has it."""
        for code in self.languages_for(language):
            own = os.path.join(self._root_text, code, f"{name}.j2")
            if (code, name) in self._cache or os.path.exists(own):
                compiled = self._current(code, name, context)
                return self._render_compiled(compiled, context)
        raise ConfigError(
            _("template '{name}' not found in {root}").format(name=name, root=self.root)
        )

    def _render_compiled(self, compiled: _Compiled, context: dict[str, Any]) -> RenderedMail:
        values = {**context, "language": compiled.language}
        template_name = f"{compiled.language}/{compiled.name}.j2"
        try:
            subject = single_line(compiled.text.render(values, part="subject"))
            text = compiled.text.render(values, part="text")
            body = compiled.text.render(values, part="body")
            html = compiled.html.render(
                {**values, "mail_subject": subject, "text_html": text_to_html(body)},
                part="html",
            )
        except jinja2.TemplateError as error:
            name, line = _error_location(error, self.root, template_name)
            if isinstance(error, jinja2.TemplateNotFound):
                # Jinja loads an include when it renders it, and its error text is the
                # bare name of the missing file.
                message = _("template {name} includes {missing}, which does not exist").format(
                    name=name, missing=error.name)
            else:
                message = describe_render_error(error, values)
            raise ConfigError(message, f"{self.root / name}:{line}") from error
        except (ArithmeticError, TypeError, ValueError, AttributeError, LookupError) as error:
            # Python's own errors inside a template expression ({{ 1 / 0 }}, a filter
            # given the wrong type): the admin's template is at fault, not the mail.
            name, line = _error_location(error, self.root, template_name)
            message = _("template error: {message}").format(
                message=f"{type(error).__name__}: {error}")
            raise ConfigError(message, f"{self.root / name}:{line}") from error

        if not subject:
            raise ConfigError(_("the subject block renders empty"),
                              str(self.root / template_name))
        if not text.strip():
            raise ConfigError(_("the text block renders empty"), str(self.root / template_name))
        return RenderedMail(subject, text.strip() + "\n", html.strip() + "\n" if html.strip()
                            else None, compiled.language)

    # ------------------------------------------------------------------ checking

    def _own_source(self, language: str, name: str) -> str:
        """Return the text of a template's own file, or "" when it cannot be read."""
        try:
            return (self.root / language / f"{name}.j2").read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return ""

    def check(self, sample_context: dict[str, Any],
              variants: Sequence[tuple[tuple[str, ...], dict[str, Any]]] = ()
              ) -> list[ConfigError]:
        """Render every template in every language against a sample; return the errors.

        Each of ``variants`` (the names it changes, a sample) is rendered too, for the
        templates whose own file names one of them. The sample is kept: later reloads
        of changed files are tried against it. Templates that pass replace the cached
        versions.
        """
        self._sample = sample_context
        errors = []
        for code in LANGUAGES:
            for name in sorted(self.names(code)):
                try:
                    compiled = self._compile(code, name)
                    rendered = self._render_compiled(compiled, sample_context)
                    source = self._own_source(code, name)
                    for changed, variant in variants:
                        if any(key in source for key in changed):
                            self._render_compiled(compiled, variant)
                except ConfigError as error:
                    errors.append(error)
                    continue
                problem = html_problem(rendered.html or "")
                if problem:
                    errors.append(ConfigError(
                        _("the HTML part is not well-formed: {problem}").format(problem=problem),
                        str(self.root / code / f"{name}.j2")))
                    continue
                with self._lock:
                    self._cache[(code, name)] = compiled
        return errors


def _error_location(error: Exception, root: Path, template_name: str) -> tuple[str, int | str]:
    """Find the innermost template file and line of a render-time error.

    Jinja2 rewrites the traceback so that frames of template code carry the template's
    file name and line. The innermost such frame is where the error happened, and it may
    be in the layout or an included file rather than in the mail template.
    """
    if isinstance(error, jinja2.TemplateSyntaxError) and error.lineno:
        return error.name or template_name, error.lineno
    traceback = error.__traceback__
    name = template_name
    line_number: int | str = "?"
    prefix = str(root)
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        if filename.startswith(prefix) and filename.endswith(".j2"):
            name = Path(filename).relative_to(root).as_posix()
            line_number = traceback.tb_lineno
        traceback = traceback.tb_next
    return name, line_number

"""``maildesk tickets attachments`` and ``tickets attachment``: list and export stored files.

A notice to agents leaves out the user's files over the desk's limit
(``maildesk.noticefiles``) and names the command here that writes them out. File names
come from the mail, so a file written into a directory is named by
``attachments.path_in_directory`` and never leaves it. An existing file is replaced only
with ``--force``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from maildesk.attachments import UniqueNames, path_in_directory
from maildesk.cli_admin import tickets
from maildesk.clicktext import INTEGER, PathType
from maildesk.i18n import _, ngettext
from maildesk.reasons import message_kind_label
from maildesk.terminal import terminal_safe


@tickets.command("attachments", help=_(
    "List the files of a ticket's messages: id, name, type, size and the message they "
    "came with. With --directory, write all of them there."))
@click.argument("number", type=INTEGER, metavar=_("NUMBER"))
@click.option("--directory", type=PathType(file_okay=False, exists=True, writable=True),
              metavar=_("DIRECTORY"),
              help=_("Write every file of the ticket into DIRECTORY under its name from the "
                     "mail; equal names get a number, as in 'name (2).pdf'."))
@click.option("--force", is_flag=True,
              help=_("Replace files that exist already; without it such a file stops the "
                     "command."))
@click.pass_obj
def tickets_attachments(app: Any, number: int, directory: str | None, force: bool) -> None:
    """List a ticket's stored files, or write them all into a directory."""
    from maildesk import models

    app.open()
    if models.Ticket.get_or_none(models.Ticket.id == number) is None:
        raise click.ClickException(_("ticket {number} not found").format(number=number))
    rows = list(models.Attachment.select(models.Attachment, models.Message)
                .join(models.Message).where(models.Message.ticket == number)
                .order_by(models.Attachment.id))
    if directory is None:
        _print_list(app.desk, rows, number)
        return

    names = UniqueNames()
    for row in rows:
        target = _target(Path(directory), names.claim(row.filename), row.content_type)
        _export(app.desk, row, target, force)


def _print_list(desk: Any, rows: list[Any], number: int) -> None:
    if not rows:
        click.echo(_("ticket {number} has no attachments").format(number=number))
        return
    header = (_("ID"), _("SIZE (B)"), _("TYPE"), _("NAME"))
    click.echo(f"{header[0]:>6}  {header[1]:>12}  {header[2]:<28}  {header[3]}")
    for row in rows:
        entry = row.message
        # Names, types and authors come from the mail, so a terminal must not act on them.
        line = f"{row.id:>6}  {row.size:>12}  {row.content_type:<28}  {row.filename}"
        click.echo(terminal_safe(line))
        click.echo(terminal_safe("        " + _("from: {time}, {kind}, {author}").format(
            time=desk.local_time(entry.created_at), kind=message_kind_label(entry.kind),
            author=entry.author or "-")))
    click.echo(ngettext("{count} file; write one with 'maildesk tickets attachment ID "
                        "--directory DIR'",
                        "{count} files; write one with 'maildesk tickets attachment ID "
                        "--directory DIR'", len(rows)).format(count=len(rows)))


@tickets.command("attachment", help=_(
    "Write one stored file (an id from 'maildesk tickets attachments') to standard "
    "output, to --output FILE or into --directory under its name from the mail."))
@click.argument("attachment_id", type=INTEGER, metavar=_("ID"))
@click.option("--output", "-o", type=PathType(dir_okay=False), metavar=_("FILE"),
              help=_("Write the file to FILE."))
@click.option("--directory", "-d", type=PathType(file_okay=False, exists=True, writable=True),
              metavar=_("DIRECTORY"),
              help=_("Write the file into DIRECTORY under its name from the mail."))
@click.option("--force", is_flag=True,
              help=_("Replace a file that exists already; without it the command stops."))
@click.pass_obj
def tickets_attachment(app: Any, attachment_id: int, output: str | None,
                       directory: str | None, force: bool) -> None:
    """Write one stored attachment out, byte for byte as the user sent it."""
    from maildesk import models

    if output is not None and directory is not None:
        raise click.UsageError(_("give --output or --directory, not both"))
    app.open()
    row = (models.Attachment.select(models.Attachment, models.Message)
           .join(models.Message).where(models.Attachment.id == attachment_id).first())
    if row is None:
        raise click.ClickException(_("attachment {id} not found; 'maildesk tickets attachments "
                                     "NUMBER' lists the files of a ticket").format(
            id=attachment_id))

    if output is not None:
        _export(app.desk, row, Path(output), force)
    elif directory is not None:
        _export(app.desk, row, _target(Path(directory), row.filename, row.content_type), force)
    else:
        if sys.stdout.isatty():
            raise click.UsageError(_("standard output is a terminal: give --output FILE or "
                                     "--directory DIR, or redirect the output"))
        # click.echo writes bytes to the binary stream under sys.stdout, unchanged.
        click.echo(_content(app.desk, row), nl=False)


def _target(directory: Path, name: str, content_type: str) -> Path:
    try:
        return path_in_directory(directory, name, content_type)
    except ValueError as error:
        raise click.ClickException(_("cannot write {name!r} into {directory}: {error}").format(
            name=name, directory=directory, error=error)) from error


def _content(desk: Any, row: Any) -> bytes:
    try:
        return desk.store.get("attachments", row.sha256)
    except OSError as error:
        raise click.ClickException(_(
            "cannot read attachment {id} (sha256 {sha256}) from the storage: {error}; "
            "restore the storage folder from a backup and retry").format(
            id=row.id, sha256=row.sha256, error=error)) from error


def _export(desk: Any, row: Any, target: Path, force: bool) -> None:
    """Write one attachment to ``target``; an existing file stops it unless ``force``."""
    content = _content(desk, row)
    try:
        _write(target, content, force)
    except FileExistsError as error:
        raise click.ClickException(_("{path} exists already: choose another path, or add "
                                     "--force to replace it").format(path=target)) from error
    except OSError as error:
        raise click.ClickException(_("cannot write {path}: {error}").format(
            path=target, error=error.strerror or error)) from error
    click.echo(terminal_safe(_("attachment {id} written to {path} ({size} B)").format(
        id=row.id, path=target, size=len(content))))


def _write(target: Path, content: bytes, force: bool) -> None:
    """Create ``target`` with ``content``; only with ``force`` may it replace a file.

    Without ``force`` the file is opened with O_EXCL, so neither an existing file nor a
    symbolic link under that name is followed. With it the bytes go to a new file that
    is renamed over the old one, which replaces a link instead of writing through it.
    """
    if not force:
        with open(target, "xb") as file:
            try:
                file.write(content)
            except OSError:
                target.unlink(missing_ok=True)  # a short file would pass for the real one
                raise
        return
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.write(content)
        os.replace(temporary, target)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise

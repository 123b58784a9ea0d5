"""The raw store: content addressing, repair of short files and batched durability."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from deskfactory import mail, make_desk

from maildesk import models, pipeline, rawstore
from maildesk.errors import TemporaryError
from maildesk.rawstore import RawStore


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every os.fsync call (the descriptors) while the real call still runs."""
    calls: list[int] = []
    real = os.fsync

    def recording(descriptor: int) -> None:
        calls.append(descriptor)
        real(descriptor)

    monkeypatch.setattr(rawstore.os, "fsync", recording)
    return calls


def test_rawstore_recreates_removed_folder(tmp_path: Path) -> None:
    store = RawStore(tmp_path)
    first = store.put_message(b"mail")
    folder = store.path_for("raw", first).parent
    (folder / first).unlink()
    folder.rmdir()

    again = store.put_message(b"mail")

    assert again == first
    assert store.get_message(first) == b"mail"


def test_rawstore_put_returns_sha256_and_stores_once(tmp_path: Path) -> None:
    store = RawStore(tmp_path)

    first = store.put_message(b"mail")
    again = store.put_message(b"mail")

    assert first == again == hashlib.sha256(b"mail").hexdigest()
    assert store.get_message(first) == b"mail"
    assert list((tmp_path / "raw").rglob(".*.tmp")) == []


def test_rawstore_rewrites_short_file(tmp_path: Path) -> None:
    store = RawStore(tmp_path)
    sha256 = store.put_message(b"complete mail")
    store.path_for("raw", sha256).write_bytes(b"")  # what a power loss can leave

    store.put_message(b"complete mail")

    assert store.get_message(sha256) == b"complete mail"


def test_rawstore_fsyncs_each_file_outside_batch(tmp_path: Path, fsyncs: list[int]) -> None:
    store = RawStore(tmp_path)

    store.put_message(b"one")
    store.put_message(b"two")

    assert len(fsyncs) == 2


def test_rawstore_batch_flushes_once_at_end(tmp_path: Path, fsyncs: list[int],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[list[Path]] = []
    monkeypatch.setattr(rawstore, "_flush", lambda root, paths: flushed.append(list(paths)))
    store = RawStore(tmp_path)

    with store.batch():
        store.put_message(b"one")
        with store.batch():
            store.put("attachments", b"two")
        assert flushed == []
        assert fsyncs == []

    assert [len(paths) for paths in flushed] == [2]
    assert store.get_message(hashlib.sha256(b"one").hexdigest()) == b"one"


def test_rawstore_batch_flushes_when_block_raises(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[int] = []
    monkeypatch.setattr(rawstore, "_flush", lambda root, paths: flushed.append(len(paths)))
    store = RawStore(tmp_path)

    with pytest.raises(RuntimeError), store.batch():
        store.put_message(b"one")
        raise RuntimeError("processing failed")

    assert flushed == [1]


def test_rawstore_flush_without_syncfs_fsyncs_files_and_folders(
        tmp_path: Path, fsyncs: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rawstore, "_SYNCFS", None)
    store = RawStore(tmp_path)

    with store.batch():
        store.put_message(b"one")
        store.put_message(b"two")

    folders = {store.path_for("raw", hashlib.sha256(m).hexdigest()).parent
               for m in (b"one", b"two")}
    assert len(fsyncs) == 2 + len(folders)


def test_rawstore_flush_uses_syncfs(tmp_path: Path, fsyncs: list[int]) -> None:
    if rawstore._SYNCFS is None:
        pytest.skip("this C library has no syncfs(2)")
    store = RawStore(tmp_path)

    with store.batch():
        store.put_message(b"one")

    assert fsyncs == []


def test_duplicate_mail_repairs_short_attachment(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    desk.store.inline_limit = 0  # files, as for content past the limit
    raw = mail(subject="Zrzut ekranu", body="w załączniku", message_id="<repair@example.org>",
               png=("ekran.png", b"PNG data"))
    pipeline.process(desk, raw, "test:1")
    stored = models.Attachment.get()
    desk.store.path_for("attachments", stored.sha256).write_bytes(b"")

    outcome = pipeline.process(desk, raw, "test:1")

    assert outcome.action == "duplicate"
    assert desk.store.get("attachments", stored.sha256) == b"PNG data"


def test_rawstore_failed_flush_is_temporary(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(root: Path, paths: list[Path]) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(rawstore, "_flush", failing)
    store = RawStore(tmp_path)

    with pytest.raises(TemporaryError, match="Input/output error"), store.batch():
        store.put_message(b"one")


def test_rawstore_batch_flushes_existing_files(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # An earlier batch's flush may have failed, so a file found again is flushed again.
    store = RawStore(tmp_path)
    store.put_message(b"one")
    flushed: list[int] = []
    monkeypatch.setattr(rawstore, "_flush", lambda root, paths: flushed.append(len(paths)))

    with store.batch():
        store.put_message(b"one")

    assert flushed == [1]


def test_rawstore_verify_rewrites_zero_filled_file(tmp_path: Path) -> None:
    store = RawStore(tmp_path)
    sha256 = store.put_message(b"complete mail")
    path = store.path_for("raw", sha256)
    path.write_bytes(b"\x00" * len(b"complete mail"))  # what XFS can leave after a power loss

    store.put_message(b"complete mail")
    unverified = path.read_bytes()
    store.put("raw", b"complete mail", verify=True)

    assert unverified == b"\x00" * len(b"complete mail")
    assert store.get_message(sha256) == b"complete mail"


def test_duplicate_mail_repairs_zero_filled_raw_file(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    desk.store.inline_limit = 0
    raw = mail()
    pipeline.process(desk, raw, "test:1")
    path = desk.store.path_for("raw", hashlib.sha256(raw).hexdigest())
    path.write_bytes(b"\x00" * len(raw))

    outcome = pipeline.process(desk, raw, "test:1")

    assert outcome.action == "duplicate"
    assert path.read_bytes() == raw


def test_rawstore_small_mail_is_a_row(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = mail(png=("ekran.png", b"PNG data"))

    pipeline.process(desk, raw, "test:1")

    sha256 = hashlib.sha256(raw).hexdigest()
    rows = {row.sha256: row for row in models.StoredContent.select()}
    attachment = models.Attachment.get()
    assert set(rows) == {sha256, attachment.sha256}
    assert rows[sha256].kind == "raw"
    assert bytes(rows[sha256].content) == raw
    assert rows[attachment.sha256].kind == "attachments"
    assert not (desk.store.root / "raw").exists()
    assert not (desk.store.root / "attachments").exists()
    assert desk.store.get_message(sha256) == raw
    assert desk.store.get("attachments", attachment.sha256) == b"PNG data"


def test_rawstore_large_mail_is_a_file(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    picture = os.urandom(rawstore.INLINE_LIMIT + 1)
    raw = mail(png=("ekran.png", picture))

    pipeline.process(desk, raw, "test:1")

    sha256 = hashlib.sha256(raw).hexdigest()
    attachment = models.Attachment.get()
    assert not models.StoredContent.select().exists()
    assert desk.store.path_for("raw", sha256).read_bytes() == raw
    assert desk.store.path_for("attachments", attachment.sha256).read_bytes() == picture
    assert desk.store.get_message(sha256) == raw


def test_rawstore_row_rolls_back(tmp_path: Path, database_url: str) -> None:
    # The row belongs to the transaction that records the mail. Without a commit there
    # is no row, and the mail, still at its source, is stored when it is tried again.
    desk = make_desk(tmp_path, database_url)
    raw = mail()

    with models.database_proxy.atomic() as transaction:
        desk.store.put_message(raw)
        transaction.rollback()

    sha256 = hashlib.sha256(raw).hexdigest()
    with pytest.raises(FileNotFoundError):
        desk.store.get_message(sha256)
    pipeline.process(desk, raw, "test:1")
    assert desk.store.get_message(sha256) == raw


def test_rawstore_reads_old_files(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    sha256 = RawStore(desk.store.root).put_message(b"stored as a file")

    assert desk.store.get_message(sha256) == b"stored as a file"
    assert desk.store.put_message(b"stored as a file") == sha256
    assert desk.store.get_message(sha256) == b"stored as a file"


def test_rawstore_quarantined_mail_is_kept(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = b"Subject: no sender\nMessage-ID: <q@example.org>\n\nbody\n"

    outcome = pipeline.process(desk, raw, "test:1")

    assert outcome.action == "quarantined"
    row = models.Quarantine.get()
    assert desk.store.get_message(row.raw_sha256) == raw


def test_rawstore_ignored_mail_is_kept(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    raw = mail(headers={"Auto-Submitted": "auto-replied"}, png=("ekran.png", b"PNG data"))

    outcome = pipeline.process(desk, raw, "test:1")

    assert outcome.action == "ignore"
    assert desk.store.get_message(hashlib.sha256(raw).hexdigest()) == raw
    # Only the raw mail: the attachments of ignored mail are not stored.
    assert models.StoredContent.select().count() == 1


def test_quarantined_mail_repairs_raw_file(tmp_path: Path, database_url: str) -> None:
    # A mail over the size limit is quarantined, and its raw bytes, past the inline
    # limit, are a file. A power loss before the batch's flush can leave that file empty
    # while the commit survives. The mail then comes back from its source.
    limit = rawstore.INLINE_LIMIT + 4096
    desk = make_desk(tmp_path, database_url, desk={"max_message_size": limit})
    raw = mail(message_id="<big@example.org>",
               png=("ekran.png", os.urandom(rawstore.INLINE_LIMIT)))
    assert len(raw) > limit
    sha256 = hashlib.sha256(raw).hexdigest()

    first = pipeline.process(desk, raw, "imap:INBOX/1")
    path = desk.store.path_for("raw", sha256)
    path.write_bytes(b"")  # what the power loss left

    again = pipeline.process(desk, raw, "imap:INBOX/1")

    assert first.action == "quarantined"
    assert again.action == "duplicate"
    assert desk.store.get_message(sha256) == raw


def test_racing_duplicate_keeps_raw_mail(tmp_path: Path, database_url: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Two copies of one mail (same sender and Message-ID, different Received headers)
    # arrive in two processes at once. The second one's duplicate check runs before the
    # first commits, so its own transaction fails on ProcessedMessage.
    desk = make_desk(tmp_path, database_url)
    first_copy = mail(message_id="<race@example.org>")
    second_copy = b"Received: from mx2.example.org\r\n" + first_copy
    pipeline.process(desk, first_copy, "pipe")

    real = pipeline.is_duplicate
    calls: list[str] = []

    def racing(key: str) -> bool:
        calls.append(key)
        return len(calls) > 1 and real(key)  # the check in process() saw no record yet

    monkeypatch.setattr(pipeline, "is_duplicate", racing)

    outcome = pipeline.process(desk, second_copy, "pipe")

    assert outcome.action == "duplicate"
    assert outcome.reason == "recorded by another process"
    assert desk.store.get_message(hashlib.sha256(second_copy).hexdigest()) == second_copy

"""Public holidays kept in the desk's storage, so a new process need not import ``holidays``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import holidays
import pytest

from maildesk import holidaycache

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture
def storage(tmp_path):
    """An existing storage folder that the cache uses; the cache is switched off afterwards."""
    folder = tmp_path / "data"
    folder.mkdir()
    holidaycache.use_storage(folder)
    yield folder
    holidaycache.use_storage(None)


def _cache_folder(storage: Path) -> Path:
    return storage / "cache" / "holidays" / holidays.__version__


def test_holidays_written_to_storage(storage):
    days = holidaycache.public_holidays("PL", 2026)

    written = json.loads((_cache_folder(storage) / "PL-2026.json").read_text())
    assert days == frozenset(holidays.country_holidays("PL", years=2026))
    assert date(2026, 12, 24) in days
    assert written == sorted(day.isoformat() for day in days)


def test_country_codes_written_to_storage(storage):
    codes = holidaycache.country_codes()

    written = json.loads((_cache_folder(storage) / "countries.json").read_text())
    assert {"PL", "POL", "DE"} <= codes
    assert "XX" not in codes
    assert set(written) == codes


def test_cached_holidays_are_read_back(storage):
    folder = _cache_folder(storage)
    folder.mkdir(parents=True)
    (folder / "PL-2031.json").write_text(json.dumps(["2031-01-01", "2031-05-03"]))

    assert holidaycache.public_holidays("PL", 2031) == {date(2031, 1, 1), date(2031, 5, 3)}


def test_damaged_cache_file_is_replaced(storage):
    folder = _cache_folder(storage)
    folder.mkdir(parents=True)
    (folder / "PL-2026.json").write_text('["2026-01-01", "not a da')

    days = holidaycache.public_holidays("PL", 2026)

    assert days == frozenset(holidays.country_holidays("PL", years=2026))
    assert len(json.loads((folder / "PL-2026.json").read_text())) == len(days)


def test_damaged_date_in_cache_file_is_replaced(storage):
    folder = _cache_folder(storage)
    folder.mkdir(parents=True)
    (folder / "PL-2026.json").write_text(json.dumps(["2026-13-45"]))

    days = holidaycache.public_holidays("PL", 2026)

    assert date(2026, 11, 11) in days
    assert "2026-11-11" in json.loads((folder / "PL-2026.json").read_text())


def test_missing_storage_is_not_created(tmp_path):
    missing = tmp_path / "not-yet"
    holidaycache.use_storage(missing)
    try:
        days = holidaycache.public_holidays("PL", 2026)
    finally:
        holidaycache.use_storage(None)

    assert date(2026, 5, 3) in days
    assert not missing.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a folder's owner needs root")
def test_storage_of_another_user_is_not_written(storage):
    os.chown(storage, 65534, 65534)

    days = holidaycache.public_holidays("PL", 2026)

    assert date(2026, 11, 11) in days
    assert not (storage / "cache").exists()


def test_no_storage_keeps_nothing_on_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    holidaycache.use_storage(None)

    assert date(2026, 1, 6) in holidaycache.public_holidays("PL", 2026)
    assert list(tmp_path.iterdir()) == []


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=environment, check=False)


def test_warm_cache_spares_holidays_import(storage):
    code = f"""
        import sys
        from datetime import date
        from pathlib import Path
        from maildesk import holidaycache
        from maildesk.business_calendar import BusinessCalendar

        holidaycache.use_storage(Path({str(storage)!r}))
        calendar = BusinessCalendar(holiday_country="PL")
        print(calendar.is_public_holiday(date(2026, 12, 25)), "holidays" in sys.modules)
    """
    cold = _run_python(code)
    warm = _run_python(code)

    assert cold.returncode == 0, cold.stderr
    assert warm.returncode == 0, warm.stderr
    assert cold.stdout.split() == ["True", "True"]
    assert warm.stdout.split() == ["True", "False"]


def test_config_load_keeps_holidays_in_storage(tmp_path):
    from maildesk.config import load_config

    (tmp_path / "data").mkdir()
    config_path = tmp_path / "maildesk.yaml"
    config_path.write_text(textwrap.dedent("""\
        desk:
          address: helpdesk@example.com
        database: sqlite:///maildesk.db
        storage: data
        calendar:
          holidays: PL
    """), encoding="utf-8")
    try:
        load_config(config_path)
    finally:
        holidaycache.use_storage(None)

    assert (_cache_folder(tmp_path / "data") / "countries.json").is_file()


@pytest.mark.parametrize("planted", ["cache", "cache/holidays", "version"])
def test_planted_folder_link_is_not_followed(storage, tmp_path, planted):
    # Whoever may write the storage links a cache folder to another folder of the user
    # maildesk runs as: maildesk must not create or replace files there.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "PL-2026.json").write_text("kept")
    link = _cache_folder(storage) if planted == "version" else storage / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere, target_is_directory=True)

    days = holidaycache.public_holidays("PL", 2026)

    assert date(2026, 12, 24) in days
    assert sorted(path.name for path in elsewhere.iterdir()) == ["PL-2026.json"]
    assert (elsewhere / "PL-2026.json").read_text() == "kept"


def test_cache_file_linked_elsewhere_is_not_read(storage, tmp_path):
    elsewhere = tmp_path / "all-days.json"
    elsewhere.write_text(json.dumps(["2026-03-02"]))
    folder = _cache_folder(storage)
    folder.mkdir(parents=True)
    (folder / "PL-2026.json").symlink_to(elsewhere)

    days = holidaycache.public_holidays("PL", 2026)

    assert date(2026, 3, 2) not in days
    assert date(2026, 12, 24) in days
    assert elsewhere.read_text() == json.dumps(["2026-03-02"])


def test_oversized_cache_file_is_not_read(storage):
    # A year has a few dozen holidays; a file of a million dates is not a cache.
    folder = _cache_folder(storage)
    folder.mkdir(parents=True)
    (folder / "PL-2026.json").write_text(json.dumps(["2026-03-02"] * 1_000_000))

    days = holidaycache.public_holidays("PL", 2026)

    assert date(2026, 3, 2) not in days
    assert date(2026, 12, 24) in days


def test_fifo_in_cache_does_not_block(storage):
    folder = _cache_folder(storage)
    folder.mkdir(parents=True)
    os.mkfifo(folder / "countries.json")

    assert "PL" in holidaycache.country_codes()


@pytest.mark.parametrize("version", ["..", ".", ""])
def test_version_that_names_no_folder_of_its_own_is_not_used(storage, monkeypatch, version):
    monkeypatch.setattr(holidaycache, "_library_version", lambda: version)

    assert date(2026, 12, 24) in holidaycache.public_holidays("PL", 2026)
    assert not (storage / "cache" / "PL-2026.json").exists()
    assert not (storage / "cache" / "holidays" / "PL-2026.json").exists()


def test_storage_configured_as_link_is_used(tmp_path):
    # An admin may point the storage at a link (/var/lib/maildesk to a larger disk).
    real = tmp_path / "disk"
    real.mkdir()
    (tmp_path / "data").symlink_to(real, target_is_directory=True)
    holidaycache.use_storage(tmp_path / "data")
    try:
        holidaycache.public_holidays("PL", 2026)
    finally:
        holidaycache.use_storage(None)

    assert (_cache_folder(real) / "PL-2026.json").is_file()


def test_cache_of_daemon_user_is_read_by_another(storage, monkeypatch):
    # root's admin commands read the cache that the daemon's user wrote.
    folder = _cache_folder(storage)
    folder.mkdir(parents=True)
    (folder / "PL-2031.json").write_text(json.dumps(["2031-01-01"]))
    monkeypatch.setattr(os, "geteuid", lambda: 65534)

    assert holidaycache.public_holidays("PL", 2031) == {date(2031, 1, 1)}


def test_cached_country_code_leading_out_is_ignored(storage):
    # A damaged list must not pass a country to the calendar check that the package
    # lacks, nor a name that leads out of the cache folder.
    folder = _cache_folder(storage)
    folder.mkdir(parents=True)
    (folder / "countries.json").write_text(json.dumps(["PL", "../../../escape", "XX"]))

    codes = holidaycache.country_codes()

    assert "PL" in codes
    assert "../../../escape" not in codes
    assert "XX" not in codes

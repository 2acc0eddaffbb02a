"""`digest profile`: a profile as the store holds it, its earlier versions, and restoring one; and what the
commands say when the folder and the store disagree. In-process CLI on a real workspace, on both engines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli import digest
from conftest import StoreMaker

from digest.clock import utc_now
from digest.config import load_config
from digest.profile_book import ProfileBook
from digest.store import open_store, profile_version


@pytest.fixture
def site(workspace: Path, make_store: StoreMaker) -> Path:
    """The demo workspace on this engine; returns its config.toml."""
    config = workspace / "config.toml"
    make_store.configure(config, workspace / "var" / "digest.db")
    return config


def edit(path: Path, old: str, new: str) -> bytes:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path.read_bytes()


def history(config: Path, name: str) -> list[dict[str, str]]:
    ran = digest("--config", config, "profile", name, "--history", "--json")
    assert ran.returncode == 0, ran.stderr
    versions: list[dict[str, str]] = json.loads(ran.stdout)
    return versions


def test_a_profile_is_printed_as_stored_with_every_earlier_version(site: Path) -> None:
    folder = site.parent / "subscribers"
    original = (folder / "ada.toml").read_bytes()
    ran = digest("--config", site, "profile", "ada")
    assert ran.returncode == 0 and ran.stdout_bytes == original
    assert history(site, "ada") == []
    edited = edit(folder / "ada.toml", 'name = "', 'name = "Dr ')
    ran = digest("--config", site, "profile", "ada")  # the hand edit is synced first
    assert ran.stdout_bytes == edited
    (earlier,) = history(site, "ada")
    assert earlier["version"] == profile_version(original) and earlier["replaced_by"] == "subscribers folder"
    shown = digest("--config", site, "profile", "ada", "--show", earlier["version"][:8])
    assert shown.returncode == 0 and shown.stdout_bytes == original


def test_restore_brings_an_earlier_version_back_to_the_store_and_the_folder(site: Path) -> None:
    folder = site.parent / "subscribers"
    original = (folder / "ada.toml").read_bytes()
    digest("--config", site, "subscribers")
    edit(folder / "ada.toml", 'name = "', 'name = "Dr ')
    (earlier,) = history(site, "ada")
    ran = digest("--config", site, "profile", "ada", "--restore", earlier["version"][:10])
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"ada: version {earlier['version'][:10]} restored")
    assert (folder / "ada.toml").read_bytes() == original
    (kept,) = (folder / ".history" / "ada").glob("*.toml")  # the edited file, kept when the restore replaced it
    assert b'name = "Dr ' in kept.read_bytes()
    listed = json.loads(digest("--config", site, "subscribers", "--json").stdout)
    assert not next(s for s in listed if s["id"] == "ada")["name"].startswith("Dr ")
    assert [v["replaced_by"] for v in history(site, "ada")] == ["restore", "subscribers folder"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nobody",), "error: no subscriber 'nobody'; `digest subscribers` lists them"),
        (("ada", "--show", "ffff"), "error: ada: version 'ffff' is not one of its earlier versions (none)"),
        (("ada", "--restore", "ffff"), "error: ada: version 'ffff' is not one of its earlier versions (none)"),
        (("../etc/passwd",), "error: '../etc/passwd': file name must be letters, digits"),
    ],
)
def test_what_cannot_be_shown_is_one_line_saying_why(site: Path, args: tuple[str, ...], message: str) -> None:
    ran = digest("--config", site, "profile", *args)
    assert ran.returncode == 1
    assert ran.stderr.startswith(message) and len(ran.stderr.splitlines()) == 1 and "Traceback" not in ran.stderr


def test_a_file_and_a_page_change_both_the_file_wins_and_the_command_says_so(site: Path) -> None:
    folder = site.parent / "subscribers"
    config = load_config(site)
    digest("--config", site, "subscribers")
    with open_store(config) as store:  # the settings page of a web host without the folder
        book = ProfileBook(store, None)
        found = book.read("ada", utc_now())
        assert found is not None
        profile, version = found
        book.save(profile.model_copy(update={"max_papers": 3}), expected_version=version, now=utc_now())
    by_hand = edit(folder / "ada.toml", 'name = "', 'name = "Dr ')
    ran = digest("--config", site, "subscribers")
    assert ran.stderr.count("changed both here") == 1  # said once, not by the log as well
    notices = [line for line in ran.stderr.splitlines() if line.startswith("notice:")]
    assert notices == [
        f"notice: {folder / 'ada'}.toml: changed both here and in the store (settings page or sign-up) since the last"
        " sync; the file was kept, the other version is in the store's profile history (`digest profile ada --history`)"
    ]
    assert (folder / "ada.toml").read_bytes() == by_hand
    assert history(site, "ada")[0]["replaced_by"] == "subscribers folder"
    page_version = digest("--config", site, "profile", "ada", "--show", history(site, "ada")[0]["version"])
    assert "max_papers = 3" in page_version.stdout

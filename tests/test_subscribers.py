"""Subscriber profiles: loading, validation errors a person can act on, and the state `digest subscribers` shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import DEMO_DATA, NOW

from digest.errors import ConfigError, DigestError
from digest.store import PickRecord, Store
from digest.subscribers import Profile, load_profile, load_subscribers, next_due, subscriber_status

GOOD = 'name = "Ada"\nemail = "ada@example.org"\n[interests]\nkeywords = ["graphs"]\n'


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_profile_gets_its_id_from_the_file_name_and_the_documented_defaults(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, "ada.toml", GOOD))
    assert profile.id == "ada"
    assert (profile.format, profile.max_papers, profile.min_score, profile.diversity, profile.lookback_days) == (
        "html",
        10,
        0.05,
        0.3,
        7,
    )
    assert profile.interests.keywords == ("graphs",) and profile.interests.exclude == ()


def test_the_demo_profiles_load() -> None:
    loaded = load_subscribers(DEMO_DATA / "subscribers")
    assert loaded.errors == () and [p.id for p in loaded.profiles] == ["ada", "alan", "grace"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "Ada"\n', "ada.toml: email is required"),
        (GOOD + 'colour = "red"\n', "ada.toml: [interests] colour is not a known key"),
        ('colour = "red"\n' + GOOD, "ada.toml: colour is not a known key"),
        (GOOD.replace("ada@example.org", "not-an-address"), "ada.toml: email is not a valid email address"),
        (GOOD.replace('"Ada"', '"Ada\\r\\nBcc: x@y.z"'), "ada.toml: name must not contain line breaks"),
        (
            GOOD.replace("ada@example.org", "ada@example.org\\nBcc: x@y.z"),
            "ada.toml: email must not contain line breaks",
        ),
        ('format = "pdf"\n' + GOOD, "ada.toml: format must be 'html' or 'markdown'"),
        ("max_papers = 0\n" + GOOD, "ada.toml: max_papers must be greater than or equal to 1"),
        ("min_score = 2\n" + GOOD, "ada.toml: min_score must be less than or equal to 1"),
        ("diversity = -0.1\n" + GOOD, "ada.toml: diversity must be greater than or equal to 0"),
        ('timezone = "Mars/Olympus"\n' + GOOD, "ada.toml: timezone is not a known time zone"),
        ('schedule = "every day"\n' + GOOD, "is not a valid crontab"),
        (
            GOOD.replace('["graphs"]', '["graphs", " "]'),
            "ada.toml: [interests] keywords must not contain empty strings",
        ),
        ("name = \n", "ada.toml: invalid TOML"),
    ],
)
def test_a_bad_profile_is_one_line_naming_file_key_and_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile(write(tmp_path, "ada.toml", text))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_profile_is_reported_and_skipped_the_others_load(tmp_path: Path) -> None:
    write(tmp_path, "ada.toml", GOOD)
    write(tmp_path, "bob.toml", 'name = "Bob"\n')
    loaded = load_subscribers(tmp_path)
    assert [p.id for p in loaded.profiles] == ["ada"]
    assert len(loaded.errors) == 1 and "bob.toml: email is required" in loaded.errors[0]
    with pytest.raises(ConfigError, match="bob.toml: email is required"):
        loaded.get("bob")
    with pytest.raises(DigestError, match="no subscriber 'carol' \\(known: ada\\)"):
        loaded.get("carol")


def test_a_file_name_that_cannot_be_an_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file name must be letters"):
        load_profile(write(tmp_path, "a b.toml", GOOD))


def test_a_missing_folder_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set \\[paths\\] subscribers"):
        load_subscribers(tmp_path / "nowhere")


def test_next_due_follows_crontab_and_time_zone() -> None:
    profile = Profile(name="A", email="a@example.org", schedule="0 7 * * mon-fri", timezone="Asia/Tokyo")
    friday_noon_utc = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # Friday 21:00 in Tokyo
    due = next_due(profile, friday_noon_utc)
    assert due.astimezone(UTC) == datetime(2026, 11, 22, 22, 0, tzinfo=UTC)  # Monday 07:00 Tokyo
    assert due.utcoffset() == timedelta(hours=9)


def test_status_shows_paused_last_sent_and_papers_sent(store: Store) -> None:
    profile = load_subscribers(DEMO_DATA / "subscribers").get("ada")
    fresh = subscriber_status(store, profile, NOW)
    assert (fresh.paused, fresh.last_sent, fresh.papers_sent) == (False, None, 0)
    assert fresh.next_due is not None and fresh.next_due > NOW
    row = store.begin_message(
        "ada",
        "<m@x>",
        [PickRecord("p1", 0.5, "w"), PickRecord("p2", 0.4, "w")],
        channel="email",
        subject="s",
        candidates_until=NOW,
        now=NOW,
    )
    store.finish_message(row, "sent", NOW)
    store.set_paused("ada", True, NOW)
    status = subscriber_status(store, profile, NOW)
    assert (status.paused, status.papers_sent, status.next_due) == (True, 2, None)
    assert status.last_sent is not None and status.last_sent.startswith("2026-11-20T09:00")
    assert status.as_json()["next_due"] is None

"""One bad subscriber profile never breaks the others: reserved or unsafe ids, schedules that never fire, and any
failure computing one subscriber's next due or status. Real files in tmp_path, the real `digest` CLI in-process."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from cli import digest
from conftest import NOW, profile_watch
from pydantic import ValidationError

from digest import schedule as schedule_module
from digest import subscribers as subscribers_module
from digest.errors import ConfigError
from digest.schedule import Daemon
from digest.store import Store
from digest.subscribers import Profile, load_profile, load_subscribers

GOOD = 'name = "Xavier"\nemail = "x@example.org"\n[interests]\nkeywords = ["graphs"]\n'
DEMO_IDS = ["ada", "alan", "grace"]


def write(folder: Path, name: str, text: str = GOOD) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def listed(workspace: Path, *extra: str) -> tuple[int, list[str], list[str]]:
    """`digest subscribers --json`: exit status, the ids listed, the lines on stderr."""
    ran = digest("--config", workspace / "config.toml", "subscribers", "--json", *extra)
    ids = [s["id"] for s in json.loads(ran.stdout)] if ran.stdout.strip() else []
    return ran.returncode, ids, ran.stderr.splitlines()


# 1. The id "all" (any case) and ids that cannot be a file name or URL segment everywhere.


@pytest.mark.parametrize("stem", ["all", "ALL", "All"])
def test_a_subscriber_called_all_is_refused_at_load_and_the_others_are_listed(workspace: Path, stem: str) -> None:
    write(workspace / "subscribers", f"{stem}.toml")
    status, ids, errors = listed(workspace)
    assert (status, ids) == (1, DEMO_IDS)
    assert len(errors) == 1, errors
    assert f"{stem}.toml" in errors[0] and "reserved for the shared feed all.xml" in errors[0]
    assert "rename the file" in errors[0]


@pytest.mark.parametrize("stem", ["all", "ALL"])
def test_digest_feeds_still_works_for_everyone_with_a_profile_called_all(workspace: Path, stem: str) -> None:
    write(workspace / "subscribers", f"{stem}.toml")
    ran = digest("--config", workspace / "config.toml", "feeds", "--json")
    assert ran.returncode == 0, ran.stderr
    feeds = workspace / "var" / "feeds"
    assert json.loads(ran.stdout) == [str(feeds / f"{name}.xml") for name in [*DEMO_IDS, "all"]]
    assert sorted(p.name for p in feeds.iterdir()) == ["ada.xml", "alan.xml", "all.xml", "grace.xml"]
    assert b"paper-digest: all papers" in (feeds / "all.xml").read_bytes(), "all.xml is still the shared feed"
    assert [line for line in ran.stderr.splitlines() if f"{stem}.toml" in line and "rename" in line]
    # Asking for that subscriber by name says what is wrong with its file.
    named = digest("--config", workspace / "config.toml", "feeds", stem)
    assert named.returncode == 2 and "reserved" in named.stderr and f"{stem}.toml" in named.stderr


@pytest.mark.parametrize("stem", ["con", "NUL", "aux.backup", "com1", "Lpt9"])
def test_an_id_that_cannot_name_a_feed_file_is_refused_with_a_rename_hint(tmp_path: Path, stem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile(write(tmp_path, f"{stem}.toml"))
    message = str(caught.value)
    assert message.startswith(str(tmp_path / f"{stem}.toml")) and "rename the file" in message
    assert "\n" not in message


def test_ids_differing_only_in_case_are_refused_after_the_first(tmp_path: Path) -> None:
    write(tmp_path, "Ada.toml")
    write(tmp_path, "ada.toml")
    write(tmp_path, "bob.toml")
    loaded = load_subscribers(tmp_path)
    assert [p.id for p in loaded.profiles] == ["Ada", "bob"]
    assert len(loaded.errors) == 1 and "ada.toml" in loaded.errors[0] and "only in case" in loaded.errors[0]
    assert "rename the file" in loaded.errors[0]


def test_a_profile_built_in_code_cannot_take_a_reserved_id() -> None:
    with pytest.raises(ValidationError, match="reserved"):
        Profile(id="All", name="A", email="a@example.org")
    assert Profile(id="alba", name="A", email="a@example.org").id == "alba"


# 2. A schedule that never fires, and any failure computing one subscriber's next due or status.


@pytest.mark.parametrize("schedule", ["0 7 30 2 *", "0 7 31 4 *", "* * 31 11 *", "0 7 31 2,4,6 *"])
def test_a_schedule_that_never_fires_is_refused_at_load(tmp_path: Path, schedule: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile(write(tmp_path, "ada.toml", f'schedule = "{schedule}"\ntimezone = "Europe/London"\n' + GOOD))
    message = str(caught.value)
    assert f"ada.toml: schedule never fires (got {schedule!r}" in message and "Europe/London" in message
    assert "\n" not in message


def test_a_leap_day_schedule_fires_within_the_horizon_and_loads(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, "ada.toml", 'schedule = "0 7 29 2 *"\n' + GOOD), NOW)
    assert profile.schedule == "0 7 29 2 *"


def test_a_bad_crontab_still_names_the_schedule_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ada.toml: schedule is not a valid crontab \\(got 'every day'"):
        load_profile(write(tmp_path, "ada.toml", 'schedule = "every day"\n' + GOOD))


@pytest.mark.parametrize("as_json", [True, False])
def test_a_never_firing_schedule_is_reported_and_the_others_are_listed(workspace: Path, as_json: bool) -> None:
    write(workspace / "subscribers", "feb.toml", 'schedule = "0 7 30 2 *"\n' + GOOD)
    ran = digest("--config", workspace / "config.toml", "subscribers", *(["--json"] if as_json else []))
    assert ran.returncode == 1
    if as_json:
        statuses = json.loads(ran.stdout)
        assert [s["id"] for s in statuses] == DEMO_IDS and all(s["next_due"] for s in statuses)
    else:
        assert [line.split("\t")[0] for line in ran.stdout.splitlines()] == DEMO_IDS
    errors = ran.stderr.splitlines()
    assert len(errors) == 1 and "feb.toml: schedule never fires (got '0 7 30 2 *'" in errors[0], errors


def test_any_failure_computing_one_next_due_leaves_the_others_listed(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = CronTrigger.get_next_fire_time
    tokyo = ZoneInfo("Asia/Tokyo")  # alan's time zone

    def flaky(self: CronTrigger, previous: datetime | None, now: datetime) -> Any:
        if self.timezone == tokyo:
            raise RuntimeError("boom\nsecond line")
        return real(self, previous, now)

    monkeypatch.setattr(CronTrigger, "get_next_fire_time", flaky)
    # Schedule checks are cached per (crontab, zone, day): forget them, before and after the fault.
    subscribers_module._schedule_problem.cache_clear()
    try:
        status, ids, errors = listed(workspace)
    finally:
        subscribers_module._schedule_problem.cache_clear()
    assert (status, ids) == (1, ["ada", "grace"])
    assert len(errors) == 1 and "alan.toml: schedule cannot be evaluated" in errors[0]
    assert "RuntimeError: boom second line" in errors[0]


def test_any_failure_loading_one_profile_leaves_the_others_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "ada.toml")
    write(tmp_path, "bob.toml")
    real = subscribers_module.parse_profile

    def flaky(data: bytes, subscriber: str, label: str, now: datetime | None = None) -> Profile:
        if subscriber == "bob":
            raise RuntimeError("disk on fire")
        return real(data, subscriber, label, now)

    monkeypatch.setattr(subscribers_module, "parse_profile", flaky)
    loaded = load_subscribers(tmp_path)
    assert [p.id for p in loaded.profiles] == ["ada"]
    assert loaded.errors == (f"{tmp_path / 'bob.toml'}: cannot be loaded (RuntimeError: disk on fire)",)


def test_statuses_report_one_failing_subscriber_and_list_the_others(
    workspace: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.subscribers import subscriber_statuses

    profiles = load_subscribers(workspace / "subscribers").profiles
    real = store.count_sent_papers

    def flaky(subscriber: str) -> int:
        if subscriber == "alan":
            raise ValueError("corrupt row")
        return real(subscriber)

    monkeypatch.setattr(store, "count_sent_papers", flaky)
    statuses, errors = subscriber_statuses(store, profiles, NOW)
    assert [s.id for s in statuses] == ["ada", "grace"]
    assert errors == ["alan.toml: cannot compute its status (ValueError: corrupt row)"]


def test_the_daemon_schedules_the_others_when_one_trigger_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, "ada.toml")
    write(tmp_path, "bob.toml")
    real = schedule_module.trigger_for

    def flaky(profile: Profile) -> CronTrigger:
        if profile.id == "bob":
            raise OverflowError("date value out of range")
        return real(profile)

    monkeypatch.setattr(schedule_module, "trigger_for", flaky)

    def send(names: Sequence[str], stop: threading.Event) -> None:
        return None

    signature, load = profile_watch(tmp_path)
    daemon = Daemon(
        profiles_signature=signature,
        load_profiles=load,
        ingest=lambda: None,
        send=send,
        ingest_every=3600,
        misfire_grace_time=3600,
    )
    daemon.scheduler = BackgroundScheduler()
    with caplog.at_level(logging.ERROR, logger="digest.schedule"):
        daemon.sync_jobs()
    assert [job.id for job in daemon.scheduler.get_jobs()] == ["send:ada"]
    assert "subscriber bob not scheduled: OverflowError" in caplog.text

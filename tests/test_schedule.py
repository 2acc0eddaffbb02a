"""When subscribers are due: an injected clock, DST changes, catch-up after downtime. No sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from conftest import profile_watch

from digest.schedule import Daemon, is_due, latest_slot, next_slot
from digest.subscribers import Profile

LONDON = ZoneInfo("Europe/London")


def profile(schedule: str, timezone: str = "Europe/London") -> Profile:
    return Profile(
        id="ada",
        name="Ada",
        email="ada@example.org",
        schedule=schedule,
        timezone=timezone,
        interests={"keywords": ["graphs"]},
    )


def test_next_and_latest_slot_follow_the_subscribers_time_zone() -> None:
    p = profile("0 7 * * mon-fri", "America/New_York")
    now = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # Friday 10:00 in New York
    assert latest_slot(p, now) == datetime(2026, 11, 20, 7, 0, tzinfo=ZoneInfo("America/New_York"))
    assert next_slot(p, now) == datetime(2026, 11, 23, 7, 0, tzinfo=ZoneInfo("America/New_York"))  # Monday


def test_due_once_per_slot() -> None:
    p = profile("0 7 * * *")
    slot = datetime(2026, 11, 20, 7, 0, tzinfo=LONDON)
    assert not is_due(p, slot - timedelta(hours=1), slot - timedelta(minutes=1))
    assert is_due(p, slot - timedelta(hours=1), slot + timedelta(seconds=5))
    assert not is_due(p, slot + timedelta(seconds=5), slot + timedelta(hours=3)), "already handled this slot"
    assert is_due(p, None, slot + timedelta(seconds=5)), "never sent: the latest slot counts"


def test_after_downtime_a_missed_send_runs_once_not_once_per_slot() -> None:
    p = profile("0 * * * *")  # hourly
    last = datetime(2026, 11, 20, 8, 0, 30, tzinfo=UTC)
    back = datetime(2026, 11, 20, 14, 20, tzinfo=UTC)  # six slots missed
    assert is_due(p, last, back)
    assert not is_due(p, back, back + timedelta(minutes=10)), "one catch-up covers all the missed slots"


def test_dst_spring_forward_the_nonexistent_time_still_fires_once() -> None:
    # On 2026-03-29 London clocks jump from 01:00 to 02:00: 01:30 does not exist that day.
    p = profile("30 1 * * *")
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    fired = next_slot(p, before)
    assert fired is not None
    after_day = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)
    slots = []
    cursor = before
    while True:
        nxt = next_slot(p, cursor)
        if nxt is None or nxt > after_day:
            break
        slots.append(nxt)
        cursor = nxt
    assert len(slots) == 2, slots  # the 29th (shifted) and the 30th, never twice on one day
    assert slots[1] == datetime(2026, 3, 30, 1, 30, tzinfo=LONDON)


def test_dst_fall_back_the_repeated_hour_fires_once() -> None:
    # On 2026-10-25 London clocks go back from 02:00 to 01:00: 01:30 happens twice.
    p = profile("30 1 * * *")
    start = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    end = datetime(2026, 10, 26, 12, 0, tzinfo=UTC)
    slots = []
    cursor = start
    while (nxt := next_slot(p, cursor)) is not None and nxt <= end:
        slots.append(nxt.astimezone(UTC))
        cursor = nxt
    assert len(slots) == 2, slots
    # A send at the first 01:30 is not repeated an hour later.
    first = slots[0]
    assert not is_due(p, first + timedelta(seconds=1), first + timedelta(hours=1, minutes=10))


def test_weekly_schedule_latest_slot_is_found_across_the_week() -> None:
    p = profile("0 6 * * mon", "Asia/Tokyo")
    now = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)  # a Sunday
    slot = latest_slot(p, now)
    assert slot == datetime(2026, 11, 16, 6, 0, tzinfo=ZoneInfo("Asia/Tokyo"))


def _daemon(folder: Path, sent: list[str]) -> Daemon:
    signature, load = profile_watch(folder)
    daemon = Daemon(
        profiles_signature=signature,
        load_profiles=load,
        ingest=lambda: None,
        send=lambda names, stop: sent.extend(names),
        ingest_every=3600,
        misfire_grace_time=6 * 3600,
    )
    daemon.scheduler = BackgroundScheduler()
    return daemon


def _write(folder: Path, name: str, schedule: str) -> None:
    (folder / f"{name}.toml").write_text(
        f'name = "{name}"\nemail = "{name}@example.org"\nschedule = "{schedule}"\n[interests]\nkeywords = ["x"]\n',
        encoding="utf-8",
    )


def test_subscriber_files_added_changed_and_removed_are_picked_up(tmp_path: Path) -> None:
    import os

    _write(tmp_path, "ada", "0 7 * * *")
    daemon = _daemon(tmp_path, [])
    daemon.sync_jobs()
    jobs = {job.id: job for job in daemon.scheduler.get_jobs()}  # type: ignore[union-attr]
    assert set(jobs) == {"send:ada"}
    job = jobs["send:ada"]
    assert job.coalesce is True and job.misfire_grace_time == 6 * 3600

    _write(tmp_path, "bob", "0 9 * * *")
    _write(tmp_path, "ada", "15 8 * * *")
    os.utime(tmp_path / "ada.toml", (1, 1))  # a different mtime even within the same second
    daemon.sync_jobs()
    jobs = {job.id: job for job in daemon.scheduler.get_jobs()}  # type: ignore[union-attr]
    assert set(jobs) == {"send:ada", "send:bob"}
    assert "minute='15'" in str(jobs["send:ada"].trigger)

    (tmp_path / "bob.toml").unlink()
    daemon.sync_jobs()
    assert {job.id for job in daemon.scheduler.get_jobs()} == {"send:ada"}  # type: ignore[union-attr]


def test_a_cron_job_calls_send_for_its_subscriber(tmp_path: Path) -> None:
    _write(tmp_path, "ada", "0 7 * * *")
    sent: list[str] = []
    daemon = _daemon(tmp_path, sent)
    daemon.sync_jobs()
    job = daemon.scheduler.get_job("send:ada")  # type: ignore[union-attr]
    job.func(*job.args)
    assert sent == ["ada"]
    daemon.stop.set()
    job.func(*job.args)
    assert sent == ["ada"], "after SIGTERM no new send starts"

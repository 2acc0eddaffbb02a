"""When each subscriber is due, and the `digest run` daemon (APScheduler 3, BlockingScheduler).

The due logic is pure (profile, last attempt, now) so that tests drive it with an injected clock,
DST changes included, and never sleep.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

if TYPE_CHECKING:  # digest.subscribers asks this module for next slots
    from digest.subscribers import Profile, SubscriberSet

log = logging.getLogger(__name__)

# How far back we look for the latest slot: a weekly crontab has one within 8 days; monthly or yearly
# schedules within this horizon too.
_HORIZON = timedelta(days=400)


def trigger_for(profile: Profile) -> CronTrigger:
    return CronTrigger.from_crontab(profile.schedule, timezone=profile.zone)


def _ambiguous_second(moment: datetime) -> bool:
    """The second 01:30 of a night when clocks go back: the same slot as the first, not a new one."""
    return moment.fold == 1 and moment.replace(fold=0).utcoffset() != moment.utcoffset()


def _fire_after(trigger: CronTrigger, moment: datetime) -> datetime | None:
    # Step in UTC: wall-clock arithmetic on an aware time would drop `fold` and loop in a repeated hour.
    return trigger.get_next_fire_time(None, moment.astimezone(UTC) + timedelta(microseconds=1))


def next_slot(profile: Profile, after: datetime) -> datetime | None:
    """The first scheduled time strictly after `after`, in the subscriber's time zone (once per wall time)."""
    trigger = trigger_for(profile)
    slot = _fire_after(trigger, after)
    while slot is not None and _ambiguous_second(slot):
        slot = _fire_after(trigger, slot)
    return slot


def latest_slot(profile: Profile, now: datetime) -> datetime | None:
    """The last scheduled time at or before `now` (None if there was none within the horizon)."""
    return _latest_slot(profile.schedule, profile.timezone, now)


@functools.lru_cache(maxsize=256)
def _latest_slot(schedule: str, timezone: str, now: datetime) -> datetime | None:
    # Cached: a cycle asks this for every subscriber at the same `now`, and most share a few schedules. (Searching
    # forward from each last attempt instead is not safe: APScheduler 3 skips a month from some times on the day
    # clocks change.)
    trigger = CronTrigger.from_crontab(schedule, timezone=ZoneInfo(timezone))
    high = now.astimezone(UTC)
    candidate = trigger.get_next_fire_time(None, high - _HORIZON)
    if candidate is None or candidate > high:
        return None
    # Jump forward in halving steps rather than walking every slot of a minutely schedule.
    step = high - candidate.astimezone(UTC)
    while step >= timedelta(seconds=1):
        probe = trigger.get_next_fire_time(None, candidate.astimezone(UTC) + step)
        if probe is not None and probe <= high and probe > candidate:
            candidate = probe
        else:
            step = step / 2
    following = _fire_after(trigger, candidate)
    while following is not None and following <= high:
        candidate = following
        following = _fire_after(trigger, candidate)
    return candidate.replace(fold=0) if _ambiguous_second(candidate) else candidate


def is_due(profile: Profile, last_attempt: datetime | None, now: datetime) -> bool:
    """Due when a slot has passed since the last attempt: after downtime that is one send, not one per slot."""
    slot = latest_slot(profile, now)
    if slot is None:
        return False
    return last_attempt is None or last_attempt < slot


@dataclass
class Daemon:
    """`digest run`: interval ingest, one cron job per subscriber, profiles watched for changes.

    The work itself is done by the callbacks (ingest, send to some subscribers, refresh feeds), so that
    this class only owns timing.
    """

    # Changes whenever a profile may have (a file in the folder, a profile in the store: digest.profile_book).
    profiles_signature: Callable[[], object]
    load_profiles: Callable[[], SubscriberSet]
    ingest: Callable[[], None]
    send: Callable[[Sequence[str], threading.Event], None]
    ingest_every: float
    misfire_grace_time: float
    watch_every: float = 30.0
    stop: threading.Event = field(default_factory=threading.Event)
    _signature: object = None
    scheduler: BlockingScheduler | None = None

    def _job_options(self) -> dict[str, Any]:
        return {
            "replace_existing": True,
            "coalesce": True,
            "misfire_grace_time": int(self.misfire_grace_time),
            "max_instances": 1,
        }

    def sync_jobs(self) -> None:
        """Add, change or remove per-subscriber jobs to match the profiles (no restart needed)."""
        assert self.scheduler is not None
        try:
            signature = self.profiles_signature()
        except Exception as exc:  # the database away for a moment: the jobs stay as they are, checked again soon
            log.error("profiles not checked for changes: %s: %s", type(exc).__name__, exc)
            return
        if signature == self._signature:
            return
        loaded = self.load_profiles()
        # Remembered once the sync is written: one that could not be (the store busy) is tried again next time.
        self._signature = signature if loaded.synced else None
        profiles = {p.id: p for p in loaded.profiles}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("send:") and job.id[5:] not in profiles:
                job.remove()
                log.info("subscriber %s removed: its job is gone", job.id[5:])
        scheduled = 0
        for profile in profiles.values():
            try:
                self.scheduler.add_job(
                    self._send_job,
                    trigger_for(profile),
                    args=[profile.id],
                    id=f"send:{profile.id}",
                    name=f"send digest to {profile.id}",
                    **self._job_options(),
                )
            except Exception as exc:  # one subscriber's schedule never stops the others' jobs
                log.error("subscriber %s not scheduled: %s: %s", profile.id, type(exc).__name__, exc)
                if self.scheduler.get_job(f"send:{profile.id}") is not None:  # not on its old schedule either
                    self.scheduler.remove_job(f"send:{profile.id}")
                continue
            scheduled += 1
        log.info("%d subscriber job(s) scheduled", scheduled)

    def _send_job(self, subscriber: str) -> None:
        if not self.stop.is_set():
            self.send([subscriber], self.stop)

    def _ingest_job(self) -> None:
        if not self.stop.is_set():
            self.ingest()

    def run(self) -> None:
        self.scheduler = BlockingScheduler()
        self.scheduler.add_job(
            self._ingest_job,
            IntervalTrigger(seconds=self.ingest_every),
            id="ingest",
            name="ingest",
            **self._job_options(),
        )
        self.scheduler.add_job(
            self.sync_jobs,
            IntervalTrigger(seconds=self.watch_every),
            id="watch-subscribers",
            name="watch subscriber files",
            **self._job_options(),
        )
        self.sync_jobs()

        def _terminate(signum: int, _frame: object) -> None:
            log.info("signal %d: finishing the message in flight, then exiting", signum)
            self.stop.set()
            if self.scheduler is not None and self.scheduler.running:
                self.scheduler.shutdown(wait=False)

        previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if not self.stop.is_set():
                self.scheduler.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

"""`digest run` as a library: one cycle, or the long-running scheduler, with the same stop event for both.

The CLI only calls `run_service`; tests can call it too, with their own stop event and subscriber loader.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

from digest.atom import refresh_after_send
from digest.clock import utc_now
from digest.config import Config
from digest.profile_book import ProfileBook
from digest.schedule import Daemon
from digest.scheduler_lock import SchedulerLock
from digest.service import CycleReport, ingest_configured, run_cycle, send, step_error
from digest.store import open_store
from digest.subscribers import SubscriberSet

log = logging.getLogger("digest.run")


def log_cycle(report: CycleReport) -> None:
    """What a cycle did, in the log: counts first, then every problem on its own line."""
    if report.ingest:
        log.info(
            "ingest: %d file(s), %d new, %d updated, %d rejected",
            report.ingest.files,
            report.ingest.new,
            report.ingest.updated,
            len(report.ingest.rejected),
        )
        for rejection in report.ingest.rejected:
            log.warning("ingest rejected: %s", rejection.error)
    if report.send:
        log.info("send: %s", report.send.summary())
        for failed in report.send.failed:
            log.error("send failed: %s: %s", failed.subscriber, failed.error)
        for stuck in report.send.stuck:
            log.error("stuck: %s: %s (%s)", stuck.subscriber, stuck.message_id, stuck.fix)
    for path in report.feeds:
        log.info("feed written: %s", path)
    for note in report.notes:
        log.info("%s", note)
    for error in report.errors:
        log.error("%s", error)


def load_profiles(config: Config, *, report: bool) -> SubscriberSet:
    with open_store(config) as store:
        loaded = ProfileBook.of(config, store).load(utc_now())
    if report:
        for notice in loaded.notices:
            log.warning("%s", notice)
        for error in loaded.errors:
            log.warning("%s (skipped)", error)
    return loaded


def profiles_signature(config: Config) -> object:
    with open_store(config) as store:
        return ProfileBook.of(config, store).signature()


def _ingest(config: Config, scheduler: SchedulerLock, stop: threading.Event) -> None:
    try:
        with open_store(config) as store:
            report = ingest_configured(store, config)
        log_cycle(CycleReport(ingest=report))
    except Exception as exc:  # the scheduler keeps running whatever one ingest does
        log.error("ingest: %s", step_error(exc))
    if scheduler.held() and scheduler.took_over():
        _catch_up(config, stop)


def _catch_up(config: Config, stop: threading.Event) -> None:
    """This daemon just took the scheduler lock over: everyone due (slots passed while nobody held it)."""
    try:
        result = send(config, selection="due", stop=stop, lock_wait=600)
        log_cycle(CycleReport(send=result, feeds=refresh_after_send(config, result)))
    except Exception as exc:
        log.error("send: %s", step_error(exc))


def _send_to(config: Config, names: Sequence[str], stop: threading.Event, scheduler: SchedulerLock) -> None:
    """A subscriber's cron job: send if due (a slot already handled, e.g. by a catch-up, is not resent), when
    this daemon holds the scheduler lock (another daemon's job sends it otherwise)."""
    if not scheduler.held():
        log.debug("%s: another `digest run` holds the scheduler lock and sends", ", ".join(names))
        return
    if scheduler.took_over():
        _catch_up(config, stop)
        return
    try:
        loaded = load_profiles(config, report=False)
        chosen = SubscriberSet(tuple(p for p in loaded.profiles if p.id in names), ())
        # Waits for a manual `digest send` to finish rather than skipping the slot.
        result = send(config, selection="due", stop=stop, subscribers=chosen, lock_wait=600)
        log_cycle(CycleReport(send=result, feeds=refresh_after_send(config, result)))
    except Exception as exc:
        log.error("send: %s", step_error(exc))


def run_service(config: Config, *, once: bool, stop: threading.Event | None = None) -> CycleReport:
    """One cycle (ingest, every due send, feeds); then, unless `once`, the scheduler until SIGTERM/SIGINT.

    Returns the first cycle's report (the exit status of `digest run --once` is read from it).
    """
    stop = stop or threading.Event()

    def _terminate(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the message in flight, then exiting", signum)
        stop.set()

    # Installed before the first cycle: a SIGTERM during the catch-up send must not leave a stuck message.
    # Restored on return, for a caller that runs this in-process.
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    scheduler = SchedulerLock(config)
    try:
        report = run_cycle(config, after_send=refresh_after_send, stop=stop, scheduler=scheduler.held)
        scheduler.took_over()  # the first cycle sent to everyone due
        log_cycle(report)
        if not (once or stop.is_set()):
            _schedule(config, stop, scheduler)
    finally:
        scheduler.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return report


def _schedule(config: Config, stop: threading.Event, scheduler: SchedulerLock) -> None:
    daemon = Daemon(
        profiles_signature=lambda: profiles_signature(config),
        load_profiles=lambda: load_profiles(config, report=True),
        ingest=lambda: _ingest(config, scheduler, stop),
        send=lambda names, event: _send_to(config, names, event, scheduler),
        ingest_every=config.schedule.ingest_every,
        misfire_grace_time=config.schedule.misfire_grace_time,
        stop=stop,
    )
    log.info("digest run: scheduler started (ingest every %gs)", config.schedule.ingest_every)
    daemon.run()
    log.info("digest run: stopped")

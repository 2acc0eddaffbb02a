"""The jobs a person or the scheduler runs: ingest what is configured, send to whom it concerns, one cycle.

Each takes the validated Config and injected side effects (clock, transport factory), so the CLI, the
daemon and the tests drive the very same code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from digest.claims import Claims
from digest.clock import Clock, utc_now
from digest.config import Config
from digest.enrich import ArxivClient, SharedSpacing, enrich_papers, lookups_enabled
from digest.errors import DigestError
from digest.ingest import IngestReport, ingest_sources
from digest.mail.transport import Transport, make_transport
from digest.model_cache import refresh_model
from digest.profile_book import ProfileBook
from digest.render import make_environment
from digest.schedule import is_due
from digest.send import SendReport, lock_path, send_digests, send_lock
from digest.store import Store, open_store
from digest.subscribers import Profile, SubscriberSet

log = logging.getLogger(__name__)
Selection = Literal["named", "due", "all"]


def ingest(
    store: Store,
    config: Config,
    targets: Sequence[str] | None = None,
    clock: Clock = utc_now,
    *,
    arxiv: ArxivClient | None = None,
) -> IngestReport:
    """Ingest `targets` (default: the inbox folder and every `[sources] urls` feed), look up the papers that still
    have no link on arXiv (digest.enrich; `arxiv`: the client to use), then bring the saved ranking model up to the
    new papers (digest.model_cache), so that the next preview or send only reads it."""
    enrich = lookups_enabled(config.enrich)  # a wrong DIGEST_ENRICH is an error before anything is done
    if targets is None:
        config.paths.inbox.mkdir(parents=True, exist_ok=True)
        targets = [str(config.paths.inbox), *config.sources.urls]
    report = ingest_sources(
        store,
        list(targets),
        max_bytes=int(config.ingest.max_file_mb * 1_000_000),
        timeout=config.sources.timeout,
        clock=clock,
    )
    if enrich:
        _enrich(store, config, report, clock, arxiv)
    if report.new or report.updated or report.enriched:
        try:
            refresh_model(store, config.rank.policy())
        except (OSError, DigestError) as exc:  # the papers are stored; the next run catches the model up
            log.warning("model cache: not updated (%s); the next ingest or send tries again", exc)
    if config.paths.subscribers.is_dir():
        # The profiles too, on the host that has their folder: senders and web hosts see the operator's changes
        # though no send runs here (a host that only ingests).
        try:
            report.notices.extend(ProfileBook(store, config.paths.subscribers).refresh(clock()))
        except DigestError as exc:
            report.notices.append(f"profiles not synced: {exc}")
    return report


def _enrich(store: Store, config: Config, report: IngestReport, clock: Clock, arxiv: ArxivClient | None) -> None:
    # Turns taken in the store: two ingests at once (a daemon and a `digest ingest`, daemons on several hosts) stay
    # [enrich] min_interval apart at the API, as one would.
    client = arxiv or ArxivClient(config.enrich, spacing=SharedSpacing(store, config.enrich.min_interval))
    try:
        found = enrich_papers(store, client, max_lookups=config.enrich.max_lookups, clock=clock)
    except DigestError as exc:  # the store refused a write: the papers are in; the next ingest looks them up
        report.notices.append(f"arXiv lookup stopped: {exc}")
        return
    report.enriched = found.enriched
    report.not_on_arxiv = found.not_found
    report.lookups_pending = found.pending
    report.notices.extend(found.notices)


def ingest_configured(store: Store, config: Config, clock: Clock = utc_now) -> IngestReport:
    """The inbox folder and every `[sources] urls` feed: the daemon's ingest, so what the CLI would print of the
    lookups goes to the log here."""
    report = ingest(store, config, None, clock)
    if report.enriched or report.not_on_arxiv:
        log.info("arXiv: %d paper(s) enriched, %d not on arXiv", report.enriched, report.not_on_arxiv)
    for notice in report.notices:
        log.warning("%s", notice)
    return report


def select_profiles(
    subscribers: SubscriberSet,
    store: Store,
    selection: Selection,
    names: Sequence[str],
    now: datetime,
    *,
    welcome: bool = False,
) -> list[Profile]:
    if selection == "named":
        return [subscribers.get(name) for name in dict.fromkeys(names)]
    if selection == "all":
        return list(subscribers.profiles)
    return [p for p in subscribers.profiles if _due(store, p, now, welcome=welcome)]


def _due(store: Store, profile: Profile, now: datetime, *, welcome: bool) -> bool:
    """Due when a scheduled slot has passed since the last attempt. A subscriber never attempted counts from
    when the store first saw them: their first digest comes at their first slot after that, not the moment a
    daemon starts; with `[schedule] welcome_digest`, at once."""
    last = store.last_attempt_at(profile.id)
    if last is None:
        joined = store.joined_at(profile.id, now)
        if welcome:
            return True
        last = joined
    return is_due(profile, last, now)


def send(
    config: Config,
    *,
    selection: Selection,
    names: Sequence[str] = (),
    clock: Clock = utc_now,
    dry_run: bool = False,
    transport_factory: Callable[[Config], Transport] = make_transport,
    stop: threading.Event | None = None,
    lock_wait: float = 0.0,
    progress_factory: Callable[[int], Callable[[Profile], None]] | None = None,
    subscribers: SubscriberSet | None = None,
    retry_stuck: bool = False,
) -> SendReport:
    """Send the next digest to the selected subscribers. SQLite: under the one-sender lock. PostgreSQL: beside any
    other senders, each subscriber claimed by one of them at a time (digest.claims). `retry_stuck`: first mark
    their stuck messages failed (under the same lock or claim, so no sender is mid-hand-over), then send afresh."""
    shared = config.database.url is not None and not dry_run
    with ExitStack() as held:
        if not shared:
            held.enter_context(send_lock(lock_path(config), wait=lock_wait))
        store = held.enter_context(open_store(config))
        if subscribers is None:
            subscribers = ProfileBook.of(config, store).load(clock(), write=not dry_run)
        profiles = select_profiles(
            subscribers, store, selection, names, clock(), welcome=config.schedule.welcome_digest
        )

        def settle(store: Store, claimed: Sequence[Profile]) -> list[Profile]:
            """A batch just claimed (or, under the lock, everyone): still due (another sender may have served them
            since they were selected), and their stuck messages settled for --retry-stuck."""
            if shared and selection == "due":
                welcome = config.schedule.welcome_digest
                claimed = [p for p in claimed if _due(store, p, clock(), welcome=welcome)]
            if retry_stuck and not dry_run:
                for profile in claimed:
                    if store.resolve_stuck(profile.id, "failed", clock(), "settled by hand as failed (--retry-stuck)"):
                        log.warning("%s: stuck message marked failed; sending again", profile.id)
            return list(claimed)

        claims = None
        if shared:
            claims = held.enter_context(
                Claims(
                    store,
                    profiles,
                    lease=config.database.lease_seconds,
                    batch=config.database.claim_batch,
                    clock=clock,
                    on_claimed=settle,
                )
            )
        else:
            settle(store, profiles)
        env = make_environment(config.paths.templates)
        transports = (
            [] if dry_run or not any(p.wants_email for p in profiles) else _transports(config, transport_factory)
        )
        progress = progress_factory(len(profiles)) if progress_factory else None
        try:
            return send_digests(
                store,
                config,
                env,
                profiles,
                transports or None,
                clock=clock,
                dry_run=dry_run,
                stop=stop,
                progress=progress,
                claims=claims,
            )
        finally:
            for transport in transports:
                transport.close()


def _transports(config: Config, factory: Callable[[Config], Transport]) -> list[Transport]:
    """One transport per `[smtp] connections` (SMTP only; a Maildir takes one), each with its share of
    `[smtp] max_per_minute`, so that together they keep the limit."""
    count = config.smtp.connections if config.delivery.method == "smtp" else 1
    if count > 1 and config.smtp.max_per_minute:
        share = config.smtp.model_copy(update={"max_per_minute": config.smtp.max_per_minute / count})
        config = config.model_copy(update={"smtp": share})
    return [factory(config) for _ in range(count)]


@dataclass
class CycleReport:
    ingest: IngestReport | None = None
    send: SendReport | None = None
    errors: list[str] = field(default_factory=list)
    feeds: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


AfterSend = Callable[[Config, SendReport], list[str]]


def run_cycle(
    config: Config,
    *,
    clock: Clock = utc_now,
    transport_factory: Callable[[Config], Transport] = make_transport,
    stop: threading.Event | None = None,
    after_send: AfterSend | None = None,
    scheduler: Callable[[], bool] | None = None,
) -> CycleReport:
    """One cycle of `digest run`: ingest, every due send, then the feeds. A failing step does not stop the next.
    `scheduler`: whether this daemon fires the scheduled sends (digest.scheduler_lock; False: it only ingests)."""
    report = CycleReport()
    try:
        with open_store(config) as store:
            report.ingest = ingest_configured(store, config, clock)
    except Exception as exc:  # any failure of a step is reported, and the next step still runs
        report.errors.append(f"ingest: {step_error(exc)}")
    if scheduler is not None and not scheduler():
        report.notes.append("send: another `digest run` holds the scheduler lock and sends; this one only ingests")
        return report
    try:
        report.send = send(config, selection="due", clock=clock, transport_factory=transport_factory, stop=stop)
    except Exception as exc:
        report.errors.append(f"send: {step_error(exc)}")
    if after_send is not None and report.send is not None:
        try:
            report.feeds = after_send(config, report.send)
        except Exception as exc:
            report.errors.append(f"feeds: {step_error(exc)}")
    return report


def step_error(exc: Exception) -> str:
    """One line for a failed step: our own errors say what to fix; anything else is a bug of ours, logged with
    its traceback at debug level (`digest -v run`) so that the daemon keeps running."""
    if isinstance(exc, DigestError):
        return str(exc)
    log.debug("unexpected error", exc_info=exc)
    return f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)"

"""Sending digests with a ledger: no paper reaches the same subscriber twice, and nothing is silently lost.

For each message: a `sending` row with its Message-ID and papers is committed BEFORE the hand-over to the
transport, then `sent` (or `failed`, with the server's answer) is committed right after, one transaction per
message. A process that dies in between leaves the row `sending`: the next run does not guess, it reports the
message as stuck until a person settles it (`digest send --resolve-stuck` / `--retry-stuck`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from jinja2 import Environment

from digest import trace
from digest.claims import Claims
from digest.clock import Clock
from digest.compose import links_for
from digest.config import Config
from digest.errors import DeliveryError, DigestError, LedgerConflictError, LockedError, StoreError
from digest.mail.composer import ComposeJob, Composer, ComposeResult, ComposeSettings
from digest.mail.message import new_message_id
from digest.mail.transport import Transport, UnknownOutcomeError, UnreachableError
from digest.model_cache import model_source
from digest.plan import DigestPlan, plan_digests
from digest.rank import RankModel
from digest.store import Message as LedgerMessage
from digest.store import PickRecord, Store, utc_iso
from digest.subscribers import Profile
from digest.unsubscribes import apply_pending_unsubscribes, has_pending_unsubscribes

log = logging.getLogger(__name__)
# Subscribers planned together: big enough for the batched ranking to pay, small enough that the first
# message leaves soon and the plans in memory stay small.
PLAN_BATCH = 1000


@dataclass(frozen=True)
class Sent:
    """A message handed over (or, in a dry run, that would be); `channel` "feed" when it went to the feed only."""

    subscriber: str
    message_id: str
    papers: tuple[str, ...]
    channel: str | None = None
    # The new papers this digest was picked from: those not picked are not offered again.
    candidates: int = 0

    @property
    def left_unsent(self) -> int:
        return max(self.candidates - len(self.papers), 0)

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {"subscriber": self.subscriber, "message_id": self.message_id}
        data["papers"] = list(self.papers)
        if self.channel:
            data["channel"] = self.channel
        data["candidates"] = self.candidates
        data["left_unsent"] = self.left_unsent
        return data


@dataclass(frozen=True)
class Skipped:
    subscriber: str
    reason: str

    def as_json(self) -> dict[str, object]:
        return {"subscriber": self.subscriber, "reason": self.reason}


@dataclass(frozen=True)
class Failed:
    """Not delivered, known for sure (the server refused it, or it never got there): due again next time."""

    subscriber: str
    error: str
    message_id: str | None = None

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {"subscriber": self.subscriber, "error": self.error}
        if self.message_id is not None:
            data["message_id"] = self.message_id
        return data


@dataclass(frozen=True)
class Stuck:
    """Handed over but never confirmed: the outcome is unknown, so it is neither resent nor forgotten."""

    subscriber: str
    message_id: str
    created_at: str
    papers: tuple[str, ...]
    reason: str

    @property
    def fix(self) -> str:
        return f"digest send --resolve-stuck {self.subscriber} --as sent|failed, or --retry-stuck"

    def as_json(self) -> dict[str, object]:
        return {
            "subscriber": self.subscriber,
            "message_id": self.message_id,
            "created_at": self.created_at,
            "papers": list(self.papers),
            "reason": self.reason,
            "fix": self.fix,
        }


@dataclass
class SendReport:
    sent: list[Sent] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    stuck: list[Stuck] = field(default_factory=list)
    dry_run: bool = False
    interrupted: bool = False
    # Why the send stopped before the end (no server to talk to, a full disk...): one line saying what to fix.
    stopped_by: str | None = None

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "sent": [item.as_json() for item in self.sent],
            "skipped": [item.as_json() for item in self.skipped],
            "failed": [item.as_json() for item in self.failed],
            "stuck": [item.as_json() for item in self.stuck],
        }
        if self.dry_run:
            data["dry_run"] = True
        if self.interrupted:
            data["interrupted"] = True
        if self.stopped_by:
            data["stopped_by"] = self.stopped_by
        return data

    def summary(self) -> str:
        verb = "would send" if self.dry_run else "sent"
        line = (
            f"{verb} {len(self.sent)}, skipped {len(self.skipped)}, failed {len(self.failed)}, stuck {len(self.stuck)}"
        )
        if self.stopped_by:
            return f"{line} (stopped: {self.stopped_by})"
        return line + (" (interrupted)" if self.interrupted else "")


def lock_path(config: Config) -> Path:
    # Resolved: two configurations that reach one database through a symbolic link share one lock.
    database = config.paths.database.resolve()
    return database.with_name(database.name + ".send.lock")


@contextmanager
def send_lock(path: Path, *, wait: float = 0.0, poll: float = 0.1) -> Iterator[None]:
    """One sender at a time, across processes: an flock the kernel releases even after SIGKILL.

    The lock is taken on the folder that holds the database, which nobody deletes while the database is in it
    (a lock file can be removed while held, and the next sender would lock a new file). The file at `path`
    only says which process holds the lock, for the message a second sender prints."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise StoreError(f"{path.parent}: cannot take the send lock ({exc.strerror}); check [paths] database") from None
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    try:
                        holder = path.read_text(encoding="utf-8").strip() or "unknown"
                    except OSError:
                        holder = "unknown"
                    raise LockedError(
                        f"another `digest send` or `digest run` is sending (pid {holder}); "
                        "it will deliver these digests, or try again when it is done"
                    ) from None
                time.sleep(poll)
        try:
            path.write_text(str(os.getpid()), encoding="utf-8")
        except OSError:
            pass  # informational only (a full disk must not stop the send from reporting)
        yield
    finally:
        os.close(folder)


def _paper_ids(picks: Sequence[PickRecord]) -> list[str]:
    return [p.paper_id for p in picks]


@dataclass(frozen=True)
class _Ready:
    """A subscriber whose digest is planned and queued for composing; delivered when its message is back."""

    profile: Profile
    plan: DigestPlan
    job: ComposeJob
    channel: str


def composer_for(config: Config, env: Environment) -> Composer:
    settings = ComposeSettings(config.paths.templates, config.smtp.sender, config.delivery.list_id)
    return Composer(env, settings, workers=config.delivery.compose_workers)


def send_digests(
    store: Store,
    config: Config,
    env: Environment,
    profiles: Sequence[Profile],
    transport: Transport | Sequence[Transport] | None,
    *,
    clock: Clock,
    dry_run: bool = False,
    model: RankModel | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[Profile], None] | None = None,
    composer: Composer | None = None,
    claims: Claims | None = None,
) -> SendReport:
    """Compose and deliver each subscriber's next digest; one failure never stops the others.

    Digests are planned PLAN_BATCH subscribers at a time (plan_digests: one batched ranking, the same plans as
    plan_digest one by one). Each batch's messages are rendered and composed by `composer` (worker processes
    for a big send) while the next batch is planned; each message is then recorded and delivered on its own,
    in this process: ledger `sending` -> hand-over -> `sent`/`failed`. Given several transports (`[smtp]
    connections`), that many messages are delivered at once, each on its own connection (digest.send._Lanes),
    every message still through the same ledger steps in the same order.

    With `claims` (several senders on PostgreSQL, digest.claims) the batches are the subscribers this sender
    claimed, each let go as soon as its digest is settled; without, `profiles` in order, under the send lock.
    """
    report = SendReport(dry_run=dry_run)
    if not dry_run:
        try:
            # Web unsubscribes the store could not take when they came are applied before anyone is mailed.
            apply_pending_unsubscribes(store, config, clock=clock)
            # Under the send lock no other sender runs: a `sending` message whose hand-over never started belongs
            # to a sender that died before it; its papers go back to the candidates. (With claims, this is done
            # for each claimed batch: only the subscribers this sender holds.)
            for message_id in store.release_unhanded(clock()) if claims is None else ():
                log.info("released %s: its sender stopped before handing it over", message_id)
        except StoreError as exc:
            report.stopped_by = str(exc)
            _report_not_attempted(report, profiles)
            return report
    # The model is fitted (or taken from this process's cache) by the first plan that has candidates to rank: a
    # send with nobody due, or nothing new, touches no model.
    own_composer = composer is None
    composer = composer or composer_for(config, env)
    transports = list(transport) if isinstance(transport, Sequence) else [transport]
    if claims is not None:
        progress = _settling(claims, progress)
    run = _Run(store, config, transports[0], clock, dry_run, model, report, stop, progress, claims)
    lanes = _Lanes(run, transports) if len(transports) > 1 and not dry_run else None
    try:
        queued: tuple[list[_Ready], Iterator[ComposeResult]] | None = None
        size = batch_size(config)
        if claims is None:
            batches: Iterable[Sequence[Profile]] = (profiles[i : i + size] for i in range(0, len(profiles), size))
        else:
            batches = claims.batches(size, lambda: _stopping(run))
        for batch in batches:
            if _stopping(run):
                break
            if not batch:  # waiting for other senders' claims: deliver what this one holds meanwhile
                if queued is not None:
                    _deliver(run, *queued, lanes)
                    queued = None
                continue
            ready = _prepare(run, batch)
            composed = composer.compose([r.job for r in ready])
            if queued is not None:
                _deliver(run, *queued, lanes)
            queued = (ready, composed)
        if queued is not None and not _stopping(run):
            _deliver(run, *queued, lanes)
    except StoreError as exc:  # the ledger cannot record (a full disk): stop, and report what was done
        report.stopped_by = str(exc)
        log.error("%s; stopping the send", exc)
    finally:
        if lanes is not None:
            lanes.close()  # every message handed to a lane is settled before the report is made
        if own_composer:
            composer.close()
    if report.stopped_by or report.interrupted:
        _report_not_attempted(report, profiles if claims is None else claims.claimed)
    return report


def _settling(claims: Claims, progress: Callable[[Profile], None] | None) -> Callable[[Profile], None]:
    """Every subscriber reaches the progress callback once, when their digest is settled: their claim goes then."""

    def settled(profile: Profile) -> None:
        claims.settled(profile.id)
        if progress is not None:
            progress(profile)

    return settled


def _report_not_attempted(report: SendReport, profiles: Sequence[Profile]) -> None:
    """After a send stopped early, everyone it did not reach is listed (skipped), so nobody is silently left."""
    reached = {
        item.subscriber for items in (report.sent, report.skipped, report.failed, report.stuck) for item in items
    }
    why = report.stopped_by or "interrupted; they are due again on the next run"
    reason = f"not attempted: the send stopped ({why})"
    report.skipped.extend(Skipped(p.id, reason) for p in profiles if p.id not in reached)


def batch_size(config: Config) -> int:
    """PLAN_BATCH; under an SMTP rate limit, about a minute's worth: messages are composed (and dated) at most
    two batches ahead of their hand-over, and a rate-limited send gains nothing from composing far ahead."""
    limit = config.smtp.max_per_minute if config.delivery.method == "smtp" else 0
    return max(10, min(PLAN_BATCH, limit)) if limit else PLAN_BATCH


@dataclass
class _Run:
    """What every step of one send shares (instead of threading nine parameters through each helper)."""

    store: Store
    config: Config
    transport: Transport | None
    clock: Clock
    dry_run: bool
    model: RankModel | None
    report: SendReport
    stop: threading.Event | None
    progress: Callable[[Profile], None] | None
    claims: Claims | None = None


def _stopping(run: _Run) -> bool:
    if run.stop is not None and run.stop.is_set():
        run.report.interrupted = True
    return run.report.interrupted or run.report.stopped_by is not None


def _prepare(run: _Run, batch: Sequence[Profile]) -> list[_Ready]:
    """Plan a batch; settle here whoever gets nothing (paused, stuck, nothing new, an error), queue the rest."""
    store, config, clock, report, model = run.store, run.config, run.clock, run.report, run.model
    with trace.stage("candidates"):
        plans = plan_digests(store, batch, clock(), model or model_source(config.rank.policy(), save=not run.dry_run))
    stuck_by_subscriber: dict[str, list[LedgerMessage]] = {}
    for message in store.stuck_messages():
        stuck_by_subscriber.setdefault(message.subscriber, []).append(message)
    ready: list[_Ready] = []
    for profile in batch:
        try:
            plan = plans.get(profile.id)
            if isinstance(plan, DigestError):
                raise plan
            if plan is None:
                raise DigestError(f"{profile.id}: no plan was made")
            item = _ready_or_settled(run, profile, plan, stuck_by_subscriber.get(profile.id, []))
        except DigestError as exc:
            report.failed.append(Failed(profile.id, str(exc)))
            log.error("%s: %s", profile.id, exc)
            item = None
        if item is not None:
            ready.append(item)
        elif run.progress:
            run.progress(profile)
    return ready


def _ready_or_settled(run: _Run, profile: Profile, plan: DigestPlan, stuck: list[LedgerMessage]) -> _Ready | None:
    store, config, report, dry_run = run.store, run.config, run.report, run.dry_run
    if _skipped_as_paused(run, profile):
        return None
    if stuck:
        for message in stuck:
            why = message.error or "handed over by an earlier run that never learned the outcome"
            _report_stuck(report, profile.id, message.message_id, message.papers, message.created_at, why)
        return None
    now = run.clock()
    if plan.is_empty:
        report.skipped.append(Skipped(profile.id, plan.empty_reason or "nothing to send"))
        if not dry_run:  # its candidates were weighed: the next digest starts after them
            store.record_attempt(profile.id, now, empty_window_seq=plan.candidates_until_seq)
        return None
    links = links_for(store, config, profile, create_token=not dry_run)
    with trace.stage("composing"):
        message_id = new_message_id(config.smtp.sender)
    job = ComposeJob(plan, links, message_id, now)
    return _Ready(profile, plan, job, "email" if profile.wants_email else "feed")


def _skipped_as_paused(run: _Run, profile: Profile) -> bool:
    if not run.store.subscriber_state(profile.id).paused:
        return False
    run.report.skipped.append(Skipped(profile.id, "paused (unsubscribed); `digest resume` undoes it"))
    return True


def _deliver(run: _Run, ready: list[_Ready], composed: Iterator[ComposeResult], lanes: _Lanes | None = None) -> None:
    for item, result in zip(ready, composed, strict=True):
        if _stopping(run):
            return
        if lanes is not None:
            lanes.put(item, result)
        else:
            _deliver_item(run, item, result)


def _deliver_item(run: _Run, item: _Ready, result: ComposeResult) -> None:
    report = run.report
    try:
        _deliver_one(run, item, result)
    except (UnreachableError, StoreError) as exc:
        # Every other message would fail the same way (no server; a database that cannot record): stop here,
        # with what was done so far reported.
        report.failed.append(Failed(item.profile.id, str(exc)))
        report.stopped_by = str(exc)
        log.error("%s: %s; stopping the send", item.profile.id, exc)
    except DigestError as exc:
        report.failed.append(Failed(item.profile.id, str(exc)))
        log.error("%s: %s", item.profile.id, exc)
    if run.progress:
        run.progress(item.profile)


class _Lanes:
    """Several deliveries at once: one thread per transport (an SMTP connection each), each with its own database
    connection, taking messages from one short queue. A message goes through exactly the steps it goes through
    alone (ledger `sending` committed -> hand-over marked -> `sent`/`failed`), so the guarantees are unchanged;
    only different subscribers' messages overlap. A lane that meets an error that stops the send (no server, a
    ledger that cannot record) stops them all: the other lanes skip what is queued, which the report lists as not
    attempted."""

    def __init__(self, run: _Run, transports: Sequence[Transport | None]) -> None:
        self._run = run
        self._queue: queue.Queue[tuple[_Ready, ComposeResult] | None] = queue.Queue(maxsize=2 * len(transports))
        self._lock = threading.Lock()  # the progress bar and the report are shared
        self._threads = [
            threading.Thread(target=self._lane, args=(transport,), name=f"delivery-{number}", daemon=True)
            for number, transport in enumerate(transports, start=1)
        ]
        for thread in self._threads:
            thread.start()

    def put(self, item: _Ready, result: ComposeResult) -> None:
        self._queue.put((item, result))

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _lane(self, transport: Transport | None) -> None:
        run = self._run
        try:
            own: Store | None = run.store.reopen()
        except StoreError as exc:
            run.report.stopped_by = str(exc)
            own = None
        progress = run.progress
        locked_progress = None if progress is None else lambda profile: self._locked(progress, profile)
        lane = replace(run, store=own or run.store, transport=transport, progress=locked_progress)
        try:
            while (work := self._queue.get()) is not None:
                if own is None or _stopping(run):
                    continue  # keep taking work, so that the sender never waits on a full queue
                try:
                    _deliver_item(lane, *work)
                except Exception as exc:  # a bug of ours: this message failed, and the send stops
                    run.report.failed.append(Failed(work[0].profile.id, f"internal error: {exc!r}"))
                    run.report.stopped_by = f"internal error in a delivery lane: {exc!r}"
                    log.exception("%s: internal error while delivering", work[0].profile.id)
        finally:
            if own is not None:
                own.close()

    def _locked(self, progress: Callable[[Profile], None], profile: Profile) -> None:
        with self._lock:
            progress(profile)


def _deliver_one(run: _Run, item: _Ready, result: ComposeResult) -> None:
    store, config, transport, clock, report = run.store, run.config, run.transport, run.clock, run.report
    if isinstance(result, DigestError):
        raise result
    profile, plan, job = item.profile, item.plan, item.job
    picks = [PickRecord(s.paper.id or "", s.score, s.why) for s in plan.picks]
    entry = Sent(profile.id, job.message_id, tuple(_paper_ids(picks)), candidates=plan.candidates)
    if run.dry_run:
        report.sent.append(entry)
        return
    if item.channel == "email" and transport is None:
        raise DeliveryError("no transport configured")
    if has_pending_unsubscribes(config):  # an unsubscribe the store could not take during this send
        apply_pending_unsubscribes(store, config, clock=clock)
    if _skipped_as_paused(run, profile):  # unsubscribed while this batch was being composed
        return
    try:
        rowid = store.begin_message(
            profile.id,
            job.message_id,
            picks,
            channel=item.channel,
            subject=result.subject,
            candidates_until=plan.candidates_until,
            candidates_until_seq=plan.candidates_until_seq,
            now=job.now,
            record_attempt=True,
            claim=run.claims.holder if run.claims is not None else None,
        )
    except LedgerConflictError as exc:
        report.skipped.append(Skipped(profile.id, str(exc)))
        log.warning("%s", exc)
        return
    if item.channel == "feed":
        store.finish_message(rowid, "sent", clock())
        report.sent.append(replace(entry, channel="feed"))
        return
    assert transport is not None
    handed_over = False

    def handing_over() -> None:
        nonlocal handed_over
        store.mark_handed_over(rowid, clock())
        handed_over = True

    try:
        transport.send(result.data, profile.email, handing_over)
    except LedgerConflictError as exc:  # released by another sender before the hand-over: it sends these papers
        report.skipped.append(Skipped(profile.id, str(exc)))
        log.warning("%s: %s", profile.id, exc)
        return
    except UnknownOutcomeError as exc:
        # The server may have the message: never resubmitted; the row stays `sending`, reported as stuck.
        _report_stuck(report, profile.id, job.message_id, picks, utc_iso(job.now), str(exc))
        log.error("%s: outcome unknown: %s", profile.id, exc)
        return
    except DeliveryError as exc:
        store.finish_message(rowid, "failed", clock(), str(exc))
        if isinstance(exc, UnreachableError):
            raise  # reported, and the send stopped, by the caller
        report.failed.append(Failed(profile.id, str(exc), job.message_id))
        log.error("%s: not delivered: %s", profile.id, exc)
        return
    try:
        store.finish_message(rowid, "sent", clock())
    except StoreError as exc:
        # Delivered, but the ledger cannot say so: it stays `sending` (stuck), never sent again.
        reason = f"delivered, but the ledger could not record it ({exc})"
        _report_stuck(report, profile.id, job.message_id, picks, utc_iso(job.now), reason)
        raise
    report.sent.append(entry)
    log.debug("%s: sent %d paper(s) as %s", profile.id, len(picks), job.message_id)


def _report_stuck(
    report: SendReport, subscriber: str, message_id: str, picks: Sequence[PickRecord], created_at: str, why: str
) -> None:
    report.stuck.append(Stuck(subscriber, message_id, created_at, tuple(_paper_ids(picks)), why))


def resolve_stuck(store: Store, subscriber: str, state: str, now: datetime) -> list[str]:
    """Settle stuck messages by hand: `sent` (it arrived; its papers are never sent again) or `failed`."""
    if state not in ("sent", "failed"):
        raise DigestError("--as takes sent or failed")
    note = f"settled by hand as {state}"
    return store.resolve_stuck(subscriber, state, now, note)  # type: ignore[arg-type]

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
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from jinja2 import Environment

from digest.compose import compose_digest
from digest.config import Config
from digest.deliver import Transport
from digest.errors import DeliveryError, DigestError, LockedError
from digest.plan import DigestPlan, plan_digests
from digest.rank import RankModel, build_model
from digest.store import PickRecord, Store
from digest.subscribers import Profile

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
# Subscribers planned together: big enough for the batched ranking to pay, small enough that the first
# message leaves soon and the plans in memory stay small.
PLAN_BATCH = 1000


@dataclass
class SendReport:
    sent: list[dict[str, object]] = field(default_factory=list)
    skipped: list[dict[str, object]] = field(default_factory=list)
    failed: list[dict[str, object]] = field(default_factory=list)
    stuck: list[dict[str, object]] = field(default_factory=list)
    dry_run: bool = False
    interrupted: bool = False

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "sent": self.sent,
            "skipped": self.skipped,
            "failed": self.failed,
            "stuck": self.stuck,
        }
        if self.dry_run:
            data["dry_run"] = True
        if self.interrupted:
            data["interrupted"] = True
        return data

    def summary(self) -> str:
        verb = "would send" if self.dry_run else "sent"
        line = (
            f"{verb} {len(self.sent)}, skipped {len(self.skipped)}, failed {len(self.failed)}, "
            f"stuck {len(self.stuck)}"
        )
        return line + (" (interrupted)" if self.interrupted else "")


def lock_path(config: Config) -> Path:
    return config.paths.database.with_name(config.paths.database.name + ".send.lock")


@contextmanager
def send_lock(path: Path, *, wait: float = 0.0, poll: float = 0.1) -> Iterator[None]:
    """One sender at a time, across processes: an flock the kernel releases even after SIGKILL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise LockedError(
                        f"another `digest send` or `digest run` is sending (pid {holder}); "
                        "it will deliver these digests, or try again when it is done"
                    ) from None
                time.sleep(poll)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def _paper_ids(picks: Sequence[PickRecord]) -> list[str]:
    return [p.paper_id for p in picks]


def send_digests(
    store: Store,
    config: Config,
    env: Environment,
    profiles: Sequence[Profile],
    transport: Transport | None,
    *,
    clock: Clock,
    dry_run: bool = False,
    model: RankModel | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[Profile], None] | None = None,
) -> SendReport:
    """Compose and deliver each subscriber's next digest; one failure never stops the others.

    Digests are planned PLAN_BATCH subscribers at a time (plan_digests: one batched ranking, the same plans as
    plan_digest one by one), then each is composed, recorded and delivered on its own, exactly as before.
    """
    report = SendReport(dry_run=dry_run)
    model = model or build_model(store.all_papers())
    for start in range(0, len(profiles), PLAN_BATCH):
        if stop is not None and stop.is_set():
            report.interrupted = True
            break
        batch = profiles[start : start + PLAN_BATCH]
        plans = plan_digests(store, batch, clock(), model)
        for profile in batch:
            if stop is not None and stop.is_set():
                report.interrupted = True
                break
            try:
                plan = plans.get(profile.id)
                if isinstance(plan, DigestError):
                    raise plan
                _send_one(store, config, env, profile, transport, clock, dry_run, model, report, plan)
            except DigestError as exc:
                report.failed.append({"subscriber": profile.id, "error": str(exc)})
                log.error("%s: %s", profile.id, exc)
            if progress:
                progress(profile)
    return report


def _send_one(
    store: Store,
    config: Config,
    env: Environment,
    profile: Profile,
    transport: Transport | None,
    clock: Clock,
    dry_run: bool,
    model: RankModel,
    report: SendReport,
    plan: DigestPlan | None = None,
) -> None:
    if store.subscriber_state(profile.id).paused:
        report.skipped.append({"subscriber": profile.id, "reason": "paused (unsubscribed); `digest resume` undoes it"})
        return
    stuck = store.stuck_messages(profile.id)
    if stuck:
        for message in stuck:
            report.stuck.append(
                {
                    "subscriber": profile.id,
                    "message_id": message.message_id,
                    "created_at": message.created_at,
                    "papers": _paper_ids(message.papers),
                    "fix": f"digest send --resolve-stuck {profile.id} --as sent|failed, or --retry-stuck",
                }
            )
        return
    now = clock()
    composed = compose_digest(store, config, env, profile, now, model=model, create_token=not dry_run, plan=plan)
    plan = composed.plan
    if composed.is_empty:
        report.skipped.append({"subscriber": profile.id, "reason": plan.empty_reason or "nothing to send"})
        if not dry_run:
            store.record_attempt(profile.id, now)
        return
    picks = [PickRecord(s.paper.id or "", s.score, s.why) for s in plan.picks]
    channel = "email" if profile.wants_email else "feed"
    if dry_run:
        report.sent.append({"subscriber": profile.id, "message_id": composed.message_id, "papers": _paper_ids(picks)})
        return
    assert composed.message is not None and composed.message_id is not None and composed.rendered is not None
    rowid = store.begin_message(
        profile.id,
        composed.message_id,
        picks,
        channel=channel,
        subject=composed.rendered.subject,
        candidates_until=plan.candidates_until,
        now=now,
    )
    store.record_attempt(profile.id, now)
    if channel == "feed":
        store.finish_message(rowid, "sent", clock())
        report.sent.append(
            {"subscriber": profile.id, "message_id": composed.message_id, "papers": _paper_ids(picks), "channel": "feed"}
        )
        return
    if transport is None:
        raise DeliveryError("no transport configured")
    try:
        transport.send(composed.message, profile.email)
    except DeliveryError as exc:
        store.finish_message(rowid, "failed", clock(), str(exc))
        report.failed.append({"subscriber": profile.id, "error": str(exc), "message_id": composed.message_id})
        log.error("%s: not delivered: %s", profile.id, exc)
        return
    store.finish_message(rowid, "sent", clock())
    report.sent.append({"subscriber": profile.id, "message_id": composed.message_id, "papers": _paper_ids(picks)})
    log.info("%s: sent %d paper(s) as %s", profile.id, len(picks), composed.message_id)


def resolve_stuck(store: Store, subscriber: str, state: str, now: datetime) -> list[str]:
    """Settle stuck messages by hand: `sent` (it arrived; its papers are never sent again) or `failed`."""
    if state not in ("sent", "failed"):
        raise DigestError("--as takes sent or failed")
    note = f"settled by hand as {state}"
    return store.resolve_stuck(subscriber, state, now, note)  # type: ignore[arg-type]

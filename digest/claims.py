"""Several senders on one PostgreSQL database: each subscriber planned and sent by one sender at a time.

With [database] url, any number of `digest send`/`digest run` processes on any hosts share a send. Each claims
a batch of the subscribers it was asked to serve (Store.claim_subscribers: a row per subscriber in send_claims,
taken with FOR UPDATE SKIP LOCKED, so two senders never take the same rows), holds them under a lease
([database] lease_seconds, on the database's clock) that a thread renews while it works, and lets each go as
soon as its digest is settled. A sender that dies stops renewing: once its lease runs out, another sender takes
those subscribers, releases their `sending` messages whose hand-over never started (their papers become
candidates again) and reports the ones whose hand-over had started as stuck. The ledger stays the last word: a
message is recorded only while its sender still holds the claim, and the unique index message_papers_live refuses
a paper already sending or sent to that subscriber whoever writes it.

A sender serves everyone it was given: when nothing is left to claim but other senders still hold some of them,
it waits (polling) until they finish or their lease runs out, so that when `digest send` returns, each of its
subscribers was handled by someone. With SQLite none of this is used: one sender at a time, under the flock.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from digest.clock import Clock
from digest.errors import StoreError
from digest.store import Store
from digest.subscribers import Profile

log = logging.getLogger(__name__)
# A claimed batch is checked (due again? stuck messages to settle?) by this hook, which returns those to send.
OnClaimed = Callable[[Store, Sequence[Profile]], list[Profile]]


def holder_id() -> str:
    """Who holds a claim: host, process and a random part (a pid may be reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Claims:
    """This sender's claims on `profiles` (use as a context manager, or call close()). Its own database
    connection, shared by the sender's thread and the lease thread under a lock."""

    def __init__(
        self,
        store: Store,
        profiles: Sequence[Profile],
        *,
        lease: float,
        batch: int,
        clock: Clock,
        on_claimed: OnClaimed | None = None,
        poll: float | None = None,
    ) -> None:
        self.holder = holder_id()
        self.lease = lease
        self.batch = batch
        self.claimed: list[Profile] = []  # everyone this sender took, in order
        self._clock = clock
        self._on_claimed = on_claimed
        self._poll = poll if poll is not None else min(1.0, lease / 4)
        self._profiles = {p.id: p for p in profiles}
        self._store = store.reopen()
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._done: set[str] = set()
        self._stop = threading.Event()
        try:
            self._store.offer_claims(list(self._profiles))
            self._started = self._store.database_time()
        except BaseException:
            self._store.close()
            raise
        self._renewer = threading.Thread(target=self._renew, name="claims-lease", daemon=True)
        self._renewer.start()

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batches(self, size: int, stopping: Callable[[], bool]) -> Iterator[list[Profile]]:
        """Claimed batches of at most `size` (and [database] claim_batch) subscribers, until every one of the
        profiles was handled here or elsewhere, or `stopping()`. An empty batch: nothing to claim now, but other
        senders hold some of them; the caller should settle what it holds before asking for the next batch."""
        ids = list(self._profiles)
        while not stopping():
            with self._lock:
                self._flush()
                taken = self._store.claim_subscribers(
                    self.holder, ids, limit=min(size, self.batch), lease=self.lease, started=self._started
                )
                self._held.update(taken)
                if taken:
                    for message_id in self._store.release_unhanded(self._clock(), taken):
                        log.info("released %s: its sender stopped before handing it over", message_id)
                waiting = 0 if taken else self._store.claimed_elsewhere(self.holder, ids)
            if not taken:
                if not waiting:
                    return
                log.debug("%d subscriber(s) held by other senders; waiting for them", waiting)
                yield []  # the caller delivers what it has queued meanwhile (another sender may wait for those)
                time.sleep(self._poll)
                continue
            profiles = [self._profiles[i] for i in taken]
            wanted = self._on_claimed(self._store, profiles) if self._on_claimed else profiles
            self.claimed.extend(wanted)
            keep = {p.id for p in wanted}
            for profile in profiles:
                if profile.id not in keep:
                    self.settled(profile.id)
            if wanted:
                yield wanted

    def settled(self, subscriber: str) -> None:
        """This subscriber's digest is handled (sent, skipped, failed or stuck): its claim goes at the next turn."""
        with self._lock:
            self._done.add(subscriber)

    def _flush(self) -> None:
        """Under the lock: let go of the claims whose digests are settled."""
        if self._done:
            self._store.release_claims(self.holder, sorted(self._done), finished=True)
            self._held -= self._done
            self._done.clear()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                with self._lock:
                    self._flush()
                    if self._held:
                        kept = self._store.renew_claims(self.holder, self.lease)
                        if kept < len(self._held):
                            log.warning(
                                "%d claim(s) taken over by another sender (this one was too slow); it sends those",
                                len(self._held) - kept,
                            )
            except StoreError as exc:  # the next turn tries again; the ledger refuses what an expired claim sends
                log.warning("send claims: could not renew the lease (%s)", exc)

    def close(self) -> None:
        """Stop renewing; let go of every claim: the settled ones as finished, the rest (not attempted) for any
        sender to take at once."""
        self._stop.set()
        self._renewer.join()
        try:
            with self._lock:
                self._flush()
                if self._held:
                    self._store.release_claims(self.holder, sorted(self._held), finished=False)
                    self._held.clear()
        except StoreError as exc:
            log.warning("send claims: not released (%s); they expire after [database] lease_seconds", exc)
        finally:
            self._store.close()

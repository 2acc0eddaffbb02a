"""The store's part of several senders (digest.claims), on both engines: claims are disjoint, expire, are renewed
and released; and the unique index over live picks refuses a paper already sending or sent to a reader, whoever
writes it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from conftest import StoreMaker

from digest.errors import LedgerConflictError, StoreConflictError
from digest.paper import make_paper
from digest.store import PickRecord, Store

AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
READERS = [f"r{n:02d}" for n in range(10)]


def _begin(store: Store, subscriber: str, message_id: str, paper: str, claim: str | None = None) -> int:
    return store.begin_message(
        subscriber,
        message_id,
        [PickRecord(paper, 0.5, "why")],
        channel="email",
        subject="s",
        candidates_until=AT,
        now=AT,
        claim=claim,
    )


def test_claims_are_disjoint_expire_and_are_not_taken_again_once_finished(make_store: StoreMaker) -> None:
    with make_store() as one, make_store() as two:
        one.offer_claims(READERS)
        two.offer_claims(READERS)  # a second offer changes nothing
        started = one.database_time()
        first = one.claim_subscribers("a", READERS, limit=4, lease=60, started=started)
        second = two.claim_subscribers("b", READERS, limit=4, lease=60, started=started)
        assert first == READERS[:4] and second == READERS[4:8]
        assert one.claimed_elsewhere("a", READERS) == 4 and one.renew_claims("a", 60) == 4
        one.release_claims("a", first[:2], finished=True)
        one.release_claims("a", first[2:], finished=False)  # not attempted: anyone may take them at once
        assert two.claim_subscribers("b", READERS, limit=10, lease=0.2, started=started) == [*first[2:], *READERS[8:]]
        time.sleep(0.3)  # b's short lease runs out: another sender takes those over, but never the finished two
        taken = one.claim_subscribers("c", READERS, limit=10, lease=60, started=started)
        assert taken == [*first[2:], *READERS[8:]]
        assert two.renew_claims("b", 60) == 4  # b still holds its first batch, whose lease it kept renewing


def test_a_message_needs_its_sender_s_claim(make_store: StoreMaker) -> None:
    with make_store() as store:
        store.add_papers([make_paper(title="One", abstract="An abstract.")], "t", AT)
        paper = store.all_papers()[0].id or ""
        store.offer_claims(["ada"])
        store.claim_subscribers("a", ["ada"], limit=1, lease=60, started=store.database_time())
        with pytest.raises(LedgerConflictError, match="took this subscriber over"):
            _begin(store, "ada", "<x@lab>", paper, claim="b")
        _begin(store, "ada", "<y@lab>", paper, claim="a")


def test_the_live_picks_index_refuses_a_paper_twice_and_frees_it_when_a_message_fails(
    make_store: StoreMaker,
) -> None:
    with make_store() as one, make_store() as two:
        one.add_papers([make_paper(title=title, abstract="An abstract.") for title in ("One", "Two")], "t", AT)
        paper, other = (p.id or "" for p in one.all_papers())
        first = _begin(one, "ada", "<1@lab>", paper)
        with pytest.raises(LedgerConflictError):
            _begin(two, "ada", "<2@lab>", paper)  # another connection: another sender
        # Written past the check, the database itself refuses a second live pick of the paper for ada.
        second = _begin(two, "ada", "<5@lab>", other)
        with pytest.raises(StoreConflictError, match="refused a row"), two.transaction() as db:
            db.execute(
                "INSERT INTO message_papers (message, subscriber, paper_id, position, score, why, live)"
                " VALUES (?, 'ada', ?, 1, 0.5, 'why', 1)",
                (second, paper),
            )
        _begin(two, "grace", "<3@lab>", paper)  # another reader may get it
        one.finish_message(first, "failed", AT, "refused")
        one.finish_message(second, "sent", AT)
        _begin(two, "ada", "<4@lab>", paper)  # failed: its papers are candidates again

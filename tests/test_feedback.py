"""Feedback end to end: a like or dislike recorded in the store changes the next ranking."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import NOW

from digest.errors import ConfigError, DigestError
from digest.feedback import record_feedback
from digest.paper import make_paper
from digest.plan import plan_digest
from digest.store import Store
from digest.subscribers import Profile, SubscriberSet

RECORDS = json.loads((Path(__file__).parent / "data" / "rank_corpus.json").read_text(encoding="utf-8"))["papers"]
READER = Profile(
    name="Reader",
    email="reader@example.org",
    max_papers=18,
    min_score=0.0,
    diversity=0.0,
    interests={"keywords": ["networks"]},
).model_copy(update={"id": "reader"})
SUBSCRIBERS = SubscriberSet((READER,), ())


@pytest.fixture
def filled(store: Store) -> Store:
    store.add_papers(
        [make_paper(title=r["title"], abstract=r["abstract"]) for r in RECORDS], "test", NOW - timedelta(hours=1)
    )
    return store


def positions(store: Store) -> dict[str, int]:
    plan = plan_digest(store, READER, NOW)
    return {pick.paper.title: i for i, pick in enumerate(plan.picks)}


def scores(store: Store) -> dict[str, float]:
    return {pick.paper.title: pick.score for pick in plan_digest(store, READER, NOW).picks}


def test_a_like_moves_the_liked_papers_neighbours_up(filled: Store) -> None:
    before = positions(filled)
    neighbour = "Structured pruning of transformer attention heads"
    liked = record_feedback(filled, SUBSCRIBERS, "reader", "The lottery ticket hypothesis revisited", 1, NOW)
    after = positions(filled)
    assert filled.feedback("reader") == {liked.id: 1}
    assert after[neighbour] < before[neighbour]
    assert liked.title not in after  # a rated paper is not offered again


def test_a_dislike_moves_the_disliked_papers_neighbours_down(filled: Store) -> None:
    before = scores(filled)
    neighbour = "Oversmoothing in deep graph neural networks"
    record_feedback(filled, SUBSCRIBERS, "reader", "Expressive power of subgraph graph networks", -1, NOW)
    after = scores(filled)
    assert after[neighbour] < before[neighbour]
    unrelated = "Multilingual neural machine translation at scale"
    assert after[unrelated] / after[neighbour] > before[unrelated] / before[neighbour]


def test_the_latest_rating_wins(filled: Store) -> None:
    paper = record_feedback(filled, SUBSCRIBERS, "reader", "The lottery ticket hypothesis revisited", 1, NOW)
    record_feedback(filled, SUBSCRIBERS, "reader", paper.id or "", -1, NOW)
    assert filled.feedback("reader") == {paper.id: -1}


def test_unknown_paper_or_subscriber_is_one_clear_error_and_writes_nothing(filled: Store) -> None:
    with pytest.raises(DigestError, match="no paper 'no such title' in the store"):
        record_feedback(filled, SUBSCRIBERS, "reader", "no such title", 1, NOW)
    with pytest.raises(DigestError, match="no subscriber 'nobody'"):
        record_feedback(filled, SUBSCRIBERS, "nobody", "The lottery ticket hypothesis revisited", 1, NOW)
    broken = SubscriberSet((), ("subs/bad.toml: email is required",))
    with pytest.raises(ConfigError, match="email is required"):
        record_feedback(filled, broken, "bad", "The lottery ticket hypothesis revisited", 1, NOW)
    assert filled.feedback("reader") == {} and filled.feedback("nobody") == {}

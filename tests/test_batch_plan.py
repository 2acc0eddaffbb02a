"""plan_digests (the one planning function: send plans many subscribers at once, preview and `digest rank` one)
gives every subscriber exactly the plan that planning them alone from first principles gives (their candidates
from candidate_papers, ranked by rank()): same candidates, picks, scores, explanations and empty reasons, and the
same RankError for an empty profile, without stopping the others."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from conftest import NOW
from test_batch_rank import TOPICS, synthetic_papers

from digest.errors import RankError
from digest.paper import make_paper
from digest.plan import DigestPlan, _rank_error, _rated, candidate_papers, plan_digest, plan_digests
from digest.rank import RankModel, build_model, rank
from digest.store import PickRecord, Store
from digest.subscribers import Profile


def profile(subscriber: str, **fields: object) -> Profile:
    base: dict[str, object] = {"name": "Reader", "email": f"{subscriber}@example.org"}
    return Profile.model_validate({**base, **fields}).model_copy(update={"id": subscriber})


@pytest.fixture
def filled(store: Store) -> Store:
    rng = random.Random(5)
    old = synthetic_papers(70, rng, "old-")
    store.add_papers([make_paper(title=p.title, abstract=p.abstract) for p in old], "test", NOW - timedelta(days=40))
    for day in (6, 3, 1):  # three days of new papers
        new = synthetic_papers(25, rng, f"d{day}-")
        store.add_papers(
            [make_paper(title=p.title, abstract=p.abstract) for p in new], "test", NOW - timedelta(days=day)
        )
    return store


def reader_profiles(store: Store) -> list[Profile]:
    rng = random.Random(9)
    phrases = [p for words in TOPICS.values() for p in words]
    old_titles = [p.title for p in store.all_papers()[:70]]
    profiles = []
    for n in range(24):
        interests: dict[str, object] = {}
        if n % 3 != 1:
            interests["keywords"] = rng.sample(phrases, 2)
        if n % 3 != 0:
            interests["papers"] = rng.sample(old_titles, 2)
        if n % 4 == 0:
            interests["exclude"] = rng.sample(phrases, 1)
        profiles.append(
            profile(
                f"r{n:02d}",
                interests=interests,
                lookback_days=rng.choice([2, 7, 30]),
                max_papers=rng.choice([3, 10]),
                min_score=rng.choice([0.0, 0.05, 0.3]),
                diversity=rng.choice([0.0, 0.3]),
            )
        )
    profiles.append(profile("empty", interests={"papers": ["A paper nobody ingested"]}))
    profiles.append(profile("late", interests={"keywords": ["dark matter"]}, lookback_days=1))
    return profiles


def history(store: Store) -> None:
    """Some readers had digests: their window starts later, and what was sent is never a candidate again."""
    papers = store.papers_since(NOW - timedelta(days=10), NOW)
    for n, subscriber in enumerate(["r00", "r01", "r05", "late"]):
        sent = [PickRecord(p.id or "", 0.5, "why") for p in papers[n * 3 : n * 3 + 4]]
        until = NOW - timedelta(days=4) if subscriber != "late" else NOW
        store.begin_message(
            subscriber, f"<m{n}@x>", sent, channel="email", subject="s", candidates_until=until, now=until
        )
    by_id = {p.id: p for p in papers}
    ids = sorted(i for i in by_id if i)
    store.set_feedback("r02", ids[0], 1, NOW)
    store.set_feedback("r02", ids[-1], -1, NOW)
    store.set_feedback("r03", ids[5], -1, NOW)


def assert_same_plan(got: DigestPlan, expected: DigestPlan) -> None:
    assert got.subscriber == expected.subscriber
    assert got.candidates == expected.candidates
    assert got.candidates_until == expected.candidates_until
    assert got.empty_reason == expected.empty_reason
    assert [s.paper for s in got.picks] == [s.paper for s in expected.picks]
    assert [s.score for s in got.picks] == pytest.approx([s.score for s in expected.picks], abs=1e-5)
    assert [s.why for s in got.picks] == [s.why for s in expected.picks]


def planned_alone(store: Store, reader: Profile, model: RankModel) -> DigestPlan:
    """One subscriber's plan the direct way: the window's unsent papers, ranked for them alone."""
    high = store.max_seq()
    candidates = candidate_papers(store, reader, NOW, high)
    if not candidates:
        return DigestPlan(reader, (), 0, NOW, "no new papers since the last digest", high)
    liked, disliked = _rated(store, reader)
    try:
        picks = rank(
            model,
            candidates,
            reader.interests,
            liked=liked,
            disliked=disliked,
            max_papers=reader.max_papers,
            min_score=reader.min_score,
            diversity=reader.diversity,
        )
    except RankError as exc:
        raise _rank_error(reader, exc) from None
    reason = None if picks else f"none of {len(candidates)} new paper(s) scored above min_score {reader.min_score:g}"
    return DigestPlan(reader, tuple(picks), len(candidates), NOW, reason, high)


def test_plan_digests_equals_planning_each_subscriber_alone(filled: Store) -> None:
    history(filled)
    profiles = reader_profiles(filled)
    model = build_model(filled.all_papers())
    plans = plan_digests(filled, profiles, NOW, model)
    assert set(plans) == {p.id for p in profiles}
    picked = 0
    for reader in profiles:
        try:
            expected = planned_alone(filled, reader, model)
        except RankError as exc:
            assert isinstance(plans[reader.id], RankError) and str(plans[reader.id]) == str(exc)
            continue
        got = plans[reader.id]
        assert isinstance(got, DigestPlan), reader.id
        assert_same_plan(got, expected)
        picked += len(got.picks)
    assert picked > 50
    assert isinstance(plans["empty"], RankError)
    assert plans["late"].empty_reason == "no new papers since the last digest"  # type: ignore[union-attr]


def test_plan_digests_builds_the_model_when_not_given(filled: Store) -> None:
    reader = reader_profiles(filled)[0]
    got = plan_digests(filled, [reader], NOW)[reader.id]
    assert isinstance(got, DigestPlan)
    assert_same_plan(got, plan_digest(filled, reader, NOW))


def test_plan_digests_with_an_empty_store(store: Store) -> None:
    reader = profile("r", interests={"keywords": ["robots"]})
    assert plan_digests(store, [reader], NOW)["r"].empty_reason == "no new papers since the last digest"  # type: ignore[union-attr]
    assert plan_digests(store, [], NOW) == {}

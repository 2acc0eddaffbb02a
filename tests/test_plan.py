"""plan_digest: which papers are candidates for a subscriber's next digest, and what happens when none pass."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import NOW

from digest.errors import RankError
from digest.paper import make_paper
from digest.plan import candidate_papers, plan_digest
from digest.store import PickRecord, Store
from digest.subscribers import Profile


def profile(**fields: object) -> Profile:
    base: dict[str, object] = {"name": "Reader", "email": "reader@example.org", "interests": {"keywords": ["robot"]}}
    return Profile.model_validate({**base, **fields}).model_copy(update={"id": "reader"})


def add(store: Store, title: str, at_days_ago: float) -> str:
    store.add_papers(
        [make_paper(title=title, abstract=f"We study {title.lower()} in detail.")],
        "test",
        NOW - timedelta(days=at_days_ago),
    )
    paper = store.find_paper(title)
    assert paper is not None and paper.id
    return paper.id


def test_first_digest_looks_back_lookback_days(store: Store) -> None:
    add(store, "Robot old", 10)
    add(store, "Robot recent", 2)
    assert [p.title for p in candidate_papers(store, profile(lookback_days=7), NOW)] == ["Robot recent"]
    assert len(candidate_papers(store, profile(lookback_days=30), NOW)) == 2


def test_later_digests_start_where_the_last_window_ended_and_never_resend(store: Store) -> None:
    sent = add(store, "Robot sent before", 3)
    add(store, "Robot before the window end", 2.5)
    store.begin_message(
        "reader",
        "<m1@x>",
        [PickRecord(sent, 0.5, "why")],
        channel="email",
        subject="s",
        candidates_until=NOW - timedelta(days=2),
        now=NOW - timedelta(days=2),
    )
    add(store, "Robot new", 1)
    assert [p.title for p in candidate_papers(store, profile(), NOW)] == ["Robot new"]
    assert plan_digest(store, profile(), NOW).first is False  # the email's welcome is for the first digest only


def test_a_first_digest_is_marked_first(store: Store) -> None:
    add(store, "Robot recent", 2)
    plan = plan_digest(store, profile(), NOW)
    assert plan.picks and plan.first is True


def test_windows_follow_commit_order_not_first_seen(store: Store) -> None:
    """A paper stamped before the last digest but committed after it was planned (a long ingest racing a
    send) is a candidate next time: windows end at the last committed paper the planner could see."""
    add(store, "Robot one", 3)
    plan = plan_digest(store, profile(min_score=0.0), NOW)
    late = add(store, "Robot committed late", 5)  # first_seen five days ago, committed after the plan
    store.begin_message(
        "reader",
        "<m1@x>",
        [PickRecord(s.paper.id or "", s.score, s.why) for s in plan.picks],
        channel="email",
        subject="s",
        candidates_until=plan.candidates_until,
        candidates_until_seq=plan.candidates_until_seq,
        now=NOW,
    )
    assert [p.id for p in candidate_papers(store, profile(), NOW + timedelta(hours=1))] == [late]


def test_plan_ranks_and_explains(store: Store) -> None:
    add(store, "Robot grasping", 1)
    add(store, "Galaxy clusters", 1)
    plan = plan_digest(store, profile(min_score=0.0), NOW)
    assert plan.candidates == 2 and plan.candidates_until == NOW and plan.empty_reason is None
    assert [p.paper.title for p in plan.picks] == ["Robot grasping"]
    assert 'title matches "robot"' in plan.picks[0].why


def test_empty_plans_say_why(store: Store) -> None:
    assert plan_digest(store, profile(), NOW).empty_reason == "no new papers since the last digest"
    add(store, "Galaxy clusters", 1)
    plan = plan_digest(store, profile(min_score=0.5), NOW)
    assert plan.is_empty and plan.empty_reason == "none of 1 new paper(s) scored above min_score 0.5"


def test_an_empty_profile_names_the_subscriber(store: Store) -> None:
    add(store, "Robot grasping", 1)
    with pytest.raises(RankError, match="subscriber 'reader'.*none of its \\[interests\\] papers is in the store"):
        plan_digest(store, profile(interests={"papers": ["A paper nobody ingested"]}), NOW)


def test_liked_papers_named_in_the_profile_are_used(store: Store) -> None:
    add(store, "Robot grasping of cups", 1)
    add(store, "Robot grasping of glasses", 1)
    add(store, "Galaxy clusters", 1)
    plan = plan_digest(store, profile(min_score=0.0, interests={"papers": ["Robot grasping of cups"]}), NOW)
    assert [p.paper.title for p in plan.picks][0] == "Robot grasping of glasses"
    assert "Robot grasping of cups" not in [p.paper.title for p in plan.picks]

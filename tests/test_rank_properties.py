"""Invariants of ranking, checked on generated papers and profiles (hypothesis)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.errors import RankError
from digest.paper import Paper, make_paper
from digest.rank import build_model, rank
from digest.subscribers import Interests

DATA = Path(__file__).parent / "data" / "rank_corpus.json"
RECORDS = json.loads(DATA.read_text(encoding="utf-8"))["papers"]
# Three copies with numbered titles: enough papers for the concept (LSA) block to be in use, as in production.
CORPUS = [
    replace(make_paper(title=f"{r['title']} part {i}", abstract=r["abstract"]), id=f"{r['id']}-{i}")
    for i in range(3)
    for r in RECORDS
]
MODEL = build_model(CORPUS)
assert MODEL.has_concepts
WORDS = sorted({w.strip(".,").lower() for r in RECORDS for w in f"{r['title']} {r['abstract']}".split() if len(w) > 4})

words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)


@st.composite
def papers(draw: st.DrawFn, prefix: str = "c") -> list[Paper]:
    count = draw(st.integers(1, 8))
    result = []
    for i in range(count):
        title = draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=8).map(" ".join))
        abstract = draw(st.lists(st.sampled_from(WORDS), min_size=3, max_size=30).map(" ".join))
        result.append(replace(make_paper(title=title, abstract=abstract + "."), id=f"{prefix}{i}"))
    return result


interests = st.builds(
    Interests,
    keywords=st.lists(words, min_size=1, max_size=3).map(tuple),
    exclude=st.lists(words, max_size=2).map(tuple),
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def scores(candidates: list[Paper], profile: Interests, liked: list[Paper] = ()) -> dict[str, float]:
    picks = rank(MODEL, candidates, profile, liked=liked, max_papers=100, min_score=0.0)
    return {s.paper.id: s.score for s in picks}


@SETTINGS
@given(papers(), interests, st.floats(0.0, 1.0))
def test_scores_in_range_ordered_and_deterministic(
    candidates: list[Paper], profile: Interests, diversity: float
) -> None:
    first = rank(MODEL, candidates, profile, max_papers=100, diversity=diversity)
    again = rank(MODEL, candidates, profile, max_papers=100, diversity=diversity)
    assert [(s.paper.id, s.score, s.why) for s in first] == [(s.paper.id, s.score, s.why) for s in again]
    assert all(0.0 < s.score <= 1.0 for s in first)
    plain = rank(MODEL, candidates, profile, max_papers=100)
    assert [s.score for s in plain] == sorted((s.score for s in plain), reverse=True)
    assert sorted(s.paper.id for s in first) == sorted(s.paper.id for s in plain)  # MMR only reorders


@SETTINGS
@given(papers(), interests, words)
def test_adding_an_exclude_term_never_raises_a_score(candidates: list[Paper], profile: Interests, term: str) -> None:
    before = scores(candidates, profile)
    after = scores(candidates, profile.model_copy(update={"exclude": (*profile.exclude, term)}))
    assert set(after) <= set(before)
    for paper_id, score in after.items():
        assert score <= before[paper_id] + 1e-9


@SETTINGS
@given(papers(), papers(prefix="liked"), st.data())
def test_a_copy_of_a_liked_paper_ranks_first(candidates: list[Paper], liked: list[Paper], data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(liked))
    copy = replace(original, id="zz-copy")  # last in id order: it must win on score, not on the tie-break
    picks = rank(MODEL, [*candidates, copy], Interests(), liked=liked, max_papers=100)
    assert picks and picks[0].score == pytest.approx(1.0, abs=1e-5)
    # Another candidate may be a copy of a liked paper too: then they tie (up to rounding).
    assert copy.id in [s.paper.id for s in picks if s.score >= picks[0].score - 1e-5]  # float32 rows


@SETTINGS
@given(papers(), st.lists(words, max_size=3).map(tuple), papers(prefix="disliked"))
def test_an_empty_profile_is_a_rank_error(
    candidates: list[Paper], exclude: tuple[str, ...], disliked: list[Paper]
) -> None:
    with pytest.raises(RankError):
        rank(MODEL, candidates, Interests(exclude=exclude), disliked=disliked)

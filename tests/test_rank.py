"""Ranking, as a specification: what a reader's profile does to the order of papers, and why each was picked."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rank_oracle import compile_profile

from digest.errors import RankError
from digest.paper import Paper, make_paper
from digest.rank import Scored, build_model, mmr_order, rank
from digest.rank.explain import WHY_LIMIT, sentences
from digest.rank.model import MIN_PAPERS_FOR_CONCEPTS
from digest.subscribers import Interests

DATA = Path(__file__).parent / "data" / "rank_corpus.json"


def load_corpus() -> list[Paper]:
    records = json.loads(DATA.read_text(encoding="utf-8"))["papers"]
    return [replace(make_paper(title=r["title"], abstract=r["abstract"]), id=r["id"]) for r in records]


CORPUS = load_corpus()
MODEL = build_model(CORPUS)


def topics(picks: list[Scored]) -> list[str]:
    return [s.paper.id.split("-")[0] for s in picks if s.paper.id]


def by_id(paper_id: str) -> Paper:
    return next(p for p in CORPUS if p.id == paper_id)


def test_keywords_bring_their_topic_first() -> None:
    picks = rank(MODEL, CORPUS, Interests(keywords=("diffusion models",)), max_papers=3)
    assert topics(picks) == ["diff", "diff", "diff"]


def test_liked_papers_bring_their_topic_first() -> None:
    picks = rank(MODEL, CORPUS, Interests(), liked=[by_id("astro-1"), by_id("astro-2")], max_papers=1)
    # The liked papers themselves are left out (the reader knows them): the third astronomy paper wins.
    assert [p.paper.id for p in picks] == ["astro-3"]


def test_title_match_counts_more_than_abstract_match() -> None:
    in_title = make_paper(title="Sparsity in recurrent networks", abstract="We study weights of recurrent models.")
    in_abstract = make_paper(title="Recurrent networks revisited", abstract="We study sparsity of recurrent models.")
    candidates = [replace(in_title, id="a-title"), replace(in_abstract, id="b-abstract")]
    model = build_model([*CORPUS, *candidates])
    picks = rank(model, candidates, Interests(keywords=("sparsity",)))
    assert [p.paper.id for p in picks] == ["a-title", "b-abstract"]
    assert picks[0].score > picks[1].score


def test_exclude_in_title_drops_the_paper_and_in_abstract_pushes_it_down() -> None:
    interests = Interests(keywords=("graph neural networks",))
    before = {s.paper.id: s.score for s in rank(MODEL, CORPUS, interests, max_papers=20)}
    after = {
        s.paper.id: s.score
        for s in rank(MODEL, CORPUS, interests.model_copy(update={"exclude": ("molecule",)}), max_papers=20)
    }
    assert "gnn-1" in before and "gnn-1" not in after  # "molecule" is in its title
    excluded = Interests(keywords=("graph neural networks",), exclude=("citation graphs",))
    pushed = {s.paper.id: s.score for s in rank(MODEL, CORPUS, excluded, max_papers=20)}
    assert pushed["gnn-2"] < before["gnn-2"] * 0.5  # phrase in its abstract only
    # Shares only the word "graphs" with the term: pushed down a little, not dropped.
    assert 0.8 * before["gnn-3"] < pushed["gnn-3"] <= before["gnn-3"]


def test_min_score_and_max_papers() -> None:
    everything = rank(MODEL, CORPUS, Interests(keywords=("pruning",)), max_papers=50)
    assert len(everything) >= 3 and all(s.score > 0 for s in everything)
    cut = everything[1].score
    assert [s.paper.id for s in rank(MODEL, CORPUS, Interests(keywords=("pruning",)), min_score=cut)] == [
        s.paper.id for s in everything if s.score >= cut
    ]
    assert len(rank(MODEL, CORPUS, Interests(keywords=("pruning",)), max_papers=2)) == 2


def test_unknown_words_rank_nothing_rather_than_noise() -> None:
    assert rank(MODEL, CORPUS, Interests(keywords=("zzyzx quux",))) == []


def test_empty_profile_is_a_rank_error() -> None:
    with pytest.raises(RankError, match="no keywords and no liked papers"):
        rank(MODEL, CORPUS, Interests(exclude=("robot",)))
    with pytest.raises(RankError):
        compile_profile(MODEL, (), (), disliked=[CORPUS[0]])


def test_no_candidates_is_an_empty_list() -> None:
    assert rank(MODEL, [], Interests(keywords=("robot",))) == []


def test_why_names_keywords_and_where_and_the_nearest_liked_paper() -> None:
    picks = rank(
        MODEL, CORPUS, Interests(keywords=("network pruning", "sparsity")), liked=[by_id("prune-2")], max_papers=1
    )
    why = picks[0].why
    assert picks[0].paper.id == "prune-1"
    assert (
        why
        == 'mentions "network pruning", "sparsity"; close to "The lottery ticket hypothesis revisited", which you liked'
    )
    # Its best sentence opens the abstract: the email's teaser shows it, so it is not quoted again.
    assert "Network pruning removes weights" in by_id("prune-1").abstract[:100] and "key sentence" not in why


def test_why_stays_short_with_long_inputs() -> None:
    long_title = "A " + "very " * 80 + "long title about pruning"
    long_abstract = "Pruning " + "matters a great deal " * 60 + "."
    paper = replace(make_paper(title=long_title, abstract=long_abstract), id="long")
    keywords = tuple(f"pruning{i}" for i in range(3)) + ("pruning",)
    picks = rank(MODEL, [paper], Interests(keywords=keywords), liked=[replace(paper, id="other")])
    assert len(picks) == 1 and len(picks[0].why) <= WHY_LIMIT


def test_sentences_split_on_sentence_ends_only() -> None:
    assert sentences("We use e.g. graphs. Results improve by 3.5 points! Why? Because.") == [
        "We use e.g. graphs.",
        "Results improve by 3.5 points!",
        "Why?",
        "Because.",
    ]


def test_diversity_spreads_picks_over_interests() -> None:
    interests = Interests(keywords=("diffusion", "robot"))
    # "diffusion" is the stronger match: pure relevance fills the head with diffusion papers.
    plain = topics(rank(MODEL, CORPUS, interests, max_papers=4, diversity=0.0))
    varied = topics(rank(MODEL, CORPUS, interests, max_papers=4, diversity=0.7))
    assert sorted(plain) != sorted(varied)
    assert len(set(varied[:2])) == 2


def test_mmr_without_diversity_keeps_relevance_order() -> None:
    rows = MODEL.rows(CORPUS[:5])
    assert mmr_order(np.linspace(1, 0.5, 5), rows, 3, 0.0) == [0, 1, 2]


def test_mmr_skips_a_near_duplicate() -> None:
    copy = replace(by_id("gnn-1"), id="gnn-1-copy")
    rows = MODEL.rows([by_id("gnn-1"), copy, by_id("astro-1")])
    assert mmr_order(np.array([0.9, 0.89, 0.5]), rows, 2, 0.5) == [0, 2]


def test_scores_do_not_depend_on_candidate_order() -> None:
    interests = Interests(keywords=("translation", "galaxies"))
    forward = rank(MODEL, CORPUS, interests, max_papers=18)
    backward = rank(MODEL, CORPUS[::-1], interests, max_papers=18)
    assert [(s.paper.id, s.score, s.why) for s in forward] == [(s.paper.id, s.score, s.why) for s in backward]


def test_cached_rows_equal_fresh_encoding(tmp_path: Path) -> None:
    corpus = [replace(p, id=f"{p.id}-{i}", title=f"{p.title} {i}") for i in range(3) for p in CORPUS]
    assert len(corpus) >= MIN_PAPERS_FOR_CONCEPTS
    model = build_model(corpus)
    assert model.has_concepts  # the concept block is in use
    cached = model.rows(corpus[:4]).toarray()
    fresh = model.rows([replace(p, id=None) for p in corpus[:4]]).toarray()
    np.testing.assert_allclose(cached, fresh, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(cached, axis=1), 1.0, atol=1e-5)
    # A paper whose text changed since the model was built is re-encoded, not served stale.
    changed = replace(corpus[0], abstract="Exoplanet atmospheres and telescopes.")
    assert not np.allclose(model.rows([changed]).toarray(), cached[:1])


def test_a_model_on_an_empty_store_still_ranks() -> None:
    model = build_model([])
    assert rank(model, CORPUS[:3], Interests(keywords=("graph",))) == []  # nothing known yet: no noise

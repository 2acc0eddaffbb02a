"""rank_many (digest.rank.engine) ranks many subscribers at once: for every profile, the same picks in the same
order and the same scores (to float tolerance) as the per-subscriber formulas of
tests/rank_oracle.py (the engine without sentence embeddings).

Profiles are drawn reproducibly (random.Random(7)) so that they cover what scoring has branches for: keywords
only, liked only, both, disliked papers, exclude terms (in titles, in abstracts, nowhere), liked papers among
the candidates, already-sent papers, an empty profile, min_score, diversity 0 and 0.3, max_papers 1..15.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import pytest
from conftest import SHARED_EVAL
from rank_oracle import oracle_rank

from digest.errors import RankError
from digest.paper import Paper
from digest.rank import build_model
from digest.rank.engine import RankRequest, rank_many
from digest.rank.model import RankModel
from digest.subscribers import Interests

TOPICS = {
    "graphs": ["graph neural networks", "message passing", "node classification", "molecular graphs", "edges"],
    "vision": ["image segmentation", "object detection", "convolutional networks", "pixels", "vision transformers"],
    "language": ["machine translation", "language models", "tokenization", "parallel corpora", "decoding"],
    "astro": ["galaxy clusters", "dark matter", "redshift surveys", "stellar populations", "telescopes"],
    "robots": [
        "robot grasping",
        "motion planning",
        "manipulation policies",
        "tactile sensing",
        "reinforcement learning",
    ],
    "physics": ["quantum chromodynamics", "cross sections", "gauge theory", "lattice simulations", "hadron colliders"],
}
FILLER = [
    "we",
    "study",
    "show",
    "propose",
    "a",
    "new",
    "method",
    "results",
    "experiments",
    "improves",
    "strong",
    "data",
]


def synthetic_papers(count: int, rng: random.Random, prefix: str) -> list[Paper]:
    papers = []
    names = sorted(TOPICS)
    for n in range(count):
        topic = names[n % len(names)]
        other = TOPICS[rng.choice(names)]
        words = TOPICS[topic]
        title = " ".join(rng.sample(words, 2) + rng.sample(FILLER, 2)).capitalize()
        body = []
        for _ in range(rng.randint(2, 5)):
            phrase = rng.sample(words, 2) + rng.sample(other, 1) + rng.sample(FILLER, 4)
            rng.shuffle(phrase)
            body.append(" ".join(phrase).capitalize() + ".")
        papers.append(Paper(id=f"{prefix}{topic}-{n}", title=title, abstract=" ".join(body)))
    return papers


def eval_papers(count: int, offset: int) -> list[Paper]:
    if not SHARED_EVAL.exists():
        pytest.skip(f"evaluation set not found at {SHARED_EVAL}")
    with SHARED_EVAL.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()][offset : offset + count]
    return [Paper(id=r["id"], title=r["title"], abstract=r["abstract"]) for r in records]


def draw_requests(
    rng: random.Random, history: Sequence[Paper], candidates: Sequence[Paper], count: int
) -> list[RankRequest]:
    phrases = [p for words in TOPICS.values() for p in words] + ["unknownword", "galaxy", "networks"]
    title_words = [w for p in candidates[:20] for w in p.title.split()[:2]]
    requests = []
    for n in range(count):
        kind = n % 6
        keywords = tuple(rng.sample(phrases, rng.randint(1, 3))) if kind != 1 else ()
        liked = list(rng.sample(list(history), rng.randint(1, 3))) if kind in (1, 2, 5) else []
        if kind == 5:  # liked papers that are also candidates: left out of the picks
            liked += rng.sample(list(candidates), 2)
        disliked = rng.sample(list(history), rng.randint(1, 2)) if kind in (2, 4) else []
        exclude: tuple[str, ...] = ()
        if kind in (3, 4, 5):
            exclude = tuple(rng.sample(phrases + title_words, rng.randint(1, 2)))
        skip = frozenset(p.id for p in rng.sample(list(candidates), 5) if p.id) if n % 4 == 0 else frozenset()
        requests.append(
            RankRequest(
                Interests(keywords=keywords, exclude=exclude),
                liked=liked,
                disliked=disliked,
                max_papers=rng.choice([1, 3, 10, 15]),
                min_score=rng.choice([0.0, 0.0, 0.05, 0.2]),
                diversity=rng.choice([0.0, 0.3]),
                skip_ids=skip,
            )
        )
    requests.append(RankRequest(Interests(exclude=("graphs",))))  # empty: a RankError for this one alone
    return requests


def one_by_one(model: RankModel, candidates: Sequence[Paper], request: RankRequest) -> list | RankError:
    pool = [p for p in candidates if p.id not in request.skip_ids]
    try:
        return oracle_rank(
            model,
            pool,
            request.interests,
            liked=request.liked,
            disliked=request.disliked,
            max_papers=request.max_papers,
            min_score=request.min_score,
            diversity=request.diversity,
        )
    except RankError as exc:
        return exc


def assert_same(model: RankModel, candidates: Sequence[Paper], requests: Sequence[RankRequest], chunk: int) -> None:
    batch = rank_many(model, candidates, requests, chunk=chunk)
    assert len(batch) == len(requests)
    picked = 0
    for n, (request, got) in enumerate(zip(requests, batch, strict=True)):
        expected = one_by_one(model, candidates, request)
        if isinstance(expected, RankError):
            assert isinstance(got, RankError) and str(got) == str(expected), n
            continue
        assert not isinstance(got, RankError), (n, got)
        assert [s.paper.id for s in got] == [s.paper.id for s in expected], n
        assert [s.score for s in got] == pytest.approx([s.score for s in expected], abs=1e-5), n
        picked += len(got)
    assert picked > len(requests)  # the comparison is not vacuous


@pytest.mark.parametrize("chunk", [7, 1000])
def test_rank_many_equals_rank_on_a_synthetic_store(chunk: int) -> None:
    rng = random.Random(7)
    history = synthetic_papers(120, rng, "old-")
    candidates = synthetic_papers(80, rng, "new-")
    model = build_model([*history, *candidates])  # >= 50 papers: the concept (LSA) block is in play
    assert model.has_concepts
    assert_same(model, candidates, draw_requests(rng, history, candidates, 48), chunk)


def test_rank_many_equals_rank_on_real_papers() -> None:
    history = eval_papers(300, 0)
    candidates = eval_papers(200, 1500)
    model = build_model([*history, *candidates])
    assert_same(model, candidates, draw_requests(random.Random(11), history, candidates, 36), 10)


def test_candidates_unknown_to_the_model_and_tiny_pools() -> None:
    rng = random.Random(3)
    history = synthetic_papers(60, rng, "old-")
    model = build_model(history)
    fresh = synthetic_papers(4, rng, "fresh-")  # not in the model's corpus, and fewer than PRF_TOP
    assert_same(model, fresh, draw_requests(rng, history, fresh * 5, 12)[:-1], 5)


def test_nothing_to_rank() -> None:
    model = build_model(synthetic_papers(10, random.Random(1), "p-"))
    request = RankRequest(Interests(keywords=("graphs",)))
    assert rank_many(model, [], [request]) == [[]]
    assert rank_many(model, [], []) == []


def test_a_big_candidate_list_is_ranked_in_smaller_chunks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """CHUNK_CELLS bounds a chunk's dense matrices: many candidates mean fewer subscribers at a time."""
    import digest.rank.engine as batch

    rng = random.Random(5)
    history = synthetic_papers(100, rng, "old-")
    candidates = synthetic_papers(80, rng, "new-")
    model = build_model([*history, *candidates])
    requests = draw_requests(rng, history, candidates, 20)
    whole = rank_many(model, candidates, requests)
    chunks: list[int] = []
    rank_chunk = batch._rank_chunk
    monkeypatch.setattr(batch, "CHUNK_CELLS", 80 * 3)  # three subscribers' rows of 80 candidates
    monkeypatch.setattr(
        batch, "_rank_chunk", lambda m, s, part, e: chunks.append(len(part)) or rank_chunk(m, s, part, e)
    )
    chunked = rank_many(model, candidates, requests)
    for got, expected in zip(chunked, whole, strict=True):
        if not isinstance(expected, list):  # an empty profile: the same error either way
            assert str(got) == str(expected)
            continue
        assert isinstance(got, list)
        assert [(s.paper.id, s.why) for s in got] == [(s.paper.id, s.why) for s in expected]
        assert [s.score for s in got] == pytest.approx([s.score for s in expected], abs=1e-6)
    assert set(chunks) <= {1, 2, 3} and max(chunks) == 3 and sum(chunks) == len(requests)


def test_mmr_similarities_without_the_all_pairs_product_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond GRAM_LIMIT candidates (a big day) each head is multiplied on its own, over the columns in use."""
    import digest.rank.engine as engine

    monkeypatch.setattr(engine, "GRAM_LIMIT", 0)
    rng = random.Random(9)
    history = synthetic_papers(100, rng, "old-")
    candidates = synthetic_papers(80, rng, "new-")
    model = build_model([*history, *candidates])
    assert_same(model, candidates, draw_requests(rng, history, candidates, 24), 10)

"""Ranking: a pure function of (candidates, profile, feedback) -> scored, ordered, explained picks.

No I/O here. The model (TF-IDF fitted on the whole store) is built once and reused for every subscriber.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from digest.errors import RankError
from digest.paper import Paper
from digest.subscribers import Interests


@dataclass(frozen=True)
class Scored:
    paper: Paper
    score: float
    why: str


def paper_text(paper: Paper) -> str:
    return f"{paper.title}. {paper.title}. {paper.abstract}"


class RankModel:
    """A TF-IDF vocabulary fitted on the whole store, so rare words weigh right."""

    def __init__(self, corpus: Sequence[Paper]) -> None:
        self.vectorizer = TfidfVectorizer(
            ngram_range=(1, 2), sublinear_tf=True, stop_words="english", min_df=1, dtype=np.float32
        )
        texts = [paper_text(p) for p in corpus] or ["empty"]
        self.vectorizer.fit(texts)

    def vectors(self, papers: Sequence[Paper]) -> sparse.csr_matrix:
        return self.vectorizer.transform([paper_text(p) for p in papers])

    def query(self, text: str) -> sparse.csr_matrix:
        return self.vectorizer.transform([text])


def build_model(corpus: Sequence[Paper]) -> RankModel:
    return RankModel(corpus)


def rank(
    model: RankModel,
    candidates: Sequence[Paper],
    interests: Interests,
    *,
    liked: Sequence[Paper] = (),
    disliked: Sequence[Paper] = (),
    max_papers: int = 10,
    min_score: float = 0.0,
    diversity: float = 0.0,
) -> list[Scored]:
    """Candidates scored against the profile, best first, at most max_papers, none below min_score."""
    if interests.is_empty and not liked:
        raise RankError("the profile has no keywords and no liked papers; add [interests] keywords or papers")
    if not candidates:
        return []
    matrix = model.vectors(candidates)
    profile = sparse.csr_matrix((1, matrix.shape[1]), dtype=np.float32)
    for keyword in interests.keywords:
        profile = profile + model.query(keyword)
    if liked:
        profile = profile + model.vectors(liked).mean(axis=0)
    if disliked:
        profile = profile - 0.5 * model.vectors(disliked).mean(axis=0)
    for term in interests.exclude:
        profile = profile - model.query(term)
    profile = sparse.csr_matrix(profile)
    norm = np.sqrt(profile.multiply(profile).sum()) or 1.0
    scores = np.asarray((matrix @ profile.T).todense()).ravel() / norm
    scores = np.clip(scores, 0.0, 1.0)
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i].id or candidates[i].title))
    picks = [
        Scored(candidates[i], float(scores[i]), _why(candidates[i], interests))
        for i in order
        if scores[i] >= min_score and scores[i] > 0
    ]
    return picks[:max_papers]


def _why(paper: Paper, interests: Interests) -> str:
    matched = [k for k in interests.keywords if k.lower() in f"{paper.title} {paper.abstract}".lower()]
    return ("matches " + ", ".join(f"'{k}'" for k in matched))[:200] if matched else "similar to your interests"

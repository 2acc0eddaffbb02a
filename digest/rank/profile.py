"""A reader's interests compiled into one vector of the model's space, and the scoring that uses it.

Rocchio-style: the profile vector is the normalised mean of the keyword queries, plus the normalised mean of
the liked papers, minus half the normalised mean of the disliked ones. It is a single row, so a batch scorer can
stack the vectors of many readers and score every paper for every reader with one sparse product.

Scoring (score_rows) adds three things on top of the dot product, each chosen to keep scores in [0, 1]:
- pseudo-relevance feedback: the profile is moved towards the centroid of its own top few candidates
  (the classic query expansion: it learns the words the reader's field uses today);
- nearest liked paper: a candidate very close to one liked paper scores at least sim**NEAR_POWER, so a reader
  who liked three different things is not served only papers that sit between them;
- exclusion: every exclude term multiplies the score by a factor in [0, 1] (0 when the term is in the title),
  so adding an exclude term can never raise a score.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.preprocessing import normalize

from digest.errors import RankError
from digest.paper import Paper, title_key
from digest.rank.model import RankModel, dense

DISLIKE_WEIGHT = 0.5
# Pseudo-relevance feedback: how many top candidates, and how far the profile moves towards them.
PRF_TOP = 5
PRF_WEIGHT = 0.5
# A candidate's similarity to its nearest liked paper, raised to this power, is a floor for its score:
# near-copies of a liked paper (similarity ~1) come first; loose neighbours (0.5 -> 0.125) barely count.
NEAR_POWER = 3
# An exclude term found in the abstract (not the title) keeps this share of the score.
EXCLUDED_IN_ABSTRACT = 0.3


@dataclass(frozen=True)
class CompiledProfile:
    """What ranking needs from a profile, in the model's space."""

    vector: sparse.csr_matrix  # 1 x dimension, unit length (or all zero when nothing in it is known)
    liked: sparse.csr_matrix  # rows of the liked papers (nearest-liked floor and explanations)
    exclude: tuple[str, ...]  # exclude terms as written
    exclude_vectors: sparse.csr_matrix  # one word-block row per exclude term
    keywords: tuple[str, ...]


def _mean_direction(rows: sparse.csr_matrix) -> sparse.csr_matrix:
    return sparse.csr_matrix(normalize(sparse.csr_matrix(rows.mean(axis=0))), dtype=np.float32)


def compile_profile(
    model: RankModel,
    keywords: Sequence[str],
    liked: Sequence[Paper] = (),
    disliked: Sequence[Paper] = (),
    exclude: Sequence[str] = (),
) -> CompiledProfile:
    """Keywords, liked and disliked papers and exclude terms as one profile vector (raises RankError if empty)."""
    if not keywords and not liked:
        raise RankError("the profile has no keywords and no liked papers; add [interests] keywords or papers")
    parts: list[sparse.csr_matrix] = []
    if keywords:
        parts.append(_mean_direction(sparse.vstack([model.query(k) for k in keywords], format="csr")))
    liked_rows = model.rows(liked)
    if liked:
        parts.append(_mean_direction(liked_rows))
    if disliked:
        parts.append(-DISLIKE_WEIGHT * _mean_direction(model.rows(disliked)))
    vector = sparse.csr_matrix(normalize(sum(parts[1:], parts[0])), dtype=np.float32)
    exclude_vectors = (
        sparse.vstack([model.word_vector(term) for term in exclude], format="csr")
        if exclude
        else sparse.csr_matrix((0, len(model.full.vocabulary_)), dtype=np.float32)
    )
    return CompiledProfile(vector, liked_rows, tuple(exclude), exclude_vectors, tuple(keywords))


def relevance(rows: sparse.csr_matrix, vector: sparse.csr_matrix) -> np.ndarray:
    """Cosine of each candidate row to the profile vector, clipped to [0, 1]."""
    return np.clip(dense(rows @ vector.T).ravel(), 0.0, 1.0)


def expanded(rows: sparse.csr_matrix, vector: sparse.csr_matrix, base: np.ndarray) -> sparse.csr_matrix:
    """The profile moved towards the centroid of its best candidates (only candidates that match at all)."""
    order = np.lexsort((np.arange(base.size), -base))[:PRF_TOP]
    top = order[base[order] > 0]
    if top.size == 0 or rows.shape[0] <= PRF_TOP:
        return vector
    moved = vector + PRF_WEIGHT * sparse.csr_matrix(rows[top].mean(axis=0))
    return sparse.csr_matrix(normalize(moved), dtype=np.float32)


def phrase_in(phrase: str, text: str, *, folded: bool = False) -> bool:
    """Whole-word, case-, accent- and punctuation-insensitive phrase match ('GNN' is in 'GNN-based', not 'GNNs').

    folded=True says `text` is already title_key()-folded (saves refolding a long abstract per term).
    """
    needle = title_key(phrase)
    haystack = text if folded else title_key(text)
    return bool(needle) and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", haystack) is not None


def exclusion_factors(
    model: RankModel, profile: CompiledProfile, papers: Sequence[Paper], rows: sparse.csr_matrix
) -> np.ndarray:
    """Per paper, a factor in [0, 1]: the product over exclude terms of how much of the score survives."""
    factors = np.ones(len(papers))
    if not profile.exclude:
        return factors
    words = model.word_block(rows)
    similarity = np.clip(dense(words @ profile.exclude_vectors.T), 0.0, 1.0)  # papers x terms
    folded = [(title_key(p.title), title_key(p.abstract)) for p in papers]
    for j, term in enumerate(profile.exclude):
        for i, (title, abstract) in enumerate(folded):
            if phrase_in(term, title, folded=True):
                factors[i] = 0.0
            elif phrase_in(term, abstract, folded=True):
                factors[i] *= EXCLUDED_IN_ABSTRACT
            else:  # related wording without the phrase itself: pushed down in proportion
                factors[i] *= 1.0 - similarity[i, j]
    return factors


def score_rows(
    model: RankModel, profile: CompiledProfile, papers: Sequence[Paper], rows: sparse.csr_matrix
) -> np.ndarray:
    """Final scores in [0, 1] for candidate papers (rows = model.rows(papers))."""
    if not papers:
        return np.zeros(0)
    base = relevance(rows, profile.vector)
    base = relevance(rows, expanded(rows, profile.vector, base))
    if profile.liked.shape[0]:
        nearest = np.clip(dense(rows @ profile.liked.T).max(axis=1), 0.0, 1.0)
        base = np.maximum(base, nearest**NEAR_POWER)
    return np.clip(base * exclusion_factors(model, profile, papers, rows), 0.0, 1.0)

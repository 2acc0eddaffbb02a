"""The per-subscriber ranking that digest.rank.engine replaced, kept as a test oracle: the readable formulas for one
profile at a time (compile a profile vector, score, PRF, nearest-liked floor, exclusions, MMR, explanations).
The engine ranks many subscribers with a few matrix products; with no sentence embeddings it must give exactly
what this gives (tests/test_batch_rank.py).
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
from digest.rank import Scored, mmr_order
from digest.rank.engine import (
    _EMPTY_PROFILE as engine_empty_profile,
)
from digest.rank.engine import (
    DISLIKE_WEIGHT,
    EXCLUDED_IN_ABSTRACT,
    MMR_POOL,
    NEAR_POWER,
    PRF_TOP,
    PRF_WEIGHT,
    paper_key,
)
from digest.rank.explain import _shorten, sentences
from digest.rank.model import RankModel, dense
from digest.subscribers import Interests


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
        raise RankError(engine_empty_profile)
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


def best_sentences(model: RankModel, profile: CompiledProfile, papers: Sequence[Paper]) -> list[str | None]:
    """Per paper, the abstract sentence whose words are closest to the profile's (the first on ties), or None
    when no sentence shares a word with it. All sentences are encoded in one call: this is the costly part."""
    split = [sentences(p.abstract) for p in papers]
    flat = [s for parts in split for s in parts]
    if not flat:
        return [None] * len(papers)
    words = model.word_block(profile.vector)
    matrix = normalize(sparse.csr_matrix(model.full.transform(flat), dtype=np.float32))
    similarity = np.asarray((matrix @ words.T).todense()).ravel()
    result: list[str | None] = []
    start = 0
    for parts in split:
        chunk = similarity[start : start + len(parts)]
        start += len(parts)
        best = int(np.argmax(chunk)) if parts else -1  # argmax returns the first maximum: deterministic
        result.append(parts[best] if parts and chunk[best] > 0 else None)
    return result


def explain(
    model: RankModel,
    profile: CompiledProfile,
    paper: Paper,
    row: sparse.csr_matrix,
    liked: Sequence[Paper],
    sentence: str | None,
) -> str:
    """e.g. 'title matches "pruning"; abstract matches "sparsity"; closest to liked "X"; best match: "..."'."""
    title, abstract = title_key(paper.title), title_key(paper.abstract)
    in_title = [k for k in profile.keywords if phrase_in(k, title, folded=True)]
    in_abstract = [k for k in profile.keywords if k not in in_title and phrase_in(k, abstract, folded=True)]
    nearest: Paper | None = None
    if liked:
        similarity = np.asarray((profile.liked @ row.T).todense()).ravel()
        nearest = liked[int(np.argmax(similarity))]
    return why_line(in_title, in_abstract, nearest, sentence)


def why_line(in_title: Sequence[str], in_abstract: Sequence[str], nearest: Paper | None, sentence: str | None) -> str:
    WHY_LIMIT = 200
    facts: list[str] = []
    if in_title:
        facts.append("title matches " + ", ".join(f'"{k}"' for k in in_title))
    if in_abstract:
        facts.append("abstract matches " + ", ".join(f'"{k}"' for k in in_abstract))
    if nearest is not None:
        facts.append(f'closest to liked "{_shorten(nearest.title, 60)}"')
    if not facts:
        facts.append("related to your interests")
    head = _shorten("; ".join(facts), WHY_LIMIT)
    room = WHY_LIMIT - len(head) - len('; best match: ""')
    if sentence and room >= 30:
        head += f'; best match: "{_shorten(sentence, room)}"'
    return head


def explain_all(
    model: RankModel,
    profile: CompiledProfile,
    papers: Sequence[Paper],
    rows: sparse.csr_matrix,
    liked: Sequence[Paper],
) -> list[str]:
    """The explanation of every pick (rows: the picks' rows, in the same order)."""
    found = best_sentences(model, profile, papers)
    return [explain(model, profile, p, rows[i], liked, found[i]) for i, p in enumerate(papers)]


def oracle_rank(
    model: RankModel,
    candidates: Sequence[Paper],
    interests: Interests,
    *,
    liked: Sequence[Paper] = (),
    disliked: Sequence[Paper] = (),
    max_papers: int = 10,
    min_score: float = 0.0,
    diversity: float = 0.0,
    explain_picks: bool = True,
) -> list[Scored]:
    """Candidates scored against the profile: at most max_papers, none below min_score (nor at 0), best first
    (diversified by MMR when diversity > 0). Raises RankError when the profile has neither keywords nor liked
    papers. Candidates that are themselves liked or disliked are left out: the reader knows them.
    explain_picks=False skips the explanations (benchmarks)."""
    profile = compile_profile(model, interests.keywords, liked, disliked, interests.exclude)
    rated = {paper_key(p) for p in (*liked, *disliked)}
    pool = [p for p in candidates if paper_key(p) not in rated]
    if not pool:
        return []
    rows = model.rows(pool)
    scores = score_rows(model, profile, pool, rows)
    # Best first, ties by id: the same input gives the same order on every machine.
    order = sorted(range(len(pool)), key=lambda i: (-scores[i], paper_key(pool[i])))
    order = [i for i in order if scores[i] > 0 and scores[i] >= min_score]
    if not order:
        return []
    # MMR reorders only the head of the list: a paper far down is never worth more than a varied pick.
    order = order[: max(MMR_POOL, 5 * max_papers)]
    ranked_rows = rows[order]
    picks = [order[p] for p in mmr_order(scores[order], ranked_rows, max_papers, diversity)]
    papers = [pool[i] for i in picks]
    whys = explain_all(model, profile, papers, rows[picks], liked) if explain_picks else [""] * len(papers)
    return [Scored(paper, float(scores[i]), why) for paper, i, why in zip(papers, picks, whys, strict=True)]

"""Ranking: a pure function of (candidates, profile, feedback) -> scored, ordered, explained picks.

No I/O here. The model (TF-IDF + LSA fitted on the whole store, digest.rank.model) is built once and reused
for every subscriber; a profile compiles to one vector (digest.rank.profile); picks are diversified with
maximal marginal relevance and each carries a short explanation (digest.rank.explain).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from digest.paper import Paper
from digest.rank.explain import explain_all
from digest.rank.model import RankModel, build_model
from digest.rank.profile import CompiledProfile, compile_profile, score_rows
from digest.subscribers import Interests

__all__ = ["CompiledProfile", "RankModel", "Scored", "build_model", "compile_profile", "mmr_order", "rank"]


MMR_POOL = 100


@dataclass(frozen=True)
class Scored:
    paper: Paper
    score: float  # relevance in [0, 1]; the order may differ from it when diversity > 0
    why: str


def _key(paper: Paper) -> str:
    return paper.id or paper.title


def mmr_order(
    scores: np.ndarray,
    rows: sparse.csr_matrix | None,
    count: int,
    diversity: float,
    *,
    similarity: np.ndarray | None = None,
) -> list[int]:
    """Maximal marginal relevance: greedily take the candidate with the best
    (1 - diversity) * relevance - diversity * (similarity to the closest pick so far).

    `scores` must already be sorted best first (ties broken by id), so the first maximum wins ties.
    diversity 0 is plain relevance order. `similarity` (the rows' pairwise cosines, already clipped to [0, 1])
    may be given instead of `rows` by a caller that has it anyway (the batch ranker slices it from one product).
    """
    n = scores.size
    count = min(count, n)
    if diversity <= 0 or n == 0:
        return list(range(count))
    if similarity is None:
        assert rows is not None, "mmr_order needs rows or similarity"
        similarity = np.clip(np.asarray((rows @ rows.T).todense(), dtype=np.float64), 0.0, 1.0)
    chosen: list[int] = []
    closest = np.zeros(n)
    available = np.ones(n, dtype=bool)
    for _ in range(count):
        value = (1.0 - diversity) * scores - diversity * closest
        value[~available] = -np.inf
        pick = int(np.argmax(value))
        chosen.append(pick)
        available[pick] = False
        closest = np.maximum(closest, similarity[pick])
    return chosen


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
    explain_picks: bool = True,
) -> list[Scored]:
    """Candidates scored against the profile: at most max_papers, none below min_score (nor at 0), best first
    (diversified by MMR when diversity > 0). Raises RankError when the profile has neither keywords nor liked
    papers. Candidates that are themselves liked or disliked are left out: the reader knows them.
    explain_picks=False skips the explanations (benchmarks)."""
    profile = compile_profile(model, interests.keywords, liked, disliked, interests.exclude)
    rated = {_key(p) for p in (*liked, *disliked)}
    pool = [p for p in candidates if _key(p) not in rated]
    if not pool:
        return []
    rows = model.rows(pool)
    scores = score_rows(model, profile, pool, rows)
    # Best first, ties by id: the same input gives the same order on every machine.
    order = sorted(range(len(pool)), key=lambda i: (-scores[i], _key(pool[i])))
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

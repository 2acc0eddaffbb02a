"""Why a paper was picked, in one short plain-text line (at most WHY_LIMIT characters), deterministically.

Three facts, in order of how much a reader trusts them: which keywords were found and where (title or
abstract), which liked paper the pick is closest to, and the abstract's sentence that best matches the profile.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.preprocessing import normalize

from digest.paper import Paper, title_key
from digest.rank.model import RankModel
from digest.rank.profile import CompiledProfile, phrase_in

WHY_LIMIT = 200
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)].rsplit(" ", 1)[0] if limit > 10 else text[: max(limit - 1, 0)]
    return cut.rstrip(" ,;:") + "…"


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
    """The explanation from its facts (shared with the batch ranker, which finds the facts its own way)."""
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

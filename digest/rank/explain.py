"""Why a paper was picked, in one short plain-text line (at most WHY_LIMIT characters), deterministically.

Three facts, in order of how much a reader trusts them: which keywords were found and where (title or
abstract), which liked paper the pick is closest to, and the abstract's sentence that best matches the profile.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from digest.paper import Paper

WHY_LIMIT = 200
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)].rsplit(" ", 1)[0] if limit > 10 else text[: max(limit - 1, 0)]
    return cut.rstrip(" ,;:") + "…"


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

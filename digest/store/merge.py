"""One paper seen again, from another source or another day: which text and which facts the store keeps.

Every choice is a commutative, associative pick (a maximum, a minimum), so the store ends up the same whatever
order the sources arrive in. Pure functions: no SQL here.
"""

from __future__ import annotations

import json
from dataclasses import replace

from digest.paper import Paper


def _text_rank(paper: Paper) -> tuple[int, int, str, str]:
    """Which of two texts of one paper wins: the later arXiv version, then the fuller abstract.

    A total order, so the store ends up the same whatever order the sources arrive in.
    """
    return (paper.arxiv_version or 0, len(paper.abstract), paper.abstract, paper.title)


def _fullest(one: tuple[str, ...], other: tuple[str, ...]) -> tuple[str, ...]:
    """The longer list (ties broken by content): the same answer whichever of the two came first."""
    return max(one, other, key=lambda names: (len(names), names))


def _best_url(one: str | None, other: str | None) -> str | None:
    """An arXiv URL before any other, https before http, then the shortest (a URL without a version)."""
    urls = [u for u in (one, other) if u]
    if not urls:
        return None
    return min(urls, key=lambda u: ("arxiv.org/" not in u, not u.startswith("https:"), len(u), u))


def _paper_columns(paper: Paper) -> tuple[object, ...]:
    """A paper's stored fields, in the order of the papers table's columns arxiv_id ... published."""
    return (
        paper.arxiv_id,
        paper.arxiv_version,
        paper.doi,
        paper.key,
        paper.title,
        paper.abstract,
        json.dumps(list(paper.authors)),
        paper.url,
        json.dumps(list(paper.links)),
        json.dumps(list(paper.categories)),
        paper.published,
    )


def _merge(stored: Paper, incoming: Paper) -> Paper:
    """One paper seen again: the better text wins, missing facts are filled in, identity never changes.

    Every choice is a commutative, associative pick (a maximum, a minimum), so the store ends up the same
    whatever order the sources arrive in.
    """
    text = incoming if _text_rank(incoming) > _text_rank(stored) else stored
    dates = [d for d in (stored.published, incoming.published) if d]
    return replace(
        stored,
        title=text.title,
        abstract=text.abstract,
        links=text.links,
        arxiv_version=max(stored.arxiv_version or 0, incoming.arxiv_version or 0) or None,
        arxiv_id=stored.arxiv_id or incoming.arxiv_id,
        doi=stored.doi or incoming.doi,
        authors=_fullest(stored.authors, incoming.authors),
        categories=_fullest(stored.categories, incoming.categories),
        published=min(dates) if dates else None,
        url=_best_url(stored.url, incoming.url),
    )

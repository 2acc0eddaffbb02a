"""Reader feedback: a like or dislike of one paper, which the next ranking uses (see digest.plan)."""

from __future__ import annotations

from datetime import datetime

from digest.errors import DigestError
from digest.paper import Paper
from digest.store import Store
from digest.subscribers import SubscriberSet


def record_feedback(
    store: Store, subscribers: SubscriberSet, subscriber: str, reference: str, rating: int, now: datetime
) -> Paper:
    """Record +1 (like) or -1 (dislike) for a paper named by our id, arXiv id, DOI or title; returns the paper.

    Unknown subscriber or paper: DigestError, and nothing is written. Rating again replaces the old rating.
    """
    if rating not in (-1, 1):
        raise DigestError(f"rating must be +1 (like) or -1 (dislike), got {rating}")
    profile = subscribers.get(subscriber)
    paper = store.find_paper(reference)
    if paper is None or paper.id is None:
        raise DigestError(
            f"no paper {reference!r} in the store; give our id, an arXiv id, a DOI or the exact title"
            " (see `digest papers`)"
        )
    store.set_feedback(profile.id, paper.id, rating, now)
    return paper

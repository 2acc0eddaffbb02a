"""What the next digest of one subscriber holds: candidates from the store, ranked. Shared by preview,
send and feeds, so that a preview is exactly what the next send would produce."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.errors import RankError
from digest.paper import Paper
from digest.rank import RankModel, Scored, build_model, rank
from digest.store import Store
from digest.subscribers import Profile


@dataclass(frozen=True)
class DigestPlan:
    subscriber: Profile
    picks: tuple[Scored, ...]
    candidates: int
    candidates_until: datetime
    empty_reason: str | None = None

    @property
    def is_empty(self) -> bool:
        return not self.picks


def resolve_liked(store: Store, references: Sequence[str]) -> list[Paper]:
    """The profile's liked papers that the store knows (arXiv id, DOI, title or our id)."""
    found = (store.find_paper(reference) for reference in references)
    return [paper for paper in found if paper is not None]


def candidate_papers(store: Store, profile: Profile, now: datetime) -> list[Paper]:
    """Papers first seen since the last digest (first digest: within lookback_days), never sent before."""
    since = store.last_window_end(profile.id) or now - timedelta(days=profile.lookback_days)
    already = store.sent_paper_ids(profile.id)
    return [paper for paper in store.papers_since(since, now) if paper.id not in already]


def plan_digest(store: Store, profile: Profile, now: datetime, model: RankModel | None = None) -> DigestPlan:
    candidates = candidate_papers(store, profile, now)
    if not candidates:
        return DigestPlan(profile, (), 0, now, "no new papers since the last digest")
    model = model or build_model(store.all_papers())
    feedback = store.feedback(profile.id)
    liked = resolve_liked(store, profile.interests.papers)
    known = {p.id for p in liked}
    liked += [p for p in store.get_papers([pid for pid, r in feedback.items() if r > 0]) if p.id not in known]
    disliked = store.get_papers([pid for pid, rating in feedback.items() if rating < 0])
    try:
        picks = rank(
            model,
            candidates,
            profile.interests,
            liked=liked,
            disliked=disliked,
            max_papers=profile.max_papers,
            min_score=profile.min_score,
            diversity=profile.diversity,
        )
    except RankError as exc:
        unknown = "" if not profile.interests.papers else " (none of its [interests] papers is in the store yet)"
        raise RankError(f"subscriber {profile.id!r}: {exc}{unknown}") from None
    reason = None if picks else f"none of {len(candidates)} new paper(s) scored above min_score {profile.min_score:g}"
    return DigestPlan(profile, tuple(picks), len(candidates), now, reason)

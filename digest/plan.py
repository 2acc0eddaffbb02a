"""What the next digest of one subscriber holds: candidates from the store, ranked. Shared by preview,
send and feeds, so that a preview is exactly what the next send would produce."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from digest import trace
from digest.errors import RankError
from digest.model_cache import model_source
from digest.paper import Paper
from digest.picks import DigestPlan
from digest.rank import RankModel
from digest.rank.engine import RankRequest, rank_many
from digest.store import Store
from digest.subscribers import Profile

# Where a plan gets its model when it has something to rank: a model, or a function of the store that gives one
# (digest.model_cache.model_source: the saved model); by default the saved model, writing nothing.
ModelSource = Callable[[Store], RankModel]

__all__ = ["DigestPlan", "ModelSource", "plan_digest", "plan_digests", "resolve_liked"]


def _model(store: Store, model: RankModel | ModelSource | None) -> RankModel:
    if isinstance(model, RankModel):
        return model
    return (model or model_source(save=False))(store)


def resolve_liked(store: Store, references: Sequence[str]) -> list[Paper]:
    """The profile's liked papers that the store knows (arXiv id, DOI, title or our id)."""
    found = (store.find_paper(reference) for reference in references)
    return [paper for paper in found if paper is not None]


# Where a subscriber's candidates start: after a paper sequence number (commit order; every digest after the
# first), or after a time (the first digest: papers first seen within lookback_days).
Window = tuple[str, int | datetime]


def _window(store: Store, profile: Profile, now: datetime) -> Window:
    last = store.last_window_seq(profile.id)
    if last is not None:
        return ("after", last)
    return ("since", now - timedelta(days=profile.lookback_days))


def _window_papers(store: Store, window: Window, high: int) -> list[Paper]:
    """The window's papers up to sequence number `high`. Windows follow commit order, not time stamps: a paper
    committed after a digest was planned comes after that digest's window, however early its first_seen."""
    kind, start = window
    if kind == "after":
        assert isinstance(start, int)
        return store.papers_after_seq(start, high)
    assert isinstance(start, datetime)
    return store.papers_since(start, max_seq=high)


def candidate_papers(store: Store, profile: Profile, now: datetime, high: int | None = None) -> list[Paper]:
    """Papers committed since the last digest (first digest: first seen within lookback_days), never sent before."""
    high = store.max_seq() if high is None else high
    papers = _window_papers(store, _window(store, profile, now), high)
    already = store.sent_among([p.id for p in papers if p.id is not None], profile.id).get(profile.id, set())
    return [paper for paper in papers if paper.id not in already]


def _rated(store: Store, profile: Profile) -> tuple[list[Paper], list[Paper]]:
    """Liked (the profile's papers, then papers rated +1) and disliked (rated -1) papers."""
    feedback = store.feedback(profile.id)
    liked = resolve_liked(store, profile.interests.papers)
    known = {p.id for p in liked}
    liked += [p for p in store.get_papers([pid for pid, r in feedback.items() if r > 0]) if p.id not in known]
    disliked = store.get_papers([pid for pid, rating in feedback.items() if rating < 0])
    return liked, disliked


def _rank_error(profile: Profile, exc: RankError) -> RankError:
    unknown = "" if not profile.interests.papers else " (none of its [interests] papers is in the store yet)"
    return RankError(f"subscriber {profile.id!r}: {exc}{unknown}")


def _no_picks(candidates: int, profile: Profile) -> str:
    return f"none of {candidates} new paper(s) scored above min_score {profile.min_score:g}"


def plan_digest(
    store: Store, profile: Profile, now: datetime, model: RankModel | ModelSource | None = None
) -> DigestPlan:
    """One subscriber's next digest: plan_digests for one (raises the RankError of an empty profile)."""
    plan = plan_digests(store, [profile], now, model)[profile.id]
    if isinstance(plan, RankError):
        raise plan
    return plan


def plan_digests(
    store: Store, profiles: Sequence[Profile], now: datetime, model: RankModel | ModelSource | None = None
) -> dict[str, DigestPlan | RankError]:
    """The next digest of each subscriber (a RankError in its place, not raised, so that one empty profile does
    not stop the others): the one planning function, which preview, send and feeds all use.

    Subscribers are grouped by candidate window (where their last digest ended; most share one), and each group
    is ranked with one rank_many call: a subscriber's candidates are the window's papers minus those already sent
    to them, which rank_many leaves out per subscriber.
    """
    plans: dict[str, DigestPlan | RankError] = {}
    groups: dict[Window, list[tuple[Profile, frozenset[str]]]] = {}
    windows: dict[Window, list[Paper]] = {}
    sent_in: dict[Window, dict[str, set[str]]] = {}  # per window: its papers already sent, by subscriber
    high = store.max_seq()
    for profile in profiles:
        since = _window(store, profile, now)
        if since not in windows:
            windows[since] = _window_papers(store, since, high)
            sent_in[since] = store.sent_among([p.id for p in windows[since] if p.id is not None])
        sent = frozenset(sent_in[since].get(profile.id, ()))  # within the window: the rest are candidates
        if len(windows[since]) == len(sent):
            plans[profile.id] = DigestPlan(profile, (), 0, now, "no new papers since the last digest", high)
        else:
            groups.setdefault(since, []).append((profile, sent))
    ranker = _model(store, model) if groups else None
    for since, members in groups.items():
        requests = []
        for profile, sent in members:
            liked, disliked = _rated(store, profile)
            requests.append(
                RankRequest(
                    profile.interests,
                    liked=liked,
                    disliked=disliked,
                    max_papers=profile.max_papers,
                    min_score=profile.min_score,
                    diversity=profile.diversity,
                    skip_ids=sent,
                )
            )
        assert ranker is not None
        with trace.stage("ranking"):
            results = rank_many(ranker, windows[since], requests)
        for (profile, sent), result in zip(members, results, strict=True):
            count = len(windows[since]) - len(sent)
            if isinstance(result, RankError):
                plans[profile.id] = _rank_error(profile, result)
            else:
                reason = None if result else _no_picks(count, profile)
                first = since[0] == "since"
                plans[profile.id] = DigestPlan(profile, tuple(result), count, now, reason, high, first=first)
    return plans

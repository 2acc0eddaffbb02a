"""What ranking and planning hand to rendering and delivery: plain data, no I/O, nothing heavy to import (the
compose workers load only this, the templates and the MIME builder)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from digest.paper import Paper

if TYPE_CHECKING:  # a pydantic model: loaded by whoever made the plan, not by whoever reads it
    from digest.subscribers import Profile


@dataclass(frozen=True)
class Scored:
    paper: Paper
    score: float  # relevance in [0, 1]; the order may differ from it when diversity > 0
    why: str


@dataclass(frozen=True)
class DigestPlan:
    subscriber: Profile
    picks: tuple[Scored, ...]
    candidates: int
    candidates_until: datetime
    empty_reason: str | None = None
    # The newest paper (by commit order) the plan could see: the next digest's candidates come after it.
    candidates_until_seq: int | None = None
    # The subscriber's first digest (nothing planned for them before): its window reaches back lookback_days.
    first: bool = False

    @property
    def is_empty(self) -> bool:
        return not self.picks

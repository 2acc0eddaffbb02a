"""What the store hands back: plain records, and the one time format it keeps (ISO-8601 in UTC, which sorts as
text)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

Outcome = Literal["new", "updated", "duplicate"]
MessageState = Literal["sending", "sent", "failed"]


def utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("times given to the store must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class StoredFile:
    content_hash: str
    source: str
    entries: int
    ingested_at: str


@dataclass(frozen=True)
class PickRecord:
    paper_id: str
    score: float
    why: str


@dataclass(frozen=True)
class Message:
    id: int
    subscriber: str
    message_id: str
    channel: str
    state: MessageState
    subject: str
    candidates_until: str
    created_at: str
    finished_at: str | None
    error: str | None
    papers: tuple[PickRecord, ...]
    candidates_until_seq: int | None = None
    handed_over_at: str | None = None


@dataclass(frozen=True)
class SubscriberState:
    subscriber: str
    paused: bool
    paused_at: str | None
    token: str | None

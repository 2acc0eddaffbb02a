"""Subscriber profiles: one TOML file per reader, validated at load; a bad one is reported and skipped."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from digest.errors import ConfigError, DigestError
from digest.store import Store
from digest.validation import format_validation_error, read_toml

_SUBSCRIBER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _no_line_breaks(value: str) -> str:
    if re.search(r"[\r\n\x00]", value):
        raise ValueError("must not contain line breaks (CR/LF)")
    return value


class Interests(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    papers: tuple[str, ...] = ()

    @field_validator("keywords", "exclude", "papers")
    @classmethod
    def _clean(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(v.strip() for v in values)
        if any(not v for v in cleaned):
            raise ValueError("must not contain empty strings")
        return cleaned

    @property
    def is_empty(self) -> bool:
        return not self.keywords and not self.papers


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default="", exclude=True)
    name: str
    email: str
    format: Literal["html", "markdown"] = "html"
    delivery: Literal["email", "feed", "both"] = "email"
    schedule: str = "0 7 * * mon-fri"
    timezone: str = "UTC"
    max_papers: int = Field(default=10, ge=1, le=100)
    min_score: float = Field(default=0.05, ge=0.0, le=1.0)
    diversity: float = Field(default=0.3, ge=0.0, le=1.0)
    lookback_days: int = Field(default=7, ge=1, le=365)
    interests: Interests = Field(default_factory=Interests)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = _no_line_breaks(value).strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        _no_line_breaks(value)
        try:
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(f"is not a valid email address ({exc})") from None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"is not a known time zone (got {value!r}); use a name like 'Europe/London'") from None
        return value

    @model_validator(mode="after")
    def _schedule(self) -> Profile:
        try:
            CronTrigger.from_crontab(self.schedule, timezone=ZoneInfo(self.timezone))
        except ValueError as exc:
            raise ValueError(
                f"schedule {self.schedule!r} is not a valid crontab ({exc}); use e.g. '0 7 * * mon-fri'"
            ) from None
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def wants_email(self) -> bool:
        return self.delivery in ("email", "both")

    @property
    def wants_feed(self) -> bool:
        return self.delivery in ("feed", "both")


def load_profile(path: Path) -> Profile:
    """Load one profile; its id is the file name without .toml."""
    subscriber_id = path.stem
    if not _SUBSCRIBER_ID.match(subscriber_id):
        raise ConfigError(f"{path}: file name must be letters, digits, '.', '_' or '-' (it becomes the subscriber id)")
    data = read_toml(path)
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), Profile, exc)) from None
    return profile.model_copy(update={"id": subscriber_id})


@dataclass(frozen=True)
class SubscriberSet:
    profiles: tuple[Profile, ...]
    errors: tuple[str, ...]

    def get(self, subscriber_id: str) -> Profile:
        for profile in self.profiles:
            if profile.id == subscriber_id:
                return profile
        for error in self.errors:
            if error.startswith(f"{subscriber_id}.toml") or f"/{subscriber_id}.toml:" in error:
                raise ConfigError(error)
        known = ", ".join(p.id for p in self.profiles) or "none"
        raise DigestError(f"no subscriber {subscriber_id!r} (known: {known})")


def load_subscribers(folder: Path) -> SubscriberSet:
    """Every *.toml profile in the folder; bad ones become one-line errors, the rest load."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: subscribers folder not found; create it or set [paths] subscribers")
    profiles: list[Profile] = []
    errors: list[str] = []
    for path in sorted(folder.glob("*.toml")):
        try:
            profiles.append(load_profile(path))
        except ConfigError as exc:
            errors.append(str(exc))
    return SubscriberSet(tuple(profiles), tuple(errors))


@dataclass(frozen=True)
class SubscriberStatus:
    """What `digest subscribers` shows about one reader."""

    id: str
    name: str
    email: str
    schedule: str
    timezone: str
    paused: bool
    last_sent: str | None
    papers_sent: int
    next_due: datetime | None  # None while paused

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "paused": self.paused,
            "last_sent": self.last_sent,
            "papers_sent": self.papers_sent,
            "next_due": self.next_due.isoformat() if self.next_due else None,
        }


def next_due(profile: Profile, now: datetime) -> datetime:
    """When the subscriber's crontab next fires after `now`, in their time zone (as APScheduler would run it)."""
    trigger = CronTrigger.from_crontab(profile.schedule, timezone=profile.zone)
    fire = trigger.get_next_fire_time(None, now.astimezone(profile.zone))
    if fire is None:  # a crontab always fires again; this guards against a trigger with an end date
        raise ConfigError(f"{profile.id}.toml: schedule {profile.schedule!r} never fires again")
    return fire


def subscriber_status(store: Store, profile: Profile, now: datetime) -> SubscriberStatus:
    state = store.subscriber_state(profile.id)
    return SubscriberStatus(
        id=profile.id,
        name=profile.name,
        email=profile.email,
        schedule=profile.schedule,
        timezone=profile.timezone,
        paused=state.paused,
        last_sent=store.last_sent_at(profile.id),
        papers_sent=store.count_sent_papers(profile.id),
        next_due=None if state.paused else next_due(profile, now),
    )

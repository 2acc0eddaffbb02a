"""Subscriber profiles: one TOML file per reader, validated at load; a bad one is reported and skipped."""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from digest.clock import utc_now
from digest.errors import ConfigError, DigestError
from digest.schedule import next_slot
from digest.store import Store
from digest.validation import format_validation_error, read_toml

_SUBSCRIBER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Ids that cannot name a subscriber, compared case-insensitively: "all" is the shared feed (all.xml, and
# /feeds/all.xml on the web; digest.atom.ALL_FEED), so a subscriber "all" would overwrite it or be served it.
RESERVED_IDS = frozenset({"all"})
# Device names Windows refuses as a file name, with any extension (CON.xml, nul.backup.xml): the feed file
# <id>.xml could not be written where the feeds folder is on such a file system.
_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{n}" for n in range(10)} | {f"lpt{n}" for n in range(10)}
)
# A schedule must fire at least once this soon after "now" (a leap day, 29 Feb, fires every 4 years).
FIRES_WITHIN = timedelta(days=5 * 366)
_EXAMPLE_SCHEDULE = "'0 7 * * mon-fri'"


def id_problem(subscriber_id: str) -> str | None:
    """Why a subscriber id (a profile's file name without .toml) cannot be used, or None when it can.

    The id names the feed file <id>.xml and the URL /feeds/<id>.xml, so it must be a safe file name and
    URL segment everywhere, case-insensitive file systems included.
    """
    if not _SUBSCRIBER_ID.match(subscriber_id):
        return "file name must be letters, digits, '.', '_' or '-' (it becomes the subscriber id)"
    if subscriber_id.lower() in RESERVED_IDS:
        return f"subscriber id {subscriber_id!r} is reserved for the shared feed all.xml"
    if subscriber_id.split(".", 1)[0].lower() in _DEVICE_NAMES:
        return f"subscriber id {subscriber_id!r} is a device name on Windows and cannot name its feed file"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _no_line_breaks(value: str) -> str:
    if re.search(r"[\r\n\x00]", value):
        raise ValueError("must not contain line breaks (CR/LF)")
    return value


_CATEGORY = re.compile(r"[A-Za-z][A-Za-z-]*(\.[A-Za-z][A-Za-z-]*)?")


class Interests(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    papers: tuple[str, ...] = ()
    # People whose papers the reader wants ("Ada Lovelace"; initials and accents are matched, digest.rank.people)
    authors: tuple[str, ...] = ()
    # People whose papers the reader never wants (matched the same way); their papers are dropped, whatever else
    exclude_authors: tuple[str, ...] = ()
    # arXiv categories ("cs.LG") or whole archives ("math"); sources that carry categories (arXiv) can match them
    categories: tuple[str, ...] = ()

    @field_validator("keywords", "exclude", "papers", "authors", "exclude_authors", "categories")
    @classmethod
    def _clean(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(v.strip() for v in values)
        if any(not v for v in cleaned):
            raise ValueError("must not contain empty strings")
        return cleaned

    @field_validator("authors", "exclude_authors")
    @classmethod
    def _names(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not any(c.isalpha() for c in value):
                raise ValueError(f'{value!r} is not a name; write it as on a paper, e.g. "Ada Lovelace"')
        return values

    @field_validator("categories")
    @classmethod
    def _categories(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not _CATEGORY.fullmatch(value):
                raise ValueError(f'{value!r} is not an arXiv category; write e.g. "cs.LG", "hep-th" or "math"')
        return values


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default="", exclude=True)
    name: str
    email: str
    format: Literal["html", "markdown"] = "html"
    delivery: Literal["email", "feed", "both"] = "email"
    # timezone before schedule: the schedule's check (does it ever fire?) runs in the profile's time zone.
    timezone: str = "UTC"
    schedule: str = "0 7 * * mon-fri"
    max_papers: int = Field(default=10, ge=1, le=100)
    min_score: float = Field(default=0.05, ge=0.0, le=1.0)
    diversity: float = Field(default=0.3, ge=0.0, le=1.0)
    lookback_days: int = Field(default=7, ge=1, le=365)
    interests: Interests = Field(default_factory=Interests)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        problem = id_problem(value) if value else None
        if problem:
            raise ValueError(problem)
        return value

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

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str, info: ValidationInfo) -> str:
        """A valid crontab that fires at least once within FIRES_WITHIN of now, in the profile's time zone.

        "Now" is the `now` of the validation context (load_subscribers passes one), else the clock. A
        schedule that never fires (30 February) would otherwise break next-due for everyone listed with it.
        """
        context = info.context if isinstance(info.context, dict) else {}
        now = context.get("now") or utc_now()
        problem = _schedule_problem(value, info.data.get("timezone"), now.astimezone(UTC).date())
        if problem:
            raise ValueError(problem)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def wants_email(self) -> bool:
        return self.delivery in ("email", "both")


def load_profile(path: Path, now: datetime | None = None) -> Profile:
    """Load one profile; its id is the file name without .toml. `now` is when its schedule must fire after."""
    subscriber_id = path.stem
    problem = id_problem(subscriber_id)
    if problem:
        raise ConfigError(f"{path}: {problem}; rename the file")
    return profile_from_data(read_toml(path), subscriber_id, str(path), now)


def parse_profile(data: bytes, subscriber_id: str, label: str, now: datetime | None = None) -> Profile:
    """A profile from a file's bytes (as the store keeps them), with the one-line errors of a file: `label` names
    it (the file, or "<id>.toml" where there is no folder)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: is not UTF-8 text; save it as UTF-8") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: invalid TOML: {exc}") from None
    return profile_from_data(values, subscriber_id, label, now)


def profile_from_data(values: dict[str, Any], subscriber_id: str, label: str, now: datetime | None = None) -> Profile:
    try:
        profile = Profile.model_validate(values, context={"now": now or utc_now()})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(label, Profile, exc)) from None
    return profile.model_copy(update={"id": subscriber_id})


@dataclass(frozen=True)
class SubscriberSet:
    profiles: tuple[Profile, ...]
    errors: tuple[str, ...]
    notices: tuple[str, ...] = ()  # what a sync of the folder with the store did that someone should know
    synced: bool = True  # False: the sync could not be written this time (the store busy or full); try again

    def get(self, subscriber_id: str) -> Profile:
        for profile in self.profiles:
            if profile.id == subscriber_id:
                return profile
        for error in self.errors:
            if error.startswith(f"{subscriber_id}.toml") or f"/{subscriber_id}.toml:" in error:
                raise ConfigError(error)
        known = ", ".join(p.id for p in self.profiles) or "none"
        raise DigestError(f"no subscriber {subscriber_id!r} (known: {known})")


@dataclass(frozen=True)
class FolderScan:
    """The profile files of the subscribers folder: their bytes by subscriber id."""

    files: dict[str, bytes] = field(default_factory=dict)
    # Files there that cannot be used now (unreadable; an id that clashes with another's): their profiles stay as
    # the store has them.
    held: frozenset[str] = frozenset()
    errors: tuple[str, ...] = ()
    unreadable: dict[str, str] = field(default_factory=dict)  # id -> why its file cannot be read


def scan_folder(
    folder: Path, only: str | None = None, *, prefer: Collection[str] = (), strict: bool = False
) -> FolderScan:
    """Every *.toml profile file of the folder (or the one of subscriber `only`). A file whose name is no id, or
    that cannot be read, is reported and left out (held: it is there); so is one whose id differs from another's
    only in case (on macOS they are one file, and their feed files would collide), the one kept being the id in
    `prefer` (the stored profiles), else the first by name. `strict`: a folder that cannot be listed raises
    OSError (glob would call it empty)."""
    if only is not None:
        paths = [folder / f"{only}.toml"]
    elif strict:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries]
        paths = sorted(folder / name for name in names if name.endswith(".toml") and not name.startswith("."))
    else:
        paths = sorted(folder.glob("*.toml"))
    found: dict[str, tuple[Path, bytes | None]] = {}
    errors: list[str] = []
    unreadable: dict[str, str] = {}
    for path in paths:
        subscriber = path.stem
        problem = id_problem(subscriber)
        if problem:
            errors.append(f"{path}: {problem}; rename the file")
            continue
        try:
            found[subscriber] = (path, path.read_bytes())
        except FileNotFoundError:
            if only is None:  # listed a moment ago: being replaced (an editor's save, a pull), not removed
                found[subscriber] = (path, None)
                unreadable[subscriber] = f"{path}: vanished while it was read"
            continue
        except OSError as exc:
            found[subscriber] = (path, None)
            unreadable[subscriber] = f"{path}: cannot read ({exc.strerror})"
    clashes: dict[str, list[str]] = {}
    for subscriber in found:
        clashes.setdefault(subscriber.lower(), []).append(subscriber)
    held = set(unreadable)
    for group in clashes.values():
        kept = next((name for name in group if name in prefer), group[0])
        for name in group:
            if name != kept:
                errors.append(
                    f"{found[name][0]}: subscriber id {name!r} differs from {found[kept][0].name}'s only in case"
                    " (their feed files would collide); rename the file"
                )
                held.add(name)
    files = {name: data for name, (_, data) in found.items() if data is not None and name not in held}
    return FolderScan(files, frozenset(held), tuple(errors), unreadable)


def load_subscribers(folder: Path, now: datetime | None = None) -> SubscriberSet:
    """Every *.toml profile in the folder, from the files alone (digest.profile_book loads them through the
    store); bad ones become one-line errors, the rest load.

    Whatever goes wrong with one profile (a bug included) is that profile's error, never the others'.
    """
    if not folder.is_dir():
        raise ConfigError(f"{folder}: subscribers folder not found; create it or set [paths] subscribers")
    now = now or utc_now()
    scan = scan_folder(folder)
    loaded = parse_profiles(scan.files, lambda subscriber: str(folder / f"{subscriber}.toml"), now)
    return SubscriberSet(loaded.profiles, (*scan.errors, *scan.unreadable.values(), *loaded.errors))


def parse_profiles(profiles: Mapping[str, bytes], label: Callable[[str], str], now: datetime) -> SubscriberSet:
    """Profiles from their files' bytes, by subscriber id, in the order of their file names; `label` names a
    subscriber's profile in its errors. Whatever goes wrong with one (a bug included) is its error alone."""
    loaded: list[Profile] = []
    errors: list[str] = []
    for subscriber in sorted(profiles, key=lambda name: f"{name}.toml"):
        where = label(subscriber)
        try:
            loaded.append(parse_profile(profiles[subscriber], subscriber, where, now))
        except ConfigError as exc:
            errors.append(str(exc))
        except Exception as exc:  # one profile never breaks the others
            errors.append(f"{where}: cannot be loaded ({type(exc).__name__}: {_one_line(exc)})")
    return SubscriberSet(tuple(loaded), tuple(errors))


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
    """When the subscriber's crontab next fires after `now`, in their time zone: the daemon's own next slot
    (digest.schedule, which knows the nights clocks change)."""
    fire = next_slot(profile, now)
    if fire is None:  # a crontab always fires again; this guards against a trigger with an end date
        raise ConfigError(f"{profile.id}.toml: schedule {profile.schedule!r} never fires again")
    return fire


def subscriber_statuses(
    store: Store, profiles: Iterable[Profile], now: datetime
) -> tuple[list[SubscriberStatus], list[str]]:
    """The status of each profile, and a one-line error for each one whose status cannot be computed.

    One subscriber's failure (its next due, its rows in the store) never hides the others' statuses.
    """
    statuses: list[SubscriberStatus] = []
    errors: list[str] = []
    for profile in profiles:
        try:
            statuses.append(subscriber_status(store, profile, now))
        except Exception as exc:  # reported, the listing goes on
            errors.append(f"{profile.id}.toml: cannot compute its status ({type(exc).__name__}: {_one_line(exc)})")
    return statuses, errors


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


@functools.lru_cache(maxsize=1024)
def _schedule_problem(value: str, timezone: str | None, day: date) -> str | None:
    """What is wrong with a crontab in a time zone (None: it fires within FIRES_WITHIN of the day's start).
    Cached: a thousand profiles usually share a handful of schedules, and every command loads them all."""
    zone = ZoneInfo(timezone) if timezone else UTC  # no zone when it is invalid (reported on its own)
    try:
        trigger = CronTrigger.from_crontab(value, timezone=zone)
    except ValueError as exc:
        return f"is not a valid crontab (got {value!r}: {exc}); use e.g. {_EXAMPLE_SCHEDULE}"
    now = datetime.combine(day, time(), tzinfo=UTC)
    horizon = now + FIRES_WITHIN
    trigger.end_date = horizon  # bounds the search: a crontab that never fires would scan to the year 9999
    try:
        fire = trigger.get_next_fire_time(None, now.astimezone(zone))
    except Exception as exc:  # whatever APScheduler raises, it is this profile's problem
        problem = f"{type(exc).__name__}: {_one_line(exc)}"
        return f"cannot be evaluated (got {value!r}: {problem}); use e.g. {_EXAMPLE_SCHEDULE}"
    if fire is None or fire > horizon:
        return (
            f"never fires (got {value!r}: no time in the next {FIRES_WITHIN.days // 366} years matches it"
            f" in {zone}); use e.g. {_EXAMPLE_SCHEDULE}"
        )
    return None

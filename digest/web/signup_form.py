"""The sign-up form (digest.web.signup): the choices it offers and how a filled-in form becomes a profile, checked
with the rules of a profile file and a public form's caps. No I/O."""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Mapping
from datetime import datetime

from pydantic import ValidationError

from digest.characters import INVISIBLE
from digest.starter import parse_keywords
from digest.subscribers import Profile

# The schedules a reader chooses from (any crontab can be set later, on the settings page or in the file).
PRESETS: dict[str, tuple[str, str]] = {
    "weekdays": ("Weekdays at 07:00", "0 7 * * mon-fri"),
    "daily": ("Every day at 07:00", "0 7 * * *"),
    "weekly": ("Mondays at 07:00", "0 7 * * mon"),
}
FORMATS = {"html": "HTML", "markdown": "Markdown (plain text)"}
FIELDS = ("email", "name", "keywords", "papers", "format", "schedule", "timezone")
DEFAULTS = {"format": "html", "schedule": "weekdays", "timezone": "UTC"}
# A public form takes no essays: characters per field, and items per list.
MAX_CHARS = {"email": 254, "name": 100, "keywords": 1000, "papers": 4000, "timezone": 64}
MAX_KEYWORDS = 30
MAX_PAPERS = 20


@functools.lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    """The zones the form suggests (any IANA name is taken)."""
    areas = ("Africa/", "America/", "Antarctica/", "Asia/", "Atlantic/", "Australia/", "Europe/", "Indian/", "Pacific/")
    return ("UTC", *sorted(z for z in zoneinfo.available_timezones() if z.startswith(areas)))


def requested_profile(values: Mapping[str, str], now: datetime) -> tuple[Profile | None, dict[str, str]]:
    """The profile a filled-in form asks for, checked with the rules of a profile file, or the problems: one
    line per field, `<field> <problem>` (the profile's own wording where it has one)."""
    problems: dict[str, str] = {}
    for field, limit in MAX_CHARS.items():
        if len(values.get(field, "")) > limit:
            problems[field] = f"{field} is too long (at most {limit} characters)"
    keywords = parse_keywords(values.get("keywords", ""))
    papers = tuple(line.strip() for line in values.get("papers", "").splitlines() if line.strip())
    if len(keywords) > MAX_KEYWORDS:
        problems["keywords"] = f"keywords are too many (at most {MAX_KEYWORDS}); keep the ones that matter most"
    if len(papers) > MAX_PAPERS:
        problems["papers"] = f"papers are too many (at most {MAX_PAPERS}, one per line)"
    if not keywords and not papers:
        problems["keywords"] = "keywords must name at least one topic (comma-separated), or list a paper you liked"
    for field, items in (("name", (values.get("name", ""),)), ("keywords", keywords), ("papers", papers)):
        if any(INVISIBLE.search(item) for item in items):
            problems.setdefault(field, f"{field} must not contain control or invisible characters")
    schedule = PRESETS.get(values.get("schedule", ""))
    if schedule is None:
        problems["schedule"] = f"schedule must be one of: {', '.join(label for label, _ in PRESETS.values())}"
    data = {
        "name": values.get("name", ""),
        "email": values.get("email", "").strip(" \t"),
        "format": values.get("format", ""),
        "timezone": values.get("timezone", "").strip() or "UTC",
        "schedule": schedule[1] if schedule else PRESETS["weekdays"][1],
        "interests": {"keywords": list(keywords), "papers": list(papers)},
    }
    try:
        profile = Profile.model_validate(data, context={"now": now})
    except ValidationError as exc:
        for error in exc.errors():
            where = [str(part) for part in error["loc"] if not isinstance(part, int)]
            field = where[-1] if where else "email"
            message = error["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
            problems[field] = f"{field} {message}"  # the profile's rule wins over ours: it is what a file says
        return None, problems
    return (None, problems) if problems else (profile, {})

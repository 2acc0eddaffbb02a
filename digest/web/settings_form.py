"""The settings page's form and the feedback page's "never..." buttons, as changes to a Profile: no web, no I/O.

A form is read into a new Profile with exactly the rules of a profile file (Profile.model_validate with the same
`now`), and every problem is the one-line message digest.validation gives for a file, filed under the form field
it concerns. Keys the page does not show (name, email, lookback_days) are kept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from pydantic import ValidationError

from digest.characters import INVISIBLE
from digest.paper import Paper
from digest.subscribers import Profile
from digest.validation import format_validation_error

# [interests] lists, one entry a line in a textarea; categories also split at commas and spaces.
LIST_FIELDS = ("keywords", "exclude", "papers", "authors", "exclude_authors", "categories")
SCHEDULES = {
    "0 7 * * mon-fri": "Weekdays at 07:00",
    "0 7 * * *": "Every day at 07:00",
    "0 7 * * mon": "Mondays at 07:00",
}
CUSTOM = "custom"
GENERAL = "form"  # problems that concern no one field
# Title words offered by "never about...": at most this many, of at least MIN_WORD letters, minus common words.
SUGGESTED_WORDS = 8
MIN_WORD = 4
_COMMON = frozenset(
    "about above across after again against also among and another any are based being below between beyond both "
    "but can could does each easy every fast few first for from further good have here how into its large less "
    "like many more most much new not novel only other our over paper same several should since small some such "
    "than that the their them then there these they this those through towards toward under using very via was "
    "way well were what when where which while who why will with within without would your".split()
)
_WORD = re.compile(r"[^\W\d_](?:[\w'-]*\w)?")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _categories(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,;]+", text) if part]


def _number(text: str, kind: Callable[[str], object]) -> object:
    """A number typed in a form as the number (a file would hold one), else the text, which validation refuses
    with its usual message ("must be an integer (got 'ten')")."""
    try:
        return kind(text.strip())
    except ValueError:
        return text.strip()


@cache
def timezones() -> tuple[str, ...]:
    """The zone names this machine knows, for the page's suggestions."""
    return tuple(sorted(available_timezones()))


def form_values(profile: Profile) -> dict[str, str]:
    """What the form shows for a profile: every field as the text of its input."""
    interests = profile.interests
    preset = profile.schedule in SCHEDULES
    return {
        **{key: "\n".join(getattr(interests, key)) for key in LIST_FIELDS if key != "categories"},
        "categories": ", ".join(interests.categories),
        "max_papers": str(profile.max_papers),
        "min_score": f"{profile.min_score:g}",
        "diversity": f"{profile.diversity:g}",
        "format": profile.format,
        "delivery": profile.delivery,
        "schedule": profile.schedule if preset else CUSTOM,
        "schedule_custom": "" if preset else profile.schedule,
        "timezone": profile.timezone,
    }


def submitted_values(fields: Mapping[str, str]) -> dict[str, str]:
    """The form's fields as posted (what the page shows back when they cannot be saved)."""
    keys = (*LIST_FIELDS, "max_papers", "min_score", "diversity", "format", "delivery", "schedule", "schedule_custom")
    return {key: fields.get(key, "") for key in (*keys, "timezone")}


def field_errors(subscriber: str, exc: ValidationError) -> dict[str, str]:
    """Each problem's one-line message (as for a file, without the file name in front) by form field."""
    source = f"{subscriber}.toml"
    lines = format_validation_error(source, Profile, exc).splitlines()
    errors: dict[str, str] = {}
    for error, line in zip(exc.errors(), lines, strict=False):  # the lines stop at validation.MAX_PROBLEMS
        named = [str(part) for part in error["loc"] if isinstance(part, str)]
        errors.setdefault(named[-1] if named else GENERAL, line.removeprefix(f"{source}: "))
    return errors


def _validated(current: Profile, changes: Mapping[str, Any], interests: Mapping[str, Any], now: datetime) -> Profile:
    data = current.model_dump(exclude={"id"})
    data.update(changes)
    data["interests"] = {**data["interests"], **interests}
    return Profile.model_validate(data, context={"now": now}).model_copy(update={"id": current.id})


MAX_ITEMS = 50  # entries in each list (keywords, liked papers, authors...)
MAX_ITEM_CHARS = 300


def profile_from_form(
    current: Profile, fields: Mapping[str, str], now: datetime
) -> tuple[Profile | None, dict[str, str]]:
    """The profile the settings form describes (None and the problems by field when it is not valid)."""
    schedule = fields.get("schedule", "").strip()
    if schedule == CUSTOM:
        schedule = fields.get("schedule_custom", "").strip()
    changes = {
        "format": fields.get("format", ""),
        "delivery": fields.get("delivery", ""),
        "timezone": fields.get("timezone", "").strip(),
        "schedule": schedule,
        "max_papers": _number(fields.get("max_papers", ""), int),
        "min_score": _number(fields.get("min_score", ""), float),
        "diversity": _number(fields.get("diversity", ""), float),
    }
    interests = {key: _lines(fields.get(key, "")) for key in LIST_FIELDS if key != "categories"}
    interests["categories"] = _categories(fields.get("categories", ""))
    # The web's own caps, as on the sign-up form (a profile file written by hand has none): a page must not be a
    # way to store megabytes of terms, or text that reads one way and is another.
    problems = {
        key: f"{key} are too many (at most {MAX_ITEMS} entries); keep the ones that matter most"
        for key, items in interests.items()
        if len(items) > MAX_ITEMS
    }
    for key, items in interests.items():
        if any(INVISIBLE.search(item) or len(item) > MAX_ITEM_CHARS for item in items):
            problems.setdefault(
                key, f"{key} entries must be at most {MAX_ITEM_CHARS} characters, without invisible characters"
            )
    if problems:
        return None, problems
    try:
        return _validated(current, changes, interests, now), {}
    except ValidationError as exc:
        return None, field_errors(current.id, exc)


# ---- "more like this", "never from this author", "never about..." -------------------------------------------


def paper_reference(paper: Paper) -> str:
    """How a liked paper is written in a profile: its arXiv id, else its DOI, else its title."""
    return paper.arxiv_id or paper.doi or paper.title


def with_liked(current: Profile, paper: Paper, now: datetime) -> Profile:
    """The profile with the paper among its liked papers (the caller checks it is not there already)."""
    papers = [*current.interests.papers, paper_reference(paper)]
    return _validated(current, {}, {"papers": papers}, now)


def without_author(current: Profile, author: str, now: datetime) -> Profile:
    """The profile with `author` among the people it never wants, and no longer among those it follows."""
    from digest.rank.people import name_key, same_person  # the ranking package: loaded only when needed

    excluded = name_key(author)
    follows = [
        a for a in current.interests.authors if not (excluded and (k := name_key(a)) and same_person(excluded, k))
    ]
    interests = {"exclude_authors": [*current.interests.exclude_authors, author.strip()], "authors": follows}
    return _validated(current, {}, interests, now)


def excludes_author(current: Profile, author: str) -> bool:
    """Whether the profile already never wants this person (written any way digest.rank.people matches)."""
    from digest.rank.people import name_key, same_person

    key = name_key(author)
    return key is not None and any(
        (other := name_key(a)) is not None and same_person(other, key) for a in current.interests.exclude_authors
    )


def never_about(current: Profile, phrase: str, now: datetime) -> Profile:
    """The profile with `phrase` among its exclusions (the caller checks it is not there already)."""
    return _validated(current, {}, {"exclude": [*current.interests.exclude, " ".join(phrase.split())]}, now)


def excludes(current: Profile, phrase: str) -> bool:
    folded = " ".join(phrase.split()).casefold()
    return any(term.casefold() == folded for term in current.interests.exclude)


def suggested_words(title: str, keywords: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """Words of a paper's title a reader might never want to read about: not common words, not words of their
    own keywords (a reader who follows "graph neural networks" does not mean "never graphs"), not already
    excluded; lower-cased, in title order."""
    taken = {_stem(word) for phrase in (*keywords, *exclude) for word in _WORD.findall(phrase)}
    found: list[str] = []
    for word in _WORD.findall(title):
        folded = word.casefold()
        if len(folded) >= MIN_WORD and folded not in _COMMON and _stem(folded) not in taken and folded not in found:
            found.append(folded)
    return found[:SUGGESTED_WORDS]


def _stem(word: str) -> str:
    """Enough of a stem to see that "graphs" is a word of the keyword "graph neural networks"."""
    folded = word.casefold()
    return folded[:-1] if len(folded) > MIN_WORD and folded.endswith("s") and not folded.endswith("ss") else folded

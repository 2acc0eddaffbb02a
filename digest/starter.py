"""`digest init`: a new workspace with the commented config.toml, an inbox and a first subscriber profile.

The config written is the packaged digest/config.toml, a link to the repository's top-level config.toml (the
reference that names every key), so the two cannot drift. The profile is validated with the same rules as any
profile (digest.subscribers.Profile) before anything is written, and lists every profile key: the ones chosen
here set, the others commented out at their defaults.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from digest.clock import utc_now
from digest.config import DEFAULT_CONFIG, Config, load_config
from digest.errors import ConfigError
from digest.files import write_atomically
from digest.subscribers import Interests, Profile, id_problem

# What a key of the profile is for, written beside it. A key without a note is still written (with its default).
PROFILE_NOTES: dict[str, str] = {
    "format": "html | markdown (the email's body format)",
    "delivery": "email | feed | both (an Atom feed instead of the email, or as well)",
    "timezone": "the schedule's time zone",
    "schedule": "crontab: minute hour day month weekday",
    "max_papers": "papers per digest at most (1-100)",
    "min_score": "send nothing below this; no email when nothing passes",
    "diversity": "0 = pure relevance, higher = more varied picks",
    "lookback_days": "how far back the first digest reaches",
    "keywords": "what you read about: papers that mention them rank first",
    "exclude": "in a title: dropped; in an abstract: pushed down",
    "papers": "papers you liked: arXiv id, DOI or title",
    "authors": 'their papers come first, e.g. ["Ada Lovelace"]',
    "exclude_authors": "their papers are never picked",
    "categories": 'arXiv categories or whole archives, e.g. ["cs.LG", "math"]',
}
# The keys `digest init` sets; every other key is written commented out, at its default.
_CHOSEN = ("name", "email", "format", "schedule", "timezone", "keywords")
_NOTE_COLUMN = 34


class StarterError(ConfigError):
    """A value for the first profile cannot be used. `key` names it (name, email, keywords, id, timezone) and
    the message is `<key> <problem>`, so a caller can say where the value came from (a flag, a prompt)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Reader:
    """Who the first profile is for: what `digest init` asks. None: the default (the id from the email
    address, the machine's time zone)."""

    name: str
    email: str
    keywords: tuple[str, ...]
    subscriber_id: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class Workspace:
    """What init_workspace wrote, as absolute paths."""

    root: Path
    config: Path
    inbox: Path
    subscribers: Path
    profile: Path
    subscriber_id: str
    settings: Config  # the config just written, loaded


def starter_config() -> bytes:
    """The commented config.toml with every key at its default (the packaged copy of the repository's)."""
    return (resources.files("digest") / "config.toml").read_bytes()


def parse_keywords(text: str) -> tuple[str, ...]:
    """ "graph neural networks, message passing" -> both keywords; empty items are dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def suggest_id(email: str, name: str = "") -> str:
    """A subscriber id (the profile's file name) from the email's local part, else the name, else "reader"."""
    for text in (email.partition("@")[0].partition("+")[0], name):
        ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
        candidate = re.sub(r"[^a-z0-9._-]+", "-", ascii_text).lstrip("._-")[:64].rstrip("._-")
        if candidate and id_problem(candidate) is None:
            return candidate
    return "reader"


def local_timezone(environ: Mapping[str, str] | None = None, etc: Path = Path("/etc")) -> str:
    """The machine's time zone as an IANA name ($TZ, /etc/timezone, the /etc/localtime link), else "UTC"."""
    environ = os.environ if environ is None else environ
    candidates = [environ.get("TZ", "").removeprefix(":")]
    try:
        candidates.append((etc / "timezone").read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        pass
    try:
        target = os.readlink(etc / "localtime")
        candidates.append(target.rpartition("zoneinfo/")[2] if "zoneinfo/" in target else "")
    except OSError:
        pass
    for name in candidates:
        if name and not name.startswith("/") and _is_zone(name):
            return name
    return "UTC"


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def check_value(key: str, value: str) -> str:
    """One answer checked on its own with the profile's rules (for a prompt that asks again); returns it
    cleaned. key: name, email, keywords (comma-separated), id or timezone. Raises StarterError."""
    if key == "id":
        problem = id_problem(value)
        if problem:
            raise StarterError("id", problem.removeprefix("file name "))
        return value
    if key == "keywords":
        _keywords(value)
        return value
    placeholder = {"name": "Reader", "email": "reader@example.org", "interests": {"keywords": ["papers"]}}
    profile = _validate({**placeholder, key: value}, utc_now())
    return str(getattr(profile, key))


def _keywords(given: str | tuple[str, ...]) -> tuple[str, ...]:
    keywords = parse_keywords(given) if isinstance(given, str) else tuple(k.strip() for k in given if k.strip())
    if not keywords:
        raise StarterError("keywords", 'must name at least one topic, comma-separated: "graph neural networks, rl"')
    return keywords


def _validate(data: dict[str, Any], now: datetime) -> Profile:
    try:
        return Profile.model_validate(data, context={"now": now})
    except ValidationError as exc:
        error = exc.errors()[0]
        location = [str(part) for part in error["loc"] if not isinstance(part, int)]
        message = error["msg"].removeprefix("Value error, ")
        got = error.get("input")
        if isinstance(got, str) and "(got " not in message:
            message += f" (got {got!r})"
        raise StarterError(location[-1] if location else "profile", message) from None


def build_profile(reader: Reader, now: datetime | None = None) -> Profile:
    """The first profile: the reader's answers, the defaults of digest.subscribers.Profile for the rest."""
    data: dict[str, Any] = {
        "name": reader.name,
        "email": reader.email,
        "timezone": reader.timezone or local_timezone(),
        "interests": {"keywords": list(_keywords(reader.keywords))},
    }
    profile = _validate(data, now or utc_now())
    subscriber_id = check_value("id", reader.subscriber_id or suggest_id(profile.email, profile.name))
    return profile.model_copy(update={"id": subscriber_id})


def profile_toml(profile: Profile) -> str:
    """The profile as a commented TOML file: every key of Profile and Interests, the chosen ones set, the others
    commented out at their defaults."""
    lines = [
        "# A paper-digest profile, written by `digest init`. The file name is the subscriber id.",
        '# Keys after a "#" are at their defaults: remove the "#" to change one. A profile needs at least one of',
        "# keywords, papers, authors or categories.",
    ]
    lines += _toml_lines(profile, Profile)
    lines += ["", "[interests]"]
    lines += _toml_lines(profile.interests, Interests)
    return "\n".join(lines) + "\n"


def _toml_lines(values: BaseModel, model: type[BaseModel]) -> list[str]:
    lines = []
    for key, field in model.model_fields.items():
        if field.exclude or isinstance(getattr(values, key), BaseModel):
            continue  # the id is the file name; tables come after the keys
        if key in _CHOSEN:
            line = f"{key} = {toml_value(getattr(values, key))}"
        else:
            default = field.get_default(call_default_factory=True)
            unset = default is None or default is PydanticUndefined
            line = f"# {key} =" if unset else f"# {key} = {toml_value(default)}"
        note = PROFILE_NOTES.get(key)
        if note and len(line) < _NOTE_COLUMN - 1:
            line = f"{line:<{_NOTE_COLUMN - 1}} # {note}"
        elif note:  # too long to share a line with its note: the note comes first
            lines.append(f"# {note}")
        lines.append(line)
    return lines


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are all valid in a TOML basic string; TOML also wants DEL escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def init_workspace(root: Path, reader: Reader, now: datetime | None = None) -> Workspace:
    """Write ROOT/config.toml (every key, commented), create its inbox and subscribers folders and the first
    profile subscribers/<id>.toml. Everything is checked before anything is written; an existing config or
    profile is never overwritten (a StarterError or ConfigError says so). Writes are atomic."""
    root = root.absolute()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} is a file, not a folder; choose another folder")
    config_text = starter_config()
    paths = Config.model_validate(tomllib.loads(config_text.decode("utf-8"))).paths
    config_path, inbox, subscribers = root / DEFAULT_CONFIG, root / paths.inbox, root / paths.subscribers
    profile = build_profile(reader, now)
    profile_path = subscribers / f"{profile.id}.toml"
    if config_path.exists():
        raise ConfigError(
            f"{config_path} already exists; digest init never overwrites it (move it away, or choose another folder)"
        )
    taken = (
        [p for p in subscribers.glob("*.toml") if p.stem.lower() == profile.id.lower()] if subscribers.is_dir() else []
    )
    if taken:
        raise StarterError(
            "id", f"{profile.id!r} is taken: {taken[0]} already exists, and is never overwritten; choose another id"
        )
    text = profile_toml(profile)
    inbox.mkdir(parents=True, exist_ok=True)
    subscribers.mkdir(parents=True, exist_ok=True)
    write_atomically(config_path, config_text)
    write_atomically(profile_path, text.encode("utf-8"))
    return Workspace(root, config_path, inbox, subscribers, profile_path, profile.id, load_config(config_path))

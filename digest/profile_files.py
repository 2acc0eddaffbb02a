"""Profiles the program writes (the web app's sign-up and settings pages): atomically, with the previous version
kept, and never over a change made meanwhile by someone else (an operator's editor, another browser tab).

Every write happens under one lock on the subscribers folder, so a check ("is the file still the version the page
was made from?") and the write that follows cannot be split by another writer of ours. A hand edit does not take
the lock, but it changes the file's version, which the next write from a page opened before it refuses.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tomllib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from digest.errors import ConfigError
from digest.files import write_atomically
from digest.starter import suggest_id, toml_value
from digest.subscribers import Interests, Profile, load_subscribers
from digest.validation import format_validation_error

HISTORY = ".history"  # subscribers/.history/<id>/<UTC time>-<hash>.toml: the versions a write replaced
KEEP_VERSIONS = 20  # per subscriber; older ones are removed
LOCK_FILE = ".write.lock"
ABSENT = "absent"  # the version of a file that does not exist


class ProfileConflict(ConfigError):
    """The profile changed on disk since the version the change was made against."""


def _version_of(data: bytes | None) -> str:
    return ABSENT if data is None else hashlib.sha256(data).hexdigest()[:32]


def file_version(path: Path) -> str:
    """What a page remembers of the file it was made from: a hash of its bytes ("absent" for no file)."""
    try:
        return _version_of(path.read_bytes())
    except FileNotFoundError:
        return ABSENT


@contextmanager
def write_lock(folder: Path) -> Iterator[None]:
    """One writer of profiles at a time, across processes (released by the kernel if the process dies)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def profile_text(profile: Profile) -> str:
    """The profile as TOML, every key written out (so that whoever opens the file sees what is in force)."""
    lines = [
        "# A paper-digest profile, last written by the web app's settings page. Hand edits are welcome: the page",
        "# refuses to save over a file that changed after it was opened. Earlier versions are in .history/.",
    ]
    for model, values in ((Profile, profile), (Interests, profile.interests)):
        if model is Interests:
            lines += ["", "[interests]"]
        for key, field in model.model_fields.items():
            value = getattr(values, key)
            if field.exclude or isinstance(value, Interests) or value is None:
                continue
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def check_profile(subscriber_id: str, text: str, now: datetime) -> Profile:
    """The profile a TOML text describes, validated with the same rules as a file in subscribers/."""
    try:
        data = tomllib.loads(text)
        profile = Profile.model_validate(data, context={"now": now})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{subscriber_id}.toml: invalid TOML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(format_validation_error(f"{subscriber_id}.toml", Profile, exc)) from None
    return profile.model_copy(update={"id": subscriber_id})


def _keep_version(folder: Path, subscriber_id: str, data: bytes, now: datetime) -> None:
    # One folder per subscriber: pruning "ada" must never touch "ada.2" or "ada.lovelace".
    history = folder / HISTORY / subscriber_id
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    # The time orders the versions; the replaced version's hash keeps two saves in one instant (a fixed
    # DIGEST_NOW, a coarse clock) from overwriting each other's copy.
    digest = hashlib.sha256(data).hexdigest()[:12]
    write_atomically(history / f"{stamp}-{digest}.toml", data)
    versions = sorted(history.glob("*.toml"))
    for old in versions[:-KEEP_VERSIONS]:
        old.unlink(missing_ok=True)


def read_profile(folder: Path, subscriber_id: str, now: datetime) -> tuple[Profile, str]:
    """A subscriber's profile and the version it was read from, both from the same bytes (what a page shows and
    later saves against). FileNotFoundError when there is no such profile."""
    path = folder / f"{subscriber_id}.toml"
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    return check_profile(subscriber_id, text, now), _version_of(data)


def save_profile(folder: Path, profile: Profile, *, expected_version: str, now: datetime) -> str:
    """Replace a subscriber's profile file with `profile`, if the file is still `expected_version`; the version
    it replaces goes to .history/. Returns the new version. Raises ProfileConflict when the file changed."""
    path = folder / f"{profile.id}.toml"
    text = profile_text(profile)
    check_profile(profile.id, text, now)  # what is written must load, whatever the caller checked
    conflict = ProfileConflict(
        f"{path.name} was changed after this page was opened (by hand, or in another window); "
        "reload the page and make your change again"
    )
    with write_lock(folder):
        # One read serves both the check and the copy kept, so what is kept is what was checked.
        try:
            before: bytes | None = path.read_bytes()
        except FileNotFoundError:
            before = None
        if _version_of(before) != expected_version:
            raise conflict
        if before is not None:
            _keep_version(folder, profile.id, before, now)
        # A hand edit (which takes no lock) that landed while the copy was written: refuse rather than lose it.
        if file_version(path) != expected_version:
            raise conflict
        write_atomically(path, text.encode("utf-8"))
    return file_version(path)


def create_profile(folder: Path, profile: Profile, now: datetime, *, taken: Collection[str] = ()) -> tuple[str, bool]:
    """A new subscriber's profile file: (their id, True). The id comes from the email address, with -2, -3...
    when a file has it or `taken` names it (ids the store still holds a history for). An address that already has
    a profile gets no second one: (that id, False), nothing written."""
    text = profile_text(profile.model_copy(update={"id": "new"}))
    check_profile("new", text, now)
    with write_lock(folder):
        subscribers = load_subscribers(folder, now) if any(folder.glob("*.toml")) else None
        address = profile.email.lower()  # not casefold(): it would make "ſam@" the mailbox "sam@"
        for existing in subscribers.profiles if subscribers else ():
            if existing.email.lower() == address:
                return existing.id, False
        used = {path.stem.casefold() for path in folder.glob("*.toml")} | {name.casefold() for name in taken}
        base = suggest_id(profile.email, profile.name)
        subscriber_id = base
        number = 2
        while subscriber_id.casefold() in used:
            suffix = f"-{number}"
            subscriber_id = base[: 64 - len(suffix)] + suffix
            number += 1
        write_atomically(folder / f"{subscriber_id}.toml", text.encode("utf-8"))
    return subscriber_id, True

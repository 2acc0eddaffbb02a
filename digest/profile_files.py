"""Profile files the program writes (digest.profile_book: the sign-up and settings pages, a sync of the store to
the subscribers folder): as TOML with every key, atomically, with the previous version kept.

Every write happens under one lock on the subscribers folder, so a check ("is the file still the version the page
was made from?") and the write that follows cannot be split by another writer of ours. A hand edit does not take
the lock, but it changes the file's version, which the next write from a page opened before it refuses.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from digest.errors import ConfigError
from digest.files import write_atomically
from digest.starter import toml_value
from digest.subscribers import Interests, Profile
from digest.validation import format_validation_error

HISTORY = ".history"  # subscribers/.history/<id>/<UTC time>-<hash>.toml: the versions a write replaced
KEEP_VERSIONS = 20  # per subscriber; older ones are removed
LOCK_FILE = ".write.lock"


class ProfileConflict(ConfigError):
    """The profile changed on disk since the version the change was made against."""


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


def keep_version(folder: Path, subscriber_id: str, data: bytes, now: datetime) -> None:
    """Keep a profile file's replaced bytes in .history/<id>/ (the last KEEP_VERSIONS)."""
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

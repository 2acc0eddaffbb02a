"""What a sync of the subscribers folder with the store does (digest.profile_book runs it): a pure comparison of the
folder's files with the stored profiles' versions, which decides what to store, remove and write back. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from digest.store import ABSENT, ProfileChange, profile_version
from digest.subscribers import FolderScan, parse_profile

# A sync removes at most this share of the profiles synced from the folder (or 3) unless told to: more is likelier
# an unmounted or half-copied folder than readers removed.
MASS_REMOVAL = 0.5


@dataclass
class SyncPlan:
    """What a sync does: changes to the store, profiles to write to the folder, and what to tell the operator."""

    changes: list[ProfileChange] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # files not synced, and why

    def apply_to(self, stored: dict[str, bytes]) -> dict[str, bytes]:
        """The profiles the store would hold once the changes are made (for a load that writes nothing)."""
        result = dict(stored)
        for change in self.changes:
            if change.kind == "put":
                result[change.subscriber] = change.data
            elif change.kind == "delete":
                result.pop(change.subscriber, None)
        return result


def plan_sync(
    scan: FolderScan,
    stored: Mapping[str, tuple[str, str | None]],
    folder: Path,
    now: datetime,
    *,
    allow_removals: bool = False,
) -> SyncPlan:
    """Compare the folder's files with the stored profiles' (version, synced): the rules are digest.profile_book's.

    Removals are held (with a notice) when they would remove more than MASS_REMOVAL of the profiles synced from
    the folder: an unmounted, emptied or half-copied folder, not an operator removing readers, is the likely
    cause. `allow_removals` (digest subscribers --remove-missing) makes them anyway."""
    plan = SyncPlan()
    removals: list[ProfileChange] = []
    for subscriber in sorted(set(scan.files) | set(stored)):
        if subscriber in scan.held:
            continue
        data = scan.files.get(subscriber)
        version, synced = stored.get(subscriber, (ABSENT, None))
        path = folder / f"{subscriber}.toml"
        if data is None:
            if synced is None:  # never in the folder: made elsewhere (a sign-up), so it is written here
                plan.exports.append(subscriber)
            else:  # the file was removed since the last sync
                removals.append(ProfileChange(subscriber, "delete", expected=version))
            continue
        on_disk = profile_version(data)
        if on_disk == version:
            if synced != on_disk:  # the file holds this version, whatever else changes meanwhile
                plan.changes.append(ProfileChange(subscriber, "synced", synced=on_disk))
        elif synced == on_disk:  # changed in the store since the last sync, the file not
            plan.exports.append(subscriber)
        elif version != ABSENT and synced is None:
            # A sign-up on a host without the folder took this id before this file was synced: two readers, one id.
            plan.errors.append(
                f"{path}: the id {subscriber!r} was given to a sign-up meanwhile; rename this file (the profile"
                f" stored under that id is another reader's: `digest profile {subscriber}`)"
            )
        else:  # the file changed since the last sync (or is new)
            if version != ABSENT and synced != version:
                plan.notices.append(
                    f"{path}: changed both here and in the store (settings page or sign-up) since the last sync;"
                    f" the file was kept, the other version is in the store's profile history"
                    f" (`digest profile {subscriber} --history`)"
                )
            email = _email_of(data, subscriber, now)
            plan.changes.append(
                ProfileChange(subscriber, "put", expected=version, data=data, email=email, synced=on_disk)
            )
    from_folder = sum(1 for _, synced in stored.values() if synced is not None)
    if removals and not allow_removals and len(removals) > max(MASS_REMOVAL * from_folder, 3):
        plan.notices.append(
            f"{folder}: {len(removals)} of the {from_folder} profiles synced from it have no file there now; none"
            " was removed (an unmounted, emptied or half-copied folder?). If they were removed on purpose, run"
            " `digest subscribers --remove-missing`"
        )
        removals = []
    for removal in removals:
        plan.notices.append(
            f"{folder / removal.subscriber}.toml was removed: subscriber {removal.subscriber!r} removed (its last"
            f" version is kept: `digest profile {removal.subscriber} --history`)"
        )
    plan.changes.extend(removals)
    return plan


def _email_of(data: bytes, subscriber: str, now: datetime) -> str | None:
    """The profile's address in lower case (one profile per address), or None when the profile does not load."""
    try:
        return parse_profile(data, subscriber, subscriber, now).email.lower()
    except Exception:  # a profile that does not load is reported when it is loaded, by its own error
        return None

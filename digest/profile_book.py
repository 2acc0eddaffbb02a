"""Where the subscribers' profiles live: in the store, so that every host sharing the database (senders and web
servers on one PostgreSQL) reads the same profiles without a shared folder; and, on the host that has it, in the
subscribers folder, their editable mirror.

Every load syncs the folder with the store by content hash. It reads the folder's files, as loading them always
did, and writes only what changed:
- a file that is new, or changed since the last sync, is stored (the version it replaces goes to the store's
  profile history);
- a file removed since the last sync removes its profile (its last version kept in the history);
- a profile changed in the store since the last sync (the settings page or a sign-up, on a web server without the
  folder) is written to the folder, the file it replaces kept in .history/;
- changed in both places since the last sync: the file wins (an operator's edit is the latest word), and a notice
  says where the other version is kept.
A file that cannot be read now, or whose id clashes with another's, leaves its profile as stored.

One folder per deployment: two hosts with folders of their own would undo each other's changes. Without
[database] url the folder is required (one host, as always); with it, a host without the folder reads the store.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from digest.errors import ConfigError, DigestError, StoreError
from digest.files import write_atomically
from digest.profile_files import ProfileConflict, check_profile, keep_version, profile_text, write_lock
from digest.profile_sync import SyncPlan, plan_sync
from digest.starter import suggest_id
from digest.store import ABSENT, ProfileChange, ProfileVersion, Store, profile_version
from digest.subscribers import FolderScan, Profile, SubscriberSet, parse_profile, parse_profiles, scan_folder

if TYPE_CHECKING:
    from digest.config import Config

log = logging.getLogger(__name__)
# A file missing from the listing is looked for again this much later before its profile is removed: a `git pull`
# or an editor's save (rename, then write) leaves a moment without it.
SECOND_LOOK = 0.25
FOLDER_MARKER = ".digest-folder"  # in the folder: the id of the folder the store syncs with
FOLDER_OWNER = "profiles-folder"  # the store's secret holding that id

FolderSignature = tuple[tuple[str, int, int, int], ...]


def _read_marker(path: Path) -> str | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    found = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return found[0] if found else None


def _write_marker(path: Path, identity: str) -> bool:
    text = (
        "# paper-digest: the store's profiles are synced with this folder (digest/profile_book.py). Keep this file\n"
        "# out of version control and out of copies of the folder: a copy with it would be synced too.\n"
        f"{identity}\n"
    )
    try:
        write_atomically(path, text.encode("utf-8"))
    except OSError:
        return False
    return True


def _file_version(path: Path) -> str:
    try:
        return profile_version(path.read_bytes())
    except FileNotFoundError:
        return ABSENT


class ProfileBook:
    """The subscribers' profiles of one deployment: the store, and this host's subscribers folder if it has one."""

    def __init__(self, store: Store, folder: Path | None) -> None:
        self.store = store
        self.folder = folder

    @classmethod
    def of(cls, config: Config, store: Store, *, create_folder: bool = False) -> ProfileBook:
        """The book config.toml describes: [paths] subscribers when this host has that folder; without it, the
        store alone (PostgreSQL only: a single host without its folder is a mistake, not a deployment)."""
        folder = config.paths.subscribers
        if create_folder and config.database.url is None:
            folder.mkdir(parents=True, exist_ok=True)
        if folder.is_dir():
            return cls(store, folder)
        if config.database.url is None:
            raise ConfigError(f"{folder}: subscribers folder not found; create it or set [paths] subscribers")
        return cls(store, None)

    def label(self, subscriber: str) -> str:
        """How one-line errors name a profile: its file, or "<id>.toml" on a host without the folder."""
        return str(self.folder / f"{subscriber}.toml") if self.folder else f"{subscriber}.toml"

    # ---- sync -----------------------------------------------------------------------------------------------

    @contextmanager
    def _folder_lock(self) -> Iterator[bool]:
        """The folder's write lock (one writer of profile files at a time, digest.profile_files); False where the
        folder cannot be written (a read-only checkout): then nothing is written to it."""
        with ExitStack() as held:
            locked = False
            if self.folder is not None:
                try:
                    held.enter_context(write_lock(self.folder))
                    locked = True
                except OSError:
                    pass
            yield locked

    def sync(
        self,
        now: datetime,
        *,
        only: str | None = None,
        write: bool = True,
        log_notices: bool = True,
        allow_removals: bool = False,
    ) -> tuple[FolderScan, SyncPlan]:
        """Sync the folder with the store (all profiles, or subscriber `only`'s); `write=False` plans only.
        Call with the folder's lock held. `log_notices=False`: the caller reports the plan's notices itself.
        A folder that is not the one the store syncs with is not read (a notice says so)."""
        scan, plan = self._plan(now, only=only, claim=write, allow_removals=allow_removals)
        if write:
            self._apply(plan, now, log_notices=log_notices)
        return scan, plan

    def _plan(
        self, now: datetime, *, only: str | None, claim: bool, allow_removals: bool
    ) -> tuple[FolderScan, SyncPlan]:
        """What a sync would do. `claim`: a store with no folder of its own yet takes this one (a write)."""
        if self.folder is None:
            return FolderScan(), SyncPlan()
        if not self._owns_folder(claim):
            return FolderScan(), SyncPlan(notices=[self._foreign_notice()])
        stored = self.store.profile_index(only)
        try:
            scan = self._scan(only, stored)
        except OSError as exc:  # a folder that cannot be listed is not an empty one: nothing is removed
            reason = f"{self.folder}: cannot list the folder ({exc.strerror}); the profiles in the store are used"
            return FolderScan(), SyncPlan(notices=[reason])
        return scan, plan_sync(scan, stored, self.folder, now, allow_removals=allow_removals)

    def _apply(self, plan: SyncPlan, now: datetime, *, log_notices: bool) -> None:
        """Make a plan's changes: profiles written to the folder, then the store's rows, in one transaction."""
        if log_notices:
            for notice in plan.notices:
                log.warning("%s", notice)
        changes = list(plan.changes)
        if plan.exports:
            for record in self.store.profile_records(plan.exports):
                if self._export(record.subscriber, record.data, record.synced, now):
                    # The file holds this version now, whatever the store gets meanwhile (no expected version).
                    changes.append(ProfileChange(record.subscriber, "synced", synced=record.version))
        if changes:
            # Refused: changed by another host since it was read; the next sync sees it as it is then.
            refused = self.store.write_profiles(changes, now)
            if refused:
                shown = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
                log.info("%d profile(s) changed by another process meanwhile, synced next run: %s", len(refused), shown)

    def _scan(self, only: str | None, stored: Mapping[str, tuple[str, str | None]]) -> FolderScan:
        """The folder's files; one missing whose profile came from the folder is looked for again a moment later
        (a `git pull` or an editor's save leaves a moment without it): found then, it is held, not removed."""
        assert self.folder is not None
        scan = scan_folder(self.folder, only, prefer=stored, strict=True)
        wanted = [only] if only is not None else list(stored)
        missing = [
            name
            for name in wanted
            if name in stored and stored[name][1] is not None and name not in scan.files and name not in scan.held
        ]
        if not missing:
            return scan
        time.sleep(SECOND_LOOK)
        back = {name for name in missing if (self.folder / f"{name}.toml").exists()}
        return replace(scan, held=scan.held | back) if back else scan

    # ---- which folder --------------------------------------------------------------------------------------

    def _owns_folder(self, write: bool) -> bool:
        """Whether this folder is the one the store's profiles are synced with: the id in its FOLDER_MARKER is the
        store's. A store that has none takes this folder's (a folder that cannot be written is synced, never
        owned). On a shared database (PostgreSQL), another copy of the folder (a stale checkout on a sending host) is
        then not read: its older files would undo newer changes, its missing ones remove readers. A SQLite file has
        one host, so its folder is always the one (re-created from version control, restored from a backup)."""
        assert self.folder is not None
        marker = self.folder / FOLDER_MARKER
        mine = _read_marker(marker)
        owner = self.store.secret(FOLDER_OWNER, fresh=True)  # another host may have adopted its folder since
        if owner is not None and mine != owner and write and self.store.engine == "sqlite":
            # A SQLite file serves one host, whose folder this is: one re-created from version control (without
            # its marker, as it should be) or restored from a backup is taken again, without a word.
            if _write_marker(marker, owner):
                return True
        if owner is not None:
            return mine == owner
        if not write:
            return True  # planning only: as it would be once this folder is taken
        candidate = mine or secrets.token_hex(16)
        if mine is None and not _write_marker(marker, candidate):
            return True
        return self.store.secret(FOLDER_OWNER, make=lambda: candidate) == candidate

    def _foreign_notice(self) -> str:
        return (
            f"{self.folder}: not the subscribers folder this store is synced with ({FOLDER_MARKER} missing or from"
            " another folder), so its files are not read and the store's profiles are used. Edit the profiles in"
            " that folder; if this one replaces it, run `digest subscribers --adopt-folder` here"
        )

    def adopt_folder(self) -> None:
        """Make this host's folder the one the store's profiles are synced with (the previous one is then not
        read). Its files win over the store's profiles at the next sync where they differ."""
        if self.folder is None:
            raise ConfigError("no subscribers folder on this host to adopt; create it or set [paths] subscribers")
        identity = secrets.token_hex(16)
        if not _write_marker(self.folder / FOLDER_MARKER, identity):
            raise ConfigError(f"{self.folder / FOLDER_MARKER}: cannot be written; check the folder's permissions")
        self.store.set_secret(FOLDER_OWNER, identity)

    def _export(self, subscriber: str, data: bytes, synced: str | None, now: datetime) -> bool:
        """Write a stored profile to the folder, if its file is still the version the last sync saw."""
        assert self.folder is not None
        path = self.folder / f"{subscriber}.toml"
        try:
            before: bytes | None = path.read_bytes()
        except FileNotFoundError:
            before = None
        if profile_version(before) != (synced or ABSENT):  # a hand edit since the scan: the next sync takes it
            return False
        try:
            if before is not None:
                keep_version(self.folder, subscriber, before, now)
            if _file_version(path) != profile_version(before):  # a hand edit meanwhile: the next sync takes it
                return False
            write_atomically(path, data)
        except OSError as exc:  # a full disk, a read-only folder: the store keeps it, the next sync tries again
            log.warning("%s: cannot write the profile to the folder (%s); the store has it", path, exc.strerror)
            return False
        return True

    # ---- reading --------------------------------------------------------------------------------------------

    def _synced(
        self,
        now: datetime,
        *,
        only: str | None = None,
        write: bool = True,
        log_notices: bool = True,
        allow_removals: bool = False,
    ) -> tuple[FolderScan, SyncPlan, bool]:
        """Sync (or only plan, `write=False`); also only plans when the folder or the store cannot be written now
        (a full disk, another writer holding the store): reading profiles never fails for that, and the next sync
        writes what this one could not. The last item: whether the sync was written."""
        with self._folder_lock() as writable:
            write = write and writable
            try:
                scan, plan = self._plan(now, only=only, claim=write, allow_removals=allow_removals)
            except StoreError as exc:  # the store could not take this folder as its own now
                log.warning("profiles read from the folder, not synced to the store this time: %s", exc)
                write = False
                scan, plan = self._plan(now, only=only, claim=False, allow_removals=allow_removals)
            if write:
                try:
                    self._apply(plan, now, log_notices=log_notices)
                    return scan, plan, True
                except StoreError as exc:  # the plan stands: what the store would hold is returned from it
                    log.warning("profiles read from the folder, not synced to the store this time: %s", exc)
            return scan, plan, False

    def refresh(self, now: datetime) -> list[str]:
        """Sync the folder with the store, loading nothing (an ingest does it, so that hosts without the folder see
        the operator's changes though no send ran here); returns the notices."""
        _, plan, _ = self._synced(now, log_notices=False)
        return list(plan.notices)

    def load(self, now: datetime, *, write: bool = True, allow_removals: bool = False) -> SubscriberSet:
        """Every profile, synced with the folder first; bad ones become one-line errors, the rest load.
        `write=False` (a preview): the profiles the sync would leave, with nothing written. `allow_removals`:
        remove the profiles whose files are gone however many they are (see plan_sync)."""
        scan, plan, written = self._synced(now, write=write, log_notices=False, allow_removals=allow_removals)
        records = {record.subscriber: record.data for record in self.store.profile_records()}
        if not written:
            records = plan.apply_to(records)
        # A held file's profile loads as stored, here as on every host without the folder: whichever host sends,
        # the reader is treated alike.
        loaded = parse_profiles(records, self.label, now)
        unreadable = [
            f"{why}; the version in the store is used" for name, why in scan.unreadable.items() if name in records
        ]
        errors = (*scan.errors, *plan.errors, *(why for name, why in scan.unreadable.items() if name not in records))
        return SubscriberSet(
            loaded.profiles,
            (*errors, *loaded.errors),
            (*plan.notices, *unreadable),
            synced=written or not write,
        )

    def read(self, subscriber: str, now: datetime) -> tuple[Profile, str] | None:
        """One subscriber's profile and the version it was read from (what a settings page shows and later saves
        against), synced with its file first; None when there is none. ConfigError when it does not load."""
        data = self.data(subscriber, now)
        if data is None:
            return None
        return parse_profile(data, subscriber, self.label(subscriber), now), profile_version(data)

    def data(self, subscriber: str, now: datetime) -> bytes | None:
        """The bytes of a subscriber's profile (its file's, as the store keeps them), synced with its file first."""
        _, plan, written = self._synced(now, only=subscriber)
        found = {record.subscriber: record.data for record in self.store.profile_records([subscriber])}
        if not written:
            found = plan.apply_to(found)
        return found.get(subscriber)

    def subscriber_with_email(self, email: str) -> str | None:
        """The subscriber whose (loading) profile has this address, compared in lower case, as the store has it
        (no sync: a sign-up form's POST must stay cheap; create() syncs, and finds a hand-made profile then)."""
        return self.store.profile_with_email(email)

    def signature(self) -> tuple[FolderSignature, tuple[int, int, int]]:
        """Changes whenever a profile may have: a file in the folder, or a profile in the store."""
        files: FolderSignature = ()
        if self.folder is not None:
            # The inode too: an atomic replace within one timestamp tick changes only that.
            stats = ((path.name, path.stat()) for path in self.folder.glob("*.toml"))
            files = tuple(sorted((name, st.st_ino, st.st_size, st.st_mtime_ns) for name, st in stats))
        return files, self.store.profile_signature()

    # ---- writing --------------------------------------------------------------------------------------------

    def save(self, profile: Profile, *, expected_version: str, now: datetime, by: str = "settings page") -> str:
        """Replace a subscriber's profile with `profile` if it is still `expected_version` (a hand edit of the file
        since then counts as a change); the version it replaces goes to the history. Returns the new version.
        ProfileConflict when it changed."""
        data = profile_text(profile).encode("utf-8")
        check_profile(profile.id, data.decode("utf-8"), now)  # what is written must load, whatever the caller checked
        conflict = ProfileConflict(
            f"{profile.id}.toml was changed after this page was opened (by hand, or in another window); "
            "reload the page and make your change again"
        )
        return self._put(profile.id, data, profile.email.lower(), expected_version, now, by, conflict)

    def _put(
        self,
        subscriber: str,
        data: bytes,
        email: str,
        expected_version: str,
        now: datetime,
        by: str,
        conflict: ProfileConflict,
    ) -> str:
        with self._folder_lock() as writable:
            self.sync(now, only=subscriber, write=writable)
            change = ProfileChange(
                subscriber,
                "put",
                expected=expected_version,
                data=data,
                email=email,
                synced=profile_version(data) if writable else None,
                by=by,
            )
            write_file = self._file_writer(subscriber, data, now, conflict) if writable else None
            if self.store.write_profiles([change], now, before_commit=write_file):
                raise conflict
        return change.version

    def history(self, subscriber: str, now: datetime) -> list[ProfileVersion]:
        """The versions of a subscriber's profile that writes replaced or removed, newest first (its file synced
        first: a hand edit since the last run has replaced a version too)."""
        self._synced(now, only=subscriber)
        return self.store.profile_history(subscriber)

    def earlier(self, subscriber: str, version: str, now: datetime) -> ProfileVersion:
        """The earlier version of a subscriber's profile that `version` names (a prefix of it will do)."""
        versions = self.history(subscriber, now)
        matches = {v.version: v for v in versions if v.version.startswith(version)}
        if len(matches) != 1:
            known = ", ".join(v.version[:12] for v in versions) or "none"
            what = "matches more than one of" if matches else "is not one of"
            raise DigestError(f"{subscriber}: version {version!r} {what} its earlier versions ({known})")
        return next(iter(matches.values()))

    def restore(self, subscriber: str, version: str, now: datetime) -> str:
        """Make an earlier version of a subscriber's profile the current one again, in the store and in the folder;
        the version it replaces goes to the history in turn. Returns the new current version."""
        chosen = self.earlier(subscriber, version, now)
        profile = parse_profile(chosen.data, subscriber, f"{subscriber}.toml (version {chosen.version[:12]})", now)
        conflict = ProfileConflict(f"{subscriber}.toml changed while it was restored; run the command again")
        expected = profile_version(self.data(subscriber, now))  # the current one need not load: the reason to restore
        return self._put(subscriber, chosen.data, profile.email.lower(), expected, now, "restore", conflict)

    def _file_writer(
        self, subscriber: str, data: bytes, now: datetime, conflict: ProfileConflict
    ) -> Callable[[], None]:
        """What writes a profile's file inside the store's transaction: refuses (and so undoes the transaction)
        when the file is no longer the version the sync just saw, a hand edit landing mid-save."""
        assert self.folder is not None
        folder = self.folder
        found = self.store.profile_records([subscriber])
        synced = (found[0].synced if found else None) or ABSENT
        path = folder / f"{subscriber}.toml"

        def write() -> None:
            try:
                before: bytes | None = path.read_bytes()
            except FileNotFoundError:
                before = None
            if profile_version(before) != synced:
                raise conflict
            if before is not None:
                keep_version(folder, subscriber, before, now)
            if _file_version(path) != synced:  # a hand edit (which takes no lock) that landed while the copy was kept
                raise conflict
            write_atomically(path, data)

        return write

    def create(self, profile: Profile, now: datetime, *, taken: Collection[str] = ()) -> tuple[str, bool]:
        """A new subscriber's profile: (their id, True). The id comes from the email address, with -2, -3... when a
        profile, a file or `taken` (ids the store still holds a history for) has it. An address that already has a
        profile gets no second one: (that id, False), nothing written."""
        data = profile_text(profile.model_copy(update={"id": "new"})).encode("utf-8")
        check_profile("new", data.decode("utf-8"), now)
        address = profile.email.lower()  # not casefold(): it would make "ſam@" the mailbox "sam@"
        base = suggest_id(profile.email, profile.name)
        with self._folder_lock() as writable:
            self.sync(now, write=writable)
            for _ in range(20):  # another host may take the id or the address meanwhile: then look again
                existing = self.store.profile_with_email(address)
                if existing is not None:
                    return existing, False
                used = {name.casefold() for name in (*self.store.profile_index(), *taken)}
                if self.folder is not None:
                    used |= {path.stem.casefold() for path in self.folder.glob("*.toml")}
                subscriber, number = base, 2
                while subscriber.casefold() in used:
                    suffix = f"-{number}"
                    subscriber = base[: 64 - len(suffix)] + suffix
                    number += 1
                version = profile_version(data)
                change = ProfileChange(
                    subscriber,
                    "put",
                    expected=ABSENT,
                    data=data,
                    email=address,
                    synced=version if writable else None,
                    by="sign-up",
                    unique_email=True,
                )
                conflict = ProfileConflict(f"{subscriber}.toml appeared meanwhile")
                write_file = self._file_writer(subscriber, data, now, conflict) if writable else None
                try:
                    if not self.store.write_profiles([change], now, before_commit=write_file):
                        return subscriber, True
                except ProfileConflict:
                    continue
        raise DigestError(f"no free subscriber id for {profile.email!r} after 20 tries; try again")

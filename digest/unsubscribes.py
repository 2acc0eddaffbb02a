"""Unsubscribes the store could not take when they came (a long ingest held the write lock, the disk was full,
the file was damaged) wait in a small fsync'd journal beside the database, and are applied before anyone is
mailed: an unsubscribe is never lost. No web code here, so a sender applies it without loading the web stack.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import stat
import uuid
from datetime import datetime
from glob import escape
from pathlib import Path

from digest.clock import Clock, utc_now
from digest.config import Config
from digest.errors import StoreError
from digest.store import Store

log = logging.getLogger(__name__)

# ---- the pending-unsubscribe journal -----------------------------------------------------------------------
#
# One JSON object a line: {"subscriber": id, "at": iso} when the token was checked but the write failed, or
# {"token_sha256": hex, "at": iso} when the store could not even be read (never the token itself). Appends
# hold an flock on the file and fsync it (and the directory when the file is new). To apply it, the live file
# is first renamed aside under its lock (later appends start a new file), then each claimed file is applied
# and deleted: a crash at any point leaves at most an entry applied twice, which changes nothing.


def pending_unsubscribe_journal(config: Config) -> Path:
    """Where unsubscribes the store could not take wait: beside the database (back it up with it)."""
    database = config.paths.database
    return database.with_name(database.name + ".pending-unsubscribes")


def _claimed_journals(journal: Path) -> list[Path]:
    return sorted(journal.parent.glob(escape(journal.name) + ".*.applying"))


def _journal_files(journal: Path) -> list[Path]:
    return [*_claimed_journals(journal), *([journal] if journal.exists() else [])]


def has_pending_unsubscribes(config: Config) -> bool:
    journal = pending_unsubscribe_journal(config)
    try:
        return bool(_journal_files(journal))
    except OSError:
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _entries(data: bytes, source: Path) -> list[dict[str, str]]:
    entries = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict) and isinstance(entry.get("subscriber") or entry.get("token_sha256"), str):
            entries.append({k: v for k, v in entry.items() if isinstance(v, str)})
        else:
            log.warning("%s:%d: not a pending unsubscribe; skipped", source, number)
    return entries


def is_pending(config: Config, subscriber: str | None, token: str | None) -> bool:
    """Whether an unsubscribe for this subscriber (or token) waits in the journal. Read-only."""
    hashed = token_hash(token) if token else None
    journal = pending_unsubscribe_journal(config)
    try:
        for path in _journal_files(journal):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            for entry in _entries(data, path):
                if (subscriber and entry.get("subscriber") == subscriber) or (
                    hashed and entry.get("token_sha256") == hashed
                ):
                    return True
    except OSError:
        return False
    return False


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_locked(path: Path, flags: int) -> int:
    """An fd on the file now at `path`, holding its exclusive flock (reopened if it was renamed meanwhile)."""
    while True:
        fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def append_pending(config: Config, entry: dict[str, str], *, limit: int | None = None) -> None:
    """Append one line to the journal and make it durable; OSError when it cannot be written. With `limit`,
    refuses (OSError) once the journal is that large."""
    journal = pending_unsubscribe_journal(config)
    line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
    journal.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_locked(journal, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        if limit is not None and size > limit:
            raise OSError(f"{journal} is over {limit} bytes; not accepting unchecked unsubscribes")
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a line left half-written by a crash stays on its own
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # no partial line (a full disk) for the next append to run into
            raise
    finally:
        os.close(fd)
    if size == 0:
        _fsync_dir(journal.parent)


def _claim(journal: Path) -> None:
    """Move the live journal aside (under its lock, so no append is half done), so that applying it never
    races an append."""
    try:
        fd = _open_locked(journal, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{journal} is not a regular file")
        journal.rename(journal.with_name(f"{journal.name}.{uuid.uuid4().hex}.applying"))
        _fsync_dir(journal.parent)
    finally:
        os.close(fd)


def _apply_claimed(store: Store, path: Path, now: datetime) -> list[str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []  # another applier finished it
    try:
        # Another applier may be on it: wait for it (never skip: a sender that went on before that applier
        # committed could mail a reader who has unsubscribed). It either applied and deleted the file, or
        # failed and left it for this one.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink == 0:
            return []
        data = b""
        while chunk := os.read(fd, 1 << 16):
            data += chunk
        paused: list[str] = []
        by_hash: dict[str, str] | None = None
        for entry in _entries(data, path):
            subscriber = entry.get("subscriber")
            if not subscriber:
                if by_hash is None:
                    by_hash = {token_hash(token): sub for sub, token in store.subscriber_tokens().items()}
                subscriber = by_hash.get(entry.get("token_sha256", ""))
                if subscriber is None:
                    log.warning("a pending unsubscribe names no current token; dropped")
                    continue
            try:
                at = datetime.fromisoformat(entry.get("at", ""))
            except ValueError:
                at = now
            if at.tzinfo is None:
                at = now
            if not store.subscriber_state(subscriber).paused:
                store.set_paused(subscriber, True, at)
                paused.append(subscriber)
                log.info("%s: unsubscribed through the web link (applied from the journal)", subscriber)
        path.unlink()
        _fsync_dir(path.parent)
        return paused
    finally:
        os.close(fd)


def apply_pending_unsubscribes(store: Store, config: Config, *, clock: Clock = utc_now) -> list[str]:
    """Pause every subscriber whose web unsubscribe waits in the journal (the store could not take it when it
    came); returns those newly paused. Call it before deciding whom to mail, and before a resume (so that a
    resume always comes after the unsubscribe it answers). Raises StoreError when the store or the journal
    cannot be used; the journal is then kept, and a sender must not mail anyone."""
    journal = pending_unsubscribe_journal(config)
    try:
        _claim(journal)
        paused: list[str] = []
        for path in _claimed_journals(journal):
            paused += _apply_claimed(store, path, clock())
        return paused
    except OSError as exc:
        raise StoreError(
            f"{journal}: cannot apply the pending unsubscribes ({exc.strerror or exc}); they are kept"
        ) from None
    except sqlite3.Error as exc:
        raise StoreError(f"{store.path}: cannot apply the pending unsubscribes ({exc}); they are kept") from None

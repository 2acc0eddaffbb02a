"""The server's secret, and the settings key derived from a reader's token.

A reader's token (in every email's links and in their feed's URL) opens their feed, the unsubscribe page and the
rating buttons. Their settings page, which shows their address and changes what they receive, takes a different
key: an HMAC of that token under a secret only this server holds. Emails carry it; feeds never do, so a feed URL
pasted into a third-party reader opens no settings. Rotating the token (`digest token --rotate`) changes both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

SECRET_SUFFIX = ".web-secret"


def secret_path(database: Path) -> Path:
    return database.with_name(database.name + SECRET_SUFFIX)


def server_secret(database: Path, *, create: bool = True) -> bytes | None:
    """The key of the form tokens and settings keys: random, made once, kept beside the database (0600), never
    sent anywhere. None when it does not exist yet and `create` is false (a preview writes nothing).

    It appears whole or not at all (written to a temporary file, synced, then linked into place), so two processes
    starting at once, or a crash while writing, can never leave an empty or partial key that others would use."""
    path = secret_path(database)
    found = _read_secret(path)
    if found is not None or not create:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="ascii") as out:  # mkstemp makes it 0600
            out.write(secrets.token_bytes(32).hex())
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, path)  # fails if another process linked its key first: theirs is the one
        except FileExistsError:
            if _read_secret(path) is None:  # a damaged key (not ours to have made): replaced whole
                os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)
    found = _read_secret(path)
    if found is None:
        raise OSError(f"{path}: the server's secret could not be made")
    return found


def _read_secret(path: Path) -> bytes | None:
    """The key in the file, or None when there is no file or it does not hold a whole key."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if len(text) != 64:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def settings_key(secret: bytes, token: str) -> str:
    """The key of a reader's settings page, from their token: 32 URL-safe characters."""
    mac = hmac.new(secret, b"settings\n" + token.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii")[:32]

"""The server's secret, and the settings key derived from a reader's token.

A reader's token (in every email's links and in their feed's URL) opens their feed, the unsubscribe page and the
rating buttons. Their settings page, which shows their address and changes what they receive, takes a different
key: an HMAC of that token under a secret only this deployment holds. Emails carry it; feeds never do, so a feed URL
pasted into a third-party reader opens no settings. Rotating the token (`digest token --rotate`) changes both.

The secret lives in the store, so that every host sharing the database (web servers and senders on one PostgreSQL)
makes and checks the same keys. A secret from before (a `<database>.web-secret` file beside a SQLite database) is
taken into the store the first time, so that links already sent keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digest.store import Store

SECRET_NAME = "web"
LEGACY_SUFFIX = ".web-secret"


def legacy_secret_path(database: Path) -> Path:
    return database.with_name(database.name + LEGACY_SUFFIX)


def server_secret(store: Store, *, create: bool = True) -> bytes | None:
    """The key of the form tokens and settings keys: 32 random bytes, made once for the whole deployment. None
    when there is none yet and `create` is false (a preview writes nothing)."""
    found = _valid(store.secret(SECRET_NAME))
    if found is not None or not create:
        return found
    legacy = _read_legacy(legacy_secret_path(store.path))
    made = store.secret(SECRET_NAME, make=lambda: legacy or secrets.token_bytes(32).hex())
    value = _valid(made)
    if value is None:
        raise ValueError("the store's web secret is damaged (not 64 hex digits); delete the row to make a new one")
    return value


def _valid(text: str | None) -> bytes | None:
    if text is None or len(text) != 64:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _read_legacy(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _valid(text) is not None else None


def settings_key(secret: bytes, token: str) -> str:
    """The key of a reader's settings page, from their token: 32 URL-safe characters."""
    mac = hmac.new(secret, b"settings\n" + token.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii")[:32]


def secret_fingerprint(secret: bytes) -> str:
    """Names a secret without giving it away (the store notes which secret its settings-key hashes were made with)."""
    return hashlib.sha256(b"fingerprint\n" + secret).hexdigest()[:16]

"""Forms that change something, protected against cross-site requests (CSRF).

A secret token in the URL says who may change a profile, but not that the request comes from our own page: a
link can leak (a forwarded email), and another site could then make the reader's browser post to it. So every
such form carries a token only this server can make (an HMAC, bound to the form's purpose and to when the page
was made) and every such POST must not come from another origin (browsers say so in Sec-Fetch-Site and Origin).
The one-click unsubscribe POST of RFC 8058 is not such a form: mail providers send it from their servers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request

FORM_FIELD = "form_token"
MAX_AGE = 4 * 3600.0  # a page left open longer is reloaded before its form is taken
_SAME_SITE = ("same-origin", "none")  # "none": the user typed the address or used a bookmark


def server_secret(database: Path) -> bytes:
    """The key of the form tokens: random, made once, kept beside the database (0600), never sent anywhere.

    It appears whole or not at all (written to a temporary file, synced, then linked into place), so two processes
    starting at once, or a crash while writing, can never leave an empty or partial key that others would use."""
    path = database.with_name(database.name + ".web-secret")
    found = _read_secret(path)
    if found is not None:
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
            found = _read_secret(path)
            if found is None:  # a damaged key (not ours to have made): replaced whole
                os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)
    found = _read_secret(path)
    if found is None:
        raise OSError(f"{path}: the form key could not be made")
    return found


def _read_secret(path: Path) -> bytes | None:
    """The key in the file, or None when there is no file or it does not hold a whole key."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return None
    if len(text) != 64:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _mac(secret: bytes, purpose: str, issued: int) -> str:
    return hmac.new(secret, f"{purpose}\n{issued}".encode(), hashlib.sha256).hexdigest()[:40]


def form_token(secret: bytes, purpose: str, now: datetime) -> str:
    """The hidden field of a form made now for `purpose` (e.g. "settings:ada")."""
    issued = int(now.timestamp())
    return f"{issued}.{_mac(secret, purpose, issued)}"


def form_token_ok(secret: bytes, purpose: str, presented: str, now: datetime, max_age: float = MAX_AGE) -> bool:
    """Made by this server, for this purpose, not in the future, at most `max_age` seconds ago."""
    issued_text, _, mac = presented.partition(".")
    if not issued_text.isdigit() or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    age = now.timestamp() - issued
    return (
        0 <= age + 60 and age <= max_age and hmac.compare_digest(mac.encode(), _mac(secret, purpose, issued).encode())
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_site(request: Request, base_url: str | None) -> bool:
    """True when the browser says the request comes from another site. Sec-Fetch-Site, when sent, is the whole
    answer (same-origin or none pass). Without it, an Origin other than ours (the public base URL, else the address
    this request was made to) is cross-site; `Origin: null` says nothing: under our `Referrer-Policy: no-referrer`
    the Fetch standard has a browser send it with every form POST, our own pages' included. Then the form token
    decides."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.lower() not in _SAME_SITE
    origin = request.headers.get("origin")
    if origin is None or origin.lower() == "null":
        return False
    ours = _origin(base_url) if base_url else _origin(str(request.base_url))
    return origin.lower() != ours

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
from datetime import datetime
from urllib.parse import urlsplit

from starlette.requests import Request

FORM_FIELD = "form_token"
MAX_AGE = 4 * 3600.0  # a page left open longer is reloaded before its form is taken
_SAME_SITE = ("same-origin", "none")  # "none": the user typed the address or used a bookmark


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

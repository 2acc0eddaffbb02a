"""`digest serve`: the small web app behind the links in every email and the personal feeds.

    GET  /feeds/<subscriber>.xml?token=T       the subscriber's Atom feed (all.xml: any subscriber's token)
    GET  /unsubscribe/<T>                      a confirmation page whose button POSTs to the same URL
    POST /unsubscribe/<T>                      RFC 8058 one-click unsubscribe: pauses the subscriber
    GET  /feedback/<T>/<paper>/like|dislike    a confirmation page whose button POSTs to the same URL
    POST /feedback/<T>/<paper>/like|dislike    records the rating the next ranking uses
    GET  /healthz                              "ok"

Every secret lives in the URL, so: anything unknown or wrong is a 404 (a 403 would confirm that a subscriber
or token exists), tokens are compared in constant time, never logged, and pages send no Referer. GET and HEAD
never write: mail scanners fetch every link in a message, and only a person presses a button. Each request
opens its own SQLite connection, in Starlette's thread pool, so nothing is shared between threads.

An unsubscribe is never lost: when the store cannot take it (a long ingest holds the write lock, the disk is
full, the file is damaged), it is appended to a small fsync'd journal beside the database and applied by
`apply_pending_unsubscribes` on the next POST, every `journal_retry` seconds while the server runs, and before
a send.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import sqlite3
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from digest.atom import ALL_FEED, all_papers_feed, subscriber_feed
from digest.characters import CONTROLS
from digest.clock import Clock, utc_now
from digest.config import Config
from digest.errors import ConfigError, DigestError, StoreError
from digest.paper import Paper
from digest.profile_book import ProfileBook
from digest.store import Store, open_store
from digest.subscribers import Profile
from digest.tokens import secret_fingerprint, server_secret, settings_key
from digest.unsubscribes import (
    append_pending,
    apply_pending_unsubscribes,
    has_pending_unsubscribes,
    is_pending,
    pending_unsubscribe_journal,
    token_hash,
)
from digest.web import forms
from digest.web import settings as settings_pages
from digest.web import signup as signup_pages
from digest.web.pages import render_page

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
# Tokens are secrets.token_urlsafe(24): 32 characters. Anything far longer is not worth comparing.
_MAX_TOKEN = 128
_RATINGS = {"like": 1, "dislike": -1}
# A web request waits this long for the write lock (an ingest may hold it); then an unsubscribe is journaled
# and a feedback POST answers 503 "try again later".
STORE_TIMEOUT = 10.0
# How often the running server retries a pending journal (it also does so after every successful POST).
JOURNAL_RETRY = 30.0
RETRY_AFTER = "30"
# Journal lines that carry only a token hash (taken while the store could not even be read, so the token was
# not checked) stop being accepted past this size: a flood of made-up tokens cannot fill the disk.
_MAX_UNCHECKED_JOURNAL = 1 << 20

# ---- logging without secrets -------------------------------------------------------------------------------

# The segment after /unsubscribe/, /feedback/, /settings/ or /confirm/, in any case and under any prefix, is the
# token (or the confirmation code).
_ROUTE_TOKEN = re.compile(r"(/(?:unsubscribe|feedback|settings|confirm)/+)[^/]*", re.IGNORECASE)
# Any other run of token alphabet (URL-safe base64) this long could be a token, or most of one, wherever it
# is: /UNSUBSCRIBE/T, /T, /feeds/T.xml, /x/Tjunk. Route words (unsubscribe: 11) and paper ids stay readable.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{12,}")


def _escape_controls(text: str) -> str:
    return CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def redact(path: str) -> str:
    """A request path fit for a log, whatever the path: percent-decoded until it stops changing (a token encoded
    twice is still the token), the token segment of /unsubscribe/ and /feedback/ (any case, any prefix) and
    every other token-like run of characters replaced by <token>, control characters (a decoded %0A could forge
    a log line) shown escaped, and the length capped."""
    for _ in range(3):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    path = _ROUTE_TOKEN.sub(r"\1<token>", path)
    path = _TOKEN_LIKE.sub("<token>", path)
    path = _escape_controls(path)
    return path if len(path) <= 200 else path[:200] + "..."


def _scrub(text: str, scope: Scope) -> str:
    """An error message fit for a log: every token-like piece of this request's path and query removed from it,
    should an exception have quoted one, on one line."""
    path = str(scope.get("path", ""))
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    pieces = [path, unquote(path), *(value for _, value in parse_qsl(query, keep_blank_values=True))]
    for secret in sorted({run for piece in pieces for run in _TOKEN_LIKE.findall(piece)}, key=len, reverse=True):
        text = text.replace(secret, "<token>")
    text = _escape_controls(text)
    return text if len(text) <= 500 else text[:500] + "..."


def page(template: str, status: int = 200, /, **context: Any) -> HTMLResponse:
    # Token pages must not be kept by shared caches or shown again from history by another user.
    return HTMLResponse(render_page(template, **context), status_code=status, headers={"cache-control": "no-store"})


def try_later() -> HTMLResponse:
    response = page("error.html", 503, title="Unavailable", message="Please try again later.")
    response.headers["retry-after"] = RETRY_AFTER
    return response


def _internal_error() -> HTMLResponse:
    return page("error.html", 500, title="Error", message="The request could not be handled.")


class SecurityHeaders:
    """Adds the security headers to every response (404, 405 and 500 included) and writes a token-free access
    log. It is the outermost layer that sees exceptions: an unexpected one is answered here with a 500 page
    that carries the headers, and logged without secrets (Starlette's own 500 would have neither)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode("latin-1") not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        method = _escape_controls(str(scope.get("method", "-")))[:16]
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            # Not re-raised: the server would print the traceback again, with the exception's own message.
            log.error(
                "%s %s: internal error: %s: %s\nTraceback (most recent call last):\n%s",
                method,
                redact(scope.get("path", "")),
                type(exc).__name__,
                _scrub(str(exc), scope),
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
            if not status:
                await _internal_error()(scope, receive, send_with_headers)
        finally:
            # The query string is left out altogether: its only parameter is the feed token.
            log.info("%s %s %s", method, redact(scope.get("path", "")), status or 500)


def not_found() -> HTTPException:
    return HTTPException(404)


def subscriber_for_token(store: Store, presented: str) -> str | None:
    """The subscriber whose token this is: found by the SHA-256 of what was presented, through an index (a request
    costs the same with a hundred readers or a hundred thousand), then compared in constant time."""
    if not presented or len(presented) > _MAX_TOKEN:
        return None
    found = store.subscriber_with_token(presented)
    if found is None:
        return None
    subscriber, token = found
    return subscriber if hmac.compare_digest(presented.encode("utf-8", "replace"), token.encode("utf-8")) else None


def subscriber_for_settings_key(store: Store, presented: str, secret: bytes) -> str | None:
    """The subscriber whose settings key this is, found like a token. A key not found may be a new token's, whose
    hash is not stored yet: those are made (a write, the only one), then it is looked up again. Where they cannot be
    made now (the store busy), every token's key is compared instead, without stopping at a match."""
    if not presented or len(presented) > _MAX_TOKEN:
        return None

    def key(token: str) -> str:
        return settings_key(secret, token)

    found = store.subscriber_with_settings_key(presented)
    if found is None:
        try:
            if not store.fill_settings_hashes(key, secret_fingerprint(secret)):
                return None
        except StoreError as exc:
            log.warning("settings keys compared one by one: their index could not be brought up to date (%s)", exc)
            return _compare_all(store, presented.encode("utf-8", "replace"), key)
        found = store.subscriber_with_settings_key(presented)
        if found is None:
            return None
    subscriber, token = found
    return subscriber if hmac.compare_digest(presented.encode("utf-8", "replace"), key(token).encode("utf-8")) else None


def _compare_all(store: Store, given: bytes, key: Callable[[str], str] | None) -> str | None:
    found = None
    for subscriber, token in store.subscriber_tokens().items():
        if hmac.compare_digest(given, (key(token) if key else token).encode("utf-8")):
            found = subscriber
    return found


# ---- the app -----------------------------------------------------------------------------------------------


class Handlers:
    """The app's request handlers and background job, sharing its configuration, clock and limits. The pages of
    digest.web.settings and digest.web.signup are built on it too."""

    def __init__(self, config: Config, clock: Clock, store_timeout: float, journal_retry: float) -> None:
        self.config = config
        self.clock = clock
        self.store_timeout = store_timeout
        self.journal_retry = journal_retry

    @functools.cached_property
    def secret(self) -> bytes:
        """The deployment's secret (form tokens, settings keys), from the store: the same on every host."""
        with self.store() as opened:
            secret = server_secret(opened)
        assert secret is not None  # made when missing
        return secret

    def store(self) -> Store:
        return open_store(self.config, timeout=self.store_timeout)

    def profiles(self, store: Store) -> ProfileBook:
        """The subscribers' profiles (digest.profile_book): the store, and the folder where this host has it."""
        return ProfileBook.of(self.config, store, create_folder=True)

    def profile(self, store: Store, subscriber: str) -> Profile | None:
        """A subscriber's profile; None when there is none, or it does not load (logged for the operator)."""
        try:
            found = self.profiles(store).read(subscriber, self.clock())
        except ConfigError as exc:
            log.warning("%s", exc)
            return None
        return None if found is None else found[0]

    def display_name(self, subscriber: str) -> str:
        try:
            with self.store() as opened:
                profile = self.profile(opened, subscriber)
            if profile is not None:
                return profile.name
        except DigestError:
            pass  # a broken subscriber file must not turn a recorded unsubscribe into an error page
        return subscriber

    def apply_pending(self, opened: Store) -> None:
        """After a successful write: the store takes writes again, so apply what waits (best effort)."""
        if not has_pending_unsubscribes(self.config):
            return
        try:
            apply_pending_unsubscribes(opened, self.config, clock=self.clock)
        except DigestError as exc:
            log.warning("pending unsubscribes not applied yet: %s", exc)

    def feed(self, request: Request) -> Response:
        name = request.path_params["subscriber"]
        presented = request.query_params.get("token", "")
        with self.store() as opened:
            owner = subscriber_for_token(opened, presented)
            if owner is None:
                raise not_found()
            # rel="self": the address this reader used (the token is theirs already), under the public base URL.
            base = self.config.web.base_url or str(request.base_url).rstrip("/")
            own_url = f"{base}/feeds/{quote(name, safe='')}.xml?{urlencode({'token': presented})}"
            if name == ALL_FEED:
                body = all_papers_feed(opened, self.clock(), self_url=own_url)
            else:
                # The token must be this subscriber's own: one reader's token never opens another's feed.
                if owner != name:
                    raise not_found()
                profile = self.profile(opened, name)
                if profile is None:
                    raise not_found()
                body = subscriber_feed(
                    opened, self.config, name, profile.name, self.clock(), profile=profile, self_url=own_url
                )
        return Response(
            body,
            media_type="application/atom+xml; charset=utf-8",
            headers={"cache-control": "private, no-cache"},
        )

    def unsubscribe_page(self, request: Request) -> Response:
        with self.store() as opened:
            subscriber = subscriber_for_token(opened, request.path_params["token"])
            if subscriber is None:
                raise not_found()
            paused = opened.subscriber_state(subscriber).paused
        paused = paused or is_pending(self.config, subscriber, request.path_params["token"])
        # GET never changes anything: mail scanners open links, and only a person presses the button.
        return page("unsubscribe_confirm.html", title="Unsubscribe", name=self.display_name(subscriber), paused=paused)

    def journal(self, entry: dict[str, str], who: str, reason: object, *, limit: int | None = None) -> bool:
        """Make the unsubscribe durable in the journal; False (and an ERROR line naming who) if even that fails."""
        try:
            append_pending(self.config, entry, limit=limit)
        except OSError as exc:
            log.error(
                "%s: UNSUBSCRIBE NOT RECORDED: the store could not take it (%s), nor the journal %s (%s); "
                "the sender was told to try again later",
                who,
                reason,
                pending_unsubscribe_journal(self.config),
                exc.strerror or exc,
            )
            return False
        log.warning(
            "%s: unsubscribe journaled, as the store could not take it (%s); it is applied before the next send",
            who,
            reason,
        )
        return True

    def unsubscribe_journaled(self, subscriber: str, reason: object, now: datetime) -> Response:
        # 202: durably accepted; the store catches up on the next write, and a send applies it first.
        pending = is_pending(self.config, subscriber, None)
        if not pending and not self.journal({"subscriber": subscriber, "at": now.isoformat()}, subscriber, reason):
            return try_later()
        return page(
            "unsubscribed.html", 202, title="Unsubscribed", name=self.display_name(subscriber), changed=not pending
        )

    def unsubscribe_unchecked(self, presented: str, reason: object, now: datetime) -> Response:
        # The store cannot even be read, so the token cannot be checked: keep its hash (never the token) and
        # match it when the store is back. This answer says nothing about whether the token exists.
        pending = is_pending(self.config, None, presented)
        entry = {"token_sha256": token_hash(presented), "at": now.isoformat()}
        if not pending and not self.journal(entry, "(token not checked)", reason, limit=_MAX_UNCHECKED_JOURNAL):
            return try_later()
        return page("unsubscribed.html", 202, title="Unsubscribed", name=None, changed=not pending)

    def unsubscribe(self, request: Request) -> Response:
        # RFC 8058: the body is "List-Unsubscribe=One-Click". The token in the URL is what authorises the
        # request, so the body is not read (a sender cannot do anything useful with a different one).
        presented = request.path_params["token"]
        now = self.clock()
        try:
            with self.store() as opened:
                subscriber = subscriber_for_token(opened, presented)
                if subscriber is None:
                    raise not_found()
                try:
                    changed = opened.set_paused(subscriber, True, now)
                except StoreError as exc:
                    return self.unsubscribe_journaled(subscriber, exc, now)
                self.apply_pending(opened)
        except (StoreError, sqlite3.Error) as exc:
            if not presented or len(presented) > _MAX_TOKEN:
                raise not_found() from None
            return self.unsubscribe_unchecked(presented, exc, now)
        if changed:
            log.info("%s: unsubscribed through the web link", subscriber)
        return page("unsubscribed.html", title="Unsubscribed", name=self.display_name(subscriber), changed=changed)

    def feedback_target(self, opened: Store, request: Request) -> tuple[str, Paper, str]:
        # The paper id was percent-encoded into one segment but may hold '/' once decoded (hep-th/9901001,
        # doi:10.1234/abc), so the route takes the rest of the path and the rating is its last segment.
        paper_id, _, rating = request.path_params["rest"].rpartition("/")
        if rating not in _RATINGS or not paper_id:
            raise not_found()
        subscriber = subscriber_for_token(opened, request.path_params["token"])
        if subscriber is None:
            raise not_found()
        paper = opened.get_paper(paper_id)
        if paper is None or paper.id is None:
            raise not_found()
        return subscriber, paper, rating

    def feedback_page(self, request: Request) -> Response:
        # GET and HEAD only show what the button would record: mail scanners fetch every link in a message.
        with self.store() as opened:
            subscriber, paper, rating = self.feedback_target(opened, request)
            current = opened.feedback(subscriber).get(paper.id or "")
        other = "dislike" if rating == "like" else "like"
        given = {value: name for name, value in _RATINGS.items()}.get(current or 0)
        return page(
            "feedback_confirm.html",
            title="Like?" if rating == "like" else "Dislike?",
            paper_title=paper.title,
            rating=rating,
            other=other,
            current=given,
        )

    def feedback(self, request: Request) -> Response:
        # The latest rating wins, so a replayed POST records the same thing again. Unlike the one-click
        # unsubscribe (which mail providers POST from their servers), a rating comes from our own page's button:
        # a browser that says the POST comes from another site is refused.
        if forms.cross_site(request, self.config.web.base_url):
            return page("error.html", 403, title="Not allowed", message="This request did not come from this site.")
        with self.store() as opened:
            subscriber, paper, rating = self.feedback_target(opened, request)
            opened.set_feedback(subscriber, paper.id or "", _RATINGS[rating], self.clock())
            self.apply_pending(opened)
        other = "dislike" if rating == "like" else "like"
        offers = settings_pages.feedback_offers(self, request, subscriber, paper)  # more like this, never...
        return page("feedback.html", title="Thanks", paper_title=paper.title, rating=rating, other=other, offers=offers)

    def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return page("error.html", 404, title="Not found", message="This link is not valid (any more).")
        if status == 405:
            return page("error.html", 405, title="Method not allowed", message="This address does not take that.")
        return page("error.html", status, title="Error", message="The request could not be handled.")

    async def digest_error(self, request: Request, exc: Exception) -> Response:
        # A broken self.config or database is the operator's problem: say so in the log, not to the visitor.
        log.error("%s %s: %s", request.method, redact(request.url.path), _scrub(str(exc), request.scope))
        return try_later()

    def apply_in_background(self) -> None:
        try:
            with self.store() as opened:
                apply_pending_unsubscribes(opened, self.config, clock=self.clock)
        except DigestError as exc:
            log.warning("pending unsubscribes not applied yet (retried in %gs): %s", self.journal_retry, exc)

    async def retry_pending(self) -> None:
        while True:
            if has_pending_unsubscribes(self.config):
                await anyio.to_thread.run_sync(self.apply_in_background)
            await anyio.sleep(self.journal_retry)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Pending unsubscribes are applied at start-up and retried while the server runs, not only on the next
        # POST: the store should say "paused" as soon as it can.
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.retry_pending)
            tasks.start_soon(anyio.to_thread.run_sync, self.index_settings_keys)
            yield
            tasks.cancel_scope.cancel()

    def index_settings_keys(self) -> None:
        """Make the settings-key hashes still missing (after an upgrade, every reader's: 1.5 s for 100,000) at
        start-up rather than in the first reader's request. Best effort: a request makes them too."""
        try:
            secret = self.secret
            with self.store() as opened:
                made = opened.fill_settings_hashes(functools.partial(settings_key, secret), secret_fingerprint(secret))
        except DigestError as exc:
            log.warning("settings keys not indexed at start-up (the first settings page will): %s", exc)
            return
        if made:
            log.info("settings keys indexed: %d", made)


def create_app(
    config: Config,
    *,
    clock: Clock = utc_now,
    store_timeout: float = STORE_TIMEOUT,
    journal_retry: float = JOURNAL_RETRY,
) -> Starlette:
    """The ASGI app for `digest serve` (and for tests: run it under any ASGI server). `store_timeout` is how
    long a request waits for the database write lock; `journal_retry` how often pending unsubscribes are
    retried while the server runs."""

    handlers = Handlers(config, clock, store_timeout, journal_retry)
    routes = [
        Route("/healthz", handlers.healthz, methods=["GET"]),
        Route("/feeds/{subscriber}.xml", handlers.feed, methods=["GET"]),
        Route("/unsubscribe/{token}", handlers.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", handlers.unsubscribe, methods=["POST"]),
        Route("/feedback/{token}/{rest:path}", handlers.feedback_page, methods=["GET"]),
        Route("/feedback/{token}/{rest:path}", handlers.feedback, methods=["POST"]),
        *settings_pages.routes(handlers),
        *signup_pages.routes(handlers),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: handlers.http_error, DigestError: handlers.digest_error},
        lifespan=handlers.lifespan,
    )
    app.add_middleware(SecurityHeaders)
    # Outermost: the client and scheme of a request through a trusted proxy are the ones it forwards, before any
    # route (the sign-up limits count per client) sees them.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(config.web.trusted_proxies))
    return app


def serve(config: Config, host: str, port: int) -> None:
    """Run the app under uvicorn until interrupted. uvicorn's access log is off: it would print the tokens."""
    import uvicorn

    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        access_log=False,
        server_header=False,
        log_level="info",
        # The app reads X-Forwarded-For/Proto itself, from [web] trusted_proxies only (create_app).
        proxy_headers=False,
    )

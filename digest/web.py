"""`digest serve`: the small web app behind the links in every email and the personal feeds.

    GET  /feeds/<subscriber>.xml?token=T   the subscriber's Atom feed (all.xml: any subscriber's token)
    GET  /unsubscribe/<T>                  a confirmation page whose button POSTs to the same URL
    POST /unsubscribe/<T>                  RFC 8058 one-click unsubscribe: pauses the subscriber
    GET  /feedback/<T>/<paper>/like|dislike records a rating the next ranking uses
    GET  /healthz                          "ok"

Every secret lives in the URL, so: anything unknown or wrong is a 404 (a 403 would confirm that a subscriber
or token exists), tokens are compared in constant time, never logged, and pages send no Referer. Each request
opens its own SQLite connection, in Starlette's thread pool, so nothing is shared between threads.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.clock import Clock, utc_now
from digest.config import Config
from digest.errors import DigestError
from digest.feeds import ALL_FEED, all_papers_feed, subscriber_feed
from digest.store import Store
from digest.subscribers import load_subscribers
from digest.web_pages import render_page

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


def redact(path: str) -> str:
    """A request path fit for a log: the token segment of /unsubscribe/ and /feedback/ replaced, control
    characters (a decoded %0A could forge a log line) shown escaped, and the length capped."""
    path = re.sub(r"^/(unsubscribe|feedback)/[^/]*", r"/\1/<token>", path)
    path = re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", path)
    return path if len(path) <= 200 else path[:200] + "..."


class SecurityHeaders:
    """Adds the security headers to every response (errors included) and writes a token-free access log."""

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

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            # The query string is left out altogether: its only parameter is the feed token.
            log.info("%s %s %s", scope.get("method", "-"), redact(scope.get("path", "")), status or 500)


def _page(template: str, status: int = 200, /, **context: Any) -> HTMLResponse:
    # Token pages must not be kept by shared caches or shown again from history by another user.
    return HTMLResponse(render_page(template, **context), status_code=status, headers={"cache-control": "no-store"})


def _not_found() -> HTTPException:
    return HTTPException(404)


def subscriber_for_token(store: Store, presented: str) -> str | None:
    """The subscriber whose token this is. Compared against every issued token, without stopping at a match,
    so the time taken says nothing about how much of a guess was right."""
    if not presented or len(presented) > _MAX_TOKEN:
        return None
    given = presented.encode("utf-8", "replace")
    found = None
    for subscriber, token in store.subscriber_tokens().items():
        if hmac.compare_digest(given, token.encode("utf-8")):
            found = subscriber
    return found


def create_app(config: Config, *, clock: Clock = utc_now) -> Starlette:
    """The ASGI app for `digest serve` (and for tests: run it under any ASGI server)."""

    def store() -> Store:
        return Store(config.paths.database)

    def display_name(subscriber: str) -> str:
        for profile in load_subscribers(config.paths.subscribers).profiles:
            if profile.id == subscriber:
                return profile.name
        return subscriber

    def feed(request: Request) -> Response:
        name = request.path_params["subscriber"]
        presented = request.query_params.get("token", "")
        with store() as opened:
            owner = subscriber_for_token(opened, presented)
            if owner is None:
                raise _not_found()
            if name == ALL_FEED:
                body = all_papers_feed(opened, clock())
            else:
                # The token must be this subscriber's own: one reader's token never opens another's feed.
                if owner != name:
                    raise _not_found()
                profiles = {p.id: p for p in load_subscribers(config.paths.subscribers).profiles}
                if name not in profiles:
                    raise _not_found()
                body = subscriber_feed(opened, config, name, profiles[name].name, clock())
        return Response(
            body,
            media_type="application/atom+xml; charset=utf-8",
            headers={"cache-control": "private, no-cache"},
        )

    def unsubscribe_page(request: Request) -> Response:
        with store() as opened:
            subscriber = subscriber_for_token(opened, request.path_params["token"])
            if subscriber is None:
                raise _not_found()
            paused = opened.subscriber_state(subscriber).paused
        # GET never changes anything: mail scanners open links, and only a person presses the button.
        return _page("unsubscribe_confirm.html", title="Unsubscribe", name=display_name(subscriber), paused=paused)

    def unsubscribe(request: Request) -> Response:
        # RFC 8058: the body is "List-Unsubscribe=One-Click". The token in the URL is what authorises the
        # request, so the body is not read (a sender cannot do anything useful with a different one).
        with store() as opened:
            subscriber = subscriber_for_token(opened, request.path_params["token"])
            if subscriber is None:
                raise _not_found()
            changed = opened.set_paused(subscriber, True, clock())
        if changed:
            log.info("%s: unsubscribed through the web link", subscriber)
        return _page("unsubscribed.html", title="Unsubscribed", name=display_name(subscriber), changed=changed)

    def feedback(request: Request) -> Response:
        # The paper id was percent-encoded into one segment but may hold '/' once decoded (hep-th/9901001,
        # doi:10.1234/abc), so the route takes the rest of the path and the rating is its last segment.
        paper_id, _, rating = request.path_params["rest"].rpartition("/")
        if rating not in _RATINGS or not paper_id:
            raise _not_found()
        with store() as opened:
            subscriber = subscriber_for_token(opened, request.path_params["token"])
            if subscriber is None:
                raise _not_found()
            paper = opened.get_paper(paper_id)
            if paper is None or paper.id is None:
                raise _not_found()
            opened.set_feedback(subscriber, paper.id, _RATINGS[rating], clock())
        other = "dislike" if rating == "like" else "like"
        return _page("feedback.html", title="Thanks", paper_title=paper.title, rating=rating, other=other)

    def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return _page("error.html", 404, title="Not found", message="This link is not valid (any more).")
        if status == 405:
            return _page("error.html", 405, title="Method not allowed", message="This address does not take that.")
        return _page("error.html", status, title="Error", message="The request could not be handled.")

    async def digest_error(request: Request, exc: Exception) -> Response:
        # A broken config or database is the operator's problem: say so in the log, not to the visitor.
        log.error("%s %s: %s", request.method, redact(request.url.path), exc)
        return _page("error.html", 503, title="Unavailable", message="Please try again later.")

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/feeds/{subscriber}.xml", feed, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
        Route("/feedback/{token}/{rest:path}", feedback, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, DigestError: digest_error},
    )
    app.add_middleware(SecurityHeaders)
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
        # Behind a reverse proxy on this host, X-Forwarded-For/Proto are trusted from 127.0.0.1 only.
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    )

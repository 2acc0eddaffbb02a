"""The reader's own settings page (issue 18): /settings/<key>, linked from every email (never from a feed: the key is
an HMAC of the reader's token under the server's secret, digest.tokens, and a feed URL carries only the token).

    GET  /settings/<K>    the profile as a form, pause or resume, the reader's ratings each with an undo
    POST /settings/<K>    one change, named by the form's `action`: save (the profile form), pause, resume, undo
                          (a rating); and from the page after a like or dislike: like (keep the paper among the
                          liked papers), never_author, never_about (an exclusion)

The token in the path says whose settings these are, but not that the request comes from our own page, so a POST
must also not be cross-site (digest.web.forms.cross_site) and must carry a form token this server made for that
action and that reader in the last hours (forms.form_token); otherwise 403 and nothing is written. Profiles are
written by digest.profile_files.save_profile only: validated like a file (a problem is a 400 showing the page as
typed, the file's one-line message beside the field), atomically, the previous version kept in .history/, and
never over another version than the one the change was made against (a hand edit, another tab): that is a 409
showing the current values. A change that worked answers 303 to the page (?done=...), so a reload does not post
it again. GET and HEAD never write; an unknown token is a 404, as everywhere. Sends and the daemon read profile
files afresh, so a change takes effect from the next digest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote

import anyio.to_thread
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.errors import DigestError, StoreError
from digest.paper import Paper
from digest.profile_files import ProfileConflict
from digest.render.context import short_date
from digest.subscribers import Profile, id_problem
from digest.tokens import settings_key
from digest.unsubscribes import apply_pending_unsubscribes, is_pending

# digest.web.app includes these routes; by the time a request comes, it is loaded.
from digest.web import app as web
from digest.web import forms
from digest.web.settings_form import (
    CUSTOM,
    GENERAL,
    SCHEDULES,
    excludes,
    excludes_author,
    field_errors,
    form_values,
    never_about,
    paper_reference,
    profile_from_form,
    submitted_values,
    suggested_words,
    timezones,
    with_liked,
    without_author,
)

if TYPE_CHECKING:
    from digest.web.app import Handlers

log = logging.getLogger(__name__)

ACTIONS = ("save", "pause", "resume", "undo", "like", "never_author", "never_about")
FEEDBACK_ACTIONS = ("like", "never_author", "never_about")
MAX_BODY = 64 * 1024  # the whole form, every list included; a profile is a few hundred bytes
MAX_FIELDS = 100
RATINGS_SHOWN = 100
AUTHORS_OFFERED = 30  # "never from this author" lists a paper's first authors (a collaboration has hundreds)
NOTICES = {
    "saved": "Saved. Your next digest uses these settings.",
    "unchanged": "Nothing to save: these are your settings already.",
    "paused": "Your digest is paused: no more emails until you resume it here.",
    "resumed": "Your digest is back on: the next one comes at its usual time.",
    "undone": "Rating removed: the next ranking no longer counts it.",
    "liked": "Added to your liked papers: papers like it rank higher in every digest.",
    "author": "Added to the authors you never want: their papers are no longer picked.",
    "about": "Added to your exclusions: papers with it in the title are dropped, with it in the abstract pushed down.",
    "already": "That was in your settings already; nothing changed.",
}
CONFLICT = (
    "Nothing was saved: this profile was changed after you opened this page (by whoever runs this digest, or in "
    "another window). Below are its current settings; make your change again and save."
)
INVALID = "Nothing was saved: please correct the fields marked below."
FORBIDDEN = (
    "This form has expired or did not come from this site, so nothing was changed. Open your settings link "
    "again and retry."
)


def purpose(action: str, subscriber: str) -> str:
    """What a form token is bound to: the action and the reader (a token for one never does another)."""
    return f"settings:{subscriber}" if action == "save" else f"settings-{action}:{subscriber}"


def _done(code: str) -> Response:
    # A relative reference of only a query: the browser stays on this path, whatever prefix a proxy adds.
    return Response(status_code=303, headers={"location": f"?done={code}", "cache-control": "no-store"})


async def read_form(request: Request) -> dict[str, str] | None:
    """An urlencoded form body (None for any other kind), at most MAX_BODY bytes (else 413); the last of repeated
    fields wins."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(413)
    if kind != "application/x-www-form-urlencoded":
        return None
    try:
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        return None
    return dict(pairs)


class SettingsPages:
    def __init__(self, app: Handlers) -> None:
        self.app = app

    # ---- what a page is made of ----------------------------------------------------------------------------

    def owner(self, key: str) -> str:
        """The reader whose settings key this is (else 404): their token alone (a feed's) does not open the page."""
        with self.app.store() as opened:
            subscriber = web.subscriber_for_settings_key(opened, key, self.app.secret)
        if subscriber is None or id_problem(subscriber):
            raise web.not_found()
        return subscriber

    def current(self, subscriber: str, now: datetime) -> tuple[Profile, str]:
        """The reader's profile as it is now (its file synced first, digest.profile_book), and the version it was
        read from. None: 404. A profile that does not load: ConfigError, which the app logs for the operator and
        answers with "try again later"."""
        with self.app.store() as opened:
            found = self.app.profiles(opened).read(subscriber, now)
        if found is None:
            raise web.not_found()
        return found

    def write(self, profile: Profile, version: str, now: datetime) -> None:
        """Save a changed profile over `version`; ProfileConflict when it changed since (a hand edit included)."""
        with self.app.store() as opened:
            self.app.profiles(opened).save(profile, expected_version=version, now=now)

    def form_tokens(self, subscriber: str, now: datetime, actions: tuple[str, ...] = ACTIONS) -> dict[str, str]:
        secret = self.app.secret
        return {action: forms.form_token(secret, purpose(action, subscriber), now) for action in actions}

    def render(
        self,
        subscriber: str,
        token: str,
        profile: Profile,
        version: str,
        values: Mapping[str, str],
        *,
        status: int = 200,
        errors: Mapping[str, str] | None = None,
        notice: str | None = None,
        problem: str | None = None,
        unsaved: Mapping[str, str] | None = None,
    ) -> Response:
        now = self.app.clock()
        with self.app.store() as opened:
            paused = opened.subscriber_state(subscriber).paused
            ratings = opened.ratings(subscriber)
        paused = paused or is_pending(self.app.config, subscriber, token)
        return web.page(
            "settings.html",
            status,
            title="Your settings",
            name=profile.name,
            email=profile.email,
            values=values,
            errors=errors or {},
            general=(errors or {}).get(GENERAL),
            version=version,
            tokens=self.form_tokens(subscriber, now),
            form_field=forms.FORM_FIELD,
            notice=notice,
            problem=problem,
            unsaved=unsaved or {},
            paused=paused,
            schedules=SCHEDULES,
            custom=CUSTOM,
            timezones=timezones(),
            ratings=[
                {"id": paper.id, "title": paper.title, "liked": rating > 0, "date": short_date(at.date().isoformat())}
                for paper, rating, at in ratings[:RATINGS_SHOWN]
            ],
            more_ratings=max(0, len(ratings) - RATINGS_SHOWN),
        )

    # ---- GET ------------------------------------------------------------------------------------------------

    def show(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber = self.owner(token)
        profile, version = self.current(subscriber, self.app.clock())
        notice = NOTICES.get(request.query_params.get("done", ""))
        return self.render(subscriber, token, profile, version, form_values(profile), notice=notice)

    # ---- POST -----------------------------------------------------------------------------------------------

    async def change(self, request: Request) -> Response:
        fields = await read_form(request)
        return await anyio.to_thread.run_sync(self.apply, request, fields)

    def apply(self, request: Request, fields: dict[str, str] | None) -> Response:
        token = request.path_params["token"]
        subscriber = self.owner(token)
        now = self.app.clock()
        if forms.cross_site(request, self.app.config.web.base_url):
            return web.page("error.html", 403, title="Not allowed", message=FORBIDDEN)
        if fields is None:
            return web.page("error.html", 400, title="Bad request", message="This form could not be read.")
        action = fields.get("action", "")
        secret = self.app.secret
        presented = fields.get(forms.FORM_FIELD, "")
        if action not in ACTIONS or not forms.form_token_ok(secret, purpose(action, subscriber), presented, now):
            return web.page("error.html", 403, title="Not allowed", message=FORBIDDEN)
        if action == "save":
            return self.save(subscriber, token, fields, now)
        if action in ("pause", "resume", "undo"):
            return self.store_change(subscriber, action, fields, now)
        return self.learn(subscriber, token, action, fields, now)

    def save(self, subscriber: str, token: str, fields: Mapping[str, str], now: datetime) -> Response:
        current, _ = self.current(subscriber, now)
        seen = fields.get("version", "")  # the version the page was made from
        profile, errors = profile_from_form(current, fields, now)
        if profile is None:
            typed = submitted_values(fields)
            return self.render(subscriber, token, current, seen, typed, status=400, errors=errors, problem=INVALID)
        if profile == current:
            return _done("unchanged")
        try:
            self.write(profile, seen, now)
        except ProfileConflict:
            return self.conflict(subscriber, token, now, submitted_values(fields))
        log.info("%s: settings saved through the settings page", subscriber)
        return _done("saved")

    def conflict(self, subscriber: str, token: str, now: datetime, typed: Mapping[str, str]) -> Response:
        """409: the current profile, and what the reader had typed that differs from it (not saved)."""
        current, version = self.current(subscriber, now)
        values = form_values(current)
        unsaved = {key: value for key, value in typed.items() if value.strip() != values.get(key, "").strip()}
        return self.render(subscriber, token, current, version, values, status=409, problem=CONFLICT, unsaved=unsaved)

    def store_change(self, subscriber: str, action: str, fields: Mapping[str, str], now: datetime) -> Response:
        with self.app.store() as opened:
            if action == "pause":
                try:
                    opened.set_paused(subscriber, True, now)
                except StoreError as exc:  # an unsubscribe is never lost: journaled, like the email's link
                    return self.app.unsubscribe_journaled(subscriber, exc, now)
                self.app.apply_pending(opened)
                log.info("%s: paused through the settings page", subscriber)
                return _done("paused")
            if action == "resume":
                # A journaled unsubscribe is applied first, so that it can never undo this resume later.
                apply_pending_unsubscribes(opened, self.app.config, clock=self.app.clock)
                opened.set_paused(subscriber, False, now)
                log.info("%s: resumed through the settings page", subscriber)
                return _done("resumed")
            removed = opened.clear_feedback(subscriber, fields.get("paper", ""))
        return _done("undone" if removed else "already")

    # ---- from the feedback page: more like this, never from this author, never about ---------------------------

    def learn(self, subscriber: str, token: str, action: str, fields: Mapping[str, str], now: datetime) -> Response:
        current, version = self.current(subscriber, now)
        values = form_values(current)
        try:
            changed, code = self.learned(current, action, fields, now)
        except _Refused as exc:
            return self.render(subscriber, token, current, version, values, status=400, problem=str(exc))
        except ValidationError as exc:
            errors = field_errors(subscriber, exc)
            return self.render(subscriber, token, current, version, values, status=400, errors=errors, problem=INVALID)
        if changed is None:
            return _done(code)
        try:
            self.write(changed, version, now)
        except ProfileConflict:  # a hand edit between reading the file and writing it: nothing is overwritten
            return self.conflict(subscriber, token, now, {})
        log.info("%s: profile changed from the feedback page (%s)", subscriber, action)
        return _done(code)

    def learned(
        self, current: Profile, action: str, fields: Mapping[str, str], now: datetime
    ) -> tuple[Profile | None, str]:
        """The profile after a feedback-page action, and the notice to show; (None, "already") when the profile
        says so already. _Refused when the form lacks its choice; ValidationError when the profile would not load."""
        if action == "like":
            with self.app.store() as opened:
                paper = opened.get_paper(fields.get("paper", ""))
                if paper is None:
                    raise _Refused("There is no such paper to add to your liked papers.")
                liked = (opened.find_paper(reference) for reference in current.interests.papers)
                if any(found is not None and found.id == paper.id for found in liked):
                    return None, "already"
            return with_liked(current, paper, now), "liked"
        if action == "never_author":
            author = " ".join(fields.get("author", "").split())
            if not author:
                raise _Refused("Choose the author whose papers you never want.")
            if excludes_author(current, author):
                return None, "already"
            return without_author(current, author, now), "author"
        phrase = " ".join((fields.get("about_other", "").strip() or fields.get("about", "")).split())
        if not phrase:
            raise _Refused("Choose a word, or type one, that you never want to read about.")
        if excludes(current, phrase):
            return None, "already"
        return never_about(current, phrase, now), "about"


class _Refused(Exception):
    """A feedback-page form without its choice (no author, no word): a 400 saying what to choose."""


def settings_key_of(app: Handlers, subscriber: str) -> str | None:
    """The settings key of a reader who has a token (made by their first digest, or their sign-up)."""
    with app.store() as opened:
        token = opened.subscriber_state(subscriber).token
    return settings_key(app.secret, token) if token else None


def feedback_offers(app: Handlers, request: Request, subscriber: str, paper: Paper) -> dict[str, object]:
    """What the page after a like or dislike offers besides the rating: keep the paper among the liked papers,
    never this author, never this word, each a form posting to the settings page (a relative address, so a proxy
    prefix and an encoded paper id are kept), and a link to the page. Empty when the profile cannot be read."""
    pages = SettingsPages(app)
    now = app.clock()
    try:
        profile, _ = pages.current(subscriber, now)
    except (HTTPException, DigestError):
        return {}
    raw = request.scope.get("raw_path") or quote(request.url.path).encode()
    depth = bytes(raw).decode("latin-1").strip("/").count("/")
    interests = profile.interests
    authors = [a for a in dict.fromkeys(paper.authors) if a.strip()][:AUTHORS_OFFERED]
    return {
        "action": "../" * depth + "settings/" + quote(settings_key_of(app, subscriber) or "", safe=""),
        "paper_id": paper.id,
        "liked": paper_reference(paper).casefold() in {p.casefold() for p in interests.papers},
        "authors": [a for a in authors if not excludes_author(profile, a)],
        "words": suggested_words(paper.title, interests.keywords, interests.exclude),
        "tokens": pages.form_tokens(subscriber, now, FEEDBACK_ACTIONS),
        "form_field": forms.FORM_FIELD,
    }


def routes(app: Handlers) -> list[Route]:
    pages = SettingsPages(app)
    return [
        Route("/settings/{token}", pages.show, methods=["GET"]),
        Route("/settings/{token}", pages.change, methods=["POST"]),
    ]

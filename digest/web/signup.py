"""Sign-up with double opt-in (issue 18), when `[web] signup = true` (else these addresses are a 404):

    GET  /subscribe         the form: email, name, keywords, liked papers, format, a schedule, a time zone
    POST /subscribe         checked as a profile is, rate-limited, recorded, and a confirmation link emailed;
                            nothing is created in subscribers/ yet
    GET  /confirm/<code>    a page with a button (mail scanners open every link: GET changes nothing)
    POST /confirm/<code>    creates the profile (digest.profile_book: atomic, one per address),
                            issues the reader's token and redirects to their settings page

The answer to a sign-up never says whether the address is new, waiting for its confirmation or subscribed
already: it is the same page, and an address that has a profile is emailed its settings link instead of a code
(no second profile). Codes are 192 random bits, stored only as their SHA-256, looked up by it and compared again
in constant time; a request expires after `[web] signup_expiry` and is purged a day later (a late click still
hears "expired"). Sign-ups are limited per address (`signup_per_address` a day), per client IP (`signup_per_ip`
an hour; IPv6 by /64) and in all (`signup_per_hour`), counted in the store under a keyed hash of the IP, never the
IP itself.
Forms carry a token of digest.web.forms and must come from our own origin.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

import anyio.to_thread
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from digest.mail.message import message_bytes
from digest.mail.notice import compose_notice
from digest.mail.transport import make_transport
from digest.store import Store
from digest.store.records import Signup, SignupLimits
from digest.subscribers import Profile
from digest.tokens import settings_key
from digest.web import forms
from digest.web.pages import render_page
from digest.web.signup_form import DEFAULTS, FIELDS, FORMATS, PRESETS, requested_profile, time_zones

if TYPE_CHECKING:
    from digest.web.app import Handlers

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
_MAX_CODE = 128  # codes are secrets.token_urlsafe(24): 32 characters
PURPOSE = "subscribe"
ADDRESS_WINDOW = timedelta(days=1)
CLIENT_WINDOW = timedelta(hours=1)
_FORM_TYPE = "application/x-www-form-urlencoded"


def _page(template: str, status: int = 200, /, **context: Any) -> HTMLResponse:
    from digest.web.app import page  # not at the top: digest.web.app imports this module

    return page(template, status, **context)


def _not_found() -> HTTPException:
    from digest.web.app import not_found

    return not_found()


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "replace")).hexdigest()


def client_key(secret: bytes, host: str) -> str:
    """What the per-IP limit counts: a keyed hash of the client's address (IPv6: of its /64, which one machine
    usually holds whole), so the store never keeps an IP."""
    return _bucket_key(secret, host, "signup-client", ipv4=32, ipv6=64)


def network_key(secret: bytes, host: str) -> str:
    """What the per-network limit counts: a keyed hash of the client's network (IPv4 /24, IPv6 /48: what one
    organisation or provider customer usually holds), so that one network cannot use up everyone's sign-ups."""
    return _bucket_key(secret, host, "signup-network", ipv4=24, ipv6=48)


def _bucket_key(secret: bytes, host: str, label: str, *, ipv4: int, ipv6: int) -> str:
    """A keyed hash of the network of `host` with that many leading bits (an IPv4 address mapped into IPv6 counts
    as IPv4; a whole address is written as itself, so a client's key is what it always was)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        bucket = host
    else:
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        prefix = ipv6 if isinstance(address, ipaddress.IPv6Address) else ipv4
        whole = prefix == address.max_prefixlen
        bucket = str(address) if whole else str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
    return hmac.new(secret, f"{label}\n{bucket}".encode(), hashlib.sha256).hexdigest()[:32]


class SignupPages:
    """The sign-up and confirmation pages, on the app's configuration, clock and store."""

    def __init__(self, app: Handlers) -> None:
        self.app = app
        web = app.config.web
        self.base_url = web.base_url or ""
        self.expiry = timedelta(seconds=web.signup_expiry)
        self.limits = SignupLimits(
            per_email=web.signup_per_address,
            email_window=ADDRESS_WINDOW,
            per_client=web.signup_per_ip,
            client_window=CLIENT_WINDOW,
            total=web.signup_per_hour,
            per_network=web.signup_per_network,
        )

    @functools.cached_property
    def mail_threads(self) -> anyio.CapacityLimiter:
        return anyio.CapacityLimiter(SIGNUP_THREADS)

    @property
    def secret(self) -> bytes:
        return self.app.secret

    # ---- the form ------------------------------------------------------------------------------------------

    def form_page(self, values: Mapping[str, str], problems: Mapping[str, str], status: int = 200) -> Response:
        return _page(
            "subscribe.html",
            status,
            title="Subscribe",
            values={**DEFAULTS, **values},
            problems=problems,
            form_token=forms.form_token(self.secret, PURPOSE, self.app.clock()),
            form_field=forms.FORM_FIELD,
            presets={key: label for key, (label, _) in PRESETS.items()},
            formats=FORMATS,
            zones=time_zones(),
        )

    def form(self, request: Request) -> Response:
        return self.form_page({}, {})

    async def subscribe(self, request: Request) -> Response:
        fields = await _read_form(request)
        if forms.cross_site(request, self.base_url) or not forms.form_token_ok(
            self.secret, PURPOSE, fields.get(forms.FORM_FIELD, ""), self.app.clock()
        ):
            return _refused()
        values = {name: fields.get(name, "") for name in FIELDS}
        host = request.client.host if request.client else "unknown"
        work = functools.partial(self.sign_up, values, client_key(self.secret, host), network_key(self.secret, host))
        # Sign-ups wait on the mail server; they get threads of their own, so that a slow or dead relay (or a flood
        # of sign-ups) never takes the threads that unsubscribes, feeds and settings need.
        return await anyio.to_thread.run_sync(work, limiter=self.mail_threads)

    def sign_up(self, values: dict[str, str], client: str, network: str) -> Response:
        now = self.app.clock()
        with self.app.store() as store:  # a flood is turned away before any work is done for it
            wait = store.signup_client_wait(client, now, self.limits, network=network)
            if wait is not None:
                return _too_many(wait)
            profile, problems = requested_profile(values, now)
            if profile is None:
                return self.form_page(values, problems, 400)
            existing = self.existing_subscriber(store, profile.email)
        code = None if existing else secrets.token_urlsafe(24)
        request = Signup(
            code_hash=code_hash(code) if code else None,
            email=mailbox_key(profile.email),
            profile=json.dumps(profile.model_dump(mode="json")) if code else "{}",
            created_at=now,
            expires_at=now + self.expiry,
        )
        with self.app.store() as store:
            # Recorded before the email goes (a crash between the two leaves a request that expires, never a
            # link that finds nothing), and counted the same whether the address is new or not.
            wait = store.add_signup(request, client, now, self.limits, network=network)
            settings = self.settings_url(store.token(existing)) if existing and wait is None else None
        if wait is not None:
            return _too_many(wait)
        if code:
            subject, text, html = confirmation_email(f"{self.base_url}/confirm/{code}", request.expires_at)
        else:
            subject, text, html = already_subscribed_email(settings or "")
            log.info("%s: sign-up for an address already subscribed; its settings link was emailed", existing)
        self.send(subject, text, html, profile.email, now)
        return _page("subscribe_sent.html", title="Check your inbox", email=profile.email, hours=self.expiry_hours)

    def existing_subscriber(self, store: Store, email: str) -> str | None:
        # lower(), not casefold(): casefold makes "ſam@" "sam@", another mailbox
        return self.app.profiles(store).subscriber_with_email(email.lower())

    def send(self, subject: str, text: str, html: str, to_email: str, now: datetime) -> None:
        message = compose_notice(
            subject=subject, text=text, html=html, to_email=to_email, sender=self.app.config.smtp.sender, now=now
        )
        transport = make_transport(self.app.config)
        try:
            transport.send(message_bytes(message), to_email)
        finally:
            transport.close()

    @property
    def expiry_hours(self) -> str:
        hours = self.expiry.total_seconds() / 3600
        return f"{hours:g} hour{'' if hours == 1 else 's'}" if hours >= 1 else f"{hours * 60:g} minutes"

    def settings_url(self, token: str) -> str:
        """The reader's settings page: under the key derived from their token (digest.tokens), not the token."""
        return f"{self.base_url}/settings/{quote(settings_key(self.secret, token), safe='')}"

    # ---- the confirmation ----------------------------------------------------------------------------------

    def find(self, store: Store, code: str) -> Signup:
        """The request a presented code confirms; a 404 for anything else."""
        digest = code_hash(code)
        found = store.signup(digest)
        if found is None or found.code_hash is None or not hmac.compare_digest(found.code_hash, digest):
            raise _not_found()
        return found

    def confirm_page(self, request: Request) -> Response:
        now = self.app.clock()
        code = _code(request)
        with self.app.store() as store:
            found = self.find(store, code)
            if found.confirmed_at is not None:
                # Read only (GET writes nothing): the token was issued when the request was confirmed.
                return self.done_page(self.fresh_token(store, found, now))
        if now >= found.expires_at:
            return self.expired_page()
        asked = json.loads(found.profile)
        return _page(
            "confirm.html",
            title="Confirm your subscription",
            profile=asked,
            schedule=next((label for label, cron in PRESETS.values() if cron == asked.get("schedule")), None),
            form_token=forms.form_token(self.secret, _confirm_purpose(code), now),
            form_field=forms.FORM_FIELD,
        )

    async def confirm(self, request: Request) -> Response:
        code = _code(request)
        fields = await _read_form(request)
        if forms.cross_site(request, self.base_url):
            return _refused()
        presented = fields.get(forms.FORM_FIELD, "")
        return await anyio.to_thread.run_sync(self.confirm_code, code, presented)

    def confirm_code(self, code: str, presented: str) -> Response:
        now = self.app.clock()
        with self.app.store() as store:
            found = self.find(store, code)  # unknown: 404, as on GET
            if not forms.form_token_ok(self.secret, _confirm_purpose(code), presented, now):
                return _refused()
            if found.confirmed_at is not None:  # a replay creates nothing again
                return self.done_page(self.fresh_token(store, found, now))
            if now >= found.expires_at:
                return self.expired_page()
            try:
                profile = Profile.model_validate(json.loads(found.profile), context={"now": now})
            except ValidationError as exc:  # checked when it was asked for; only a changed rule could get here
                log.warning("a sign-up cannot be confirmed: its profile no longer validates (%s)", exc.error_count())
                return self.expired_page()
            # An id the store still holds a history for (a profile removed since) is not given again: its sent
            # papers, ratings and links would pass to the new reader.
            subscriber, created = self.app.profiles(store).create(profile, now, taken=store.known_subscribers())
            if created:
                log.info("%s: subscribed through the sign-up page", subscriber)
            store.confirm_signup(code_hash(code), subscriber, now)
            token = store.token(subscriber)
            self.app.apply_pending(store)
        return RedirectResponse(self.settings_url(token), status_code=303)

    @staticmethod
    def fresh_token(store: Store, found: Signup, now: datetime) -> str | None:
        """The settings token an "already confirmed" page may link, only just after the confirmation (a second
        tab, a double press). Later, a used confirmation link opens nothing: it sits in mail archives, scanners and
        browser histories, and must not outlive a `digest token --rotate`."""
        if found.subscriber is None or found.confirmed_at is None or now - found.confirmed_at > REPLAY_LINK_WINDOW:
            return None
        return store.subscriber_state(found.subscriber).token

    def done_page(self, token: str | None) -> Response:
        settings = self.settings_url(token) if token else None
        return _page("confirm_done.html", title="Already confirmed", settings=settings)

    def expired_page(self) -> Response:
        return _page("confirm_expired.html", 410, title="Link expired", hours=self.expiry_hours)


REPLAY_LINK_WINDOW = timedelta(minutes=15)


def mailbox_key(address: str) -> str:
    """What the per-address limit counts: the address in lower case, without a "+tag" (ada+1@ and ada+2@ reach
    one mailbox, so they share its limit)."""
    local, _, domain = address.lower().rpartition("@")
    return f"{local.partition('+')[0] or local}@{domain}"


SIGNUP_THREADS = 4  # sign-ups handled at once (each may wait up to [smtp] timeout on the mail server)


def _code(request: Request) -> str:
    code = str(request.path_params["code"])
    if not code or len(code) > _MAX_CODE:
        raise _not_found()
    return code


def _confirm_purpose(code: str) -> str:
    # Bound to the code: a token from one confirmation page is no good on another.
    return f"confirm:{code_hash(code)}"


async def _read_form(request: Request) -> dict[str, str]:
    """A URL-encoded form of at most MAX_BODY bytes (413 beyond); the first value of each field."""
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != _FORM_TYPE:
        raise HTTPException(415)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPException(413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(413)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=2 * len(FIELDS))
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400) from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _refused() -> Response:
    return _page(
        "error.html",
        403,
        title="Form expired",
        message="This form is too old or was not sent from this site. Reload the page and try again.",
    )


def _too_many(wait: timedelta) -> Response:
    seconds = max(1, math.ceil(wait.total_seconds()))
    minutes = max(1, math.ceil(seconds / 60))
    response = _page(
        "error.html",
        429,
        title="Too many sign-ups",
        message=f"Too many sign-ups from here or for this address. Please try again in {minutes} minute"
        f"{'' if minutes == 1 else 's'}.",
    )
    response.headers["retry-after"] = str(seconds)
    return response


def confirmation_email(link: str, expires: datetime) -> tuple[str, str, str]:
    """(subject, text, HTML) of the email that carries a confirmation link. No text from the form goes in: anyone
    can type any address into the form, so the message must not carry their words to its owner."""
    until = expires.strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "Someone, hopefully you, asked for a paper digest to be sent to this address.\n\n"
        "To confirm, open this link and press the button on the page:\n\n"
        f"{link}\n\n"
        f"The link works until {until}. If you did not ask for this, ignore this email: nothing will be sent to you"
        " unless you confirm.\n"
    )
    html = render_page("confirm_email.html", kind="confirm", link=link, until=until)
    return "Confirm your paper digest subscription", text, html


def already_subscribed_email(settings: str) -> tuple[str, str, str]:
    """(subject, text, HTML) of the note to an address that has a profile already: its settings link."""
    text = (
        "Someone, hopefully you, asked for a paper digest to be sent to this address. It already has one, so nothing"
        " new was made.\n\n"
        "To change what you receive, or to resume it, open your settings page:\n\n"
        f"{settings}\n\n"
        "If you did not ask for this, ignore this email: nothing has changed.\n"
    )
    html = render_page("confirm_email.html", kind="subscribed", link=settings)
    return "Your paper digest subscription", text, html


def routes(app: Handlers) -> list[Route]:
    if not app.config.web.signup:
        return []
    pages = SignupPages(app)
    return [
        Route("/subscribe", pages.form, methods=["GET"]),
        Route("/subscribe", pages.subscribe, methods=["POST"]),
        Route("/confirm/{code}", pages.confirm_page, methods=["GET"]),
        Route("/confirm/{code}", pages.confirm, methods=["POST"]),
    ]
